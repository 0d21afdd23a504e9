# amaranth: UnusedElaboratable=no
"""GEMM engine: a matrix and a tile of vectors of codes in, their exact products out.

The compute half of :class:`hw.core.TrainingCore`, assembled from units::

    codes -> PlaneWriter --(matrix)--> PlaneBuffer (pe banks)      --\\
                         --(vectors)-> PlaneBuffer (vectors banks) ---> MacArray -> SignedCorrection -> results
                                       row sums / vector sums -------------------------^

Load a matrix (``rows x cols`` codes, row-major, possibly over several
frames: ``flush`` on each frame's last code), then for each tile load up to
``vectors`` vectors of ``cols`` codes (``to_vectors`` high, ``clear`` before
each tile) and pulse ``start``; ``done`` rises when every value of the tile
is in the result memory, where ``value[slot][row] = sum_c value(A[row, c]) *
value(v_slot[c])`` with each side read unsigned or signed odd (see
:class:`hw.signed_correction.SignedCorrection`).  Bits and readings are
run-time inputs (``m_bits``/``m_signed`` of the matrix, ``v_bits``/``v_signed``
of the vectors).

Ports
-----
codes : ``In(stream.Signature(StructLayout({"code", "flush"})))``
    Codes of the matrix or, with ``to_vectors``, of the tile's vectors.
clear : ``In(1)``
    Start writing at row (vector) 0.
to_vectors, cols, rows, m_bits, m_signed, v_bits, v_signed : ``In``
    Where codes go, the matrix shape, the readings.
writing : ``Out(1)``
    Codes are being turned into planes (wait for it before ``start``).
start : ``In(1)``, done : ``Out(1)``
    Compute a tile: ``done`` is high :meth:`GemmEngine.tile_cycles` cycles
    after the cycle ``start`` was.
result_addr : ``In``, result : ``Out(signed(32))``
    The value at ``result_addr = Cat(row, slot)`` (``row_bits`` + slot bits),
    one cycle after the address.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .mac_array import MacArray
from .plane_buffer import PlaneBuffer
from .plane_writer import PlaneWriter
from .params import check_int
from .signed_correction import SignedCorrection

__all__ = ["GemmEngine"]


class GemmEngine(wiring.Component):
    """Plane buffers, MAC array and signed correction (module docstring).

    Parameters
    ----------
    pe, vectors, simd : int
        Of the :class:`hw.mac_array.MacArray`.
    max_bits, max_rows, max_cols : int
        Largest codes and matrix.
    popcount_stages, popcount_arch, fetch_stages :
        Of the array (:class:`hw.mac_array.MacArray`).
    """

    def __init__(self, *, pe: int, vectors: int = 1, simd: int, max_bits: int, max_rows: int, max_cols: int,
                 popcount_stages: int = 0, popcount_arch: str = "chain", fetch_stages: int = 0):
        self._max_rows = check_int("max_rows", max_rows, 1)
        self._max_cols = check_int("max_cols", max_cols, 1)
        self.array = MacArray(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows,
                              max_cols=max_cols, popcount_stages=popcount_stages, popcount_arch=popcount_arch,
                              fetch_stages=fetch_stages)
        self.writer = PlaneWriter(slots=max(pe, vectors), simd=simd, max_bits=max_bits,
                                  max_rows=max(max_rows, vectors), max_cols=max_cols,
                                  max_groups=-(-max_rows // pe))
        self.correction = SignedCorrection(max_bits=max_bits, max_cols=max(max_cols, simd),
                                           rows=-(-max_rows // pe) * pe, slots=vectors)
        self._row_bits = bits_for(max_rows - 1)
        self._slot_bits = ceil_log2(vectors)
        super().__init__({
            "codes": In(stream.Signature(data.StructLayout({"code": max_bits, "flush": 1}))),
            "clear": In(1),
            "to_vectors": In(1),
            "cols": In(range(max_cols + 1)),
            "rows": In(range(max_rows + 1)),
            "m_bits": In(range(max_bits + 1)),
            "m_signed": In(1),
            "v_bits": In(range(max_bits + 1)),
            "v_signed": In(1),
            "writing": Out(1),
            "start": In(1),
            "done": Out(1),
            "result_addr": In(self._row_bits + self._slot_bits),
            "result": Out(signed(32)),
        })

    pe = property(lambda self: self.array.pe)
    vectors = property(lambda self: self.array.vectors)
    simd = property(lambda self: self.array.simd)
    ops_per_cycle = property(lambda self: self.array.ops_per_cycle)

    def result_address(self, slot: int, row: int) -> int:
        """``result_addr`` of a value."""
        return (slot << self._row_bits) | row

    def tile_cycles(self, rows: int, cols: int, m_bits: int, v_bits: int) -> int:
        """Cycles from the one with ``start`` high to the one with ``done`` high, for a
        ``rows x cols`` matrix."""
        groups, folds = -(-rows // self.pe), -(-cols // self.simd)
        return self.array.tile_cycles(groups, folds, m_bits, v_bits) + SignedCorrection.latency + 1

    @property
    def memories(self) -> dict:
        """Each memory as ``(count, depth, width)``: the ``matrix`` plane banks (one per
        PE row), the ``vector`` plane banks (one per vector of a tile), the
        ``row_sums`` and ``vector_sums`` (one code sum per row, per vector) and the
        ``results`` of a tile (int32)."""
        writer = self.writer
        vector_depth = -(-self._max_cols // self.simd) << writer.plane_bits
        return {
            "matrix": (self.pe, writer.depth, self.simd),
            "vector": (self.vectors, vector_depth, self.simd),
            "row_sums": (1, self._max_rows, writer.sum_bits - 1),  # code sums: no sign
            "vector_sums": (1, self.vectors, writer.sum_bits),
            "results": (1, self.vectors << self._row_bits, 32),
        }

    @property
    def memory_bits(self) -> dict:
        """Bits of each of :attr:`memories`."""
        return {name: count * depth * width for name, (count, depth, width) in self.memories.items()}

    def elaborate(self, platform):
        m = Module()
        pe, vectors, simd = self.pe, self.vectors, self.simd
        writer, array, correction = self.writer, self.array, self.correction
        m.submodules.writer = writer
        m.submodules.array = array
        m.submodules.correction = correction
        memories = self.memories
        m.submodules.matrix = matrix = PlaneBuffer(slots=pe, simd=simd, depth=memories["matrix"][1],
                                                   rows=self._max_rows, sum_bits=memories["row_sums"][2])
        m.submodules.vector = vector = PlaneBuffer(slots=vectors, simd=simd, depth=memories["vector"][1],
                                                   rows=vectors, sum_bits=memories["vector_sums"][2])

        # ------------------------------------------------------------ writing
        wiring.connect(m, wiring.flipped(self.codes), writer.i)
        m.d.comb += [
            writer.clear.eq(self.clear),
            writer.cols.eq(self.cols),
            writer.slots_used.eq(Mux(self.to_vectors, vectors, pe)),
            # Rows: code sums (R); vectors: value sums (S), in the vectors' reading.
            writer.bits.eq(self.v_bits),
            writer.signed.eq(self.to_vectors & self.v_signed),
            self.writing.eq(writer.busy),
        ]
        for buffer, selected in ((matrix, ~self.to_vectors), (vector, self.to_vectors)):
            m.d.comb += [
                buffer.w.payload.slot.eq(writer.w.payload.slot),
                buffer.w.payload.addr.eq(writer.w.payload.addr),
                buffer.w.payload.data.eq(writer.w.payload.data),
                buffer.w.valid.eq(writer.w.valid & selected),
                buffer.sum_w.payload.row.eq(writer.sum_w.payload.row),
                buffer.sum_w.payload.sum.eq(writer.sum_w.payload.sum),
                buffer.sum_w.valid.eq(writer.sum_w.valid & selected),
            ]
        # The matrix's shape in groups and folds, as its writer counted them
        # (the cycle after each of the matrix's rows ended).
        groups = Signal.like(array.groups)
        folds = Signal.like(array.folds)
        row_ended = Signal()
        m.d.sync += row_ended.eq(writer.sum_w.valid & ~self.to_vectors)
        with m.If(row_ended):
            m.d.sync += [groups.eq(writer.groups), folds.eq(writer.folds)]

        # ------------------------------------------------------------ compute
        m.d.comb += [
            array.start.eq(self.start),
            array.groups.eq(groups),
            array.folds.eq(folds),
            array.m_bits.eq(self.m_bits),
            array.v_bits.eq(self.v_bits),
            matrix.read_addr.eq(array.m_addr),
            matrix.read_en.eq(array.m_en),
            array.m_data.eq(matrix.read_data),
            vector.read_addr.eq(array.v_addr),
            vector.read_en.eq(array.v_en),
            array.v_data.eq(vector.read_data),
        ]
        wiring.connect(m, array.o, correction.i)
        m.d.comb += [
            matrix.sum_addr.eq(correction.m_sum_addr),
            correction.m_sum.eq(matrix.sum_data),
            vector.sum_addr.eq(correction.v_sum_addr),
            correction.v_sum.eq(vector.sum_data.as_signed()),
            correction.m_bits.eq(self.m_bits),
            correction.v_bits.eq(self.v_bits),
            correction.m_signed.eq(self.m_signed),
            correction.v_signed.eq(self.v_signed),
        ]

        # ------------------------------------------------------------ results
        m.submodules.results = results = Memory(shape=signed(32), depth=memories["results"][1], init=[])
        write = results.write_port()
        read = results.read_port()
        out = correction.o.payload
        m.d.comb += [
            write.addr.eq(Cat(out.row[:self._row_bits], out.slot[:self._slot_bits]) if self._slot_bits
                          else out.row[:self._row_bits]),
            write.data.eq(out.value),
            write.en.eq(correction.o.valid & (out.row < self.rows)),
            read.addr.eq(self.result_addr),
        ]
        m.d.comb += self.result.eq(read.data)
        m.d.sync += self.done.eq(correction.o.valid & out.final)
        return m
