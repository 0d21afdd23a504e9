"""cocotb tests of :class:`hw.maxpool.MaxPool` against ``sw.intref.maxpool_codes``.

Run through ``tb/test_maxpool_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``act_bits``, ``channels``, ``height``, ``width``, ``kernel``, ``stride``,
``latency``, ``frames`` and ``seed``.  Codes go in raster order with channels
fastest (``(B, C, H, W)`` sent as ``(B, H, W, C)``), frames back to back, and
come out in the same order over the pooled map.  The module is not named
``test_*.py``, so pytest never imports it.
"""

import random

import cocotb
import numpy as np

from sim.cocotb_runner import tb_config
from sw.intref import maxpool_codes
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer


def raster(codes) -> list[int]:
    """``(B, C, H, W)`` codes in stream order: for b, y, x, c."""
    return np.asarray(codes).transpose(0, 2, 3, 1).reshape(-1).tolist()


def random_frames(config, seed, count) -> np.ndarray:
    """Uniform, sparse (a lone large code must win from every tap) and dense
    (the top code almost everywhere) frames, in turn."""
    rng = np.random.default_rng(seed)
    top = (1 << config["act_bits"]) - 1
    shape = (count, config["channels"], config["height"], config["width"])
    frames = rng.integers(0, top + 1, shape)
    rare = rng.random(shape) < 0.15
    frames[1::3] = np.where(rare[1::3], frames[1::3], 0)
    frames[2::3] = np.where(rare[2::3], frames[2::3], top)
    return frames


def pooled(config, frames) -> list[int]:
    return raster(maxpool_codes(frames, config["kernel"], config["stride"]))


def out_size(config) -> tuple[int, int]:
    k, s = config["kernel"], config["stride"]
    return (config["height"] - k) // s + 1, (config["width"] - k) // s + 1


@cocotb.test()
async def random_stream(dut):
    """``frames`` frames back to back, random valid gaps and back-pressure."""
    config = tb_config()
    frames = random_frames(config, config["seed"], config["frames"])
    words = raster(frames)
    expected = pooled(config, frames)
    driver, monitor = await bring_up(dut, config["seed"] + 1, gap=0.3, stall=0.3)
    await transfer(driver, monitor, words, len(expected), settle_cycles=config["latency"] + 2)
    scoreboard = Scoreboard("maxpool", dut._log)
    scoreboard.check(expected, monitor.received)
    dut._log.info("maxpool: %d input codes, %d pooled codes checked in random_stream",
                  len(words), scoreboard.checked)


@cocotb.test()
async def full_rate(dut):
    """No gaps and no back-pressure: one code per cycle in, each pooled code
    ``latency`` cycles after the code that completes its window."""
    config = tb_config()
    channels, width, latency = config["channels"], config["width"], config["latency"]
    k, s = config["kernel"], config["stride"]
    frames = random_frames(config, config["seed"] + 10, 2)
    words = raster(frames)
    driver, monitor = await bring_up(dut, config["seed"] + 11, gap=0.0, stall=0.0)
    cycles = await transfer(driver, monitor, words, len(pooled(config, frames)))
    Scoreboard("maxpool", dut._log).check(pooled(config, frames), monitor.received)
    # The last window closes at pixel ((OH-1)*s + k-1, (OW-1)*s + k-1) of the
    # last frame, channel C-1; code j is taken at edge j + 1.
    out_h, out_w = out_size(config)
    frame = config["height"] * width * channels
    last = frame + (((out_h - 1) * s + k - 1) * width + (out_w - 1) * s + k - 1) * channels + channels - 1
    assert cycles == max(len(words), last + 1 + latency), (cycles, len(words), last, latency)


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset mid-frame: what came out before is a correct prefix, nothing
    leaks across, and the next frames are exact from their first pixel."""
    config = tb_config()
    seed = config["seed"]
    rng = random.Random(seed + 20)
    driver, monitor = await bring_up(dut, seed + 21, gap=0.2, stall=0.5)
    scoreboard = Scoreboard("maxpool", dut._log)
    frames = random_frames(config, seed + 22, 2)
    await cut_by_reset(dut, driver, monitor, raster(frames),
                       rng.randrange(50, 50 + len(raster(frames[:1]))))
    # Whole frames sent so far pool as usual; the cut one gives a prefix.
    frame = len(raster(frames[:1]))
    complete = len(driver.sent) // frame
    scoreboard.check(pooled(config, frames[:complete + 1]), monitor.received, prefix=True)

    frames = random_frames(config, seed + 23, 2)
    driver.sent.clear()
    monitor.received.clear()
    await transfer(driver, monitor, raster(frames), len(pooled(config, frames)),
                   settle_cycles=config["latency"] + 2)
    scoreboard.check(pooled(config, frames), monitor.received)
    dut._log.info("maxpool: %d pooled codes checked in reset_mid_frame", scoreboard.checked)
