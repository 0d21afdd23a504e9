"""Transports to the simulated core: the ``sim`` and ``sim:amaranth`` backends.

:func:`open_transport` turns a backend name into a :class:`sw.driver.Transport`
to a simulated :class:`hw.core.TrainingCore`; :func:`sw.backends.make_engine`
takes it as its ``open_transport`` (the ``dorefa`` command line passes it), so
``sw`` itself never imports the gateware or the simulators::

    engine = make_engine("sim", open_transport=sim.transports.open_transport)

=================  ============================================================
``sim``            the gateware compiled by Verilator, run by cocotb behind a
                   pseudo-terminal (:class:`sim.verilator_bridge.VerilatorBridge`)
                   and driven through it as ``serial:DEVICE`` is: the same
                   bytes cross a real tty.  The first use builds the model
                   (minutes; cached in ``sim_build/``)
``sim:amaranth``   the same gateware in the Amaranth simulator, in process
                   (:class:`sim.core_transport.AmaranthCoreTransport`); slow:
                   single products only
=================  ============================================================

Each transport carries how long a client should wait for a reply
(:attr:`sw.driver.Transport.reply_timeout`).
"""

from __future__ import annotations

from sw.contract.backends import SIM_BACKENDS
from sw.contract.core import BATCH_SUMS, CORE_DEFAULTS, FEATURE_MAPS, PACKED_ACCUMULATORS, POOLING
from sw.driver import Transport

__all__ = ["SIM_CORE", "AMARANTH_SIM_CORE", "SIM_TIMEOUT_S", "AMARANTH_SIM_TIMEOUT_S",
           "open_transport"]

#: Parameters of the simulated core of ``sim``: the default core
#: (:data:`sw.contract.core.CORE_DEFAULTS`), with the batch sums, the feature map, the
#: packed accumulators and the pooling of the ULX3S's (:data:`sw.contract.core.BATCH_SUMS`,
#: :data:`~sw.contract.core.FEATURE_MAPS`, :data:`~sw.contract.core.PACKED_ACCUMULATORS`,
#: :data:`~sw.contract.core.POOLING`), as the ``model`` backend's core has.
SIM_CORE = dict(CORE_DEFAULTS, **BATCH_SUMS, **FEATURE_MAPS, **PACKED_ACCUMULATORS, **POOLING)

#: Parameters of the core of ``sim:amaranth``: the ``sim`` core's limits, but more
#: rows and columns per cycle (fewer cycles for the slower simulator).
AMARANTH_SIM_CORE = dict(SIM_CORE, pe=8, simd=32)

#: Seconds a client waits for a reply from the core of ``sim`` (the largest
#: RUN frame takes milliseconds under Verilator).
SIM_TIMEOUT_S = 60.0

#: The same for ``sim:amaranth`` (wall clock; the transport's cycle budget
#: detects a wedged core).
AMARANTH_SIM_TIMEOUT_S = 3600.0


def open_transport(spec: str) -> Transport:
    """A transport to a new simulated core for backend ``spec`` (one of
    :data:`sw.contract.backends.SIM_BACKENDS`); close it to stop the simulation."""
    # The gateware and the simulators are imported only when asked for.
    if spec == "sim":
        from .verilator_bridge import SimulatedSerialTransport
        return SimulatedSerialTransport(SIM_CORE, timeout=SIM_TIMEOUT_S)
    if spec == "sim:amaranth":
        from hw.core import TrainingCore

        from .core_transport import AmaranthCoreTransport
        return AmaranthCoreTransport(TrainingCore(**AMARANTH_SIM_CORE))  # waits AMARANTH_SIM_TIMEOUT_S
    raise ValueError(f"no simulated core for backend {spec!r}; allowed: {', '.join(SIM_BACKENDS)}")
