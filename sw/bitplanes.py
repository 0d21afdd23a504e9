"""Bit planes and the AND + popcount dot product (paper Eqn 3) on packed 64-bit words.

For unsigned codes ``x`` (M bits) and ``y`` (K bits)::

    sum(x * y) = sum_m sum_k 2**(m + k) * popcount(x_m AND y_k)

where ``x_m`` is bit plane ``m`` of ``x``.  Signed odd codes reduce to it
(:func:`signed_dot`): ``(2q - n)`` with ``q`` unsigned.

Everything here is numpy on integers; it is the model of the hardware's
popcount trees and bit-plane processing elements.

``x`` and ``y`` are two symmetric operands of ``x @ y.T`` (both code
matrices), not the hardware's matrix/vector roles: the core model and the
scoreboards call ``signed_matmul(vectors, ..., matrix, ...)``, so there ``x``
is the vector side (``v_bits``) and ``y`` the matrix side (``m_bits``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["popcount", "bit_planes", "pack_planes", "plane_matmul", "signed_matmul", "code_bits"]

WORD_BITS = 64


def popcount(x) -> np.ndarray:
    """Number of set bits of each element of a non-negative integer array (int64)."""
    x = np.asarray(x)
    if x.dtype == object:  # Python ints wider than 64 bits
        if any(int(v) < 0 for v in x.ravel()):
            raise ValueError("popcount is defined here for non-negative integers only")
        return np.array([bin(int(v)).count("1") for v in x.ravel()], dtype=np.int64).reshape(x.shape)
    if np.issubdtype(x.dtype, np.signedinteger) and (x < 0).any():
        raise ValueError("popcount is defined here for non-negative integers only")
    return np.bitwise_count(x.astype(np.uint64, copy=False)).astype(np.int64)


def code_bits(max_code: int) -> int:
    """Bits needed for unsigned codes ``0..max_code``."""
    return max(1, int(max_code).bit_length())


def bit_planes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Bit planes of unsigned codes: array of shape ``(bits,) + codes.shape`` of 0/1 (uint8)."""
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any() or (codes >> bits).any():
        raise ValueError(f"codes must be in [0, {2**bits - 1}] for {bits} bit planes")
    return np.stack([(codes >> b) & 1 for b in range(bits)]).astype(np.uint8)


def pack_planes(planes: np.ndarray) -> np.ndarray:
    """Pack 0/1 planes along the last axis into 64-bit words (little-endian bit order)."""
    planes = np.asarray(planes, dtype=np.uint8)
    length = planes.shape[-1]
    words = -(-length // WORD_BITS)
    padded = np.zeros(planes.shape[:-1] + (words * WORD_BITS,), dtype=np.uint8)
    padded[..., :length] = planes
    packed = np.packbits(padded, axis=-1, bitorder="little")  # bytes
    return packed.view(np.uint64) if packed.flags.c_contiguous else np.ascontiguousarray(packed).view(np.uint64)


def plane_matmul(x: np.ndarray, x_bits: int, y: np.ndarray, y_bits: int, chunk: int = 4096) -> np.ndarray:
    """``x @ y.T`` for unsigned codes ``x`` (P, K) and ``y`` (O, K) by Eqn 3 (int64 (P, O)).

    Each of the ``x_bits * y_bits`` plane pairs costs one AND + popcount over
    ``ceil(K/64)`` words per output.
    """
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"plane_matmul needs (P, K) and (O, K) operands, got {x.shape} and {y.shape}")
    xp = pack_planes(bit_planes(x, x_bits))  # (Mx, P, words)
    yp = pack_planes(bit_planes(y, y_bits))  # (My, O, words)
    out = np.zeros((x.shape[0], y.shape[0]), dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        for m in range(x_bits):
            xm = xp[m, start:stop, None, :]
            for k in range(y_bits):
                counts = np.bitwise_count(xm & yp[k][None, :, :]).sum(axis=-1, dtype=np.int64)
                out[start:stop] += counts << (m + k)
    return out


def signed_matmul(x, x_levels: int | None, x_bits: int, y, y_levels: int | None, y_bits: int) -> np.ndarray:
    """``x_s @ y_s.T`` where each operand is unsigned codes ``q`` read either as
    themselves (``levels=None``) or as signed odd codes ``2q - n`` (``levels=n``).

    ``sum((2a - n_x)(2b - n_y)) = 4 sum(ab) - 2 n_y sum(a) - 2 n_x sum(b) + n_x n_y K``,
    and with one side unsigned ``sum((2a - n_x) b) = 2 sum(ab) - n_x sum(b)``: one
    popcount product plus row sums, the corrections the hardware applies.
    """
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    core = plane_matmul(x, x_bits, y, y_bits)
    k = x.shape[1]
    sx = x.sum(axis=1)[:, None]
    sy = y.sum(axis=1)[None, :]
    if x_levels is None and y_levels is None:
        return core
    if x_levels is not None and y_levels is None:
        return 2 * core - x_levels * sy
    if x_levels is None and y_levels is not None:
        return 2 * core - y_levels * sx
    return 4 * core - 2 * y_levels * sx - 2 * x_levels * sy + x_levels * y_levels * k
