"""hw.dot_product.DotProduct against sw.bitplanes.signed_matmul, in the Amaranth simulator.

Every expected number comes from ``signed_matmul`` (Eqn 3 plus the
signed-odd-code corrections); the PE must agree bit for bit in both modes, at
every bitwidth pair and signedness, with valid gaps, back-pressure and resets.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Shape, signed, unsigned
from amaranth.sim import DomainReset

from hw.dot_product import MODES, DotProduct
from hw.popcount import popcount_max_stages
from sim.amaranth_sim import simulate, stream_get, stream_get_n, stream_put_all
from sw.bitplanes import signed_matmul
from sw.contract.codes import MAX_CODE_BITS, levels_or_none
from tests.hw.helpers import unelaborated, with_sync_domain

SIGNEDNESS = [(False, False), (True, False), (False, True), (True, True)]


# --------------------------------------------------------------------------- reference

def expected(dut, xs, ys) -> list[int]:
    """One dot product per pair of code vectors, from ``sw.bitplanes.signed_matmul``."""
    return [int(signed_matmul(np.array([x]), levels_or_none(dut.m_bits, dut.m_signed), dut.m_bits,
                              np.array([y]), levels_or_none(dut.v_bits, dut.v_signed), dut.v_bits)[0, 0])
            for x, y in zip(xs, ys)]


def random_codes(rng: random.Random, bits: int, count: int) -> list[int]:
    # Uniform codes, with some vectors pinned to the extremes so the range
    # ends (and every carry) are reached.
    top = (1 << bits) - 1
    match rng.randrange(6):
        case 0: return [top] * count
        case 1: return [0] * count
        case 2: return [rng.choice((0, top)) for _ in range(count)]
        case _: return [rng.randint(0, top) for _ in range(count)]


def random_problem(rng, dut, vectors, *, beats=None):
    """``vectors`` dot products of ``1 .. max_beats`` beats each (or exactly ``beats``)."""
    xs, ys = [], []
    for _ in range(vectors):
        n = beats if beats is not None else rng.randint(1, dut.max_beats)
        xs.append(random_codes(rng, dut.m_bits, n * dut.length))
        ys.append(random_codes(rng, dut.v_bits, n * dut.length))
    return xs, ys


def framed(dut, xs, ys) -> list[dict]:
    """Input payloads: each vector pair cut into beats of ``length`` lanes, ``last`` on the final one."""
    words = []
    for x, y in zip(xs, ys):
        beats = len(x) // dut.length
        for b in range(beats):
            lanes = slice(b * dut.length, (b + 1) * dut.length)
            words.append({"m": x[lanes], "v": y[lanes], "last": int(b == beats - 1)})
    return words


# --------------------------------------------------------------------------- simulation

def run_stream(dut, xs, ys, *, seed=0, gap=0.3, stall=0.3) -> list[int]:
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, framed(dut, xs, ys), rng=random.Random(seed), gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(xs), rng=random.Random(seed + 1), stall=stall))

    simulate(dut, producer, consumer, deadline=None)
    return got


def check_random(length, m_bits, v_bits, m_signed, v_signed, *, mode="parallel", max_beats=2,
                 vectors=12, seed=0, **kwargs):
    dut = DotProduct(length, m_bits=m_bits, v_bits=v_bits, m_signed=m_signed, v_signed=v_signed,
                     mode=mode, max_beats=max_beats, **kwargs)
    rng = random.Random(f"{length}-{m_bits}-{v_bits}-{m_signed}-{v_signed}-{mode}-{seed}")
    xs, ys = random_problem(rng, dut, vectors)
    assert run_stream(dut, xs, ys, seed=seed) == expected(dut, xs, ys)


def bitwidth_cases(full: bool):
    """Every (m_bits, v_bits) pair.  The quick set rotates the signedness and the
    mode so that each bitwidth of each side meets all four signednesses and
    both modes; the full set (slow) is the whole product."""
    for m_bits in range(1, MAX_CODE_BITS + 1):
        for v_bits in range(1, MAX_CODE_BITS + 1):
            if full:
                for signs in SIGNEDNESS:
                    for mode in MODES:
                        yield m_bits, v_bits, *signs, mode
            else:
                signs = SIGNEDNESS[(m_bits + v_bits) % 4]
                mode = MODES[(m_bits + v_bits) // 4 % 2]
                yield m_bits, v_bits, *signs, mode


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("m_bits, v_bits, m_signed, v_signed, mode", list(bitwidth_cases(full=False)))
def test_bitwidths(m_bits, v_bits, m_signed, v_signed, mode):
    check_random(3, m_bits, v_bits, m_signed, v_signed, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize("m_bits, v_bits, m_signed, v_signed, mode", list(bitwidth_cases(full=True)))
def test_bitwidths_full(m_bits, v_bits, m_signed, v_signed, mode):
    check_random(4, m_bits, v_bits, m_signed, v_signed, mode=mode, max_beats=3, vectors=20)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m_signed, v_signed", SIGNEDNESS)
@pytest.mark.parametrize("length", [1, 2, 17, 64])
def test_lengths(length, m_signed, v_signed, mode):
    check_random(length, 2, 3, m_signed, v_signed, mode=mode, max_beats=3, vectors=8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stages", [1, "max"])
def test_pipelined(stages, mode):
    length = 20
    stages = popcount_max_stages(length) if stages == "max" else stages
    check_random(length, 3, 2, True, True, mode=mode, popcount_stages=stages, vectors=16)
    check_random(length, 2, 4, False, True, mode=mode, popcount_stages=stages, vectors=16,
                 popcount_arch="dadda")


@pytest.mark.parametrize("length", [1, 5, 64])
def test_xnor_equals_general_formula(length):
    """+-1 x +-1: the XNOR form (``length - 2 popcount(x ^ y)``) and the general
    AND + row-sum datapath both give signed_matmul's numbers."""
    rng = random.Random(length)
    auto = DotProduct(length, m_bits=1, v_bits=1, m_signed=True, v_signed=True, max_beats=4)
    general = DotProduct(length, m_bits=1, v_bits=1, m_signed=True, v_signed=True, max_beats=4,
                         xnor=False)
    assert auto.xnor and not general.xnor
    xs, ys = random_problem(rng, auto, 40)
    want = expected(auto, xs, ys)
    assert want == [sum((2 * a - 1) * (2 * b - 1) for a, b in zip(x, y)) for x, y in zip(xs, ys)]
    assert run_stream(auto, xs, ys, seed=1) == want
    assert run_stream(general, xs, ys, seed=2) == want


def test_xnor_only_for_binary_signed():
    with unelaborated():
        for m_signed, v_signed in SIGNEDNESS[:3]:
            assert not DotProduct(4, m_bits=1, v_bits=1, m_signed=m_signed, v_signed=v_signed).xnor
        assert not DotProduct(4, m_bits=2, v_bits=1, m_signed=True, v_signed=True).xnor


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m_signed, v_signed", SIGNEDNESS)
def test_range_extremes(m_signed, v_signed, mode):
    """Vectors of extreme codes over ``max_beats`` beats hit both ends of
    ``value_range``, which ``out_shape`` must hold exactly."""
    dut = DotProduct(3, m_bits=3, v_bits=2, m_signed=m_signed, v_signed=v_signed, mode=mode,
                     max_beats=4)
    n = dut.length * dut.max_beats
    xs, ys = [], []
    for x in (0, 7):
        for y in (0, 3):
            xs.append([x] * n)
            ys.append([y] * n)
    got = run_stream(dut, xs, ys, gap=0.0, stall=0.0)
    assert got == expected(dut, xs, ys)
    assert (min(got), max(got)) == dut.value_range
    lo, hi = dut.value_range
    assert dut.out_shape == Shape.cast(range(lo, hi + 1))


@pytest.mark.parametrize("mode", MODES)
def test_latency_and_throughput(mode):
    """No gaps, no back-pressure: one beat per ``cycles_per_beat`` cycles, each
    result ``latency`` cycles after its last beat is accepted."""
    stages = 2
    dut = DotProduct(8, m_bits=2, v_bits=3, m_signed=True, v_signed=False, mode=mode,
                     max_beats=3, popcount_stages=stages)
    assert dut.latency == stages + 1
    assert dut.cycles_per_beat == (6 if mode == "serial" else 1)
    rng = random.Random(5)
    xs, ys = random_problem(rng, dut, 10)
    words = framed(dut, xs, ys)
    accepted, results = [], []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        index = cycle = 0
        while len(results) < len(xs):
            if index < len(words):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, words[index])
            else:
                ctx.set(dut.i.valid, 0)
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            if ready and index < len(words):
                accepted.append(cycle)
                index += 1
            if valid:
                results.append((cycle, payload))
            cycle += 1

    simulate(dut, tb)
    assert [value for _, value in results] == expected(dut, xs, ys)
    cpb = dut.cycles_per_beat
    assert accepted == [cpb * (i + 1) - 1 for i in range(len(words))]
    last_beats = [accepted[i] for i, word in enumerate(words) if word["last"]]
    assert [cycle for cycle, _ in results] == [c + dut.latency for c in last_beats]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sent_before_reset", [1, 4, 7])
def test_reset_mid_stream(sent_before_reset, mode):
    """A reset drops the partial sums and results in flight; afterwards the PE
    starts a fresh dot product with the next beat."""
    dut = DotProduct(5, m_bits=3, v_bits=2, m_signed=True, v_signed=True, mode=mode,
                     max_beats=3, popcount_stages=1)
    rng = random.Random(sent_before_reset)
    before = random_problem(rng, dut, 4, beats=3)
    after = random_problem(rng, dut, 8)
    top, cd = with_sync_domain(dut)
    got, done = [], []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, framed(dut, *before)[:sent_before_reset],
                             rng=random.Random(3), gap=0.2)
        ctx.set(cd.rst, 1)
        for _ in range(2):
            await ctx.tick()
        ctx.set(cd.rst, 0)
        assert not ctx.get(dut.o.valid)
        got.clear()  # only what follows the reset is checked
        done.append(True)
        await stream_put_all(ctx, dut.i, framed(dut, *after), rng=random.Random(4), gap=0.2)

    async def consumer(ctx):
        while not done or len(got) < len(after[0]):
            try:
                got.append(await stream_get(ctx, dut.o, rng=random.Random(5), stall=0.6))
            except DomainReset:  # a transfer cut by the reset never happened
                pass

    simulate(top, producer, consumer, deadline=None)
    assert got == expected(dut, *after)


def test_holds_result_under_back_pressure():
    """A result waiting on ``o.ready`` stays put, and the input stalls behind it."""
    dut = DotProduct(4, m_bits=2, v_bits=2, m_signed=False, v_signed=True)
    xs, ys = [[1, 2, 3, 0], [3, 3, 3, 3]], [[0, 1, 2, 3], [3, 0, 3, 0]]
    want = expected(dut, xs, ys)

    async def tb(ctx):
        words = framed(dut, xs, ys)
        ctx.set(dut.i.payload, words[0])
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.payload, words[1])
        for _ in range(5):
            await ctx.tick()
            assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == want[0]
            assert not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == want[1]

    simulate(dut, tb)


def test_signature():
    with unelaborated():
        dut = DotProduct(6, m_bits=3, v_bits=5, m_signed=True, v_signed=False, max_beats=4)
        assert Shape.cast(dut.beat_layout).width == 6 * 3 + 6 * 5 + 1
        assert dut.i.payload.m.shape().length == 6
        assert dut.value_range == (-4 * 6 * 7 * 31, 4 * 6 * 7 * 31)
        assert dut.out_shape == signed(14)  # 5208 < 2**13
        unsigned_dut = DotProduct(6, m_bits=3, v_bits=5, max_beats=4)
        assert unsigned_dut.out_shape == unsigned(13)
        assert unsigned_dut.value_range == (0, 4 * 6 * 7 * 31)


@pytest.mark.parametrize("kwargs, message", [
    (dict(length=0), "length must be >= 1"),
    (dict(length=2.0), "length must be an integer"),
    (dict(length=True), "length must be an integer"),
    (dict(m_bits=0), r"m_bits must be in 1\.\.8"),
    (dict(v_bits=9), r"v_bits must be in 1\.\.8"),
    (dict(m_bits=32), r"m_bits must be in 1\.\.8"),
    (dict(m_signed=1), "m_signed must be True or False"),
    (dict(v_signed="yes"), "v_signed must be True or False"),
    (dict(mode="systolic"), "mode must be one of"),
    (dict(max_beats=0), "max_beats must be >= 1"),
    (dict(popcount_stages=-1), r"popcount_stages must be in 0\.\.3"),
    (dict(popcount_stages=4), r"popcount_stages must be in 0\.\.3"),
    (dict(popcount_arch="wallace"), "popcount_arch must be one of"),
    (dict(xnor=True), "xnor=True needs m_bits == v_bits == 1"),
    (dict(m_bits=1, v_bits=1, m_signed=True, xnor=True), "xnor=True needs"),
    (dict(m_bits=1, v_bits=1, m_signed=True, v_signed=True, xnor=1), "xnor must be True or False"),
])
def test_validation(kwargs, message):
    args = dict(length=8, m_bits=2, v_bits=2) | kwargs
    with unelaborated(), pytest.raises(ValueError, match=message):
        DotProduct(args.pop("length"), **args)
