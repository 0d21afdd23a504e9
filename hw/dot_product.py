"""Bit-serial dot-product unit: one bit-plane pair per cycle, precision chosen per beat.

The two operands are named for their roles in a matrix-vector product (as in
:class:`hw.mac_array.MacArray`): ``m`` is a plane of a matrix row, ``v`` the
same lanes of a vector's plane.  Each beat carries one plane of each side;
the unit computes (paper Eqn 3, on unsigned codes)::

    U = sum_s 2**s D_s,    D_s = sum over the beats of weight s of popcount(m AND v)

in Horner's order: the beats come by falling weight ``s = i + k`` (matrix
plane ``i``, vector plane ``k``), and the beat that opens a lower weight
says ``double``, so the sum is doubled once before it is added to::

    sum = (0 if first else 2 * sum if double else sum) + popcount(m AND v)

A dot product of ``m_bits``- and ``v_bits``-bit codes over ``folds`` beats of
``length`` lanes is ``folds * m_bits * v_bits`` beats.  Bits are a property
of the beat sequence, not of the unit: any precision up to ``max_bits`` runs
on the same gateware, as in BISMO's dot-product unit, and doubling instead
of shifting each count by its weight leaves no barrel shifter in the unit.  Signed odd codes
(``2q - n``) reduce to this unsigned sum plus per-row and per-vector code
sums (:class:`hw.signed_correction.SignedCorrection` applies the
expansion), so the unit needs no negation and no row-sum popcounts.

Lanes that hold no column (a ragged last fold) must hold code 0 on at least
one side: they then add nothing.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sw.contract.codes import MAX_CODE_BITS

from .params import check_choice, check_int
from .popcount import ARCHS, popcount_max_stages, popcount_tree

__all__ = ["DotProduct", "beat_layout"]


def beat_layout(length: int) -> data.StructLayout:
    """One beat: a plane of each side (``length`` bits), ``first`` (the beat
    opens a dot product: the sum restarts), ``double`` (the beat opens a
    lower weight: the sum doubles first) and ``last`` (the beat closes the dot
    product: the sum is offered)."""
    return data.StructLayout({
        "m": unsigned(length),
        "v": unsigned(length),
        "first": 1,
        "double": 1,
        "last": 1,
    })


class DotProduct(wiring.Component):
    """Bit-serial AND + popcount + shift-accumulate (module docstring).

    Parameters
    ----------
    length : int
        Lanes per plane, ``>= 1``.
    max_bits : int
        Widest code of either side, ``1 .. 8``.
    max_lanes : int
        Most lanes of one dot product whose codes are not 0 on both sides
        (padding lanes of a ragged fold do not count), ``>= length``: sizes
        the sum, ``max_lanes * (2**max_bits - 1)**2`` at most.
    popcount_stages, popcount_arch :
        Of the popcount tree (:func:`hw.popcount.popcount_tree`).

    Ports
    -----
    i : ``In(stream.Signature(beat_layout(length), always_ready=True))``
        One beat per cycle at most; never stalls.
    o : ``Out(stream.Signature(unsigned(sum_bits), always_ready=True))``
        The sum ``U``, valid for one cycle per ``last`` beat.  The consumer
        must take it then (:class:`hw.mac_array.MacArray` copies every
        unit's sum in the same cycle).

    Latency and throughput
    ----------------------
    One beat per cycle; ``o.valid`` rises :attr:`latency` ``=
    popcount_stages + 2`` cycles after the ``last`` beat (the popcount's
    stages, the registered count, the accumulator).
    """

    def __init__(self, length: int, *, max_bits: int = MAX_CODE_BITS, max_lanes: "int | None" = None,
                 popcount_stages: int = 0, popcount_arch: str = "chain"):
        self._length = check_int("length", length, 1)
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        self._max_lanes = check_int("max_lanes", length if max_lanes is None else max_lanes, length)
        self._popcount_arch = check_choice("popcount_arch", popcount_arch, ARCHS)
        self._popcount_stages = check_int("popcount_stages", popcount_stages, 0,
                                          popcount_max_stages(length, arch=popcount_arch))
        super().__init__({
            "i": In(stream.Signature(beat_layout(length), always_ready=True)),
            "o": Out(stream.Signature(unsigned(self.sum_bits), always_ready=True)),
        })

    length = property(lambda self: self._length)
    max_bits = property(lambda self: self._max_bits)
    max_lanes = property(lambda self: self._max_lanes)
    popcount_stages = property(lambda self: self._popcount_stages)

    @property
    def sum_bits(self) -> int:
        """Width of the sum: every ``max_lanes``-lane product of ``max_bits`` codes fits."""
        return bits_for(self._max_lanes * ((1 << self._max_bits) - 1) ** 2)

    @property
    def latency(self) -> int:
        """Cycles from a ``last`` beat to its ``o.valid``."""
        return self._popcount_stages + 2

    def elaborate(self, platform):
        m = Module()
        beat = self.i.payload
        stages = self._popcount_stages

        # popcount(m AND v): the "packed" tree fuses the AND into its first level.
        count = popcount_tree(m, beat.m, mask=beat.v, stages=stages, arch=self._popcount_arch, name="popcount")

        def delayed(value, name):
            # Sideband travelling beside the popcount's stages.
            for stage in range(stages):
                reg = Signal.like(value, name=f"{name}_{stage + 1}")
                m.d.sync += reg.eq(value)
                value = reg
            return value
        valid = delayed(self.i.valid, "valid")
        first = delayed(beat.first, "first")
        double = delayed(beat.double, "double")
        last = delayed(beat.last, "last")

        # The count, registered: the accumulator's adder sees a plain operand.
        term = Signal.like(count)
        term_valid, term_first, term_double, term_last = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [term.eq(count), term_valid.eq(valid), term_first.eq(first & valid),
                     term_double.eq(double), term_last.eq(last & valid)]

        total = self.o.payload
        with m.If(term_valid):
            m.d.sync += total.eq(Mux(term_first, 0, Mux(term_double, total << 1, total)) + term)
        m.d.sync += self.o.valid.eq(term_last)
        return m
