"""pytest entry for the cocotb popcount testbench (``tb/popcount``), on
Icarus and Verilator."""

from hw.popcount import PopcountTree
from sim.cocotb_runner import run_cocotb, with_clock
from tb.entry import on_each_simulator

# (width, stages, arch, random vectors): per simulator, 10,000 vectors in
# the random-stream test, plus ~750 per config in the full-rate and reset tests.
CONFIGS = [
    (7, 0, "chain", 2000),
    (64, 3, "chain", 5000),
    (100, 4, "dadda", 3000),
]
SLOW_CONFIGS = [
    (1, 1, "chain", 500),
    (33, 6, "dadda", 2000),
    (256, 8, "chain", 2000),
]


def run(simulator, width, stages, arch, vectors, seed):
    dut = PopcountTree(width, stages=stages, arch=arch)
    # The testbench paces even a combinational tree with a clock.
    run_cocotb(dut if stages else with_clock(dut),
               toplevel=f"popcount_{arch}_w{width}_s{stages}",
               test_module="tb.popcount.cocotb_popcount", simulator=simulator,
               config={"width": width, "stages": stages, "vectors": vectors, "seed": seed})


@on_each_simulator("width, stages, arch, vectors", CONFIGS)
def test_popcount(simulator, width, stages, arch, vectors):
    run(simulator, width, stages, arch, vectors, seed=width * 10 + stages)


@on_each_simulator("width, stages, arch, vectors", SLOW_CONFIGS, slow=True)
def test_popcount_sweep(simulator, width, stages, arch, vectors):
    run(simulator, width, stages, arch, vectors, seed=width * 10 + stages + 1)
