"""pytest entry for the cocotb MAC-array testbench (``tb/mac_array``), on
Icarus and Verilator.  The array alone, its plane buffers played by the
bench; the whole GEMM path in every reading the core uses is
``tb/test_gemm_tb.py``."""

from hw.catalog import standalone
from hw.mac_array import MacArray
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (pe, vectors, simd, max_bits, max_rows, max_cols, popcount_stages, drains, random tiles):
# each tile of random shape (up to max_rows x max_cols, 1 .. vectors vectors) and precisions
# (1 .. max_bits per side), the first at the largest shape and widest codes.
CONFIGS = [
    (2, 3, 4, 8, 7, 13, 1, 2, 100),     # tiles of several vectors, every precision, ragged; 2 chains
    (3, 1, 5, 4, 8, 9, 0, 1, 150),      # one vector per tile, short groups (the drain's period)
]
SLOW_CONFIGS = [
    (1, 1, 1, 8, 3, 5, 0, 1, 40),      # one unit, one lane
    (4, 4, 8, 8, 9, 24, 2, 4, 60),     # 16 units, pipelined, a chain per PE row
    (5, 2, 3, 3, 11, 7, 1, 5, 80),     # pe that divides nothing, a chain per PE row
    (4, 4, 8, 8, 9, 24, 2, 1, 30),     # 16 units, pipelined, one chain
]
PARAMS = "pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, tiles"


def run(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, tiles, seed):
    params = dict(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows, max_cols=max_cols,
                  popcount_stages=stages, drains=drains)
    run_cocotb(standalone(MacArray(**params)),
               toplevel=f"mac_array_pe{pe}_v{vectors}_simd{simd}_b{max_bits}_{max_rows}x{max_cols}_s{stages}"
                        f"_d{drains}",
               test_module="tb.mac_array.cocotb_mac_array", simulator=simulator,
               config={**params, "tiles": tiles, "seed": seed})


@on_each_simulator(PARAMS, CONFIGS)
def test_mac_array(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, tiles):
    run(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, tiles,
        seed=max_rows * 100 + max_cols)


@on_each_simulator(PARAMS, SLOW_CONFIGS, slow=True)
def test_mac_array_sweep(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, tiles):
    run(simulator, pe, vectors, simd, max_bits, max_rows, max_cols, stages, drains, tiles,
        seed=max_rows * 100 + max_cols + 1 + drains)
