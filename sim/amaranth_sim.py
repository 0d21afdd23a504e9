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

import hashlib
import os
import random
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["stream_put", "stream_get", "stream_put_all", "stream_get_n", "simulate",
           "WAVES_DIR", "waves_enabled", "wave_file"]

Testbench = Callable[[Any], Awaitable[None]]

#: Where waveforms go with ``WAVES=1`` (git-ignored): the Amaranth simulator's
#: VCD files (:func:`simulate`) and the cocotb simulators' (Icarus FST,
#: Verilator VCD; :func:`sim.cocotb_runner.run_cocotb`).
WAVES_DIR = Path(__file__).resolve().parent.parent / "build" / "waves"

#: Longest file name stem :func:`wave_file` makes (file systems allow 255 bytes).
_MAX_STEM = 150

_used: "dict[Path, int]" = {}  # waveform paths handed out by this process, and how often


def waves_enabled() -> bool:
    """Whether ``WAVES`` in the environment asks for waveforms (set and not ``0``)."""
    return os.environ.get("WAVES", "0") not in ("", "0")


def wave_file(suffix: str, name: str) -> Path:
    """A new waveform path ``WAVES_DIR/<stem><suffix>``, its folder created.

    Under pytest the stem is the running test's node id
    (``PYTEST_CURRENT_TEST``, e.g. ``tests/hw/test_x.py::test_y[4]``) made
    file-name safe (``tests_hw_test_x.py_test_y_4``), so every test keeps its
    own file; otherwise it is ``name`` (e.g. the first testbench's name).  A
    second waveform of the same stem in one process (a test that simulates
    twice) gets ``-2``, ``-3``, ... appended; a later run overwrites.
    """
    if not re.fullmatch(r"\.[A-Za-z0-9]+", suffix):
        raise ValueError(f"suffix must be a file extension such as '.vcd', not {suffix!r}")
    test = os.environ.get("PYTEST_CURRENT_TEST")
    if test:  # "<node id> (setup|call|teardown)"
        name = test.rsplit(" (", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "sim"
    if len(stem) > _MAX_STEM:
        stem = f"{stem[:_MAX_STEM - 13]}-{hashlib.sha256(stem.encode()).hexdigest()[:12]}"
    path = Path(WAVES_DIR) / f"{stem}{suffix}"
    count = _used[path] = _used.get(path, 0) + 1
    if count > 1:
        path = path.with_name(f"{stem}-{count}{suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


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
    environment, one is written under :data:`WAVES_DIR` (:func:`wave_file`:
    ``<test node id>.vcd`` under pytest, else ``<first testbench name>.vcd``).
    ``deadline`` (simulated seconds, ``None`` for none) fails a
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

    if vcd is None and waves_enabled():
        vcd = wave_file(".vcd", getattr(testbenches[0], "__name__", "sim") if testbenches else "sim")
    # write_vcd opens a str path itself (a PathLike it would take for an open file).
    with sim.write_vcd(os.fspath(vcd)) if vcd is not None else nullcontext():
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
