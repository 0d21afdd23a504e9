"""pytest entry for the cocotb dot-product testbench (``tb/dot_product``), on
Icarus and Verilator."""

from hw.catalog import standalone
from hw.dot_product import DotProduct
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (length, max_bits, folds, popcount_stages, popcount_arch, random dot products): each dot
# product at random precisions 1 .. max_bits per side and 1 .. folds folds, so ~20 beats
# (cycles) per fold at max_bits 8, where the old bit-parallel unit took one.  Per simulator,
# 2,000 random dot products by default, 10,000 more in the sweep (--run-slow), plus ~110 per
# config in the full-rate and reset tests.
CONFIGS = [
    (16, 8, 2, 2, "chain", 800),      # every precision, pipelined
    (5, 4, 4, 0, "packed", 700),      # many folds
    (33, 8, 1, 3, "dadda", 500),      # one fold, a wide plane
]
SLOW_CONFIGS = [
    (1, 8, 8, 0, "chain", 2000),      # one lane: the sum of up to eight 8 x 8-bit products
    (64, 2, 3, 6, "chain", 3000),     # fully pipelined 64-lane tree
    (9, 1, 5, 1, "dadda", 2000),      # binary codes only
    (12, 6, 2, 2, "packed", 3000),
]
PARAMS = "length, max_bits, folds, stages, arch, vectors"


def run(simulator, length, max_bits, folds, stages, arch, vectors, seed):
    dut = DotProduct(length, max_bits=max_bits, max_lanes=length * folds, popcount_stages=stages,
                     popcount_arch=arch)
    run_cocotb(standalone(dut), toplevel=f"dot_product_l{length}_b{max_bits}_f{folds}_s{stages}_{arch}",
               test_module="tb.dot_product.cocotb_dot_product", simulator=simulator,
               config={"length": length, "max_bits": max_bits, "max_lanes": length * folds,
                       "popcount_stages": stages, "popcount_arch": arch, "vectors": vectors, "seed": seed})


@on_each_simulator(PARAMS, CONFIGS)
def test_dot_product(simulator, length, max_bits, folds, stages, arch, vectors):
    run(simulator, length, max_bits, folds, stages, arch, vectors, seed=length * 100 + max_bits * 10 + folds)


@on_each_simulator(PARAMS, SLOW_CONFIGS, slow=True)
def test_dot_product_sweep(simulator, length, max_bits, folds, stages, arch, vectors):
    run(simulator, length, max_bits, folds, stages, arch, vectors, seed=length * 100 + max_bits * 10 + folds + 1)
