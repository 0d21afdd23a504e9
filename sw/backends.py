"""Where a model's integer products run: ``--backend`` of ``dorefa train``.

=================  ============================================================
``torch``          the float golden model's engine (torch convolutions on codes)
``ref``            the integer reference in process (bit planes, AND, popcount)
``model``          the core's byte-level model over the framed host link, in
                   process (the protocol end to end, no hardware)
``serial:DEVICE``  a core on a serial port (a board's USB-UART, or a
                   pseudo-terminal bridged to a simulated core)
``sim``            the gateware (:class:`hw.core.TrainingCore`) compiled by
                   Verilator, run by cocotb behind a pseudo-terminal
                   (:class:`sim.verilator_bridge.VerilatorBridge`) and driven
                   through it as ``serial:DEVICE`` is: the same bytes cross a
                   real tty.  The first use builds the model (minutes;
                   cached in ``sim_build/``)
``sim:amaranth``   the same gateware in the Amaranth simulator, in process
                   (:class:`sim.core_transport.AmaranthCoreTransport`); slow:
                   single products only
=================  ============================================================

All give bit-identical training (tested), so a run may switch backend on
``--resume``.  Engines that hold a link or a simulation have ``close()``
(:func:`sw.train.train` calls it when it is done or fails).
"""

from __future__ import annotations

from .core_model import CORE_DEFAULTS

__all__ = ["BACKENDS", "check_backend", "make_engine"]

BACKENDS = ("torch", "ref", "model", "serial:DEVICE", "sim", "sim:amaranth")

#: Parameters of the simulated core of ``sim``: the default core, the one
#: built for the iCEBreaker (:data:`sw.core_model.CORE_DEFAULTS`).
SIM_CORE = dict(CORE_DEFAULTS)

#: Parameters of the core of ``sim:amaranth``: the defaults' limits, but more
#: rows and columns per cycle (fewer cycles for the slower simulator).
AMARANTH_SIM_CORE = dict(CORE_DEFAULTS, pe=8, simd=32)

#: Seconds :class:`sw.driver.CoreClient` waits for a reply from the core of
#: ``sim`` (the largest RUN frame takes milliseconds under Verilator).
SIM_TIMEOUT_S = 60.0

#: The same for ``sim:amaranth`` (wall clock; the transport's cycle budget
#: detects a wedged core).
AMARANTH_SIM_TIMEOUT_S = 3600.0


def check_backend(spec: str) -> str:
    """Return ``spec`` if it names a backend, else raise ``ValueError`` listing them."""
    if spec in ("torch", "ref", "model", "sim", "sim:amaranth"):
        return spec
    if isinstance(spec, str) and spec.startswith("serial:") and len(spec) > len("serial:"):
        return spec
    raise ValueError(f"unknown backend {spec!r}; allowed: {', '.join(BACKENDS)}")


def make_engine(spec: str, *, baudrate: int = 115200):
    """The engine for ``spec`` (see the module docstring)."""
    spec = check_backend(spec)
    if spec == "torch":
        from .products import TorchEngine
        return TorchEngine()
    if spec == "ref":
        from .intref import IntRefEngine
        return IntRefEngine()
    from .driver import CoreClient, CoreEngine, LoopbackTransport, SerialTransport
    if spec == "model":
        from .core_model import CoreModel
        return CoreEngine(CoreClient(LoopbackTransport(CoreModel())))
    # The gateware and the simulators are imported only when asked for.
    if spec == "sim":
        from sim.verilator_bridge import SimulatedSerialTransport
        return CoreEngine(CoreClient(SimulatedSerialTransport(SIM_CORE, timeout=SIM_TIMEOUT_S),
                                     timeout=SIM_TIMEOUT_S))
    if spec == "sim:amaranth":
        from hw.core import TrainingCore
        from sim.core_transport import AmaranthCoreTransport
        return CoreEngine(CoreClient(AmaranthCoreTransport(TrainingCore(**AMARANTH_SIM_CORE)),
                                     timeout=AMARANTH_SIM_TIMEOUT_S))
    return CoreEngine(CoreClient(SerialTransport(spec[len("serial:"):], baudrate=baudrate)))
