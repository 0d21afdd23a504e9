"""hw.sum_reader.SumReader: runs of sums as READ_SUMS' bytes (sw.contract), under random
back-pressure; a byte a cycle without it."""

import random

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.sum_reader import SumReader
from sw.contract.gradients import sum_float_bits
from sw.contract.link import FLOAT_SUM_BYTES, sum_width
from tests.hw.helpers import unelaborated


def sums_port(m, dut, sums, sum_bits, read_latency):
    """A memory holding ``sums`` behind ``dut``'s read port, ``read_latency`` registers deep
    (as :class:`hw.batch_sum.BatchSum`'s)."""
    memory = m.submodules.sums = Memory(shape=signed(sum_bits), depth=len(sums), init=sums)
    port = memory.read_port(domain="comb")
    m.d.comb += port.addr.eq(dut.read_addr)
    data = port.data
    for k in range(read_latency):
        stage = Signal.like(data, name=f"stage{k}")
        m.d.sync += stage.eq(data)
        data = stage
    m.d.comb += dut.read_data.eq(data)


def expected_bytes(sums, sum_bytes, binary32):
    """READ_SUMS' body after its width byte, from the contract."""
    if binary32:
        return b"".join(sum_float_bits(s).to_bytes(FLOAT_SUM_BYTES, "little") for s in sums)
    return b"".join((s & ((1 << 8 * sum_bytes) - 1)).to_bytes(sum_bytes, "little") for s in sums)


def simulate(slots, sum_bits, read_latency, runs, *, stall, seed):
    """Each run ``(slot, count, sum_bytes, binary32)`` started once the last is done; returns
    per run its bytes, the cycle of each byte taken (from its start) and its ``last`` flags,
    and the sums."""
    rng = random.Random(seed)
    lo, hi = -(1 << sum_bits - 1), (1 << sum_bits - 1) - 1
    sums = [rng.choice([lo, hi, 0, -1, 1, rng.randint(lo, hi)]) for _ in range(slots)]
    dut = SumReader(slots=slots, sum_bits=sum_bits, read_latency=read_latency)
    m = Module()
    m.submodules.dut = dut
    sums_port(m, dut, sums, sum_bits, read_latency)
    out = []

    async def testbench(ctx):
        for slot, count, sum_bytes, binary32 in runs:
            ctx.set(dut.start, 1)
            ctx.set(dut.slot, slot)
            ctx.set(dut.count, count)
            ctx.set(dut.sum_bytes, sum_bytes)
            ctx.set(dut.binary32, binary32)
            await ctx.tick()
            ctx.set(dut.start, 0)
            got, cycles, lasts = bytearray(), [], []
            for cycle in range(1, 10_000):
                assert ctx.get(dut.busy) or not got or lasts[-1], "busy fell before the last byte"
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                if ready and ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload.data))
                    cycles.append(cycle)
                    lasts.append(ctx.get(dut.o.payload.last))
                await ctx.tick()
                if lasts and lasts[-1]:
                    break
            ctx.set(dut.o.ready, 0)
            assert not ctx.get(dut.busy)
            out.append((bytes(got), cycles, lasts))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out, sums


@pytest.mark.parametrize("slots, sum_bits, read_latency", [(24, 96, 3), (9, 20, 3), (5, 128, 0), (7, 40, 1)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_runs_are_the_contracts_bytes(slots, sum_bits, read_latency, stall):
    """Every width (1 .. the widest, binary32), runs of one sum and of every slot, under
    back-pressure: the bytes and the ``last`` of READ_SUMS' body."""
    widest = sum_width(sum_bits)
    rng = random.Random(slots * sum_bits)
    runs = [(0, slots, widest, False), (slots - 1, 1, 1, False), (0, slots, FLOAT_SUM_BYTES, True),
            (slots - 1, 1, FLOAT_SUM_BYTES, True)]
    for _ in range(6):
        slot = rng.randrange(slots)
        runs.append((slot, rng.randint(1, slots - slot), rng.randint(1, widest), False))
        runs.append((slot, rng.randint(1, slots - slot), FLOAT_SUM_BYTES, True))
    out, sums = simulate(slots, sum_bits, read_latency, runs, stall=stall, seed=sum_bits + read_latency)
    for (slot, count, sum_bytes, binary32), (got, _, lasts) in zip(runs, out):
        assert got == expected_bytes(sums[slot:slot + count], sum_bytes, binary32), (slot, count, sum_bytes)
        assert lasts == [0] * (len(got) - 1) + [1]


@pytest.mark.parametrize("read_latency", [0, 3])
def test_a_byte_a_cycle(read_latency):
    """With ``o.ready`` high: the first byte :attr:`SumReader.latency` cycles after ``start``
    (``SumToFloat.latency`` more for binary32), then one every cycle, at one byte a sum too."""
    from hw.sum_float import SumToFloat

    slots, sum_bits = 40, 96
    runs = [(0, slots, 1, False), (3, 30, 2, False), (0, slots, sum_width(sum_bits), False),
            (0, slots, FLOAT_SUM_BYTES, True)]
    out, _ = simulate(slots, sum_bits, read_latency, runs, stall=0.0, seed=1)
    with unelaborated():
        latency = SumReader(slots=slots, sum_bits=sum_bits, read_latency=read_latency).latency
    for (_, count, sum_bytes, binary32), (_, cycles, _) in zip(runs, out):
        first = latency + (SumToFloat.latency if binary32 else 0)
        assert cycles == list(range(first, first + count * sum_bytes)), (sum_bytes, binary32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(slots=0, sum_bits=96, read_latency=3), "slots"),
    (dict(slots=4, sum_bits=1, read_latency=3), "sum_bits"),
    (dict(slots=4, sum_bits=129, read_latency=3), "sum_bits"),
    (dict(slots=4, sum_bits=96, read_latency=-1), "read_latency"),
])
def test_bad_parameters(kwargs, match):
    with unelaborated(), pytest.raises(ValueError, match=match):
        SumReader(**kwargs)
