"""DoReFa networks built from :mod:`sw.layers`.

* :func:`svhn_net`: the authors' SVHN network (tensorpack ``svhn-digit-dorefa.py``):
  conv0 48@5x5 valid with bias + max-pool 2, conv1 64@3x3, conv2 64@3x3 + max-pool 2,
  conv3 128@3x3 valid, conv4 128@3x3, conv5 128@3x3 valid, conv6 512@5x5 valid,
  FC 10; 40x40 inputs.  ``width`` scales every channel count: the paper's
  Models A, B, C, D are ``width`` = 1, 0.5, 0.25, 0.125 (:data:`SVHN_MODELS`).
* :func:`digits_cnn`: a small network of the same blocks for 8x8 digits.

Every block after the first runs its product on W-bit weight codes and A-bit
activation codes, quantizes the gradient at its output to G bits, then BN,
optional max-pool, clip and A-bit quantize.  The first conv and the last FC
stay full precision unless ``quantize_first`` / ``quantize_last`` (paper
Table 3); the first conv's output is quantized regardless.  With
``quantize_first`` the input image is read as 8-bit codes.

Differences from the tensorpack reference, on purpose: the last conv's output
goes through the same clip + quantize as every other block (tensorpack uses
``min(1, |x|)`` unquantized), and there is no dropout (it would move
activations off the quantization grid the hardware needs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import numeric
from .layers import BatchNorm, Block, QuantConv2d, QuantLinear
from .quantizers import GradientNoise, GradientQuantizer, quantize_activation

__all__ = ["LayerSpec", "DoReFaNet", "svhn_net", "digits_cnn", "build_model", "MODELS", "SVHN_MODELS",
           "INPUT_BITS", "MAX_WIDTH"]

INPUT_BITS = 8  # the image, when the first layer is quantized
MAX_WIDTH = 8.0  # the largest channel-width multiplier (widths are in (0, MAX_WIDTH])
SVHN_MODELS = {"A": 1.0, "B": 0.5, "C": 0.25, "D": 0.125}


@dataclass(frozen=True)
class LayerSpec:
    """One conv block: ``channels@kernel`` with ``padding``, optional bias, BN, pool."""

    channels: int
    kernel: int
    padding: int = 0
    bias: bool = False
    bn: bool = True
    pool: int | None = None


class DoReFaNet(nn.Module):
    """Conv blocks then one FC, all on DoReFa quantizers with bitwidths ``bits = (W, A, G)``."""

    def __init__(self, convs: list[LayerSpec], *, in_channels: int, image_size: int, num_classes: int,
                 bits=(32, 32, 32), width: float = 1.0, quantize_first: bool = False,
                 quantize_last: bool = False):
        super().__init__()
        bits = tuple(bits)
        if len(bits) != 3:
            raise ValueError(f"bits must be (W, A, G), three of 1..8 or 32, got {bits!r}")
        w_bits, a_bits, g_bits = (numeric.check_bits(b, name) for b, name in zip(bits, ("W", "A", "G")))
        if not 0 < width <= MAX_WIDTH:
            raise ValueError(f"width multiplier must be in (0, {MAX_WIDTH:g}], got {width}")
        self.bits = (w_bits, a_bits, g_bits)
        self.quantize_first = bool(quantize_first)
        self.quantize_last = bool(quantize_last)
        self.input_bits = INPUT_BITS if quantize_first else numeric.FULL_PRECISION
        blocks = []
        channels, size = in_channels, image_size
        for index, spec in enumerate(convs):
            out = max(1, round(spec.channels * width))
            first = index == 0
            quantized = quantize_first or not first
            conv = QuantConv2d(channels, out, spec.kernel, padding=spec.padding, bias=spec.bias,
                               weight_bits=w_bits if quantized else 32,
                               input_bits=(self.input_bits if first else a_bits) if quantized else 32,
                               grad_bits=g_bits if quantized else 32)
            blocks.append(Block(conv, bn=BatchNorm(out) if spec.bn else None, pool=spec.pool, act_bits=a_bits))
            size = size + 2 * spec.padding - spec.kernel + 1
            if spec.pool:
                size //= spec.pool
            if size < 1:
                raise ValueError(f"{image_size}x{image_size} input is too small for this network (layer {index})")
            channels = out
        fc = QuantLinear(channels * size * size, num_classes, bias=True,
                         weight_bits=w_bits if quantize_last else 32,
                         input_bits=a_bits if quantize_last else 32,
                         grad_bits=g_bits if quantize_last else 32)
        blocks.append(Block(fc, flatten=True))
        self.blocks = nn.ModuleList(blocks)
        self.in_channels, self.image_size, self.num_classes = in_channels, image_size, num_classes

    def products(self) -> list:
        return [block.product for block in self.blocks]

    def set_engine(self, engine) -> None:
        """Run every integer product on ``engine`` (see :mod:`sw.products`)."""
        for product in self.products():
            product.engine = engine

    def set_gradient_noise(self, noise: GradientNoise, record: list | None = None) -> None:
        """Give every gradient-quantizing layer one shared noise source (and record list)."""
        for product in self.products():
            if product.grad_bits != numeric.FULL_PRECISION:
                product.grad_quantizer = GradientQuantizer(product.grad_bits, noise, record)

    def trace(self, enabled: bool = True) -> None:
        """Record each product's integers (``product.trace``) and block output codes."""
        for product in self.products():
            product.trace = [] if enabled else None

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_bits == numeric.FULL_PRECISION:
            return x
        return quantize_activation(x, self.input_bits)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected input (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                             f"got {tuple(x.shape)}")
        x = self.quantize_input(x)
        for block in self.blocks:
            x = block(x)
        return x


SVHN_LAYERS = [
    LayerSpec(48, 5, bias=True, bn=False, pool=2),
    LayerSpec(64, 3, padding=1),
    LayerSpec(64, 3, padding=1, pool=2),
    LayerSpec(128, 3),
    LayerSpec(128, 3, padding=1),
    LayerSpec(128, 3),
    LayerSpec(512, 5),
]

DIGITS_LAYERS = [
    LayerSpec(16, 3, padding=1, bias=True, bn=False),
    LayerSpec(32, 3, padding=1),
    LayerSpec(32, 3, padding=1, pool=2),
    LayerSpec(64, 3, padding=1),
    LayerSpec(64, 4),
]


def svhn_net(bits=(32, 32, 32), *, width: float = 1.0, in_channels: int = 3, image_size: int = 40,
             num_classes: int = 10, **switches) -> DoReFaNet:
    """The authors' SVHN network; ``width`` 1, 0.5, 0.25, 0.125 are Models A-D."""
    return DoReFaNet(SVHN_LAYERS, in_channels=in_channels, image_size=image_size, num_classes=num_classes,
                     bits=bits, width=width, **switches)


def digits_cnn(bits=(32, 32, 32), *, width: float = 1.0, in_channels: int = 1, image_size: int = 8,
               num_classes: int = 10, **switches) -> DoReFaNet:
    """A five-conv network for 8x8 digits: 8x8 -> 8x8 -> 4x4 (pool) -> 4x4 -> 1x1, then FC."""
    return DoReFaNet(DIGITS_LAYERS, in_channels=in_channels, image_size=image_size, num_classes=num_classes,
                     bits=bits, width=width, **switches)


MODELS = {"digits": digits_cnn, "svhn": svhn_net}


def build_model(name: str, bits=(32, 32, 32), *, width: float = 1.0, **kwargs) -> DoReFaNet:
    """``name`` is ``digits``, ``svhn`` or ``svhn-A`` .. ``svhn-D`` (the paper's channel widths).

    ``width`` multiplies the named model's own width: ``svhn-C`` (0.25) at
    ``width=2`` has the channels of ``svhn-B`` (0.5).  Other keyword arguments
    go to the network's builder (:func:`svhn_net`, :func:`digits_cnn`).
    """
    if name in MODELS:
        return MODELS[name](bits, width=width, **kwargs)
    if name.startswith("svhn-") and name[5:] in SVHN_MODELS:
        return svhn_net(bits, width=SVHN_MODELS[name[5:]] * width, **kwargs)
    allowed = sorted(MODELS) + [f"svhn-{m}" for m in SVHN_MODELS]
    raise ValueError(f"unknown model {name!r}; allowed: {', '.join(allowed)}")
