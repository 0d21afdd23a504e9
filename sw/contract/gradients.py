"""The batch sum of weight gradients, as integers the hardware can make exactly.

A quantized layer's weight gradient is ``(sum_b m_b * I_b) * a_scale / n_g``:
``I_b`` is sample ``b``'s integer partial sum of the weight (the
backward-weight product on codes) and ``m_b`` its gradient scale, the float32
``max|g|`` of the sample (:func:`sw.numeric.gradient_scale`).  Each sample has
its own scale, so the batch sum is not a sum of integers.  This module fixes
how it is made, in a form a core can compute exactly and every model mirrors:

1. Each scale is split into its float32 significand and exponent,
   ``m_b = M_b * 2**e_b`` with ``M_b`` an integer below
   ``2**SCALE_MANTISSA_BITS`` (:func:`scale_parts`; ``M_b = 0`` for ``m_b =
   0``).
2. The batch's largest exponent ``E = max e_b`` over the samples with ``m_b >
   0`` (``0`` when there are none) gives each sample a right shift ``shift_b =
   E - e_b >= 0`` (:func:`batch_shifts`).
3. The batch sum is the integer (:func:`aligned_term`, summed)::

       S = sum_b floor(M_b * I_b * 2**(GUARD_BITS - shift_b))

   a fixed-point sum aligned to the largest exponent with
   :data:`GUARD_BITS` bits below it: a multiply, a shift and an add per
   sample, no rounding but the floor of terms shifted past the guard bits.
4. ``S`` is truncated toward zero to :data:`SUM_SIGNIFICAND_BITS` ``= 24``
   significant bits (:func:`truncate_sum`; ``|S| < 2**24`` stays as it is),
   a value that IEEE binary32 holds exactly (``|S| < 2**128`` by the sums'
   widths), so a core sends each sum as the 4 bytes of its binary32 pattern
   (:func:`sum_float_bits`; :func:`sum_from_float_bits` the host's inverse).
5. The gradient is ``float32(truncate_sum(S) * 2**(E - GUARD_BITS) * (a_scale
   / n_g))``, the products in float64: the power of two is exact, so
   ``truncate_sum(S)`` is the only rounding before the float32 result's.

Revision (protocol 5): step 4 is new.  Before it the gradient was
``float32(float64(S) * 2**(E - GUARD_BITS) * (a_scale / n_g))``, ``S`` rounded
once to float64 (53 bits, to nearest), and a core sent ``S`` whole (9 or 10
bytes for the digits net, 29 kB of a training sample's link bytes); now 4.
Against that contract the truncation adds a relative error below ``2**-23``
(``|S - truncate_sum(S)| < 2**(bit_length|S| - 24) <= 2**-23 |S|``), the same
order as the float32 result's own rounding (``2**-24``).

Error bound against the paper's formula (the exact real ``sum_b m_b I_b``):
``S * 2**(E - GUARD_BITS)`` is exact when every ``shift_b <= GUARD_BITS``;
a sample shifted further loses less than ``2**(E - GUARD_BITS)``, and since
the largest scale is ``m_max >= 2**(E + 23)`` (a normal float32), that is
below ``2**-(GUARD_BITS + 23) * m_max = 2**-55 * m_max`` per such sample.
With the truncation to 24 bits (``F = GUARD_BITS``, ``X = sum m_b I_b``)::

    |truncate_sum(S) 2**(E-F) - X|  <=  2**-23 (|X| + T * 2**-55 * m_max)  +  T * 2**-55 * m_max

(``T`` the samples shifted past the guard bits, usually none: their scale is
below ``2**-32`` of the batch's largest; with ``T = 0`` simply ``2**-23 |X|``).
Before the truncation (the previous revision, one rounding of ``S`` to
float64) the first term was ``2**-53 |X|``; the float64 sum of ``m_b * I_b``
left to right that the integer sum replaced made up to ``(B - 1) * 2**-53 *
sum |m_b I_b|``.  The truncation's ``2**-23`` is of the order of the float32
result's own rounding (``2**-24``): the gradient moves by at most about one
float32 ulp against the previous contract, and DoReFa's ``G``-bit gradients
(``G <= 8``) carry far coarser noise than either.

Widths (what a core's accumulator needs): ``|S| < B * 2**SCALE_MANTISSA_BITS *
max|I_b| * 2**GUARD_BITS`` (:func:`sum_bits`).
"""

from __future__ import annotations

import math

__all__ = ["SCALE_MANTISSA_BITS", "GUARD_BITS", "SUM_SIGNIFICAND_BITS", "FLOAT32_BITS", "FLOAT32_EXPONENT_BIAS",
           "MAX_FLOAT_SUM_BITS", "scale_parts", "batch_shifts", "aligned_term", "term_bits", "sum_bits", "wrap_sum",
           "truncate_sum", "sum_float_bits", "sum_from_float_bits"]

#: Bits of a float32 significand (the hidden one included): ``M_b < 2**24``.
SCALE_MANTISSA_BITS = 24
#: Bits of the batch sum below the largest scale's exponent.
GUARD_BITS = 32
#: Significant bits a batch sum keeps (:func:`truncate_sum`): binary32's significand, hidden one included.
SUM_SIGNIFICAND_BITS = 24
#: Bits of an IEEE binary32 pattern (:func:`sum_float_bits`), and its exponent bias.
FLOAT32_BITS = 32
FLOAT32_EXPONENT_BIAS = 127
#: The widest two's-complement sum :func:`sum_float_bits` takes: ``|S| <= 2**127``, the
#: largest binary32 exponent.
MAX_FLOAT_SUM_BITS = 128
_FRACTION_BITS = SUM_SIGNIFICAND_BITS - 1
_FRACTION_MASK = (1 << _FRACTION_BITS) - 1
_EXPONENT_MASK = (1 << (FLOAT32_BITS - 1 - _FRACTION_BITS)) - 1
_SIGN_BIT = 1 << (FLOAT32_BITS - 1)


def scale_parts(m: float) -> tuple[int, int]:
    """``(M, e)`` with ``m = M * 2**e`` exactly, ``0 <= M < 2**SCALE_MANTISSA_BITS``
    (``m`` a non-negative float32 value; ``(0, 0)`` for ``0``)."""
    if not (m >= 0 and math.isfinite(m)):
        raise ValueError(f"a gradient scale must be a finite number >= 0, got {m!r}")
    if m == 0:
        return 0, 0
    mantissa, exponent = math.frexp(m)  # m = mantissa * 2**exponent, 0.5 <= mantissa < 1
    significand = mantissa * (1 << SCALE_MANTISSA_BITS)
    if significand != int(significand):
        raise ValueError(f"gradient scale {m!r} is not a float32 value")
    return int(significand), exponent - SCALE_MANTISSA_BITS


def batch_shifts(parts) -> tuple[int, list[int]]:
    """``(E, [shift_b])`` of a batch's :func:`scale_parts`: ``E`` the largest exponent of a
    non-zero scale (``0`` if none), ``shift_b = E - e_b`` (``0`` for a zero scale)."""
    exponents = [e for mantissa, e in parts if mantissa]
    top = max(exponents, default=0)
    return top, [top - e if mantissa else 0 for mantissa, e in parts]


def aligned_term(mantissa: int, partial: int, shift: int) -> int:
    """``floor(mantissa * partial * 2**(GUARD_BITS - shift))``: one sample's share of ``S``."""
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    product = mantissa * partial
    if shift <= GUARD_BITS:
        return product << (GUARD_BITS - shift)
    return product >> (shift - GUARD_BITS)  # Python's >> floors


def term_bits(partial_bits: int) -> int:
    """Bits of a two's-complement integer that holds any :func:`aligned_term` of a
    ``partial_bits``-bit signed partial sum (the widest, ``shift = 0``): ``M_b * I_b``
    is ``SCALE_MANTISSA_BITS + partial_bits`` bits, shifted left by ``GUARD_BITS``."""
    if partial_bits < 1:
        raise ValueError(f"partial_bits must be >= 1, got {partial_bits}")
    return SCALE_MANTISSA_BITS + int(partial_bits) + GUARD_BITS


def sum_bits(batch: int, partial_bound: int) -> int:
    """Bits of a two's-complement integer that holds ``S`` for ``batch`` samples whose
    partial sums are at most ``partial_bound`` in magnitude."""
    if batch < 1 or partial_bound < 0:
        raise ValueError(f"batch must be >= 1 and partial_bound >= 0, got {batch}, {partial_bound}")
    bound = batch * ((1 << SCALE_MANTISSA_BITS) - 1) * partial_bound << GUARD_BITS
    return bound.bit_length() + 1


def wrap_sum(total: int, bits: int) -> int:
    """``total`` as a ``bits``-bit two's-complement sum: what a core holding its sums in
    ``bits`` bits keeps (modulo ``2**bits``; the host sizes them by :func:`sum_bits`, so
    no sum it reads has wrapped)."""
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    top = 1 << (bits - 1)
    return ((int(total) + top) & ((1 << bits) - 1)) - top


def _check_sum(total: int) -> int:
    total = int(total)
    if not -(1 << (MAX_FLOAT_SUM_BITS - 1)) <= total < 1 << (MAX_FLOAT_SUM_BITS - 1):
        raise ValueError(f"a batch sum must be a {MAX_FLOAT_SUM_BITS}-bit two's-complement integer, got {total}")
    return total


def truncate_sum(total: int) -> int:
    """``S`` truncated toward zero to :data:`SUM_SIGNIFICAND_BITS` significant bits: the low
    ``bit_length(|S|) - 24`` bits of ``|S|`` cleared, the sign kept (``|S| < 2**24``
    unchanged).  Exactly a binary32 value; ``S`` a :data:`MAX_FLOAT_SUM_BITS`-bit integer."""
    total = _check_sum(total)
    magnitude = abs(total)
    drop = max(magnitude.bit_length() - SUM_SIGNIFICAND_BITS, 0)
    magnitude = magnitude >> drop << drop
    return -magnitude if total < 0 else magnitude


def sum_float_bits(total: int) -> int:
    """The IEEE binary32 bit pattern of :func:`truncate_sum` ``(S)`` as an unsigned integer:
    sign (bit 31), biased exponent ``bit_length(|S|) - 1 + 127`` (bits 30..23), the 23
    fraction bits below the leading one (bits 22..0); ``0`` for ``S = 0``."""
    total = _check_sum(total)
    if total == 0:
        return 0
    magnitude = abs(total)
    length = magnitude.bit_length()
    if length >= SUM_SIGNIFICAND_BITS:
        significand = magnitude >> (length - SUM_SIGNIFICAND_BITS)
    else:
        significand = magnitude << (SUM_SIGNIFICAND_BITS - length)
    exponent = length - 1 + FLOAT32_EXPONENT_BIAS
    return (_SIGN_BIT if total < 0 else 0) | exponent << _FRACTION_BITS | (significand & _FRACTION_MASK)


def sum_from_float_bits(pattern: int) -> int:
    """The integer :func:`truncate_sum` ``(S)`` from its :func:`sum_float_bits` pattern (the
    host's inverse).  ``ValueError`` for a pattern that function never makes: outside 32
    bits, negative zero, a value below 1 in magnitude (subnormals included), or inf/NaN."""
    pattern = int(pattern)
    if not 0 <= pattern < 1 << FLOAT32_BITS:
        raise ValueError(f"a binary32 pattern must be in 0 .. 2**32 - 1, got {pattern}")
    if pattern == 0:
        return 0
    exponent = (pattern >> _FRACTION_BITS) & _EXPONENT_MASK
    if not FLOAT32_EXPONENT_BIAS <= exponent < _EXPONENT_MASK:
        raise ValueError(f"binary32 pattern {pattern:#010x} is not a non-zero integer sum (biased exponent "
                         f"{exponent}; a sum's is {FLOAT32_EXPONENT_BIAS} .. {_EXPONENT_MASK - 1})")
    length = exponent - FLOAT32_EXPONENT_BIAS + 1
    significand = (1 << _FRACTION_BITS) | (pattern & _FRACTION_MASK)
    if length >= SUM_SIGNIFICAND_BITS:
        magnitude = significand << (length - SUM_SIGNIFICAND_BITS)
    else:
        if significand & ((1 << (SUM_SIGNIFICAND_BITS - length)) - 1):
            raise ValueError(f"binary32 pattern {pattern:#010x} is not an integer")
        magnitude = significand >> (SUM_SIGNIFICAND_BITS - length)
    return -magnitude if pattern & _SIGN_BIT else magnitude
