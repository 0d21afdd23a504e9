"""cocotb building blocks shared by the unit testbenches.

Amaranth stream ports appear in Verilog as ``<name>__valid``,
``<name>__ready`` and ``<name>__payload`` (a struct payload is one flat
vector); the clock and reset of the ``sync`` domain are ``clk`` and ``rst``.
A typical testbench::

    start_clock(dut)
    driver = StreamDriver(dut, "i", rng=random.Random(seed), gap=0.3)
    monitor = StreamMonitor(dut, "o", rng=random.Random(seed + 1), stall=0.3)
    await reset(dut)
    monitor.start()
    await driver.send(words)
    await monitor.wait_for(len(words))
    Scoreboard("popcount", dut._log).check(expected(driver.sent), monitor.received)

Timing discipline (the same on Icarus and Verilator): signals are written
just after a rising edge and the handshake is read in the ``ReadOnly`` phase
before the next one, so what is read is what that edge will see.  Randomness
comes only from the seeded :class:`random.Random` objects passed in.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

__all__ = ["start_clock", "reset", "StreamDriver", "StreamMonitor", "Scoreboard"]


def start_clock(dut, period_ns: float = 10, *, clock: str = "clk") -> Clock:
    """Start a free-running clock on ``dut.<clock>``."""
    driver = Clock(getattr(dut, clock), period_ns, unit="ns")
    driver.start()
    return driver


async def reset(dut, cycles: int = 2, *, clock: str = "clk", rst: str = "rst") -> None:
    """Hold ``dut.<rst>`` high for ``cycles`` rising edges of ``dut.<clock>``
    (synchronous reset); returns just after the last one, reset released."""
    getattr(dut, rst).value = 1
    await ClockCycles(getattr(dut, clock), cycles)
    getattr(dut, rst).value = 0


def _read(handle) -> int:
    return int(handle.value)  # raises ValueError on X/Z: never silently 0


class StreamDriver:
    """Transmitter for the stream ``<prefix>__{valid,ready,payload}`` of ``dut``.

    :meth:`send` presents each payload until it is accepted (``valid`` is
    never dropped early), with a random number of idle cycles before each
    (each idle cycle taken with probability ``gap``).  Accepted payloads are
    appended to :attr:`sent`, in order.
    """

    def __init__(self, dut, prefix: str, *, clock: str = "clk",
                 rng: "random.Random | None" = None, gap: float = 0.0):
        if not 0 <= gap < 1:
            raise ValueError(f"gap must be a probability in [0, 1), not {gap!r}")
        self._clk = getattr(dut, clock)
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._rng = rng if rng is not None else random.Random(0)
        self._gap = gap
        self.sent: list[int] = []
        self.idle()

    def idle(self) -> None:
        """Drop ``valid`` (after cancelling a :meth:`send` task mid-stream)."""
        self._valid.value = 0

    async def send(self, payloads: Sequence[int]) -> None:
        """Send ``payloads``; call just after a rising edge (or at time 0)."""
        for payload in payloads:
            while self._gap and self._rng.random() < self._gap:
                self._valid.value = 0
                await RisingEdge(self._clk)
            self._valid.value = 1
            self._payload.value = payload
            while True:
                await ReadOnly()
                # Recorded before the edge that transfers it, as the monitor
                # does, so a task cancelled at that edge still agrees.
                accepted = _read(self._ready) == 1
                if accepted:
                    self.sent.append(payload)
                await RisingEdge(self._clk)
                if accepted:
                    break
        self._valid.value = 0


class StreamMonitor:
    """Receiver for the stream ``<prefix>__{valid,ready,payload}`` of ``dut``.

    Once :meth:`start`\\ ed, it drives ``ready`` (low on each cycle with
    probability ``stall``: random back-pressure) and appends every payload
    transferred (``valid & ready`` at a rising edge) to :attr:`received`.
    """

    def __init__(self, dut, prefix: str, *, clock: str = "clk",
                 rng: "random.Random | None" = None, stall: float = 0.0):
        if not 0 <= stall < 1:
            raise ValueError(f"stall must be a probability in [0, 1), not {stall!r}")
        self._clk = getattr(dut, clock)
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._rng = rng if rng is not None else random.Random(0)
        self._stall = stall
        self._task = None
        self.received: list[int] = []
        self._ready.value = 0

    def start(self) -> None:
        """Start receiving; call just after a rising edge (or at time 0)."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        """Stop receiving and drop ``ready``; call just after a rising edge."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._ready.value = 0

    async def wait_for(self, count: int, *, timeout_cycles: int = 100_000) -> None:
        """Wait until :attr:`received` holds ``count`` payloads."""
        for _ in range(timeout_cycles):
            if len(self.received) >= count:
                return
            await RisingEdge(self._clk)
        raise AssertionError(f"received {len(self.received)} of {count} payloads "
                             f"in {timeout_cycles} cycles")

    async def _run(self) -> None:
        while True:
            ready = not (self._stall and self._rng.random() < self._stall)
            self._ready.value = int(ready)
            await ReadOnly()
            if ready and _read(self._valid):
                self.received.append(_read(self._payload))
            await RisingEdge(self._clk)


class Scoreboard:
    """Exact comparison of received items against the reference model.

    Every check logs ``"<name>: checked N items, 0 mismatches"`` or fails
    with the count and the first ``show`` differences.  :attr:`checked` is
    the running total across checks.
    """

    def __init__(self, name: str, log=None, *, show: int = 5):
        self.name = name
        self.checked = 0
        self._log = log if log is not None else cocotb.log
        self._show = show

    def check(self, expected: Sequence, got: Sequence, *, prefix: bool = False,
              describe: "Callable[[int], str] | None" = None) -> int:
        """Require ``got == expected`` (or, with ``prefix``, that ``got`` is a
        prefix of ``expected``: a stream cut short).  ``describe(i)`` may add
        context (e.g. the input) to a reported difference.  Returns how many
        items were compared."""
        expected, got = list(expected), list(got)
        if prefix:
            expected = expected[:len(got)]
        problems = []
        if len(got) != len(expected):
            problems.append(f"expected {len(expected)} items, got {len(got)}")
        diffs = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
        for i in diffs[:self._show]:
            extra = f" ({describe(i)})" if describe is not None else ""
            problems.append(f"item {i}: expected {expected[i]!r}, got {got[i]!r}{extra}")
        compared = min(len(got), len(expected))
        if problems:
            raise AssertionError(f"{self.name}: {len(diffs)} mismatches in {compared} items; "
                                 + "; ".join(problems))
        self.checked += compared
        self._log.info("%s: checked %d items, 0 mismatches", self.name, compared)
        return compared
