"""hw.mac_array.MacArray against sw.bitplanes.signed_matmul, in the Amaranth simulator.

The array's GEMM tiles for the three training products, with PE/SIMD folding,
run-time weight loads, valid gaps, back-pressure, resets and its performance
counters; every expected number comes from ``signed_matmul``.
"""

import random

import numpy as np
import pytest
from amaranth.sim import DomainReset

from hw.dot_product import MODES
from hw.mac_array import MacArray, Product
from sim.amaranth_sim import simulate, stream_get, stream_get_n, stream_put_all
from sw.bitplanes import signed_matmul
from sw.contract.codes import levels_or_none
from tests.hw.helpers import unelaborated, with_sync_domain


# --------------------------------------------------------------------------- reference

def expected(dut, matrix, vectors) -> np.ndarray:
    """``(vectors, rows)``: every vector times the matrix, from ``signed_matmul``."""
    return signed_matmul(np.asarray(vectors), levels_or_none(dut.v_bits, dut.v_signed), dut.v_bits,
                         np.asarray(matrix), levels_or_none(dut.m_bits, dut.m_signed), dut.m_bits)


def random_codes(rng: np.random.Generator, bits: int, shape) -> np.ndarray:
    codes = rng.integers(0, 1 << bits, size=shape)
    # Some rows pinned to the extremes, so the range ends are reached.
    pinned = rng.random(shape[0]) < 0.15
    codes[pinned] = rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
    return codes


# --------------------------------------------------------------------------- simulation

def as_rows(dut, beats) -> np.ndarray:
    """Output beats (``groups`` per vector) back to ``(vectors, rows)``."""
    flat = [int(value) for beat in beats for value in beat]
    return np.array(flat, dtype=np.int64).reshape(-1, dut.rows)


def run_gemm(dut, matrix, vectors, *, seed=0, gap=0.3, stall=0.3, load_gap=0.3) -> np.ndarray:
    got = []

    async def producer(ctx):
        rng = random.Random(seed)
        await stream_put_all(ctx, dut.load, dut.load_words(matrix), rng=rng, gap=load_gap)
        beats = [beat for vector in vectors for beat in dut.input_beats(vector)]
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(vectors) * dut.groups,
                                      rng=random.Random(seed + 1), stall=stall))

    simulate(dut, producer, consumer, deadline=None)
    return as_rows(dut, got)


def check_random(rows, cols, *, pe, simd, m_bits, v_bits, m_signed, v_signed,
                 mode="parallel", vectors=6, seed=0, **kwargs):
    dut = MacArray(rows, cols, pe=pe, simd=simd, m_bits=m_bits, v_bits=v_bits,
                   m_signed=m_signed, v_signed=v_signed, mode=mode, **kwargs)
    rng = np.random.default_rng(seed)
    matrix = random_codes(rng, m_bits, (rows, cols))
    data = random_codes(rng, v_bits, (vectors, cols))
    got = run_gemm(dut, matrix, data, seed=seed)
    np.testing.assert_array_equal(got, expected(dut, matrix, data))


# --------------------------------------------------------------------------- tests

FOLDINGS = [  # rows, cols, pe, simd
    (1, 1, 1, 1),      # one MAC
    (4, 6, 2, 3),      # 2 row groups x 2 folds
    (6, 8, 3, 4),
    (5, 7, 1, 1),      # fully folded: 5 row groups x 7 folds
    (4, 12, 4, 12),    # fully parallel: one row group, one fold
    (8, 10, 2, 5),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rows, cols, pe, simd", FOLDINGS)
def test_folding(rows, cols, pe, simd, mode):
    check_random(rows, cols, pe=pe, simd=simd, m_bits=2, v_bits=3, m_signed=True,
                 v_signed=False, mode=mode)


def bitwidth_cases():
    """Each bitwidth 1..8 on each side, with all four signednesses and both modes."""
    for m_bits in range(1, 9):
        for offset, v_bits in enumerate(((m_bits + 2) % 8 + 1, (m_bits * 5) % 8 + 1)):
            for signs in [(False, False), (True, False), (False, True), (True, True)][offset::2]:
                yield m_bits, v_bits, *signs, MODES[(m_bits + offset) % 2]


@pytest.mark.parametrize("m_bits, v_bits, m_signed, v_signed, mode", list(bitwidth_cases()))
def test_bitwidths(m_bits, v_bits, m_signed, v_signed, mode):
    check_random(4, 6, pe=2, simd=3, m_bits=m_bits, v_bits=v_bits, m_signed=m_signed,
                 v_signed=v_signed, mode=mode, vectors=4, seed=m_bits * 10 + v_bits)


def test_bitwidth_cases_cover_every_side_and_sign():
    """Every bitwidth of either side meets all four signednesses (and, on the
    matrix side, both modes)."""
    cases = list(bitwidth_cases())
    every_sign = {(a, b) for a in (False, True) for b in (False, True)}
    for side in (0, 1):
        for bits in range(1, 9):
            assert {(case[2], case[3]) for case in cases if case[side] == bits} == every_sign
    for bits in range(1, 9):
        assert {case[4] for case in cases if case[0] == bits} == set(MODES)


@pytest.mark.parametrize("popcount_stages", [1, 2])
def test_pipelined_pes(popcount_stages):
    check_random(6, 8, pe=3, simd=4, m_bits=3, v_bits=2, m_signed=True, v_signed=True,
                 popcount_stages=popcount_stages, vectors=8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("product", list(Product))
def test_training_products(product, mode):
    """Forward ``W a``, backward-input ``W^T g`` and backward-weight ``G_b a_col``
    (one sample, a conv over P output positions), each from the codes the
    host would load and stream."""
    w_bits, a_bits, g_bits = 2, 3, 4
    out_channels, patch, positions = 4, 6, 8  # O, K = C*kh*kw, P
    rng = np.random.default_rng(list(Product).index(product))
    weights = random_codes(rng, w_bits, (out_channels, patch))
    match product:
        case Product.FORWARD:
            matrix = weights                                          # (O, K)
            stream = random_codes(rng, a_bits, (positions, patch))    # im2col patches
            want = signed_matmul(stream, None, a_bits, weights, (1 << w_bits) - 1, w_bits)
        case Product.BACKWARD_INPUT:
            matrix = weights.T                                        # (K, O)
            stream = random_codes(rng, g_bits, (positions, out_channels))
            want = signed_matmul(stream, (1 << g_bits) - 1, g_bits, weights.T, (1 << w_bits) - 1, w_bits)
        case Product.BACKWARD_WEIGHT:
            gradients = random_codes(rng, g_bits, (out_channels, positions))  # G_b, (O, P)
            matrix = gradients
            stream = random_codes(rng, a_bits, (patch, positions))    # activation columns
            want = signed_matmul(stream, None, a_bits, gradients, (1 << g_bits) - 1, g_bits)
    rows, cols = matrix.shape
    dut = MacArray.for_product(product, rows=rows, cols=cols, w_bits=w_bits, a_bits=a_bits,
                               g_bits=g_bits, pe=2, simd=2, mode=mode)
    got = run_gemm(dut, matrix, stream, seed=3)
    np.testing.assert_array_equal(got, want)


def test_reload_at_run_time():
    """A second matrix loaded between vectors replaces the first."""
    dut = MacArray(4, 6, pe=2, simd=3, m_bits=3, v_bits=2, m_signed=True, v_signed=False)
    rng = np.random.default_rng(9)
    matrices = [random_codes(rng, 3, (4, 6)) for _ in range(2)]
    data = [random_codes(rng, 2, (5, 6)) for _ in range(2)]
    got = []

    async def producer(ctx):
        rng = random.Random(1)
        for matrix, vectors in zip(matrices, data):
            await stream_put_all(ctx, dut.load, dut.load_words(matrix), rng=rng, gap=0.3)
            beats = [beat for vector in vectors for beat in dut.input_beats(vector)]
            await stream_put_all(ctx, dut.i, beats, rng=rng, gap=0.3)
            # Load between vectors: wait until the first ones have left the array.
            while len(got) < 5 * dut.groups:
                await ctx.tick()

    async def consumer(ctx):
        rng = random.Random(2)
        while len(got) < 10 * dut.groups:
            got.append(await stream_get(ctx, dut.o, rng=rng, stall=0.3))

    simulate(dut, producer, consumer, deadline=None)
    results = as_rows(dut, got)
    np.testing.assert_array_equal(results[:5], expected(dut, matrices[0], data[0]))
    np.testing.assert_array_equal(results[5:], expected(dut, matrices[1], data[1]))


@pytest.mark.parametrize("mode", MODES)
def test_counters_unstalled(mode):
    """No gaps, no back-pressure: the PE array is busy every cycle from the
    first input to the last fold, so ``busy`` and ``macs`` are exact, outputs
    leave ``latency`` cycles after their row group, and the counters agree."""
    dut = MacArray(6, 8, pe=3, simd=4, m_bits=2, v_bits=2, m_signed=True, v_signed=True,
                   mode=mode, popcount_stages=1)
    vectors = 5
    rng = np.random.default_rng(4)
    matrix = random_codes(rng, 2, (6, 8))
    data = random_codes(rng, 2, (vectors, 8))
    beats = [beat for vector in data for beat in dut.input_beats(vector)]
    got, out_cycles = [], []
    counters = {}

    async def tb(ctx):
        for word in dut.load_words(matrix):
            ctx.set(dut.load.valid, 1)
            ctx.set(dut.load.payload, word)
            await ctx.tick()
        ctx.set(dut.load.valid, 0)
        ctx.set(dut.o.ready, 1)
        start = ctx.get(dut.cycles)
        assert (ctx.get(dut.busy), ctx.get(dut.macs)) == (0, 0)
        index = cycle = 0
        while len(got) < vectors * dut.groups:
            ctx.set(dut.i.valid, index < len(beats))
            if index < len(beats):
                ctx.set(dut.i.payload, beats[index])
            _, _, ready, valid, payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            if ready and index < len(beats):
                index += 1
            if valid:
                got.append(payload)
                out_cycles.append(cycle)
            cycle += 1
        counters.update(cycles=ctx.get(dut.cycles) - start, busy=ctx.get(dut.busy),
                        macs=ctx.get(dut.macs))

    simulate(dut, tb)
    np.testing.assert_array_equal(as_rows(dut, got), expected(dut, matrix, data))
    cpb = dut.cycles_per_beat
    # Fold f of the whole run (group-major) is issued in cycle cpb * f; its
    # group's result follows `latency` cycles after the group's last fold.
    last_folds = [(p + 1) * dut.folds - 1 for p in range(vectors * dut.groups)]
    assert out_cycles == [cpb * f + dut.latency for f in last_folds]
    work = vectors * dut.cycles_per_vector
    assert counters["busy"] == work
    assert counters["macs"] == vectors * dut.rows * dut.cols
    # Cycles from the first input to the last result: the work, then the
    # latency of the last fold; utilisation is busy over that, exactly.
    assert counters["cycles"] == work - cpb + dut.latency + 1
    assert counters["cycles"] >= work  # the theoretical minimum
    assert counters["busy"] / counters["cycles"] == work / (work - cpb + dut.latency + 1)


def test_counters_under_stalls():
    """With gaps and back-pressure the work counters stay exact and the
    cycle counter exceeds the stall-free minimum."""
    dut = MacArray(4, 6, pe=2, simd=3, m_bits=2, v_bits=3, m_signed=True, v_signed=False,
                   mode="serial")
    rng = np.random.default_rng(6)
    matrix = random_codes(rng, 2, (4, 6))
    data = random_codes(rng, 3, (4, 6))
    got, counters = [], {}

    async def producer(ctx):
        rng = random.Random(1)
        await stream_put_all(ctx, dut.load, dut.load_words(matrix), rng=rng, gap=0.5)
        beats = [beat for vector in data for beat in dut.input_beats(vector)]
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=0.5)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(data) * dut.groups, rng=random.Random(2),
                                      stall=0.7))
        counters.update(cycles=ctx.get(dut.cycles), busy=ctx.get(dut.busy), macs=ctx.get(dut.macs))

    simulate(dut, producer, consumer, deadline=None)
    np.testing.assert_array_equal(as_rows(dut, got), expected(dut, matrix, data))
    assert counters["busy"] == len(data) * dut.cycles_per_vector
    assert counters["macs"] == len(data) * dut.rows * dut.cols
    assert counters["cycles"] > counters["busy"] + len(dut.load_words(matrix))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sent_before_reset", [1, 3, 5])
def test_reset_mid_stream(sent_before_reset, mode):
    """A reset drops the vectors in flight and clears the counters; the matrix
    memory survives, so the next vectors need no reload."""
    dut = MacArray(4, 6, pe=2, simd=3, m_bits=3, v_bits=2, m_signed=True, v_signed=True,
                   mode=mode, popcount_stages=1)
    rng = np.random.default_rng(sent_before_reset)
    matrix = random_codes(rng, 3, (4, 6))
    before, after = random_codes(rng, 2, (3, 6)), random_codes(rng, 2, (5, 6))
    top, cd = with_sync_domain(dut)
    got, done = [], []

    async def producer(ctx):
        rng = random.Random(3)
        await stream_put_all(ctx, dut.load, dut.load_words(matrix), rng=rng, gap=0.2)
        beats = [beat for vector in before for beat in dut.input_beats(vector)]
        await stream_put_all(ctx, dut.i, beats[:sent_before_reset], rng=rng, gap=0.2)
        ctx.set(cd.rst, 1)
        for _ in range(2):
            await ctx.tick()
        ctx.set(cd.rst, 0)
        assert not ctx.get(dut.o.valid)
        assert (ctx.get(dut.cycles), ctx.get(dut.busy), ctx.get(dut.macs)) == (0, 0, 0)
        got.clear()  # only what follows the reset is checked
        done.append(True)
        beats = [beat for vector in after for beat in dut.input_beats(vector)]
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=0.2)

    async def consumer(ctx):
        rng = random.Random(5)
        while not done or len(got) < len(after) * dut.groups:
            try:
                got.append(await stream_get(ctx, dut.o, rng=rng, stall=0.5))
            except DomainReset:  # a transfer cut by the reset never happened
                pass

    simulate(top, producer, consumer, deadline=None)
    np.testing.assert_array_equal(as_rows(dut, got), expected(dut, matrix, after))


def test_host_helpers():
    with unelaborated():
        dut = MacArray(4, 6, pe=2, simd=3, m_bits=3, v_bits=2, m_signed=True, v_signed=False)
        matrix = np.arange(24).reshape(4, 6) % 8
        words = dut.load_words(matrix)
        assert [w["addr"] for w in words] == list(range(dut.depth)) == [0, 1, 2, 3]
        assert words[1]["tile"] == [[3, 4, 5], [1, 2, 3]]  # rows 0, 1; cols 3..5
        assert words[2]["tile"] == [[4, 5, 6], [2, 3, 4]]  # rows 2, 3; cols 0..2
        assert dut.input_beats(range(6)) == [[0, 1, 2], [3, 4, 5]]
        with pytest.raises(ValueError, match="matrix must be 4 x 6"):
            dut.load_words(matrix[:3])
        with pytest.raises(ValueError, match="vector must have 6 codes"):
            dut.input_beats(range(5))


def test_signature_and_properties():
    with unelaborated():
        dut = MacArray(8, 12, pe=4, simd=3, m_bits=2, v_bits=5, m_signed=True,
                       v_signed=False, mode="serial", popcount_stages=1, counter_width=20)
        assert (dut.groups, dut.folds, dut.depth) == (2, 4, 8)
        assert dut.cycles_per_beat == 10
        assert dut.cycles_per_vector == 80
        assert dut.latency == 10 + 1 + 1  # plane pairs, popcount stage, accumulator
        assert len(dut.cycles) == len(dut.busy) == len(dut.macs) == 20
        assert dut.o.payload.shape().length == 4
        assert dut.pe_shape.signed
        bits = dict(w_bits=2, a_bits=3, g_bits=6)
        readings = {  # (m_bits, m_signed, v_bits, v_signed)
            "forward": (2, True, 3, False),
            Product.BACKWARD_INPUT: (2, True, 6, True),
            Product.BACKWARD_WEIGHT: (6, True, 3, False),
        }
        for product, reading in readings.items():
            array = MacArray.for_product(product, rows=4, cols=6, **bits)
            assert (array.m_bits, array.m_signed, array.v_bits, array.v_signed) == reading


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0), "rows must be >= 1"),
    (dict(cols=-2), "cols must be >= 1"),
    (dict(pe=0), "pe must be >= 1"),
    (dict(simd=1.5), "simd must be an integer"),
    (dict(pe=3), r"rows \(4\) must be a multiple of pe \(3\)"),
    (dict(simd=4), r"cols \(6\) must be a multiple of simd \(4\)"),
    (dict(m_bits=9), r"m_bits must be in 1\.\.8"),
    (dict(v_bits=0), r"v_bits must be in 1\.\.8"),
    (dict(m_signed=None), "m_signed must be True or False"),
    (dict(v_signed=0), "v_signed must be True or False"),
    (dict(mode="bitwise"), "mode must be one of"),
    (dict(popcount_stages=2), r"popcount_stages must be in 0\.\.1"),  # simd = 3 bits
    (dict(counter_width=0), "counter_width must be >= 1"),
])
def test_validation(kwargs, message):
    args = dict(rows=4, cols=6, pe=2, simd=3, m_bits=2, v_bits=2, m_signed=True,
                v_signed=False) | kwargs
    with unelaborated(), pytest.raises(ValueError, match=message):
        MacArray(args.pop("rows"), args.pop("cols"), **args)


def test_for_product_validation():
    with unelaborated(), pytest.raises(ValueError, match="is not a valid Product"):
        MacArray.for_product("sideways", rows=4, cols=6, w_bits=2, a_bits=2, g_bits=2)
