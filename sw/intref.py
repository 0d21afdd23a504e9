"""The integer reference: what the hardware computes, on integer codes only.

Numpy on int64 throughout.  Products go through :mod:`sw.bitplanes` (AND +
popcount over bit planes, paper Eqn 3); scales, thresholds and the gradient
quantizer come from :mod:`sw.numeric`, the single definition shared with the
float model and the hardware scoreboards.
"""

from __future__ import annotations

import numpy as np

__all__ = ["maxpool_codes"]


def maxpool_codes(codes: np.ndarray, kernel: int, stride: int | None = None) -> np.ndarray:
    """Max-pool integer codes ``(B, C, H, W)`` with a ``kernel x kernel`` window and
    ``stride`` (default ``kernel``); no padding, partial windows dropped (floor).

    Runs after thresholding: quantization is monotone, so
    ``quantize(max(x)) = max(quantize(x))`` (paper Eqn 15).
    """
    stride = kernel if stride is None else stride
    if kernel < 1 or stride < 1:
        raise ValueError(f"kernel and stride must be >= 1, got kernel={kernel}, stride={stride}")
    codes = np.asarray(codes)
    if codes.ndim != 4:
        raise ValueError(f"codes must be (B, C, H, W), got shape {codes.shape}")
    b, c, h, w = codes.shape
    if h < kernel or w < kernel:
        raise ValueError(f"feature map {h}x{w} is smaller than the {kernel}x{kernel} window")
    oh = (h - kernel) // stride + 1
    ow = (w - kernel) // stride + 1
    out = None
    for dy in range(kernel):
        for dx in range(kernel):
            tap = codes[:, :, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride]
            out = tap.copy() if out is None else np.maximum(out, tap)
    return out
