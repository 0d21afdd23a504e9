"""pytest entry for the cocotb GEMM-engine testbench (``tb/gemm``), on Icarus and Verilator.

The engine as the training core drives it (matrix over several frames, vector
tiles, every reading and width of each side, ragged shapes, partial tiles),
checked against ``sw.bitplanes.signed_matmul`` and ``GemmEngine.tile_cycles``.
"""

from hw.gemm import GemmEngine
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (pe, vectors, simd, max_bits, max_rows, max_cols, popcount_stages, drains, matrices): each
# matrix against two RUNs (two widths and readings, several tiles each).
CONFIGS = [
    (2, 3, 4, 8, 7, 13, 0, 2, 32),     # every width 1..8 of each side in both readings, twice; 2 chains
    (3, 2, 5, 4, 8, 10, 1, 1, 16),     # a pipelined array, pe that divides nothing, one chain
]
SLOW_CONFIGS = [
    (1, 1, 1, 8, 3, 5, 0, 1, 16),      # one unit, one lane
    (4, 4, 8, 8, 9, 24, 2, 4, 24),     # the core's default pe and simd, tiles of 4 vectors, a chain per row
    (4, 4, 8, 8, 9, 24, 2, 1, 12),     # the same on one chain
    (5, 2, 3, 3, 11, 7, 1, 5, 12),     # result banks chosen by division (pe not a power of two)
    (6, 2, 3, 3, 13, 7, 0, 2, 8),      # 3 rows per chain: banks indexed by division
    (2, 2, 3, 1, 5, 6, 0, 1, 4),       # binary codes only
]
PARAMS = "pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, matrices"


def run(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, matrices, seed):
    params = dict(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows, max_cols=max_cols,
                  popcount_stages=stages, drains=drains)
    run_cocotb(GemmEngine(**params),
               toplevel=f"gemm_pe{pe}_v{vectors}_simd{simd}_b{max_bits}_{max_rows}x{max_cols}_s{stages}"
                        f"_d{drains}",
               test_module="tb.gemm.cocotb_gemm", simulator=simulator,
               config={**params, "matrices": matrices, "seed": seed})


@on_each_simulator(PARAMS, CONFIGS)
def test_gemm(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, matrices):
    run(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, matrices,
        seed=max_rows * 100 + max_cols)


@on_each_simulator(PARAMS, SLOW_CONFIGS, slow=True)
def test_gemm_sweep(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, matrices):
    run(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, matrices,
        seed=max_rows * 100 + max_cols + 1 + drains)
