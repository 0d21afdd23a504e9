"""cocotb tests of :class:`hw.threshold.ThresholdUnit` against ``sw.numeric``.

Run through ``tb/test_threshold_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``act_bits``, ``channels``, ``acc_min``, ``acc_max``, ``variant``,
``latency``, the port field widths (``channel_bits``, ``acc_bits``,
``threshold_bits``), ``vectors`` and ``seed``.  Payloads are packed here from
the documented layouts (first field in the low bits), independently of the
Amaranth ones.  Thresholds come from :func:`sw.numeric.fold_thresholds` on
random scale and BN parameters with positive, negative and zero BN scales;
every expected code is :func:`sw.numeric.apply_thresholds`, checked equal to
:func:`sw.numeric.activation_from_accumulator`.  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random

import cocotb
import torch

from sim.cocotb_runner import tb_config
from sw.numeric import activation_from_accumulator, apply_thresholds, fold_thresholds
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer


class Layer:
    """Random scale and BN parameters of ``channels`` channels, folded into thresholds."""

    def __init__(self, config, seed):
        self.act_bits, self.channels = config["act_bits"], config["channels"]
        self.acc_min, self.acc_max = config["acc_min"], config["acc_max"]
        self._config = config
        gen = torch.Generator().manual_seed(seed)
        signs = [(+1, -1, 0)[c % 3] for c in range(self.channels)]
        random.Random(seed).shuffle(signs)
        sign = torch.tensor(signs, dtype=torch.float32)
        # The accumulator range scaled to about [-2, 2] before BN: every code occurs.
        span = max(1, self.acc_max - self.acc_min)
        self.scale = torch.tensor(4.0 / span, dtype=torch.float32) * (0.5 + torch.rand((), generator=gen))
        self.alpha = sign * (0.25 + 2 * torch.rand(self.channels, generator=gen))
        self.beta = torch.where(sign == 0, -0.2 + 1.4 * torch.rand(self.channels, generator=gen),
                                -1 + 2 * torch.rand(self.channels, generator=gen))
        self.thresholds, self.direction = fold_thresholds(
            self.scale, self.alpha, self.beta, self.act_bits, self.acc_min, self.acc_max)

    def load_payloads(self):
        """``load`` payloads: ``channel``, ``direction`` (1: -1), then ``thresholds[0..n_a-1]``."""
        c_bits, t_bits = self._config["channel_bits"], self._config["threshold_bits"]
        payloads = []
        for channel in range(self.channels):
            word = channel | int(self.direction[channel] < 0) << c_bits
            for index, t in enumerate(self.thresholds[channel].tolist()):
                word |= (t & ((1 << t_bits) - 1)) << (c_bits + 1 + index * t_bits)
            payloads.append(word)
        return payloads

    def accumulators(self, rng, positions):
        """``(positions, channels)`` accumulators: uniform, or on/next to a threshold."""
        rows = []
        for _ in range(positions):
            row = []
            for channel in range(self.channels):
                if rng.random() < 0.25:
                    t = rng.choice(self.thresholds[channel].tolist()) + rng.randint(-1, 1)
                    row.append(min(max(t, self.acc_min), self.acc_max))
                else:
                    row.append(rng.randint(self.acc_min, self.acc_max))
            rows.append(row)
        return torch.tensor(rows, dtype=torch.int64)

    def item_payloads(self, acc):
        """``i`` payloads in conv-output order (channels fastest): ``channel``, then ``acc``."""
        c_bits, a_bits = self._config["channel_bits"], self._config["acc_bits"]
        return [channel | (a & ((1 << a_bits) - 1)) << c_bits
                for row in acc.tolist() for channel, a in enumerate(row)]

    def codes(self, acc):
        codes = apply_thresholds(acc, self.thresholds, self.direction)
        float_path = activation_from_accumulator(acc, self.scale, self.alpha, self.beta, self.act_bits)
        assert torch.equal(codes, float_path), "sw: thresholds disagree with the float path"
        return codes.reshape(-1).tolist()

    def outputs(self, acc):
        """The expected ``o`` payloads: the codes."""
        return self.codes(acc)

    async def run(self, loader, driver, monitor, scoreboard, acc):
        """Load the layer, stream ``acc`` through, score the outputs and clear them."""
        await loader.send(self.load_payloads())
        await transfer(driver, monitor, self.item_payloads(acc), acc.numel())
        scoreboard.check(self.outputs(acc), monitor.received, describe=describe(acc, self.channels))
        monitor.received.clear()


def describe(acc, channels):
    flat = acc.reshape(-1).tolist()
    return lambda i: f"channel {i % channels}, acc {flat[i]}"


@cocotb.test()
async def random_stream(dut):
    """Two layers, loaded in turn, each streaming half the ``vectors``
    accumulators with random valid gaps and back-pressure."""
    config = tb_config()
    seed, channels = config["seed"], config["channels"]
    rng = random.Random(seed)
    loader, driver, monitor = await bring_up(dut, seed + 1, inputs=("load", "i"),
                                             gap=0.3, stall=0.3)
    scoreboard = Scoreboard(f"threshold {config['variant']} A={config['act_bits']}", dut._log)
    monitor.start()
    for index in range(2):
        layer = Layer(config, seed + 10 * index)
        positions = -(-config["vectors"] // (2 * channels))
        await layer.run(loader, driver, monitor, scoreboard, layer.accumulators(rng, positions))
    dut._log.info("threshold: %d accumulators checked in random_stream", scoreboard.checked)


@cocotb.test()
async def full_rate(dut):
    """No gaps and no back-pressure: one code per cycle, ``latency`` cycles late."""
    config = tb_config()
    seed, latency = config["seed"], config["latency"]
    layer = Layer(config, seed + 100)
    acc = layer.accumulators(random.Random(seed + 101), -(-64 // config["channels"]))
    loader, driver, monitor = await bring_up(dut, seed + 102, inputs=("load", "i"),
                                             gap=0.0, stall=0.0)
    await loader.send(layer.load_payloads())
    cycles = await transfer(driver, monitor, layer.item_payloads(acc), acc.numel())
    Scoreboard("threshold", dut._log).check(layer.codes(acc), monitor.received)
    # Accumulator k is taken at edge k + 1 and its code at edge k + 1 + latency.
    assert cycles == acc.numel() + latency, (cycles, acc.numel(), latency)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset with codes in flight: what came out before is a correct prefix,
    nothing leaks across, and the thresholds (memories) survive the reset."""
    config = tb_config()
    seed, channels, latency = config["seed"], config["channels"], config["latency"]
    rng = random.Random(seed + 200)
    layer = Layer(config, seed + 201)
    loader, driver, monitor = await bring_up(dut, seed + 202, inputs=("load", "i"),
                                             gap=0.2, stall=0.5)
    scoreboard = Scoreboard("threshold", dut._log)
    await loader.send(layer.load_payloads())
    acc = layer.accumulators(rng, 400 // channels + 1)
    await cut_by_reset(dut, driver, monitor, layer.item_payloads(acc), rng.randrange(50, 150))
    in_flight = len(driver.sent) - len(monitor.received)
    assert 0 <= in_flight <= latency, in_flight
    scoreboard.check(layer.codes(acc), monitor.received, prefix=True)

    acc = layer.accumulators(rng, 300 // channels + 1)
    driver.sent.clear()
    monitor.received.clear()
    # No reload: the thresholds are kept.
    await transfer(driver, monitor, layer.item_payloads(acc), acc.numel(), settle_cycles=latency + 2)
    scoreboard.check(layer.codes(acc), monitor.received, describe=describe(acc, channels))
    dut._log.info("threshold: %d accumulators checked in reset_mid_stream", scoreboard.checked)
