"""cocotb tests of :class:`hw.mac_array.MacArray` against ``sw.bitplanes.signed_matmul``.

Run through ``tb/test_mac_array_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``product`` (a :class:`hw.mac_array.Product` value), ``rows``,
``cols``, ``w_bits``, ``a_bits``, ``g_bits``, ``pe``, ``simd``, ``mode``,
``popcount_stages``, ``vectors`` (input vectors in the random GEMM) and
``seed``.  Payloads are packed and unpacked with the unit's own layouts.
The module is not named ``test_*.py``, so pytest never imports it.
"""

import random
import warnings

import cocotb
import numpy as np
from amaranth.hdl import UnusedElaboratable

from hw.mac_array import MacArray
from sim.cocotb_runner import tb_config
from sw.contract.codes import levels_or_none
from sw.bitplanes import signed_matmul
from tb.common import Scoreboard, bring_up, cut_by_reset, transfer

# The model component is built only for its layouts and timing, never elaborated.
warnings.simplefilter("ignore", UnusedElaboratable)

CONSTRUCTOR = ("rows", "cols", "w_bits", "a_bits", "g_bits", "pe", "simd", "mode",
               "popcount_stages")


class Setup:
    """The configuration, payload packing and the reference model."""

    def __init__(self):
        config = tb_config()
        self.vectors, self.seed = config["vectors"], config["seed"]
        self.model = MacArray.for_product(config["product"],
                                          **{key: config[key] for key in CONSTRUCTOR})
        self.i_layout = self.model.i.payload.shape()
        self.o_layout = self.model.o.payload.shape()

    def codes(self, rng: np.random.Generator, bits: int, shape) -> np.ndarray:
        """Random codes, some rows pinned to the extremes (the ends of the range)."""
        codes = rng.integers(0, 1 << bits, size=shape)
        pinned = rng.random(shape[0]) < 0.1
        codes[pinned] = rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
        return codes

    def matrix(self, rng) -> np.ndarray:
        return self.codes(rng, self.model.m_bits, (self.model.rows, self.model.cols))

    def inputs(self, rng, count: int) -> np.ndarray:
        return self.codes(rng, self.model.v_bits, (count, self.model.cols))

    def load_words(self, matrix) -> list[int]:
        layout = self.model.load_layout
        return [layout.const(word).as_bits() for word in self.model.load_words(matrix)]

    def input_words(self, vectors) -> list[int]:
        return [self.i_layout.const(beat).as_bits()
                for vector in vectors for beat in self.model.input_beats(vector)]

    def values(self, received) -> list[int]:
        """Received beats flattened to one integer per matrix row, in order."""
        return [int(value) for word in received for value in self.o_layout.from_bits(word)]

    def expected(self, matrix, vectors) -> list[int]:
        """The scoreboard: ``signed_matmul`` of the vectors with the matrix, row by row."""
        model = self.model
        v_levels = levels_or_none(model.v_bits, model.v_signed)
        m_levels = levels_or_none(model.m_bits, model.m_signed)
        return signed_matmul(np.asarray(vectors), v_levels, model.v_bits,
                             matrix, m_levels, model.m_bits).ravel().tolist()


def counters(dut) -> dict:
    return {name: int(getattr(dut, name).value) for name in ("cycles", "busy", "macs")}


@cocotb.test()
async def random_gemm(dut):
    """``vectors`` random vectors against two matrices (reloaded at run time
    between them), with random valid gaps and back-pressure everywhere."""
    setup = Setup()
    model = setup.model
    rng = np.random.default_rng(setup.seed)
    loader, driver, monitor = await bring_up(dut, setup.seed + 1, inputs=("load", "i"),
                                             gap=0.3, stall=0.3)
    scoreboard = Scoreboard("mac_array", dut._log)
    monitor.start()
    half = setup.vectors // 2
    for count in (half, setup.vectors - half):
        matrix, vectors = setup.matrix(rng), setup.inputs(rng, count)
        await loader.send(setup.load_words(matrix))
        # Reload only between vectors: wait for these to leave the array.
        await transfer(driver, monitor, setup.input_words(vectors), count * model.groups,
                       timeout_cycles=2_000_000)
        scoreboard.check(setup.expected(matrix, vectors), setup.values(monitor.received))
        monitor.received.clear()
    dut._log.info("mac_array: %d vectors, %d dot products of %d codes checked",
                  setup.vectors, scoreboard.checked, model.cols)


@cocotb.test()
async def full_rate_counters(dut):
    """No gaps, no back-pressure: one fold per ``cycles_per_beat`` cycles, and
    the work counters (busy cycles, MACs) exact; utilisation ``busy / cycles``
    is exactly computable."""
    setup = Setup()
    model = setup.model
    rng = np.random.default_rng(setup.seed + 10)
    loader, driver, monitor = await bring_up(dut, setup.seed + 11, inputs=("load", "i"),
                                             gap=0.0, stall=0.0)
    matrix, vectors = setup.matrix(rng), setup.inputs(rng, 12)
    await loader.send(setup.load_words(matrix))
    before = counters(dut)
    assert (before["busy"], before["macs"]) == (0, 0), before
    await transfer(driver, monitor, setup.input_words(vectors), len(vectors) * model.groups)
    after = counters(dut)
    Scoreboard("mac_array", dut._log).check(setup.expected(matrix, vectors),
                                            setup.values(monitor.received))
    work = len(vectors) * model.cycles_per_vector
    assert after["busy"] == work, (after, work)
    assert after["macs"] == len(vectors) * model.rows * model.cols, after
    # The last fold is issued `work - cpb` cycles after the first, its group
    # leaves `latency` cycles later, and the monitor takes it at the next edge.
    cycles = after["cycles"] - before["cycles"]
    assert cycles == work - model.cycles_per_beat + model.latency + 1, (cycles, work)
    dut._log.info("mac_array: utilisation %d / %d cycles = %.3f", work, cycles, work / cycles)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset with vectors in flight: results before it are a correct prefix,
    the counters clear, and the matrix memory survives (no reload needed)."""
    setup = Setup()
    model = setup.model
    rng = np.random.default_rng(setup.seed + 20)
    pick = random.Random(setup.seed + 20)
    loader, driver, monitor = await bring_up(dut, setup.seed + 21, inputs=("load", "i"),
                                             gap=0.2, stall=0.5)
    scoreboard = Scoreboard("mac_array", dut._log)
    matrix = setup.matrix(rng)
    await loader.send(setup.load_words(matrix))
    vectors = setup.inputs(rng, 60)

    def counters_cleared():
        assert counters(dut) == {"cycles": 0, "busy": 0, "macs": 0}, counters(dut)

    await cut_by_reset(dut, driver, monitor, setup.input_words(vectors),
                       pick.randrange(20, 20 + 10 * model.cycles_per_vector), cleared=counters_cleared)
    scoreboard.check(setup.expected(matrix, vectors), setup.values(monitor.received), prefix=True)

    vectors = setup.inputs(rng, 40)
    driver.sent.clear()
    monitor.received.clear()
    await transfer(driver, monitor, setup.input_words(vectors), len(vectors) * model.groups,
                   settle_cycles=model.latency + 2)
    scoreboard.check(setup.expected(matrix, vectors), setup.values(monitor.received))
    dut._log.info("mac_array: %d items checked around the reset", scoreboard.checked)
