"""hw.gradient_quantizer.GradientQuantizer against sw.numeric.gradient_codes, in the Amaranth simulator.

Every check compares codes, scales and framing bit for bit with the software
contract, fed with the draws of ``sw.prng.XorShift32`` in element order.
"""

import random

import pytest
import torch
from amaranth.back import verilog
from amaranth.hdl import Fragment
from amaranth.sim import DomainReset

from hw.gradient_quantizer import MAX_WIDTH, GradientQuantizer
from sim.amaranth_sim import simulate, stream_get, stream_get_n, stream_put, stream_put_all
from sw.numeric import gradient_codes, levels
from sw.prng import XorShift32
from tests.hw.helpers import unelaborated, with_sync_domain

SEED = 0x2545_F491


# --------------------------------------------------------------------------- reference

def expected_beats(samples, gbits, seed=SEED):
    """``(code, scale, last)`` per element: each sample through ``gradient_codes`` with its draws."""
    prng = XorShift32(seed)
    beats = []
    for sample in samples:
        g = torch.tensor([sample], dtype=torch.int64)
        r = torch.from_numpy(prng.draw_like(g.shape))
        codes, m = gradient_codes(g, r, gbits)
        beats += [(int(c), int(m[0]), i == len(sample) - 1) for i, c in enumerate(codes[0].tolist())]
    return beats


def random_sample(rng, width, length, scale_bits=None):
    """``length`` gradients in the signed ``width``-bit range (or a narrower ``scale_bits`` range)."""
    bits = width if scale_bits is None else min(width, scale_bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return [rng.randint(lo, hi) for _ in range(length)]


# --------------------------------------------------------------------------- simulation

def framed(samples):
    """Input payloads: every element, ``last`` on the final one of each sample."""
    return [{"grad": g, "last": int(i == len(s) - 1)} for s in samples for i, g in enumerate(s)]


def as_beat(payload):
    return (int(payload.code), int(payload.scale), bool(payload.last))


async def expect_quiet(ctx, dut):
    """Nothing more may come out: no output beat without an input for it."""
    ctx.set(dut.o.ready, 1)
    for _ in range(dut.latency + 4):
        assert not ctx.get(dut.o.valid), "an output beat with no input for it"
        await ctx.tick()


def run_samples(dut, samples, *, gap=0.0, stall=0.0, seed=0):
    """Feed ``samples`` with random valid gaps and back-pressure; the output beats."""
    words = framed(samples)
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, words, rng=random.Random(seed), gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(words), rng=random.Random(seed + 1), stall=stall))
        await expect_quiet(ctx, dut)

    simulate(dut, producer, consumer)
    return [as_beat(p) for p in got]


# --------------------------------------------------------------------------- tests

CONFIGS = [
    # width, depth, sample lengths, gap, stall
    pytest.param(8, 16, (1, 16), 0.3, 0.3, id="w8-d16-random"),
    pytest.param(16, 5, (1, 5), 0.0, 0.5, id="w16-d5-backpressure"),
    pytest.param(24, 33, (20, 33), 0.5, 0.0, id="w24-d33-gaps"),
]


@pytest.mark.parametrize("gbits", range(1, 9))
@pytest.mark.parametrize("width, depth, lengths, gap, stall", CONFIGS)
def test_matches_gradient_codes(gbits, width, depth, lengths, gap, stall):
    rng = random.Random(f"{gbits}-{width}-{depth}")
    samples = []
    for _ in range(24):
        # Mix full-range samples with small-magnitude ones (large relative noise, many ties).
        bits = rng.choice([width, width, rng.randint(1, width)])
        samples.append(random_sample(rng, width, rng.randint(*lengths), bits))
    dut = GradientQuantizer(gbits=gbits, width=width, depth=depth, seed=SEED)
    got = run_samples(dut, samples, gap=gap, stall=stall, seed=gbits)
    assert got == expected_beats(samples, gbits)


@pytest.mark.parametrize("gbits", [1, 2, 5, 8])
def test_batch_uses_draw_like_in_row_major_order(gbits):
    """A (B, C, H, W) batch, sample after sample, equals one ``gradient_codes`` call."""
    torch.manual_seed(gbits)
    g = torch.randint(-2000, 2000, (3, 2, 3, 4), dtype=torch.int64)
    g[1] = -g[1].abs()                                   # a sample whose max is negative
    r = torch.from_numpy(XorShift32(SEED).draw_like(g.shape))
    codes, m = gradient_codes(g, r, gbits)
    dut = GradientQuantizer(gbits=gbits, width=12, depth=24, seed=SEED)
    got = run_samples(dut, g.reshape(g.shape[0], -1).tolist(), gap=0.2, stall=0.2)
    assert [c for c, _, _ in got] == codes.reshape(-1).tolist()
    assert [s for _, s, _ in got] == m.repeat_interleave(24).tolist()


@pytest.mark.parametrize("gbits", range(1, 9))
def test_edge_samples(gbits):
    width = 6
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    samples = [
        [0] * 7,                      # all zero: m = 0, every code n
        [0],
        [-5, -1, -3, -5],             # max|g| from a negative value, nothing positive
        [-1, -1],
        [lo, hi, 0, lo, hi],          # the extremes of the input width
        [lo],                         # |g| = 2**(width-1): the widest scale
        [hi, hi - 1],
        [1, 0, -1],
        [3, 0, 0, 0, 0, 0, 0, 0],
    ]
    dut = GradientQuantizer(gbits=gbits, width=width, depth=8, seed=SEED)
    got = run_samples(dut, samples, gap=0.25, stall=0.25, seed=gbits)
    expected = expected_beats(samples, gbits)
    assert got == expected
    assert all(c == levels(gbits) and s == 0 for c, s, _ in expected[:8])


@pytest.mark.parametrize("width", [1, 2, MAX_WIDTH])
@pytest.mark.parametrize("gbits", [1, 8])
def test_extreme_widths(gbits, width):
    rng = random.Random(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    samples = [random_sample(rng, width, rng.randint(1, 6)) for _ in range(10)]
    samples += [[lo, hi], [hi, lo, 0], [lo]]
    dut = GradientQuantizer(gbits=gbits, width=width, depth=6, seed=SEED)
    assert run_samples(dut, samples, gap=0.3, stall=0.3) == expected_beats(samples, gbits)


@pytest.mark.parametrize("gbits", [1, 4])
def test_depth_one(gbits):
    samples = [[v] for v in (-1, 0, 7, -8, 3)]
    dut = GradientQuantizer(gbits=gbits, width=4, depth=1, seed=SEED)
    assert run_samples(dut, samples, gap=0.3, stall=0.3) == expected_beats(samples, gbits)


def test_sample_longer_than_depth_is_cut():
    """With no ``last`` for ``depth`` elements, the ``depth``-th element ends the sample."""
    gbits, depth = 3, 4
    stream = random_sample(random.Random(5), 10, 11)    # one `last`, at the very end
    dut = GradientQuantizer(gbits=gbits, width=10, depth=depth, seed=SEED)
    got = run_samples(dut, [stream], gap=0.2, stall=0.2)
    assert got == expected_beats([stream[0:4], stream[4:8], stream[8:11]], gbits)


def test_seed_load_between_samples():
    gbits, other = 4, 0x1357_9BDF
    rng = random.Random(9)
    first = [random_sample(rng, 8, 5) for _ in range(3)]
    second = [random_sample(rng, 8, 5) for _ in range(3)]
    dut = GradientQuantizer(gbits=gbits, width=8, depth=5, seed=SEED)
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, framed(first), rng=random.Random(1), gap=0.2)
        while len(got) < 15:                            # the first samples have left
            await ctx.tick()
        assert ctx.get(dut.seed.ready)
        await stream_put(ctx, dut.seed, other)
        await stream_put_all(ctx, dut.i, framed(second), rng=random.Random(1), gap=0.2)

    async def consumer(ctx):
        for _ in range(30):
            got.append(as_beat(await stream_get(ctx, dut.o, rng=random.Random(2), stall=0.2)))

    simulate(dut, producer, consumer)
    assert got == expected_beats(first, gbits) + expected_beats(second, gbits, seed=other)


@pytest.mark.parametrize("sent_before_reset", [3, 9, 14, 22])
def test_reset_mid_stream(sent_before_reset):
    """A reset drops the samples in flight; afterwards the unit behaves as new (seed included)."""
    gbits, width, depth = 5, 9, 8
    rng = random.Random(sent_before_reset)
    before = [random_sample(rng, width, rng.randint(1, depth)) for _ in range(4)]
    after = [random_sample(rng, width, rng.randint(1, depth)) for _ in range(6)]
    dut = GradientQuantizer(gbits=gbits, width=width, depth=depth, seed=SEED)
    top, domain = with_sync_domain(dut)
    got, done = [], []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, framed(before)[:sent_before_reset], rng=random.Random(3), gap=0.2)
        await stream_put(ctx, dut.seed, 0x7777_7777)    # a run-time seed, lost in the reset
        ctx.set(domain.rst, 1)
        for _ in range(2):
            await ctx.tick()                            # plain ticks: `repeat` raises DomainReset
        ctx.set(domain.rst, 0)
        assert not ctx.get(dut.o.valid)
        got.clear()                                     # only what follows the reset is checked
        done.append(True)
        await stream_put_all(ctx, dut.i, framed(after), rng=random.Random(4), gap=0.2)

    async def consumer(ctx):
        while not done or len(got) < len(framed(after)):
            try:
                got.append(as_beat(await stream_get(ctx, dut.o, rng=random.Random(5), stall=0.4)))
            except DomainReset:                         # a transfer cut by the reset never happened
                pass
        await expect_quiet(ctx, dut)

    simulate(top, producer, consumer)
    assert got == expected_beats(after, gbits)


@pytest.mark.parametrize("gbits", [1, 8])
def test_latency_and_throughput(gbits):
    """No gaps, no back-pressure: first code ``gbits + 3`` cycles after the last input of a
    sample, one code per cycle, and one idle cycle per sample on either side."""
    count, length = 6, 10
    rng = random.Random(gbits)
    samples = [random_sample(rng, 12, length) for _ in range(count)]
    dut = GradientQuantizer(gbits=gbits, width=12, depth=length, seed=SEED)
    got, in_cycles, out_cycles = [], [], []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, framed(samples))

    async def consumer(ctx):
        got.extend(as_beat(p) for p in await stream_get_n(ctx, dut.o, count * length))

    async def monitor(ctx):
        # The cycle of every transfer, as each clock edge sees it.
        cycle = 0
        async for _, _, i_valid, i_ready, o_valid, o_ready in ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.ready):
            if i_valid and i_ready:
                in_cycles.append(cycle)
            if o_valid and o_ready:
                out_cycles.append(cycle)
            if len(out_cycles) == count * length:
                return
            cycle += 1

    simulate(dut, producer, consumer, monitor)
    assert got == expected_beats(samples, gbits)
    assert out_cycles[0] - in_cycles[length - 1] == gbits + 3 == dut.latency + 1
    step = [b - a for a, b in zip(out_cycles, out_cycles[1:])]
    assert step == [2 if (i + 1) % length == 0 else 1 for i in range(count * length - 1)]
    assert in_cycles == [k * (length + 1) + i for k in range(count) for i in range(length)]


def _rejected(match, **kwargs):
    with unelaborated(), pytest.raises(ValueError, match=match):
        GradientQuantizer(**kwargs)


@pytest.mark.parametrize("gbits", [0, 9, 32, -1, True, 2.0, "4", None])
def test_rejects_bad_gbits(gbits):
    _rejected(r"gbits must be (an integer|in 1\.\.8) \(the gradient code width G\)",
              gbits=gbits, width=8, depth=4)


@pytest.mark.parametrize("width", [0, -3, MAX_WIDTH + 1, False, 8.0])
def test_rejects_bad_width(width):
    _rejected(rf"width must be (an integer|in 1\.\.{MAX_WIDTH}) \(bits of a signed gradient\)",
              gbits=2, width=width, depth=4)


@pytest.mark.parametrize("depth", [0, -1, True, 4.0, "4"])
def test_rejects_bad_depth(depth):
    _rejected(r"depth must be (an integer|>= 1) \(the longest sample, in elements\)",
              gbits=2, width=8, depth=depth)


@pytest.mark.parametrize("seed", [0, 2**32, -5])
def test_rejects_bad_seed(seed):
    _rejected(r"seed must be in 1\.\.", gbits=2, width=8, depth=4, seed=seed)


def test_layouts_and_verilog():
    dut = GradientQuantizer(gbits=6, width=20, depth=100)
    assert dut.i_layout.size == 21 and dut.o_layout.size == 6 + 20 + 1
    assert dut.latency == 8
    text = verilog.convert(dut, name="gradient_quantizer")
    for port in ("i__payload", "i__valid", "i__ready", "o__payload", "seed__valid"):
        assert port in text
    Fragment.get(GradientQuantizer(gbits=1, width=1, depth=1), None)


@pytest.mark.parametrize("gbits", range(1, 9))
def test_division_form_equals_the_comparison_count(gbits):
    """The identity the unit is built on: the count of passed comparisons
    equals ``floor((n*(g + m) + floor(m*r / 2**15)) / 2m)`` (``n`` for ``m = 0``)."""
    n = levels(gbits)
    pairs = [(g, m) for m in (0, 1, 2, 3, 5, 16, 1000, 1 << (MAX_WIDTH - 1))
             for g in sorted({-m, -m + 1, -m // 2, -1, 0, 1, m // 3, m - 1, m}) if abs(g) <= m]
    # Draws: the multiples of 2**11 (where the comparisons tie for these m) and their
    # neighbours, the ends of the range, and a random spread.
    ties = torch.arange(0, 1 << 16, 1 << 11)
    draws = torch.cat([ties, ties + 1, ties[1:] - 1, torch.tensor([(1 << 16) - 1]),
                       torch.randint(0, 1 << 16, (4096,), generator=torch.Generator().manual_seed(gbits))])
    # One sample per (g, m): g with every draw, and one element of magnitude m to set max|g|.
    r = draws.to(torch.int64).repeat(len(pairs), 1)
    g = torch.tensor([v for v, _ in pairs], dtype=torch.int64).reshape(-1, 1).repeat(1, draws.numel())
    m = torch.tensor([v for _, v in pairs], dtype=torch.int64).reshape(-1, 1)
    g[:, 0] = m[:, 0]
    codes, scale = gradient_codes(g, r, gbits)
    assert torch.equal(scale, m[:, 0])
    dividend = n * (g + m) + ((m * r) >> 15)
    quotient = torch.where(m > 0, dividend // torch.clamp(2 * m, min=1), n)
    assert torch.equal(codes, quotient)
