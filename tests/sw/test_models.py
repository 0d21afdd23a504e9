"""sw.models and the TorchEngine's integers: shapes, widths, precision switches, errors, and the
three training products of QuantConv2d / QuantLinear against plain integer computations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sw.contract import gradients
from sw.contract.codes import levels
from sw.layers import QuantConv2d, QuantLinear
from sw.models import build_model
from sw.quantizers import GradientNoise, GradientQuantizer

SVHN_BASE = [48, 64, 64, 128, 128, 128, 512]
DIGITS_BASE = [16, 32, 32, 64, 64]
WIDTH = {"svhn": Fraction(1), "svhn-A": Fraction(1), "svhn-B": Fraction(1, 2),
         "svhn-C": Fraction(1, 4), "svhn-D": Fraction(1, 8)}
ALL_NAMES = ["digits", "svhn", "svhn-A", "svhn-B", "svhn-C", "svhn-D"]




def input_shape(name, batch=2):
    return (batch, 1, 8, 8) if name == "digits" else (batch, 3, 40, 40)


def grid_tensor(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Activation values on the bits-bit grid: code * float32(1/n)."""
    return codes.to(torch.float32) * torch.tensor(1.0 / levels(bits), dtype=torch.float32)


def weight_integers(w: torch.Tensor, bits: int) -> np.ndarray:
    """Signed odd weight integers written from the contract (numpy float32 rounding half up)."""
    w = w.detach()
    if bits == 1:
        return np.where(w.numpy() >= 0, 1, -1).astype(np.int64)
    n = levels(bits)
    th = torch.tanh(w)
    t = (th / th.abs().max() * 0.5 + 0.5).numpy()
    q = np.floor(t * np.float32(n) + np.float32(0.5)).astype(np.int64)
    return 2 * q - n


# --------------------------------------------------------------------------- plain integer products

def conv_forward_int(x, w, stride, padding):
    """F.conv2d on int64 -> float64 integers (exact: every partial sum is far below 2**53)."""
    out = F.conv2d(torch.as_tensor(x).to(torch.float64), torch.as_tensor(w).to(torch.float64),
                   stride=stride, padding=padding)
    assert torch.equal(out, out.round())
    return out.to(torch.int64).numpy()


def conv_backward_input_int(g, w, x_shape, stride, padding):
    """dX[b,c,i,j] = sum_{o,kh,kw} g[b,o,oh,ow] w[o,c,kh,kw] where i+p = oh*s+kh (numpy int64)."""
    b_, c_, h, wd = x_shape
    _, _, oh, ow = g.shape
    k = w.shape[2]
    dx = np.zeros((b_, c_, h + 2 * padding, wd + 2 * padding), dtype=np.int64)
    for kh in range(k):
        for kw in range(k):
            dx[:, :, kh:kh + stride * (oh - 1) + 1:stride, kw:kw + stride * (ow - 1) + 1:stride] += \
                np.einsum("bohw,oc->bchw", g, w[:, :, kh, kw])
    return dx[:, :, padding:padding + h, padding:padding + wd]


def conv_backward_weight_per_sample_int(x, g, k, stride, padding):
    """dW[b,o,c,kh,kw] = sum_{oh,ow} g[b,o,oh,ow] x_pad[b,c,oh*s+kh,ow*s+kw] (numpy int64)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    _, _, oh, ow = g.shape
    out = np.zeros((x.shape[0], g.shape[1], x.shape[1], k, k), dtype=np.int64)
    for kh in range(k):
        for kw in range(k):
            patch = xp[:, :, kh:kh + stride * (oh - 1) + 1:stride, kw:kw + stride * (ow - 1) + 1:stride]
            out[:, :, :, kh, kw] = np.einsum("bohw,bchw->boc", g, patch)
    return out


def as_exact_int(t: torch.Tensor) -> np.ndarray:
    """An engine result (int64, or float holding exact integers) as int64."""
    if t.is_floating_point():
        t64 = t.to(torch.float64)
        assert torch.equal(t64, t64.round()), "engine returned a non-integer"
        return t64.to(torch.int64).numpy()
    assert t.dtype == torch.int64
    return t.numpy()


def assert_close_exact(got: torch.Tensor, exact: np.ndarray):
    """float32 results against exact float64 arithmetic on the integers (rounding only)."""
    exact = np.asarray(exact, dtype=np.float64)
    scale = max(float(np.abs(exact).max()), 1e-30)
    assert np.allclose(got.detach().to(torch.float64).numpy(), exact, rtol=1e-6, atol=1e-6 * scale)


def assert_weight_grad(layer, weight_bits, value_grad):
    """``value_grad`` is the gradient reaching the quantized weight values; the raw weight's
    gradient is that, straight through (k = 1), or through ``2 t - 1`` with t from tanh/max."""
    if weight_bits == 1:
        expected = value_grad
    else:
        w = layer.weight.detach().clone().requires_grad_(True)
        t = torch.tanh(w)
        proxy = 2 * (t / t.abs().max() * 0.5 + 0.5) - 1
        (expected,) = torch.autograd.grad(proxy, w, torch.as_tensor(value_grad, dtype=torch.float32))
        expected = expected.to(torch.float64).numpy()
    assert_close_exact(layer.weight.grad, expected)


def assert_contract_batch_sum(total, per_sample, scale):
    """``total = (hi, lo, E)`` is ``S = sum_b aligned_term(M_b, I_b, shift_b)`` of the per-sample
    integers (sw.contract.gradients), with ``E`` the batch's largest exponent."""
    hi, lo, top = total
    parts = [gradients.scale_parts(float(m)) for m in scale.tolist()]
    expected_top, shifts = gradients.batch_shifts(parts)
    flat = [sample.ravel().tolist() for sample in np.asarray(per_sample)]
    sums = [sum(gradients.aligned_term(m, sample[i], k) for (m, _), sample, k in zip(parts, flat, shifts))
            for i in range(len(flat[0]))]
    assert top == expected_top
    assert [(h << 32) + l for h, l in zip(hi.ravel().tolist(), lo.ravel().tolist())] == sums


def run_layer(layer, x, grad_bits, seed):
    """Forward + backward of one quantized layer with explicit noise; returns its trace record."""
    with torch.no_grad():
        out_shape = layer(x).shape
    upstream = torch.randn(out_shape, generator=torch.Generator().manual_seed(seed))
    draws = torch.randint(0, 2**16, out_shape, generator=torch.Generator().manual_seed(seed + 1))
    layer.grad_quantizer = GradientQuantizer(grad_bits, GradientNoise(draws=[draws]))
    layer.trace = []
    y = layer(x)
    y.backward(upstream)
    assert len(layer.trace) == 1
    return y, layer.trace[0]


BITS_CASES = [(1, 1, 1), (1, 2, 4), (2, 3, 6), (4, 1, 8), (8, 8, 8), (3, 5, 2)]
CONV_GEOMETRY = [  # (kernel, stride, padding, input size); (H + 2p - k) divisible by the stride
    (3, 1, 0, 7), (3, 1, 1, 7), (1, 1, 0, 5), (5, 1, 2, 6), (3, 2, 1, 7), (3, 2, 0, 7),
]


@pytest.mark.parametrize("kernel, stride, padding, size", CONV_GEOMETRY)
@pytest.mark.parametrize("bits", BITS_CASES, ids=[f"W{w}A{a}G{g}" for w, a, g in BITS_CASES])
def test_conv_engine_integers(bits, kernel, stride, padding, size):
    check_conv(bits, kernel, stride, padding, size)


def check_conv(bits, kernel, stride, padding, size):
    wb, ab, gb = bits
    torch.manual_seed(sum(bits) * 100 + kernel * 10 + stride + padding)
    layer = QuantConv2d(3, 4, kernel, stride=stride, padding=padding, weight_bits=wb, input_bits=ab, grad_bits=gb)
    xcodes = torch.randint(0, levels(ab) + 1, (2, 3, size, size))
    x = grid_tensor(xcodes, ab).requires_grad_(True)
    y, rec = run_layer(layer, x, gb, seed=7 * size + kernel)

    x_int = xcodes.numpy()
    w_int = weight_integers(layer.weight, wb)
    assert np.array_equal(rec["x"].codes.numpy(), x_int)
    assert np.array_equal(rec["w"].integers().numpy(), w_int)
    # forward: acc = sum(p * c_w)
    acc = conv_forward_int(x_int, w_int, stride, padding)
    assert np.array_equal(as_exact_int(rec["acc"]), acc)
    # backward: gradient integers 2c - n_g
    gcodes = rec["grad_codes"].numpy()
    assert gcodes.shape == tuple(y.shape) and gcodes.min() >= 0 and gcodes.max() <= levels(gb)
    g_int = 2 * gcodes - levels(gb)
    bi = conv_backward_input_int(g_int, w_int, x_int.shape, stride, padding)
    assert np.array_equal(as_exact_int(rec["backward_input"]), bi)
    bw = conv_backward_weight_per_sample_int(x_int, g_int, kernel, stride, padding)
    assert np.array_equal(as_exact_int(rec["backward_weight"]), bw)
    # the batch sum the weight gradient is made from: the contract's, term by term in Python ints
    assert_contract_batch_sum(rec["backward_weight_sum"], bw, rec["grad_scale"])

    # and the float values training sees are those integers, scaled
    m = rec["grad_scale"].to(torch.float64).numpy()
    a_scale = 1.0 / levels(ab)
    w_scale = float(layer.weight.detach().abs().mean()) if wb == 1 else 1.0 / levels(wb)
    assert_close_exact(y, acc * a_scale * w_scale)
    assert_close_exact(x.grad, bi * m[:, None, None, None] * w_scale / levels(gb))
    assert_weight_grad(layer, wb, np.einsum("b,b...->...", m, bw.astype(np.float64)) * a_scale / levels(gb))


@pytest.mark.slow
@pytest.mark.parametrize("g", range(1, 9))
@pytest.mark.parametrize("a", range(1, 9))
@pytest.mark.parametrize("w", range(1, 9))
def test_conv_engine_integers_full_grid(w, a, g):
    check_conv((w, a, g), 3, 1, 1, 6)


@pytest.mark.parametrize("size", [6, 8])
def test_conv_engine_strided_backward_weight(size):
    """BUG: stride 2 where (H + 2p - k) is not a multiple of the stride.

    ``sw.products._weight_shape`` infers the kernel from the operand shapes as
    ``H + 2p - (OH - 1) * s``; for H=6, k=3, s=2, p=0 that is 4, not 3, so the
    backward-weight product comes out (O, C, 4, 4) and autograd raises
    "QuantizedProductBackward returned an invalid gradient".
    """
    check_conv((2, 2, 4), 3, 2, 0, size)


@pytest.mark.parametrize("bits", BITS_CASES, ids=[f"W{w}A{a}G{g}" for w, a, g in BITS_CASES])
def test_linear_engine_integers(bits):
    wb, ab, gb = bits
    torch.manual_seed(sum(bits))
    layer = QuantLinear(70, 5, bias=False, weight_bits=wb, input_bits=ab, grad_bits=gb)
    xcodes = torch.randint(0, levels(ab) + 1, (3, 70))
    x = grid_tensor(xcodes, ab).requires_grad_(True)
    y, rec = run_layer(layer, x, gb, seed=sum(bits))
    x_int = xcodes.numpy()
    w_int = weight_integers(layer.weight, wb)
    assert np.array_equal(rec["w"].integers().numpy(), w_int)
    acc = x_int @ w_int.T
    assert np.array_equal(as_exact_int(rec["acc"]), acc)
    g_int = 2 * rec["grad_codes"].numpy() - levels(gb)
    assert np.array_equal(as_exact_int(rec["backward_input"]), g_int @ w_int)
    per_sample = np.stack([np.outer(g_int[b], x_int[b]) for b in range(3)])
    assert np.array_equal(as_exact_int(rec["backward_weight"]), per_sample)
    assert_contract_batch_sum(rec["backward_weight_sum"], per_sample, rec["grad_scale"])
    m = rec["grad_scale"].to(torch.float64).numpy()
    w_scale = float(layer.weight.detach().abs().mean()) if wb == 1 else 1.0 / levels(wb)
    assert_close_exact(y, acc * w_scale / levels(ab))
    assert_close_exact(x.grad, (g_int @ w_int) * m[:, None] * w_scale / levels(gb))
    assert_weight_grad(layer, wb, np.einsum("b,boi->oi", m, per_sample.astype(np.float64)) / levels(ab) / levels(gb))


@pytest.mark.parametrize("channels", [28, 29])  # fan-in 252 (float32 path) and 261 (float64 path)
def test_conv_engine_exact_at_float32_limit(channels):
    """All-max 8-bit codes: acc = fan_in * 255 * 255, which for fan-in 261 is odd and above 2**24."""
    layer = QuantConv2d(channels, 2, 3, weight_bits=8, input_bits=8, grad_bits=8)
    with torch.no_grad():
        layer.weight.fill_(0.25)  # every t = 1: every weight code is +255
    layer.trace = []
    with torch.no_grad():
        layer(torch.ones(1, channels, 3, 3))
    expected = channels * 9 * 255 * 255
    assert expected % 2 == 1 or channels == 28
    assert as_exact_int(layer.trace[0]["acc"]).ravel().tolist() == [expected, expected]


@pytest.mark.parametrize("size", [16, 17])  # 256 positions (float32 path), 289 (float64 path)
def test_conv_engine_backward_weight_exact_at_float32_limit(size):
    layer = QuantConv2d(1, 1, 1, weight_bits=8, input_bits=8, grad_bits=8)
    with torch.no_grad():
        layer.weight.fill_(0.5)
    layer.trace = []
    layer.grad_quantizer = GradientQuantizer(8, GradientNoise(seed=3))
    x = torch.ones(1, 1, size, size, requires_grad=True)
    layer(x).backward(torch.ones(1, 1, size, size))  # m = 1, every gradient code is n = 255
    rec = layer.trace[0]
    assert rec["grad_codes"].min().item() == 255
    assert as_exact_int(rec["backward_weight"]).ravel().tolist() == [size * size * 255 * 255]
    assert as_exact_int(rec["backward_input"]).min() == 255 * 255


# --------------------------------------------------------------------------- build_model

@pytest.mark.parametrize("bits", [(32, 32, 32), (1, 2, 4)])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_output_shapes(name, bits):
    model = build_model(name, bits)
    model.eval()
    x = torch.rand(input_shape(name))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


# hand-written: 100 / 50 / 25 / 12.5 % of the SVHN channels
SVHN_WIDTHS = {
    "svhn": SVHN_BASE, "svhn-A": SVHN_BASE,
    "svhn-B": [24, 32, 32, 64, 64, 64, 256],
    "svhn-C": [12, 16, 16, 32, 32, 32, 128],
    "svhn-D": [6, 8, 8, 16, 16, 16, 64],
    "digits": DIGITS_BASE,
}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_channel_widths(name):
    products = build_model(name).products()
    expected = SVHN_WIDTHS[name]
    if name != "digits":
        assert [Fraction(c, b) for c, b in zip(expected, SVHN_BASE)] == [WIDTH[name]] * len(SVHN_BASE)
    in_channels = 1 if name == "digits" else 3
    convs, fc = products[:-1], products[-1]
    assert all(isinstance(p, QuantConv2d) for p in convs)
    assert [p.weight.shape[0] for p in convs] == expected
    assert [p.weight.shape[1] for p in convs] == [in_channels] + expected[:-1]
    # both networks end at 1x1 spatial before the FC
    assert isinstance(fc, QuantLinear)
    assert tuple(fc.weight.shape) == (10, expected[-1])


def product_bits(p):
    return (p.weight_bits, p.input_bits, p.grad_bits)


@pytest.mark.parametrize("first, last", [(False, False), (True, False), (False, True), (True, True)])
def test_first_and_last_precision_switches(first, last):
    w, a, g = 2, 3, 4
    model = build_model("digits", (w, a, g), quantize_first=first, quantize_last=last)
    products = model.products()
    assert product_bits(products[0]) == ((w, 8, g) if first else (32, 32, 32))
    assert product_bits(products[-1]) == ((w, a, g) if last else (32, 32, 32))
    for p in products[1:-1]:
        assert product_bits(p) == (w, a, g)
    # the first conv's output is quantized either way; the logits are not
    assert [b.act_bits for b in model.blocks] == [a] * (len(products) - 1) + [None]

    model.eval()
    model.trace(True)
    image = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        model(image)
    records = [p.trace[0] for p in products]
    has_acc = ["acc" in r for r in records]
    assert has_acc == [first] + [True] * (len(products) - 2) + [last]
    if first:
        # the image is read as 8-bit codes floor(x * 255 + 1/2)
        codes = np.floor(image.numpy() * np.float32(255) + np.float32(0.5)).astype(np.int64)
        assert np.array_equal(records[0]["x"].codes.numpy(), codes)
        w_int = weight_integers(products[0].weight, w)
        acc = conv_forward_int(codes, w_int, 1, 1)
        assert np.array_equal(as_exact_int(records[0]["acc"]), acc)
    # a middle product against F.conv2d on the integers it recorded
    r = records[2]
    acc = conv_forward_int(r["x"].codes.numpy(), weight_integers(products[2].weight, w), 1, 1)
    assert np.array_equal(as_exact_int(r["acc"]), acc)
    model.trace(False)
    assert all(p.trace is None for p in products)


@pytest.mark.parametrize("first, last, expected_quantizations", [(False, False, 4), (True, True, 6)])
def test_gradient_quantized_below_last_fc(first, last, expected_quantizations):
    """The gradient leaving the full-precision last FC is still quantized (at the last conv's output)."""
    model = build_model("digits", (2, 2, 4), quantize_first=first, quantize_last=last)
    record = []
    model.set_gradient_noise(GradientNoise(seed=11), record)
    model.trace(True)
    out = model(torch.rand(3, 1, 8, 8))
    out.sum().backward()
    assert len(record) == expected_quantizations
    products = model.products()
    assert "grad_codes" in products[-2].trace[0]
    assert ("grad_codes" in products[-1].trace[0]) == last
    assert ("grad_codes" in products[0].trace[0]) == first


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("bad", [0, 9, 16, 33, -1, "x", 2.5, None, True])
def test_bad_bits(bad, position):
    bits = [2, 2, 2]
    bits[position] = bad
    with pytest.raises(ValueError, match=r"1\.\.8 or 32"):
        build_model("digits", tuple(bits))


@pytest.mark.parametrize("bits", [(2, 2), (2, 2, 2, 2), (1, 2, 4, 32)])
def test_bits_must_be_three_values(bits):
    """BUG (for the 4-tuples): ``DoReFaNet`` zips ``bits`` with ("W", "A", "G"), so extra
    values are silently dropped; only a too-short tuple fails (with a bare unpacking error)."""
    with pytest.raises(ValueError):
        build_model("digits", bits)


@pytest.mark.parametrize("bits", [(1, 1, 1), (8, 8, 8), (32, 32, 32), (1, 32, 6), (2.0, 4, 32)])
def test_good_bits(bits):
    model = build_model("digits", bits)
    assert model.bits == tuple(int(b) for b in bits)


@pytest.mark.parametrize("name", ["svhn-E", "resnet", "SVHN", "svhn-a", "digits-A", ""])
def test_unknown_model(name):
    with pytest.raises(ValueError) as info:
        build_model(name)
    message = str(info.value)
    for allowed in ALL_NAMES:
        assert allowed in message


@pytest.mark.parametrize("name, shape", [
    ("svhn-D", (2, 3, 32, 32)), ("svhn-D", (2, 1, 40, 40)), ("svhn-D", (3, 40, 40)),
    ("digits", (2, 1, 8, 9)), ("digits", (2, 3, 8, 8)), ("digits", (2, 1, 8, 8, 1)),
])
def test_wrong_input_shape(name, shape):
    model = build_model(name, (1, 2, 4))
    with pytest.raises(ValueError, match="expected input"):
        with torch.no_grad():
            model(torch.rand(shape))


def test_training_without_gradient_noise():
    model = build_model("digits", (1, 2, 4))
    model.train()
    with pytest.raises(RuntimeError, match=r"set_gradient_noise"):
        model(torch.rand(2, 1, 8, 8))
    with torch.no_grad():  # inference needs no noise
        assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    # full-precision gradients need none either
    build_model("digits", (1, 2, 32))(torch.rand(2, 1, 8, 8)).sum().backward()


def test_svhn_d_forward_backward():
    torch.manual_seed(0)
    model = build_model("svhn-D", (1, 2, 4))
    record = []
    model.set_gradient_noise(GradientNoise(seed=2024), record)
    model.trace(True)
    model.train()
    x = torch.rand(2, 3, 40, 40)
    out = model(x)
    assert out.shape == (2, 10)
    loss = F.cross_entropy(out, torch.tensor([3, 7]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    products = model.products()
    assert len(record) == len(products) - 2  # every product but the first conv and the last FC
    for p in products[1:-1]:
        r = p.trace[0]
        # the default engine has no batch sums of its own: its per-sample products are recorded too
        assert {"acc", "grad_codes", "backward_input", "backward_weight", "backward_weight_sum"} <= set(r)
        assert r["backward_weight"].shape == (2,) + tuple(p.weight.shape)
        g_int = 2 * r["grad_codes"].numpy() - levels(4)
        w_int = weight_integers(p.weight, 1)
        assert np.array_equal(as_exact_int(r["acc"]), conv_forward_int(r["x"].codes.numpy(), w_int, 1, p.geometry.padding))
        assert np.array_equal(as_exact_int(r["backward_weight"]), conv_backward_weight_per_sample_int(
            r["x"].codes.numpy(), g_int, p.weight.shape[2], 1, p.geometry.padding))
        assert_contract_batch_sum(r["backward_weight_sum"], as_exact_int(r["backward_weight"]), r["grad_scale"])
        assert np.array_equal(as_exact_int(r["backward_input"]), conv_backward_input_int(
            g_int, w_int, r["x"].codes.shape, 1, p.geometry.padding))


# hand-written: svhn-C's 25 % times width 2 is svhn-B's 50 %; svhn-D's 12.5 % times 0.5 is 6.25 %
@pytest.mark.parametrize("name,width,expected", [
    ("svhn-C", 2.0, [24, 32, 32, 64, 64, 64, 256]),
    ("svhn-D", 0.5, [3, 4, 4, 8, 8, 8, 32]),
    ("svhn-A", 0.25, [12, 16, 16, 32, 32, 32, 128]),
    ("digits", 0.5, [8, 16, 16, 32, 32]),
])
def test_named_width_times_width_argument(name, width, expected):
    """``--model svhn-C --width F``: the named model's width multiplies ``width`` (issue 9, item 1)."""
    products = build_model(name, (1, 2, 4), width=width).products()
    assert [p.weight.shape[0] for p in products[:-1]] == expected
