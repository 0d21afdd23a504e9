"""pytest entry for the cocotb gradient-quantizer testbench (``tb/gradient_quantizer``),
on Icarus and Verilator."""

from hw.gradient_quantizer import GradientQuantizer
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (gbits, width, depth, random vectors): per simulator, 10,000 vectors in the
# random-stream test, plus ~1,100 per config in the full-rate, reset and seed
# tests.  Two CI configs (a Verilator build is most of the time): the smallest
# code with a short buffer (samples often wait for the reader), and the widest.
CONFIGS = [
    (1, 8, 5, 5000),
    (8, 24, 40, 5000),
]
SLOW_CONFIGS = [
    (2, 1, 1, 500),
    (3, 12, 64, 3000),
    (4, 16, 7, 3000),
    (5, 20, 3, 3000),
    (6, 38, 20, 2000),
    (7, 10, 100, 3000),
]


def run(simulator, gbits, width, depth, vectors, tb_seed):
    seed = 0x9E37_79B9 ^ tb_seed
    dut = GradientQuantizer(gbits=gbits, width=width, depth=depth, seed=seed)
    run_cocotb(dut, toplevel=f"gradient_quantizer_g{gbits}_w{width}_d{depth}",
               test_module="tb.gradient_quantizer.cocotb_gradient_quantizer", simulator=simulator,
               config={"gbits": gbits, "width": width, "depth": depth, "seed": seed,
                       "vectors": vectors, "tb_seed": tb_seed})


@on_each_simulator("gbits, width, depth, vectors", CONFIGS)
def test_gradient_quantizer(simulator, gbits, width, depth, vectors):
    run(simulator, gbits, width, depth, vectors, tb_seed=gbits * 100 + depth)


@on_each_simulator("gbits, width, depth, vectors", SLOW_CONFIGS, slow=True)
def test_gradient_quantizer_sweep(simulator, gbits, width, depth, vectors):
    run(simulator, gbits, width, depth, vectors, tb_seed=gbits * 100 + depth + 1)
