"""hw.code_unpacker.CodeUnpacker in the Amaranth simulator, against :func:`sw.protocol.pack_codes`.

One testbench drives both sides cycle by cycle (random gaps on ``i``,
random back-pressure on ``o``, several payloads separated by ``clear``) and
checks, each cycle: the stream rules (``o.valid`` never falls without a
transfer, ``o.payload`` holds while a code waits), ``i.ready == ~o.valid``
outside ``clear``, and that ``o.valid`` is a flip-flop: it does not move
when ``bits``, ``clear``, ``i`` or ``o.ready`` do within the cycle (it was
``have >= bits & ~clear``, combinational, before).  The codes out are the
packed ones, and with both sides always ready each payload takes one cycle
per byte plus one per code.
"""

import random

import numpy as np
import pytest

from hw.code_unpacker import CodeUnpacker
from sim.amaranth_sim import simulate
from sw import protocol as P


def run(max_bits, bits, payloads, *, seed, offer=0.7, accept=0.7):
    """Unpack each payload (a ``clear`` before each); returns, per payload, the
    codes taken and the cycles from ``clear`` to its last code, and the cycles
    where ``o.valid`` moved with an input."""
    dut = CodeUnpacker(max_bits)
    results, moved = [], []

    async def bench(ctx):
        rng = random.Random(seed)
        for codes in payloads:
            data = list(P.pack_codes(codes, bits))
            ctx.set(dut.bits, bits)
            ctx.set(dut.clear, 1)
            ctx.set(dut.i.valid, rng.random() < 0.5)  # nothing taken during clear
            ctx.set(dut.o.ready, 0)
            assert not ctx.get(dut.i.ready)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            got, index, cycles = [], 0, 0
            waiting = None  # a code offered and not taken last cycle
            while len(got) < len(codes):
                # o.valid comes from a flip-flop: wiggle every input, it stays.
                probes = set()
                for b in range(max_bits + 1):
                    for clear in (0, 1):
                        ctx.set(dut.bits, b)
                        ctx.set(dut.clear, clear)
                        ctx.set(dut.i.valid, b & 1)
                        ctx.set(dut.i.payload, 0xA5 ^ (0xFF * clear))
                        ctx.set(dut.o.ready, b >> 1 & 1)
                        probes.add(ctx.get(dut.o.valid))
                moved.append(len(probes) != 1)
                ctx.set(dut.bits, bits)
                ctx.set(dut.clear, 0)
                valid = index < len(data) and rng.random() < offer
                ctx.set(dut.i.valid, valid)
                ctx.set(dut.i.payload, data[index] if valid else rng.randrange(256))
                ready = rng.random() < accept
                ctx.set(dut.o.ready, ready)
                o_valid, payload = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
                assert ctx.get(dut.i.ready) == (not o_valid)
                if waiting is not None:  # stream rules
                    assert o_valid and payload == waiting
                if valid and ctx.get(dut.i.ready):
                    index += 1
                if o_valid and ready:
                    got.append(payload)
                waiting = payload if o_valid and not ready else None
                await ctx.tick()
                cycles += 1
                assert cycles < 50 * (len(data) + len(codes)) + 50, "no progress"
            results.append((got, cycles))
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 0)

    simulate(dut, bench, deadline=None)
    return results, moved


def payloads(rng, bits):
    return [rng.integers(0, 1 << bits, size=n) for n in (1, 2, 7, 13, 30)]


@pytest.mark.parametrize("max_bits, bits", [(8, b) for b in range(1, 9)] + [(3, 1), (3, 2), (3, 3), (1, 1)])
def test_codes_are_the_packed_ones_under_gaps_and_backpressure(max_bits, bits):
    rng = np.random.default_rng(10 * max_bits + bits)
    sent = payloads(rng, bits)
    results, moved = run(max_bits, bits, sent, seed=bits)
    assert [got for got, _ in results] == [list(map(int, c)) for c in sent]
    assert not any(moved), "o.valid moved with an input within a cycle"


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_full_rate_is_one_cycle_per_byte_and_per_code(bits):
    """Both sides always ready: a byte is taken only while fewer than ``bits``
    bits are held, so each cycle takes a byte or gives a code."""
    rng = np.random.default_rng(bits)
    sent = payloads(rng, bits)
    results, moved = run(8, bits, sent, seed=0, offer=1, accept=1)
    assert [got for got, _ in results] == [list(map(int, c)) for c in sent]
    assert [cycles for _, cycles in results] == [len(c) + -(-len(c) * bits // 8) for c in sent]
    assert not any(moved)


def test_clear_drops_the_padding():
    """Payloads whose padding holds a whole code's worth of bits (7 bits at
    ``bits = 1``, 4 at ``bits = 2``): the next payload starts clean."""
    for bits, n in ((1, 1), (2, 2), (3, 1)):
        sent = [np.arange(n) % (1 << bits), np.full(9, (1 << bits) - 1)]
        results, _ = run(8, bits, sent, seed=5, offer=1, accept=0.5)
        assert [got for got, _ in results] == [list(map(int, c)) for c in sent]
