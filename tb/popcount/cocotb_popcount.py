"""cocotb tests of :class:`hw.popcount.PopcountTree` against ``sw.bitplanes.popcount``.

Run through ``tb/test_popcount_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``width``, ``stages``, ``vectors`` and ``seed``.  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random

import cocotb
import numpy as np

from sim.cocotb_runner import tb_config
from sw.bitplanes import popcount
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer


def random_words(rng: random.Random, width: int, count: int) -> list[int]:
    """Uniform, sparse and dense words (uniform ones alone would rarely reach
    the extreme counts, i.e. the top carries)."""
    words = []
    for _ in range(count):
        word = rng.getrandbits(width)
        match rng.randrange(4):
            case 1:
                word &= rng.getrandbits(width) & rng.getrandbits(width)
            case 2:
                word |= rng.getrandbits(width) | rng.getrandbits(width)
        words.append(word)
    return words


def expected(words) -> list[int]:
    return popcount(np.array(words, dtype=object)).tolist()


@cocotb.test()
async def random_stream(dut):
    """``vectors`` random words with random valid gaps and back-pressure."""
    config = tb_config()
    width, seed = config["width"], config["seed"]
    words = [0, (1 << width) - 1] + random_words(random.Random(seed), width, config["vectors"] - 2)
    driver, monitor = await bring_up(dut, seed + 1, gap=0.3, stall=0.3)
    await transfer(driver, monitor, words, len(words))
    scoreboard = Scoreboard("popcount", dut._log)
    scoreboard.check(expected(driver.sent), monitor.received,
                     describe=lambda i: f"input {driver.sent[i]:#x}")
    assert driver.sent == words


@cocotb.test()
async def full_rate(dut):
    """No gaps and no back-pressure: one result per cycle, ``stages`` cycles late."""
    config = tb_config()
    width, stages, seed = config["width"], config["stages"], config["seed"]
    words = random_words(random.Random(seed + 10), width, 64)
    driver, monitor = await bring_up(dut, seed + 11, gap=0.0, stall=0.0)
    cycles = await transfer(driver, monitor, words, len(words))
    Scoreboard("popcount", dut._log).check(expected(words), monitor.received)
    # Word k is taken at edge k + 1 and its result at edge k + 1 + stages.
    assert cycles == len(words) + stages, (cycles, len(words), stages)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset while words are in flight, then a clean stream: outputs before
    the reset are a correct prefix, nothing leaks across it, and the
    pipeline works normally after."""
    config = tb_config()
    width, stages, seed = config["width"], config["stages"], config["seed"]
    rng = random.Random(seed + 20)
    driver, monitor = await bring_up(dut, seed + 21, gap=0.2, stall=0.5)
    scoreboard = Scoreboard("popcount", dut._log)
    await cut_by_reset(dut, driver, monitor, random_words(rng, width, 400), rng.randrange(50, 150))
    # The reset dropped whatever was in flight.
    in_flight = len(driver.sent) - len(monitor.received)
    assert 0 <= in_flight <= stages, in_flight
    scoreboard.check(expected(driver.sent), monitor.received, prefix=True)

    words = random_words(rng, width, 300)
    driver.sent.clear()
    monitor.received.clear()
    await transfer(driver, monitor, words, len(words), settle_cycles=stages + 2)
    scoreboard.check(expected(words), monitor.received)
    dut._log.info("popcount: %d items checked in total", scoreboard.checked)
