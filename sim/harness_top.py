"""The simulated board's top: the training core behind registers at every top-level input.

Verilator evaluates a model in two regions: the *input-combinational* one
(``ico``), all logic that a top-level input reaches without a register, run
on every ``eval()``; and the clocked one, run on each rising clock edge.  The
harness (``sim/native/harness.cpp``) calls ``eval()`` twice a cycle (clock
low, clock high).  On the bare :class:`hw.core.TrainingCore` the reset is a
top-level input, and Amaranth's Verilog folds the reset into every
register's next-state logic, so that region holds much of the design
(3,700 generated lines of the ``sim`` core's model, a quarter of its time
under ``perf``) and runs twice a cycle.  Behind this top no input reaches
anything but a register: the reset passes one flip-flop, and each link
stream a :class:`hw.skid_buffer.SkidBuffer` (registered ``ready``,
``valid`` and payload), so the region shrinks to the slices' own
next-state logic, and the simulated board runs 1.16 to 1.24 times as many
cycles a second as on the bare core (``bench/sim_bridge.py``).

Ports
-----
rx : ``In(stream.Signature(8))``
    Bytes from the host, through a skid buffer to the core's ``rx``.
tx : ``Out(stream.Signature(8))``
    Bytes to the host, from the core's ``tx`` through a skid buffer.
idle : ``Out(1)``
    The core would take a byte (it is not executing a request), nothing is
    held in either slice, and the core offers no byte: with no byte offered
    on ``rx``, nothing will happen but the core's idle timer.

The reset (the ``sync`` domain's) reaches the core one cycle late, and a
byte reaches the core, and the core's byte the host, one cycle late each;
the slices take a byte a cycle, so the core runs at the bare core's
throughput and answers byte for byte as it does.
"""

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.core import TrainingCore
from hw.skid_buffer import SkidBuffer

__all__ = ["HarnessTop"]


class HarnessTop(wiring.Component):
    """A :class:`hw.core.TrainingCore` with ``core_params`` behind registers at every
    top-level input (module docstring)."""

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))
    idle: Out(1)

    def __init__(self, core_params: dict):
        self.core = TrainingCore(**core_params)  # checks the parameters
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # The core's domain: the same clock, the reset one flip-flop later.
        m.domains.core = core_domain = ClockDomain("core", local=True)
        reset = Signal(init=1)
        m.d.sync += reset.eq(ResetSignal("sync"))
        m.d.comb += [core_domain.clk.eq(ClockSignal("sync")), core_domain.rst.eq(reset)]

        to_core = SkidBuffer(8)
        to_host = SkidBuffer(8)
        m.submodules.core = DomainRenamer("core")(self.core)
        m.submodules.to_core = DomainRenamer("core")(to_core)
        m.submodules.to_host = DomainRenamer("core")(to_host)
        wiring.connect(m, wiring.flipped(self.rx), to_core.i)
        wiring.connect(m, to_core.o, self.core.rx)
        wiring.connect(m, self.core.tx, to_host.i)
        wiring.connect(m, to_host.o, wiring.flipped(self.tx))
        m.d.comb += self.idle.eq(self.core.rx.ready & to_core.empty & to_host.empty & ~self.core.tx.valid)
        return m
