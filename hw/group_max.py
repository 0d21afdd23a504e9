"""Group max: each row's max code over groups of consecutive vectors, a max-pool on the fly.

The core's activation stage emits a tile's codes vector after vector, row after
row (``rows`` codes a vector).  A window pooled ``p x p``
(:mod:`sw.contract.window`) makes a pooling window's ``p**2`` positions
consecutive vectors, so max-pooling them is, per row, the max over each group
of ``2**group_log = p**2`` consecutive vectors: one held code per row, no
line buffer, whatever the map's width.  For code ``r`` of vector ``v``::

    j = v mod 2**group_log
    m = code if j == 0 else max(held[r], code)
    j == 2**group_log - 1:  o <- m   (with the input's ``last``)
    else:                   held[r] <- m

so the output is the group's max codes, row after row, one vector of them
per group: :func:`sw.intref.maxpool_codes` of the positions' codes (tested),
as quantization is monotone (paper Eqn 15).  ``group_log`` 0 passes every
code through.

Ports
-----
i : ``In(stream.Signature(StructLayout({"code": act_bits, "last": 1})))``
    The codes, vector after vector, row after row; ``last`` is carried to the
    code that ends the input's last group.
o : ``Out(stream.Signature(StructLayout({"code": act_bits, "last": 1})))``
    The groups' max codes.  ``o.payload`` is combinational (the held code's
    read data and the taken code through one comparator and a multiplexer);
    ``o.valid`` holds until taken.
rows : ``In(range(max_rows + 1))``, group_log : ``In(range(max_group_log + 1))``
    Codes a vector, and the group's size as a power of two; stable from
    ``start`` to the last code.
start : ``In(1)``
    Start at vector 0, row 0 (a pulse, while no code is in flight).

Latency and throughput: a code is taken in one cycle and its max made in the
next, where it is written back or offered on ``o``: one code every two
cycles (the core's :class:`hw.serial_threshold.SerialThresholdUnit` gives one
every ``2**A - 1``: only 1-bit codes wait on it).

Resources: ``max_rows`` held codes of ``act_bits`` (a memory; a few LUTs or
one block RAM), two counters, one comparator.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["GroupMax", "code_layout"]


def code_layout(act_bits: int) -> data.StructLayout:
    """A code of the activation stage and whether it ends the reply."""
    return data.StructLayout({"code": act_bits, "last": 1})


class GroupMax(wiring.Component):
    """Per row, the max code of each group of ``2**group_log`` consecutive vectors (module docstring).

    Parameters
    ----------
    act_bits : int
        Bits of a code, ``>= 1``.
    max_rows : int
        Most codes a vector, ``>= 1``.
    max_group_log : int
        Largest ``group_log``, ``>= 0`` (a pool ``p`` has ``group_log = 2 * log2(p)``).
    """

    def __init__(self, *, act_bits: int, max_rows: int, max_group_log: int):
        self._act_bits = check_int("act_bits", act_bits, 1)
        self._max_rows = check_int("max_rows", max_rows, 1)
        self._max_group_log = check_int("max_group_log", max_group_log, 0, 16)
        super().__init__({
            "i": In(stream.Signature(code_layout(act_bits))),
            "o": Out(stream.Signature(code_layout(act_bits))),
            "rows": In(range(max_rows + 1)),
            "group_log": In(range(max_group_log + 1)),
            "start": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.held = held = Memory(shape=self._act_bits, depth=self._max_rows, init=[])
        rd = held.read_port()
        wr = held.write_port()

        row = Signal(range(self._max_rows))
        vector = Signal(self._max_group_log)  # v mod 2**max_group_log; j is its low group_log bits
        code = Signal(self._act_bits)
        last = Signal()
        busy = Signal()  # a taken code's max is being made (rd.data is held[row])
        rows_last = Signal.like(row)  # rows - 1, registered (rows is stable from `start` on)
        m.d.sync += rows_last.eq(self.rows - 1)

        j_mask = Signal.like(vector)
        m.d.comb += j_mask.eq((1 << self.group_log) - 1)
        # j == 0 and j == j_mask (j = vector & j_mask) as registers, set with the vector count:
        # nothing but a flip-flop before the compare of the codes and the packer after it.
        first = Signal()
        ends = Signal()

        def at_vector(v):
            return [vector.eq(v), first.eq((v & j_mask) == 0), ends.eq((v & j_mask) == j_mask)]
        best = Signal(self._act_bits)
        m.d.comb += [
            rd.addr.eq(row),
            best.eq(Mux(first | (code > rd.data), code, rd.data)),
            wr.addr.eq(row),
            wr.data.eq(best),
            self.o.payload.code.eq(best),
            self.o.payload.last.eq(last),
        ]

        done = Signal()  # the code's max is written back or taken
        with m.If(busy):
            with m.If(ends):
                m.d.comb += [self.o.valid.eq(1), done.eq(self.o.ready)]
            with m.Else():
                m.d.comb += [wr.en.eq(1), done.eq(1)]
        with m.Else():
            m.d.comb += self.i.ready.eq(1)

        with m.If(self.start):
            m.d.sync += [row.eq(0), busy.eq(0), *at_vector(0)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [code.eq(self.i.payload.code), last.eq(self.i.payload.last), busy.eq(1)]
        with m.Elif(done):
            m.d.sync += busy.eq(0)
            with m.If(row == rows_last):
                m.d.sync += [row.eq(0), *at_vector(vector + 1)]
            with m.Else():
                m.d.sync += row.eq(row + 1)
        return m
