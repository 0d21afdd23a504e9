"""hw.skid_buffer.SkidBuffer in the Amaranth simulator.

One testbench drives both sides cycle by cycle (random or patterned
``i.valid`` and ``o.ready``), checks within each cycle that ``i.ready``,
``o.valid`` and ``o.payload`` do not move when the other side's inputs do
(every port registered), and checks the transfers: the output sequence is
the input sequence, nothing lost, duplicated or reordered, and full rate
when the consumer never stalls.
"""

import random

import pytest
from amaranth.lib import data

from hw.skid_buffer import SkidBuffer
from sim.amaranth_sim import simulate

LAYOUT = data.StructLayout({"code": 8, "flush": 1})


def run(pattern, *, n=200, width=8):
    """Drive ``n`` payloads; ``pattern(cycle) -> (offer, ready)``.  Returns
    (inputs taken, outputs in order, cycles, whether a port moved combinationally)."""
    dut = SkidBuffer(width)
    taken, got, moved = [], [], []
    state = {"cycles": 0}

    async def tb(ctx):
        nxt = 0
        cycle = 0
        while len(got) < n:
            offer, ready = pattern(cycle)
            # Registered ports: probe both values of the other side's inputs.
            probes = []
            for v, r in ((0, 0), (1, 1), (0, 1), (1, 0)):
                ctx.set(dut.i.valid, v)
                ctx.set(dut.i.payload, 0xA5 if v else 0x5A)
                ctx.set(dut.o.ready, r)
                probes.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.o.payload)))
            moved.append(len(set(probes)) != 1)
            valid = offer and nxt < n
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.i.payload, nxt % (1 << width))
            ctx.set(dut.o.ready, ready)
            if valid and ctx.get(dut.i.ready):
                taken.append(nxt % (1 << width))
                nxt += 1
            if ctx.get(dut.o.valid) and ready:
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            cycle += 1
            assert cycle < 20 * n + 100, "no progress"
        state["cycles"] = cycle

    simulate(dut, tb)
    return taken, got, state["cycles"], any(moved)


PATTERNS = {
    "full rate": lambda c: (True, True),
    "consumer stalls every other cycle": lambda c: (True, c % 2 == 0),
    "consumer stalls in bursts": lambda c: (True, (c // 7) % 3 != 0),
    "producer gaps": lambda c: (c % 3 != 1, True),
    "both alternate in phase": lambda c: (c % 2 == 0, c % 2 == 0),
    "both alternate out of phase": lambda c: (c % 2 == 0, c % 2 == 1),
}


@pytest.mark.parametrize("name", PATTERNS)
def test_patterns_in_order_and_registered(name):
    taken, got, _, moved = run(PATTERNS[name])
    assert got == taken == [i % 256 for i in range(200)]
    assert not moved  # i.ready, o.valid, o.payload: flip-flops only


@pytest.mark.parametrize("seed", range(6))
def test_random_backpressure(seed):
    rng = random.Random(seed)
    draws = {}

    def pattern(c):
        if c not in draws:
            draws[c] = (rng.random() < 0.7, rng.random() < 0.6)
        return draws[c]

    taken, got, _, moved = run(pattern, n=300)
    assert got == taken == [i % 256 for i in range(300)]
    assert not moved


def test_full_rate_latency_one():
    """A transfer per cycle when never stalled: n payloads in n + 1 cycles."""
    _, got, cycles, _ = run(PATTERNS["full rate"], n=50)
    assert len(got) == 50 and cycles == 51


def test_skid_register_used_and_ready_falls():
    """The consumer stalls once: the payload taken that cycle lands in the skid
    register, and i.ready is low the next cycle (but it never was combinationally)."""
    dut = SkidBuffer(8)
    seen = []

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        for cycle, ready in enumerate([1, 1, 0, 0, 1, 1, 1, 1]):
            ctx.set(dut.i.payload, cycle)
            ctx.set(dut.o.ready, ready)
            seen.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.o.payload), ctx.get(dut.empty)))
            await ctx.tick()

    simulate(dut, tb)
    i_ready = [s[0] for s in seen]
    assert i_ready == [1, 1, 1, 0, 0, 1, 1, 1]
    # The payload offered in cycle c is c; those of cycles 3 and 4 are refused.
    taken = [c for c, s in enumerate(seen) if s[0]]
    outs = [s[2] for s, r in zip(seen, [1, 1, 0, 0, 1, 1, 1, 1]) if s[1] and r]
    assert taken == [0, 1, 2, 5, 6, 7] and outs == [0, 1, 2, 5, 6]  # 2 waited in the skid register
    assert seen[0][3] == 1 and not any(s[3] for s in seen[1:])


def test_clear_drops_everything():
    """After ``clear`` neither register holds anything, and streaming resumes in order."""
    dut = SkidBuffer(LAYOUT)
    seen = []

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        for code in (1, 2, 3):  # fills the output and the skid register
            ctx.set(dut.i.payload, {"code": code, "flush": 0})
            await ctx.tick()
        assert not ctx.get(dut.i.ready) and ctx.get(dut.o.valid) and not ctx.get(dut.empty)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.empty) and ctx.get(dut.i.ready) and not ctx.get(dut.o.valid)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"code": 9, "flush": 1})
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        seen.append((ctx.get(dut.o.valid), ctx.get(dut.o.payload.code), ctx.get(dut.o.payload.flush)))

    simulate(dut, tb)
    assert seen == [(1, 9, 1)]
