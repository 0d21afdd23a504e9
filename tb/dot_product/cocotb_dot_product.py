"""cocotb tests of :class:`hw.dot_product.DotProduct` against ``sw.bitplanes``.

Run through ``tb/test_dot_product_tb.py`` on the unit as a standalone module
(:func:`hw.catalog.standalone`: ports ``i__valid``, ``i__payload``,
``o__valid``, ``o__payload``; both streams always ready, so no ``ready``).
:func:`sim.cocotb_runner.tb_config` gives the constructor arguments
(``length``, ``max_bits``, ``max_lanes``, ``popcount_stages``,
``popcount_arch``), ``vectors`` (dot products in the random stream) and
``seed``.

Each dot product has its own precisions (``1 .. max_bits`` per side) and
folds (``1 .. max_lanes // length``): its beats are every (fold, matrix
plane, vector plane) pair, by falling weight and in a random order within a
weight, ``first`` on the first, ``double`` on the first of each lower weight,
``last`` on the final one.  Expected sums are ``sw.bitplanes.plane_matmul``
of the codes; idle cycles carry garbage payloads.  The module is not named
``test_*.py``, so pytest never imports it.
"""

import random
import warnings

import cocotb
import numpy as np
from amaranth.hdl import UnusedElaboratable
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from hw.dot_product import DotProduct, beat_layout
from sim.cocotb_runner import tb_config
from sw.bitplanes import plane_matmul, popcount
from tb.common import PERIOD_NS, Scoreboard, reset, start_clock

# The model component is built only for its parameters and timing, never elaborated.
warnings.simplefilter("ignore", UnusedElaboratable)

CONSTRUCTOR = ("max_bits", "max_lanes", "popcount_stages", "popcount_arch")


class Setup:
    """The configuration, the stimulus and the reference."""

    def __init__(self):
        config = tb_config()
        self.vectors, self.seed = config["vectors"], config["seed"]
        self.model = DotProduct(config["length"], **{key: config[key] for key in CONSTRUCTOR})
        self.length = self.model.length
        self.folds = self.model.max_lanes // self.length
        self.layout = beat_layout(self.length)
        self.offsets = {name: field.offset for name, field in self.layout}

    def problems(self, rng: random.Random, count: int):
        """``count`` dot products ``(m_codes, m_bits, v_codes, v_bits)`` of random precisions and
        folds; codes uniform or pinned to the extremes (the sums' top bits)."""
        problems = []
        for _ in range(count):
            lanes = rng.randint(1, self.folds) * self.length
            sides = []
            for bits in (rng.randint(1, self.model.max_bits), rng.randint(1, self.model.max_bits)):
                top = (1 << bits) - 1
                match rng.randrange(6):
                    case 0: codes = [top] * lanes
                    case 1: codes = [rng.choice((0, top)) for _ in range(lanes)]
                    case _: codes = [rng.randint(0, top) for _ in range(lanes)]
                sides.append((codes, bits))
            problems.append((sides[0][0], sides[0][1], sides[1][0], sides[1][1]))
        return problems

    def beats(self, rng: random.Random, problem) -> list[dict]:
        m_codes, m_bits, v_codes, v_bits = problem

        def word(codes, bit):
            return sum(((code >> bit) & 1) << lane for lane, code in enumerate(codes))
        beats = []
        for weight in range(m_bits + v_bits - 2, -1, -1):
            pairs = [(f, i, weight - i) for f in range(len(m_codes) // self.length) for i in range(m_bits)
                     if 0 <= weight - i < v_bits]
            rng.shuffle(pairs)
            for n, (f, i, k) in enumerate(pairs):
                lanes = slice(f * self.length, (f + 1) * self.length)
                beats.append({"m": word(m_codes[lanes], i), "v": word(v_codes[lanes], k), "first": 0,
                              "double": int(n == 0 and weight < m_bits + v_bits - 2), "last": 0})
        beats[0]["first"] = beats[-1]["last"] = 1
        return beats

    def pack(self, beat: dict) -> int:
        """The payload's bits, at the layout's field offsets (``layout.const`` is slow by the 100,000)."""
        return sum(value << self.offsets[name] for name, value in beat.items())

    def garbage(self, rng: random.Random) -> int:
        """An idle cycle's payload: anything, ``first``, ``double`` and ``last`` included."""
        return rng.getrandbits(self.layout.size)

    def expected(self, problems) -> list[int]:
        """The scoreboard: ``plane_matmul`` of each dot product's codes."""
        return [int(plane_matmul(np.array([v]), v_bits, np.array([m]), m_bits)[0, 0])
                for m, m_bits, v, v_bits in problems]


def now() -> int:
    return round(get_sim_time("ns") / PERIOD_NS)


async def stream(dut, words, rng: random.Random, setup: Setup, *, gap: float, sent: list, received: list) -> None:
    """Offer ``words`` one per cycle, a random number of garbage idle cycles before each
    (probability ``gap``), and watch ``o`` until ``latency + 2`` cycles after the last: ``sent``
    gets the cycle of every beat, ``received`` ``(cycle, sum)`` of every cycle with ``o.valid``.
    One coroutine for both ends (the bench's cost is per cycle).  Call just after a rising edge."""
    words = iter(words)
    pending = next(words, None)
    tail = setup.model.latency + 2
    while tail:
        if pending is not None and not (gap and rng.random() < gap):
            dut.i__valid.value = 1
            dut.i__payload.value = pending
            sent.append(now())
            pending = next(words, None)
        else:
            dut.i__valid.value = 0
            dut.i__payload.value = setup.garbage(rng)
            tail -= pending is None
        await ReadOnly()
        if int(dut.o__valid.value):
            received.append((now(), int(dut.o__payload.value)))
        await RisingEdge(dut.clk)
    dut.i__valid.value = 0


async def bring_up(dut):
    start_clock(dut)
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    await reset(dut)


def last_cycles(beats, sent) -> list[int]:
    return [cycle for beat, cycle in zip(beats, sent) if beat["last"]]


@cocotb.test()
async def random_stream(dut):
    """``vectors`` random dot products with random garbage idle cycles: every sum exact and
    ``latency`` cycles after its last beat, nothing else on ``o``."""
    setup = Setup()
    rng = random.Random(setup.seed)
    problems = setup.problems(rng, setup.vectors)
    beats = [beat for problem in problems for beat in setup.beats(rng, problem)]
    await bring_up(dut)
    sent, received = [], []
    await stream(dut, [setup.pack(beat) for beat in beats], rng, setup, gap=0.2, sent=sent, received=received)
    scoreboard = Scoreboard("dot_product", dut._log)
    scoreboard.check(setup.expected(problems), [value for _, value in received],
                     describe=lambda i: "m_bits=%d v_bits=%d lanes=%d" % (problems[i][1], problems[i][3],
                                                                         len(problems[i][0])))
    assert [cycle for cycle, _ in received] == [c + setup.model.latency for c in last_cycles(beats, sent)]
    dut._log.info("dot_product: %d random dot products (%d beats) checked", scoreboard.checked, len(beats))


@cocotb.test()
async def full_rate_and_arbitrary_beats(dut):
    """No idle cycle: code dot products and arbitrary beat sequences (``double`` anywhere) back
    to back, one-beat dot products among them; the sums follow the unit's recurrence."""
    setup = Setup()
    rng = random.Random(setup.seed + 10)
    beats, sums = [], []
    for problem in setup.problems(rng, 40):
        beats += setup.beats(rng, problem)
        sums += setup.expected([problem])
    for _ in range(40):
        run = [{"m": rng.getrandbits(setup.length), "v": rng.getrandbits(setup.length), "first": 0,
                "double": int(rng.random() < 0.3), "last": 0} for _ in range(rng.randint(1, 6))]
        run[0]["first"] = run[-1]["last"] = 1
        total = 0
        for beat in run:  # sum = (0 if first else 2 sum if double else sum) + popcount(m & v)
            total = (0 if beat["first"] else 2 * total if beat["double"] else total) \
                + int(popcount(beat["m"] & beat["v"]))
        if total >> setup.model.sum_bits == 0:
            beats += run
            sums.append(total)
    await bring_up(dut)
    sent, received = [], []
    await stream(dut, [setup.pack(beat) for beat in beats], rng, setup, gap=0.0, sent=sent, received=received)
    assert sent == list(range(sent[0], sent[0] + len(beats)))
    Scoreboard("dot_product", dut._log).check(sums, [value for _, value in received])
    assert [cycle for cycle, _ in received] == [c + setup.model.latency for c in last_cycles(beats, sent)]


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset with partial sums and results in flight: what came out before it is a correct
    prefix, ``o.valid`` is low after it, and the next dot products (``first`` restarts the
    sum) are exact."""
    setup = Setup()
    rng = random.Random(setup.seed + 20)
    problems = setup.problems(rng, 30)
    beats = [beat for problem in problems for beat in setup.beats(rng, problem)]
    await bring_up(dut)
    sent, received = [], []
    sender = cocotb.start_soon(stream(dut, [setup.pack(beat) for beat in beats], rng, setup, gap=0.2,
                                      sent=sent, received=received))
    await ClockCycles(dut.clk, rng.randrange(20, max(21, len(beats) // 2)))
    sender.cancel()
    dut.i__valid.value = 0
    await reset(dut, 3)
    await ReadOnly()
    assert int(dut.o__valid.value) == 0, "o.valid right after reset"
    scoreboard = Scoreboard("dot_product", dut._log)
    scoreboard.check(setup.expected(problems), [value for _, value in received], prefix=True)
    await RisingEdge(dut.clk)

    problems = setup.problems(rng, 30)
    beats = [beat for problem in problems for beat in setup.beats(rng, problem)]
    sent, received = [], []
    await stream(dut, [setup.pack(beat) for beat in beats], rng, setup, gap=0.2, sent=sent, received=received)
    scoreboard.check(setup.expected(problems), [value for _, value in received])
    dut._log.info("dot_product: %d items checked around the reset", scoreboard.checked)
