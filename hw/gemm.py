# amaranth: UnusedElaboratable=no
"""GEMM engine: a matrix and a tile of vectors of codes in, their exact products out.

The compute half of :class:`hw.core.TrainingCore`, assembled from units::

    codes -> PlaneWriter --(matrix)--> PlaneBuffer (pe banks)      --\\
                         --(vectors)-> PlaneBuffer (vectors banks) ---> MacArray =(drains)=> SignedCorrection -> results
                                       row sums / vector sums -------------------------------^

Load a matrix (``rows x cols`` codes, row-major, possibly over several
frames: ``flush`` on each frame's last code), then for each tile load up to
``vectors`` vectors of ``cols`` codes (``to_vectors`` high, ``clear`` before
each tile) and pulse ``start``; ``done`` rises when every value of the tile
is in the result memory, where ``value[slot][row] = sum_c value(A[row, c]) *
value(v_slot[c])`` with each side read unsigned or signed odd (see
:class:`hw.signed_correction.SignedCorrection`).  Bits and readings are
run-time inputs (``m_bits``/``m_signed`` of the matrix, ``v_bits``/``v_signed``
of the vectors).

The array drains a group's sums through ``drains`` chains
(:class:`hw.mac_array.MacArray`); each chain has its own
:class:`hw.signed_correction.SignedCorrection`, its own copy of the row sums
(its rows differ from the others' every cycle) and its own bank of results.
The vector sums are read once for all chains (the chains carry the same slot
every cycle).  Chain ``c`` takes the rows ``row = g * pe + c * pe/drains +
q`` (``q < pe/drains``); its bank holds them at ``Cat(g * pe/drains + q,
slot)``.  ``result_addr`` is split the same way (bit slices when ``pe`` is a
power of two, constant division otherwise) and the bank is chosen after the
read.

Latency and throughput: ``done`` comes :meth:`GemmEngine.tile_cycles` ``=
MacArray.tile_cycles(ceil(rows / pe), ceil(cols / simd), m_bits, v_bits) +
SignedCorrection.latency + 1`` cycles after ``start`` (the correction's
``3 + fetch_stages``); ``result``
:attr:`GemmEngine.result_latency` ``= 1 + result_stages`` cycles after
``result_addr`` (``result_stages``: a register after each bank's read, where a
block RAM's clock-to-out is slow, such as the ECP5's 5.8 ns; the banks are
selected after it).

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
result_addr : ``In``, result_en : ``In(1, init=1)``, result : ``Out(signed(32))``
    The value at ``result_addr = Cat(row, slot)`` (``row_bits`` + slot bits),
    ``result_latency`` cycles with ``result_en`` high after the one that
    showed the address; ``result_en`` low holds the whole read pipeline (a
    stream of values, one read a cycle, stalls without losing a value).
    Read a tile's values between its ``done`` and the next ``start``: the
    result memory is block RAM without read-during-write logic
    (:data:`hw.block_ram.NO_RW_CHECK`), so a read in the cycle its value is
    written is undefined on the FPGA.
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .block_ram import NO_RW_CHECK, registered_read
from .mac_array import MacArray
from .plane_buffer import MEMORIES, PlaneBuffer
from .plane_writer import PlaneWriter
from .params import check_choice, check_int
from .signed_correction import SignedCorrection
from .spram import SPRAM_COUNT, SPRAM_MASK_BITS, SPRAM_WIDTH, spram_cells, spram_lane

__all__ = ["GemmEngine"]


class GemmEngine(wiring.Component):
    """Plane buffers, MAC array and signed correction (module docstring).

    Parameters
    ----------
    pe, vectors, simd : int
        Of the :class:`hw.mac_array.MacArray`.
    max_bits, max_rows, max_cols : int
        Largest codes and matrix.
    popcount_stages, popcount_arch, fetch_stages, drains :
        Of the array (:class:`hw.mac_array.MacArray`); ``drains`` chains, a
        divisor of ``pe``, each with its own correction and results bank;
        ``fetch_stages`` registers after the row sums' reads too.
    result_stages : int
        Registers after the result banks' reads, ``0`` or ``1``: one more
        cycle of :attr:`result_latency`.
    matrix_memory : str
        Where the matrix planes live: ``"block"`` (a block RAM bank per PE
        row) or ``"spram"`` (one single-port RAM, :class:`hw.spram.SinglePortRAM`:
        the iCE40 UltraPlus's ``SB_SPRAM256KA`` cells, freeing its EBRs).  Its
        one port is the writer's while it writes the matrix and the array's
        otherwise (writes first): the engine writes the matrix only while
        loading it (``to_vectors`` low), never while a tile computes (a load
        then would corrupt the tile with either memory), so no read is lost.  An SPRAM reads at most 4 x 16 bits a cycle: ``pe * simd <= 64``
        (``simd`` rounded up to a multiple of 4), e.g. ``pe`` 2 x ``simd`` 32
        with ``vectors`` 4 for 256 ops per cycle.
    """

    def __init__(self, *, pe: int, vectors: int = 1, simd: int, max_bits: int, max_rows: int, max_cols: int,
                 popcount_stages: int = 0, popcount_arch: str = "chain", fetch_stages: int = 0, drains: int = 1,
                 matrix_memory: str = "block", result_stages: int = 0):
        self._result_stages = check_int("result_stages", result_stages, 0, 1)
        self._max_rows = check_int("max_rows", max_rows, 1)
        self._max_cols = check_int("max_cols", max_cols, 1)
        self._matrix_memory = check_choice("matrix_memory", matrix_memory, MEMORIES)
        self.array = MacArray(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows,
                              max_cols=max_cols, popcount_stages=popcount_stages, popcount_arch=popcount_arch,
                              fetch_stages=fetch_stages, drains=drains)
        self.writer = PlaneWriter(slots=max(pe, vectors), simd=simd, max_bits=max_bits,
                                  max_rows=max(max_rows, vectors), max_cols=max_cols,
                                  max_groups=-(-max_rows // pe))
        self.corrections = [SignedCorrection(max_bits=max_bits, max_cols=max(max_cols, simd),
                                             rows=-(-max_rows // pe) * pe, slots=vectors,
                                             fetch_stages=fetch_stages) for _ in range(drains)]
        self._row_bits = bits_for(max_rows - 1)
        self._slot_bits = ceil_log2(vectors)
        # A bank's row index, g * per + q: the largest comes from the last row, or from the
        # last chain-full row of the group before it.
        per = pe // drains
        group, p = divmod(max_rows - 1, pe)
        self._bank_rows = max_rows if drains == 1 else group * per + min(p, per - 1) + 1
        self._bank_row_bits = bits_for(self._bank_rows - 1)
        cells = spram_cells(pe * spram_lane(simd), self.writer.depth)
        if matrix_memory == "spram" and cells > SPRAM_COUNT:
            raise ValueError(
                f"matrix_memory 'spram' must fit {SPRAM_COUNT} SPRAM cells: pe * simd <= "
                f"{SPRAM_COUNT * SPRAM_WIDTH} bits read per cycle (simd rounded up to {SPRAM_MASK_BITS}), got pe = "
                f"{pe} x {spram_lane(simd)} bits x {self.writer.depth} words: {cells} cells")
        # The row sums in block RAM, as the banks: on ECP5 Yosys would otherwise put each
        # drain's copy (max_rows words) in LUT RAM, 160 DPR16X4 cells for the ULX3S preset.
        self.matrix = PlaneBuffer(slots=pe, simd=simd, depth=self.writer.depth, rows=max_rows,
                                  sum_bits=self.writer.sum_bits - 1, sum_reads=drains, memory=matrix_memory,
                                  block_sums=True)
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
            "result_en": In(1, init=1),
            "result": Out(signed(32)),
        })

    pe = property(lambda self: self.array.pe)
    vectors = property(lambda self: self.array.vectors)
    simd = property(lambda self: self.array.simd)
    drains = property(lambda self: self.array.drains)
    ops_per_cycle = property(lambda self: self.array.ops_per_cycle)
    matrix_memory = property(lambda self: self._matrix_memory)
    result_stages = property(lambda self: self._result_stages)

    @property
    def result_latency(self) -> int:
        """Cycles (with ``result_en`` high) from a ``result_addr`` to its value on ``result``:
        the bank's read and ``result_stages`` registers."""
        return 1 + self._result_stages

    def result_address(self, slot: int, row: int) -> int:
        """``result_addr`` of a value."""
        return (slot << self._row_bits) | row

    def _split(self, row):
        """``(chain, index in the chain's bank)`` of a row (a value): ``g * pe + c * per + q``
        gives ``(c, g * per + q)``, ``per = pe / drains``."""
        pe, drains = self.pe, self.drains
        per = pe // drains
        if drains == 1:
            return Const(0), row
        if pe & (pe - 1) == 0:  # powers of two: slices
            return row[per.bit_length() - 1:pe.bit_length() - 1], Cat(row[:per.bit_length() - 1],
                                                                      row[pe.bit_length() - 1:])
        group, p = row // pe, row % pe
        return p // per, group * per + p % per

    def tile_cycles(self, rows: int, cols: int, m_bits: int, v_bits: int) -> int:
        """Cycles from the one with ``start`` high to the one with ``done`` high, for a
        ``rows x cols`` matrix: :meth:`hw.mac_array.MacArray.tile_cycles` of its ``ceil(rows /
        pe)`` groups and ``ceil(cols / simd)`` folds, plus the correction's latency and the
        cycle that raises ``done``."""
        groups, folds = -(-rows // self.pe), -(-cols // self.simd)
        return self.array.tile_cycles(groups, folds, m_bits, v_bits) + self.corrections[0].latency + 1

    @property
    def memories(self) -> dict:
        """Each memory as ``(count, depth, width)``: the ``matrix`` plane banks (one per
        PE row; with ``matrix_memory="spram"`` one single-port RAM of ``pe`` lanes of
        ``simd`` rounded up to 4 bits), the ``vector`` plane banks (one per vector of a tile), the
        ``row_sums`` (one code sum per row, a copy per drain chain) and ``vector_sums``
        (one per vector) and the ``results`` of a tile (int32, a bank per drain chain
        holding its rows)."""
        writer = self.writer
        vector_depth = -(-self._max_cols // self.simd) << writer.plane_bits
        return {
            "matrix": ((self.pe, writer.depth, self.simd) if self._matrix_memory == "block" else
                       (1, writer.depth, self.pe * self.matrix.lane_bits)),
            "vector": (self.vectors, vector_depth, self.simd),
            "row_sums": (self.drains, self._max_rows, writer.sum_bits - 1),  # code sums: no sign
            "vector_sums": (1, self.vectors, writer.sum_bits),
            "results": (self.drains, self.vectors << self._bank_row_bits, 32),
        }

    @property
    def memory_bits(self) -> dict:
        """Bits of each of :attr:`memories`."""
        return {name: count * depth * width for name, (count, depth, width) in self.memories.items()}

    def elaborate(self, platform):
        m = Module()
        pe, vectors, simd = self.pe, self.vectors, self.simd
        writer, array, corrections = self.writer, self.array, self.corrections
        m.submodules.writer = writer
        m.submodules.array = array
        for c, correction in enumerate(corrections):
            m.submodules[f"correction{c}" if c else "correction"] = correction
        memories = self.memories
        m.submodules.matrix = matrix = self.matrix
        m.submodules.vector = vector = PlaneBuffer(slots=vectors, simd=simd, depth=memories["vector"][1],
                                                   rows=vectors, sum_bits=memories["vector_sums"][2])

        # ------------------------------------------------------------ writing
        wiring.connect(m, wiring.flipped(self.codes), writer.i)
        m.d.comb += [
            writer.clear.eq(self.clear),
            writer.cols.eq(self.cols),
            writer.slots_used.eq(Mux(self.to_vectors, vectors, pe)),
            # Rows: code sums (R); vectors: value sums (S), in the vectors' reading.
            writer.bits.eq(Mux(self.to_vectors, self.v_bits, self.m_bits)),  # the planes it writes
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
        for c, correction in enumerate(corrections):
            wiring.connect(m, array.o[c], correction.i)
            m.d.comb += [
                matrix.sum_addr[c].eq(correction.m_sum_addr),
                correction.m_sum.eq(matrix.sum_data[c]),
                # The chains carry the same slot every cycle: one read of the vector sums serves all.
                correction.v_sum.eq(vector.sum_data[0].as_signed()),
                correction.m_bits.eq(self.m_bits),
                correction.v_bits.eq(self.v_bits),
                correction.m_signed.eq(self.m_signed),
                correction.v_signed.eq(self.v_signed),
            ]
        m.d.comb += vector.sum_addr[0].eq(corrections[0].v_sum_addr)

        # ------------------------------------------------------------ results
        def bank_addr(row, slot):
            index = self._split(row)[1][:self._bank_row_bits]
            return Cat(index, slot[:self._slot_bits]) if self._slot_bits else index

        row, slot = self.result_addr[:self._row_bits], self.result_addr[self._row_bits:]
        read_addr = Signal(len(bank_addr(row, slot)))
        m.d.comb += read_addr.eq(bank_addr(row, slot))
        # The bank read, registered as its data is, one-hot, then through `result_stages`
        # registers beside each bank's: the banks' data meet in an AND-OR after them (two LUT
        # levels for eight banks, where a binary index's multiplexer took four).  `result_en`
        # low holds every stage.
        def stage(value, shape, name, init=0):
            held = Signal(shape, name=name, init=init)
            with m.If(self.result_en):
                m.d.sync += held.eq(value)
            return held

        chain = stage(1 << self._split(row)[0], self.drains, "chain", init=1)
        reads = []
        for c, correction in enumerate(corrections):
            # A tile's values are written while it computes and read once it is done, and
            # the next tile starts after the last read (the caller's lock step): no read
            # meets a write.
            results = m.submodules[f"results{c}" if c else "results"] = Memory(
                shape=signed(32), depth=memories["results"][1], init=[], attrs=NO_RW_CHECK)
            write = results.write_port()
            out = correction.o.payload
            m.d.comb += [
                write.addr.eq(bank_addr(out.row, out.slot)),
                write.data.eq(out.value),
                write.en.eq(correction.o.valid & (out.row < self.rows)),
            ]
            value = registered_read(m, results, read_addr, self.result_en)
            for i in range(self._result_stages):
                value = stage(value, signed(32), f"result{c}_stage{i}")
            reads.append(value)
        for i in range(self._result_stages):
            chain = stage(chain, self.drains, f"chain_stage{i}", init=1)
        m.d.comb += self.result.eq(reduce(operator.or_, (Mux(chain[c], read, 0) for c, read in enumerate(reads)))
                                   if self.drains > 1 else reads[0])
        # Every chain ends its tile in the same cycle.
        m.d.sync += self.done.eq(corrections[0].o.valid & corrections[0].o.payload.final)
        return m
