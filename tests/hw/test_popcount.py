# amaranth: UnusedElaboratable=no
"""Popcount trees on the Amaranth simulator, against ``sw.bitplanes.popcount``."""

import random

import numpy as np
import pytest
from amaranth.hdl import EnableInserter, Module, Signal
from amaranth.utils import bits_for

from hw.popcount import (ARCHS, PopcountTree, popcount_depth, popcount_max_stages,
                         popcount_tree)
from sim.amaranth_sim import simulate, stream_get_n, stream_put_all
from sw.bitplanes import popcount


def reference(words) -> list[int]:
    # object dtype: words may be wider than 64 bits.
    return popcount(np.array(words, dtype=object)).tolist()


def random_words(rng: random.Random, width: int, count: int) -> list[int]:
    # Uniform words have popcount ~ width/2; mix in sparse and dense words and
    # the extremes so that every output bit and carry gets exercised.
    top = (1 << width) - 1
    words = [0, top]
    for _ in range(count - 2):
        kind = rng.randrange(4)
        word = rng.getrandbits(width)
        if kind == 1:
            word &= rng.getrandbits(width) & rng.getrandbits(width)
        elif kind == 2:
            word |= rng.getrandbits(width) | rng.getrandbits(width)
        words.append(word)
    rng.shuffle(words)
    return words


def run_stream(dut: PopcountTree, words, *, seed: int, gap: float, stall: float) -> list[int]:
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, words, rng=random.Random(seed), gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(words), rng=random.Random(seed + 1),
                                      stall=stall))

    simulate(dut, producer, consumer, deadline=1e-8 * 40 * (len(words) + 10))
    return got


CASES = [
    (width, stages, arch)
    for arch in ARCHS
    for width in (1, 2, 3, 4, 7, 8, 9, 64, 100)
    for stages in sorted({0, 1, popcount_max_stages(width, arch=arch)})
] + [(64, 3, "chain"), (100, 4, "dadda"), (256, 2, "chain")]


@pytest.mark.parametrize("width, stages, arch", CASES)
def test_stream_random(width, stages, arch):
    rng = random.Random(f"{width}-{stages}-{arch}")
    words = random_words(rng, width, 200 if width > 1 else 20)
    dut = PopcountTree(width, stages=stages, arch=arch)
    got = run_stream(dut, words, seed=width * 100 + stages, gap=0.3, stall=0.3)
    assert got == reference(words)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("width", (5, 64))
def test_full_throughput_and_latency(width, arch):
    """No gaps, no back-pressure: one word per cycle, first after ``stages``."""
    stages = popcount_max_stages(width, arch=arch)
    dut = PopcountTree(width, stages=stages, arch=arch)
    words = random_words(random.Random(width), width, 50)
    got, timing = [], []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(len(words) + stages + 1):
            if cycle < len(words):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, words[cycle])
            else:
                ctx.set(dut.i.valid, 0)
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            assert ready
            if valid:
                got.append(payload)
                timing.append(cycle)

    simulate(dut, tb)
    assert got == reference(words)
    assert timing == list(range(stages, stages + len(words)))


@pytest.mark.parametrize("arch", ARCHS)
def test_exhaustive_small(arch):
    """Every 10-bit word, combinationally."""
    width = 10
    dut = PopcountTree(width, arch=arch)
    words = list(range(1 << width))

    async def tb(ctx):
        for word in words:
            ctx.set(dut.i.payload, word)
            assert ctx.get(dut.o.payload) == bin(word).count("1"), word

    simulate(dut, tb)


def test_builder_with_enable_inserter():
    """The builder's registers follow an EnableInserter on the calling module,
    as a PE stalling its whole pipeline uses them."""
    width, stages = 33, 3
    m = Module()
    bits = Signal(width)
    run = Signal()
    count = popcount_tree(m, bits, stages=stages, name="pc")
    assert len(count) == bits_for(width)
    top = EnableInserter(run)(m)
    words = random_words(random.Random(7), width, 40)
    schedule = random.Random(8)

    async def tb(ctx):
        # Model: a shift register of `stages` words that moves when run is high.
        pipe = [0] * stages
        for word in words:
            enable = schedule.random() < 0.6
            ctx.set(bits, word)
            ctx.set(run, enable)
            await ctx.tick()
            if enable:
                pipe = [bin(word).count("1")] + pipe[:-1]
            assert ctx.get(count) == pipe[-1]

    simulate(top, tb)


@pytest.mark.parametrize("arch", ARCHS)
def test_back_to_back_trees_in_one_module(arch):
    """Several anonymous trees in one module, inside control flow."""
    m = Module()
    a, b, sel = Signal(12), Signal(5), Signal()
    out = Signal(4)
    with m.If(sel):
        m.d.comb += out.eq(popcount_tree(m, a, arch=arch))
    with m.Else():
        m.d.comb += out.eq(popcount_tree(m, b, arch=arch))

    async def tb(ctx):
        rng = random.Random(3)
        for _ in range(100):
            va, vb, vs = rng.getrandbits(12), rng.getrandbits(5), rng.getrandbits(1)
            ctx.set(a, va)
            ctx.set(b, vb)
            ctx.set(sel, vs)
            assert ctx.get(out) == bin(va if vs else vb).count("1")

    simulate(m, tb)


def test_depth():
    assert [popcount_depth(w) for w in (1, 2, 3, 4, 7, 8, 15, 16, 64, 256)] == \
        [0, 1, 1, 2, 2, 3, 3, 4, 6, 8]
    assert [popcount_depth(w, arch="dadda") for w in (1, 2, 3, 4, 6, 9, 64)] == \
        [0, 1, 2, 3, 4, 5, 11]
    assert popcount_max_stages(1) == 1
    assert popcount_max_stages(64) == 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0), "width must be >= 1, got 0"),
    (dict(width=-3), "width must be >= 1, got -3"),
    (dict(width=4.0), "width must be an integer, got 4.0"),
    (dict(width=True), "width must be an integer, got True"),
    (dict(width=8, stages=-1), r"stages must be in 0\.\.3 \(one register per level of a 8-bit 'chain'"),
    (dict(width=8, stages=4), r"stages must be in 0\.\.3"),
    (dict(width=1, stages=2), r"stages must be in 0\.\.1"),
    (dict(width=8, stages=1.0), "stages must be an integer"),
    (dict(width=8, arch="wallace"), "arch must be one of"),
])
def test_component_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PopcountTree(**kwargs)


def test_builder_validation():
    m = Module()
    with pytest.raises(ValueError, match=r"len\(bits\) must be >= 1, got 0"):
        popcount_tree(m, Signal(0))
    with pytest.raises(ValueError, match=r"stages must be in 0\.\.6"):
        popcount_tree(m, Signal(64), stages=7)
    with pytest.raises(ValueError, match="clocked domain"):
        popcount_tree(m, Signal(8), domain="comb")
    with pytest.raises(ValueError, match="arch must be one of"):
        popcount_tree(m, Signal(8), arch="sum")


def test_signature():
    dut = PopcountTree(100, stages=2)
    assert dut.i.payload.shape().width == 100
    assert dut.o.payload.shape().width == bits_for(100) == 7
    assert dut.latency == 2


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_every_width_sweep(arch):
    """Widths 1..130 at every legal stage count (long)."""
    for width in range(1, 131):
        for stages in range(popcount_max_stages(width, arch=arch) + 1):
            rng = random.Random(width * 31 + stages)
            words = random_words(rng, width, 40)
            dut = PopcountTree(width, stages=stages, arch=arch)
            assert run_stream(dut, words, seed=width + stages, gap=0.2, stall=0.2) == \
                reference(words), (width, stages)
