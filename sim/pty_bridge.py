"""A simulated training core on a pseudo-terminal: ``serial:/dev/pts/N`` against the gateware.

:class:`PtyBridge` owns the master side of a pseudo-terminal; a thread feeds
every byte the host writes on the slave (:attr:`PtyBridge.device`) to a
:class:`hw.core.TrainingCore` in the Amaranth simulator (through
:class:`sim.core_transport.AmaranthCoreTransport`) and writes the core's reply
bytes back.  After each write it simulates until the core has been silent
for ``quiet_cycles``.  :meth:`PtyBridge.close` stops it and closes the
master: the host's reads and writes then fail (:class:`sw.protocol.LinkError`).
"""

from __future__ import annotations

import os
import select
import threading
import tty

from sim.core_transport import AmaranthCoreTransport

__all__ = ["PtyBridge"]


class PtyBridge:
    """Serve ``core`` (``rx``/``tx`` byte streams) on a new pseudo-terminal."""

    def __init__(self, core, *, quiet_cycles: int = 4096):
        self.transport = AmaranthCoreTransport(core, max_cycles=quiet_cycles, slice_cycles=64)
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
                reply = self.transport.read(1 << 16, 0.0)  # b"" after quiet_cycles of silence
                if not reply:
                    break
                try:
                    while reply:
                        reply = reply[os.write(self.master, reply):]
                except OSError:
                    return

    def close(self) -> None:
        """Stop serving and close both ends this object holds (idempotent)."""
        self._stop.set()
        self.thread.join(5)
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
