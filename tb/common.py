"""cocotb building blocks shared by the unit testbenches.

Amaranth stream ports appear in Verilog as ``<name>__valid``,
``<name>__ready`` and ``<name>__payload`` (a struct payload is one flat
vector); the clock and reset of the ``sync`` domain are ``clk`` and ``rst``.
A typical testbench::

    driver, monitor = await bring_up(dut, seed, gap=0.3, stall=0.3)
    await transfer(driver, monitor, words, len(words))
    Scoreboard("popcount", dut._log).check(expected(driver.sent), monitor.received)

:func:`bring_up` is short for starting the clock, making a
:class:`StreamDriver` on ``i`` and a :class:`StreamMonitor` on ``o`` with
their own seeded RNGs, and :func:`reset`; :func:`transfer` starts the
monitor, sends and waits.  :func:`cut_by_reset` is the first half of every
unit's reset-in-mid-stream test.

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
from cocotb.utils import get_sim_time

__all__ = ["PERIOD_NS", "start_clock", "reset", "StreamDriver", "StreamMonitor", "Scoreboard",
           "bring_up", "transfer", "cut_by_reset", "send_always_ready"]

#: Default clock period (the one :func:`bring_up` starts), in ns.
PERIOD_NS = 10


def start_clock(dut, period_ns: float = PERIOD_NS, *, clock: str = "clk") -> Clock:
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


class _StreamEnd:
    """What both ends of a stream hold: the clock, the handles of
    ``<prefix>__{valid,ready,payload}`` and the RNG of the random idle
    cycles, each taken with ``probability`` (the ``gap`` or ``stall``
    argument, named ``what`` in the error)."""

    def __init__(self, dut, prefix: str, clock: str, rng: "random.Random | None",
                 probability: float, what: str):
        if not 0 <= probability < 1:
            raise ValueError(f"{what} must be a probability in [0, 1), not {probability!r}")
        self._clk = getattr(dut, clock)
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._rng = rng if rng is not None else random.Random(0)


class StreamDriver(_StreamEnd):
    """Transmitter for the stream ``<prefix>__{valid,ready,payload}`` of ``dut``.

    :meth:`send` presents each payload until it is accepted (``valid`` is
    never dropped early), with a random number of idle cycles before each
    (each idle cycle taken with probability ``gap``).  Accepted payloads are
    appended to :attr:`sent`, in order.
    """

    def __init__(self, dut, prefix: str, *, clock: str = "clk",
                 rng: "random.Random | None" = None, gap: float = 0.0):
        super().__init__(dut, prefix, clock, rng, gap, "gap")
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


class StreamMonitor(_StreamEnd):
    """Receiver for the stream ``<prefix>__{valid,ready,payload}`` of ``dut``.

    Once :meth:`start`\\ ed, it drives ``ready`` (low on each cycle with
    probability ``stall``: random back-pressure) and appends every payload
    transferred (``valid & ready`` at a rising edge) to :attr:`received`.
    """

    def __init__(self, dut, prefix: str, *, clock: str = "clk",
                 rng: "random.Random | None" = None, stall: float = 0.0):
        super().__init__(dut, prefix, clock, rng, stall, "stall")
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


# ---------------------------------------------------------------- test steps
#
# The steps every unit's testbench repeats.  They keep the timing discipline
# above: each is called, and returns, just after a rising edge.


async def bring_up(dut, seed: int, *, inputs: Sequence[str] = ("i",), output: str = "o",
                   gap: float = 0.0, stall: float = 0.0, idle: Sequence[str] = ()):
    """Start the clock, make a :class:`StreamDriver` for each of ``inputs``
    and a :class:`StreamMonitor` on ``output``, then :func:`reset`.

    Each gets its own :class:`random.Random`, seeded ``seed``, ``seed + 1``,
    ... in that order (the drivers, then the monitor), so a test replays
    exactly.  ``idle`` names streams the test drives by hand (a seed load):
    their ``valid`` and ``payload`` are 0 through the reset.  Returns the
    drivers and then the monitor, as one tuple.
    """
    start_clock(dut)
    for prefix in idle:
        getattr(dut, f"{prefix}__valid").value = 0
        getattr(dut, f"{prefix}__payload").value = 0
    drivers = [StreamDriver(dut, prefix, rng=random.Random(seed + index), gap=gap)
               for index, prefix in enumerate(inputs)]
    monitor = StreamMonitor(dut, output, rng=random.Random(seed + len(inputs)), stall=stall)
    await reset(dut)
    return (*drivers, monitor)


async def transfer(driver: StreamDriver, monitor: StreamMonitor, payloads: Sequence[int],
                   count: int, *, settle_cycles: int = 0, timeout_cycles: int = 100_000) -> int:
    """Start ``monitor`` (if it is not running), send ``payloads`` and wait
    until :attr:`StreamMonitor.received` holds ``count`` results; then wait
    ``settle_cycles`` more cycles, in which nothing more may come out (the
    scoreboard's length check catches anything that does).

    Returns the clock cycles from the call to the ``count``-th result (the
    settling not included), in periods of :data:`PERIOD_NS`: the measure of
    the full-rate tests.
    """
    monitor.start()
    begin = get_sim_time("ns")
    await driver.send(payloads)
    await monitor.wait_for(count, timeout_cycles=timeout_cycles)
    cycles = round((get_sim_time("ns") - begin) / PERIOD_NS)
    if settle_cycles:
        await ClockCycles(monitor._clk, settle_cycles)
    return cycles


async def cut_by_reset(dut, driver: StreamDriver, monitor: StreamMonitor, payloads: Sequence[int],
                       cycles: int, *, output: str = "o",
                       cleared: "Callable[[], None] | None" = None) -> None:
    """Reset in mid-stream: send ``payloads`` in the background (``monitor``
    receiving) and, ``cycles`` clock cycles later, cut the stream and hold
    reset for 3 cycles.

    Checks that ``<output>.valid`` is low right after the reset, and calls
    ``cleared()`` (if given) at that same moment to check whatever else the
    reset must clear.  Returns just after the next rising edge, with the
    driver idle and the monitor stopped; :attr:`StreamDriver.sent` and
    :attr:`StreamMonitor.received` hold what crossed before the cut.
    """
    monitor.start()
    sender = cocotb.start_soon(driver.send(payloads))
    await ClockCycles(dut.clk, cycles)
    sender.cancel()
    driver.idle()
    monitor.stop()
    await reset(dut, 3)
    await ReadOnly()
    assert _read(getattr(dut, f"{output}__valid")) == 0, f"{output}.valid set right after reset"
    if cleared is not None:
        cleared()
    await RisingEdge(dut.clk)


async def send_always_ready(dut, prefix: str, payload: int, *, clock: str = "clk") -> None:
    """One transfer on ``<prefix>``, a stream whose ``ready`` is always high
    (a seed load): ``valid`` for one rising edge."""
    valid = getattr(dut, f"{prefix}__valid")
    valid.value = 1
    getattr(dut, f"{prefix}__payload").value = payload
    await RisingEdge(getattr(dut, clock))
    valid.value = 0
