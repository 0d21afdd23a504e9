"""The three training products of a layer, on integer codes, behind one engine interface.

Every quantized conv/FC computes

* forward:         ``acc = sum(x * w)``             (activation codes x weight codes)
* backward-input:  ``dX_b = sum(g_b * w)``          (gradient codes x weight codes)
* backward-weight: ``dW_b = sum(g_b * x_b)``        (gradient codes x activation codes, per sample)

on integers, then scales them with :mod:`sw.numeric`.  *Who* computes the
integer sums is an engine:

* :class:`TorchEngine` (here): torch convolutions on the integers held exactly
  in floating point; the float golden model's engine;
* :class:`sw.intref.IntRefEngine`: bit planes, AND and popcount (paper Eqn 3),
  the model of the hardware;
* the hardware itself (a simulated or real core), through the host driver.

All engines must return identical integers; the float values that training
sees then agree bit for bit, because the scaling is shared code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from . import numeric
from .quantizers import Quantized

__all__ = ["ConvGeometry", "LinearGeometry", "Engine", "TorchEngine", "QuantizedProduct"]

_FLOAT32_EXACT = 1 << 24


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution (square kernel) with ``stride`` and zero ``padding``."""

    stride: int = 1
    padding: int = 0

    def forward(self, x, w):
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    def backward_input(self, g, w, input_shape):
        return torch.nn.grad.conv2d_input(input_shape, w, g, stride=self.stride, padding=self.padding)

    def backward_weight(self, x, g, weight_shape):
        return torch.nn.grad.conv2d_weight(x, weight_shape, g, stride=self.stride, padding=self.padding)

    def backward_weight_per_sample(self, x, g, weight_shape):
        """``(B, *weight_shape)``: one weight gradient per sample (im2col and a batched matmul)."""
        cols = F.unfold(x, weight_shape[2], padding=self.padding, stride=self.stride)  # (B, C*k*k, P)
        per_sample = torch.bmm(g.flatten(2), cols.transpose(1, 2))  # (B, O, C*k*k)
        return per_sample.reshape(x.shape[0], *weight_shape)

    @staticmethod
    def fan_in(weight_shape) -> int:
        return int(weight_shape[1] * weight_shape[2] * weight_shape[3])

    @staticmethod
    def fan_out(weight_shape) -> int:
        return int(weight_shape[0] * weight_shape[2] * weight_shape[3])


@dataclass(frozen=True)
class LinearGeometry:
    """A fully connected layer: ``x (B, K) @ w.T (K, O)``."""

    def forward(self, x, w):
        return x @ w.t()

    def backward_input(self, g, w, input_shape):
        return g @ w

    def backward_weight(self, x, g, weight_shape):
        return g.t() @ x

    def backward_weight_per_sample(self, x, g, weight_shape):
        return g.unsqueeze(2) * x.unsqueeze(1)

    @staticmethod
    def fan_in(weight_shape) -> int:
        return int(weight_shape[1])

    @staticmethod
    def fan_out(weight_shape) -> int:
        return int(weight_shape[0])


Geometry = ConvGeometry | LinearGeometry


class Engine(Protocol):
    """Computes the integer sums of the three products: int64 tensors, or
    floating-point tensors whose values are exact integers."""

    def forward(self, geometry: Geometry, x: Quantized, w: Quantized) -> torch.Tensor: ...

    def backward_input(self, geometry: Geometry, g: Quantized, w: Quantized, input_shape) -> torch.Tensor: ...

    def backward_weight(self, geometry: Geometry, x: Quantized, g: Quantized, weight_shape) -> torch.Tensor: ...

    # Optional: ``backward_weight_sum(geometry, x, g, weight_shape)``, the batch sum
    # (:func:`batch_weight_sum`), and ``backward_products(geometry, x, g, w, input_shape)``,
    # ``(backward_input, backward_weight_sum)`` made together (a core whose link then
    # carries each gradient once); either may answer ``None``: not here.


def _exact_float(terms: int, a: Quantized, b: Quantized) -> torch.dtype:
    """The cheapest float type in which a sum of ``terms`` products is exact."""
    return torch.float32 if terms * a.levels * b.levels < _FLOAT32_EXACT else torch.float64


class TorchEngine:
    """Integer sums by torch convolutions on integer-valued floats (exact by the bound check)."""

    def forward(self, geometry, x, w):
        dtype = _exact_float(geometry.fan_in(w.codes.shape), x, w)
        return geometry.forward(x.integers().to(dtype), w.integers().to(dtype)).to(torch.int64)

    def backward_input(self, geometry, g, w, input_shape):
        dtype = _exact_float(geometry.fan_out(w.codes.shape), g, w)
        return geometry.backward_input(g.integers().to(dtype), w.integers().to(dtype), input_shape).to(torch.int64)

    def backward_weight(self, geometry, x, g, weight_shape):
        positions = g.codes[0].numel() // g.codes.shape[1]
        dtype = _exact_float(positions, x, g)
        # Left in floating point (exact integers): the caller only scales them.
        return geometry.backward_weight_per_sample(x.integers().to(dtype), g.integers().to(dtype), weight_shape)


def batch_weight_sum(engine, geometry, xq: Quantized, gq: Quantized, weight_shape, record=None):
    """``(hi, lo, E)``: the batch sum of the weight's gradient (:mod:`sw.contract.gradients`),
    made by the engine where it can (``engine.backward_weight_sum``, e.g. on a core's
    sums; ``None`` where it cannot), else from its per-sample products
    (:func:`sw.numeric.aligned_batch_sum` of ``engine.backward_weight``).  ``record``
    gets ``backward_weight_sum`` and, where they were made, the per-sample
    ``backward_weight`` products."""
    on_engine = getattr(engine, "backward_weight_sum", None)
    total = on_engine(geometry, xq, gq, weight_shape) if on_engine is not None else None
    if total is None:
        partials = engine.backward_weight(geometry, xq, gq, weight_shape)
        total = numeric.aligned_batch_sum(partials, gq.scale)
        if record is not None:
            record["backward_weight"] = partials
    if record is not None:
        record["backward_weight_sum"] = total
    return total


class QuantizedProduct(torch.autograd.Function):
    """One conv/FC product: integer sums on the engine where both operands are
    quantized, float otherwise; gradient quantization at the output in backward.

    ``record`` (a dict or ``None``) receives the integers of each product so
    tests and the host driver can compare engines.
    """

    @staticmethod
    def forward(ctx, x, w, geometry, engine, xq, wq, grad_quantizer, record):
        ctx.geometry, ctx.engine = geometry, engine
        ctx.xq, ctx.wq, ctx.grad_quantizer, ctx.record = xq, wq, grad_quantizer, record
        ctx.save_for_backward(x, w)
        if xq is not None and wq is not None:
            acc = engine.forward(geometry, xq, wq)
            if record is not None:
                record["acc"] = acc
            return numeric.accumulator_to_value(acc, numeric.product_scale(xq.scale, wq.scale))
        return geometry.forward(x, w)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        geometry, engine, record = ctx.geometry, ctx.engine, ctx.record
        xq, wq, quantizer = ctx.xq, ctx.wq, ctx.grad_quantizer
        gq = None
        if quantizer is not None:
            gq, grad = quantizer(grad)
            if record is not None:
                record["grad_codes"], record["grad_scale"] = gq.codes, gq.scale
        grad_x = grad_w = None
        both = None  # both integer products at once, where the engine makes them so
        if ctx.needs_input_grad[0] and ctx.needs_input_grad[1] and None not in (gq, wq, xq):
            make_both = getattr(engine, "backward_products", None)
            both = make_both(geometry, xq, gq, wq, x.shape) if make_both is not None else None
            if both is not None and record is not None:
                record["backward_weight_sum"] = both[1]
        if ctx.needs_input_grad[0]:
            if gq is not None and wq is not None:
                partial = both[0] if both is not None else engine.backward_input(geometry, gq, wq, x.shape)
                grad_x = numeric.backward_input_values(partial, gq.scale, wq.scale, gq.bits)
                if record is not None:
                    record["backward_input"] = partial
            else:
                grad_x = geometry.backward_input(grad, w, x.shape)
        if ctx.needs_input_grad[1]:
            if gq is not None and xq is not None:
                total = both[1] if both is not None else batch_weight_sum(engine, geometry, xq, gq, tuple(w.shape),
                                                                          record)
                grad_w = numeric.weight_gradient(*total, xq.scale, gq.bits)
            else:
                grad_w = geometry.backward_weight(x, grad, w.shape)
        return grad_x, grad_w, None, None, None, None, None, None

