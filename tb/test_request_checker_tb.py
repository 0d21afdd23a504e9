# amaranth: UnusedElaboratable=no
"""pytest entry for the cocotb request-checker testbench (``tb/request_checker``), on Icarus
and Verilator."""

from hw.request_checker import RequestChecker
from sim.cocotb_runner import run_cocotb
from sw.contract.core import CoreConfig, config_params
from sw.core_scripts import SMALL, WINDOWS
from tb.entry import on_each_simulator

# (name, core parameters, fuzzed steps): the checks of a core with an activation stage; of
# one without, with packed accumulators; of one with every command (sums, windows, pooling).
CONFIGS = [
    ("small", SMALL, 40),
    ("plain", dict(SMALL, max_act_bits=0, packed_accumulators=1), 40),
    ("windows", WINDOWS, 60),
]
SLOW_CONFIGS = [
    ("windows_long", WINDOWS, 600),
]
TIMEOUT = 300  # the idle timeout the fuzzed gaps are measured against


def run(simulator, name, params, steps, seed):
    checker = RequestChecker(CoreConfig(**config_params(params)))
    run_cocotb(checker, toplevel=f"request_checker_{name}",
               test_module="tb.request_checker.cocotb_request_checker", simulator=simulator,
               config={"params": params, "latency": checker.latency, "head_bytes": checker.head_bytes,
                       "seed": seed, "steps": steps, "timeout": TIMEOUT})


@on_each_simulator("name, params, steps", CONFIGS)
def test_request_checker(simulator, name, params, steps):
    run(simulator, name, params, steps, seed=steps)


@on_each_simulator("name, params, steps", SLOW_CONFIGS, slow=True)
def test_request_checker_sweep(simulator, name, params, steps):
    run(simulator, name, params, steps, seed=steps + 1)
