"""pytest entry for the cocotb window-generator testbench (``tb/window``), on Icarus
and Verilator."""

from hw.catalog import standalone
from hw.window import WindowGenerator
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (depth, max_bits, max_cols, maps, jobs): per simulator, random_stream takes about
# maps * jobs * 300 codes, restarts 2 * jobs cut jobs, full_rate and reset_mid_stream
# a few thousand codes more.
CONFIGS = [
    (300, 6, 40, 6, 12),     # depth not a power of two; cols past a 5 x 5 patch
]
SLOW_CONFIGS = [
    (1, 1, 1, 2, 10),        # a one-code map of one bit, one code a vector
    (97, 2, 9, 10, 16),      # depth prime, cols a 3 x 3 patch
    (1024, 8, 96, 8, 20),    # a full power-of-two memory
    (2000, 3, 255, 6, 16),   # large maps, long vectors
]


def run(simulator, depth, max_bits, max_cols, maps, jobs, seed):
    dut = WindowGenerator(depth=depth, max_bits=max_bits, max_cols=max_cols)
    run_cocotb(standalone(dut), toplevel=f"window_d{depth}_b{max_bits}_c{max_cols}",
               test_module="tb.window.cocotb_window", simulator=simulator,
               config={"depth": depth, "max_bits": max_bits, "max_cols": max_cols,
                       "latency": WindowGenerator.latency, "maps": maps, "jobs": jobs, "seed": seed})


@on_each_simulator("depth, max_bits, max_cols, maps, jobs", CONFIGS)
def test_window(simulator, depth, max_bits, max_cols, maps, jobs):
    run(simulator, depth, max_bits, max_cols, maps, jobs, seed=depth + max_bits)


@on_each_simulator("depth, max_bits, max_cols, maps, jobs", SLOW_CONFIGS, slow=True)
def test_window_sweep(simulator, depth, max_bits, max_cols, maps, jobs):
    run(simulator, depth, max_bits, max_cols, maps, jobs, seed=depth + max_bits + 1)
