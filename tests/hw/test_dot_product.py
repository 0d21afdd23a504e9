"""hw.dot_product.DotProduct (bit-serial, precision per beat) in the Amaranth simulator.

Expected sums never come from the unit: a code dot product is
``sw.bitplanes.plane_matmul`` on the codes, an arbitrary beat sequence the
recurrence of the unit's contract (``sum = (0 if first else 2 sum if double
else sum) + popcount(m & v)``) with ``sw.bitplanes.popcount``.  Beats are fed
one per cycle with random idle cycles whose payload is garbage (``first``,
``double`` and ``last`` set among it): a beat without ``valid`` must change
nothing.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Shape, unsigned

from hw.dot_product import DotProduct, beat_layout
from hw.popcount import popcount_max_stages
from sim.amaranth_sim import simulate
from sw.bitplanes import plane_matmul, popcount
from tests.hw.helpers import unelaborated


# --------------------------------------------------------------------------- stimulus

def planes_of(codes, bit: int) -> int:
    """Plane ``bit`` of a fold's codes as a word (lane ``j`` = bit ``j``): the stimulus, not the reference."""
    return sum(((int(code) >> bit) & 1) << lane for lane, code in enumerate(codes))


def code_beats(rng: random.Random, m_codes, m_bits, v_codes, v_bits, length) -> list[dict]:
    """One dot product as beats: every (fold, matrix plane, vector plane) pair once, by falling
    weight ``i + k`` and in a random order within a weight (the sum does not depend on it);
    ``first`` on the first beat, ``double`` on the first of every lower weight, ``last`` on the
    final beat."""
    beats = []
    for weight in range(m_bits + v_bits - 2, -1, -1):
        pairs = [(f, i, weight - i) for f in range(len(m_codes) // length) for i in range(m_bits)
                 if 0 <= weight - i < v_bits]
        rng.shuffle(pairs)
        for n, (f, i, k) in enumerate(pairs):
            lanes = slice(f * length, (f + 1) * length)
            beats.append({"m": planes_of(m_codes[lanes], i), "v": planes_of(v_codes[lanes], k), "first": 0,
                          "double": int(n == 0 and weight < m_bits + v_bits - 2), "last": 0})
    beats[0]["first"] = beats[-1]["last"] = 1
    return beats


def random_codes(rng: random.Random, bits: int, count: int) -> list[int]:
    """Uniform codes, or pinned to the extremes (so the sum's top bits are reached)."""
    top = (1 << bits) - 1
    match rng.randrange(5):
        case 0: return [top] * count
        case 1: return [rng.choice((0, top)) for _ in range(count)]
        case _: return [rng.randint(0, top) for _ in range(count)]


def code_problem(rng: random.Random, dut: DotProduct, count: int):
    """``count`` dot products at random precisions (each side ``1 .. max_bits``) and folds
    (``1 .. max_lanes // length``); the last one is the largest sum the unit must hold."""
    folds_max = dut.max_lanes // dut.length
    problems = []
    for _ in range(count):
        m_bits, v_bits = rng.randint(1, dut.max_bits), rng.randint(1, dut.max_bits)
        lanes = rng.randint(1, folds_max) * dut.length
        problems.append((random_codes(rng, m_bits, lanes), m_bits, random_codes(rng, v_bits, lanes), v_bits))
    top = (1 << dut.max_bits) - 1
    problems.append(([top] * dut.max_lanes, dut.max_bits, [top] * dut.max_lanes, dut.max_bits))
    return problems


def reference(problem) -> int:
    m_codes, m_bits, v_codes, v_bits = problem
    return int(plane_matmul(np.array([v_codes]), v_bits, np.array([m_codes]), m_bits)[0, 0])


def garbage(rng: random.Random, dut: DotProduct) -> dict:
    """A payload for an idle cycle: anything, ``first``, ``double`` and ``last`` included."""
    return {"m": rng.getrandbits(dut.length), "v": rng.getrandbits(dut.length), "first": rng.getrandbits(1),
            "double": rng.getrandbits(1), "last": rng.getrandbits(1)}


def recurrence(beats) -> list[int]:
    """The sums of arbitrary beats by the unit's contract (module docstring), ``popcount`` from
    ``sw.bitplanes``: the value at every ``last``."""
    total, sums = 0, []
    for beat in beats:
        base = 0 if beat["first"] else 2 * total if beat["double"] else total
        total = base + int(popcount(beat["m"] & beat["v"]))
        if beat["last"]:
            sums.append(total)
    return sums


# --------------------------------------------------------------------------- simulation

def run_beats(dut: DotProduct, beats, *, rng=None, gap=0.0):
    """Offer ``beats`` one per cycle (an idle cycle with garbage before each, with probability
    ``gap``).  Returns the cycle of every beat and ``(cycle, sum)`` of every cycle with ``o.valid``."""
    rng = rng or random.Random(0)
    sent, out = [], []

    async def testbench(ctx):
        cycle = 0
        queue = list(beats)
        while queue or (sent and cycle <= sent[-1] + dut.latency + 2):
            if queue and not (gap and rng.random() < gap):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, queue.pop(0))
                sent.append(cycle)
            else:
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.i.payload, garbage(rng, dut))
            if ctx.get(dut.o.valid):
                out.append((cycle, ctx.get(dut.o.payload)))
            await ctx.tick()
            cycle += 1

    simulate(dut, testbench, deadline=None)
    return sent, out


# --------------------------------------------------------------------------- sums

# (length, max_bits, folds, popcount_stages, popcount_arch): lengths 1 .. 64, every
# width class, unpipelined to fully pipelined, each tree architecture.
CONFIGS = [
    (1, 1, 3, 0, "chain"),
    (7, 3, 2, 1, "chain"),
    (16, 8, 2, 0, "dadda"),
    (20, 5, 3, "max", "chain"),
    (33, 2, 4, 2, "packed"),
    (64, 8, 1, "max", "dadda"),
]


def make(length, max_bits, folds, stages, arch) -> DotProduct:
    stages = popcount_max_stages(length, arch=arch) if stages == "max" else stages
    return DotProduct(length, max_bits=max_bits, max_lanes=length * folds, popcount_stages=stages,
                      popcount_arch=arch)


@pytest.mark.parametrize("length, max_bits, folds, stages, arch", CONFIGS)
def test_code_dot_products(length, max_bits, folds, stages, arch):
    """Back-to-back dot products of random precisions and folds, plane pairs in random
    orders, random idle cycles: each sum is ``plane_matmul``'s, ``latency`` after its last beat."""
    dut = make(length, max_bits, folds, stages, arch)
    rng = random.Random(f"codes-{length}-{max_bits}-{folds}-{stages}-{arch}")
    problems = code_problem(rng, dut, 10)
    beats = [beat for p in problems for beat in code_beats(rng, p[0], p[1], p[2], p[3], length)]
    sent, out = run_beats(dut, beats, rng=rng, gap=0.3)
    assert [value for _, value in out] == [reference(p) for p in problems]
    last_cycles = [cycle for cycle, beat in zip(sent, beats) if beat["last"]]
    assert [cycle for cycle, _ in out] == [c + dut.latency for c in last_cycles]
    # the largest sum fits the output
    assert out[-1][1] == dut.max_lanes * ((1 << max_bits) - 1) ** 2 < 1 << dut.sum_bits


@pytest.mark.parametrize("length, max_bits, folds, stages, arch", CONFIGS[1::2])
def test_arbitrary_plane_sequences(length, max_bits, folds, stages, arch):
    """Whatever beats it is given (any planes, ``double`` anywhere, sequences of any length),
    the unit follows the recurrence; ``double`` on a ``first`` beat is ignored."""
    dut = make(length, max_bits, folds, stages, arch)
    rng = random.Random(f"planes-{length}-{max_bits}")
    beats, sums = [], []
    while len(sums) < 12:
        run = [{"m": rng.getrandbits(length), "v": rng.getrandbits(length), "first": 0,
                "double": int(rng.random() < 0.3), "last": 0}
               for _ in range(rng.randint(1, 2 * folds * max_bits))]
        run[0]["first"] = run[-1]["last"] = 1
        (total,) = recurrence(run)
        if total >> dut.sum_bits:
            continue  # more than the unit is sized for
        beats += run
        sums.append(total)
    _, out = run_beats(dut, beats, rng=rng, gap=0.2)
    assert [value for _, value in out] == sums


def test_first_restarts_the_sum():
    """``first`` without a ``last`` before it drops the partial sum; a beat that is both
    ``first`` and ``last`` is a one-beat dot product; beats after a ``last`` and before
    the next ``first`` are added to the finished sum, which nothing reads."""
    dut = DotProduct(4, max_bits=2, max_lanes=16)

    def beat(m, v, first=0, double=0, last=0):
        return {"m": m, "v": v, "first": first, "double": double, "last": last}
    beats = [
        beat(0b1111, 0b1111, first=1),                     # abandoned: 4
        beat(0b0111, 0b1101, first=1),                     # 2
        beat(0b1111, 0b0011, double=1, last=1),            # 2 * 2 + 2 = 6
        beat(0b1010, 0b1110, first=1, last=1),             # 2
        beat(0b1111, 0b1111, double=1),                    # stray beat: no first, no result
        beat(0b0001, 0b0001, first=1, double=1),           # 1 (first wins)
        beat(0b0011, 0b0001, last=1),                      # + 1 = 2
    ]
    _, out = run_beats(dut, beats)
    assert [value for _, value in out] == [6, 2, 2] == recurrence(beats)


@pytest.mark.parametrize("stages", [0, 1, 2, 3])
def test_latency_and_full_rate(stages):
    """``latency == popcount_stages + 2``; one beat per cycle without a gap, one-beat dot
    products included, and ``o.valid`` exactly on the results' cycles."""
    dut = DotProduct(12, max_bits=3, max_lanes=24, popcount_stages=stages)
    assert dut.latency == stages + 2
    rng = random.Random(stages)
    problems = [([rng.randint(0, 1) for _ in range(12)], 1, [rng.randint(0, 1) for _ in range(12)], 1)
                for _ in range(3)]  # one beat each
    problems += code_problem(rng, dut, 5)
    beats = [beat for p in problems for beat in code_beats(rng, p[0], p[1], p[2], p[3], 12)]
    sent, out = run_beats(dut, beats)
    assert sent == list(range(len(beats)))
    assert [value for _, value in out] == [reference(p) for p in problems]
    lasts = [index for index, beat in enumerate(beats) if beat["last"]]
    assert [cycle for cycle, _ in out] == [index + stages + 2 for index in lasts]


def test_ports_and_widths():
    with unelaborated():
        dut = DotProduct(6, max_bits=3, max_lanes=18)
        assert beat_layout(6) == dut.i.payload.shape()
        assert Shape.cast(beat_layout(6)).width == 6 + 6 + 3  # m, v, first, double, last
        assert dut.sum_bits == 10  # 18 * 7**2 = 882 < 2**10
        assert dut.o.payload.shape() == unsigned(10)
        assert (dut.length, dut.max_bits, dut.max_lanes, dut.popcount_stages) == (6, 3, 18, 0)
        assert DotProduct(5, max_bits=1).sum_bits == 3 and DotProduct(5).max_lanes == 5
        assert DotProduct(5).max_bits == 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(length=0), "length must be >= 1, got 0"),
    (dict(length=2.0), "length must be an integer, got 2.0"),
    (dict(length=True), "length must be an integer, got True"),
    (dict(max_bits=0), r"max_bits must be in 1\.\.8, got 0"),
    (dict(max_bits=9), r"max_bits must be in 1\.\.8, got 9"),
    (dict(max_lanes=7), "max_lanes must be >= 8, got 7"),
    (dict(max_lanes=16.0), "max_lanes must be an integer"),
    (dict(popcount_stages=-1), rf"popcount_stages must be in 0\.\.{popcount_max_stages(8)}, got -1"),
    (dict(popcount_stages=popcount_max_stages(8) + 1), rf"popcount_stages must be in 0\.\.{popcount_max_stages(8)}"),
    (dict(popcount_arch="wallace"), "popcount_arch must be one of 'chain', 'dadda', 'packed', got 'wallace'"),
])
def test_validation(kwargs, message):
    args = dict(length=8) | kwargs
    with unelaborated(), pytest.raises(ValueError, match=message):
        DotProduct(args.pop("length"), **args)
