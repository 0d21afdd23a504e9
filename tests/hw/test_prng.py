"""hw.prng.XorShift32 against sw.prng.XorShift32, bit for bit, in the Amaranth simulator."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment

from hw.prng import DEFAULT_SEED, XorShift32
from sim.amaranth_sim import simulate, stream_get_n, stream_put
from sw.prng import NOISE_BITS, STATE_BITS, XorShift32 as RefXorShift32
from tests.hw.helpers import unelaborated, with_sync_domain

SEEDS = [1, DEFAULT_SEED, 0x8000_0000, 2**STATE_BITS - 1, 0xDEAD_BEEF]


def _run(dut, testbench):
    """Simulate ``dut`` under an explicit ``sync`` domain, so ``testbench(ctx, rst)`` can pulse its reset."""
    top, domain = with_sync_domain(dut)

    async def bench(ctx):
        await testbench(ctx, domain.rst)

    simulate(top, bench, deadline=None)


async def _take(ctx, dut, count, rng=None, stall=0.0):
    """Take ``count`` draws, holding ``noise.ready`` low for random cycles when ``stall`` > 0."""
    assert ctx.get(dut.noise.valid) == 1
    return [int(r) for r in await stream_get_n(ctx, dut.noise, count, rng=rng, stall=stall)]


@pytest.mark.parametrize("seed", SEEDS)
def test_draws_match_software(seed):
    count = 3000
    dut = XorShift32(seed)
    expected = RefXorShift32(seed).draw(count).tolist()

    async def testbench(ctx, rst):
        assert await _take(ctx, dut, count) == expected

    _run(dut, testbench)


def test_idle_cycles_do_not_step():
    seed = 0x1234_5678
    dut = XorShift32(seed)
    expected = RefXorShift32(seed).draw(1000).tolist()

    async def testbench(ctx, rst):
        assert await _take(ctx, dut, 1000, random.Random(7), stall=0.5) == expected

    _run(dut, testbench)


def test_seed_load_at_run_time():
    first, second = 0x0BAD_F00D, 0x1357_9BDF
    dut = XorShift32(first)
    expected = (RefXorShift32(first).draw(37).tolist() + RefXorShift32(second).draw(500).tolist()
                + RefXorShift32(first).draw(20).tolist())

    async def testbench(ctx, rst):
        got = await _take(ctx, dut, 36)
        # A load in the same cycle as a taken draw: that draw is the old state's.
        ctx.set(dut.noise.ready, 1)
        got.append(ctx.get(dut.noise.payload))
        assert ctx.get(dut.seed.ready) == 1
        await stream_put(ctx, dut.seed, second)
        got += await _take(ctx, dut, 500)
        # A load while idle.
        await stream_put(ctx, dut.seed, first)
        got += await _take(ctx, dut, 20)
        assert got == expected

    _run(dut, testbench)


def test_zero_seed_is_ignored():
    seed = 0x0000_0001
    dut = XorShift32(seed)
    expected = RefXorShift32(seed).draw(100).tolist()

    async def testbench(ctx, rst):
        got = await _take(ctx, dut, 50)
        await stream_put(ctx, dut.seed, 0)
        got += await _take(ctx, dut, 50)
        assert got == expected

    _run(dut, testbench)


def test_reset_restores_the_constructor_seed():
    seed = 0xCAFE_F00D
    dut = XorShift32(seed)
    expected = RefXorShift32(seed).draw(200).tolist()

    async def testbench(ctx, rst):
        await stream_put(ctx, dut.seed, 0x7777_7777)
        await _take(ctx, dut, 123)
        ctx.set(rst, 1)
        ctx.set(dut.noise.ready, 1)  # stepping is held off while in reset
        for _ in range(3):  # plain ticks: `repeat` raises DomainReset
            await ctx.tick()
        ctx.set(rst, 0)
        assert await _take(ctx, dut, 200) == expected

    _run(dut, testbench)


def test_widths_come_from_the_software_contract():
    dut = XorShift32()
    assert dut.init_seed == DEFAULT_SEED
    assert len(dut.noise.payload) == NOISE_BITS
    assert len(dut.seed.payload) == STATE_BITS
    Fragment.get(dut, None)  # elaborate it (and keep UnusedElaboratable quiet)


@pytest.mark.parametrize("seed", [0, -1, 2**STATE_BITS, True, 1.0, "1", None])
def test_rejects_bad_seeds(seed):
    with unelaborated(), pytest.raises(ValueError, match="seed must be"):
        XorShift32(seed)


def test_converts_to_verilog():
    text = verilog.convert(XorShift32(), name="xorshift32")
    assert "noise__payload" in text and "seed__valid" in text
