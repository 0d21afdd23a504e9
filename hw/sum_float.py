"""Sum to float: a batch sum as the binary32 pattern of its 24-bit truncation.

The numeric contract (:mod:`sw.contract.gradients`) sends a weight's batch sum
``S`` (a ``sum_bits``-bit two's-complement integer, :class:`hw.batch_sum.BatchSum`)
over the link as :func:`~sw.contract.gradients.sum_float_bits` ``(S)``: ``S``
truncated toward zero to 24 significant bits, an exact IEEE binary32 value, as
its 32-bit pattern::

    sign      = S < 0
    |S|       = 2**(L - 1) + ...           (L = bit_length(|S|), 1 <= L <= sum_bits)
    exponent  = L - 1 + 127                (8 bits: sum_bits <= 128 keeps it <= 254)
    fraction  = the 23 bits of |S| below its leading one (zeros below bit 0 if L < 24)
    bits      = sign << 31 | exponent << 23 | fraction        (0 for S = 0)

Cutting the bits below the 24th is the truncation toward zero (of ``|S|``), so
no rounding logic is needed: a sign-magnitude conversion, a leading-zero count,
a normalising left shift and the packing.

Pipeline (every stage registered; ``W`` = ``sum_bits`` rounded up to whole
bytes, at least 24; ``t`` the cycle ``i.valid`` is high)::

    t      register the one's complement of S (S's bits, inverted when negative)
           and the low half's + 1 (sign-magnitude: |S| = ~S + 1 when negative)
    t + 1  register |S|: the high half + the low half's carry (no adder longer than W/2)
    t + 2  register per byte of |S| (byte 0 the top one): any one in it, its leading zeros
    t + 3  register the first byte holding a one (one-hot) and whether |S| = 0
    t + 4  register the 31 bits from that byte's top down (a one-hot AND-OR
           select: the leading one in their top 8), its byte index and leading zeros
    t + 5  shift those left by the leading zeros (0..7), register the packed pattern

so ``o`` carries the pattern in cycle ``t +`` :attr:`latency` ``= t + 6``.  No
stage has a carry chain longer than ``W / 2 + 1`` bits or more than a few LUT
levels, so the unit does not limit a core's clock above 125 MHz on ECP5.

Ports
-----
i : ``In(stream.Signature(signed(sum_bits), always_ready=True))``
    ``S``, one a cycle while ``i.valid`` is high (there is no back-pressure).
o : ``Out(stream.Signature(32, always_ready=True))``
    The binary32 pattern; ``o.valid`` is ``i.valid`` delayed by :attr:`latency`.

Latency and throughput
----------------------
``latency = 6`` cycles, one value a cycle (a full pipeline, no stalls).

Resources
---------
Two adders of about ``W / 2`` bits, ``W / 8`` 8-bit leading-zero encoders, a
``W / 8``-way 31-bit one-hot multiplexer, a 31-bit 8-way shifter, an 8-bit
subtractor, and about ``6 W`` flip-flops (|S| travels through four stages).
Measured (Yosys ``synth_ecp5``, nextpnr out of context, LFE5U-85F, inputs and
outputs registered around the unit): ``sum_bits`` 96: about 550 LUT4 and 690
TRELLIS_FF, 195 MHz; 128: about 720 LUT4 and 880 TRELLIS_FF, 170 MHz.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.gradients import FLOAT32_BITS, FLOAT32_EXPONENT_BIAS, MAX_FLOAT_SUM_BITS, SUM_SIGNIFICAND_BITS

from .params import check_int

__all__ = ["SumToFloat"]

_CHUNK = 8  # bits per leading-zero group: the coarse shift is whole bytes, the fine one 0..7
_WINDOW = SUM_SIGNIFICAND_BITS + _CHUNK - 1  # bits kept after the coarse shift: the leading one in the top 8
_FRACTION = SUM_SIGNIFICAND_BITS - 1
_EXPONENT = FLOAT32_BITS - 1 - _FRACTION


class SumToFloat(wiring.Component):
    """A ``sum_bits``-bit two's-complement batch sum to the binary32 bits of its 24-bit
    truncation, :func:`sw.contract.gradients.sum_float_bits` (module docstring).

    Parameters
    ----------
    sum_bits : int
        Width of the signed input, ``2 .. MAX_FLOAT_SUM_BITS`` (128: ``|S| <= 2**127``
        keeps the biased exponent within binary32's finite range).
    """

    #: Cycles from ``i`` to ``o``.
    latency = 6

    def __init__(self, *, sum_bits: int):
        self._sum_bits = check_int("sum_bits", sum_bits, 2, MAX_FLOAT_SUM_BITS,
                                   note="a binary32 exponent holds |S| <= 2**127")
        super().__init__({
            "i": In(stream.Signature(signed(sum_bits), always_ready=True)),
            "o": Out(stream.Signature(FLOAT32_BITS, always_ready=True)),
        })

    sum_bits = property(lambda self: self._sum_bits)

    def elaborate(self, platform):
        m = Module()
        chunks = -(-max(self._sum_bits, SUM_SIGNIFICAND_BITS) // _CHUNK)
        width = chunks * _CHUNK  # W: |S| in whole bytes
        half = width // 2

        valid = [self.i.valid] + [Signal(name=f"s{k}_valid") for k in range(1, self.latency + 1)]
        m.d.sync += [valid[k + 1].eq(valid[k]) for k in range(self.latency)]
        sign = [None] + [Signal(name=f"s{k}_sign") for k in range(1, self.latency)]
        m.d.sync += [sign[k + 1].eq(sign[k]) for k in range(1, self.latency - 1)]

        # Stage 1: one's complement (S sign-extended to W bits), the low half's + 1.
        value = Signal(signed(width))
        negative = value[-1]
        flipped = Signal(width)
        m.d.comb += [value.eq(self.i.payload), flipped.eq(value ^ negative.replicate(width))]
        low = Signal(half + 1)   # the low half of |S| and its carry out
        high = Signal(width - half)  # the high half of ~S (or S)
        m.d.sync += [sign[1].eq(negative), low.eq(flipped[:half] + negative), high.eq(flipped[half:])]

        # Stage 2: |S| (the most negative S gives 2**(sum_bits - 1): W bits hold it).
        magnitude = Signal(width)
        m.d.sync += magnitude.eq(Cat(low[:half], high + low[half]))

        # Stage 3: per byte, top byte first: any one, and its leading zeros.
        def byte(mag, c):
            return mag[width - _CHUNK * (c + 1):width - _CHUNK * c]

        nonzero = Signal(chunks)
        zeros = [Signal(range(_CHUNK), name=f"zeros{c}") for c in range(chunks)]
        mag3 = Signal(width)
        m.d.sync += mag3.eq(magnitude)
        for c in range(chunks):
            bits = byte(magnitude, c)
            m.d.sync += [nonzero[c].eq(bits.any()), zeros[c].eq(_leading_zeros(m, bits))]

        # Stage 4: the first byte holding a one, one-hot; |S| = 0.
        first = Signal(chunks)
        empty = Signal()
        mag4 = Signal(width)
        zeros4 = [Signal(range(_CHUNK), name=f"zeros4_{c}") for c in range(chunks)]
        m.d.sync += [mag4.eq(mag3), empty.eq(~nonzero.any())]
        m.d.sync += [zeros4[c].eq(zeros[c]) for c in range(chunks)]
        for c in range(chunks):
            m.d.sync += first[c].eq(nonzero[c] & ~nonzero[:c].any() if c else nonzero[c])

        # Stage 5: the 31 bits from that byte's top down (zeros below bit 0), its index and zeros.
        padded = Cat(Const(0, _WINDOW), mag4)  # bit W + _WINDOW - 1 is |S|'s top
        window = Signal(_WINDOW)
        index = Signal(range(chunks))
        fine = Signal(range(_CHUNK))
        empty5 = Signal()
        selected_window = selected_index = selected_fine = 0  # one-hot AND-OR selects
        for c in range(chunks):
            top = width + _WINDOW - _CHUNK * c  # padded[top - 1] is byte c's top bit
            selected_window |= Mux(first[c], padded[top - _WINDOW:top], 0)
            selected_index |= Mux(first[c], c, 0)
            selected_fine |= Mux(first[c], zeros4[c], 0)
        m.d.sync += [window.eq(selected_window), index.eq(selected_index), fine.eq(selected_fine),
                     empty5.eq(empty)]

        # Stage 6: normalise (the leading one to the window's top), pack.
        normalised = Signal(_WINDOW)
        m.d.comb += normalised.eq(window << fine)
        exponent = Signal(_EXPONENT)
        # bit_length(|S|) - 1 + bias, bit_length = W - (8 * index + fine)
        m.d.comb += exponent.eq(width - 1 + FLOAT32_EXPONENT_BIAS - (index * _CHUNK + fine))
        pattern = Signal(FLOAT32_BITS)
        with m.If(~empty5):
            m.d.sync += pattern.eq(Cat(normalised[_WINDOW - SUM_SIGNIFICAND_BITS:_WINDOW - 1], exponent,
                                       sign[5]))
        with m.Else():
            m.d.sync += pattern.eq(0)
        m.d.comb += [self.o.valid.eq(valid[self.latency]), self.o.payload.eq(pattern)]
        return m


def _leading_zeros(m, bits):
    """The leading zeros of an 8-bit value (7 for 0 and for 1: a zero byte is never selected)."""
    count = Signal(range(_CHUNK))
    m.d.comb += count.eq(_CHUNK - 1)
    for j in range(1, _CHUNK):  # the highest set bit wins: the last assignment
        with m.If(bits[j]):
            m.d.comb += count.eq(_CHUNK - 1 - j)
    return count
