"""hw.mac_array.MacArray (pe x vectors bit-serial units, precision at run time) in the Amaranth simulator.

The testbench plays both plane buffers: it answers every read the array
issues, one cycle later, from words it laid out itself in
:class:`hw.plane_writer.PlaneWriter`'s address layout (``block *
2**plane_bits + plane``), and holds the data when ``en`` is low.  Every word
the array should never read (planes above the run's width, lanes past the
last column on the vector side, rows past the matrix, slots past the vectors
loaded) holds random garbage, so a stray read shows in the sums.  Expected
sums are ``sw.bitplanes.plane_matmul``; the order and cycle of every output
on each drain chain come from the array's shape alone (chain ``c`` of
``drains`` takes PE rows ``c * pe/drains ..`` of every vector, rows fastest,
a group's ``pe * vectors / drains`` sums on consecutive cycles), and
:meth:`MacArray.tile_cycles` must equal the last output's cycle.
"""

import random

import numpy as np
import pytest

from hw.mac_array import MacArray
from hw.popcount import popcount_max_stages
from sim.amaranth_sim import simulate
from sw.bitplanes import plane_matmul
from tests.hw.helpers import unelaborated


# --------------------------------------------------------------------------- the plane buffers

def plane_word(codes, bit: int) -> int:
    """Lane ``j`` of the word is bit ``bit`` of ``codes[j]``."""
    return sum(((int(code) >> bit) & 1) << lane for lane, code in enumerate(codes))


class Buffer:
    """A plane buffer's banks as the testbench sees them: ``bank[s][addr]``, garbage where unwritten."""

    def __init__(self, banks: int, rng: random.Random, simd: int):
        self.words = [dict() for _ in range(banks)]
        self.rng, self.simd = rng, simd

    def write(self, bank: int, addr: int, word: int) -> None:
        self.words[bank][addr] = word

    def read(self, addr: int) -> list[int]:
        # Garbage is drawn once per address, as a memory's stale content would be.
        return [bank.setdefault(addr, self.rng.getrandbits(self.simd)) for bank in self.words]


def layout(dut: MacArray, matrix, m_bits, vectors, v_bits, rng):
    """The two buffers of a tile: matrix row ``g * pe + p`` in bank ``p`` at block ``g * folds + f``,
    vector ``j`` in bank ``j`` at block ``f``; zero padding lanes on the matrix side only."""
    rows, cols = matrix.shape
    simd, pe = dut.simd, dut.pe
    folds, groups = -(-cols // simd), -(-rows // pe)
    plane_bits = (dut.max_bits - 1).bit_length()
    m_buf, v_buf = Buffer(pe, rng, simd), Buffer(dut.vectors, rng, simd)
    for row in range(rows):
        g, p = divmod(row, pe)
        for f in range(folds):
            for i in range(m_bits):
                m_buf.write(p, ((g * folds + f) << plane_bits) | i, plane_word(matrix[row, f * simd:(f + 1) * simd], i))
    for j, vector in enumerate(vectors):
        for f in range(folds):
            lanes = vector[f * simd:(f + 1) * simd]
            pad = rng.getrandbits(simd) & ~((1 << len(lanes)) - 1)  # past the last column: anything
            for k in range(v_bits):
                v_buf.write(j, (f << plane_bits) | k, plane_word(lanes, k) | pad)
    return m_buf, v_buf, groups, folds


def random_codes(rng: np.random.Generator, bits: int, shape) -> np.ndarray:
    codes = rng.integers(0, 1 << bits, size=shape)
    pinned = rng.random(shape[0]) < 0.2  # rows of extreme codes: the sums' top bits
    codes[pinned] = rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
    return codes


# --------------------------------------------------------------------------- simulation

def run_tiles(dut: MacArray, tiles, *, seed=0):
    """Run ``tiles`` (``(matrix, m_bits, vectors, v_bits)``) back to back on one array: ``start``
    the cycle after the previous tile's ``final``.  Per tile: each drain chain's outputs ``(cycle,
    row, slot, sum, final)``, cycles counted from ``start`` (cycle 0), and the ``(m_addr, v_addr)``
    of every read."""
    rng = random.Random(seed)
    results = []

    async def testbench(ctx):
        for matrix, m_bits, vectors, v_bits in tiles:
            m_buf, v_buf, groups, folds = layout(dut, matrix, m_bits, vectors, v_bits, rng)
            for name, value in (("groups", groups), ("folds", folds), ("m_bits", m_bits), ("v_bits", v_bits)):
                ctx.set(getattr(dut, name), value)
            await ctx.tick()  # the run-time inputs settle a cycle before `start`
            ctx.set(dut.start, 1)
            outs, reads, cycle = [[] for _ in range(dut.drains)], [], 0
            while not any(chain and chain[-1][4] for chain in outs):
                assert cycle < 100_000, "no final sum"
                for chain, port in zip(outs, dut.o):
                    if ctx.get(port.valid):
                        o = ctx.get(port.payload)
                        chain.append((cycle, o.row, o.slot, o.sum, o.final))
                m_en, m_addr, v_en, v_addr = (ctx.get(s) for s in (dut.m_en, dut.m_addr, dut.v_en, dut.v_addr))
                assert m_en == v_en
                await ctx.tick()
                ctx.set(dut.start, 0)
                if m_en:  # the buffers' registered reads
                    ctx.set(dut.m_data, m_buf.read(m_addr))
                    ctx.set(dut.v_data, v_buf.read(v_addr))
                    reads.append((m_addr, v_addr))
                cycle += 1
            assert not ctx.get(dut.busy)
            results.append((outs, reads))

    simulate(dut, testbench, deadline=None)
    return results


def check_tile(dut: MacArray, tile, outs, reads):
    """Sums, order, ``final`` and the cycle of every output of one tile on every chain, and its reads."""
    matrix, m_bits, vectors, v_bits = tile
    rows, cols = matrix.shape
    groups, folds = -(-rows // dut.pe), -(-cols // dut.simd)
    want = plane_matmul(vectors, v_bits, matrix, m_bits)  # (slot, row)
    pairs = folds * m_bits * v_bits
    per = dut.pe // dut.drains  # PE rows per chain
    drain = per * dut.vectors
    period = max(pairs, drain)
    assert period == dut.period(folds, m_bits, v_bits) and drain == dut.drain
    assert len(outs) == dut.drains
    got = {}
    for c, chain in enumerate(outs):
        # One output per (row, slot) of the chain's rows in every group, rows fastest, the group's
        # outputs on consecutive cycles starting `latency` after its last pair was issued.
        order = [(g * dut.pe + c * per + q, j) for g in range(groups) for j in range(dut.vectors)
                 for q in range(per)]
        assert [(row, slot) for _, row, slot, _, _ in chain] == order, c
        cycles = [g * period + pairs + dut.latency + n for g in range(groups) for n in range(drain)]
        assert [cycle for cycle, *_ in chain] == cycles, c
        assert [final for *_, final in chain] == [0] * (len(order) - 1) + [1], c
        assert chain[-1][0] == dut.tile_cycles(groups, folds, m_bits, v_bits)
        got |= {(row, slot): value for _, row, slot, value, _ in chain}
    for slot in range(len(vectors)):
        for row in range(rows):
            assert got[row, slot] == want[slot, row], (row, slot)
    # Every plane pair of every fold once per group, nothing else.
    assert len(reads) == groups * pairs and len(set(reads)) == groups * pairs


def check_random(dut, shapes, *, seed):
    """Tiles of ``(rows, cols, m_bits, v_bits, count)`` random codes (``count <= vectors``)."""
    rng = np.random.default_rng(seed)
    tiles = [(random_codes(rng, m_bits, (rows, cols)), m_bits, random_codes(rng, v_bits, (count, cols)), v_bits)
             for rows, cols, m_bits, v_bits, count in shapes]
    for tile, (outs, reads) in zip(tiles, run_tiles(dut, tiles, seed=seed)):
        check_tile(dut, tile, outs, reads)


# --------------------------------------------------------------------------- tests

def drain_choices(pe: int) -> list[int]:
    """The drain counts a shape is tested at: 1, 2 and ``pe``, those that divide ``pe``."""
    return sorted({d for d in (1, 2, pe) if pe % d == 0})


@pytest.mark.parametrize("drains", [1, 2])
def test_every_run_time_precision(drains):
    """One array, tiles back to back at every ``m_bits x v_bits`` in 1..3 and 8 x 8: ragged rows
    (5 on pe 2), columns (7 on simd 3) and vectors (the last tiles one of two)."""
    dut = MacArray(pe=2, vectors=2, simd=3, max_bits=8, max_rows=5, max_cols=7, drains=drains)
    shapes = [(5, 7, m_bits, v_bits, 2 if m_bits < 3 else 1) for m_bits in (1, 2, 3) for v_bits in (1, 2, 3)]
    check_random(dut, shapes + [(5, 7, 8, 8, 2), (4, 6, 8, 8, 1)], seed=1)


# (pe, vectors, simd, max_bits, max_rows, max_cols, tiles of (rows, cols, m_bits, v_bits, count))
SHAPES = [
    (1, 1, 1, 2, 1, 1, [(1, 1, 2, 2, 1), (1, 1, 1, 1, 1)]),            # one lane, one unit
    (3, 1, 4, 4, 7, 9, [(7, 9, 4, 3, 1), (2, 5, 2, 4, 1)]),            # ragged everything; a smaller matrix
    (2, 3, 5, 3, 3, 11, [(3, 11, 3, 2, 2), (3, 10, 1, 3, 3)]),         # rows < pe * groups, slot unused
    (4, 2, 2, 2, 8, 4, [(8, 4, 2, 2, 2), (8, 4, 1, 2, 2)]),            # exact multiples
    (3, 2, 8, 5, 5, 3, [(5, 3, 5, 5, 2), (5, 3, 5, 1, 1)]),            # cols < simd: one ragged fold
    (2, 2, 3, 1, 5, 7, [(5, 7, 1, 1, 2), (3, 2, 1, 1, 1)]),            # binary only: no plane address bits
]


@pytest.mark.parametrize("pe, vectors, simd, max_bits, max_rows, max_cols, shapes, drains",
                         [(*shape, drains) for shape in SHAPES for drains in drain_choices(shape[0])])
def test_ragged_shapes(pe, vectors, simd, max_bits, max_rows, max_cols, shapes, drains):
    dut = MacArray(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows, max_cols=max_cols,
                   drains=drains)
    check_random(dut, shapes, seed=pe * 100 + vectors * 10 + simd)


@pytest.mark.parametrize("drains, drain", [(1, 9), (3, 3)])
@pytest.mark.parametrize("folds, m_bits, v_bits", [(1, 1, 1), (1, 2, 2), (2, 2, 2), (1, 3, 3), (3, 2, 2),
                                                    (2, 3, 3)])
def test_drain_hiding_period(folds, m_bits, v_bits, drains, drain):
    """A group shorter than the drain (``pe * vectors / drains`` = 9 or 3 here: 1, 4 and 8 pairs)
    waits for the chains, one as long or longer does not: ``period = max(pairs, drain)``, no sum
    lost or doubled."""
    dut = MacArray(pe=3, vectors=3, simd=2, max_bits=3, max_rows=7, max_cols=6, drains=drains)
    assert dut.period(folds, m_bits, v_bits) == max(folds * m_bits * v_bits, drain)
    cols = folds * 2 - 1  # a ragged last fold
    check_random(dut, [(7, cols, m_bits, v_bits, 3), (7, cols, v_bits, m_bits, 2)], seed=folds * m_bits * v_bits)


@pytest.mark.parametrize("stages, fetch, drains", [(1, 0, 1), ("max", 0, 1), (1, 2, 2), ("max", 1, 4)])
def test_pipelined_units(stages, fetch, drains):
    """Popcount and fetch stages lengthen ``latency`` (and ``tile_cycles``) by as many cycles,
    whatever the drain."""
    stages = popcount_max_stages(6) if stages == "max" else stages
    dut = MacArray(pe=4, vectors=2, simd=6, max_bits=4, max_rows=7, max_cols=10, popcount_stages=stages,
                   fetch_stages=fetch, drains=drains)
    assert dut.latency == 1 + fetch + (stages + 2) + 1
    check_random(dut, [(7, 10, 4, 2, 2), (3, 7, 1, 3, 2), (5, 4, 1, 1, 2)], seed=stages)


def test_properties():
    with unelaborated():
        dut = MacArray(pe=3, vectors=2, simd=5, max_bits=4, max_rows=7, max_cols=11)
        assert (dut.pe, dut.vectors, dut.simd, dut.max_bits) == (3, 2, 5, 4)
        assert dut.ops_per_cycle == 30 and dut.drain == 6 and dut.latency == 4
        assert dut.period(3, 1, 1) == 6 and dut.period(3, 2, 2) == 12
        # 3 groups, 3 folds at 2 x 2: two full periods, the last group's pairs, latency, the drain
        assert dut.tile_cycles(3, 3, 2, 2) == 2 * 12 + 12 + 4 + 6 - 1
        assert dut.drains == 1 and len(dut.o) == 1
        assert len(dut.o[0].payload.sum) == 12  # 11 columns * 15**2 = 2475 < 2**12 (padding lanes add nothing)
        assert dut.m_data.shape().length == 3 and dut.v_data.shape().length == 2
        del dut


def test_properties_with_drains():
    with unelaborated():
        dut = MacArray(pe=6, vectors=2, simd=5, max_bits=4, max_rows=13, max_cols=11, drains=3)
        assert dut.drains == 3 and len(dut.o) == 3
        assert dut.ops_per_cycle == 60 and dut.drain == 4 and dut.latency == 4  # 2 rows x 2 vectors a chain
        assert dut.period(1, 1, 1) == 4 and dut.period(3, 1, 2) == 6
        # 3 groups, 3 folds at 1 x 2: two periods of 6, the last group's 6 pairs, latency 4, drain 4
        assert dut.tile_cycles(3, 3, 1, 2) == 2 * 6 + 6 + 4 + 4 - 1
        # ... and at 1 x 1 the drain sets the period: 3 pairs, but 4 cycles a group
        assert dut.tile_cycles(3, 3, 1, 1) == 2 * 4 + 3 + 4 + 4 - 1
        assert all(len(o.payload.row) == 5 for o in dut.o)  # rows 0 .. 17 of 3 groups of 6
        del dut


@pytest.mark.parametrize("kwargs, message", [
    (dict(pe=0), "pe must be >= 1, got 0"),
    (dict(vectors=0), "vectors must be >= 1, got 0"),
    (dict(simd=0), "simd must be >= 1, got 0"),
    (dict(simd=2.5), "simd must be an integer"),
    (dict(max_bits=0), r"max_bits must be in 1\.\.8, got 0"),
    (dict(max_bits=9), r"max_bits must be in 1\.\.8, got 9"),
    (dict(max_rows=0), "max_rows must be >= 1, got 0"),
    (dict(max_cols=0), "max_cols must be >= 1, got 0"),
    (dict(popcount_arch="wallace"), "popcount_arch must be one of 'chain', 'dadda', 'packed'"),
    (dict(popcount_stages=popcount_max_stages(4) + 1), rf"popcount_stages must be in 0\.\.{popcount_max_stages(4)}"),
    (dict(drains=0), "drains must be >= 1 .*got 0"),
    (dict(drains=3), r"drains must be one of 1, 2 \(a divisor of pe = 2: whole rows per chain\), got 3"),
    (dict(pe=6, drains=4), r"drains must be one of 1, 2, 3, 6 \(a divisor of pe = 6.*\), got 4"),
    (dict(drains=True), "drains must be an integer"),
    (dict(drains=2.0), "drains must be an integer"),
])
def test_validation(kwargs, message):
    args = dict(pe=2, simd=4, max_rows=4, max_cols=8) | kwargs
    with unelaborated(), pytest.raises(ValueError, match=message):
        MacArray(**args)
