"""pytest entry for the cocotb training-core testbench (``tb/core``), on Icarus and Verilator.

Each run checks, byte for byte against :class:`sw.core_model.CoreModel`:
6 GEMMs (every signedness pair, 1-bit and max-bit codes, ragged shapes,
``vectors`` random vectors each), activated RUNs at every activation width
of the core (LOAD_THRESHOLDS over several frames, rows of direction -1, ties,
int32 extremes), batches accumulated into the batch sums and read back (a
core with sums; the others refuse both commands), every protocol error with garbage and idle-timeout drops,
``fuzz_steps`` random (mostly mutated) requests, and a reset in the middle
of a RUN.  On a core with a feature map (protocol 5): LOAD_FMAP and windowed
RUN / ACCUMULATE scripts of both orders, every window error, a reset in the
middle of a windowed RUN, and the fuzz's pool holds window requests; cores
without one refuse the window requests.  On a core that packs accumulators
(protocol 6; the feature-map core here): packed RUNs at every width pair's
bound and the packed flag's refusals.  The log line of each test says how
many reply bytes, RUN vectors and MACs it checked.
"""

from boards.top import CORE_PRESETS
from hw.core import TrainingCore
from sim.cocotb_runner import run_cocotb
from sw.core_scripts import SUMS, WINDOWS
from tb.entry import on_each_simulator

TIMEOUT = 300  # idle timeout in cycles: above any random gap of the drivers

# (name, core parameters, vectors per GEMM, fuzz steps)
CONFIGS = [
    ("small", SUMS, 12, 80),  # the small core with batch sums
]
SLOW_CONFIGS = [
    # One row and one column per fold, 4-bit codes: the narrowest datapath.
    ("scalar", dict(max_rows=3, max_cols=5, max_bits=4, pe=1, simd=1, max_payload=24, max_act_bits=2), 3, 60),
    # PE and SIMD that divide nothing.
    ("odd", dict(max_rows=7, max_cols=13, max_bits=6, pe=3, simd=5, max_payload=48, max_act_bits=0), 4, 60),
    # A 4-bit activation stage (a 61-byte threshold record fits 80 bytes), one row group.
    ("act4", dict(max_rows=5, max_cols=6, max_bits=3, pe=5, simd=3, max_payload=80, max_act_bits=4), 3, 60),
    # The whole bench on a core with a feature map (the default run has its window tests only).
    ("windows", WINDOWS, 6, 600),
    # Window codes run on across tiles of several vectors; a deeper array (tests/hw/test_core.py's).
    ("windows_v3", dict(WINDOWS, vectors=3, popcount_stages=1, fetch_stages=1), 3, 60),
    # Two drain chains, several folds.
    ("windows_v2d2", dict(WINDOWS, pe=2, simd=4, vectors=2, drains=2), 3, 60),
]

# The cores `dorefa build` makes for each board (boards.top.CORE_PRESETS), whole bench,
# under Verilator alone (Icarus would take hours over the ULX3S's 128 dot-product units):
# about 3 minutes for the iCEBreaker's, 30 for the ULX3S's (its 16,384 batch sums).
PRESET_CONFIGS = [(board, dict(params), 3, 60) for board, params in CORE_PRESETS.items()]

# (name, core parameters, fuzz steps, window scripts): the window (and packed accumulator)
# tests alone, in the default run (the fuzz's pool holds the window and packed requests).
WINDOW_CONFIGS = [
    ("windows", WINDOWS, 200, 1),
]
WINDOW_TESTS = ["windows", "window_fuzz", "fuzz", "packed"]


def run(simulator, name, params, vectors, fuzz_steps, seed, *, window_scripts=1, testcase=None):
    dut = TrainingCore(**params, idle_timeout=TIMEOUT)
    run_cocotb(dut, toplevel=f"training_core_{name}", test_module="tb.core.cocotb_core",
               simulator=simulator, testcase=testcase,
               config={"params": params, "timeout": TIMEOUT, "seed": seed, "vectors": vectors,
                       "fuzz_steps": fuzz_steps, "window_scripts": window_scripts})


@on_each_simulator("name, params, vectors, fuzz_steps", CONFIGS)
def test_core(simulator, name, params, vectors, fuzz_steps):
    run(simulator, name, params, vectors, fuzz_steps, seed=1)


@on_each_simulator("name, params, vectors, fuzz_steps", SLOW_CONFIGS, slow=True)
def test_core_shapes(simulator, name, params, vectors, fuzz_steps):
    run(simulator, name, params, vectors, fuzz_steps, seed=2, window_scripts=3)


@on_each_simulator("name, params, vectors, fuzz_steps", PRESET_CONFIGS, slow=True, simulators=("verilator",))
def test_core_presets(simulator, name, params, vectors, fuzz_steps):
    run(simulator, name, params, vectors, fuzz_steps, seed=2)


@on_each_simulator("name, params, fuzz_steps, window_scripts", WINDOW_CONFIGS)
def test_core_windows(simulator, name, params, fuzz_steps, window_scripts):
    run(simulator, name, params, 1, fuzz_steps, seed=3, window_scripts=window_scripts, testcase=WINDOW_TESTS)
