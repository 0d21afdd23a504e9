"""A core behind a pseudo-terminal, in process: ``serial:/dev/pts/N`` on any transport.

:class:`PtyBridge` owns the master side of a pseudo-terminal; a thread
writes every byte the host sends on the slave (:attr:`PtyBridge.device`) to
a :class:`sw.driver.Transport` and writes the transport's reply bytes back.
Behind it: the gateware in the Amaranth simulator
(:class:`sim.core_transport.AmaranthCoreTransport`, which simulates until
the core has been silent for its ``max_cycles``), or the core's model
(:class:`sw.driver.LoopbackTransport`)::

    bridge = PtyBridge(AmaranthCoreTransport(TrainingCore(**params), max_cycles=4096))
    client = CoreClient(SerialTransport(bridge.device))

:meth:`PtyBridge.stop` stops answering (the link stays open: a wedged
core); :meth:`PtyBridge.close` also closes the pty, so the host's reads
and writes fail (:class:`sw.protocol.LinkError`).  The compiled core of
``--backend sim`` has its own, out-of-process bridge
(:mod:`sim.verilator_bridge`).
"""

from __future__ import annotations

import os
import select
import threading
import tty

__all__ = ["PtyBridge"]


class PtyBridge:
    """Serve ``transport`` (a :class:`sw.driver.Transport` to a core) on a new pseudo-terminal."""

    def __init__(self, transport):
        self.transport = transport
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.device = os.ttyname(self.slave)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="pty-bridge", daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            self.transport.write(data)
            while not self._stop.is_set():
                reply = self.transport.read(1 << 16, 0.0)  # b"": nothing more for now
                if not reply:
                    break
                try:
                    while reply:
                        reply = reply[os.write(self.master, reply):]
                except OSError:
                    return

    def stop(self) -> None:
        """Stop answering; the pty stays open (idempotent)."""
        self._stop.set()
        self.thread.join(5)

    def close(self) -> None:
        """Stop, close both ends this object holds and the transport (idempotent)."""
        self.stop()
        for name in ("master", "slave"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
