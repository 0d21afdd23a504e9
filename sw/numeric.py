"""The numeric contract: the one definition of every number the hardware makes.

Training (:mod:`sw.layers`, :mod:`sw.quantizers`), the integer reference
(:mod:`sw.intref`), the host driver and every testbench scoreboard import
these functions; nothing else re-derives them.  The code widths and
``levels`` are the contract's (:mod:`sw.contract.codes`), re-exported here;
the README's "numeric contract" is the prose version.

All functions take torch tensors (the integer reference converts at its
boundary).  The order of floating-point operations inside each function is
part of the contract: the fused thresholds of :func:`fold_thresholds` are
found by evaluating the very same function the float model runs, so they are
exact by construction, not by tolerance.

Bitwidths: every W, A, G is one of :data:`ALLOWED_BITS` (1..8, or 32 meaning
"not quantized").  ``n = 2**k - 1`` is the number of quantization steps.
"""

from __future__ import annotations

import numpy as np
import torch

from .contract.codes import ALLOWED_BITS, FULL_PRECISION, check_bits, levels
from .contract.gradients import GUARD_BITS, SCALE_MANTISSA_BITS, SUM_SIGNIFICAND_BITS, truncate_sum
from .contract.prng import NOISE_BITS

__all__ = [
    "ALLOWED_BITS", "FULL_PRECISION", "NOISE_BITS",
    "check_bits", "levels", "parse_bits",
    "round_half_up", "quantize_k",
    "weight_unit_interval", "weight_codes", "weight_values",
    "activation_codes", "activation_scale",
    "gradient_scale", "gradient_codes", "gradient_values",
    "product_scale", "accumulator_to_value", "affine", "bn_affine",
    "backward_input_values", "scale_parts", "batch_shifts", "aligned_batch_sum", "sum_limbs", "truncated_sum_value",
    "aligned_sum_value",
    "backward_weight_values", "weight_gradient",
    "activation_from_accumulator", "fold_thresholds", "apply_thresholds",
]


def parse_bits(text: str) -> tuple[int, int, int]:
    """Parse ``"W,A,G"`` (e.g. ``"1,2,6"``) into validated ``(W, A, G)``."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 3:
        raise ValueError(f"bits must be 'W,A,G' (three of 1..8 or 32), got {text!r}")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"bits must be 'W,A,G' with integers 1..8 or 32, got {text!r}") from None
    return tuple(check_bits(v, what) for v, what in zip(values, ("W", "A", "G")))


# --------------------------------------------------------------------------- rounding

def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)``: what a comparator does at a tie (``torch.round`` is half-to-even)."""
    return torch.floor(x + 0.5)


def quantize_k(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``floor(x*n + 1/2) / n`` for ``x`` in ``[0, 1]`` (paper Eqn 5, rounding half up)."""
    n = levels(bits)
    return round_half_up(x * n) / n


# --------------------------------------------------------------------------- weights

def weight_unit_interval(w: torch.Tensor) -> torch.Tensor:
    """``t = tanh(w) / max|tanh(w)| * 1/2 + 1/2`` in ``[0, 1]`` (differentiable).

    An all-zero layer has ``max|tanh| = 0``; the divisor is then taken as 1, so
    every weight maps to ``t = 1/2`` and code ``+1``: zero maps to +1 at every
    bitwidth, as it does for k = 1, and nothing is NaN.
    """
    t = torch.tanh(w)
    peak = t.abs().max()
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return t / peak * 0.5 + 0.5


def weight_codes(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed odd weight codes ``c`` (int64) and the float32 scale: value = ``c * scale``.

    k = 1: ``c = +1`` where ``w >= 0`` else ``-1``, scale ``E = mean|w|``.
    k >= 2: ``q = floor(n*t + 1/2)`` in ``[0, n]``, ``c = 2q - n``, scale ``1/n``.
    """
    n = levels(bits)
    with torch.no_grad():
        w = w.detach().float()
        if bits == 1:
            codes = torch.where(w >= 0, 1, -1).to(torch.int64)
            scale = w.abs().mean()
        else:
            q = round_half_up(weight_unit_interval(w) * n).to(torch.int64)
            codes = 2 * q - n
            scale = torch.tensor(1.0 / n, dtype=torch.float32)
    return codes, scale.to(torch.float32)


def weight_values(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes.to(torch.float32) * scale


# --------------------------------------------------------------------------- activations

def activation_scale(bits: int) -> torch.Tensor:
    """The value of one activation step, ``1/n`` (float32): value = ``p * scale``."""
    return torch.tensor(1.0 / levels(bits), dtype=torch.float32)


def activation_codes(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``p = floor(clip(x, 0, 1) * n + 1/2)`` in ``[0, n]`` (int64)."""
    n = levels(bits)
    return round_half_up(torch.clamp(x, 0.0, 1.0) * n).to(torch.int64)


# --------------------------------------------------------------------------- gradients

def gradient_scale(g: torch.Tensor) -> torch.Tensor:
    """Per-sample ``m = max|g|`` over all non-batch axes (shape ``(B,)``)."""
    return g.abs().reshape(g.shape[0], -1).amax(dim=1)


def gradient_codes(g: torch.Tensor, draws: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stochastic gradient codes ``c`` in ``[0, n]`` (int64) and per-sample scales ``m``.

    The paper's ``c = n * quantize_k(clip(g/(2m) + 1/2 + u/n, 0, 1))`` with
    ``u = (r - 2**15)/2**16``.  Multiplying out, ``c`` is the number of
    ``j`` in ``1..n`` that pass the comparison::

        n * g * 2**16  >=  m * ((2j - n) * 2**16 - 2r)

    which is what the hardware computes.  Here it is evaluated exactly: for an
    integer ``g`` in int64, for a float32 ``g`` in float64 (every product is at
    most 50 significant bits, so no rounding happens); integers need ``|g| < 2**38``.  ``m`` is the per-sample
    ``max|g|``; where ``m = 0`` every comparison passes (``c = n``) and the value
    is ``0`` because it is scaled by ``m``.
    """
    n = levels(bits)
    if draws.shape != g.shape:
        raise ValueError(f"noise draws must have the gradient's shape {tuple(g.shape)}, got {tuple(draws.shape)}")
    work = torch.int64 if not g.is_floating_point() else torch.float64
    g = g.detach()
    m = gradient_scale(g)
    one = 1 << NOISE_BITS
    gw = g.to(work)
    mw = m.to(work).reshape((-1,) + (1,) * (g.dim() - 1))
    rw = draws.to(work)
    lhs = gw * (n * one)
    base = -n * one - 2 * rw  # (2j - n) * 2**16 - 2r, less 2j * 2**16
    # The comparison is monotone in j: estimate the count, then settle it exactly.
    estimate = torch.floor((lhs.to(torch.float64) / torch.clamp(mw.to(torch.float64), min=1e-300)
                            - base.to(torch.float64)) / (2 * one))
    estimate = torch.clamp(estimate, 0, n).to(torch.int64)
    estimate = torch.where(mw == 0, n, estimate)  # m = 0: every comparison 0 >= 0 passes

    def passes(j):
        return lhs >= mw * (base + (2 * one) * j.to(work))

    c = estimate
    for _ in range(2):
        up = (c < n) & passes(c + 1)
        down = (c > 0) & ~passes(c)
        c = c + up.to(torch.int64) - down.to(torch.int64)
    return c, m


def gradient_values(codes: torch.Tensor, m: torch.Tensor, bits: int) -> torch.Tensor:
    """``m * (2c - n) / n`` per sample (float32)."""
    n = levels(bits)
    shape = (-1,) + (1,) * (codes.dim() - 1)
    return ((2 * codes - n).to(torch.float64) * (m.to(torch.float64).reshape(shape) / n)).to(torch.float32)


# --------------------------------------------------------------------------- products and scales

def product_scale(a_scale: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """Scale of an integer accumulator ``sum(p * c)``: ``a_scale * w_scale`` (float32)."""
    return (torch.as_tensor(a_scale, dtype=torch.float32) * torch.as_tensor(w_scale, dtype=torch.float32))


def accumulator_to_value(acc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Float32 value of an integer accumulator: ``float32(acc) * scale``."""
    return acc.to(torch.float32) * scale


def _channel_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((1, -1) + (1,) * (like.dim() - 2))


def affine(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Per-channel (axis 1) ``x * alpha + beta``: two rounded float32 operations, never fused."""
    return x * _channel_view(alpha, x) + _channel_view(beta, x)


def bn_affine(gamma, beta, mean, var, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm as ``y = x * alpha + beta'``: ``alpha = gamma / sqrt(var + eps)``,
    ``beta' = beta - mean * alpha`` (float32, differentiable)."""
    alpha = gamma / torch.sqrt(var + eps)
    return alpha, beta - mean * alpha


def backward_input_values(partial: torch.Tensor, m: torch.Tensor, w_scale: torch.Tensor, gbits: int) -> torch.Tensor:
    """Input gradient from per-sample integer sums ``sum((2c - n_g) * c_w)``:
    ``partial_b * (m_b * w_scale / n_g)`` (float64 arithmetic, float32 result)."""
    n = levels(gbits)
    shape = (-1,) + (1,) * (partial.dim() - 1)
    factor = m.to(torch.float64) * float(w_scale) / n
    return (partial.to(torch.float64) * factor.reshape(shape)).to(torch.float32)


def scale_parts(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(M, e)`` (int64) with ``m = M * 2**e`` exactly: the float32 significand
    as an integer below ``2**24`` and its exponent (:func:`sw.contract.gradients.scale_parts`)."""
    mantissa, exponent = torch.frexp(m.to(torch.float32))
    significand = (mantissa.to(torch.float64) * (1 << SCALE_MANTISSA_BITS)).to(torch.int64)
    exponent = exponent.to(torch.int64) - SCALE_MANTISSA_BITS
    return significand, torch.where(significand == 0, 0, exponent)


def batch_shifts(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(M, shift, E)`` of a batch's scales (:func:`sw.contract.gradients.batch_shifts`)."""
    significand, exponent = scale_parts(m)
    nonzero = significand != 0
    top = int(exponent[nonzero].max()) if bool(nonzero.any()) else 0
    return significand, torch.where(nonzero, top - exponent, 0), top


_LIMB = 32
_LIMB_MASK = (1 << _LIMB) - 1
_HALF = _LIMB // 2
_HALF_MASK = (1 << _HALF) - 1


def aligned_batch_sum(partials: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The batch sum ``S = sum_b floor(M_b I_b 2**(GUARD_BITS - shift_b))`` of
    :mod:`sw.contract.gradients`, per weight, as ``(hi, lo, E)``: ``S = hi * 2**32 + lo``
    (int64 tensors, ``0 <= lo < 2**32``) and the batch's largest exponent ``E``.

    ``partials`` ``(B, ...)``: the per-sample integers ``I_b`` (int64, or floats holding
    exact integers); ``m`` ``(B,)``: the float32 gradient scales."""
    significand, shift, top = batch_shifts(m)
    batch = partials.shape[0]
    ints = partials.to(torch.int64).reshape(batch, -1)
    largest = int(ints.abs().max()) if ints.numel() else 0
    if batch * largest >= 1 << (62 - SCALE_MANTISSA_BITS):
        raise ValueError(f"partial sums up to {largest} over {batch} samples overflow the batch sum's int64 limbs")
    # A sample within the guard bits adds I_b * (M_b << (G - shift_b)) exactly: split that
    # factor into a high part and two 16-bit limbs, and the batch sum is three integer
    # matrix products with no term wider than 62 bits.
    factors = torch.zeros(3, batch, dtype=torch.int64)
    truncated = []
    for b, (mantissa, k) in enumerate(zip(significand.tolist(), shift.tolist())):
        if k <= GUARD_BITS:
            factor = mantissa << (GUARD_BITS - k)
            factors[:, b] = torch.tensor([factor >> _LIMB, (factor >> _HALF) & _HALF_MASK, factor & _HALF_MASK])
        else:
            truncated.append((b, mantissa, k - GUARD_BITS))
    hi, mid, low = factors @ ints
    # A sample shifted past the guard bits: floor(M_b I_b / 2**(shift_b - G)), whole.
    for b, mantissa, k in truncated:
        term = torch.bitwise_right_shift(ints[b] * mantissa, min(k, 63))
        hi = hi + torch.bitwise_right_shift(term, _LIMB)
        mid = mid + torch.bitwise_and(torch.bitwise_right_shift(term, _HALF), _HALF_MASK)
        low = low + torch.bitwise_and(term, _HALF_MASK)
    # Carry the limbs: S = hi * 2**32 + mid * 2**16 + low.
    mid = mid + torch.bitwise_right_shift(low, _HALF)
    hi = hi + torch.bitwise_right_shift(mid, _HALF)
    lo = torch.bitwise_or(torch.bitwise_left_shift(torch.bitwise_and(mid, _HALF_MASK), _HALF),
                          torch.bitwise_and(low, _HALF_MASK))
    shape = partials.shape[1:]
    return hi.reshape(shape), lo.reshape(shape), top


def sum_limbs(sums) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hi, lo)`` int64 tensors of batch sums given as Python ints (any array shape,
    e.g. read from a core): ``S = hi * 2**32 + lo``, ``0 <= lo < 2**32``, as
    :func:`aligned_batch_sum` gives them.  ``OverflowError`` for ``S`` outside ``[-2**95, 2**95)``."""
    sums = np.asarray(sums, dtype=object)
    hi = np.array([int(v) >> _LIMB for v in sums.ravel()], dtype=object)
    if hi.size and (min(hi) < -(1 << 63) or max(hi) >= 1 << 63):
        raise OverflowError("a batch sum of 2**95 or more does not fit the int64 limbs")
    lo = [int(v) & _LIMB_MASK for v in sums.ravel()]
    return (torch.tensor(hi.astype(np.int64), dtype=torch.int64).reshape(sums.shape),
            torch.tensor(lo, dtype=torch.int64).reshape(sums.shape))


_NARROW_HI = 1 << 52  # |hi| below this: |S| < 2**84, every limb of |S| exact in float64


def truncated_sum_value(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """:func:`sw.contract.gradients.truncate_sum` of ``S = hi * 2**32 + lo`` (int64 limbs as
    :func:`aligned_batch_sum` gives them), exactly, as float64: ``|S|`` with its bits below
    its :data:`~sw.contract.gradients.SUM_SIGNIFICAND_BITS` leading ones cleared, the sign kept."""
    negative = hi < 0
    borrow = negative & (lo != 0)
    # |S| = mag_hi * 2**32 + mag_lo, 0 <= mag_lo < 2**32 (for the narrow values, below).
    mag_hi = torch.where(negative, -hi - borrow.to(torch.int64), hi)
    mag_lo = torch.where(borrow, (1 << _LIMB) - lo, lo)
    narrow = (hi > -_NARROW_HI) & (hi < _NARROW_HI)  # (not abs: -2**63 has none in int64)
    mag_hi = torch.where(narrow, mag_hi, 0)  # the wide values are made below
    # bit_length of a non-negative int64 below 2**53: frexp's exponent (exact in float64; 0 for 0).
    length = torch.where(mag_hi > 0, _LIMB + torch.frexp(mag_hi.to(torch.float64))[1].to(torch.int64),
                         torch.frexp(mag_lo.to(torch.float64))[1].to(torch.int64))
    drop = torch.clamp(length - SUM_SIGNIFICAND_BITS, min=0)
    drop_hi = torch.clamp(drop - _LIMB, min=0)
    drop_lo = torch.clamp(drop, max=_LIMB)
    kept_hi = torch.bitwise_left_shift(torch.bitwise_right_shift(mag_hi, drop_hi), drop_hi)
    kept_lo = torch.bitwise_left_shift(torch.bitwise_right_shift(mag_lo, drop_lo), drop_lo)
    # At most 24 significant bits in all: the float64 sum is exact.
    value = kept_hi.to(torch.float64) * float(1 << _LIMB) + kept_lo.to(torch.float64)
    value = torch.where(negative, -value, value)
    wide = ~narrow
    if bool(wide.any()):  # rare: truncate those from Python's exact integers
        exact = [float(truncate_sum((int(h) << _LIMB) | int(l))) for h, l in zip(hi[wide].tolist(),
                                                                                 lo[wide].tolist())]
        value[wide] = torch.tensor(exact, dtype=torch.float64)
    return value


def aligned_sum_value(hi: torch.Tensor, lo: torch.Tensor, top: int) -> torch.Tensor:
    """``truncate_sum(S) * 2**(E - GUARD_BITS)`` (float64, exact) for ``S = hi * 2**32 + lo``:
    ``S`` truncated toward zero to 24 significant bits (:func:`truncated_sum_value`), then
    scaled by a power of two.  Every engine's sums (host, core) reach the gradient here."""
    return torch.ldexp(truncated_sum_value(hi, lo), torch.tensor(top - GUARD_BITS, dtype=torch.float64))


def weight_gradient(hi: torch.Tensor, lo: torch.Tensor, top: int, a_scale: torch.Tensor, gbits: int) -> torch.Tensor:
    """Weight gradient from the batch sum ``S = hi * 2**32 + lo`` of :mod:`sw.contract.gradients`
    (made by :func:`aligned_batch_sum` or on a core, whole or already truncated) and the batch's
    largest exponent ``top``: ``float32(truncate_sum(S) * 2**(E - GUARD_BITS) * (a_scale / n_g))``,
    the products in float64."""
    return (aligned_sum_value(hi, lo, top) * (float(a_scale) / levels(gbits))).to(torch.float32)


def backward_weight_values(partials: torch.Tensor, m: torch.Tensor, a_scale: torch.Tensor, gbits: int) -> torch.Tensor:
    """Weight gradient from per-sample integer sums ``I_b = sum((2c - n_g) * p)``:
    :func:`weight_gradient` of their batch sum (:func:`aligned_batch_sum`), which a
    core can make exactly from the integers and each sample's scale."""
    return weight_gradient(*aligned_batch_sum(partials, m), a_scale, gbits)


# --------------------------------------------------------------------------- fused activation unit

def activation_from_accumulator(acc, scale, alpha, beta, act_bits: int) -> torch.Tensor:
    """Activation codes of the float path for integer accumulators ``acc`` (B, C, ...):
    ``activation_codes(affine(accumulator_to_value(acc, scale), alpha, beta))``."""
    return activation_codes(affine(accumulator_to_value(acc, scale), alpha, beta), act_bits)


def fold_thresholds(scale, alpha, beta, act_bits: int, acc_min: int, acc_max: int):
    """Fold scale, BN (``alpha``, ``beta`` per channel), clip and quantize into thresholds.

    Returns ``(thresholds, direction)``: ``thresholds`` is int64 ``(C, n_a)``,
    ``direction`` int64 ``(C,)``: ``+1`` (code = #``{i: acc >= T_i}``, BN scale
    ``alpha >= 0``) or ``-1`` (code = #``{i: acc <= T_i}``, ``alpha < 0``).  A zero
    scale makes the code a constant ``k``: its thresholds come out as ``acc_min``
    for the first ``k`` levels and ``acc_max + 1`` for the rest.  See
    :func:`apply_thresholds`.

    Each threshold is found by binary search over integer accumulators in
    ``[acc_min, acc_max]`` on :func:`activation_from_accumulator` itself, so the
    integer unit equals the float path for every accumulator in that range.
    Unreachable levels get ``acc_max + 1`` (direction +1) or ``acc_min - 1`` (direction -1).
    """
    n = levels(act_bits)
    alpha = alpha.detach().to(torch.float32).reshape(-1)
    beta = beta.detach().to(torch.float32).reshape(-1)
    channels = alpha.numel()
    level = torch.arange(1, n + 1, dtype=torch.int64).reshape(1, n)

    def code_at(acc):  # acc: (C, n) int64; channels sit on axis 1 in the float path
        return activation_from_accumulator(acc.t(), scale, alpha, beta, act_bits).t()

    direction = torch.where(alpha < 0, -1, 1).to(torch.int64)
    positive = (direction > 0).reshape(-1, 1)
    lo = torch.full((channels, n), acc_min, dtype=torch.int64)
    hi = torch.full((channels, n), acc_max + 1, dtype=torch.int64)
    # Direction +1: smallest acc with code >= i (code non-decreasing in acc).
    # Direction -1: largest acc with code >= i, i.e. the smallest acc with code < i, less 1.
    while bool((lo < hi).any()):
        mid = (lo + hi) // 2
        code = code_at(mid)
        ok = torch.where(positive, code >= level, code < level)
        hi = torch.where(ok & (lo < hi), mid, hi)
        lo = torch.where(~ok & (lo < hi), mid + 1, lo)
    thresholds = torch.where(positive, lo, lo - 1)
    return thresholds, direction


def apply_thresholds(acc: torch.Tensor, thresholds: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Codes from accumulators ``acc`` (B, C, ...): the number of thresholds passed."""
    shape = (1, -1) + (1,) * (acc.dim() - 2)
    acc = acc.to(torch.int64).unsqueeze(-1)
    t = thresholds.reshape(shape + (thresholds.shape[-1],))
    d = direction.reshape(shape + (1,))
    passed = torch.where(d >= 0, acc >= t, acc <= t)
    return passed.sum(dim=-1)
