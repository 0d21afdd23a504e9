"""Where a model's integer products run: ``--backend`` of ``dorefa train``.

=================  ============================================================
``torch``          the float golden model's engine (torch convolutions on codes)
``ref``            the integer reference in process (bit planes, AND, popcount)
``model``          the core's byte-level model over the framed host link, in
                   process (the protocol end to end, no hardware), with the
                   ULX3S core's limits and batch sums
                   (:data:`sw.contract.core.LARGE_LIMITS`)
``serial:DEVICE``  a core on a serial port (a board's USB-UART, or a
                   pseudo-terminal bridged to a simulated core), at 3 Mbaud;
                   ``serial:DEVICE@BAUD`` at ``BAUD`` (e.g. 115200, the
                   fallback builds' rate)
``sim``            the gateware compiled by Verilator behind a pseudo-terminal,
                   driven as ``serial:DEVICE`` is (:data:`sim.transports.SIM_CORE`:
                   the default core with those batch sums)
``sim:amaranth``   the same gateware in the Amaranth simulator, in process;
                   slow: single products only
=================  ============================================================

The simulated cores belong to ``sim`` (:mod:`sim.transports`), which ``sw``
does not import: :func:`make_engine` gets them through ``open_transport``,
a function from backend name to :class:`sw.driver.Transport` that the caller
supplies (the ``dorefa`` command line passes
:func:`sim.transports.open_transport`).

All give bit-identical training (tested), so a run may switch backend on
``--resume``.  Engines that hold a link or a simulation have ``close()``
(:func:`sw.train.train` calls it when it is done or fails).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["BACKENDS", "SIM_BACKENDS", "check_backend", "make_engine"]

from .contract.backends import BACKENDS, SERIAL_PREFIX, SIM_BACKENDS, parse_serial


def check_backend(spec: str) -> str:
    """Return ``spec`` if it names a backend, else raise ``ValueError`` listing them
    (or, for ``serial:...``, saying what is wrong with its device or rate)."""
    if spec in ("torch", "ref", "model", *SIM_BACKENDS):
        return spec
    if isinstance(spec, str) and spec.startswith(SERIAL_PREFIX) and len(spec) > len(SERIAL_PREFIX):
        parse_serial(spec)
        return spec
    raise ValueError(f"unknown backend {spec!r}; allowed: {', '.join(BACKENDS)}")


def make_engine(spec: str, *, open_transport: Callable[[str], object] | None = None):
    """The engine for ``spec`` (see the module docstring; a serial port's rate is
    the spec's, :func:`sw.contract.backends.parse_serial`).  ``open_transport(spec)``
    returns the :class:`sw.driver.Transport` to the simulated core of a
    :data:`SIM_BACKENDS` name (e.g. :func:`sim.transports.open_transport`); the
    client waits for replies as long as that transport says
    (:attr:`sw.driver.Transport.reply_timeout`)."""
    spec = check_backend(spec)
    if spec == "torch":
        from .products import TorchEngine
        return TorchEngine()
    if spec == "ref":
        from .intref import IntRefEngine
        return IntRefEngine()
    from .core_engine import CoreEngine
    from .driver import CoreClient, LoopbackTransport, SerialTransport
    if spec == "model":
        from .contract.core import LARGE_LIMITS
        from .core_model import CoreModel
        return CoreEngine(CoreClient(LoopbackTransport(CoreModel(**LARGE_LIMITS))))
    if spec in SIM_BACKENDS:
        if open_transport is None:
            raise ValueError(f"backend {spec!r} runs the simulated core: use the dorefa command line, "
                             "or pass open_transport=sim.transports.open_transport")
        return CoreEngine(CoreClient(open_transport(spec)))
    device, baud = parse_serial(spec)
    return CoreEngine(CoreClient(SerialTransport(device, baudrate=baud)))
