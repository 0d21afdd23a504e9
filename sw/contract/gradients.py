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
4. The gradient is ``float32(float64(S) * 2**(E - GUARD_BITS) * (a_scale /
   n_g))``: ``S`` rounded once to float64 (to nearest, ties to even), scaled
   by a power of two (exact), then as before.

Error bound against the paper's formula (the exact real ``sum_b m_b I_b``):
``S * 2**(E - GUARD_BITS)`` is exact when every ``shift_b <= GUARD_BITS``;
a sample shifted further loses less than ``2**(E - GUARD_BITS)``, and since
the largest scale is ``m_max >= 2**(E + 23)`` (a normal float32), that is
below ``2**-(GUARD_BITS + 23) * m_max = 2**-55 * m_max`` per such sample.
With the single rounding to float64::

    |float64(S) 2**(E-F) - sum m_b I_b|  <=  2**-53 |sum m_b I_b|  +  T * 2**-55 * m_max

(``T`` the samples shifted past the guard bits, usually none: their scale is
below ``2**-32`` of the batch's largest).  The revised sum is at least as
exact as the contract it replaces (a float64 sum of ``m_b * I_b`` left to
right, ``B - 1`` roundings: up to ``(B - 1) * 2**-53 * sum |m_b I_b|``), and
both are far below the float32 result's own rounding (``2**-24``).

Widths (what a core's accumulator needs): ``|S| < B * 2**SCALE_MANTISSA_BITS *
max|I_b| * 2**GUARD_BITS`` (:func:`sum_bits`).
"""

from __future__ import annotations

import math

__all__ = ["SCALE_MANTISSA_BITS", "GUARD_BITS", "scale_parts", "batch_shifts", "aligned_term", "term_bits",
           "sum_bits"]

#: Bits of a float32 significand (the hidden one included): ``M_b < 2**24``.
SCALE_MANTISSA_BITS = 24
#: Bits of the batch sum below the largest scale's exponent.
GUARD_BITS = 32


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
