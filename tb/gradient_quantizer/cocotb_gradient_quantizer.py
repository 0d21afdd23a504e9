"""cocotb tests of :class:`hw.gradient_quantizer.GradientQuantizer` against
:func:`sw.numeric.gradient_codes`, with the noise of :class:`sw.prng.XorShift32`.

Run through ``tb/test_gradient_quantizer_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``gbits``, ``width``, ``depth``, ``seed`` (the PRNG's reset state),
``vectors`` (elements in the random stream) and ``tb_seed``.  Payloads are
packed and unpacked with the unit's own layouts.  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random

import cocotb
import torch
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.gradient_quantizer import input_layout, output_layout
from sim.cocotb_runner import tb_config
from sw.numeric import gradient_codes
from sw.prng import XorShift32
from tb.common import Scoreboard, bring_up, cut_by_reset, send_always_ready, transfer


class Setup:
    """The configuration, payload packing and the reference model."""

    def __init__(self):
        config = tb_config()
        self.gbits, self.width, self.depth = config["gbits"], config["width"], config["depth"]
        self.seed, self.vectors, self.tb_seed = config["seed"], config["vectors"], config["tb_seed"]
        self.i_layout = input_layout(self.width)
        self.o_layout = output_layout(self.gbits, self.width)

    def words(self, samples) -> list[int]:
        """Input beats, ``last`` on the final element of each sample."""
        return [self.i_layout.const({"grad": g, "last": i == len(s) - 1}).as_bits()
                for s in samples for i, g in enumerate(s)]

    def beats(self, received) -> list[tuple[int, int, int]]:
        """``(code, scale, last)`` of each received output word."""
        views = [self.o_layout.from_bits(word) for word in received]
        return [(int(v.code), int(v.scale), int(v.last)) for v in views]

    def expected(self, samples, seed=None) -> list[tuple[int, int, int]]:
        """The scoreboard: each sample through ``gradient_codes`` with its draws, in order."""
        prng = XorShift32(self.seed if seed is None else seed)
        beats = []
        for sample in samples:
            g = torch.tensor([sample], dtype=torch.int64)
            codes, m = gradient_codes(g, torch.from_numpy(prng.draw_like(g.shape)), self.gbits)
            beats += [(c, int(m[0]), int(i == len(sample) - 1)) for i, c in enumerate(codes[0].tolist())]
        return beats

    def samples(self, rng: random.Random, elements: int) -> list[list[int]]:
        """Random samples of 1..depth elements, ``elements`` in all, with the edge cases:
        all-zero samples, negative-only ones, the extremes of the width, small magnitudes."""
        lo, hi = -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        out, total = [], 0
        while total < elements:
            length = min(rng.randint(1, self.depth), elements - total)
            kind = rng.randrange(8)
            if kind == 0:
                sample = [0] * length
            elif kind == 1:
                sample = [rng.randint(lo, 0) for _ in range(length)]
            elif kind == 2:
                sample = [rng.choice((lo, hi, 0, lo + 1, hi - 1)) for _ in range(length)]
            elif kind == 3:
                bits = rng.randint(1, self.width)
                sample = [rng.randint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) for _ in range(length)]
            else:
                sample = [rng.randint(lo, hi) for _ in range(length)]
            out.append(sample)
            total += length
        return out


class TransferLog:
    """The clock cycle of every ``i`` and ``o`` transfer (edge count since :meth:`start`)."""

    def __init__(self, dut):
        self._dut = dut
        self.inputs, self.outputs = [], []

    def start(self):
        cocotb.start_soon(self._run())

    async def _run(self):
        dut, cycle = self._dut, 0
        while True:
            await ReadOnly()
            if int(dut.i__valid.value) and int(dut.i__ready.value):
                self.inputs.append(cycle)
            if int(dut.o__valid.value) and int(dut.o__ready.value):
                self.outputs.append(cycle)
            await RisingEdge(dut.clk)
            cycle += 1


@cocotb.test()
async def random_stream(dut):
    """``vectors`` elements in random samples, random valid gaps and back-pressure."""
    setup = Setup()
    samples = setup.samples(random.Random(setup.tb_seed), setup.vectors)
    words = setup.words(samples)
    driver, monitor = await bring_up(dut, setup.tb_seed + 1, gap=0.3, stall=0.3, idle=("seed",))
    await transfer(driver, monitor, words, len(words), settle_cycles=setup.gbits + 6)
    scoreboard = Scoreboard("gradient_quantizer", dut._log)
    scoreboard.check(setup.expected(samples), setup.beats(monitor.received))
    dut._log.info("gradient_quantizer: %d vectors (G=%d, width=%d, depth=%d)",
                  scoreboard.checked, setup.gbits, setup.width, setup.depth)


@cocotb.test()
async def full_rate(dut):
    """No gaps, no back-pressure: the first code ``gbits + 3`` cycles after a sample's last
    input, one code per cycle, one idle cycle per sample on either side."""
    setup = Setup()
    rng = random.Random(setup.tb_seed + 10)
    count, length = 8, setup.depth
    samples = [[rng.randint(-(1 << (setup.width - 1)), (1 << (setup.width - 1)) - 1)
                for _ in range(length)] for _ in range(count)]
    driver, monitor = await bring_up(dut, setup.tb_seed + 11, gap=0.0, stall=0.0, idle=("seed",))
    log = TransferLog(dut)
    log.start()
    monitor.start()
    await driver.send(setup.words(samples))
    await monitor.wait_for(count * length)
    await RisingEdge(dut.clk)
    Scoreboard("gradient_quantizer", dut._log).check(setup.expected(samples), setup.beats(monitor.received))
    first = log.inputs[0]
    assert log.inputs == [first + k * (length + 1) + i for k in range(count) for i in range(length)]
    assert log.outputs[0] - log.inputs[length - 1] == setup.gbits + 3, (log.outputs[0], log.inputs)
    steps = [b - a for a, b in zip(log.outputs, log.outputs[1:])]
    assert steps == [2 if (i + 1) % length == 0 else 1 for i in range(count * length - 1)], steps


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset while samples are in flight: what came out before is a correct prefix, and
    afterwards the unit runs as new (the PRNG back at its reset seed)."""
    setup = Setup()
    rng = random.Random(setup.tb_seed + 20)
    scoreboard = Scoreboard("gradient_quantizer", dut._log)
    driver, monitor = await bring_up(dut, setup.tb_seed + 21, gap=0.2, stall=0.5, idle=("seed",))
    samples = setup.samples(rng, 300)
    await cut_by_reset(dut, driver, monitor, setup.words(samples), rng.randrange(60, 200))
    scoreboard.check(setup.expected(samples), setup.beats(monitor.received), prefix=True)
    assert len(monitor.received) < len(driver.sent), "the reset came too late to cut anything"

    samples = setup.samples(rng, 300)
    words = setup.words(samples)
    driver.sent.clear()
    monitor.received.clear()
    await transfer(driver, monitor, words, len(words), settle_cycles=setup.gbits + 6)
    scoreboard.check(setup.expected(samples), setup.beats(monitor.received))
    dut._log.info("gradient_quantizer: %d items checked across the reset", scoreboard.checked)


@cocotb.test()
async def seed_load(dut):
    """A seed loaded between samples: the next element takes its first draw."""
    setup = Setup()
    rng = random.Random(setup.tb_seed + 30)
    other = rng.randrange(1, 1 << 32)
    first, second = setup.samples(rng, 200), setup.samples(rng, 200)
    driver, monitor = await bring_up(dut, setup.tb_seed + 31, gap=0.2, stall=0.2, idle=("seed",))
    monitor.start()
    await driver.send(setup.words(first))
    await monitor.wait_for(len(driver.sent))
    await send_always_ready(dut, "seed", other)
    await driver.send(setup.words(second))
    await monitor.wait_for(len(driver.sent))
    await ClockCycles(dut.clk, setup.gbits + 6)
    Scoreboard("gradient_quantizer", dut._log).check(
        setup.expected(first) + setup.expected(second, seed=other), setup.beats(monitor.received))
