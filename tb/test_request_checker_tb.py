# amaranth: UnusedElaboratable=no
"""pytest entry for the cocotb request-checker testbench (``tb/request_checker``), on Icarus
and Verilator."""

from amaranth.hdl import Module
from amaranth.lib import wiring

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


class CheckerHarness(wiring.Component):
    """A :class:`~hw.request_checker.RequestChecker` with its ``event`` port named
    ``request``: ``event`` is a Verilog keyword, so the checker's own port is the escaped
    identifier ``\\event``, which a cocotb handle does not reach on every simulator."""

    def __init__(self, checker: RequestChecker):
        self._checker = checker
        members = checker.signature.members
        super().__init__({"request": members["event"],
                          **{name: members[name] for name in ("held", "command", "verdict", "plan")}})

    def elaborate(self, platform):
        m = Module()
        m.submodules.checker = checker = self._checker
        m.d.comb += [checker.event.eq(self.request), checker.held.eq(self.held), self.command.eq(checker.command),
                     self.verdict.eq(checker.verdict), self.plan.eq(checker.plan)]
        return m


def run(simulator, name, params, steps, seed):
    checker = RequestChecker(CoreConfig(**config_params(params)))
    run_cocotb(CheckerHarness(checker), toplevel=f"request_checker_{name}",
               test_module="tb.request_checker.cocotb_request_checker", simulator=simulator,
               config={"params": params, "latency": checker.latency, "head_bytes": checker.head_bytes,
                       "seed": seed, "steps": steps, "timeout": TIMEOUT})


@on_each_simulator("name, params, steps", CONFIGS)
def test_request_checker(simulator, name, params, steps):
    run(simulator, name, params, steps, seed=steps)


@on_each_simulator("name, params, steps", SLOW_CONFIGS, slow=True)
def test_request_checker_sweep(simulator, name, params, steps):
    run(simulator, name, params, steps, seed=steps + 1)
