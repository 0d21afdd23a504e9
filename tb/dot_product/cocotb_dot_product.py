"""cocotb tests of :class:`hw.dot_product.DotProduct` against ``sw.bitplanes.signed_matmul``.

Run through ``tb/test_dot_product_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives the constructor arguments (``length``, ``m_bits``, ``v_bits``,
``m_signed``, ``v_signed``, ``mode``, ``max_beats``, ``popcount_stages``),
``vectors`` (dot products in the random stream) and ``seed``.  Payloads are
packed and unpacked with the unit's own layouts.  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random
import warnings

import cocotb
import numpy as np
from amaranth.hdl import UnusedElaboratable

from hw.dot_product import DotProduct
from sim.cocotb_runner import tb_config
from sw.contract.codes import levels_or_none
from sw.bitplanes import signed_matmul
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer

# The model component is built only for its layouts and timing, never elaborated.
warnings.simplefilter("ignore", UnusedElaboratable)

CONSTRUCTOR = ("m_bits", "v_bits", "m_signed", "v_signed", "mode", "max_beats", "popcount_stages")


class Setup:
    """The configuration, payload packing and the reference model."""

    def __init__(self):
        config = tb_config()
        self.vectors, self.seed = config["vectors"], config["seed"]
        self.model = DotProduct(config["length"], **{key: config[key] for key in CONSTRUCTOR})
        self.length = self.model.length

    def problems(self, rng: random.Random, count: int):
        """``count`` pairs of code vectors, ``1 .. max_beats`` beats each; some
        pinned to the extreme codes, so the ends of the range are reached."""
        model, pairs = self.model, []
        for _ in range(count):
            lanes = rng.randint(1, model.max_beats) * self.length
            vector = []
            for bits in (model.m_bits, model.v_bits):
                top = (1 << bits) - 1
                match rng.randrange(8):
                    case 0: vector.append([top] * lanes)
                    case 1: vector.append([0] * lanes)
                    case 2: vector.append([rng.choice((0, top)) for _ in range(lanes)])
                    case _: vector.append([rng.randint(0, top) for _ in range(lanes)])
            pairs.append(tuple(vector))
        return pairs

    def words(self, pairs) -> list[int]:
        """Input beats of ``length`` lanes, ``last`` on the final beat of each pair."""
        layout, words = self.model.beat_layout, []
        for x, y in pairs:
            beats = len(x) // self.length
            for b in range(beats):
                lanes = slice(b * self.length, (b + 1) * self.length)
                words.append(layout.const({"m": x[lanes], "v": y[lanes],
                                           "last": b == beats - 1}).as_bits())
        return words

    def completed(self, pairs, sent_words: int):
        """The pairs whose every beat is among the first ``sent_words`` words."""
        done, total = [], 0
        for pair in pairs:
            total += len(pair[0]) // self.length
            if total > sent_words:
                break
            done.append(pair)
        return done

    def values(self, received) -> list[int]:
        """Received words as integers of ``out_shape`` (signed where it is)."""
        shape = self.model.out_shape
        return [word - (1 << shape.width) if shape.signed and word >> (shape.width - 1) else word
                for word in received]

    def expected(self, pairs) -> list[int]:
        """The scoreboard: ``signed_matmul`` on each pair."""
        model = self.model
        m_levels = levels_or_none(model.m_bits, model.m_signed)
        v_levels = levels_or_none(model.v_bits, model.v_signed)
        return [int(signed_matmul(np.array([x]), m_levels, model.m_bits,
                                  np.array([y]), v_levels, model.v_bits)[0, 0]) for x, y in pairs]


@cocotb.test()
async def random_stream(dut):
    """``vectors`` random dot products with random valid gaps and back-pressure."""
    setup = Setup()
    pairs = setup.problems(random.Random(setup.seed), setup.vectors)
    words = setup.words(pairs)
    driver, monitor = await bring_up(dut, setup.seed + 1, gap=0.3, stall=0.3)
    await transfer(driver, monitor, words, len(pairs), timeout_cycles=1_000_000)
    assert driver.sent == words
    scoreboard = Scoreboard("dot_product", dut._log)
    scoreboard.check(setup.expected(pairs), setup.values(monitor.received),
                     describe=lambda i: f"x={pairs[i][0]} y={pairs[i][1]}")
    dut._log.info("dot_product: %d random dot products (%d beats) checked",
                  scoreboard.checked, len(words))


@cocotb.test()
async def full_rate(dut):
    """No gaps, no back-pressure: one beat per ``cycles_per_beat`` cycles and
    each result ``latency`` cycles after its last beat."""
    setup = Setup()
    model = setup.model
    pairs = setup.problems(random.Random(setup.seed + 10), 60)
    words = setup.words(pairs)
    driver, monitor = await bring_up(dut, setup.seed + 11, gap=0.0, stall=0.0)
    cycles = await transfer(driver, monitor, words, len(pairs))
    Scoreboard("dot_product", dut._log).check(setup.expected(pairs), setup.values(monitor.received))
    # Beat k is taken at edge cpb * (k + 1); the last result leaves `latency`
    # edges after the last beat.
    want = model.cycles_per_beat * len(words) + model.latency
    assert cycles == want, (cycles, want)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset with partial sums and results in flight, then a clean stream:
    results before the reset are a correct prefix, nothing leaks across it
    (no stale partial sum), and the PE works normally after."""
    setup = Setup()
    rng = random.Random(setup.seed + 20)
    driver, monitor = await bring_up(dut, setup.seed + 21, gap=0.2, stall=0.5)
    scoreboard = Scoreboard("dot_product", dut._log)
    pairs = setup.problems(rng, 200)
    await cut_by_reset(dut, driver, monitor, setup.words(pairs), rng.randrange(50, 200))
    finished = setup.completed(pairs, len(driver.sent))
    assert len(monitor.received) <= len(finished)
    scoreboard.check(setup.expected(finished), setup.values(monitor.received), prefix=True)

    pairs = setup.problems(rng, 300)
    driver.sent.clear()
    monitor.received.clear()
    await transfer(driver, monitor, setup.words(pairs), len(pairs),
                   settle_cycles=setup.model.latency + 2)
    scoreboard.check(setup.expected(pairs), setup.values(monitor.received))
    dut._log.info("dot_product: %d items checked around the reset", scoreboard.checked)
