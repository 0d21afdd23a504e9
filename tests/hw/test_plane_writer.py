"""hw.plane_writer.PlaneWriter (codes to bit-plane words and row sums) in the Amaranth simulator.

The testbench streams codes row-major (random idle cycles, ``flush`` where a
frame ends), keeps every word written in a model of the banks (the last write
of an address wins, as in block RAM) and every row sum, and checks them
against ``sw.bitplanes.bit_planes`` of the codes and numpy's row sums: the
words of row ``g * slots + s`` in bank ``s`` at ``(g * folds + f) <<
plane_bits | i``, lanes past the last column zero, every plane up to
``max_bits`` written.
"""

import random

import numpy as np
import pytest

from hw.plane_writer import PlaneWriter
from sim.amaranth_sim import simulate
from sw.bitplanes import bit_planes
from sw.contract.codes import levels
from tests.hw.helpers import unelaborated


def max_bits_of(dut: PlaneWriter) -> int:
    return len(dut.i.payload.code)  # the code port is max_bits wide


def expected_words(dut: PlaneWriter, codes: np.ndarray, slots: int, simd: int) -> dict:
    """``{(bank, addr): word}`` of a matrix, from ``bit_planes`` (lanes past the last column 0)."""
    rows, cols = codes.shape
    max_bits = max_bits_of(dut)
    folds = -(-cols // simd)
    padded = np.zeros((rows, folds * simd), dtype=np.int64)
    padded[:, :cols] = codes
    planes = bit_planes(padded, max_bits)  # (plane, row, lane)
    words = {}
    for row in range(rows):
        g, s = divmod(row, slots)
        for f in range(folds):
            for i in range(max_bits):
                lanes = planes[i, row, f * simd:(f + 1) * simd]
                words[s, ((g * folds + f) << dut.plane_bits) | i] = int(sum(int(b) << n for n, b in enumerate(lanes)))
    return words


class Recorder:
    """What the writer puts out, cycle by cycle: the banks' contents, the writes in order, the sums."""

    def __init__(self):
        self.banks, self.writes, self.sums, self.cycles = {}, [], [], 0

    def sample(self, ctx, dut):
        if ctx.get(dut.w.valid):
            w = ctx.get(dut.w.payload)
            self.banks[w.slot, w.addr] = w.data
            self.writes.append((self.cycles, w.slot, w.addr, w.data))
        if ctx.get(dut.sum_w.valid):
            s = ctx.get(dut.sum_w.payload)
            self.sums.append((s.row, s.sum))
        self.cycles += 1


async def write_matrix(ctx, dut, rec: Recorder, codes, *, slots, bits=None, signed=False, flushes=(), rng=None,
                       gap=0.0, count=None):
    """``clear`` (with ``slots_used``, ``cols``, ``bits`` (default ``max_bits``) and ``signed``), stream
    ``codes`` row-major (the first ``count``; ``flush`` on the flat indices in ``flushes``), then wait for
    the last planes."""
    ctx.set(dut.slots_used, slots)
    ctx.set(dut.cols, codes.shape[1])
    ctx.set(dut.bits, max_bits_of(dut) if bits is None else bits)
    ctx.set(dut.signed, signed)
    ctx.set(dut.clear, 1)
    rec.sample(ctx, dut)
    await ctx.tick()
    ctx.set(dut.clear, 0)
    for index, code in enumerate(codes.reshape(-1)[:count]):
        while rng is not None and rng.random() < gap:
            ctx.set(dut.i.valid, 0)
            rec.sample(ctx, dut)
            await ctx.tick()
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"code": int(code), "flush": int(index in flushes)})
        while True:
            ready = ctx.get(dut.i.ready)
            rec.sample(ctx, dut)
            await ctx.tick()
            if ready:
                break
    ctx.set(dut.i.valid, 0)
    while ctx.get(dut.busy):
        rec.sample(ctx, dut)
        await ctx.tick()


def value_sums(codes: np.ndarray, bits: int, signed: bool) -> list[int]:
    """Each row's sum of values: the codes, or the signed odd ``2q - n``."""
    values = 2 * codes - levels(bits) if signed else codes
    return [int(total) for total in values.sum(axis=1)]


def check_matrix(dut, rec, codes, slots, simd, *, bits=None, signed=False):
    """Every word of the codes' ``bits`` planes where the layout says; a plane above them
    (never read) is not written, or written 0 (by a flush inside its fold); nothing written
    elsewhere; the row sums."""
    bits = max_bits_of(dut) if bits is None else bits
    want = expected_words(dut, codes, slots, simd)
    plane = lambda key: key[1] & ((1 << dut.plane_bits) - 1)  # noqa: E731
    assert {key: rec.banks.get(key) for key in want if plane(key) < bits} == \
        {key: word for key, word in want.items() if plane(key) < bits}
    assert all(rec.banks.get(key, 0) == 0 for key in want if plane(key) >= bits)
    assert set(rec.banks) <= set(want)  # nothing written elsewhere
    assert rec.sums == list(enumerate(value_sums(codes, bits, signed)))


# (slots, slots used, simd, max_bits, rows, cols, code bits, signed sums)
SHAPES = [
    (1, 1, 1, 1, 3, 2, 1, True),
    (2, 2, 4, 3, 5, 7, 3, False),    # ragged rows and last fold
    (4, 3, 3, 8, 7, 9, 8, True),     # fewer rows per group than banks; cols a multiple of simd
    (4, 3, 3, 8, 7, 9, 8, False),
    (3, 3, 8, 5, 4, 5, 2, True),     # cols < simd; codes narrower than max_bits (upper planes 0)
    (2, 1, 5, 2, 3, 11, 2, False),   # one row per group
]


@pytest.mark.parametrize("slots, used, simd, max_bits, rows, cols, bits, signed", SHAPES)
def test_layout_and_row_sums(slots, used, simd, max_bits, rows, cols, bits, signed):
    """Every plane word where the layout says, zero padding lanes, the row sums of the values
    (codes, or signed odd ``2q - n`` of ``bits``-bit codes), ``folds`` and ``groups``; input held
    off exactly while the ``bits`` planes of a fold are written."""
    dut = PlaneWriter(slots=slots, simd=simd, max_bits=max_bits, max_rows=rows, max_cols=cols,
                      max_groups=-(-rows // used))
    rng = np.random.default_rng(rows * cols + slots)
    codes = rng.integers(0, 1 << bits, size=(rows, cols))
    codes[0] = (1 << bits) - 1  # the largest row sum
    codes[-1] = 0  # the most negative signed one
    rec, shape = Recorder(), {}

    async def testbench(ctx):
        await write_matrix(ctx, dut, rec, codes, slots=used, bits=bits, signed=signed)
        shape.update(folds=ctx.get(dut.folds), groups=ctx.get(dut.groups))

    simulate(dut, testbench)
    check_matrix(dut, rec, codes, used, simd, bits=bits, signed=signed)
    folds = -(-cols // simd)
    assert shape == {"folds": folds, "groups": -(-rows // used)}
    # Unstalled: a code per cycle, then the codes' `bits` planes per fold, in order (the
    # planes above them, never read, are not written).
    assert rec.cycles == 1 + rows * cols + rows * folds * bits
    planes = [addr & ((1 << dut.plane_bits) - 1) for _, _, addr, _ in rec.writes]
    assert planes == list(range(bits)) * (rows * folds)


@pytest.mark.parametrize("seed", range(4))
def test_flush_mid_fold_then_continue(seed):
    """Frames that end anywhere (inside a fold, at a fold's or a row's end) and random idle
    cycles: the flushed part of a fold is written at once (lanes not yet filled zero), and the
    fold is completed by the next frame's codes; the banks end as without frames."""
    dut = PlaneWriter(slots=2, simd=4, max_bits=3, max_rows=5, max_cols=10)
    rng = random.Random(seed)
    codes = np.random.default_rng(seed).integers(0, 8, size=(5, 10))
    flushes = set(rng.sample(range(50), 8)) | {49}
    rec = Recorder()

    async def testbench(ctx):
        await write_matrix(ctx, dut, rec, codes, slots=2, bits=3, signed=seed % 2, flushes=flushes, rng=rng, gap=0.3)

    simulate(dut, testbench, deadline=None)
    check_matrix(dut, rec, codes, 2, 4, bits=3, signed=seed % 2)
    # Each block is written once per flush inside it (its codes so far, the lanes not yet filled
    # zero) and once when it is complete, in that order.
    flat, folds = codes.reshape(-1), 3
    chunks = {}  # (bank, block) -> words written, plane by plane
    for _, slot, addr, data in rec.writes:
        chunks.setdefault((slot, addr >> 2), []).append(data)
    want = {}
    for index in range(50):
        row, col = divmod(index, 10)
        f, lane = divmod(col, 4)
        if not (index in flushes or col == 9 or lane == 3):
            continue  # no write after this code
        so_far = np.zeros((1, 4), dtype=np.int64)
        so_far[0, :lane + 1] = flat[index - lane:index + 1]
        g, s = divmod(row, 2)
        planes = bit_planes(so_far, 3)[:, 0, :]
        want.setdefault((s, g * folds + f), []).extend(int(sum(int(b) << n for n, b in enumerate(p))) for p in planes)
    assert chunks == want
    assert len(rec.writes) > 3 * 5 * folds  # some flushes fell inside folds


def test_clear_starts_over():
    """``clear`` after a frame that ended inside a fold drops its codes (staging zeroed), restarts
    at row 0 and block 0 with a new shape, and zeroes ``groups``."""
    dut = PlaneWriter(slots=3, simd=4, max_bits=2, max_rows=6, max_cols=7)
    first = np.full((2, 7), 3)
    second = np.array([[1, 2], [2, 1], [0, 3], [3, 0]])
    recs, counts = [Recorder(), Recorder()], []

    async def testbench(ctx):
        # Row 0 and three codes of row 1, flushed: staging holds 3, 3, 3 in lanes 0..2.
        await write_matrix(ctx, dut, recs[0], first, slots=3, flushes={9}, count=10)
        counts.append(ctx.get(dut.groups))
        await write_matrix(ctx, dut, recs[1], second, slots=2)
        counts.append(ctx.get(dut.groups))

    simulate(dut, testbench)
    assert recs[0].sums == [(0, 21)]
    check_matrix(dut, recs[1], second, 2, 4)
    assert counts == [1, 2]


def test_sizes():
    with unelaborated():
        dut = PlaneWriter(slots=3, simd=4, max_bits=5, max_rows=7, max_cols=10)
        # 3 groups x 3 folds = 9 blocks of 8 addresses (5 planes round up to 2**3)
        assert (dut.plane_bits, dut.blocks, dut.depth, dut.addr_bits) == (3, 9, 72, 7)
        assert dut.sum_bits == 10  # |sum| <= 10 * 31 = 310 < 2**9, signed
        assert len(dut.w.payload.data) == 4 and len(dut.i.payload.code) == 5
        more = PlaneWriter(slots=3, simd=4, max_bits=1, max_rows=7, max_cols=10, max_groups=7)
        assert (more.plane_bits, more.blocks, more.depth) == (0, 21, 21)


@pytest.mark.parametrize("kwargs, message", [
    (dict(slots=0), "slots must be >= 1, got 0"),
    (dict(simd=0), "simd must be >= 1, got 0"),
    (dict(max_bits=9), r"max_bits must be in 1\.\.8, got 9"),
    (dict(max_rows=0), "max_rows must be >= 1, got 0"),
    (dict(max_cols=0), "max_cols must be >= 1, got 0"),
    (dict(max_groups=0), "max_groups must be >= 1, got 0"),
])
def test_validation(kwargs, message):
    args = dict(slots=2, simd=4, max_bits=3, max_rows=4, max_cols=8) | kwargs
    with unelaborated(), pytest.raises(ValueError, match=message):
        PlaneWriter(**args)
