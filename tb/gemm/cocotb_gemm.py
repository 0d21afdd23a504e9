"""cocotb tests of :class:`hw.gemm.GemmEngine` against ``sw.bitplanes.signed_matmul``.

Run through ``tb/test_gemm_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives the constructor arguments (``pe``, ``vectors``, ``simd``, ``max_bits``,
``max_rows``, ``max_cols``, ``popcount_stages``, ``drains``), ``matrices`` (matrices in
the main test, each run against vectors of two readings) and ``seed``.

The engine is driven as :class:`hw.core.TrainingCore` drives it: a matrix
loaded over one or more frames (``clear`` before the first, ``flush`` on each
frame's last code), then for each RUN its vectors in tiles of up to
``vectors`` (``to_vectors``, ``clear`` before each tile, the last tile
partial), ``start`` once ``writing`` drops, the values read back through
``result_addr``.  The matrix's bits and reading are the LOAD's, the vectors'
the RUN's, and one matrix serves RUNs of different readings.  Over a test
every width 1 .. max_bits meets each side and all four readings
(``m_signed``, ``v_signed``) come up.  Codes stream with random idle cycles.
The module is not named ``test_*.py``, so pytest never imports it.
"""

import random
import warnings

import cocotb
import numpy as np
from amaranth.hdl import UnusedElaboratable
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.gemm import GemmEngine
from sim.cocotb_runner import tb_config
from sw.bitplanes import signed_matmul
from sw.contract.codes import levels_or_none
from tb.common import Scoreboard, StreamDriver, reset, start_clock

# The model component is built only for its parameters and timing, never elaborated.
warnings.simplefilter("ignore", UnusedElaboratable)

CONSTRUCTOR = ("pe", "vectors", "simd", "max_bits", "max_rows", "max_cols", "popcount_stages", "drains")
READINGS = [(False, False), (True, False), (False, True), (True, True)]  # (m_signed, v_signed)


class Setup:
    def __init__(self):
        config = tb_config()
        self.config, self.seed = config, config["seed"]
        self.model = GemmEngine(**{key: config[key] for key in CONSTRUCTOR})
        self.max_bits, self.max_rows, self.max_cols = config["max_bits"], config["max_rows"], config["max_cols"]
        self.code_offset = {name: field.offset for name, field in self.model.codes.payload.shape()}

    def codes(self, np_rng, bits, shape) -> np.ndarray:
        codes = np_rng.integers(0, 1 << bits, size=shape)
        pinned = np_rng.random(shape[0]) < 0.2  # rows of extreme codes (the values' ends)
        codes[pinned] = np_rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
        return codes

    def words(self, codes: np.ndarray, frames: int) -> list[int]:
        """Code payloads, row-major, ``flush`` on the last code of each of ``frames`` frames."""
        flat = codes.reshape(-1)
        ends = set(np.linspace(0, len(flat), frames + 1, dtype=int)[1:] - 1)
        return [(int(code) << self.code_offset["code"]) | (int(n in ends) << self.code_offset["flush"])
                for n, code in enumerate(flat)]

    def expected(self, matrix, m_bits, m_signed, vectors, v_bits, v_signed) -> np.ndarray:
        """``(vector, row)`` values: ``signed_matmul`` with each side's reading."""
        return signed_matmul(vectors, levels_or_none(v_bits, v_signed), v_bits,
                             matrix, levels_or_none(m_bits, m_signed), m_bits)


async def pulse(dut, name: str) -> None:
    """``name`` high for one rising edge (called, and returning, just after one)."""
    getattr(dut, name).value = 1
    await RisingEdge(dut.clk)
    getattr(dut, name).value = 0


async def until_written(dut) -> None:
    while True:
        await ReadOnly()
        if not int(dut.writing.value):
            break
        await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)


async def load(dut, driver: StreamDriver, setup: Setup, codes, *, to_vectors: bool, frames: int = 1) -> None:
    dut.to_vectors.value = int(to_vectors)
    await pulse(dut, "clear")
    await driver.send(setup.words(codes, frames))
    await until_written(dut)


async def compute(dut, setup: Setup, rows: int, count: int) -> tuple[int, np.ndarray]:
    """``start`` a tile; the cycles to ``done`` (``start``'s edge the first) and its values."""
    dut.start.value = 1
    cycles = 0
    while True:
        await RisingEdge(dut.clk)
        dut.start.value = 0
        cycles += 1
        await ReadOnly()
        if int(dut.done.value):
            break
        assert cycles < 100_000, "no done"
    await RisingEdge(dut.clk)
    values = np.zeros((count, rows), dtype=np.int64)
    for slot in range(count):
        for row in range(rows):
            dut.result_addr.value = setup.model.result_address(slot, row)
            await RisingEdge(dut.clk)
            await ReadOnly()
            values[slot, row] = dut.result.value.to_signed()
            await RisingEdge(dut.clk)
    return cycles, values


async def gemm_run(dut, driver, setup: Setup, matrix, m_bits, vectors, v_bits, v_signed, scoreboard, what):
    """One RUN on the loaded matrix: its vectors tile by tile, each tile's values and cycles checked."""
    model = setup.model
    rows, cols = matrix.shape
    dut.v_bits.value = v_bits
    dut.v_signed.value = int(v_signed)
    m_signed = bool(int(dut.m_signed.value))
    want = setup.expected(matrix, m_bits, m_signed, vectors, v_bits, v_signed)
    for t0 in range(0, len(vectors), model.vectors):
        tile = vectors[t0:t0 + model.vectors]
        await load(dut, driver, setup, tile, to_vectors=True)
        cycles, got = await compute(dut, setup, rows, len(tile))
        assert cycles == model.tile_cycles(rows, cols, m_bits, v_bits), (what, cycles)
        scoreboard.check(want[t0:t0 + len(tile)].ravel().tolist(), got.ravel().tolist(),
                         describe=lambda i: what)


def plan(setup: Setup, count: int):
    """``count`` matrices: ``(m_bits, m_signed, rows, cols, frames, [(v_bits, v_signed, vectors), ...])``.

    Matrix ``n`` has ``m_bits = (n - 1) mod max_bits + 1`` (the widest first) and is read signed
    when ``n mod max_bits + n // max_bits`` is odd: consecutive matrices alternate, and each
    width comes with both readings over ``2 * max_bits`` matrices.  Its two RUNs take the
    vector widths ``m_bits`` and three above it (wrapped), the first in the matrix's reading, the
    second in the other: all four readings every two matrices, and each vector width in both
    readings over ``2 * max_bits`` matrices.  Shapes and vector counts are random (whole and
    partial tiles); the first matrix is the largest."""
    rng = random.Random(setup.seed)
    top, model = setup.max_bits, setup.model
    jobs = []
    for n in range(count):
        m_bits, m_signed = (n - 1) % top + 1, bool((n % top + n // top) % 2)
        runs = [((n - 1 + shift) % top + 1, m_signed ^ bool(r), rng.randint(1, 2 * model.vectors + 1))
                for r, shift in enumerate((0, 3))]
        rows, cols = (setup.max_rows, setup.max_cols) if n == 0 else \
            (rng.randint(1, setup.max_rows), rng.randint(1, setup.max_cols))
        jobs.append((m_bits, m_signed, rows, cols, rng.randint(1, 3), runs))
    return jobs


async def bring_up(dut, seed: int) -> StreamDriver:
    start_clock(dut)
    for name in ("clear", "to_vectors", "cols", "rows", "m_bits", "m_signed", "v_bits", "v_signed", "start",
                 "result_addr", "codes__valid", "codes__payload"):
        getattr(dut, name).value = 0
    dut.result_en.value = 1  # the result memory read at every address (its hold: tests/hw/test_gemm.py)
    driver = StreamDriver(dut, "codes", rng=random.Random(seed), gap=0.25)
    await reset(dut)
    return driver


@cocotb.test()
async def every_reading(dut):
    """``matrices`` matrices of random shape, each loaded over 1..3 frames and run against two
    RUNs of other widths and readings, in tiles (the last one partial)."""
    setup = Setup()
    np_rng = np.random.default_rng(setup.seed)
    driver = await bring_up(dut, setup.seed + 1)
    scoreboard = Scoreboard("gemm", dut._log)
    seen, widths = set(), set()  # readings; (side, bits, signed)
    for m_bits, m_signed, rows, cols, frames, runs in plan(setup, setup.config["matrices"]):
        matrix = setup.codes(np_rng, m_bits, (rows, cols))
        dut.rows.value, dut.cols.value = rows, cols
        dut.m_bits.value, dut.m_signed.value = m_bits, int(m_signed)
        await load(dut, driver, setup, matrix, to_vectors=False, frames=frames)
        for v_bits, v_signed, count in runs:
            vectors = setup.codes(np_rng, v_bits, (count, cols))
            what = (f"{rows}x{cols} matrix of {m_bits} bits ({'signed' if m_signed else 'unsigned'}), "
                    f"{count} vectors of {v_bits} bits ({'signed' if v_signed else 'unsigned'})")
            await gemm_run(dut, driver, setup, matrix, m_bits, vectors, v_bits, v_signed, scoreboard, what)
            seen.add((m_signed, v_signed))
            widths |= {("m", m_bits, m_signed), ("v", v_bits, v_signed)}
    assert seen == set(READINGS), seen
    if setup.config["matrices"] >= 2 * setup.max_bits:  # every width of each side in both readings
        assert widths == {(side, bits, signed) for side in "mv" for bits in range(1, setup.max_bits + 1)
                          for signed in (False, True)}, sorted(widths)
    dut._log.info("gemm: %d values checked", scoreboard.checked)


@cocotb.test()
async def reset_then_reload(dut):
    """A reset in the middle of a tile: ``done`` does not come, and after reloading the matrix
    the engine computes exactly (the reset forgets the matrix's shape, not the planes)."""
    setup = Setup()
    np_rng = np.random.default_rng(setup.seed + 5)
    rng = random.Random(setup.seed + 5)
    driver = await bring_up(dut, setup.seed + 6)
    scoreboard = Scoreboard("gemm", dut._log)
    rows, cols, m_bits, v_bits = setup.max_rows, setup.max_cols, setup.max_bits, max(1, setup.max_bits - 1)
    matrix = setup.codes(np_rng, m_bits, (rows, cols))
    vectors = setup.codes(np_rng, v_bits, (setup.model.vectors, cols))
    dut.rows.value, dut.cols.value, dut.m_bits.value, dut.m_signed.value = rows, cols, m_bits, 1
    dut.v_bits.value, dut.v_signed.value = v_bits, 1
    await load(dut, driver, setup, matrix, to_vectors=False, frames=2)
    await load(dut, driver, setup, vectors, to_vectors=True)
    await pulse(dut, "start")
    await ClockCycles(dut.clk, rng.randrange(1, setup.model.tile_cycles(rows, cols, m_bits, v_bits) - 1))
    await reset(dut, 2)
    await ReadOnly()
    assert int(dut.done.value) == 0 and int(dut.writing.value) == 0
    await RisingEdge(dut.clk)
    await load(dut, driver, setup, matrix, to_vectors=False)
    await gemm_run(dut, driver, setup, matrix, m_bits, vectors, v_bits, True, scoreboard, "after the reset")
