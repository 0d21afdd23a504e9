"""cocotb tests of :class:`hw.group_max.GroupMax` against the unit's formula.

Run through ``tb/test_group_max_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``act_bits``, ``rows``, ``group_log``, ``groups`` and ``seed``.  Codes go
in vector after vector (``rows`` codes a vector), ``2**group_log`` vectors a
group; the expected output is, per group and row, the max of the group's codes
of that row (:func:`sw.intref.group_max_codes`, which the core model pools
with), row after row, a vector per group.  The core feeds
the unit the codes of a pooled window's positions this way
(``tests/hw/test_group_max.py`` ties the order to
:func:`sw.intref.maxpool_codes`).  Payloads are packed here from the
documented layout (``code`` in the low ``act_bits``, then ``last``).  The
module is not named ``test_*.py``, so pytest never imports it.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from sim.cocotb_runner import tb_config
from sw.intref import group_max_codes
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer


def random_groups(config, seed, groups) -> np.ndarray:
    """``(groups * 2**group_log, rows)`` codes: uniform, sparse (a lone large code
    must win its group) and dense (the top code almost everywhere) groups, in turn."""
    rng = np.random.default_rng(seed)
    top = (1 << config["act_bits"]) - 1
    size = 1 << config["group_log"]
    codes = rng.integers(0, top + 1, (groups, size, config["rows"]))
    rare = rng.random(codes.shape) < 0.15
    codes[1::3] = np.where(rare[1::3], codes[1::3], 0)
    codes[2::3] = np.where(rare[2::3], codes[2::3], top)
    return codes.reshape(-1, config["rows"])


def expected(config, codes) -> list[int]:
    """Each group's max code per row, row after row (``last`` clear: payload = code)."""
    return group_max_codes(codes, 1 << config["group_log"]).reshape(-1).tolist()


def words(config, codes, *, last=False) -> list[int]:
    """The input payloads, ``last`` set on the final code when asked."""
    flat = [int(c) for c in codes.reshape(-1)]
    if last:
        flat[-1] |= 1 << config["act_bits"]
    return flat


async def started(dut, config) -> None:
    """Set ``rows`` and ``group_log`` and pulse ``start`` (no code in flight)."""
    dut.rows.value = config["rows"]
    dut.group_log.value = config["group_log"]
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0


@cocotb.test()
async def random_stream(dut):
    """``groups`` groups, random valid gaps and back-pressure; ``last`` reaches the final
    max code."""
    config = tb_config()
    dut.start.value = 0
    driver, monitor = await bring_up(dut, config["seed"], gap=0.3, stall=0.3)
    await started(dut, config)
    codes = random_groups(config, config["seed"] + 1, config["groups"])
    want = expected(config, codes)
    want[-1] |= 1 << config["act_bits"]
    await transfer(driver, monitor, words(config, codes, last=True), len(want), settle_cycles=8)
    scoreboard = Scoreboard("group_max", dut._log)
    scoreboard.check(want, monitor.received)
    dut._log.info("group_max: %d codes in, %d max codes checked in random_stream", codes.size, scoreboard.checked)


@cocotb.test()
async def full_rate(dut):
    """No gaps and no back-pressure: one code every two cycles (taken, then its max
    written back or offered), so ``n`` codes take ``2 n`` cycles to the last max."""
    config = tb_config()
    dut.start.value = 0
    driver, monitor = await bring_up(dut, config["seed"] + 10, gap=0.0, stall=0.0)
    await started(dut, config)
    codes = random_groups(config, config["seed"] + 11, 3)
    cycles = await transfer(driver, monitor, words(config, codes), len(expected(config, codes)))
    Scoreboard("group_max", dut._log).check(expected(config, codes), monitor.received)
    assert cycles == 2 * codes.size, (cycles, codes.size)


@cocotb.test()
async def reset_mid_group(dut):
    """Reset in the middle of a group: what came out before is a correct prefix, and
    after ``start`` the next groups are exact (no held code leaks across)."""
    config = tb_config()
    seed = config["seed"]
    dut.start.value = 0
    driver, monitor = await bring_up(dut, seed + 20, gap=0.2, stall=0.5)
    await started(dut, config)
    codes = random_groups(config, seed + 21, 3)
    cut = random.Random(seed + 22).randrange(4, 4 + 2 * codes.size)
    await cut_by_reset(dut, driver, monitor, words(config, codes), cut)
    Scoreboard("group_max", dut._log).check(expected(config, codes), monitor.received, prefix=True)

    await started(dut, config)
    codes = random_groups(config, seed + 23, 3)
    driver.sent.clear()
    monitor.received.clear()
    await transfer(driver, monitor, words(config, codes), len(expected(config, codes)), settle_cycles=8)
    Scoreboard("group_max", dut._log).check(expected(config, codes), monitor.received)
