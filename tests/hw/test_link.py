"""The training core's link units in the Amaranth simulator, each against :mod:`sw.protocol`:
hw.crc16 (``crc16``), hw.frame_tx.FrameTransmitter (``encode_frame``),
hw.frame_rx.FrameReceiver (``FrameDecoder(backtrack=False)`` and the idle
timeout), hw.code_unpacker.CodeUnpacker (``unpack_codes``) and
hw.code_packer.CodePacker (``pack_codes``), with valid gaps and back-pressure."""

import random

import numpy as np
import pytest

from hw.code_packer import CodePacker
from hw.code_unpacker import CodeUnpacker
from hw.crc16 import CRC16, crc16_processor
from hw.frame_rx import FrameReceiver
from hw.frame_tx import FrameTransmitter
from sim.amaranth_sim import simulate, stream_get, stream_get_n, stream_put_all
from sw import protocol as P
from sw.contract.codes import MAX_CODE_BITS
from sw.contract.link import CRC_CHECK, CRC_RESIDUE
from tests.hw.helpers import unelaborated


def test_crc16_processor_is_the_protocol_crc():
    """amaranth.lib.crc with the link's parameters, a byte per cycle, equals the host's CRC."""
    dut = crc16_processor()
    rng = random.Random(0)
    messages = [b"123456789", b"", b"\x00", b"\xff" * 3] + [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(50)]

    async def bench(ctx):
        for message in messages:
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for byte in message:
                ctx.set(dut.data, byte)
                ctx.set(dut.valid, rng.random() < 0.8)
                while not ctx.get(dut.valid):  # a gap: the CRC holds
                    await ctx.tick()
                    ctx.set(dut.valid, 1)
                await ctx.tick()
            ctx.set(dut.valid, 0)
            assert ctx.get(dut.crc) == P.crc16(message), message
            # The frame's CRC appended (most significant byte first) leaves the residue.
            for byte in P.crc16(message).to_bytes(2, "big"):
                ctx.set(dut.data, byte)
                ctx.set(dut.valid, 1)
                await ctx.tick()
            ctx.set(dut.valid, 0)
            assert ctx.get(dut.crc) == CRC_RESIDUE and ctx.get(dut.match_detected)

    simulate(dut, bench)
    assert CRC16.compute(b"123456789") == CRC_CHECK == P.crc16(b"123456789")


@pytest.mark.parametrize("seed", [0, 1])
def test_frame_transmitter_makes_protocol_frames(seed):
    rng = random.Random(seed)
    frames = [(P.Status.OK, 0, b""), (P.Status.BAD_CRC, 0xFF, b"\x04\x00")] + [
        (rng.randrange(256), rng.randrange(256), bytes(rng.randrange(256) for _ in range(rng.randrange(20))))
        for _ in range(10)]
    want = b"".join(P.encode_frame(status, payload, tag) for status, tag, payload in frames)
    dut = FrameTransmitter()
    got = []

    async def producer(ctx):
        for status, tag, payload in frames:
            body = bytes([status, tag]) + len(payload).to_bytes(2, "little") + payload
            beats = [{"data": b, "last": i == len(body) - 1} for i, b in enumerate(body)]
            await stream_put_all(ctx, dut.i, beats, rng=rng, gap=0.4)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(want), rng=random.Random(seed + 9), stall=0.4))

    simulate(dut, producer, consumer, deadline=None)
    assert bytes(got) == want


def receiver_events(dut, chunks, *, seed, gap=0.3):
    """Feed ``chunks`` (bytes, or an int: idle cycles) to a FrameReceiver;
    return its events with the payload it wrote, as the decoder's types."""
    events, memory = [], {}
    expected_count = [None]

    async def producer(ctx):
        rng = random.Random(seed)
        for chunk in chunks:
            if isinstance(chunk, int):
                await ctx.tick().repeat(chunk)
            else:
                await stream_put_all(ctx, dut.i, chunk, rng=rng, gap=gap)
        await ctx.tick().repeat(20)
        expected_count[0] = True

    async def writer(ctx):
        ctx.set(dut.wr.ready, 1)
        async for _, _, valid, addr, data in ctx.tick().sample(dut.wr.valid, dut.wr.payload.addr,
                                                               dut.wr.payload.data):
            if valid:
                memory[addr] = data

    async def consumer(ctx):
        rng = random.Random(seed + 1)
        while expected_count[0] is None:
            ctx.set(dut.o.ready, 0)
            await ctx.tick()
            if not ctx.get(dut.o.valid):
                continue
            event = await stream_get(ctx, dut.o, rng=rng, stall=0.5)
            length = event.length
            if event.status == P.Status.OK:
                payload = bytes(memory[i] for i in range(length))
                assert payload[:len(event.head)] == bytes(event.head)[:length]
                events.append(P.Frame(event.cmd, event.tag, payload))
            else:
                events.append(P.FrameError(P.Status(event.status), event.cmd, event.tag, length))

    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(writer, background=True)
    sim.run()
    return events


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_receiver_matches_decoder(seed):
    """Good frames, bad CRCs, over-long LEN and garbage (SYNC bytes included):
    the same events as the core-side decoder."""
    rng = random.Random(seed)
    max_payload = 20
    stream = bytearray()
    for _ in range(25):
        kind = rng.random()
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(max_payload + 1)))
        data = bytearray(P.encode_frame(rng.randrange(256), payload, rng.randrange(256)))
        if kind < 0.2:
            data[rng.randrange(1, len(data))] ^= 1 << rng.randrange(8)  # bad CRC (or worse)
        elif kind < 0.3:
            data[3:5] = rng.randrange(max_payload + 1, 1 << 16).to_bytes(2, "little")
        elif kind < 0.4:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        stream += data
    stream += P.encode_frame(P.Cmd.PING, b"", 1) * 3  # flush whatever a garbled LEN swallowed
    want = P.FrameDecoder(max_payload, backtrack=False).feed(stream)
    assert {type(e) for e in want} == {P.Frame, P.FrameError}
    dut = FrameReceiver(max_payload, timeout=1000)
    got = receiver_events(dut, [bytes(stream)], seed=seed)
    assert got == want


@pytest.mark.parametrize("max_payload", [20, 255, 256, 257, 300, 4096])
def test_frame_receiver_length_bounds(max_payload):
    """LEN at and around ``max_payload``, 0 and the 16-bit extremes (the receiver compares
    LEN's two bytes one at a time): the same events as the core-side decoder."""
    rng = random.Random(max_payload)
    high = max_payload >> 8
    lengths = sorted({0, 1, max_payload - 1, max_payload, max_payload + 1, high << 8, (high << 8) + 255,
                      (high + 1) << 8, 0x100, 0xFFFF})
    stream = bytearray()
    for length in lengths:
        payload = bytes(rng.randrange(256) for _ in range(length if length <= max_payload else 0))
        data = bytearray(P.encode_frame(P.Cmd.RUN, payload, length & 0xFF))
        data[3:5] = length.to_bytes(2, "little")  # (a refused LEN: its header, no payload)
        stream += data + P.encode_frame(P.Cmd.PING, b"", 1) * 2  # resynchronise after a refused LEN
    want = P.FrameDecoder(max_payload, backtrack=False).feed(stream)
    assert [len(e.payload) for e in want if isinstance(e, P.Frame) and e.code == P.Cmd.RUN] == \
        [n for n in lengths if n <= max_payload]
    assert sum(isinstance(e, P.FrameError) for e in want) >= sum(n > max_payload for n in lengths)
    dut = FrameReceiver(max_payload, timeout=1 << 14)
    assert receiver_events(dut, [bytes(stream)], seed=max_payload) == want


def test_frame_receiver_idle_timeout():
    """``timeout`` idle cycles inside a frame drop it; ``timeout - 1`` do not."""
    timeout = 25
    good = P.encode_frame(P.Cmd.RUN, b"\x01\x02\x03", 7)
    dut = FrameReceiver(16, timeout=timeout)
    frame = P.Frame(P.Cmd.RUN, 7, b"\x01\x02\x03")
    got = receiver_events(dut, [good[:6], timeout, good, good[:2], timeout - 1, good[2:],
                                good[:1], timeout - 1, good[1:]], seed=3, gap=0)
    assert got == [frame] * 3
    # Without the first drop, the cut frame would swallow the next one.
    assert P.FrameDecoder(16).feed(good[:6] + good * 3) != [frame] * 3


@pytest.mark.parametrize("bits", range(1, 9))
def test_code_unpacker_inverts_pack_codes(bits):
    rng = np.random.default_rng(bits)
    payloads = [rng.integers(0, 1 << bits, size=n) for n in (1, 7, 13, 30)]
    dut = CodeUnpacker(8)
    got = []

    async def bench(ctx):
        prng = random.Random(bits)
        ctx.set(dut.bits, bits)
        for codes in payloads:
            # Clear what the previous payload's padding left.
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            data = list(P.pack_codes(codes, bits))
            received = []
            # Both sides at once, by hand: bytes offered with random gaps,
            # codes taken under random back-pressure.
            index = 0
            while len(received) < len(codes):
                if index < len(data) and prng.random() > 0.3:
                    ctx.set(dut.i.valid, 1)
                    ctx.set(dut.i.payload, data[index])
                else:
                    ctx.set(dut.i.valid, 0)
                ready_out = prng.random() > 0.3
                ctx.set(dut.o.ready, ready_out)
                _, _, i_ok, o_ok, code = await ctx.tick().sample(
                    dut.i.valid & dut.i.ready, dut.o.valid & dut.o.ready, dut.o.payload)
                if i_ok:
                    index += 1
                if o_ok:
                    received.append(code)
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            got.append(received)

    simulate(dut, bench, deadline=None)
    assert got == [list(map(int, c)) for c in payloads]


@pytest.mark.parametrize("max_bits, bits", [(8, b) for b in range(1, 9)] + [(3, 1), (3, 3), (1, 1)]
                         + [(32, b) for b in (1, 9, 13, 16, 24, 31, 32)])  # the core's: accumulators too
def test_code_packer_is_pack_codes(max_bits, bits):
    """Payloads of several lengths (one code, whole bytes, ragged ends) back to
    back, codes offered with random gaps (and junk above ``bits``), bytes taken
    under random back-pressure: each payload's bytes are ``pack_codes``'s, and
    ``last`` marks exactly its final byte."""
    rng = np.random.default_rng(10 * max_bits + bits)
    lengths = (1, 8, 3, 13, 30, 2)
    payloads = [rng.integers(0, 1 << bits, size=n, dtype=np.int64) for n in lengths]
    if bits <= MAX_CODE_BITS:
        want = [P.pack_codes(codes, bits) for codes in payloads]
    else:  # accumulators: the same stream of their two's complement bits (the host's encoder)
        signed = [np.where(codes >> (bits - 1), codes - (1 << bits), codes) for codes in payloads]
        want = [P.encode_packed_accumulators(out, bits)[P.RUN_REPLY_HEADER:] for out in signed]
    junk = (1 << max_bits) - (1 << bits)  # bits above the code width, ignored
    dut = CodePacker(max_bits)
    got = []

    async def producer(ctx):
        ctx.set(dut.bits, bits)
        prng = random.Random(bits)
        for codes in payloads:
            beats = [{"code": int(c) | (junk & prng.getrandbits(max_bits)), "last": i == len(codes) - 1}
                     for i, c in enumerate(codes)]
            await stream_put_all(ctx, dut.i, beats, rng=prng, gap=0.3)

    async def consumer(ctx):
        beats = await stream_get_n(ctx, dut.o, sum(map(len, want)), rng=random.Random(bits + 50), stall=0.4)
        got.extend((beat.data, beat.last) for beat in beats)

    simulate(dut, producer, consumer, deadline=None)
    flat = [(byte, i == len(w) - 1) for w in want for i, byte in enumerate(w)]
    assert got == flat


def test_code_packer_full_rate():
    """Both sides always ready: a code or a byte a cycle, whichever is slower, then the
    final byte (the docstring's rate)."""
    for max_bits, bits, count in [(8, 8, 16), (8, 1, 64), (8, 3, 24), (8, 5, 11), (32, 32, 5), (32, 20, 8),
                                  (32, 16, 6), (32, 9, 7)]:
        dut = CodePacker(max_bits)
        state = {}

        async def bench(ctx):
            ctx.set(dut.bits, bits)
            ctx.set(dut.o.ready, 1)
            sent = received = cycles = 0
            while received < P.packed_size(count, bits):
                ctx.set(dut.i.valid, sent < count)
                ctx.set(dut.i.payload, {"code": sent % (1 << bits), "last": sent == count - 1})
                _, _, took, out = await ctx.tick().sample(dut.i.valid & dut.i.ready, dut.o.valid)
                sent += took
                received += out
                cycles += 1
            state["cycles"] = cycles

        simulate(dut, bench, deadline=None)
        assert state["cycles"] == max(count, P.packed_size(count, bits)) + 1, (bits, state)


@pytest.mark.parametrize("cls, kwargs, match", [
    (FrameReceiver, dict(max_payload=0, timeout=5), "max_payload"),
    (FrameReceiver, dict(max_payload=4097, timeout=5), "max_payload"),
    (FrameReceiver, dict(max_payload=10, timeout=0), "timeout"),
    (FrameReceiver, dict(max_payload=10, timeout=5, head_bytes=11), "head_bytes"),
    (CodeUnpacker, dict(max_bits=0), "max_bits"),
    (CodeUnpacker, dict(max_bits=9), "max_bits"),
    (CodePacker, dict(max_bits=0), "max_bits"),
    (CodePacker, dict(max_bits=33), "max_bits"),
    (CodePacker, dict(max_bits=True), "max_bits"),
])
def test_bad_parameters(cls, kwargs, match):
    with unelaborated(), pytest.raises(ValueError, match=match):
        cls(**kwargs)
