# amaranth: UnusedElaboratable=no
"""Popcount trees on the Amaranth simulator, against ``sw.bitplanes.popcount``."""

import random

import numpy as np
import pytest
from amaranth.hdl import EnableInserter, Module, Signal
from amaranth.utils import bits_for

from hw.popcount import (ARCHS, PopcountTree, _level, _plan_chain, popcount_depth,
                         popcount_max_stages, popcount_tree)
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
] + [(64, 3, "chain"), (100, 4, "dadda"), (256, 2, "chain"), (256, 0, "packed"), (256, 3, "packed"),
      (256, 8, "packed"), (33, 2, "packed")]


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
    # "packed" lays out the rows of "chain": the same levels, the same stage limits.
    for width in range(1, 600):
        assert popcount_depth(width, arch="packed") == popcount_depth(width)
        # Fused with a mask its tree is at most as deep (spare levels pass the count through).
        assert _level(_plan_chain(0, width, pairs=True)) <= popcount_depth(width)
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


def masked_pipeline(width: int, stages: int, arch: str, words: int, seed):
    """``popcount_tree(m, a, mask=b)`` fed a pair of words every cycle: every
    count must be ``popcount(a & b)`` of the pair ``stages`` cycles earlier."""
    m = Module()
    a, b = Signal(width), Signal(width)
    count = popcount_tree(m, a, stages=stages, arch=arch, mask=b)
    assert len(count) == bits_for(width)
    rng = random.Random(seed)
    firsts = random_words(rng, width, words)
    seconds = random_words(rng, width, words)
    rng.shuffle(seconds)
    expected = reference([x & y for x, y in zip(firsts, seconds)])

    async def tb(ctx):
        for cycle, (x, y) in enumerate(zip(firsts, seconds)):
            ctx.set(a, x)
            ctx.set(b, y)
            if stages == 0:
                assert ctx.get(count) == expected[cycle], (x, y)
                continue
            await ctx.tick()
            if cycle + 1 >= stages:
                assert ctx.get(count) == expected[cycle + 1 - stages], cycle

    simulate(m, tb)


@pytest.mark.parametrize("arch", ARCHS)
def test_mask_exhaustive_small(arch):
    """Every pair of 5-bit words (combinational): the count of ``a & b``."""
    width = 5
    m = Module()
    a, b = Signal(width), Signal(width)
    count = popcount_tree(m, a, arch=arch, mask=b)

    async def tb(ctx):
        for x in range(1 << width):
            for y in range(1 << width):
                ctx.set(a, x)
                ctx.set(b, y)
                assert ctx.get(count) == bin(x & y).count("1"), (x, y)

    simulate(m, tb)


MASK_CASES = [
    (width, stages, "packed")
    for width in (1, 2, 3, 4, 5, 6, 7, 8, 11, 16, 64, 100, 256)
    for stages in sorted({0, 1, popcount_max_stages(width, arch="packed") // 2 or 1,
                          popcount_max_stages(width, arch="packed")})
] + [(64, 6, "chain"), (100, 3, "dadda")]


@pytest.mark.parametrize("width, stages, arch", MASK_CASES)
def test_mask_random_and_latency(width, stages, arch):
    """Random pairs, one per cycle: exact, with a latency of exactly ``stages``
    (a fused tree shallower than ``popcount_depth`` keeps it)."""
    masked_pipeline(width, stages, arch, 150 if width > 1 else 20, seed=f"{width}-{stages}-{arch}")


@pytest.mark.parametrize("width", (9, 256))
def test_packed_small_chains(width, monkeypatch):
    """Carry chains cut short (a chain per row, and no row fitting): still exact."""
    import hw.popcount
    for positions in (1, 5):
        monkeypatch.setattr(hw.popcount, "CHAIN_POSITIONS", positions)
        words = random_words(random.Random(width), width, 60)
        assert run_stream(PopcountTree(width, stages=2, arch="packed"), words, seed=5, gap=0.2,
                          stall=0.2) == reference(words)
        masked_pipeline(width, 1, "packed", 40, seed=positions)


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
    with pytest.raises(ValueError, match=r"mask must be as wide as bits \(8\), got 7 bits"):
        popcount_tree(m, Signal(8), mask=Signal(7))


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
