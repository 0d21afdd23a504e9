"""sw.quantizers: forward values and autograd of the golden quantizers against independent expressions.

Expected codes come from exact ``fractions.Fraction`` arithmetic or plain numpy
float32 operations written here; expected gradients from torch autograd of
the paper's formulas written out in this file.
"""

from __future__ import annotations

from fractions import Fraction
import math

import numpy as np
import pytest
import torch

from sw.contract.codes import levels
from sw.layers import QuantConv2d, QuantLinear
from sw.quantizers import (
    GradientNoise, GradientQuantizer, Quantized, QuantizeGradient, activation_input_codes,
    quantize_activation, quantize_weight,
)

BITS = list(range(1, 9))
MASK32 = 0xFFFF_FFFF




def serial_draws(seed: int, count: int) -> list[int]:
    s, out = seed, []
    for _ in range(count):
        s ^= (s << 13) & MASK32
        s ^= s >> 17
        s ^= (s << 5) & MASK32
        out.append(s >> 16)
    return out


def f32(v) -> np.float32:
    return np.float32(v)


def ulp32(v: float) -> float:
    return float(np.spacing(np.float32(abs(v)) if v != 0 else np.float32(0)))


def random_weights(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 0.3


# --------------------------------------------------------------------------- weights

def test_weight_one_bit_forward_and_identity_gradient():
    w = random_weights((4, 3, 3, 3), 1)
    w[0, 0, 0, 0] = 0.0
    w[1, 2, 1, 1] = 0.0
    w.requires_grad_(True)
    value, q = quantize_weight(w, 1)
    wn = w.detach().numpy()
    sign = np.where(wn >= 0, 1, -1)  # zero maps to +1
    assert sign[0, 0, 0, 0] == 1 and sign[1, 2, 1, 1] == 1
    exact_e = sum(Fraction(float(abs(v))) for v in wn.ravel()) / wn.size
    e = float(q.scale)
    assert abs(Fraction(e) - exact_e) <= Fraction(2 * ulp32(float(exact_e)))
    assert np.array_equal(value.detach().numpy(), sign.astype(np.float32) * f32(e))
    # codes: unsigned q in {0, 1}, integers() are the +-1 signs
    assert isinstance(q, Quantized) and q.bits == 1 and q.signed
    assert q.codes.dtype == torch.int64
    assert np.array_equal(q.codes.numpy(), (sign + 1) // 2)
    assert np.array_equal(q.integers().numpy(), sign)
    # straight-through: the upstream gradient passes unchanged (nothing through E)
    upstream = random_weights(w.shape, 2)
    value.backward(upstream)
    assert torch.equal(w.grad, upstream)


@pytest.mark.parametrize("bits", BITS[1:])
def test_weight_multi_bit_forward(bits):
    n = levels(bits)
    w = random_weights((5, 4, 3, 3), 10 + bits)
    w[0, 0, 0, 0] = 0.0
    value, q = quantize_weight(w, bits)
    # independent t (float32, as the golden model computes it), then exact rounding half up
    th = torch.tanh(w)
    t = (th / th.abs().max() * 0.5 + 0.5).numpy()
    expected_q = np.array([math.floor(Fraction(float(v)) * n + Fraction(1, 2)) for v in t.ravel()]).reshape(t.shape)
    assert 0 <= expected_q.min() and expected_q.max() <= n
    assert expected_q.min() == 0 or expected_q.max() == n  # the max |w| lands on an end code
    c = 2 * expected_q - n
    assert np.all(c % 2 == 1)  # odd signed codes
    assert c[0, 0, 0, 0] == 1  # zero maps to +1
    assert q.bits == bits and q.signed
    assert np.array_equal(q.codes.numpy(), expected_q)
    assert np.array_equal(q.integers().numpy(), c)
    got = value.detach().numpy()
    assert got.dtype == np.float32
    # value = c * scale with scale = float32(1/n) (sw.numeric's representation, the one the
    # integer products are scaled by).  That is not always the correctly rounded float32 of
    # c/n (e.g. k=3, c=-3 gives -0.42857146, not -0.42857143) but it is within 2 ulps of it.
    assert np.array_equal(got, c.astype(np.float32) * f32(1.0 / n))
    for cv, gv in zip(c.ravel(), got.ravel()):
        assert abs(Fraction(float(gv)) - Fraction(int(cv), n)) <= 2 * Fraction(ulp32(int(cv) / n))
    assert np.allclose(got, c / n, rtol=1e-6, atol=0)


@pytest.mark.parametrize("bits", BITS[1:])
def test_weight_multi_bit_gradient_is_autograd_of_tanh_expression(bits):
    w0 = random_weights((6, 5), 20 + bits)
    w = w0.clone().requires_grad_(True)
    value, _ = quantize_weight(w, bits)
    upstream = random_weights(w.shape, 30 + bits)
    value.backward(upstream)

    w_ref = w0.clone().requires_grad_(True)
    t = torch.tanh(w_ref)
    proxy = 2 * (t / torch.max(torch.abs(t)) * 0.5 + 0.5) - 1
    (expected,) = torch.autograd.grad(proxy, w_ref, upstream)
    assert torch.equal(w.grad, expected)
    # the gradient flows through the layer max: the arg-max weight's gradient is not just 2*dt/dw
    no_max = 2 * (1 - torch.tanh(w0) ** 2) / torch.tanh(w0).abs().max() * 0.5 * upstream
    assert not torch.allclose(w.grad, no_max, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bits", BITS)
def test_weight_zero_maps_to_plus_one(bits):
    n = levels(bits)
    w = torch.tensor([0.0, 0.7, -0.7, 0.0])
    _, q = quantize_weight(w, bits)
    c = q.integers().tolist()
    assert c[0] == 1 and c[3] == 1
    assert c[1] == n and c[2] == -n


def test_weight_full_precision_passthrough():
    w = random_weights((3, 4), 3).requires_grad_(True)
    value, q = quantize_weight(w, 32)
    assert q is None and value is w


@pytest.mark.parametrize("bits", BITS)
def test_all_zero_weights_no_nan(bits):
    w = torch.zeros(3, 4, requires_grad=True)
    value, q = quantize_weight(w, bits)
    expected = 0.0 if bits == 1 else 1.0 / levels(bits)  # k = 1: E = 0; k >= 2: code +1
    assert torch.all(value == f32(expected))
    assert torch.all(q.integers() == 1)
    value.backward(torch.ones_like(value))
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("bits", BITS)
def test_all_zero_weight_layer_no_nan(kind, bits):
    if kind == "conv":
        layer = QuantConv2d(2, 3, 3, padding=1, weight_bits=bits, input_bits=2, grad_bits=bits)
        x = torch.randint(0, 4, (2, 2, 5, 5)).float() * torch.tensor(1.0 / 3, dtype=torch.float32)
    else:
        layer = QuantLinear(6, 4, weight_bits=bits, input_bits=2, grad_bits=bits)
        x = torch.randint(0, 4, (3, 6)).float() * torch.tensor(1.0 / 3, dtype=torch.float32)
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
    layer.grad_quantizer = GradientQuantizer(bits, GradientNoise(seed=5))
    x.requires_grad_(True)
    y = layer(x)
    assert torch.isfinite(y).all()
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    assert torch.isfinite(layer.weight.grad).all()
    assert torch.isfinite(x.grad).all()
    assert layer.weight.grad.abs().sum() > 0  # the straight-through gradient still reaches the weights


# --------------------------------------------------------------------------- activations

def expected_activation_codes(x: np.ndarray, n: int) -> np.ndarray:
    """floor(clip(x, 0, 1) * n + 1/2) in float32, the comparator's rounding (half up)."""
    clipped = np.minimum(np.maximum(x.astype(np.float32), f32(0)), f32(1))
    return np.floor(clipped * f32(n) + f32(0.5)).astype(np.int64)


@pytest.mark.parametrize("bits", BITS)
def test_activation_forward_and_gradient(bits):
    n = levels(bits)
    g = torch.Generator().manual_seed(bits)
    x = torch.rand(200, generator=g) * 2 - 0.5
    x[:6] = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5, -1e-8])
    x.requires_grad_(True)
    value, q = quantize_activation(x, bits)
    p = expected_activation_codes(x.detach().numpy(), n)
    assert q.bits == bits and not q.signed
    assert np.array_equal(q.codes.numpy(), p)
    assert p.min() == 0 and p.max() == n
    assert np.array_equal(value.detach().numpy(), p.astype(np.float32) * f32(1.0 / n))
    assert torch.equal(q.integers(), q.codes)
    upstream = torch.rand(200, generator=g) + 0.5
    value.backward(upstream)
    xn = x.detach().numpy()
    inside = (xn >= 0) & (xn <= 1)
    assert np.array_equal(x.grad.numpy(), np.where(inside, upstream.numpy(), 0.0).astype(np.float32))


@pytest.mark.parametrize("bits", BITS)
def test_activation_rounds_half_up(bits):
    """float32 x with x*n exactly m + 1/2 (m even): half up gives m + 1, torch.round would give m."""
    n = levels(bits)
    cases = []
    for m in range(0, n, 2):
        x0 = f32((m + 0.5) / n)
        for x in (np.nextafter(x0, f32(0)), x0, np.nextafter(x0, f32(1))):
            if f32(f32(x) * f32(n)) == f32(m + 0.5):
                cases.append((float(x), m))
    assert cases, "no exact tie found"
    x = torch.tensor([c[0] for c in cases], dtype=torch.float32)
    _, q = quantize_activation(x, bits)
    assert q.codes.tolist() == [m + 1 for _, m in cases]
    assert not torch.equal(q.codes, torch.round(x * n).to(torch.int64))


def test_activation_full_precision_is_clip():
    x = torch.tensor([-1.0, 0.25, 2.0], requires_grad=True)
    value, q = quantize_activation(x, 32)
    assert q is None
    assert value.tolist() == [0.0, 0.25, 1.0]
    value.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("bits", BITS)
def test_activation_input_codes_accepts_grid(bits):
    n = levels(bits)
    p = torch.arange(n + 1).reshape(1, -1, 1, 1).repeat(2, 1, 1, 3)
    x = p.to(torch.float32) * torch.tensor(1.0 / n, dtype=torch.float32)
    q = activation_input_codes(x, bits)
    assert torch.equal(q.codes, p)
    assert q.bits == bits and not q.signed
    # and every output of quantize_activation is accepted with the same codes
    y, qa = quantize_activation(torch.linspace(-0.2, 1.2, 101), bits)
    assert torch.equal(activation_input_codes(y, bits).codes, qa.codes)


@pytest.mark.parametrize("bits", BITS)
def test_activation_input_codes_rejects_off_grid(bits):
    n = levels(bits)
    step = f32(1.0 / n)
    on = f32(1) * step if n > 1 else f32(1)
    for bad in (np.nextafter(on, f32(2)), np.nextafter(on, f32(0)), f32(0.5 * step), f32(1e-30)):
        x = torch.tensor([0.0, float(bad)], dtype=torch.float32)
        with pytest.raises(ValueError, match=f"{bits}-bit grid"):
            activation_input_codes(x, bits)
    if n > 1:
        with pytest.raises(ValueError, match="grid"):
            activation_input_codes(torch.tensor([0.5]), bits)  # 0.5*n is never an integer for odd n > 1


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_activation_input_codes_rejects_out_of_range(bits):
    """BUG: values on the lattice p/n but outside [0, 1] (p < 0 or p > n) are accepted.

    ``activation_input_codes(torch.tensor([2.0]), 1)`` returns code 2 for a
    1-bit activation; ``TorchEngine`` then silently multiplies by it while the
    bit-plane engine would raise.  The grid is {0, 1/n, ..., 1}.
    """
    n = levels(bits)
    step = torch.tensor(1.0 / n, dtype=torch.float32)
    for p in (-1, n + 1, 2 * n):
        x = torch.tensor([0, p]).to(torch.float32) * step
        with pytest.raises(ValueError):
            activation_input_codes(x, bits)


# --------------------------------------------------------------------------- gradient noise

def test_gradient_noise_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        GradientNoise()
    with pytest.raises(ValueError, match="exactly one"):
        GradientNoise(seed=1, draws=[torch.zeros(2, dtype=torch.int64)])


def test_gradient_noise_seeded_mirrors_serial_prng():
    seed = 0x1357_9BDF
    noise = GradientNoise(seed=seed)
    a = noise.draws_like(torch.zeros(2, 3, 4))
    b = noise.draws_like(torch.zeros(5, 7))
    flat = serial_draws(seed, 24 + 35)
    assert a.dtype == torch.int64
    assert a.reshape(-1).tolist() == flat[:24]  # row-major
    assert a[1, 2, 3].item() == flat[23] and a[0, 1, 0].item() == flat[4]
    assert b.reshape(-1).tolist() == flat[24:]


def test_gradient_noise_state_round_trip():
    noise = GradientNoise(seed=99)
    noise.draws_like(torch.zeros(300))
    state = noise.state_dict()
    first = noise.draws_like(torch.zeros(10))
    noise.load_state_dict(state)
    assert torch.equal(noise.draws_like(torch.zeros(10)), first)
    assert first.tolist() == serial_draws(99, 310)[300:]


def test_gradient_noise_explicit_in_order():
    t0 = torch.tensor([[0, 65535], [32768, 1]])
    t1 = torch.tensor([7, 8, 9])
    noise = GradientNoise(draws=[t0, t1])
    assert torch.equal(noise.draws_like(torch.zeros(2, 2)), t0)
    assert torch.equal(noise.draws_like(torch.zeros(3)), t1)
    with pytest.raises(RuntimeError, match="exhausted"):
        noise.draws_like(torch.zeros(3))


def test_gradient_noise_explicit_errors():
    with pytest.raises(ValueError, match="shape"):
        GradientNoise(draws=[torch.zeros(2, 3, dtype=torch.int64)]).draws_like(torch.zeros(3, 2))
    for bad in (-1, 65536, 2**20):
        with pytest.raises(ValueError, match="65536"):
            GradientNoise(draws=[torch.tensor([0, bad])]).draws_like(torch.zeros(2))
    with pytest.raises(RuntimeError, match="exhausted"):
        GradientNoise(draws=[]).draws_like(torch.zeros(1))


def test_gradient_quantizer_rejects_full_precision():
    with pytest.raises(ValueError):
        GradientQuantizer(32, GradientNoise(seed=1))
    with pytest.raises(ValueError, match="1..8"):
        GradientQuantizer(9, GradientNoise(seed=1))


# --------------------------------------------------------------------------- QuantizeGradient

def exact_gradient_codes(g: np.ndarray, r: np.ndarray, n: int) -> tuple[np.ndarray, list[Fraction]]:
    """Paper: c = n * quantize_k(clip(g/(2m) + 1/2 + u/n, 0, 1)), u = (r - 2**15)/2**16, exactly."""
    codes = np.zeros(g.shape, dtype=np.int64)
    scales = []
    for b in range(g.shape[0]):
        m = max(abs(Fraction(float(v))) for v in g[b].ravel())
        scales.append(m)
        for index in np.ndindex(g.shape[1:]):
            gv = Fraction(float(g[(b,) + index]))
            u = Fraction(int(r[(b,) + index]) - 2**15, 2**16)
            if m == 0:
                codes[(b,) + index] = n  # value is m * (2c - n)/n = 0 whatever c is; the contract picks n
                continue
            x = gv / (2 * m) + Fraction(1, 2) + u / n
            x = min(max(x, Fraction(0)), Fraction(1))
            codes[(b,) + index] = math.floor(n * x + Fraction(1, 2))
    return codes, scales


def gradient_case(seed: int):
    """(B, C, H, W) gradient with ties built in, a zero sample, and matching draws."""
    g = torch.randn((3, 2, 3, 4), generator=torch.Generator().manual_seed(seed)) * 1e-3
    g[0, 0, 0, :4] = torch.tensor([3.0, 1.0, 0.0, -3.0]) * 2.0**-10  # m = 3 * 2**-10: exact ratios
    g[2] = 0.0  # an all-zero sample
    r = torch.randint(0, 2**16, g.shape, generator=torch.Generator().manual_seed(seed + 1))
    r[0, 0, 0, :4] = torch.tensor([0, 0, 2**15, 65535])
    return g, r


@pytest.mark.parametrize("bits", BITS)
def test_quantize_gradient_identity_forward_quantized_backward(bits):
    n = levels(bits)
    g, r = gradient_case(bits)
    record = []
    quantizer = GradientQuantizer(bits, GradientNoise(draws=[r]), record)
    x = torch.randn(g.shape).requires_grad_(True)
    y = QuantizeGradient.apply(x, quantizer)
    assert torch.equal(y, x)
    y.backward(g)

    codes, scales = exact_gradient_codes(g.numpy(), r.numpy(), n)
    assert len(record) == 1
    assert torch.equal(record[0]["draws"], r)
    assert np.array_equal(record[0]["codes"].numpy(), codes)
    assert [Fraction(float(v)) for v in record[0]["scale"]] == scales
    # values m * (2c - n) / n, each within a float32 ulp of the exact rational
    got = x.grad.numpy()
    assert got.dtype == np.float32
    for index in np.ndindex(g.shape):
        exact = scales[index[0]] * (2 * int(codes[index]) - n) / n
        assert abs(Fraction(float(got[index])) - exact) <= Fraction(ulp32(float(exact)))
    assert np.all(got[2] == 0)  # the all-zero sample gives a zero gradient
    # values lie in [-m, m] per sample and the max element survives with its sign at any G
    for b in range(2):
        assert np.all(np.abs(got[b]) <= float(scales[b]) * (1 + 1e-6))


def test_quantize_gradient_tie_elements():
    """Hand-checked elements of sample 0 (m = 3 * 2**-10) at G = 2 (n = 3)."""
    g, r = gradient_case(2)
    quantizer = GradientQuantizer(2, GradientNoise(draws=[r]), record := [])
    x = torch.zeros(g.shape, requires_grad=True)
    QuantizeGradient.apply(x, quantizer).backward(g)
    c = record[0]["codes"][0, 0, 0, :4].tolist()
    # g = m, u = -1/2:    3*(1 + 1/2 - 1/6) + 1/2 = 4.5 -> clip x to 1 -> c = 3
    # g = m/3, u = -1/2:  3*(1/6 + 1/2 - 1/6) + 1/2 = 2   -> exactly on a level, half up -> 2
    # g = 0, u = 0:       3*(1/2) + 1/2 = 2               -> 2
    # g = -m, u ~ +1/2:   x = 0 + 32767/(65536*3) -> 3x + 1/2 < 1 -> 0
    assert c == [3, 2, 2, 0]


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_quantize_gradient_seeded_matches_explicit_serial_draws(bits):
    seed = 4242
    g = torch.randn(2, 5, 3)
    shape_count = g.numel()
    draws = torch.tensor(serial_draws(seed, shape_count)).reshape(g.shape)
    rec_seeded, rec_explicit = [], []
    for noise, rec in ((GradientNoise(seed=seed), rec_seeded), (GradientNoise(draws=[draws]), rec_explicit)):
        x = torch.zeros(g.shape, requires_grad=True)
        QuantizeGradient.apply(x, GradientQuantizer(bits, noise, rec)).backward(g)
    assert torch.equal(rec_seeded[0]["draws"], draws)
    assert torch.equal(rec_seeded[0]["codes"], rec_explicit[0]["codes"])
    codes, _ = exact_gradient_codes(g.numpy(), draws.numpy(), levels(bits))
    assert np.array_equal(rec_seeded[0]["codes"].numpy(), codes)


def test_quantize_gradient_shape_mismatch_raises():
    quantizer = GradientQuantizer(3, GradientNoise(draws=[torch.zeros(4, dtype=torch.int64)]))
    x = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="shape"):
        QuantizeGradient.apply(x, quantizer).sum().backward()
