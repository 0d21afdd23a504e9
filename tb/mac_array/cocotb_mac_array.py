"""cocotb tests of :class:`hw.mac_array.MacArray` against ``sw.bitplanes.plane_matmul``.

Run through ``tb/test_mac_array_tb.py`` on the array as a standalone module
(:func:`hw.catalog.standalone`: its always-ready ``o`` has no ``ready``).
:func:`sim.cocotb_runner.tb_config` gives the constructor arguments (``pe``,
``vectors``, ``simd``, ``max_bits``, ``max_rows``, ``max_cols``,
``popcount_stages``, ``drains``), ``tiles`` (random tiles in the main test)
and ``seed``.  Each drain chain ``c`` is its own stream (``o__<c>__valid``,
``o__<c>__payload``); its outputs are checked for order and cycle from the
array's shape (PE rows ``c * pe/drains ..`` of every vector, rows fastest).

The testbench plays both plane buffers: it answers each read (``m_en``,
``v_en``) one cycle later from words it laid out itself in
:class:`hw.plane_writer.PlaneWriter`'s layout, and holds the data otherwise.
Words the array must not read (planes above the tile's widths, rows past
the matrix, slots past the vectors loaded, the vector side's lanes past the
last column) hold random garbage.  Each tile has random shape (``1 ..
max_rows`` x ``1 .. max_cols``, ``1 .. vectors`` vectors) and precisions
(``1 .. max_bits`` per side).  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random
import warnings

import cocotb
import numpy as np
from amaranth.hdl import UnusedElaboratable
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.mac_array import MacArray
from sim.cocotb_runner import tb_config
from sw.bitplanes import plane_matmul
from tb.common import Scoreboard, reset, start_clock

# The model component is built only for its parameters and timing, never elaborated.
warnings.simplefilter("ignore", UnusedElaboratable)

CONSTRUCTOR = ("pe", "vectors", "simd", "max_bits", "max_rows", "max_cols", "popcount_stages", "drains")


class Tile:
    """One tile's codes, its buffers' words and the expected sums."""

    def __init__(self, model: MacArray, rng: random.Random, np_rng: np.random.Generator, *, rows, cols, count,
                 m_bits, v_bits):
        self.rows, self.cols, self.count, self.m_bits, self.v_bits = rows, cols, count, m_bits, v_bits
        self.matrix = self._codes(np_rng, m_bits, (rows, cols))
        self.vectors = self._codes(np_rng, v_bits, (count, cols))
        simd, pe = model.simd, model.pe
        self.folds, self.groups = -(-cols // simd), -(-rows // pe)
        self.pairs = self.folds * m_bits * v_bits
        plane_bits = (model.max_bits - 1).bit_length()
        self.rng, self.simd = rng, simd
        self.m_words = [dict() for _ in range(pe)]
        self.v_words = [dict() for _ in range(model.vectors)]
        for row in range(rows):
            g, p = divmod(row, pe)
            for f in range(self.folds):
                for i in range(m_bits):
                    self.m_words[p][((g * self.folds + f) << plane_bits) | i] = \
                        self._word(self.matrix[row, f * simd:(f + 1) * simd], i)
        for j in range(count):
            for f in range(self.folds):
                lanes = self.vectors[j, f * simd:(f + 1) * simd]
                pad = rng.getrandbits(simd) & ~((1 << len(lanes)) - 1)  # the matrix side's padding is 0
                for k in range(v_bits):
                    self.v_words[j][(f << plane_bits) | k] = self._word(lanes, k) | pad
        self.want = plane_matmul(self.vectors, v_bits, self.matrix, m_bits)  # (slot, row)

    @staticmethod
    def _codes(np_rng, bits, shape):
        codes = np_rng.integers(0, 1 << bits, size=shape)
        pinned = np_rng.random(shape[0]) < 0.2  # rows of extreme codes
        codes[pinned] = np_rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
        return codes

    @staticmethod
    def _word(codes, bit):
        return sum(((int(code) >> bit) & 1) << lane for lane, code in enumerate(codes))

    def read(self, banks, addr) -> int:
        """A buffer's read data: every bank's word at ``addr``, bank ``s`` at bits ``s * simd``."""
        return sum(bank.setdefault(addr, self.rng.getrandbits(self.simd)) << (s * self.simd)
                   for s, bank in enumerate(banks))


class Setup:
    def __init__(self):
        config = tb_config()
        self.tiles, self.seed = config["tiles"], config["seed"]
        self.model = MacArray(**{key: config[key] for key in CONSTRUCTOR})
        self.max_rows, self.max_cols = config["max_rows"], config["max_cols"]
        layout = self.model.o[0].payload.shape()
        self.fields = {name: (field.offset, field.width) for name, field in layout}

    def tile(self, rng, np_rng, **fixed) -> Tile:
        model = self.model
        shape = dict(rows=rng.randint(1, self.max_rows), cols=rng.randint(1, self.max_cols),
                     count=rng.randint(1, model.vectors), m_bits=rng.randint(1, model.max_bits),
                     v_bits=rng.randint(1, model.max_bits))
        return Tile(model, rng, np_rng, **(shape | fixed))

    def unpack(self, word: int) -> dict:
        return {name: (word >> offset) & ((1 << width) - 1) for name, (offset, width) in self.fields.items()}


def chain_ports(dut, model: MacArray):
    """Each drain chain's ``(valid, payload)`` handles."""
    return [(getattr(dut, f"o__{c}__valid"), getattr(dut, f"o__{c}__payload")) for c in range(model.drains)]


async def run_tile(dut, setup: Setup, tile: Tile) -> tuple[list, int]:
    """``start`` the tile (just after a rising edge), serve the reads, collect every chain's ``o``
    until a ``final``.  Returns each chain's outputs ``(cycle, row, slot, sum, final)`` (``start``'s
    cycle is 0) and the reads."""
    for name in ("groups", "folds", "m_bits", "v_bits"):
        getattr(dut, name).value = getattr(tile, name)
    await RisingEdge(dut.clk)  # the run-time inputs settle a cycle before `start`
    dut.start.value = 1
    ports = chain_ports(dut, setup.model)
    outs, reads, cycle = [[] for _ in ports], 0, 0
    while not any(chain and chain[-1][4] for chain in outs):
        assert cycle < 200_000, "no final sum"
        await ReadOnly()
        for chain, (valid, payload) in zip(outs, ports):
            if int(valid.value):
                o = setup.unpack(int(payload.value))
                chain.append((cycle, o["row"], o["slot"], o["sum"], o["final"]))
        m_en, m_addr, v_addr = int(dut.m_en.value), int(dut.m_addr.value), int(dut.v_addr.value)
        assert int(dut.v_en.value) == m_en
        await RisingEdge(dut.clk)
        dut.start.value = 0
        if m_en:
            dut.m_data.value = tile.read(tile.m_words, m_addr)
            dut.v_data.value = tile.read(tile.v_words, v_addr)
            reads += 1
        cycle += 1
    return outs, reads


def check_tile(dut, setup: Setup, tile: Tile, outs, reads, scoreboard: Scoreboard) -> None:
    model = setup.model
    per = model.pe // model.drains  # PE rows per chain
    drain = per * model.vectors
    period = max(tile.pairs, drain)
    assert period == model.period(tile.folds, tile.m_bits, tile.v_bits)
    got = {}
    for c, chain in enumerate(outs):
        order = [(g * model.pe + c * per + q, j) for g in range(tile.groups) for j in range(model.vectors)
                 for q in range(per)]
        assert [(row, slot) for _, row, slot, _, _ in chain] == order, f"chain {c}: outputs out of order"
        cycles = [g * period + tile.pairs + model.latency + n for g in range(tile.groups) for n in range(drain)]
        assert [cycle for cycle, *_ in chain] == cycles, f"chain {c}: group timing"
        assert chain[-1][0] == model.tile_cycles(tile.groups, tile.folds, tile.m_bits, tile.v_bits)
        assert [final for *_, final in chain] == [0] * (len(chain) - 1) + [1], f"chain {c}: final"
        got |= {(row, slot): value for _, row, slot, value, _ in chain}
    assert reads == tile.groups * tile.pairs, (reads, tile.groups * tile.pairs)
    keys = [(row, slot) for slot in range(tile.count) for row in range(tile.rows)]
    scoreboard.check([int(tile.want[slot, row]) for row, slot in keys], [got[key] for key in keys],
                     describe=lambda i: f"row {keys[i][0]} slot {keys[i][1]} of a {tile.rows}x{tile.cols} tile, "
                                        f"{tile.m_bits} x {tile.v_bits} bits")


async def bring_up(dut):
    start_clock(dut)
    for name in ("start", "groups", "folds", "m_bits", "v_bits", "m_data", "v_data"):
        getattr(dut, name).value = 0
    await reset(dut)


@cocotb.test()
async def random_tiles(dut):
    """``tiles`` random tiles back to back: sums, order, ``final``, the cycle of every output
    (:meth:`MacArray.tile_cycles` for the last) and one read per plane pair per group."""
    setup = Setup()
    rng, np_rng = random.Random(setup.seed), np.random.default_rng(setup.seed)
    await bring_up(dut)
    scoreboard = Scoreboard("mac_array", dut._log)
    model = setup.model
    # The corners first: widest and narrowest codes on the largest and smallest tiles.
    corners = [dict(rows=setup.max_rows, cols=setup.max_cols, count=model.vectors, m_bits=model.max_bits,
                    v_bits=model.max_bits), dict(rows=1, cols=1, count=1, m_bits=1, v_bits=1)]
    for n in range(setup.tiles):
        tile = setup.tile(rng, np_rng, **(corners[n] if n < len(corners) else {}))
        outs, reads = await run_tile(dut, setup, tile)
        check_tile(dut, setup, tile, outs, reads, scoreboard)
    dut._log.info("mac_array: %d tiles, %d sums checked", setup.tiles, scoreboard.checked)


@cocotb.test()
async def reset_mid_tile(dut):
    """Reset while a tile is issued and drained: ``busy`` and ``o.valid`` drop, and the next
    tile is exact and on time."""
    setup = Setup()
    rng, np_rng = random.Random(setup.seed + 1), np.random.default_rng(setup.seed + 1)
    await bring_up(dut)
    scoreboard = Scoreboard("mac_array", dut._log)
    for _ in range(3):
        tile = setup.tile(rng, np_rng)
        task = cocotb.start_soon(run_tile(dut, setup, tile))
        cycles = setup.model.tile_cycles(tile.groups, tile.folds, tile.m_bits, tile.v_bits)
        await ClockCycles(dut.clk, rng.randrange(1, cycles))
        task.cancel()
        dut.start.value = 0
        await reset(dut, 2)
        await ReadOnly()
        assert int(dut.busy.value) == 0, "busy after reset"
        assert not any(int(valid.value) for valid, _ in chain_ports(dut, setup.model)), "o.valid after reset"
        await RisingEdge(dut.clk)
        tile = setup.tile(rng, np_rng)
        outs, reads = await run_tile(dut, setup, tile)
        check_tile(dut, setup, tile, outs, reads, scoreboard)
