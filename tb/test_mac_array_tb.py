"""pytest entry for the cocotb MAC-array testbench (``tb/mac_array``), on
Icarus and Verilator."""

from hw.mac_array import MacArray, Product
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode, popcount_stages,
# random vectors): each training product once.  Per simulator, 10,000 random
# input vectors (60,000 dot products) plus ~110 vectors per config in the
# full-rate and reset tests.
CONFIGS = [
    ("forward", 8, 12, 2, 3, 6, 4, 6, "parallel", 1, 4000),
    ("backward_input", 6, 8, 1, 2, 4, 3, 4, "serial", 0, 2000),
    ("backward_weight", 4, 16, 2, 2, 6, 2, 8, "parallel", 2, 4000),
]
SLOW_CONFIGS = [
    ("forward", 5, 7, 8, 8, 8, 1, 1, "parallel", 0, 1000),
    ("backward_input", 16, 6, 3, 4, 8, 8, 3, "parallel", 1, 2000),
    ("backward_weight", 3, 9, 1, 1, 3, 3, 9, "serial", 3, 2000),
]
PARAMS = "product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode, stages, vectors"


def run(simulator, product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode, stages, vectors,
        seed):
    product = Product(product)
    dut = MacArray.for_product(product, rows=rows, cols=cols, w_bits=w_bits, a_bits=a_bits,
                               g_bits=g_bits, pe=pe, simd=simd, mode=mode, popcount_stages=stages)
    run_cocotb(dut, toplevel=f"mac_array_{product.value}_{rows}x{cols}_w{w_bits}a{a_bits}g{g_bits}"
                             f"_pe{pe}_simd{simd}_{mode}_s{stages}",
               test_module="tb.mac_array.cocotb_mac_array", simulator=simulator,
               config={"product": product.value, "rows": rows, "cols": cols, "w_bits": w_bits,
                       "a_bits": a_bits, "g_bits": g_bits, "pe": pe, "simd": simd, "mode": mode,
                       "popcount_stages": stages, "vectors": vectors, "seed": seed})


@on_each_simulator(PARAMS, CONFIGS)
def test_mac_array(simulator, product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode, stages,
                   vectors):
    run(simulator, product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode, stages, vectors,
        seed=rows * 100 + cols)


@on_each_simulator(PARAMS, SLOW_CONFIGS, slow=True)
def test_mac_array_sweep(simulator, product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode,
                         stages, vectors):
    run(simulator, product, rows, cols, w_bits, a_bits, g_bits, pe, simd, mode, stages, vectors,
        seed=rows * 100 + cols + 1)
