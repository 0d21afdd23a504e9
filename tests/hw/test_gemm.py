"""GemmEngine (plane writer, plane buffers, MAC array, signed correction) against sw.bitplanes."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.gemm import GemmEngine
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
        for name, value in (("cols", cols), ("rows", rows), ("m_bits", m_bits), ("m_signed", m_signed),
                            ("v_bits", v_bits), ("v_signed", v_signed)):
            ctx.set(getattr(dut, name), value)
        await _write(ctx, dut, matrix, to_vectors=0, frames=frames)
        for t0 in range(0, len(vectors), dut.vectors):
            tile = vectors[t0:t0 + dut.vectors]
            await _write(ctx, dut, tile, to_vectors=1)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            count = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                count += 1
            cycles.append(count)
            for slot in range(len(tile)):
                for row in range(rows):
                    ctx.set(dut.result_addr, dut.result_address(slot, row))
                    await ctx.tick()
                    out[t0 + slot, row] = ctx.get(dut.result)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return out, cycles


ARRAYS = [(1, 1, 1), (2, 3, 4), (4, 2, 8), (3, 1, 5)]
#: Pipelining of the array: (popcount stages, fetch stages), per array above.
STAGES = {(1, 1, 1): (0, 0), (2, 3, 4): (1, 1), (4, 2, 8): (2, 2), (3, 1, 5): (0, 1)}
READINGS = [(1, True, 2, False), (2, False, 3, True), (3, True, 1, True), (1, False, 1, False)]


@pytest.mark.parametrize("pe,vectors,simd", ARRAYS)
@pytest.mark.parametrize("m_bits,m_signed,v_bits,v_signed", READINGS + [(8, True, 8, True)])
def test_gemm_matches_signed_matmul_and_cycle_model(pe, vectors, simd, m_bits, m_signed, v_bits, v_signed):
    """Every reading, ragged rows, columns and tiles (7 x 11 by 5 vectors), a matrix over three frames."""
    rng = np.random.default_rng(pe * 100 + simd * 10 + m_bits + v_bits)
    rows, cols, count = 7, 11, 5
    popcount_stages, fetch_stages = STAGES[pe, vectors, simd]
    dut = GemmEngine(pe=pe, vectors=vectors, simd=simd, max_bits=8, max_rows=9, max_cols=13,
                     popcount_stages=popcount_stages, fetch_stages=fetch_stages)
    matrix = rng.integers(0, 1 << m_bits, (rows, cols))
    vectors_ = rng.integers(0, 1 << v_bits, (count, cols))
    got, cycles = run_gemm(dut, matrix, m_bits, m_signed, vectors_, v_bits, v_signed, frames=3)
    want = signed_matmul(vectors_, levels(v_bits) if v_signed else None, v_bits,
                         matrix, levels(m_bits) if m_signed else None, m_bits)
    np.testing.assert_array_equal(got, want)
    assert cycles == [dut.tile_cycles(rows, cols, m_bits, v_bits)] * len(cycles)
