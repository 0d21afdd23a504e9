"""hw.core.TrainingCore against sw.core_model.CoreModel, byte for byte, in the Amaranth simulator.

Every test builds request bytes with :mod:`sw.protocol`'s encoders (or
breaks them on purpose), feeds the same bytes to the core (through its
``rx`` stream, with random valid gaps) and to the model, and requires the
core's reply bytes (``tx``, with random back-pressure) to equal the
model's.  Idle gaps longer than the core's ``idle_timeout`` call the
model's :meth:`~sw.core_model.CoreModel.idle`; a hardware reset starts a
fresh model.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.core import CORE_DEFAULTS, TrainingCore, UARTCore
from hw.uart import UARTReceiver, UARTTransmitter
from sim.amaranth_sim import stream_get, stream_put_all
from sim.core_transport import AmaranthCoreTransport
from sw.bitplanes import signed_matmul
from sw.driver import CoreClient
from sw import protocol as P
from sw.core_model import CoreModel
from tests.hw.helpers import unelaborated, with_sync_domain
from tb.core.scripts import (SMALL, Idle, Reset, bad_requests, codes, describe_replies, expected_replies,
                             frame, fuzz_script, gemm_script, load_frames, run_frame)

TIMEOUT = 300  # idle_timeout in cycles: far above any random gap below


def run_core(script, params=SMALL, *, seed=0, gap=0.3, stall=0.3, timeout=TIMEOUT,
             max_cycles=400_000):
    """Simulate ``script`` (bytes, :class:`Idle`, :class:`Reset` steps) on a
    core; returns the reply bytes per reset-separated segment, the model's,
    and the cycles it took."""
    dut = TrainingCore(**params, idle_timeout=timeout)
    top, cd = with_sync_domain(dut)
    want = expected_replies(script, params, timeout)
    got = [bytearray()]
    state = {"cycles": 0, "done": False}

    async def producer(ctx):
        rng = random.Random(seed)
        for step in script:
            if isinstance(step, Idle):
                if step.cycles:
                    await ctx.tick().repeat(step.cycles)
            elif isinstance(step, Reset):
                ctx.set(cd.rst, 1)
                for _ in range(2):
                    await ctx.tick()  # (`repeat` would raise DomainReset)
                ctx.set(cd.rst, 0)
                got.append(bytearray())
            else:
                await stream_put_all(ctx, dut.rx, bytes(step), rng=rng, gap=gap)
        # Wait for the last segment's replies, then make sure nothing follows.
        for _ in range(max_cycles):
            if len(got[-1]) >= len(want[-1]):
                break
            await ctx.tick()
        await ctx.tick().repeat(50)
        state["done"] = True

    async def consumer(ctx):
        # Random back-pressure on tx; a byte is taken at an edge where
        # valid and ready are both high (and reset is not).
        rng = random.Random(seed + 1)
        ctx.set(dut.tx.ready, rng.random() >= stall)
        async for _, reset, ready, valid, payload in ctx.tick().sample(dut.tx.ready, dut.tx.valid,
                                                                        dut.tx.payload):
            if ready and valid and not reset:
                got[-1].append(payload)
            state["cycles"] += 1
            if state["done"]:
                break
            ctx.set(dut.tx.ready, rng.random() >= stall)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return [bytes(g) for g in got], want, state["cycles"]


def check(script, params=SMALL, **kwargs):
    """Run ``script``: the last segment must equal the model's replies exactly,
    earlier (reset-cut) segments must be prefixes of theirs."""
    got, want, cycles = run_core(script, params, **kwargs)
    assert len(got) == len(want)
    for g, w in zip(got[:-1], want[:-1]):
        assert w.startswith(g), (g.hex(), w.hex())
    assert_replies_equal(got[-1], want[-1])
    return got, cycles


def assert_replies_equal(got: bytes, want: bytes):
    if got != want:
        raise AssertionError(f"reply bytes differ:\n core:  {describe_replies(got)}\n"
                             f" model: {describe_replies(want)}")


# --------------------------------------------------------------------------- requests

# --------------------------------------------------------------------------- tests

def test_ping_reports_parameters():
    got, _ = check([frame(P.Cmd.PING, tag=7)])
    (reply,) = P.FrameDecoder().feed(got[-1])
    assert reply.tag == 7 and reply.code == P.Status.OK
    assert P.decode_ping_reply(reply.payload) == P.CoreInfo(P.PROTOCOL_VERSION, **SMALL)


# (m_bits, m_signed, v_bits, v_signed, rows, cols, vectors): every signedness
# pair, 1-bit and 8-bit sides, ragged folds and row groups, 1 x 1.
GEMMS = [
    (1, True, 1, True, 6, 12, 2),
    (8, True, 8, True, 5, 7, 2),
    (8, False, 8, False, 6, 12, 2),
    (1, False, 8, True, 3, 12, 3),
    (8, True, 1, False, 6, 9, 2),
    (2, True, 3, False, 4, 10, 3),
    (3, False, 2, True, 1, 1, 4),
    (5, True, 4, True, 2, 5, 3),
]


@pytest.mark.parametrize("m_bits, m_signed, v_bits, v_signed, rows, cols, vectors", GEMMS)
def test_run_matches_model(m_bits, m_signed, v_bits, v_signed, rows, cols, vectors):
    rng = np.random.default_rng(m_bits * 100 + v_bits * 10 + rows)
    # A full-size 8-bit matrix and vector first, so that the memories hold
    # stale codes past the tested shape (padding lanes must not count).
    dirty = gemm_script(rng, SMALL["max_rows"], SMALL["max_cols"], 8, True, 8, True, 1)
    script = gemm_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, vectors)
    check(dirty + script, seed=m_bits + v_bits)


@pytest.mark.parametrize("params", [
    dict(max_rows=3, max_cols=5, max_bits=4, pe=1, simd=1, max_payload=24),  # scalar datapath
    dict(max_rows=7, max_cols=13, max_bits=6, pe=3, simd=5, max_payload=48),  # nothing divides
    dict(max_rows=4, max_cols=8, max_bits=1, pe=4, simd=8, max_payload=32),  # 1-bit only, one word
])
def test_other_shapes(params):
    """Other PE x SIMD foldings and code widths: GEMMs at the limits and
    ragged, then every error."""
    rng = np.random.default_rng(params["pe"] * 10 + params["simd"])
    rows, cols, bits = params["max_rows"], params["max_cols"], params["max_bits"]
    script = gemm_script(rng, rows, cols, bits, True, bits, False, 2, params=params)
    script += gemm_script(rng, max(1, rows - 1), max(1, cols - 2), max(1, bits - 1), False, bits, True, 2,
                          chunk=5, params=params)
    script += [data for _, data in bad_requests(params)]
    check(script, params, seed=params["simd"])


def test_multi_frame_load_and_reload():
    """A matrix in odd-sized, unaligned chunks; RUN; a second matrix of
    another shape loaded over it; RUN again."""
    rng = np.random.default_rng(5)
    script = gemm_script(rng, 6, 12, 3, True, 2, False, 3, chunk=7)
    script += gemm_script(rng, 5, 11, 7, False, 5, True, 2, chunk=13)
    check(script, seed=3)


@pytest.mark.parametrize("m_bits, v_bits, count, cols", [(4, 3, 2, 12), (8, 8, 1, 12), (2, 5, 2, 7)])
def test_full_rate_run_cycles(m_bits, v_bits, count, cols):
    """No gaps, no stalls: a RUN exchange takes its request bytes, the
    unpacking (``1 + v_bits / 8`` cycles per code), the compute loop
    (``run_cycles``), its reply bytes and a few cycles of handshakes."""
    rng = np.random.default_rng(9)
    load = load_frames(codes(rng, m_bits, (6, cols)), m_bits, True)
    run = run_frame(codes(rng, v_bits, (count, cols)), v_bits, False)
    _, load_cycles = check(load, gap=0, stall=0)
    _, cycles = check(load + [run], gap=0, stall=0)
    with unelaborated():
        compute = TrainingCore(**SMALL).run_cycles(count, 6, cols, m_bits, v_bits)
    unpack = count * cols * (1 + v_bits / 8)
    reply = P.OVERHEAD + P.ACC_BYTES * count * 6
    rest = cycles - load_cycles - len(run) - unpack - compute - reply
    assert 0 <= rest <= 6, rest


def test_every_error_matches_model():
    requests = bad_requests()
    script = [data for _, data in requests]
    # Each must really be what its name says: one reply per request here.
    model = CoreModel(**SMALL)
    for name, data in requests:
        replies = P.FrameDecoder().feed(model.feed(data))
        assert len(replies) == 1, name
    check(script, seed=11)


def test_every_error_status_is_exercised():
    """The list above covers every (status, detail) the protocol defines."""
    model = CoreModel(**SMALL)
    seen = set()
    for _, data in bad_requests():
        for reply in P.FrameDecoder().feed(model.feed(data)):
            seen.add((reply.code, reply.payload[1] if reply.code else 0))
    want = {(P.Status.OK, 0), (P.Status.BAD_CRC, 0), (P.Status.BAD_LENGTH, 0), (P.Status.BAD_COMMAND, 0)}
    want |= {(P.Status.BAD_PARAMS, d) for d in (P.Detail.ROWS, P.Detail.COLS, P.Detail.BITS,
                                                 P.Detail.FLAGS, P.Detail.COUNT, P.Detail.REPLY_TOO_BIG)}
    want |= {(P.Status.BAD_STATE, P.Detail.SEQUENCE), (P.Status.BAD_STATE, P.Detail.NO_MATRIX)}
    assert want <= seen, want - seen


def test_garbage_between_frames():
    rng = random.Random(4)
    noise = lambda n: bytes(rng.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))
    nprng = np.random.default_rng(4)
    good = gemm_script(nprng, 3, 5, 2, True, 2, False, 2)
    script = []
    for request in [frame(P.Cmd.PING)] + good + [frame(P.Cmd.RESET)]:
        script += [noise(rng.randrange(0, 6)), request]
    # Garbage holding SYNC bytes: stray frames the core and the model read alike.
    script += [bytes([P.SYNC, 0x01, 0x02, 0x00, 0x00, 0x12, 0x34]), frame(P.Cmd.PING, tag=2),
               bytes([0x00, P.SYNC, P.SYNC]), frame(P.Cmd.PING, tag=3)]
    check(script, seed=4)


def test_truncated_frame_then_idle_timeout():
    """A request cut short is dropped after the idle timeout; the next frame
    is answered.  A gap just under the timeout keeps the frame alive."""
    rng = np.random.default_rng(6)
    matrix = codes(rng, 2, (3, 4))
    (load,) = load_frames(matrix, 2, False)
    vecs = codes(rng, 2, (2, 4))
    run = run_frame(vecs, 2, True, tag=4)
    script = [
        load[:9], Idle(TIMEOUT + 5),  # truncated in the payload
        run[:3], Idle(TIMEOUT + 5),  # truncated in the header
        bytes([P.SYNC]), Idle(TIMEOUT),  # just SYNC, exactly the timeout
        load,
        run[:10], Idle(TIMEOUT - 10), run[10:],  # a pause under the timeout
        frame(P.Cmd.PING, tag=5)[:-1], Idle(TIMEOUT + 1), frame(P.Cmd.PING, tag=6),
    ]
    # Without the drops, the truncated bytes would swallow the good frames.
    assert expected_replies([s for s in script if not isinstance(s, Idle)], SMALL, TIMEOUT) != \
        expected_replies(script, SMALL, TIMEOUT)
    check(script, gap=0, stall=0.2)


@pytest.mark.parametrize("when", ["receiving", "computing", "replying"])
def test_reset_mid_transfer(when):
    """A hardware reset mid-request or mid-RUN: the matrix is forgotten
    (RUN answers NO_MATRIX, like a fresh model), then a good exchange."""
    rng = np.random.default_rng(8)
    matrix = codes(rng, 8, (6, 12))
    load = load_frames(matrix, 8, True)
    vecs = codes(rng, 8, (2, 12))
    run = run_frame(vecs, 8, False)
    if when == "receiving":
        before = load[:-1] + [load[-1][:20]]
    else:
        before = load + [run]
    # Cycles after the last byte before the reset: mid-frame; in the first
    # group's compute loop (reply header sent, no accumulator yet); mid-reply.
    cut = {"receiving": 0, "computing": 40, "replying": 700}[when]
    after = [frame(P.Cmd.RUN, P.encode_run(8, False, vecs)), frame(P.Cmd.PING)] + \
        gemm_script(rng, 4, 6, 3, False, 4, True, 2)
    got, _ = check(before + [Idle(cut), Reset()] + after, gap=0.1, stall=0.1)
    model = CoreModel(**SMALL)
    loads = b"".join(model.feed(f) for f in load[:-1])
    if when == "receiving":
        assert got[0] == loads
        return
    loads += model.feed(load[-1])
    whole = loads + model.feed(run)
    header = P.HEADER_SIZE  # SYNC STATUS TAG LEN
    if when == "computing":
        assert got[0] == whole[:len(loads) + header]
    else:
        assert len(loads) + header < len(got[0]) < len(whole)


def test_fuzz_against_model():
    """Random requests, some valid, many mutated (a byte changed, cut short):
    the core and the model agree on every reply byte."""
    check(fuzz_script(12, 40, timeout=TIMEOUT), seed=12)


# --------------------------------------------------------------------------- UART wrapper

def test_uart_core_over_the_pins():
    """PING, LOAD, RUN through UART pins (divisor 4), against the model."""
    clk, baud = 100_000, 25_000  # divisor 4; idle timeout 0.01 s = 1000 cycles
    rng = np.random.default_rng(13)
    script = [frame(P.Cmd.PING)] + gemm_script(rng, 3, 5, 2, True, 3, False, 2)
    request = b"".join(script)
    want = CoreModel(**SMALL).feed(request)

    top = Module()
    top.submodules.core = core = UARTCore(clk, baud, idle_timeout_s=0.01, **SMALL)
    top.submodules.host_tx = host_tx = UARTTransmitter(4)
    top.submodules.host_rx = host_rx = UARTReceiver(4)
    top.d.comb += [core.rx.eq(host_tx.tx), host_rx.rx.eq(core.tx)]
    got = []

    async def host(ctx):
        await stream_put_all(ctx, host_tx.i, request)

    async def reader(ctx):
        while len(got) < len(want):
            got.append(await stream_get(ctx, host_rx.o))

    sim = Simulator(top)
    sim.add_clock(1 / clk)
    sim.add_testbench(host)
    sim.add_testbench(reader)
    sim.run()
    assert_replies_equal(bytes(got), want)


# --------------------------------------------------------------------------- host driver

def test_driver_matmul_on_the_simulated_core():
    """sw.driver.CoreClient, unchanged, against the gateware: PING, then a
    GEMM larger than the core (tiled into 2 x 2 matrix loads, multi-frame
    loads and RUNs), equal to signed_matmul."""
    rng = np.random.default_rng(14)
    vectors, matrix = codes(rng, 3, (5, 20)), codes(rng, 2, (9, 20))
    client = CoreClient(AmaranthCoreTransport(TrainingCore(**SMALL, idle_timeout=TIMEOUT)))
    assert client.ping() == P.CoreInfo(P.PROTOCOL_VERSION, **SMALL)
    out = client.matmul(vectors, 3, True, matrix, 2, False)
    np.testing.assert_array_equal(out, signed_matmul(vectors, 7, 3, matrix, None, 2))
    assert client.stats["requests"] > 8 and client.stats["bad_frames"] == 0
    # The last tile loaded is 3 x 8: 6 vectors need a 72-byte reply.
    with pytest.raises(P.CoreError, match="BAD_PARAMS to RUN .REPLY_TOO_BIG"):
        client.request(P.Cmd.RUN, P.encode_run(3, False, codes(rng, 3, (6, 8))))
    assert client.ping().max_payload == SMALL["max_payload"]


# --------------------------------------------------------------------------- parameters

def test_defaults_fit_the_up5k_ebr():
    with unelaborated():
        core = TrainingCore()
        assert core.info == P.CoreInfo(P.PROTOCOL_VERSION, **CORE_DEFAULTS)
        core.info.check()
        # 120 kbit of EBR: the matrix takes 16 blocks of 256 x 16, the vector
        # buffer 4 (64 bits wide), the request buffer 2 (yosys: 23 with the
        # UART FIFO; see the report).
        assert core.memory_bits == {"request": 8 * 1024, "matrix": 64 * 1024, "vector": 32 * 64}
        del core


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_rows=0), "max_rows"),
    (dict(max_cols=70000), "max_cols"),
    (dict(max_bits=9), "max_bits"),
    (dict(pe=0), "pe"),
    (dict(pe=33), "pe"),
    (dict(simd=257), "simd"),
    (dict(max_payload=12), "max_payload"),
    (dict(max_payload=5000), "max_payload"),
    (dict(max_payload=200), "one vector"),  # 4 + 256 bytes do not fit
    (dict(max_rows=300, max_payload=1024), "one reply"),
    (dict(idle_timeout=0), "idle_timeout"),
    (dict(max_bits=True), "max_bits"),
])
def test_bad_parameters(kwargs, match):
    with unelaborated(), pytest.raises(ValueError, match=match):
        TrainingCore(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(clk_freq=0), "clk_freq"),
    (dict(clk_freq=12e6, baud=4_000_000), "too slow"),
    (dict(clk_freq=12e6, idle_timeout_s=1.0), "idle_timeout_s"),
    (dict(clk_freq=12e6, fifo_depth=0), "fifo_depth"),
    (dict(clk_freq=12e6, max_bits=0), "max_bits"),
])
def test_bad_uart_core_parameters(kwargs, match):
    with unelaborated(), pytest.raises(ValueError, match=match):
        UARTCore(**kwargs)
