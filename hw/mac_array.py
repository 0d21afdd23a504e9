"""Folded PE x SIMD MAC array (FINN MVAU style) on bit-plane dot-product PEs.

An ``rows x cols`` matrix ``A`` of codes lives in on-chip memory; each
streamed vector ``v`` of ``cols`` codes gives ``rows`` exact integers::

    out[r] = sum_c value(A[r, c]) * value(v[c])

with ``value(q) = q`` (unsigned) or ``2q - n`` (signed odd), chosen per side.
``cols`` is folded into ``folds = cols / simd`` beats of ``simd`` codes and
``rows`` into ``groups = rows / pe`` row groups of ``pe`` rows, so the array
does ``pe * simd`` code products per fold; the vector is buffered while the
first group runs and replayed for the others.

The three training products of a DoReFa layer map onto it by what the host
loads and streams (:meth:`MacArray.for_product` picks the readings):

* forward: ``A`` = weight codes ``W`` (O x K, signed), ``v`` = activation codes
  (unsigned); ``out = W a``.
* backward-input: ``A`` = ``W`` transposed (K x O, signed), ``v`` = gradient
  codes (signed); ``out = W^T g``.
* backward-weight, per sample ``b``: ``A`` = that sample's gradient codes
  ``G_b`` (O x P over the P output positions, signed), ``v`` = one column of
  its activation patches (P codes, unsigned); ``out`` = one column of
  ``dW_b``.  Partial sums stay per sample because each sample has its own
  gradient scale (:func:`sw.numeric.backward_weight_values` sums after
  scaling).

Convolutions are fed by im2col on the host: it streams each output pixel's
receptive field (``C * kh * kw`` codes, zero padding as code of value 0) as
one vector; this unit has no address generator.
"""

import enum
import operator
from functools import reduce

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS

from .dot_product import DotProduct
from .params import check_bool, check_int

__all__ = ["MacArray", "Product"]


def _wrap_increment(counter, modulus):
    """``counter + 1`` wrapping to 0 after ``modulus - 1`` (no divider)."""
    return Mux(counter == modulus - 1, 0, counter + 1)


class Product(enum.Enum):
    """The three products of a quantized layer (see the module docstring)."""
    FORWARD = "forward"
    BACKWARD_INPUT = "backward_input"
    BACKWARD_WEIGHT = "backward_weight"


class MacArray(wiring.Component):
    """PE x SIMD MAC array with run-time loadable matrix memory.

    Parameters
    ----------
    rows, cols : int
        Matrix shape; ``rows`` a multiple of ``pe``, ``cols`` of ``simd``.
    pe, simd : int
        Rows computed in parallel (processing elements) and codes per PE per
        fold (SIMD lanes).
    m_bits, v_bits : int
        Code bits of the matrix (the ``m`` side of each PE) and of the
        streamed vector (the ``v`` side), ``1..8``.
    m_signed, v_signed : bool
        Read that side's codes as signed odd ``2q - n``.
    mode : ``"parallel"`` or ``"serial"``
        Of each :class:`~hw.dot_product.DotProduct` PE.
    popcount_stages, popcount_arch :
        Of each PE's popcount trees (``popcount_stages <= popcount_max_stages(simd)``).
    counter_width : int
        Width of the performance counters (they wrap).

    Ports
    -----
    load : ``In(stream.Signature(load_layout))``
        Writes one memory word per transfer (``ready`` is always high):
        ``load_layout`` is a
        ``StructLayout`` of ``addr`` (``range(depth)``) and ``tile``
        (``tile_layout = ArrayLayout(ArrayLayout(unsigned(m_bits), simd),
        pe)``), where word ``addr = group * folds + fold`` holds
        ``tile[p][s] = A[group * pe + p, fold * simd + s]``
        (:meth:`load_words` builds them).  A write is seen by reads issued from
        the next cycle on; load between vectors, not under a vector in flight.
        Memory contents survive reset.
    i : ``In(stream.Signature(ArrayLayout(unsigned(v_bits), simd)))``
        The vector, ``folds`` beats in order (``beat[s] = v[fold * simd + s]``).
    o : ``Out(stream.Signature(ArrayLayout(pe_shape, pe)))``
        One beat per row group: ``o[p] = out[group * pe + p]`` (``pe_shape``
        from :class:`~hw.dot_product.DotProduct`), ``groups`` beats per vector.
    cycles : ``Out(counter_width)``
        Clock cycles since reset.
    busy : ``Out(counter_width)``
        Cycles of PE work issued since reset: each fold a PE accepts counts
        its ``cycles_per_beat`` (1 parallel, ``m_bits * v_bits`` serial).
        Utilisation is ``busy / cycles``; 1 in a stall-free steady state.
    macs : ``Out(counter_width)``
        Code products done since reset, ``pe * simd`` per fold.

    Latency and throughput
    ----------------------
    One fold per ``cycles_per_beat`` cycles (1 parallel, ``m_bits *
    v_bits`` serial); a vector takes ``cycles_per_vector = groups * folds *
    cycles_per_beat`` cycles (the input stream waits during groups ``1 ..
    groups - 1``).  A group's output is valid ``latency = cycles_per_beat +
    popcount_stages + 1`` cycles after its last fold is issued (on the first
    group: accepted on ``i``): one cycle of memory read, the PE's remaining
    ``cycles_per_beat - 1`` plane-pair cycles, its popcount stages and its
    accumulator register.  A result waiting on ``o.ready`` stalls the PEs,
    then the issue stage, then ``i``.
    """

    def __init__(self, rows: int, cols: int, *, pe: int = 1, simd: int = 1, m_bits: int,
                 v_bits: int, m_signed: bool, v_signed: bool, mode: str = "parallel",
                 popcount_stages: int = 0, popcount_arch: str = "chain",
                 counter_width: int = 32):
        self._rows = check_int("rows", rows, 1)
        self._cols = check_int("cols", cols, 1)
        self._pe = check_int("pe", pe, 1)
        self._simd = check_int("simd", simd, 1)
        if rows % pe:
            raise ValueError(f"rows ({rows}) must be a multiple of pe ({pe})")
        if cols % simd:
            raise ValueError(f"cols ({cols}) must be a multiple of simd ({simd})")
        self._m_bits = check_int("m_bits", m_bits, 1, MAX_CODE_BITS)
        self._v_bits = check_int("v_bits", v_bits, 1, MAX_CODE_BITS)
        self._m_signed = check_bool("m_signed", m_signed)
        self._v_signed = check_bool("v_signed", v_signed)
        self._mode = mode
        self._counter_width = check_int("counter_width", counter_width, 1)

        self._groups = rows // pe
        self._folds = cols // simd
        # The PEs validate the remaining parameters and answer the shape and
        # timing questions; PE p computes rows p, p + pe, p + 2 pe, ...
        self._pes = [
            DotProduct(simd, m_bits=m_bits, v_bits=v_bits, m_signed=m_signed,
                       v_signed=v_signed, mode=mode, max_beats=self._folds,
                       popcount_stages=popcount_stages, popcount_arch=popcount_arch)
            for _ in range(pe)
        ]
        self._tile_layout = data.ArrayLayout(data.ArrayLayout(unsigned(m_bits), simd), pe)
        self._load_layout = data.StructLayout({"addr": range(self.depth), "tile": self._tile_layout})
        super().__init__({
            "load": In(stream.Signature(self._load_layout)),
            "i": In(stream.Signature(data.ArrayLayout(unsigned(v_bits), simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self._pes[0].out_shape, pe))),
            "cycles": Out(counter_width),
            "busy": Out(counter_width),
            "macs": Out(counter_width),
        })

    @classmethod
    def for_product(cls, product: Product, *, rows: int, cols: int, w_bits: int, a_bits: int,
                    g_bits: int, **kwargs) -> "MacArray":
        """An array reading its operands as ``product`` needs (module docstring):
        forward ``W`` x activations, backward-input ``W^T`` x gradients,
        backward-weight ``G_b`` x activations.  ``rows``/``cols`` are those of
        the loaded matrix; other keywords go to the constructor."""
        product = Product(product)
        match product:
            case Product.FORWARD:
                sides = dict(m_bits=w_bits, m_signed=True, v_bits=a_bits, v_signed=False)
            case Product.BACKWARD_INPUT:
                sides = dict(m_bits=w_bits, m_signed=True, v_bits=g_bits, v_signed=True)
            case Product.BACKWARD_WEIGHT:
                sides = dict(m_bits=g_bits, m_signed=True, v_bits=a_bits, v_signed=False)
        return cls(rows, cols, **sides, **kwargs)

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    pe = property(lambda self: self._pe)
    simd = property(lambda self: self._simd)
    m_bits = property(lambda self: self._m_bits)
    v_bits = property(lambda self: self._v_bits)
    m_signed = property(lambda self: self._m_signed)
    v_signed = property(lambda self: self._v_signed)
    mode = property(lambda self: self._mode)
    groups = property(lambda self: self._groups, doc="Row groups of ``pe`` rows, ``rows / pe``.")
    folds = property(lambda self: self._folds, doc="Beats of ``simd`` codes per vector, ``cols / simd``.")
    tile_layout = property(lambda self: self._tile_layout)
    load_layout = property(lambda self: self._load_layout)
    pe_shape = property(lambda self: self._pes[0].out_shape)
    cycles_per_beat = property(lambda self: self._pes[0].cycles_per_beat)

    @property
    def depth(self) -> int:
        """Words of matrix memory, ``groups * folds``."""
        return self._groups * self._folds

    @property
    def latency(self) -> int:
        """Cycles from issuing a row group's last fold to its ``o.valid``, unstalled."""
        return self.cycles_per_beat + self._pes[0].latency

    @property
    def cycles_per_vector(self) -> int:
        """Cycles per vector when nothing stalls."""
        return self.depth * self.cycles_per_beat

    # ------------------------------------------------------------------ host side

    def load_words(self, matrix) -> "list[dict]":
        """``load`` payloads for a ``rows x cols`` matrix of unsigned codes."""
        rows = [list(map(int, row)) for row in matrix]
        if len(rows) != self._rows or any(len(row) != self._cols for row in rows):
            raise ValueError(f"matrix must be {self._rows} x {self._cols}")
        return [{"addr": g * self._folds + f,
                 "tile": [rows[g * self._pe + r][f * self._simd:(f + 1) * self._simd]
                          for r in range(self._pe)]}
                for g in range(self._groups) for f in range(self._folds)]

    def input_beats(self, vector) -> "list[list[int]]":
        """``i`` payloads for one vector of ``cols`` unsigned codes."""
        vector = list(map(int, vector))
        if len(vector) != self._cols:
            raise ValueError(f"vector must have {self._cols} codes, got {len(vector)}")
        return [vector[f * self._simd:(f + 1) * self._simd] for f in range(self._folds)]

    # ------------------------------------------------------------------ gateware

    def elaborate(self, platform):
        m = Module()
        folds, groups = self._folds, self._groups

        m.submodules.matrix = matrix = Memory(shape=self._tile_layout, depth=self.depth, init=[])
        load = matrix.write_port()
        weights = matrix.read_port()
        m.d.comb += [
            load.addr.eq(self.load.payload.addr),
            load.data.eq(self.load.payload.tile),
            load.en.eq(self.load.valid),
            # (Not `always_ready=True`: Verilog conversion rejects its Const port.)
            self.load.ready.eq(1),
        ]

        pes = self._pes
        for index, pe in enumerate(pes):
            m.submodules[f"pe{index}"] = pe
        # The PEs differ only in data, never in control: fed the same `valid`
        # they run in lock step, so their `ready`s (and output `valid`s)
        # coincide and the ANDs below are the plain stream joins.
        pe_ready = Signal()
        m.d.comb += pe_ready.eq(reduce(operator.and_, (pe.i.ready for pe in pes)))

        # Stage 0 issues fold `fold` of row group `group` (memory word `addr`);
        # stage 1 holds it (memory and buffer read data) until the PEs take it.
        fold = Signal(range(folds))
        group = Signal(range(groups))
        addr = Signal(range(self.depth))
        s1_valid = Signal()
        s1_last = Signal()
        advance = ~s1_valid | pe_ready
        from_stream = group == 0
        issue = Signal()
        m.d.comb += [
            issue.eq(advance & (self.i.valid | ~from_stream)),
            self.i.ready.eq(advance & from_stream),
            weights.addr.eq(addr),
            weights.en.eq(issue),
        ]
        with m.If(advance):
            m.d.sync += [s1_valid.eq(issue), s1_last.eq(fold == folds - 1)]
        with m.If(issue):
            m.d.sync += [
                fold.eq(_wrap_increment(fold, folds)),
                addr.eq(_wrap_increment(addr, self.depth)),
            ]
            with m.If(fold == folds - 1):
                m.d.sync += group.eq(_wrap_increment(group, groups))

        beat_layout = data.ArrayLayout(unsigned(self._v_bits), self._simd)
        if groups > 1:
            # The first group stores the vector as it streams in (and reads it
            # straight through, transparently); later groups replay it.
            m.submodules.vector = buffer = Memory(shape=beat_layout, depth=folds, init=[])
            store = buffer.write_port()
            replay = buffer.read_port(transparent_for=(store,))
            m.d.comb += [
                store.addr.eq(fold),
                store.data.eq(self.i.payload),
                store.en.eq(self.i.valid & self.i.ready),
                replay.addr.eq(fold),
                replay.en.eq(issue),
            ]
            vector = replay.data
        else:
            vector = Signal(beat_layout)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += vector.eq(self.i.payload)

        for index, pe in enumerate(pes):
            m.d.comb += [
                pe.i.valid.eq(s1_valid),
                pe.i.payload.m.eq(weights.data[index]),
                pe.i.payload.v.eq(vector),
                pe.i.payload.last.eq(s1_last),
            ]

        # Output join: one beat when every PE has its result.
        o_valid = Signal()
        m.d.comb += [
            o_valid.eq(reduce(operator.and_, (pe.o.valid for pe in pes))),
            self.o.valid.eq(o_valid),
        ]
        for index, pe in enumerate(pes):
            m.d.comb += [
                self.o.payload[index].eq(pe.o.payload),
                pe.o.ready.eq(self.o.ready & o_valid),
            ]

        # Performance counters.
        m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(s1_valid & pe_ready):
            m.d.sync += [
                self.busy.eq(self.busy + self.cycles_per_beat),
                self.macs.eq(self.macs + self._pe * self._simd),
            ]
        return m
