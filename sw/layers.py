"""Layers of the float golden model: quantized conv / FC, BatchNorm, and the block
(product -> BN -> max-pool -> clip + quantize) that the hardware fuses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import numeric
from .products import ConvGeometry, LinearGeometry, QuantizedProduct, TorchEngine
from .quantizers import GradientQuantizer, activation_input_codes, quantize_activation, quantize_weight

__all__ = ["QuantConv2d", "QuantLinear", "BatchNorm", "Block"]


class _QuantProduct(nn.Module):
    """Shared machinery of :class:`QuantConv2d` and :class:`QuantLinear`.

    ``weight_bits`` quantizes the weights, ``input_bits`` is the bitwidth of
    the activations this layer receives (their codes are recovered exactly,
    see :func:`sw.quantizers.activation_input_codes`), ``grad_bits`` quantizes
    the gradient arriving at the output.  32 means full precision.
    """

    def __init__(self, weight_shape, geometry, *, bias, weight_bits, input_bits, grad_bits):
        super().__init__()
        self.weight_bits = numeric.check_bits(weight_bits, "weight bits")
        self.input_bits = numeric.check_bits(input_bits, "input activation bits")
        self.grad_bits = numeric.check_bits(grad_bits, "gradient bits")
        self.geometry = geometry
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        self.engine = TorchEngine()
        self.grad_quantizer: GradientQuantizer | None = None
        self.trace: list | None = None  # a list to record each call's integers into
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's default for conv/linear layers.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def quantized(self) -> bool:
        """True when the forward product runs on integer codes."""
        return self.weight_bits != numeric.FULL_PRECISION and self.input_bits != numeric.FULL_PRECISION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, wq = quantize_weight(self.weight, self.weight_bits)
        xq = None if self.input_bits == numeric.FULL_PRECISION else activation_input_codes(x, self.input_bits)
        quantizer = None if self.grad_bits == numeric.FULL_PRECISION else self.grad_quantizer
        if self.grad_bits != numeric.FULL_PRECISION and quantizer is None and torch.is_grad_enabled():
            raise RuntimeError("gradient noise is not set: call model.set_gradient_noise(...) before training")
        record = None
        if self.trace is not None:
            record = {"x": xq, "w": wq}
            self.trace.append(record)
        y = QuantizedProduct.apply(x, w, self.geometry, self.engine, xq, wq, quantizer, record)
        if self.bias is not None:
            y = numeric.affine(y, torch.ones_like(self.bias), self.bias)
        return y


class QuantConv2d(_QuantProduct):
    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, bias=False,
                 weight_bits=32, input_bits=32, grad_bits=32):
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), ConvGeometry(stride, padding),
                         bias=bias, weight_bits=weight_bits, input_bits=input_bits, grad_bits=grad_bits)

    def extra_repr(self):
        o, i, k, _ = self.weight.shape
        return (f"{i}, {o}, kernel_size={k}, stride={self.geometry.stride}, padding={self.geometry.padding}, "
                f"bits=(W{self.weight_bits}, A{self.input_bits}, G{self.grad_bits})")


class QuantLinear(_QuantProduct):
    def __init__(self, in_features, out_features, *, bias=True, weight_bits=32, input_bits=32, grad_bits=32):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        super().__init__((out_features, in_features), LinearGeometry(),
                         bias=bias, weight_bits=weight_bits, input_bits=input_bits, grad_bits=grad_bits)

    def extra_repr(self):
        o, i = self.weight.shape
        return f"{i}, {o}, bits=(W{self.weight_bits}, A{self.input_bits}, G{self.grad_bits})"


class BatchNorm(nn.Module):
    """BatchNorm over axis 1 written as ``x * alpha + beta'`` (:func:`sw.numeric.bn_affine`).

    Training uses batch statistics and updates running ones (``momentum`` is
    the weight of the new batch, as in torch); evaluation uses the running
    statistics, which :func:`sw.numeric.fold_thresholds` folds into the
    activation unit's thresholds.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-4, momentum: float = 0.1):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an integer >= 1, got {num_features!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, beta')`` of the evaluation-mode affine map."""
        with torch.no_grad():
            return numeric.bn_affine(self.weight, self.bias, self.running_mean, self.running_var, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                count = x.numel() // x.shape[1]
                unbiased = var * (count / max(count - 1, 1))
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
            alpha, beta = numeric.bn_affine(self.weight, self.bias, mean, var, self.eps)
        else:
            alpha, beta = numeric.bn_affine(self.weight, self.bias, self.running_mean, self.running_var, self.eps)
        return numeric.affine(x, alpha, beta)

    def extra_repr(self):
        return f"{self.weight.numel()}, eps={self.eps}, momentum={self.momentum}"


class Block(nn.Module):
    """``product -> [BN] -> [max-pool k x k] -> [clip + quantize to act_bits]``.

    This is the unit the hardware fuses: BN, clip and quantize become
    thresholds on the product's accumulator, and max-pool runs on the codes
    (quantization is monotone, so pooling before or after it is the same).
    ``act_bits=None`` leaves the output unquantized (the logits of the last FC).
    """

    def __init__(self, product: _QuantProduct, *, bn: BatchNorm | None = None, pool: int | None = None,
                 act_bits: int | None = None, flatten: bool = False):
        super().__init__()
        if pool is not None and (not isinstance(pool, int) or pool < 1):
            raise ValueError(f"pool must be an integer >= 1 or None, got {pool!r}")
        self.product = product
        self.bn = bn
        self.pool = pool
        self.act_bits = None if act_bits is None else numeric.check_bits(act_bits, "activation bits")
        self.flatten = flatten
        self.codes: torch.Tensor | None = None  # output codes of the last forward when tracing

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            x = x.flatten(1)
        y = self.product(x)
        if self.bn is not None:
            y = self.bn(y)
        if self.pool is not None:
            y = F.max_pool2d(y, self.pool)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pre_activation(x)
        if self.act_bits is None:
            return y
        y, q = quantize_activation(y, self.act_bits)
        if self.product.trace is not None:
            self.codes = None if q is None else q.codes
        return y
