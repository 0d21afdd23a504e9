"""Signed correction: an unsigned code dot product to the value of signed odd readings.

A code ``q`` of ``b`` bits is read as itself (unsigned) or as the signed odd
integer ``2q - n``, ``n = 2**b - 1`` (DoReFa weights and gradients).  With
``sm``, ``sv`` the readings of the matrix and vector sides (1: signed) and
``n_m``, ``n_v`` their ``n``, over the real columns of a row ``q`` and a vector
``p``::

    sum value(q) value(p) = 2**(sm + sv) U  -  sv * (n_v R) << sm  -  sm * n_m S

where ``U = sum q p`` (:class:`hw.mac_array.MacArray`), ``R = sum q`` the
row's code sum and ``S = sum value(p)`` the vector's value sum
(:class:`hw.plane_writer.PlaneWriter` makes both).  Expanding ``S = (1 + sv)
sum p - sv n_v cols`` gives the expansion of :func:`sw.bitplanes.signed_matmul`
(``4 U - 2 n_v R - 2 n_m sum p + n_m n_v cols`` with both sides signed), so
the constant term needs no logic of its own.  Every product ``n * x`` is
``(x << b) - x``: the unit has no multiplier.

Ports
-----
i : ``In(stream.Signature(StructLayout({"row", "slot", "sum", "final"}), always_ready=True))``
    ``U`` with its row and slot (the array's output).
m_sum_addr, v_sum_addr : ``Out``; m_sum, v_sum : ``In``
    Read ports of the row sums (``R``) and vector value sums (``S``): data
    one cycle after the address.
m_bits, v_bits, m_signed, v_signed : ``In``
    The run's readings; stable while values pass.
o : ``Out(stream.Signature(StructLayout({"row", "slot", "value", "final"}), always_ready=True))``
    The exact signed value (``value_shape``, at most ``max_cols * (2**max_bits
    - 1)**2`` in magnitude), :attr:`latency` ``= 3 + fetch_stages`` cycles after
    ``i``: ``fetch_stages`` registers take the sums as they arrive, so that a
    block RAM's slow read data (5.8 ns clock to output on an ECP5 DP16KD) need
    meet no adder in its cycle.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sw.contract.codes import MAX_CODE_BITS

from .params import check_int

__all__ = ["SignedCorrection"]


class SignedCorrection(wiring.Component):
    """``U``, ``R``, ``S`` to the signed value (module docstring).

    Parameters
    ----------
    max_bits : int
        Widest code, ``1 .. 8``.
    max_cols : int
        Longest row.
    rows, slots : int
        Row and slot indices carried through (sizes of the sum memories).
    fetch_stages : int
        Registers between the sum memories' read data and the arithmetic,
        ``0 .. 2`` (as :class:`hw.mac_array.MacArray`'s after its buffers).
    """

    def __init__(self, *, max_bits: int, max_cols: int, rows: int, slots: int, fetch_stages: int = 0):
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        self._max_cols = check_int("max_cols", max_cols, 1)
        self._fetch_stages = check_int("fetch_stages", fetch_stages, 0, 2)
        self.latency = 3 + self._fetch_stages
        n = (1 << max_bits) - 1
        sum_bits = bits_for(max_cols * n * n)
        code_sum_bits = bits_for(max_cols * n) + 1  # signed
        self.value_shape = signed(sum_bits + 1)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "row": range(rows), "slot": range(slots), "sum": sum_bits, "final": 1}), always_ready=True)),
            "m_sum_addr": Out(range(rows)),
            "v_sum_addr": Out(range(slots)),
            "m_sum": In(signed(code_sum_bits)),
            "v_sum": In(signed(code_sum_bits)),
            "m_bits": In(range(max_bits + 1)),
            "v_bits": In(range(max_bits + 1)),
            "m_signed": In(1),
            "v_signed": In(1),
            "o": Out(stream.Signature(data.StructLayout({
                "row": range(rows), "slot": range(slots), "value": self.value_shape, "final": 1}),
                always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        wide = signed(self.value_shape.width + 2)
        sm, sv = self.m_signed, self.v_signed

        # Stage 1: the sums are read (addresses from the input) while U waits.
        m.d.comb += [self.m_sum_addr.eq(self.i.payload.row), self.v_sum_addr.eq(self.i.payload.slot)]
        s1 = Signal.like(self.i.payload)
        s1_valid = Signal()
        m.d.sync += [s1.eq(self.i.payload), s1_valid.eq(self.i.valid)]

        # The fetch stages: the sums registered as they arrive, U and its row and slot beside them.
        m_sum, v_sum = self.m_sum, self.v_sum
        for stage in range(self._fetch_stages):
            m_next = Signal.like(self.m_sum, name=f"m_sum_fetch{stage}", reset_less=True)
            v_next = Signal.like(self.v_sum, name=f"v_sum_fetch{stage}", reset_less=True)
            u_next = Signal.like(self.i.payload, name=f"u_fetch{stage}")
            valid_next = Signal(name=f"valid_fetch{stage}")
            m.d.sync += [m_next.eq(m_sum), v_next.eq(v_sum), u_next.eq(s1), valid_next.eq(s1_valid)]
            m_sum, v_sum, s1, s1_valid = m_next, v_next, u_next, valid_next

        # Stage 2: the three terms, shifted; no adder after a shifter but the vector term's.
        #   value = 2**(sm + sv) U + sv (R << sm) - sv ((R << v_bits) << sm) - sm n_m S
        # with n_v R = (R << v_bits) - R split into its two shifts, so that the run-time
        # shift by v_bits (its register fans out to every chain) meets no carry chain in
        # this stage, and stage 3's two subtractions meet no shifter.
        # (Signed operands throughout: a difference of unsigned values would wrap.)
        u, r, s = Signal(wide), Signal(wide), Signal(wide)
        m.d.comb += [u.eq(s1.sum), r.eq(m_sum), s.eq(v_sum)]
        plus, minus, vector_term = Signal(wide), Signal(wide), Signal(wide)
        s2 = Signal.like(self.i.payload)
        s2_valid = Signal()
        m.d.sync += [
            plus.eq((u << (sm + sv)) + Mux(sv, r << sm, 0)),
            minus.eq(Mux(sv, (r << self.v_bits) << sm, 0)),
            vector_term.eq(Mux(sm, (s << self.m_bits) - s, 0)),
            s2.eq(s1), s2_valid.eq(s1_valid),
        ]

        # Stage 3: the value.
        m.d.sync += [
            self.o.valid.eq(s2_valid),
            self.o.payload.row.eq(s2.row),
            self.o.payload.slot.eq(s2.slot),
            self.o.payload.final.eq(s2.final),
            self.o.payload.value.eq(plus - minus - vector_term),
        ]
        return m
