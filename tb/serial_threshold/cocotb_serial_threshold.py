"""cocotb tests of :class:`hw.serial_threshold.SerialThresholdUnit` against ``sw.numeric``.

Run through ``tb/test_serial_threshold_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``max_act_bits``, ``channels``, ``acc_width``, ``latency``, ``channel_bits``,
``vectors`` and ``seed``.  Payloads are packed here from the documented layouts
(first field in the low bits), independently of the Amaranth ones.  The layers'
thresholds are ``tb/threshold``'s (:func:`sw.numeric.fold_thresholds` on random
scale and BN parameters, positive, negative and zero BN scales), at every code
width up to ``max_act_bits`` in turn, the width set on the ``bits`` port between
layers as the core does; every expected code is :func:`sw.numeric.apply_thresholds`,
checked equal to the float path.  Not named ``test_*.py``: pytest never imports it.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from sim.cocotb_runner import tb_config
from sw.contract.codes import levels
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer
from tb.threshold.cocotb_threshold import Layer, describe


class SerialLayer(Layer):
    """A folded layer of ``bits``-bit codes, as the serial unit's payloads."""

    def __init__(self, config, bits, seed):
        # Accumulators over a range a few times the codes' levels, signed, inside acc_width.
        span = min(1 << (config["acc_width"] - 2), 40 * levels(bits))
        super().__init__({**config, "act_bits": bits, "acc_min": -span, "acc_max": span}, seed)
        self.bits = bits

    def load_payloads(self):
        """One ``load`` beat a threshold: ``channel``, ``index``, ``direction``, ``threshold``."""
        c_bits, i_bits, width = (self._config[k] for k in ("channel_bits", "max_act_bits", "acc_width"))
        return [channel | index << c_bits | int(self.direction[channel] < 0) << (c_bits + i_bits)
                | (t & ((1 << width) - 1)) << (c_bits + i_bits + 1)
                for channel in range(self.channels)
                for index, t in enumerate(self.thresholds[channel].tolist())]

    def item_payloads(self, acc):
        """``i`` beats, channels fastest: ``channel``, ``acc``, ``last`` (on the final one)."""
        c_bits, width = self._config["channel_bits"], self._config["acc_width"]
        flat = [(channel, a) for row in acc.tolist() for channel, a in enumerate(row)]
        return [channel | (a & ((1 << width) - 1)) << c_bits | int(k == len(flat) - 1) << (c_bits + width)
                for k, (channel, a) in enumerate(flat)]

    def outputs(self, acc):
        """The expected ``o`` payloads: ``code``, then ``last``."""
        codes = self.codes(acc)
        return [code | int(k == len(codes) - 1) << self._config["max_act_bits"] for k, code in enumerate(codes)]


def widths(config):
    """The code widths a test walks through: each one up to ``max_act_bits``, widest first."""
    return list(range(config["max_act_bits"], 0, -1))


@cocotb.test()
async def random_stream(dut):
    """A layer at each code width, loaded in turn, streaming its share of ``vectors``
    accumulators with random valid gaps and back-pressure."""
    config = tb_config()
    seed, channels = config["seed"], config["channels"]
    rng = random.Random(seed)
    loader, driver, monitor = await bring_up(dut, seed + 1, inputs=("load", "i"), gap=0.3, stall=0.3)
    scoreboard = Scoreboard(f"serial threshold A<={config['max_act_bits']}", dut._log)
    monitor.start()
    for index, bits in enumerate(widths(config)):
        dut.bits.value = bits
        await RisingEdge(dut.clk)
        layer = SerialLayer(config, bits, seed + 10 * index)
        # Fewer values at the wide codes, whose values take 2**bits - 1 cycles each.
        positions = -(-config["vectors"] // (len(widths(config)) * channels * max(1, levels(bits) // 8)))
        await layer.run(loader, driver, monitor, scoreboard, layer.accumulators(rng, positions))
    dut._log.info("serial threshold: %d accumulators checked in random_stream", scoreboard.checked)


@cocotb.test()
async def full_rate(dut):
    """No gaps, no back-pressure: a value every ``2**bits - 1`` cycles, each code
    ``2**bits - 1 + latency`` cycles after its value, at each code width."""
    config = tb_config()
    seed, latency = config["seed"], config["latency"]
    loader, driver, monitor = await bring_up(dut, seed + 100, inputs=("load", "i"), gap=0.0, stall=0.0)
    for bits in widths(config):
        dut.bits.value = bits
        await RisingEdge(dut.clk)
        layer = SerialLayer(config, bits, seed + 101 + bits)
        acc = layer.accumulators(random.Random(seed + 102 + bits), -(-24 // config["channels"]))
        await loader.send(layer.load_payloads())
        cycles = await transfer(driver, monitor, layer.item_payloads(acc), acc.numel())
        Scoreboard("serial threshold", dut._log).check(layer.outputs(acc), monitor.received)
        monitor.received.clear()
        # Value k is taken at edge 1 + k * n_a, its code at edge 1 + (k + 1) * n_a + latency.
        assert cycles == acc.numel() * levels(bits) + latency + 1, (bits, cycles, acc.numel(), latency)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset with codes in flight: what came out before is a correct prefix,
    nothing leaks across, and the thresholds (memories) survive the reset."""
    config = tb_config()
    seed, channels = config["seed"], config["channels"]
    bits = min(2, config["max_act_bits"])
    rng = random.Random(seed + 200)
    layer = SerialLayer(config, bits, seed + 201)
    loader, driver, monitor = await bring_up(dut, seed + 202, inputs=("load", "i"), gap=0.2, stall=0.5)
    dut.bits.value = bits
    scoreboard = Scoreboard("serial threshold", dut._log)
    await loader.send(layer.load_payloads())
    acc = layer.accumulators(rng, 200 // channels + 1)
    await cut_by_reset(dut, driver, monitor, layer.item_payloads(acc), rng.randrange(50, 150))
    in_flight = len(driver.sent) - len(monitor.received)
    assert 0 <= in_flight <= 1 + config["latency"], in_flight
    scoreboard.check(layer.outputs(acc), monitor.received, prefix=True)

    acc = layer.accumulators(rng, 150 // channels + 1)
    driver.sent.clear()
    monitor.received.clear()
    # No reload: the thresholds are kept.
    await transfer(driver, monitor, layer.item_payloads(acc), acc.numel(),
                   settle_cycles=levels(bits) + config["latency"] + 2)
    scoreboard.check(layer.outputs(acc), monitor.received, describe=describe(acc, channels))
    dut._log.info("serial threshold: %d accumulators checked in reset_mid_stream", scoreboard.checked)
