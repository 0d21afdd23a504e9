"""Code widths: the one definition of ``n = 2**k - 1`` and of the widths allowed.

A k-bit quantizer has codes ``0 .. n``, ``n = 2**k - 1`` (:func:`levels`).
Weights, activations and gradients are 1 .. :data:`MAX_CODE_BITS` bits wide,
or :data:`FULL_PRECISION` (32), meaning "not quantized" (no codes).
"""

from __future__ import annotations

__all__ = ["FULL_PRECISION", "MAX_CODE_BITS", "ALLOWED_BITS", "check_bits", "levels", "levels_or_none"]

#: Widest code the host and the hardware handle.
MAX_CODE_BITS = 8
#: The bitwidth that means "not quantized".
FULL_PRECISION = 32
#: Every bitwidth a layer's W, A or G may have.
ALLOWED_BITS = (*range(1, MAX_CODE_BITS + 1), FULL_PRECISION)


def check_bits(bits, what: str = "bitwidth") -> int:
    """Return ``bits`` as an int, or raise ``ValueError`` naming the allowed values."""
    allowed = f"one of 1..{MAX_CODE_BITS} or {FULL_PRECISION} (no quantization)"
    if isinstance(bits, bool) or not isinstance(bits, int):
        try:
            if isinstance(bits, bool) or int(bits) != bits:
                raise ValueError
            bits = int(bits)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be {allowed}, got {bits!r}") from None
    if bits not in ALLOWED_BITS:
        raise ValueError(f"{what} must be {allowed}, got {bits}")
    return bits


def levels(bits) -> int:
    """``n = 2**k - 1``, the largest code of a k-bit quantizer (``k`` in 1..8)."""
    bits = check_bits(bits)
    if bits == FULL_PRECISION:
        raise ValueError(f"{FULL_PRECISION} bits means 'not quantized': there are no codes")
    return (1 << bits) - 1


def levels_or_none(bits, signed: bool) -> int | None:
    """How one side of a product reads its codes: ``levels(bits)`` for signed odd
    codes ``2q - n``, ``None`` for unsigned codes ``q`` (the ``levels`` arguments of
    :func:`sw.bitplanes.signed_matmul`)."""
    return levels(bits) if signed else None
