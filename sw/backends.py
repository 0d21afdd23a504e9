"""Where a model's integer products run: ``--backend`` of ``dorefa train``.

=================  ============================================================
``torch``          the float golden model's engine (torch convolutions on codes)
``ref``            the integer reference in process (bit planes, AND, popcount)
``model``          the core's byte-level model over the framed host link, in
                   process (the protocol end to end, no hardware)
``serial:DEVICE``  a core on a serial port (a board's USB-UART, or a
                   pseudo-terminal bridged to a simulated core)
=================  ============================================================

All give bit-identical training (tested), so a run may switch backend on
``--resume``.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "check_backend", "make_engine"]

BACKENDS = ("torch", "ref", "model", "serial:DEVICE")


def check_backend(spec: str) -> str:
    """Return ``spec`` if it names a backend, else raise ``ValueError`` listing them."""
    if spec in ("torch", "ref", "model"):
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
    return CoreEngine(CoreClient(SerialTransport(spec[len("serial:"):], baudrate=baudrate)))
