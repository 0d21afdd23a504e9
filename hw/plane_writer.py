"""Plane writer: a stream of codes, row by row, into bit-plane words of a :class:`hw.plane_buffer.PlaneBuffer`.

Codes arrive in row-major order (row ``r``, columns ``0 .. cols - 1``).  Row
``r`` is slot ``r mod slots`` of group ``r // slots``; its columns fold into
``folds = ceil(cols / simd)`` blocks of ``simd`` lanes; block ``g * folds +
f`` of slot ``s`` holds, for each plane ``i``, the word::

    word[lane] = bit i of code (row g * slots + s, column f * simd + lane)

at address ``block * 2**plane_bits + i`` of bank ``s``.  Lanes past the
row's last column (a ragged last fold) hold code 0.  Beside the planes, the
writer sums each row's values (``sum_w``): ``sum value(q)`` with ``value(q) =
q``, or ``2q - n`` (``n = 2**bits - 1``) when ``signed``; the signed-odd
corrections of :class:`hw.signed_correction.SignedCorrection` need them.

The codes of a fold gather in a staging register of ``simd`` codes; when the
fold is complete, the register is written out one plane per cycle, ``bits``
cycles (the planes of the codes' width: the array never reads the others),
by rotating every code one bit right per cycle.  A ``flush`` code that ends
a frame in the middle of a fold writes all ``max_bits`` planes, so the
register is whole again afterwards and the fold goes on filling with the
next frame's codes.  Input is held off (``i.ready`` low) while planes are
written.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from sw.contract.codes import MAX_CODE_BITS

from .params import check_int

__all__ = ["PlaneWriter", "plane_write_layout", "sum_write_layout"]


def plane_write_layout(slots: int, simd: int, addr_bits: int) -> data.StructLayout:
    """A plane word for bank ``slot`` at ``addr`` (``block * 2**plane_bits + plane``)."""
    return data.StructLayout({"slot": range(slots), "addr": unsigned(addr_bits), "data": unsigned(simd)})


def sum_write_layout(rows: int, sum_bits: int) -> data.StructLayout:
    """The value sum of ``row`` (``sum_bits`` wide, signed)."""
    return data.StructLayout({"row": range(rows), "sum": signed(sum_bits)})


class PlaneWriter(wiring.Component):
    """Codes in, plane words and row sums out (module docstring).

    Parameters
    ----------
    slots : int
        Most rows per group (banks of the buffers written), ``>= 1``.
    simd : int
        Lanes per plane word, ``>= 1``.
    max_bits : int
        Widest code, ``1 .. 8``; ``plane_bits = ceil_log2(max_bits)``.
    max_rows, max_cols : int
        Largest matrix written (``>= 1``): sizes the counters and the sums.
    max_groups : int or None
        Most groups (``>= 1``; default ``ceil(max_rows / slots)``, more when
        fewer than ``slots`` rows make a group): sizes the block address,
        ``max_groups * ceil(max_cols / simd)`` blocks.

    Ports
    -----
    i : ``In(stream.Signature(StructLayout({"code": max_bits, "flush": 1})))``
        Codes in row-major order; ``flush`` on the last code of a frame that
        may end inside a fold.
    clear : ``In(1)``
        Start over at row 0 (a new matrix or tile), the staging register
        zeroed, a write-out in progress dropped; no transfer on ``i`` then.
    slots_used, cols, bits, signed : ``In``
        Rows per group (``1 .. slots``), columns of the rows being written,
        and the codes' width and reading (for the sums); stable from ``clear``
        on.
    w : ``Out(stream.Signature(plane_write_layout(...), always_ready=True))``
        Plane words, one per cycle while writing.
    sum_w : ``Out(stream.Signature(sum_write_layout(...), always_ready=True))``
        A row's value sum, the cycle after the row's last code.
    folds, groups : ``Out``
        Folds per row and groups started since ``clear`` (valid once a row
        ended).
    busy : ``Out(1)``
        Planes are being written.

    Latency and throughput: a code per cycle, then ``bits`` cycles of plane
    writes at the end of each fold (``max_bits`` after a ``flush`` inside one).
    """

    def __init__(self, *, slots: int, simd: int, max_bits: int, max_rows: int, max_cols: int,
                 max_groups: "int | None" = None):
        self._slots = check_int("slots", slots, 1)
        self._simd = check_int("simd", simd, 1)
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        self._max_rows = check_int("max_rows", max_rows, 1)
        self._max_cols = check_int("max_cols", max_cols, 1)
        self._max_folds = -(-max_cols // simd)
        self._max_groups = check_int("max_groups", -(-max_rows // slots) if max_groups is None else max_groups, 1)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"code": max_bits, "flush": 1}))),
            "clear": In(1),
            "slots_used": In(range(slots + 1)),
            "cols": In(range(max_cols + 1)),
            "bits": In(range(max_bits + 1)),
            "signed": In(1),
            "w": Out(stream.Signature(plane_write_layout(slots, simd, self.addr_bits), always_ready=True)),
            "sum_w": Out(stream.Signature(sum_write_layout(max_rows, self.sum_bits), always_ready=True)),
            "folds": Out(range(self._max_folds + 1)),
            "groups": Out(range(self._max_groups + 1)),
            "busy": Out(1),
        })

    @property
    def plane_bits(self) -> int:
        """Address bits that select a plane within a block."""
        return ceil_log2(self._max_bits)

    @property
    def blocks(self) -> int:
        """Blocks of the largest matrix: ``ceil(max_rows / slots) * ceil(max_cols / simd)``."""
        return self._max_groups * self._max_folds

    @property
    def addr_bits(self) -> int:
        return bits_for(self.blocks - 1) + self.plane_bits

    @property
    def depth(self) -> int:
        """Words per bank the addresses reach."""
        return self.blocks << self.plane_bits

    @property
    def sum_bits(self) -> int:
        """Width of a row's value sum, signed (``|sum| <= max_cols * (2**max_bits - 1)``)."""
        return bits_for(self._max_cols * ((1 << self._max_bits) - 1)) + 1

    def elaborate(self, platform):
        m = Module()
        simd, max_bits = self._simd, self._max_bits
        code = self.i.payload.code

        # (No domain reset: a clear zeroes it before any use, and the reset would sit on
        # the lanes' enables beside the clear.)
        staging = Signal(data.ArrayLayout(max_bits, simd), reset_less=True)
        # The lane the next code goes to, one-hot: no decoder lies between the stream's
        # `valid` and the lanes' enables.
        lane = Signal(simd, init=1)
        col = Signal(range(self._max_cols))
        fold = Signal(range(self._max_folds))
        slot = Signal(range(self._slots))
        row = Signal(range(self._max_rows))
        base = Signal(range(self.blocks + 1))  # group * folds
        # The sums run one cycle behind the codes (a register between the
        # code's value and the adder), so no path runs from the unpacker
        # through the value and the adder into the sum memory.
        # Registered bounds (inputs stable from `clear` on): no subtractor on a compare path.
        cols_last = Signal(range(self._max_cols))
        slots_last = Signal(range(self._slots))
        bits_last = Signal(range(max_bits))  # (bits 0 wraps: never matched, all planes written)
        m.d.sync += [cols_last.eq(self.cols - 1), slots_last.eq(self.slots_used - 1), bits_last.eq(self.bits - 1)]

        total = Signal(signed(self.sum_bits))  # the row's values so far, but the last one taken
        value = Signal(signed(max_bits + 1))  # of the code taken last cycle: |2q - n| <= n
        value_valid = Signal()
        value_ends = Signal()  # it ended its row
        value_row = Signal.like(row)
        m.d.sync += [
            # n = 2**bits - 1 as the thermometer of `bits` (a LUT a bit, where
            # `(1 << bits) - 1` took a shifter and a subtractor).
            value.eq(Mux(self.signed, (code << 1) - Cat(self.bits > j for j in range(max_bits)), code)),
            value_valid.eq(self.i.valid & self.i.ready & ~self.clear),
            value_ends.eq(col == cols_last),
            value_row.eq(row),
        ]
        with m.If(value_valid):
            m.d.sync += total.eq(Mux(value_ends, 0, total + value))
            with m.If(value_ends):
                m.d.comb += [self.sum_w.valid.eq(1), self.sum_w.payload.row.eq(value_row),
                             self.sum_w.payload.sum.eq(total + value)]

        # The fold being written: its bank, block and whether it is complete.
        w_slot = Signal.like(slot)
        w_block = Signal(range(self.blocks))
        w_complete = Signal()
        plane = Signal(range(max_bits))
        # A complete fold ends after the codes' planes (its register is cleared); a flushed
        # one after all of them (its register whole again, to go on filling).  Whether the
        # plane written is the last is registered a cycle ahead: the flag that clears the
        # staging register (every one of its flip-flops) comes straight from a flip-flop.
        last_plane = Signal()

        def is_last(index, complete):  # plane `index` is the last of a `complete` fold or not
            return (index == max_bits - 1) | (complete & (index == bits_last))

        m.d.comb += [
            self.w.payload.slot.eq(w_slot),
            self.w.payload.addr.eq(Cat(plane, w_block) if self.plane_bits else w_block),
            self.w.payload.data.eq(Cat(staging[lane_][0] for lane_ in range(simd))),
            self.w.valid.eq(self.busy),
            self.i.ready.eq(~self.busy),
        ]

        # The staging register, lane by lane: zeroed (a clear, or a complete fold's last
        # plane written), each code rotated one bit right while writing (the next plane at
        # bit 0), or the code taken into its lane.  One enable and one reset a lane (an
        # iCE40 SB_DFFESR's), neither through a decoder.
        zero = self.clear | (self.busy & last_plane & w_complete)
        for lane_ in range(simd):
            with m.If(zero | self.busy | (self.i.valid & lane[lane_])):
                with m.If(zero):
                    m.d.sync += staging[lane_].eq(0)
                with m.Elif(self.busy):
                    m.d.sync += staging[lane_].eq(staging[lane_].rotate_right(1))
                with m.Else():
                    m.d.sync += staging[lane_].eq(code)

        with m.If(self.clear):
            m.d.sync += [lane.eq(1), col.eq(0), fold.eq(0), slot.eq(0), row.eq(0),
                         base.eq(0), total.eq(0), self.groups.eq(0), self.busy.eq(0), plane.eq(0)]
        with m.Elif(self.busy):
            m.d.sync += [plane.eq(plane + 1), last_plane.eq(is_last(plane + 1, w_complete))]
            with m.If(last_plane):
                m.d.sync += [self.busy.eq(0), plane.eq(0)]
        with m.Elif(self.i.valid):
            end_of_row = col == cols_last
            end_of_fold = end_of_row | lane[simd - 1]
            m.d.sync += [
                w_slot.eq(slot), w_block.eq(base + fold), w_complete.eq(end_of_fold),
                self.busy.eq(end_of_fold | self.i.payload.flush), last_plane.eq(is_last(0, end_of_fold)),
            ]
            with m.If((col == 0) & (slot == 0)):
                m.d.sync += self.groups.eq(self.groups + 1)
            with m.If(end_of_row):
                m.d.sync += [lane.eq(1), col.eq(0), fold.eq(0), row.eq(row + 1), self.folds.eq(fold + 1)]
                with m.If(slot == slots_last):
                    m.d.sync += [slot.eq(0), base.eq(base + fold + 1)]
                with m.Else():
                    m.d.sync += slot.eq(slot + 1)
            with m.Else():
                m.d.sync += col.eq(col + 1)
                m.d.sync += lane.eq(lane.rotate_left(1))
                with m.If(lane[simd - 1]):
                    m.d.sync += fold.eq(fold + 1)
        return m
