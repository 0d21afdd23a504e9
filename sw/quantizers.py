"""DoReFa quantizers as autograd functions (the float golden model's side).

Forward values are exactly ``code * scale`` with codes from :mod:`sw.numeric`;
backward is straight-through as in the paper:

* weights, k = 1: ``E * sign`` with identity gradient (no gradient through ``E``);
* weights, k >= 2: ``2 quantize_k(t) - 1`` with ``t`` from tanh/max, so the
  gradient is ``2 dt/dw`` through tanh and the layer max;
* activations: ``quantize_k(clip(x, 0, 1))``, gradient of the clip;
* gradients: identity forward, stochastic quantization in backward, drawn
  from a :class:`GradientNoise` source so hardware and software use the same
  numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import numeric
from .prng import XorShift32

__all__ = [
    "Quantized", "straight_through", "quantize_weight", "quantize_activation", "activation_input_codes",
    "GradientNoise", "GradientQuantizer", "QuantizeGradient",
]


@dataclass(frozen=True)
class Quantized:
    """Integer codes with their meaning: ``value = signed(codes) * scale``.

    ``codes`` are unsigned (``0..2**bits - 1``); ``signed`` says whether the
    hardware reads them as odd signed integers ``2q - n`` (weights, gradients)
    or as they are (activations).
    """

    codes: torch.Tensor
    scale: torch.Tensor
    bits: int
    signed: bool

    @property
    def levels(self) -> int:
        return numeric.levels(self.bits)

    def integers(self) -> torch.Tensor:
        """The integers the products see: ``2q - n`` if signed, else ``q``."""
        return 2 * self.codes - self.levels if self.signed else self.codes


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, proxy, exact, grad_scale):
        ctx.grad_scale = grad_scale
        return exact.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.grad_scale, None, None


def straight_through(proxy: torch.Tensor, exact: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """Return ``exact`` bit for bit, with the gradient ``grad_scale * d(proxy)``."""
    return _StraightThrough.apply(proxy, exact.detach(), grad_scale)


def quantize_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, Quantized | None]:
    """Quantized weight values (differentiable) and their codes (``None`` at 32 bits)."""
    bits = numeric.check_bits(bits, "weight bits")
    if bits == numeric.FULL_PRECISION:
        return w, None
    signed_codes, scale = numeric.weight_codes(w, bits)
    exact = numeric.weight_values(signed_codes, scale)
    if bits == 1:
        value = straight_through(w, exact, 1.0)
    else:
        value = straight_through(numeric.weight_unit_interval(w), exact, 2.0)
    q = (signed_codes + numeric.levels(bits)) // 2
    return value, Quantized(q, scale, bits, signed=True)


def quantize_activation(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, Quantized | None]:
    """``quantize_k(clip(x, 0, 1))`` with the clip's gradient, and the codes."""
    bits = numeric.check_bits(bits, "activation bits")
    clipped = torch.clamp(x, 0.0, 1.0)
    if bits == numeric.FULL_PRECISION:
        return clipped, None
    codes = numeric.activation_codes(x, bits)
    scale = numeric.activation_scale(bits)
    return straight_through(clipped, codes.to(torch.float32) * scale, 1.0), Quantized(codes, scale, bits, signed=False)


def activation_input_codes(x: torch.Tensor, bits: int) -> Quantized:
    """Recover the codes of a tensor that :func:`quantize_activation` made.

    Raises ``ValueError`` if ``x`` is not exactly on the ``bits``-bit grid, so a
    quantized product can never silently consume an unquantized input.
    """
    scale = numeric.activation_scale(bits)
    codes = numeric.round_half_up(x.detach() * numeric.levels(bits)).to(torch.int64)
    if not torch.equal(codes.to(torch.float32) * scale, x.detach()):
        raise ValueError(f"input to a layer expecting {bits}-bit activations is not on the {bits}-bit grid")
    if codes.numel() and (codes.min() < 0 or codes.max() > numeric.levels(bits)):
        raise ValueError(f"input to a layer expecting {bits}-bit activations is outside [0, 1]")
    return Quantized(codes, scale, bits, signed=False)


class GradientNoise:
    """Where the gradient quantizer's 16-bit noise draws come from.

    ``GradientNoise(seed=S)`` mirrors the hardware PRNG (:class:`sw.prng.XorShift32`)
    bit for bit, drawing each gradient tensor in row-major order;
    ``GradientNoise(draws=[t0, t1, ...])`` replays explicit int tensors in order.
    """

    def __init__(self, seed: int | None = None, draws=None):
        if (seed is None) == (draws is None):
            raise ValueError("give exactly one of seed= (PRNG) or draws= (explicit noise tensors)")
        self._prng = XorShift32(seed) if seed is not None else None
        self._draws = list(draws) if draws is not None else None

    def draws_like(self, g: torch.Tensor) -> torch.Tensor:
        if self._prng is not None:
            return torch.from_numpy(self._prng.draw_like(g.shape))
        if not self._draws:
            raise RuntimeError("explicit gradient noise exhausted: more gradient tensors than noise tensors given")
        r = torch.as_tensor(self._draws.pop(0), dtype=torch.int64)
        if r.shape != g.shape:
            raise ValueError(f"explicit noise tensor has shape {tuple(r.shape)}, gradient has {tuple(g.shape)}")
        if (r < 0).any() or (r >= 1 << numeric.NOISE_BITS).any():
            raise ValueError(f"noise draws must be integers in [0, {1 << numeric.NOISE_BITS})")
        return r

    def state_dict(self) -> dict:
        return {"prng_state": None if self._prng is None else self._prng.state}

    def load_state_dict(self, state: dict) -> None:
        if self._prng is not None and state.get("prng_state") is not None:
            self._prng.state = int(state["prng_state"])


class GradientQuantizer:
    """Quantizes a gradient tensor to G-bit codes with per-sample scale.

    Holds the noise source and, when ``record`` is a list, appends one dict per
    call (``g``, ``draws``, ``codes``, ``scale``) so tests and the host driver
    can replay exactly what happened.
    """

    def __init__(self, bits: int, noise: GradientNoise, record: list | None = None):
        self.bits = numeric.check_bits(bits, "gradient bits")
        if self.bits == numeric.FULL_PRECISION:
            raise ValueError("a GradientQuantizer needs 1..8 bits; 32 means no gradient quantization")
        self.noise = noise
        self.record = record

    def __call__(self, g: torch.Tensor) -> tuple[Quantized, torch.Tensor]:
        """Codes (as :class:`Quantized`, scale = per-sample ``m``) and float values."""
        draws = self.noise.draws_like(g)
        codes, m = numeric.gradient_codes(g, draws, self.bits)
        if self.record is not None:
            self.record.append({"g": g.detach().clone(), "draws": draws, "codes": codes, "scale": m})
        return Quantized(codes, m, self.bits, signed=True), numeric.gradient_values(codes, m, self.bits)


class QuantizeGradient(torch.autograd.Function):
    """Identity forward; backward replaces the gradient by its quantized value."""

    @staticmethod
    def forward(ctx, x, quantizer: GradientQuantizer):
        ctx.quantizer = quantizer
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _, values = ctx.quantizer(grad)
        return values, None

