"""A host-driver transport to a training core in the Amaranth simulator.

:class:`AmaranthCoreTransport` is a :class:`sw.driver.Transport`: bytes the
host writes go into the core's ``rx`` stream, bytes the core sends on ``tx``
come back from :meth:`~AmaranthCoreTransport.read`.  The simulation runs
only inside ``read``, a slice of cycles at a time, until a reply byte is
there (or a cycle budget is spent: the link then looks dead, as a wedged
core would).  So :class:`sw.driver.CoreClient` -- PING, LOAD_MATRIX, RUN,
GEMM tiling -- runs unchanged against the gateware::

    core = TrainingCore(max_rows=6, max_cols=12, pe=2, simd=4, max_payload=64, max_act_bits=3)
    client = CoreClient(AmaranthCoreTransport(core))
    out = client.matmul(vectors, 2, False, matrix, 3, True)

A core with byte streams only (:class:`hw.core.TrainingCore`); the UART
pins of :class:`hw.core.UARTCore` would cost ``10 * divisor`` cycles a byte.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from sw.driver import LinkError, Transport

from .transports import AMARANTH_SIM_TIMEOUT_S

__all__ = ["AmaranthCoreTransport"]


class AmaranthCoreTransport(Transport):
    """:class:`sw.driver.Transport` on ``core`` (``rx``/``tx`` byte streams) in the Amaranth simulator.

    Parameters
    ----------
    core : wiring.Component
        With ``rx: In(stream.Signature(8))`` and ``tx: Out(stream.Signature(8))``.
    max_cycles : int
        Cycles one :meth:`read` may simulate waiting for a first byte
        before it returns ``b""`` (the driver then reports a timeout).
    slice_cycles : int
        Cycles simulated between checks for reply bytes.
    reply_timeout : float or None
        Wall-clock seconds a client should wait for a reply
        (:attr:`sw.driver.Transport.reply_timeout`; default
        :data:`sim.transports.AMARANTH_SIM_TIMEOUT_S`; ``None``: the client's
        default).  The simulation is slow, slower still on a loaded machine:
        ``max_cycles``, not the wall clock, detects a wedged core.
    """

    PERIOD = 1e-8

    def __init__(self, core, *, max_cycles: int = 2_000_000, slice_cycles: int = 256,
                 reply_timeout: float | None = AMARANTH_SIM_TIMEOUT_S):
        if max_cycles < 1 or slice_cycles < 1:
            raise ValueError(f"max_cycles and slice_cycles must be >= 1, got {max_cycles}, {slice_cycles}")
        self.reply_timeout = None if reply_timeout is None else float(reply_timeout)
        self.core = core
        self.max_cycles = int(max_cycles)
        self.slice_cycles = int(slice_cycles)
        self.cycles = 0  # simulated so far
        self._to_core: deque[int] = deque()
        self._from_core = bytearray()
        self._closed = False
        self._sim = Simulator(core)
        self._sim.add_clock(self.PERIOD)
        self._sim.add_testbench(self._feed, background=True)
        self._sim.add_testbench(self._drain, background=True)

    async def _feed(self, ctx):
        rx = self.core.rx
        async for _, _, ready in ctx.tick().sample(rx.ready):
            if ctx.get(rx.valid) and ready:  # the byte offered was taken at this edge
                self._to_core.popleft()
            if self._to_core:
                ctx.set(rx.payload, self._to_core[0])
                ctx.set(rx.valid, 1)
            else:
                ctx.set(rx.valid, 0)

    async def _drain(self, ctx):
        tx = self.core.tx
        ctx.set(tx.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(tx.valid, tx.payload):
            if valid:
                self._from_core.append(payload)

    def _run(self, cycles: int) -> None:
        self.cycles += cycles
        self._sim.run_until(self.cycles * self.PERIOD)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkError("simulated core transport is closed")
        self._to_core.extend(bytes(data))

    def read(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` reply bytes; simulates until the first one (``timeout``,
        wall-clock seconds, is ignored: the cycle budget ``max_cycles`` stands in)."""
        if self._closed:
            raise LinkError("simulated core transport is closed")
        spent = 0
        while not self._from_core and spent < self.max_cycles:
            self._run(self.slice_cycles)
            spent += self.slice_cycles
        data = bytes(self._from_core[:size])
        del self._from_core[:size]
        return data

    def close(self) -> None:
        self._closed = True
