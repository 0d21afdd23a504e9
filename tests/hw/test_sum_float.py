"""hw.sum_float.SumToFloat (a batch sum to the binary32 pattern of its 24-bit truncation)
in the Amaranth simulator.

One testbench feeds a value a cycle (with idle cycles between some, garbage on the
payload while idle) and collects ``o`` each cycle; every expected pattern is
numpy's ``float32`` of the value truncated by the binary digits of Python's
integers (not the contract's code), and :func:`sw.contract.gradients.sum_float_bits`
is checked to agree with it too.
"""

import random

import numpy as np
import pytest

from hw.sum_float import SumToFloat
from sim.amaranth_sim import simulate
from sw.contract.gradients import sum_float_bits
from tests.hw.helpers import unelaborated


def expected_pattern(value: int) -> int:
    """numpy's binary32 bits of ``value`` truncated toward zero to 24 significant bits."""
    digits = bin(abs(value))[2:]
    kept = int(digits[:24] + "0" * max(len(digits) - 24, 0), 2)
    return int(np.array([float(-kept if value < 0 else kept)], dtype=np.float32).view(np.uint32)[0])


def edge_values(sum_bits: int) -> list[int]:
    """0, +-1, +-2**k, +-(2**k - 1), +-(2**k + 1), values just above 2**24, the extremes."""
    low, high = -(1 << (sum_bits - 1)), (1 << (sum_bits - 1)) - 1
    values = [0, 1, -1, low, high, low + 1]
    for k in range(1, sum_bits - 1):
        values += [1 << k, -(1 << k), (1 << k) - 1, -((1 << k) - 1), (1 << k) + 1, -(1 << k) - 1]
    values += [(1 << 24) + j for j in range(1, 5)] + [-(1 << 24) - j for j in range(1, 5)]
    values += [(1 << 25) - 1, (1 << 24) + (1 << 23) + 1]
    return [v for v in values if low <= v <= high]


def random_values(rng, sum_bits: int, count: int) -> list[int]:
    """Values of every bit length (uniform in length, then in value), both signs."""
    values = []
    for _ in range(count):
        length = rng.randrange(1, sum_bits)
        magnitude = rng.randrange(1 << (length - 1), 1 << length)
        values.append(-magnitude if rng.random() < 0.5 else magnitude)
    return values


def run(sum_bits: int, values, *, rng, gap: float) -> list[tuple[int, int]]:
    """Feed ``values`` (idle cycles with probability ``gap`` before each); returns
    ``(cycle, pattern)`` of every cycle with ``o.valid``, and the cycles each value went in."""
    dut = SumToFloat(sum_bits=sum_bits)
    low, high = -(1 << (sum_bits - 1)), (1 << (sum_bits - 1)) - 1
    got, sent = [], []

    async def testbench(ctx):
        cycle = 0

        async def tick():
            nonlocal cycle
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o.valid):
                got.append((cycle, ctx.get(dut.o.payload)))

        for value in values:
            while gap and rng.random() < gap:
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.i.payload, rng.randint(low, high))
                await tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, value)
            sent.append(cycle)
            await tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(SumToFloat.latency + 2):
            await tick()

    simulate(dut, testbench, deadline=None)
    return got, sent


@pytest.mark.parametrize("sum_bits", [2, 7, 24, 25, 58, 88, 89, 96, 128])
def test_sum_to_float_is_sum_float_bits(sum_bits):
    rng = random.Random(sum_bits)
    values = edge_values(sum_bits) + random_values(rng, sum_bits, 300)
    rng.shuffle(values)
    got, sent = run(sum_bits, values, rng=rng, gap=0.3)
    want = [expected_pattern(v) for v in values]
    assert want == [sum_float_bits(v) for v in values]  # the contract agrees with numpy
    assert [pattern for _, pattern in got] == want
    # each result SumToFloat.latency cycles after its value went in, one per cycle at most
    assert [cycle for cycle, _ in got] == [c + SumToFloat.latency for c in sent]


def test_sum_to_float_back_to_back():
    """No idle cycle: a value a cycle in, a pattern a cycle out."""
    rng = random.Random(7)
    values = edge_values(96)[:60] + random_values(rng, 96, 60)
    got, sent = run(96, values, rng=rng, gap=0.0)
    assert [pattern for _, pattern in got] == [expected_pattern(v) for v in values]
    assert [cycle for cycle, _ in got] == list(range(SumToFloat.latency, SumToFloat.latency + len(values)))


@pytest.mark.parametrize("bad, message", [
    (1, "sum_bits must be in 2..128"), (129, "sum_bits must be in 2..128"), (96.0, "sum_bits must be an integer"),
    (True, "sum_bits must be an integer"),
])
def test_sum_to_float_refuses_bad_widths(bad, message):
    with pytest.raises(ValueError, match=message):
        SumToFloat(sum_bits=bad)


def test_sum_to_float_ports():
    with unelaborated():
        dut = SumToFloat(sum_bits=90)
        assert dut.sum_bits == 90
        assert dut.i.payload.shape().signed and dut.i.payload.shape().width == 90
        assert dut.o.payload.shape().width == 32
        del dut
