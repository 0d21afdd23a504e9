"""Bit-plane dot-product processing element: exact integer dot products of low-bit codes.

The two operands are named for their roles in a matrix-vector product (as in
:class:`hw.mac_array.MacArray` and :class:`hw.core.TrainingCore`): ``m`` is
the matrix side (a row of the stored matrix: weights in forward), ``v`` the
streamed vector side.  The arithmetic is symmetric in them.  Each operand is a
vector of unsigned codes ``q`` with ``bits`` bit planes, read either as itself
(unsigned, value ``q``) or as the signed odd code ``2q - n``, ``n = 2**bits -
1`` (DoReFa weights and gradients).  For unsigned codes the dot product is the
paper's Eqn 3::

    core = sum(m * v) = sum_i sum_k 2**(i + k) * popcount(m_i AND v_k)

where ``m_i`` is bit plane ``i`` of all lanes.  Signed odd codes reduce to it
plus row sums, exactly as :func:`sw.bitplanes.signed_matmul` does; a row sum is
itself a popcount per plane, ``sum(m) = sum_i 2**i * popcount(m_i)``::

    m unsigned, v unsigned:  core
    m signed,   v unsigned:  2 core - n_m sum(v)
    m unsigned, v signed:    2 core - n_v sum(m)
    m signed,   v signed:    4 core - 2 n_v sum(m) - 2 n_m sum(v) + n_m n_v length

With one bit per side and both sides signed (+-1, binary nets) the PE uses the
XNOR form instead: ``dot = length - 2 popcount(m XOR v)``, one popcount and no
row sums (the tests check it against the general formula).
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS

from .params import check_bool, check_choice, check_int
from .popcount import ARCHS, popcount_max_stages, popcount_tree

__all__ = ["DotProduct", "MODES"]

#: ``"parallel"``: every plane pair at once; ``"serial"``: one plane pair per cycle.
MODES = ("parallel", "serial")



def _sum(values):
    """Balanced adder tree: ``log2`` levels instead of a ripple of widening adds."""
    values = list(values)
    while len(values) > 1:
        values = [reduce(operator.add, values[i:i + 2]) for i in range(0, len(values), 2)]
    return values[0]


class DotProduct(wiring.Component):
    """Bit-plane dot-product PE (Eqn 3 plus the signed-odd-code corrections).

    Parameters
    ----------
    length : int
        Lanes per input beat (codes of each operand in one beat), ``>= 1``.
    m_bits, v_bits : int
        Bit planes of the matrix-side operand ``m`` and of the vector-side
        operand ``v``, ``1..8``.
    m_signed, v_signed : bool
        Read the operand's code ``q`` as the signed odd integer ``2q - n``
        instead of ``q``.
    mode : ``"parallel"`` or ``"serial"``
        Parallel: all ``m_bits * v_bits`` plane pairs in one cycle (one
        popcount tree per anti-diagonal ``i + k``, plus one per plane for the
        row sums a signed reading needs), one beat per cycle.  Serial: one
        plane pair per cycle (one AND + popcount of ``length`` bits, plus at
        most one row-sum popcount per side), so a beat takes ``m_bits *
        v_bits`` cycles.  With a single plane pair the two are the same.
    max_beats : int
        Most beats folded into one dot product (sizes the accumulator).  More
        beats than this wrap modulo ``2**len(o.payload)``.
    popcount_stages : int
        Pipeline registers inside each popcount tree (see
        :func:`hw.popcount.popcount_tree`), ``0 ..
        popcount_max_stages(length)`` (the narrowest tree counts ``length``
        bits); adds that many cycles of latency.
    popcount_arch : str
        Popcount tree architecture, one of :data:`hw.popcount.ARCHS`.
    xnor : bool or None
        Use the XNOR form (only for ``m_bits == v_bits == 1``, both signed).
        ``None`` (default) picks it whenever it applies; ``False`` forces the
        general AND + row-sum datapath, which must give the same numbers.

    Ports
    -----
    i : ``In(stream.Signature(beat_layout))``
        ``beat_layout`` is a :class:`~amaranth.lib.data.StructLayout`:
        ``m``: ``ArrayLayout(unsigned(m_bits), length)``, ``v``:
        ``ArrayLayout(unsigned(v_bits), length)`` (unsigned codes ``q``,
        whatever the reading) and ``last``: 1 bit, high on the final beat of a
        dot product.  A dot product is the sum over its beats, so vectors
        longer than ``length`` fold into several beats.  In serial mode the
        beat is read over several cycles while it waits on the bus (the
        stream rules keep the payload stable until ``ready``), so the PE
        holds no copy of it.
    o : ``Out(stream.Signature(out_shape))``
        The exact dot product, one transfer per ``last`` beat.  ``out_shape``
        is the smallest shape holding every dot product of ``max_beats *
        length`` lanes: unsigned if both sides are unsigned, else signed.

    Latency and throughput
    ----------------------
    ``o.valid`` rises ``popcount_stages + 1`` cycles after the ``last`` beat is
    accepted.  Parallel: one beat per cycle.  Serial: one beat per
    ``m_bits * v_bits`` cycles.  While a result waits on ``o.ready`` the whole
    pipeline holds (one clock enable, ``~o.valid | o.ready``), so no result is
    ever dropped and the input back-pressures.
    """

    def __init__(self, length: int, *, m_bits: int, v_bits: int, m_signed: bool = False,
                 v_signed: bool = False, mode: str = "parallel", max_beats: int = 1,
                 popcount_stages: int = 0, popcount_arch: str = "chain",
                 xnor: "bool | None" = None):
        self._length = check_int("length", length, 1)
        self._m_bits = check_int("m_bits", m_bits, 1, MAX_CODE_BITS)
        self._v_bits = check_int("v_bits", v_bits, 1, MAX_CODE_BITS)
        self._m_signed = check_bool("m_signed", m_signed)
        self._v_signed = check_bool("v_signed", v_signed)
        self._mode = check_choice("mode", mode, MODES)
        self._max_beats = check_int("max_beats", max_beats, 1)
        self._popcount_arch = check_choice("popcount_arch", popcount_arch, ARCHS)
        # Every tree counts at least `length` bits, so that bounds the stages.
        self._popcount_stages = check_int("popcount_stages", popcount_stages, 0,
                                          popcount_max_stages(length, arch=popcount_arch))
        xnor_applies = m_bits == v_bits == 1 and m_signed and v_signed
        if xnor is None:
            xnor = xnor_applies
        elif check_bool("xnor", xnor) and not xnor_applies:
            raise ValueError("xnor=True needs m_bits == v_bits == 1 with both sides signed "
                             f"(+-1 codes), got m_bits={m_bits} (signed={m_signed}), "
                             f"v_bits={v_bits} (signed={v_signed})")
        self._xnor = xnor

        lo, hi = self.value_range
        self._out_shape = Shape.cast(range(lo, hi + 1))
        self._beat_layout = data.StructLayout({
            "m": data.ArrayLayout(unsigned(m_bits), length),
            "v": data.ArrayLayout(unsigned(v_bits), length),
            "last": unsigned(1),
        })
        super().__init__({
            "i": In(stream.Signature(self._beat_layout)),
            "o": Out(stream.Signature(self._out_shape)),
        })

    # ------------------------------------------------------------------ parameters

    length = property(lambda self: self._length)
    m_bits = property(lambda self: self._m_bits)
    v_bits = property(lambda self: self._v_bits)
    m_signed = property(lambda self: self._m_signed)
    v_signed = property(lambda self: self._v_signed)
    mode = property(lambda self: self._mode)
    max_beats = property(lambda self: self._max_beats)
    popcount_stages = property(lambda self: self._popcount_stages)
    popcount_arch = property(lambda self: self._popcount_arch)
    xnor = property(lambda self: self._xnor)
    beat_layout = property(lambda self: self._beat_layout)
    out_shape = property(lambda self: self._out_shape)

    @property
    def value_range(self) -> "tuple[int, int]":
        """Smallest and largest dot product of ``max_beats`` beats."""
        def side(bits, signed):
            n = (1 << bits) - 1
            return (-n, n) if signed else (0, n)
        corners = [a * b for a in side(self._m_bits, self._m_signed)
                   for b in side(self._v_bits, self._v_signed)]
        count = self._max_beats * self._length
        return count * min(corners), count * max(corners)

    @property
    def cycles_per_beat(self) -> int:
        """Cycles between accepted beats when nothing stalls."""
        return self._m_bits * self._v_bits if self._mode == "serial" else 1

    @property
    def latency(self) -> int:
        """Cycles from accepting a ``last`` beat to ``o.valid``."""
        return self._popcount_stages + 1

    def _coefficients(self):
        """``(k_core, k_m, k_v, k_len)`` of ``k_core core - k_m sum(m) - k_v sum(v) + k_len length``
        (the expansion in :func:`sw.bitplanes.signed_matmul`)."""
        n_m, n_v = (1 << self._m_bits) - 1, (1 << self._v_bits) - 1
        match self._m_signed, self._v_signed:
            case False, False: return 1, 0, 0, 0
            case True, False: return 2, 0, n_m, 0
            case False, True: return 2, n_v, 0, 0
            case True, True: return 4, 2 * n_v, 2 * n_m, n_m * n_v

    # ------------------------------------------------------------------ gateware

    def elaborate(self, platform):
        m = Module()
        L, M, K = self._length, self._m_bits, self._v_bits
        S = self._popcount_stages
        beat = self.i.payload

        # One clock enable for every register (popcount stages included): a
        # result waiting on `o.ready` freezes the pipeline behind it.
        run = Signal()
        m.d.comb += run.eq(~self.o.valid | self.o.ready)

        # Plane b holds bit b of every lane: the operands of Eqn 3.  (Named
        # signals, not expressions: each plane feeds several trees.)
        def planes(codes, bits, side):
            result = [Signal(L, name=f"{side}_plane{b}") for b in range(bits)]
            for b, plane in enumerate(result):
                m.d.comb += plane.eq(Cat(codes[lane][b] for lane in range(L)))
            return result
        m_planes = planes(beat.m, M, "m")
        v_planes = planes(beat.v, K, "v")

        first = Signal(init=1)  # the next beat opens a new dot product
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += first.eq(beat.last)

        def count(bits, name):
            # The tree takes its word bit by bit: hand it a signal, or every
            # bit would carry its own copy of the whole AND/XOR/mux expression.
            word = Signal(len(bits), name=name)
            m.d.comb += word.eq(bits)
            return popcount_tree(m, word, stages=S, arch=self._popcount_arch)

        def delayed(value, name):
            # Sideband that travels beside the popcount trees' `S` stages.
            for stage in range(S):
                reg = Signal(value.shape(), name=f"{name}_{stage + 1}")
                m.d.sync += reg.eq(value)
                value = reg
            return value

        k_core, k_m, k_v, k_len = self._coefficients()

        if self._mode == "parallel" or M * K == 1:
            m.d.comb += self.i.ready.eq(run)
            valid = delayed(self.i.valid, "valid")
            opens = delayed(first, "first")
            closes = delayed(beat.last, "last")
            if self._xnor:
                # +-1 lanes: agreements minus disagreements.
                ones = count(m_planes[0] ^ v_planes[0], "disagree")
                term = L - (ones << 1)
            else:
                # Pairs on one anti-diagonal i + k = s share the weight 2**s,
                # so one tree counts all of them: M + K - 1 trees, not M * K.
                diagonals = [count(Cat(m_planes[i] & v_planes[s - i]
                                       for i in range(max(0, s - K + 1), min(s, M - 1) + 1)),
                                   f"diagonal{s}")
                             for s in range(M + K - 1)]
                terms = [k_core * _sum(ones << s for s, ones in enumerate(diagonals))]
                # Row sums only where the other side is signed (k_m, k_v != 0).
                if k_m:
                    terms.append(-k_m * _sum(count(plane, f"m_row{i}") << i
                                           for i, plane in enumerate(m_planes)))
                if k_v:
                    terms.append(-k_v * _sum(count(plane, f"v_row{k}") << k
                                           for k, plane in enumerate(v_planes)))
                if k_len:
                    terms.append(k_len * L)
                term = _sum(terms)
        else:
            # Serial: plane pair (mi, ki) this cycle; the beat is accepted
            # (and leaves the bus) with its final pair.
            mi = Signal(range(M))
            ki = Signal(range(K))
            final_pair = (mi == M - 1) & (ki == K - 1)
            m.d.comb += self.i.ready.eq(run & final_pair)
            with m.If(self.i.valid):
                m.d.sync += ki.eq(Mux(ki == K - 1, 0, ki + 1))
                with m.If(ki == K - 1):
                    m.d.sync += mi.eq(Mux(mi == M - 1, 0, mi + 1))
            m_plane = Cat(m_planes).word_select(mi, L)
            v_plane = Cat(v_planes).word_select(ki, L)

            valid = delayed(self.i.valid, "valid")
            opens = delayed(first & (mi == 0) & (ki == 0), "first")
            closes = delayed(beat.last & final_pair, "last")
            p_mi = delayed(mi, "mi")
            p_ki = delayed(ki, "ki")
            pair = count(m_plane & v_plane, "pair")
            terms = [k_core * (pair << (p_mi + p_ki))]
            # Each row sum is spread over the pairs: plane m_mi is counted
            # once (at ki = 0), plane v_ki once (at mi = 0), the constant once.
            if k_m:
                m_row = count(m_plane, "m_row")
                terms.append(Mux(p_ki == 0, -k_m * (m_row << p_mi), 0))
            if k_v:
                v_row = count(v_plane, "v_row")
                terms.append(Mux(p_mi == 0, -k_v * (v_row << p_ki), 0))
            if k_len:
                terms.append(Mux((p_mi == 0) & (p_ki == 0), k_len * L, 0))
            term = _sum(terms)

        # The accumulator is the output register.  It is exactly as wide as
        # the final result: partial sums may wrap, but modular adds still
        # land on the exact (in-range) total.
        acc = self.o.payload
        with m.If(valid):
            m.d.sync += acc.eq(Mux(opens, 0, acc) + term)
        m.d.sync += self.o.valid.eq(valid & closes)

        return EnableInserter(run)(m)
