"""Helpers for fast tests on the Amaranth simulator.

Stream helpers follow the :mod:`amaranth.lib.stream` rules: a transmitter
holds ``valid`` and ``payload`` until ``ready``; gaps are only ever inserted
*between* transfers.  Randomness comes from a caller's :class:`random.Random`,
so a failing seed replays exactly::

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, words, rng=random.Random(1), gap=0.3)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, len(words), rng=random.Random(2), stall=0.3))

    simulate(dut, producer, consumer)

``gap`` is the probability of an idle cycle before each transfer (repeated,
so the number of idle cycles is geometric); ``stall`` is the same for cycles
with ``ready`` low before each accepted transfer.
"""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from typing import Any, Awaitable, Callable, Iterable

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["stream_put", "stream_get", "stream_put_all", "stream_get_n", "simulate"]

Testbench = Callable[[Any], Awaitable[None]]


async def _idle(ctx, rng: "random.Random | None", probability: float, domain: str) -> None:
    if not 0 <= probability < 1:
        raise ValueError(f"gap/stall must be a probability in [0, 1), not {probability!r}")
    if rng is None or probability == 0:
        return
    while rng.random() < probability:
        await ctx.tick(domain)


async def stream_put(ctx, stream, payload, *, rng: "random.Random | None" = None,
                     gap: float = 0.0, domain: str = "sync") -> None:
    """Send one ``payload`` on ``stream`` (its ``valid``/``payload`` are ours),
    after a random number of idle cycles; returns once it was accepted."""
    await _idle(ctx, rng, gap, domain)
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick(domain).until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, rng: "random.Random | None" = None,
                     stall: float = 0.0, domain: str = "sync"):
    """Receive one payload from ``stream`` (its ``ready`` is ours), holding
    ``ready`` low for a random number of cycles first (back-pressure)."""
    ctx.set(stream.ready, 0)
    await _idle(ctx, rng, stall, domain)
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick(domain).sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_put_all(ctx, stream, payloads: Iterable, **kwargs) -> None:
    """:func:`stream_put` each of ``payloads`` in order."""
    for payload in payloads:
        await stream_put(ctx, stream, payload, **kwargs)


async def stream_get_n(ctx, stream, count: int, **kwargs) -> list:
    """:func:`stream_get` ``count`` payloads, in order."""
    return [await stream_get(ctx, stream, **kwargs) for _ in range(count)]


def simulate(component, *testbenches: Testbench, clocks: "dict[str, float] | None" = None,
             vcd: "str | os.PathLike | None" = None, deadline: "float | None" = 1e-3) -> None:
    """Run ``testbenches`` (``async def tb(ctx)``) on ``component`` until all return.

    ``clocks`` maps domain names to periods in seconds (default: a 10 ns
    ``sync`` clock).  A clocked domain the design lacks (a combinational
    component) is created for the testbenches to tick on.  ``vcd`` names a
    waveform file to write; with ``vcd=None`` and ``WAVES=1`` in the
    environment, ``<first testbench name>.vcd`` is written in the current
    directory.  ``deadline`` (simulated seconds, ``None`` for none) fails a
    hung simulation with :exc:`TimeoutError` instead of running forever.
    Exceptions raised by a testbench propagate.
    """
    sim = _simulator(component, {"sync": 10e-9} if clocks is None else clocks)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    if deadline is not None:
        async def watchdog(ctx):
            await ctx.delay(deadline)
            raise TimeoutError(f"simulation still running after {deadline} s of simulated time")
        # Background: it does not keep the simulation alive by itself.
        sim.add_testbench(watchdog, background=True)

    if vcd is None and os.environ.get("WAVES", "0") not in ("", "0") and testbenches:
        vcd = f"{getattr(testbenches[0], '__name__', 'sim')}.vcd"
    with sim.write_vcd(vcd) if vcd is not None else nullcontext():
        sim.run()


def _simulator(component, clocks: "dict[str, float]") -> Simulator:
    """A simulator with ``clocks``, wrapping ``component`` in a module that
    defines the domains it lacks (``add_clock`` names them by raising)."""
    sim = Simulator(component)
    missing = []
    for domain, period in clocks.items():
        try:
            sim.add_clock(period, domain=domain)
        except NameError:
            missing.append(domain)
    if not missing:
        return sim
    top = Module()
    top.submodules.dut = component
    for domain in missing:
        top.domains += ClockDomain(domain)
    sim = Simulator(top)
    for domain, period in clocks.items():
        sim.add_clock(period, domain=domain)
    return sim
