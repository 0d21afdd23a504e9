"""cocotb tests of :class:`hw.prng.XorShift32` against :class:`sw.prng.XorShift32`.

Run through ``tb/test_prng_tb.py``; :func:`sim.cocotb_runner.tb_config` gives
``seed`` (the reset state), ``draws`` and ``tb_seed``.  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random

import cocotb
from cocotb.triggers import ClockCycles

from sim.cocotb_runner import tb_config
from sw.prng import XorShift32
from tb.common import Scoreboard, StreamMonitor, bring_up, reset, send_always_ready


async def start(dut, tb_seed: int, stall: float) -> StreamMonitor:
    """The monitor on ``noise``; the ``seed`` port is driven by hand."""
    (monitor,) = await bring_up(dut, tb_seed, inputs=(), output="noise", stall=stall, idle=("seed",))
    return monitor


@cocotb.test()
async def random_draws(dut):
    """``draws`` draws from the reset seed, ``noise.ready`` randomly low (no draw is lost or repeated)."""
    config = tb_config()
    monitor = await start(dut, config["tb_seed"], stall=0.3)
    monitor.start()
    await monitor.wait_for(config["draws"])
    monitor.stop()
    scoreboard = Scoreboard("prng", dut._log)
    scoreboard.check(XorShift32(config["seed"]).draw(config["draws"]).tolist(),
                     monitor.received[:config["draws"]])
    dut._log.info("prng: %d draws checked", scoreboard.checked)


@cocotb.test()
async def seed_loads_and_reset(dut):
    """Run-time seeds (a zero seed is ignored), then a reset back to the constructor's seed."""
    config = tb_config()
    rng = random.Random(config["tb_seed"] + 1)
    monitor = await start(dut, config["tb_seed"] + 2, stall=0.2)
    scoreboard = Scoreboard("prng", dut._log)
    for _ in range(5):
        seed = rng.randrange(1, 1 << 32)
        await send_always_ready(dut, "seed", seed)
        await send_always_ready(dut, "seed", 0)          # ignored: the state stays `seed`
        monitor.received.clear()
        monitor.start()
        await monitor.wait_for(300)
        monitor.stop()
        scoreboard.check(XorShift32(seed).draw(300).tolist(), monitor.received[:300])
    await ClockCycles(dut.clk, 3)
    await reset(dut, 2)
    monitor.received.clear()
    monitor.start()
    await monitor.wait_for(300)
    monitor.stop()
    scoreboard.check(XorShift32(config["seed"]).draw(300).tolist(), monitor.received[:300])
    dut._log.info("prng: %d draws checked across seed loads and reset", scoreboard.checked)
