"""The integer reference: what the hardware computes, on integer codes only.

* :class:`IntRefEngine` computes the three training products of conv and FC
  layers (forward, backward-input, backward-weight) with numpy on bit planes,
  AND and popcount (:mod:`sw.bitplanes`, paper Eqn 3).  It plugs into the
  golden model in place of :class:`sw.products.TorchEngine`
  (``model.set_engine(IntRefEngine())``), so a training step on it is the
  hardware's arithmetic with the host's float work (BN, loss, optimizer) around
  it.
* :func:`integer_inference` runs a trained network the way the inference
  hardware does: integer products, BN + clip + quantize folded into
  per-channel thresholds (:func:`sw.numeric.fold_thresholds`), max-pool on
  codes (:func:`maxpool_codes`).

Scales, thresholds and the gradient quantizer come from :mod:`sw.numeric`,
the single definition shared with the float model and every scoreboard.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import numeric
from .bitplanes import signed_matmul
from .products import LinearGeometry
from .quantizers import Quantized, quantize_weight

__all__ = ["GemmEngine", "IntRefEngine", "conv_output_size", "im2col", "col2im", "flipped_kernel", "transposed_input",
           "group_max_codes", "maxpool_codes", "integer_inference", "BlockThresholds", "block_thresholds",
           "accumulator_bound"]


# --------------------------------------------------------------------------- layout helpers

def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output positions along a side of ``size`` inputs: ``(size + 2 padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
    """``(B, C, H, W)`` -> ``(B, OH, OW, C*k*k)`` receptive fields (zero padded), and ``OH, OW``.

    The last axis is ordered ``(C, ky, kx)``, matching ``weight.reshape(O, -1)``.
    """
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = conv_output_size(h, kernel, stride, padding), conv_output_size(w, kernel, stride, padding)
    cols = np.empty((b, oh, ow, c, kernel, kernel), dtype=x.dtype)
    for dy in range(kernel):
        for dx in range(kernel):
            tap = xp[:, :, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride]
            cols[:, :, :, :, dy, dx] = tap.transpose(0, 2, 3, 1)
    return cols.reshape(b, oh, ow, c * kernel * kernel), oh, ow


def col2im(cols: np.ndarray, shape, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum ``(B, OH, OW, C*k*k)`` back into ``shape = (B, C, H, W)``."""
    b, c, h, w = shape
    _, oh, ow, _ = cols.shape
    cols = cols.reshape(b, oh, ow, c, kernel, kernel)
    out = np.zeros((b, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for dy in range(kernel):
        for dx in range(kernel):
            out[:, :, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride] += \
                cols[:, :, :, :, dy, dx].transpose(0, 3, 1, 2)
    return out[:, :, padding:padding + h, padding:padding + w]


def group_max_codes(codes: np.ndarray, group: int) -> np.ndarray:
    """Per row, the max code of each group of ``group`` consecutive vectors: ``(count, rows)``
    codes to ``(count // group, rows)``.  A window pooled ``p x p`` makes each pooling
    window's ``p**2`` positions consecutive vectors (:mod:`sw.contract.window`), so with
    ``group = p**2`` this is their :func:`maxpool_codes` (``hw.group_max.GroupMax``)."""
    codes = np.asarray(codes)
    if group < 1 or codes.ndim != 2 or codes.shape[0] % group:
        raise ValueError(f"codes must be (count, rows) with count a multiple of group >= 1, "
                         f"got {codes.shape} and group {group}")
    return codes.reshape(-1, group, codes.shape[1]).max(axis=1)


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
    _, _, h, w = codes.shape
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


# --------------------------------------------------------------------------- products

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64, copy=False)


class GemmEngine:
    """The three products of conv and FC layers as GEMMs on integer codes.

    Conv layers are lowered by :func:`im2col` / :func:`col2im`; a subclass
    supplies :meth:`matmul`, the only arithmetic: the integer reference
    (:class:`IntRefEngine`) or a core behind the host link
    (:class:`sw.core_engine.CoreEngine`).  Results are int64 tensors.
    """

    def matmul(self, a: Quantized, a_codes: np.ndarray, b: Quantized, b_codes: np.ndarray) -> np.ndarray:
        """``A @ B.T`` for codes ``a_codes`` (N, K) and ``b_codes`` (M, K) read as ``a``, ``b`` say."""
        raise NotImplementedError

    def matmul_activate(self, a: Quantized, a_codes: np.ndarray, b: Quantized, b_codes: np.ndarray,
                        unit: "BlockThresholds") -> torch.Tensor:
        """Activation codes (N, M) of :meth:`matmul`'s accumulators through ``unit``'s
        thresholds (one channel per row of B); a core may do this on chip."""
        acc = torch.from_numpy(self.matmul(a, a_codes, b, b_codes))
        return numeric.apply_thresholds(acc, unit.thresholds, unit.direction)

    def forward(self, geometry, x: Quantized, w: Quantized) -> torch.Tensor:
        """Accumulators (B, O, ...) of the layer's forward product."""
        return self._lowered_forward(geometry, x, w, lambda xc, wc: self.matmul(x, xc, w, wc))

    def forward_activations(self, geometry, x: Quantized, w: Quantized, unit: "BlockThresholds") -> torch.Tensor:
        """Activation codes (B, O, ...) of the layer's forward product: :meth:`forward`
        then ``unit``'s thresholds (before pooling)."""
        return self._lowered_forward(geometry, x, w,
                                     lambda xc, wc: np.asarray(self.matmul_activate(x, xc, w, wc, unit)))

    def forward_pooled(self, geometry, x: Quantized, w: Quantized, unit: "BlockThresholds") -> torch.Tensor:
        """Activation codes of a block that max-pools (``unit.pool``), pooled: (B, O, OH //
        pool, OW // pool).  Here :meth:`forward_activations` then :func:`maxpool_codes`; an
        engine may pool where it thresholds."""
        return torch.from_numpy(maxpool_codes(self.forward_activations(geometry, x, w, unit).numpy(), unit.pool))

    @staticmethod
    def _lowered_forward(geometry, x: Quantized, w: Quantized, gemm) -> torch.Tensor:
        xc, wc = _np(x.codes), _np(w.codes)
        if isinstance(geometry, LinearGeometry):
            return torch.from_numpy(np.asarray(gemm(xc, wc), dtype=np.int64))
        o, _, k, _ = wc.shape
        cols, oh, ow = im2col(xc, k, geometry.stride, geometry.padding)
        out = np.asarray(gemm(cols.reshape(-1, cols.shape[-1]), wc.reshape(o, -1)), dtype=np.int64)
        return torch.from_numpy(out.reshape(xc.shape[0], oh, ow, o).transpose(0, 3, 1, 2).copy())

    def backward_input(self, geometry, g: Quantized, w: Quantized, input_shape) -> torch.Tensor:
        gc, wc = _np(g.codes), _np(w.codes)
        if isinstance(geometry, LinearGeometry):
            return torch.from_numpy(self.matmul(g, gc, w, np.ascontiguousarray(wc.T)))
        if (geometry.stride == 1 and geometry.padding < wc.shape[2]
                and self.transposed_backward_input(geometry, g, w, input_shape)):
            return self._transposed_backward_input(geometry, g, w, input_shape)
        b, o, oh, ow = gc.shape
        k = wc.shape[2]
        rows = self.matmul(g, gc.transpose(0, 2, 3, 1).reshape(-1, o), w,
                           np.ascontiguousarray(wc.reshape(o, -1).T))
        cols = rows.reshape(b, oh, ow, -1)
        return torch.from_numpy(col2im(cols, tuple(input_shape), k, geometry.stride, geometry.padding).copy())

    def transposed_backward_input(self, geometry, g: Quantized, w: Quantized, input_shape) -> bool:
        """Whether :meth:`backward_input` lowers a stride-1 conv as the transposed
        convolution (:meth:`_transposed_backward_input`: ``C`` sums per input position)
        rather than as ``C*k*k`` sums per output position folded back by :func:`col2im`.
        Both are exact; an engine behind a link picks the one with fewer bytes on it.
        Here: never."""
        return False

    def _transposed_backward_input(self, geometry, g: Quantized, w: Quantized, input_shape) -> torch.Tensor:
        """The transposed convolution: patches of the gradient codes zero-padded by
        ``k - 1 - padding`` (``O*k*k`` each, one per input position) against the flipped
        kernel (``C`` rows).  Padding has no code of value 0 in the signed reading
        (``2q - n``), so the patches are read unsigned (``q``; padding ``q = 0``) and
        ``n`` times the in-bounds taps' weight sum, which depends on no data, is taken
        off on the host: ``sum (2q - n) w = 2 sum q w - n sum_in-bounds w``."""
        gc = _np(g.codes)
        flipped4 = flipped_kernel(w)
        pad = flipped4.shape[2] - 1 - geometry.padding
        out = self.transposed_products(replace(g, signed=False), gc, w, flipped4, pad)
        return transposed_input(g, w, input_shape, pad, out)

    def transposed_products(self, g: Quantized, gc: np.ndarray, w: Quantized, flipped: np.ndarray,
                            pad: int) -> np.ndarray:
        """``(B, H*W, C)``: the stride-1 convolution of the gradient codes ``gc``
        ``(B, O, OH, OW)``, read as ``g`` says (unsigned here), zero-padded by ``pad``, with
        the flipped kernel's codes ``flipped`` ``(C, O, k, k)``: :func:`im2col` patches
        against ``flipped.reshape(C, -1)`` (an engine may make the patches elsewhere)."""
        k = flipped.shape[2]
        patches, _, _ = im2col(gc, k, 1, pad)  # (B, H, W, O*k*k), ordered (o, ky, kx)
        plain = self.matmul(g, patches.reshape(-1, patches.shape[-1]), w, flipped.reshape(flipped.shape[0], -1))
        return plain.reshape(gc.shape[0], -1, flipped.shape[0])

    @staticmethod
    def backward_weight_operands(geometry, x: Quantized, g: Quantized, weight_shape) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, matrices)``, ``(B, N, P)`` and ``(B, O, P)`` codes: sample ``b``'s
        weight products are ``matmul(vectors[b], matrices[b])`` ``(N, O)``, the transpose
        of the weight's ``(O, N)`` (``N = C*k*k``) -- the gradient codes ``G_b`` (``O x P``,
        ``P`` output positions) are the matrix, the activation patches (one per weight
        column) the vectors."""
        xc, gc = _np(x.codes), _np(g.codes)
        b = xc.shape[0]
        if isinstance(geometry, LinearGeometry):
            return xc[:, :, None], gc[:, :, None]
        cols, _, _ = im2col(xc, weight_shape[2], geometry.stride, geometry.padding)
        cols = cols.reshape(b, -1, cols.shape[-1])  # (B, P, C*k*k)
        return np.ascontiguousarray(cols.transpose(0, 2, 1)), gc.reshape(b, gc.shape[1], -1)

    def backward_weight(self, geometry, x: Quantized, g: Quantized, weight_shape) -> torch.Tensor:
        """Per-sample products ``(B, *weight_shape)`` of the layer's backward-weight."""
        vectors, matrices = self.backward_weight_operands(geometry, x, g, weight_shape)
        per_sample = [self.matmul(x, vectors[i], g, matrices[i]).T for i in range(vectors.shape[0])]
        return torch.from_numpy(np.ascontiguousarray(np.stack(per_sample)).reshape((-1,) + tuple(weight_shape)))


def flipped_kernel(w: Quantized) -> np.ndarray:
    """``(C, O, k, k)``: a conv weight's codes ``(O, C, k, k)`` flipped and transposed, the
    kernel of its transposed convolution (:meth:`GemmEngine._transposed_backward_input`)."""
    return np.ascontiguousarray(_np(w.codes)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def transposed_input(g: Quantized, w: Quantized, input_shape, pad: int, products) -> torch.Tensor:
    """Backward-input ``(B, C, H, W)`` from the transposed convolution's products ``(B,
    H*W, C)`` of the gradient codes read unsigned, zero-padded by ``pad``, with
    :func:`flipped_kernel` (:meth:`GemmEngine._transposed_backward_input`): for a signed
    gradient ``2 * products - n * (the in-bounds taps' weight sum)``."""
    out = np.asarray(products, dtype=np.int64)
    b, o, oh, ow = g.codes.shape
    flipped = flipped_kernel(w).reshape(input_shape[1], -1)
    h, wd = input_shape[2], input_shape[3]
    if g.signed:
        inside, _, _ = im2col(np.ones((1, o, oh, ow), dtype=np.int64), w.codes.shape[2], 1, pad)
        weights = 2 * flipped - w.levels if w.signed else flipped
        out = 2 * out - g.levels * (inside.reshape(h * wd, -1) @ weights.T)[None]
    return torch.from_numpy(np.ascontiguousarray(out.reshape(b, h, wd, -1).transpose(0, 3, 1, 2)))


class IntRefEngine(GemmEngine):
    """The three products by AND + popcount over bit planes (:func:`sw.bitplanes.signed_matmul`)."""

    def matmul(self, a, a_codes, b, b_codes):
        return signed_matmul(a_codes, a.levels if a.signed else None, a.bits,
                             b_codes, b.levels if b.signed else None, b.bits)


# --------------------------------------------------------------------------- inference with thresholds

def accumulator_bound(fan_in: int, x: Quantized, w: Quantized) -> int:
    """``max|acc|`` over all inputs: ``fan_in * max|x| * max|w|`` (odd signed codes reach ``n``)."""
    return int(fan_in) * x.levels * w.levels


@dataclass(frozen=True)
class BlockThresholds:
    """What the activation unit of one block holds: thresholds, directions, pooling."""

    thresholds: torch.Tensor  # (C, n_a) int64
    direction: torch.Tensor   # (C,) int64, +1 or -1
    acc_min: int
    acc_max: int
    pool: int | None

    @property
    def act_bits(self) -> int:
        """Activation bits ``A``: the thresholds are ``2**A - 1`` per channel."""
        return int(self.thresholds.shape[-1]).bit_length()


def _block_affine(block) -> tuple[torch.Tensor, torch.Tensor]:
    product = block.product
    channels = product.weight.shape[0]
    if block.bn is not None and product.bias is not None:
        raise ValueError("a block with both a bias and BN has two affine maps; fold the bias into BN first")
    if block.bn is not None:
        return block.bn.folded()
    beta = product.bias.detach() if product.bias is not None else torch.zeros(channels)
    return torch.ones(channels), beta


def block_thresholds(block, xq: Quantized, wq: Quantized) -> BlockThresholds:
    """Fold a block's scale, BN, clip and quantize into integer thresholds."""
    product = block.product
    bound = accumulator_bound(product.geometry.fan_in(product.weight.shape), xq, wq)
    alpha, beta = _block_affine(block)
    scale = numeric.product_scale(xq.scale, wq.scale)
    thresholds, direction = numeric.fold_thresholds(scale, alpha, beta, block.act_bits, -bound, bound)
    return BlockThresholds(thresholds, direction, -bound, bound, block.pool)


def integer_inference(model, images: torch.Tensor, engine=None):
    """Run ``model`` (eval) as the inference hardware would.

    Returns ``(logits, codes)`` where ``codes[i]`` is block ``i``'s output
    activation codes (int64).  Quantized products run on ``engine``
    (default :class:`IntRefEngine`), BN + clip + quantize as thresholds and
    max-pool on codes; full-precision layers (the first conv and the last FC
    by default) run their float ops on the host, as the paper keeps them.
    """
    if numeric.FULL_PRECISION in (block.act_bits for block in model.blocks[:-1]):
        raise ValueError("integer inference needs quantized activations (A in 1..8), got A = 32")
    engine = engine or IntRefEngine()
    codes_out = []
    with torch.no_grad():
        values = model.quantize_input(images)
        q = None
        if model.input_bits != numeric.FULL_PRECISION:
            q = Quantized(numeric.activation_codes(images, model.input_bits),
                          numeric.activation_scale(model.input_bits), model.input_bits, signed=False)
        logits = None
        for block in model.blocks:
            product = block.product
            if block.flatten:
                values = values.flatten(1)
                q = None if q is None else Quantized(q.codes.flatten(1), q.scale, q.bits, q.signed)
            if product.quantized:
                _, wq = quantize_weight(product.weight, product.weight_bits)
                if block.act_bits is None:
                    acc = engine.forward(product.geometry, q, wq)
                    scale = numeric.product_scale(q.scale, wq.scale)
                    alpha, beta = _block_affine(block)
                    logits = numeric.affine(numeric.accumulator_to_value(acc, scale), alpha, beta)
                    break
                unit = block_thresholds(block, q, wq)
                codes = (engine.forward_activations(product.geometry, q, wq, unit) if unit.pool is None
                         else engine.forward_pooled(product.geometry, q, wq, unit))
            else:
                y = block.pre_activation(values)
                if block.act_bits is None:
                    logits = y
                    break
                codes = numeric.activation_codes(y, block.act_bits)
            scale = numeric.activation_scale(block.act_bits)
            q = Quantized(codes, scale, block.act_bits, signed=False)
            values = codes.to(torch.float32) * scale
            codes_out.append(codes)
    return logits, codes_out
