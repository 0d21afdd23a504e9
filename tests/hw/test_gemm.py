"""GemmEngine (plane writer, plane buffers, MAC array, signed corrections, result banks) against
sw.bitplanes, at one and several drain chains; ``tile_cycles`` against the simulated count."""

import numpy as np
import pytest

from tests.hw.helpers import unelaborated

from hw.gemm import GemmEngine
from sim.amaranth_sim import simulate
from sw.bitplanes import signed_matmul
from sw.contract.codes import levels


async def _write(ctx, dut, codes, *, to_vectors, frames=1):
    """Stream ``codes`` (rows x cols) row-major, cut into ``frames`` (flush on each frame's end)."""
    ctx.set(dut.to_vectors, to_vectors)
    ctx.set(dut.clear, 1)
    await ctx.tick()
    ctx.set(dut.clear, 0)
    flat = codes.reshape(-1)
    cuts = set(np.linspace(0, len(flat), frames + 1, dtype=int)[1:] - 1)
    for index, code in enumerate(flat):
        ctx.set(dut.codes.valid, 1)
        ctx.set(dut.codes.payload, {"code": int(code), "flush": int(index in cuts)})
        await ctx.tick().until(dut.codes.ready)
    ctx.set(dut.codes.valid, 0)
    while ctx.get(dut.writing):
        await ctx.tick()


def run_gemm(dut, matrix, m_bits, m_signed, vectors, v_bits, v_signed, *, frames=1):
    """Values (len(vectors), rows) and the cycles of each tile, from start to done."""
    rows, cols = matrix.shape
    out = np.zeros((len(vectors), rows), dtype=np.int64)
    cycles = []

    async def testbench(ctx):
        await _load_matrix(ctx, dut, matrix, m_bits, m_signed, v_bits, v_signed, frames=frames)
        for t0 in range(0, len(vectors), dut.vectors):
            tile = vectors[t0:t0 + dut.vectors]
            cycles.append(await _compute_tile(ctx, dut, tile))
            for slot in range(len(tile)):
                for row in range(rows):
                    ctx.set(dut.result_addr, dut.result_address(slot, row))
                    await ctx.tick().repeat(dut.result_latency)
                    out[t0 + slot, row] = ctx.get(dut.result)

    simulate(dut, testbench, deadline=None)
    return out, cycles


async def _load_matrix(ctx, dut, matrix, m_bits, m_signed, v_bits, v_signed, *, frames=1):
    """Set the shape and readings, then write ``matrix`` (over ``frames`` frames)."""
    rows, cols = matrix.shape
    for name, value in (("cols", cols), ("rows", rows), ("m_bits", m_bits), ("m_signed", m_signed),
                        ("v_bits", v_bits), ("v_signed", v_signed)):
        ctx.set(getattr(dut, name), value)
    await _write(ctx, dut, matrix, to_vectors=0, frames=frames)


async def _compute_tile(ctx, dut, tile) -> int:
    """Write a tile's vectors, start it, wait for ``done``: the cycles from start to done."""
    await _write(ctx, dut, tile, to_vectors=1)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    count = 1
    while not ctx.get(dut.done):
        await ctx.tick()
        count += 1
    return count


#: (pe, vectors, simd, drains): one chain, two, one per PE row; pe a power of two (the
#: result address split by slices) or not (by division), rows per chain one or not.
ARRAYS = [(1, 1, 1, 1), (2, 3, 4, 1), (4, 2, 8, 1), (3, 1, 5, 1),
          (2, 3, 4, 2), (4, 2, 8, 2), (4, 1, 3, 4), (6, 1, 3, 3), (6, 2, 2, 2)]
#: Pipelining: (popcount stages, fetch stages, result stages), per array above.
STAGES = {(1, 1, 1, 1): (0, 0, 0), (2, 3, 4, 1): (1, 1, 1), (4, 2, 8, 1): (2, 2, 0), (3, 1, 5, 1): (0, 1, 1),
          (2, 3, 4, 2): (1, 1, 1), (4, 2, 8, 2): (2, 2, 1), (4, 1, 3, 4): (0, 0, 1), (6, 1, 3, 3): (0, 1, 0),
          (6, 2, 2, 2): (1, 0, 1)}
READINGS = [(1, True, 2, False), (2, False, 3, True), (3, True, 1, True), (1, False, 1, False)]


def check_products(dut, rng, rows, cols, count, m_bits, m_signed, v_bits, v_signed):
    """Random codes through ``dut`` (the matrix over three frames): every value equals
    ``signed_matmul``'s and every tile takes ``tile_cycles``."""
    matrix = rng.integers(0, 1 << m_bits, (rows, cols))
    vectors = rng.integers(0, 1 << v_bits, (count, cols))
    got, cycles = run_gemm(dut, matrix, m_bits, m_signed, vectors, v_bits, v_signed, frames=3)
    want = signed_matmul(vectors, levels(v_bits) if v_signed else None, v_bits,
                         matrix, levels(m_bits) if m_signed else None, m_bits)
    np.testing.assert_array_equal(got, want)
    assert cycles == [dut.tile_cycles(rows, cols, m_bits, v_bits)] * len(cycles)


@pytest.mark.parametrize("pe,vectors,simd,drains", ARRAYS)
@pytest.mark.parametrize("m_bits,m_signed,v_bits,v_signed", READINGS + [(8, True, 8, True)])
def test_gemm_matches_signed_matmul_and_cycle_model(pe, vectors, simd, drains, m_bits, m_signed, v_bits, v_signed):
    """Every reading, ragged rows, columns and tiles (7 x 11 by 5 vectors), a matrix over three frames;
    every value read back through ``result_addr`` (each drain chain's bank)."""
    rng = np.random.default_rng(pe * 100 + simd * 10 + m_bits + v_bits + drains * 1000)
    rows, cols, count = 7, 11, 5
    popcount_stages, fetch_stages, result_stages = STAGES[pe, vectors, simd, drains]
    dut = GemmEngine(pe=pe, vectors=vectors, simd=simd, max_bits=8, max_rows=9, max_cols=13,
                     popcount_stages=popcount_stages, fetch_stages=fetch_stages, drains=drains,
                     result_stages=result_stages)
    check_products(dut, rng, rows, cols, count, m_bits, m_signed, v_bits, v_signed)


def test_drains_shorten_a_short_tile():
    """The point of the drains: 2 x 2 planes over one fold on 8 rows x 2 vectors.  One chain
    drains 16 sums a group, 8 chains 2, so a group takes ``max(4, 16)`` or ``max(4, 2)`` cycles;
    the cycle counts are the simulated ones, the values ``signed_matmul``'s."""
    rng = np.random.default_rng(8)
    matrix, vectors = rng.integers(0, 4, (32, 5)), rng.integers(0, 4, (2, 5))
    want = signed_matmul(vectors, levels(2), 2, matrix, levels(2), 2)
    cycles = {}
    for drains in (1, 8):
        dut = GemmEngine(pe=8, vectors=2, simd=8, max_bits=2, max_rows=32, max_cols=8, drains=drains)
        got, (cycles[drains],) = run_gemm(dut, matrix, 2, True, vectors, 2, True)
        np.testing.assert_array_equal(got, want)
        assert cycles[drains] == dut.tile_cycles(32, 5, 2, 2)
    # 4 groups: three periods, the last group's 4 pairs, then its drain: 3 * 12 + 14 = 50 cycles saved.
    assert cycles[1] - cycles[8] == 3 * (16 - 4) + (16 - 2)


#: What ``result`` shows after each step of :func:`test_result_holds_while_result_en_is_low`, by
#: hand, per ``result_stages``: the value of the address shown ``result_latency`` enabled steps
#: back (before the first, with two stages, nothing yet).
HELD = {0: [(0, 1), (1, 6), (1, 6), (1, 2), (1, 2), (1, 0), (0, 5)],
        1: [None, (0, 1), (0, 1), (1, 6), (1, 6), (1, 2), (1, 0)]}


@pytest.mark.parametrize("drains", [1, 2])
@pytest.mark.parametrize("result_stages", [0, 1])
def test_result_holds_while_result_en_is_low(drains, result_stages):
    """``result_en`` low holds ``result`` (the bank's read, the result stages and the chain it is
    taken from), whatever ``result_addr`` shows meanwhile: a stream of values out of the result
    memory (the core's ACCUMULATE) stalls without losing a value it has read."""
    rng = np.random.default_rng(drains)
    matrix, vectors = rng.integers(0, 4, (8, 5)), rng.integers(0, 4, (2, 5))
    want = signed_matmul(vectors, levels(2), 2, matrix, levels(2), 2)
    dut = GemmEngine(pe=4, vectors=2, simd=8, max_bits=2, max_rows=8, max_cols=8, drains=drains,
                     result_stages=result_stages)
    seen = []

    async def testbench(ctx):
        await _load_matrix(ctx, dut, matrix, 2, True, 2, True)
        await _compute_tile(ctx, dut, vectors)
        # (slot, row) pairs whose rows lie in other chains when drains > 1
        steps = [((0, 1), 1), ((1, 6), 1), ((0, 3), 0), ((1, 2), 1), ((0, 7), 0), ((1, 0), 1), ((0, 5), 1)]
        for (slot, row), en in steps:
            ctx.set(dut.result_addr, dut.result_address(slot, row))
            ctx.set(dut.result_en, en)
            await ctx.tick()
            seen.append(ctx.get(dut.result))

    simulate(dut, testbench, deadline=None)
    held = HELD[result_stages]
    assert [value for value, at in zip(seen, held) if at] == [want[at] for at in held if at]


def test_memories():
    """Worked by hand: pe 6 in 3 chains of 2 rows, 2 vectors, 13 x 16 codes of 8 bits, simd 4."""
    with unelaborated():
        dut = GemmEngine(pe=6, vectors=2, simd=4, max_bits=8, max_rows=13, max_cols=16, drains=3)
        assert dut.drains == 3 and dut.array.drains == 3 and len(dut.corrections) == 3
        # matrix: 3 groups x 4 folds = 12 blocks of 8 planes: 96 words per row bank;
        # vector: 4 folds x 8 planes; code sums <= 16 * 255 = 4080 (12 bits), value sums signed 13;
        # chain 0 holds rows 0, 1, 6, 7, 12: 5 rows (3 bits) x 2 slots per bank.
        assert dut.memories == {
            "matrix": (6, 96, 4),
            "vector": (2, 32, 4),
            "row_sums": (3, 13, 12),
            "vector_sums": (1, 2, 13),
            "results": (3, 16, 32),
        }
        one = GemmEngine(pe=6, vectors=2, simd=4, max_bits=8, max_rows=13, max_cols=16)
        assert one.memories["row_sums"] == (1, 13, 12) and one.memories["results"] == (1, 32, 32)
        del dut, one


@pytest.mark.parametrize("pe, drains, message", [
    (4, 3, r"drains must be one of 1, 2, 4 \(a divisor of pe = 4: whole rows per chain\), got 3"),
    (4, 0, "drains must be >= 1"),
    (2, 4, r"drains must be one of 1, 2 \(.*\), got 4"),
])
def test_drains_validation(pe, drains, message):
    with unelaborated(), pytest.raises(ValueError, match=message):
        GemmEngine(pe=pe, simd=4, max_bits=2, max_rows=8, max_cols=8, drains=drains)


def test_result_stages_validation():
    with unelaborated(), pytest.raises(ValueError, match=r"result_stages must be in 0\.\.1, got 2"):
        GemmEngine(pe=2, simd=4, max_bits=2, max_rows=8, max_cols=8, result_stages=2)


#: Arrays whose matrix fits the UltraPlus's SPRAM (pe * simd rounded up to 4 <= 64): simd a
#: multiple of 4 or not (lanes padded), one chain or several.
SPRAM_ARRAYS = [(1, 1, 1, 1), (2, 3, 4, 1), (4, 2, 8, 2), (3, 1, 5, 1), (6, 1, 3, 3), (2, 4, 32, 2)]


@pytest.mark.parametrize("pe,vectors,simd,drains", SPRAM_ARRAYS)
@pytest.mark.parametrize("m_bits,m_signed,v_bits,v_signed", [(2, False, 3, True), (3, True, 1, True)])
def test_gemm_with_the_matrix_in_spram(pe, vectors, simd, drains, m_bits, m_signed, v_bits, v_signed):
    """``matrix_memory="spram"`` (the single-port RAM's plain-memory path): the same products as
    ``signed_matmul`` and the same cycle count, a matrix over three frames and several tiles."""
    rng = np.random.default_rng(pe * 100 + simd * 10 + m_bits + v_bits + drains * 1000 + 7)
    rows, cols, count = 7, 11, 5
    dut = GemmEngine(pe=pe, vectors=vectors, simd=simd, max_bits=8, max_rows=9, max_cols=13, drains=drains,
                     popcount_stages=1, fetch_stages=pe % 2, matrix_memory="spram")
    check_products(dut, rng, rows, cols, count, m_bits, m_signed, v_bits, v_signed)


def test_matrix_memory_spram_memories_and_limits():
    """The matrix as one word of pe lanes (simd 5 padded to 8 bits); pe * simd over 64 bits refused."""
    with unelaborated():
        dut = GemmEngine(pe=6, vectors=2, simd=5, max_bits=8, max_rows=13, max_cols=16, matrix_memory="spram")
        # 3 groups x 4 folds = 12 blocks of 8 planes: 96 words of 6 lanes x 8 bits.
        assert dut.memories["matrix"] == (1, 96, 48) and dut.matrix_memory == "spram"
        with pytest.raises(ValueError, match=r"matrix_memory 'spram' must fit 4 SPRAM cells: pe \* simd <= 64 "
                                             r"bits read per cycle \(simd rounded up to 4\), got pe = 3 x 32 bits "
                                             r"x 704 words: 6 cells"):
            GemmEngine(pe=3, simd=32, max_bits=8, max_rows=32, max_cols=256, matrix_memory="spram")
        with pytest.raises(ValueError, match="matrix_memory must be one of 'block', 'spram', got 'ebr'"):
            GemmEngine(pe=2, simd=4, max_bits=2, max_rows=8, max_cols=8, matrix_memory="ebr")
        del dut
