"""Helpers shared by the Amaranth-simulator tests of the hardware units.

(Not named ``test_*.py``, so pytest does not collect it; the test modules
import it as ``tests.hw.helpers``.)
"""

import gc
import warnings
from contextlib import contextmanager

from amaranth.hdl import ClockDomain, Module, UnusedElaboratable

from sim.amaranth_sim import simulate

__all__ = ["unelaborated", "with_sync_domain", "stream_across_reset"]


@contextmanager
def unelaborated():
    """For components built only to be inspected (or whose constructor raises):
    collect them here, so Amaranth's never-elaborated warning stays quiet.

    The warning is raised when such a component is garbage-collected; the
    ``gc.collect()`` makes that happen inside the filter, not in a later test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        yield
        gc.collect()


def with_sync_domain(dut):
    """``dut`` in a module with an explicit ``sync`` domain, and that domain,
    so a testbench can drive its ``rst`` (``simulate()`` would otherwise
    create the domain itself, out of the testbench's reach)."""
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = dut
    return top, domain




def stream_across_reset(dut, payloads, counts, *, cut, rng, reset_cycles=1, setup=None):
    """Simulate two streams through ``dut.i`` -> ``dut.o``, the first cut by a reset.

    Cycle by cycle, the next payload of ``payloads[phase]`` is offered with
    probability 0.8 and ``o.ready`` raised with probability 0.7 (draws from
    ``rng``, in that order).  Phase 0 is cut at cycle ``cut``: ``i.valid``
    drops and reset is held for ``reset_cycles`` clock edges, after which
    ``o.valid`` must be low.  Phase 1 runs until ``counts[1]`` outputs came
    out (phase 0 stops early at ``counts[0]`` if the cut never comes).
    ``setup(ctx)``, if given, runs first (e.g. loading thresholds).

    Returns the outputs of each phase and how many payloads of phase 0 were
    taken before the cut (0 if it never came).
    """
    top, domain = with_sync_domain(dut)
    got, taken = [[], []], 0

    async def testbench(ctx):
        nonlocal taken
        if setup is not None:
            await setup(ctx)
        for phase in (0, 1):
            sent = cycle = 0
            while len(got[phase]) < counts[phase]:
                if phase == 0 and cycle == cut:
                    taken = sent
                    ctx.set(dut.i.valid, 0)
                    ctx.set(domain.rst, 1)
                    for _ in range(reset_cycles):
                        await ctx.posedge(domain.clk)  # ctx.tick() refuses to wait across a reset
                    ctx.set(domain.rst, 0)
                    assert not ctx.get(dut.o.valid), "o.valid right after reset"
                    break
                offering = sent < len(payloads[phase]) and rng.random() < 0.8
                ctx.set(dut.i.valid, offering)
                if offering:
                    ctx.set(dut.i.payload, payloads[phase][sent])
                ready = rng.random() < 0.7
                ctx.set(dut.o.ready, ready)
                took = offering and ctx.get(dut.i.ready)
                if ready and ctx.get(dut.o.valid):
                    got[phase].append(ctx.get(dut.o.payload))
                await ctx.tick()
                sent += took
                cycle += 1

    simulate(top, testbench)
    return got, taken
