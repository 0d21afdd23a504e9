"""The integer reference equals the float golden model (verification layers 1 and 2).

(a) a trained quantized network gives identical activation codes at every
    layer and identical predictions through the float path and the integer
    path (bit-plane products, thresholds, max-pool on codes);
(b) with the same noise, per-layer gradient codes, the integer partial sums
    of all three products and the resulting weight gradients are identical,
    and so are the weights after several optimizer steps.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sw import numeric
from sw.data import iterate_minibatches, load_digits
from sw.intref import IntRefEngine, col2im, group_max_codes, im2col, integer_inference, maxpool_codes
from sw.models import build_model
from sw.quantizers import GradientNoise


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def train_briefly(model, data, steps, seed=0):
    torch.manual_seed(seed)
    model.set_gradient_noise(GradientNoise(seed=seed + 1))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    done = 0
    while done < steps:
        for xb, yb in iterate_minibatches(data.train_x, data.train_y, 64, shuffle=True, generator=gen):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model


def perturb_bn_signs(model, seed=0):
    """Make some BN scales negative and some zero, so every threshold direction occurs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            if block.bn is not None:
                c = block.bn.weight.numel()
                pick = torch.randperm(c, generator=gen)
                block.bn.weight[pick[: c // 4]] *= -1
                block.bn.weight[pick[c // 4: c // 4 + 2]] = 0


CONFIGS = [
    ((1, 2, 6), {}),
    ((2, 3, 4), {"quantize_first": True, "quantize_last": True}),
    pytest.param((1, 1, 2), {}, marks=pytest.mark.slow),
    pytest.param((8, 8, 8), {"quantize_last": True}, marks=pytest.mark.slow),
    pytest.param((5, 7, 3), {"quantize_first": True}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("bits, switches", CONFIGS, ids=lambda v: str(v))
def test_trained_network_float_and_integer_paths_agree(digits, bits, switches):
    model = train_briefly(build_model("digits", bits, **switches), digits, steps=30)
    perturb_bn_signs(model)
    model.eval()
    model.trace(True)
    images = digits.test_x[:120]
    with torch.no_grad():
        logits = model(images)
    float_codes = [block.codes for block in model.blocks[:-1]]
    int_logits, int_codes = integer_inference(model, images)
    assert len(int_codes) == len(float_codes) == len(model.blocks) - 1
    for layer, (f, i) in enumerate(zip(float_codes, int_codes)):
        mismatches = int((f != i).sum())
        assert mismatches == 0, f"layer {layer}: {mismatches} of {f.numel()} codes differ"
    assert torch.equal(logits, int_logits)
    assert torch.equal(logits.argmax(1), int_logits.argmax(1))
    # the network is not trivially constant: codes use more than one level
    assert all(len(torch.unique(c)) > 1 for c in int_codes)


def test_trained_network_predictions_agree_on_whole_test_set(digits):
    model = train_briefly(build_model("digits", (1, 2, 6)), digits, steps=70)
    model.eval()
    with torch.no_grad():
        float_pred = model(digits.test_x).argmax(1)
    int_pred = integer_inference(model, digits.test_x)[0].argmax(1)
    assert torch.equal(float_pred, int_pred)
    assert (float_pred == digits.test_y).float().mean() > 0.8  # it learned something


ENGINE_CONFIGS = [
    ((1, 2, 6), {}),
    ((4, 4, 4), {"quantize_first": True, "quantize_last": True}),
    pytest.param((1, 1, 1), {}, marks=pytest.mark.slow),
    pytest.param((3, 2, 8), {"quantize_first": True}, marks=pytest.mark.slow),
    pytest.param((8, 8, 2), {}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("bits, switches", ENGINE_CONFIGS, ids=lambda v: str(v))
def test_training_on_integer_reference_engine_is_bit_identical(digits, bits, switches):
    torch.manual_seed(3)
    golden = build_model("digits", bits, width=0.5, **switches)
    reference = copy.deepcopy(golden)
    reference.set_engine(IntRefEngine())
    records = {}
    for name, model in (("golden", golden), ("reference", reference)):
        records[name] = []
        model.set_gradient_noise(GradientNoise(seed=11), records[name])
        model.trace(True)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (golden, reference)]
    x, y = digits.train_x[:24], digits.train_y[:24]
    for step in range(3):
        for model, opt in zip((golden, reference), opts):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
        for (name, p), q in zip(golden.named_parameters(), reference.parameters()):
            assert torch.equal(p.grad, q.grad), f"step {step}: gradient of {name} differs"
        for model, opt in zip((golden, reference), opts):
            opt.step()
    for (name, p), q in zip(golden.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after 3 steps"
    # per-layer gradient codes and scales
    assert len(records["golden"]) == len(records["reference"]) > 0
    for a, b in zip(records["golden"], records["reference"]):
        assert torch.equal(a["codes"], b["codes"]) and torch.equal(a["scale"], b["scale"])
    # the integer sums of all three products, layer by layer
    keys_seen = set()
    for pg, pr in zip(golden.products(), reference.products()):
        for rg, rr in zip(pg.trace, pr.trace):
            for key in ("acc", "backward_input", "backward_weight"):
                if key in rg:
                    keys_seen.add(key)
                    assert torch.equal(rg[key].to(torch.int64), rr[key].to(torch.int64)), key
    assert keys_seen == {"acc", "backward_input", "backward_weight"}


def test_im2col_col2im_are_adjoint():
    rng = np.random.default_rng(0)
    for kernel, stride, padding in [(3, 1, 1), (5, 1, 0), (3, 2, 1), (2, 2, 0)]:
        x = rng.integers(-5, 6, size=(2, 3, 7, 7))
        cols, oh, ow = im2col(x, kernel, stride, padding)
        y = rng.integers(-5, 6, size=cols.shape)
        # <im2col(x), y> == <x, col2im(y)>
        assert (cols * y).sum() == (x * col2im(y, x.shape, kernel, stride, padding)).sum()
        w = rng.integers(-3, 4, size=(4, 3, kernel, kernel))
        expected = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=stride,
                            padding=padding).numpy()
        got = (cols.reshape(-1, cols.shape[-1]) @ w.reshape(4, -1).T).reshape(2, oh, ow, 4).transpose(0, 3, 1, 2)
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_maxpool_codes_matches_torch(kernel, stride):
    codes = np.random.default_rng(kernel * 10 + stride).integers(0, 16, size=(2, 3, 9, 8))
    expected = F.max_pool2d(torch.from_numpy(codes).double(), kernel, stride).to(torch.int64).numpy()
    assert np.array_equal(maxpool_codes(codes, kernel, stride), expected)


def test_group_max_codes_by_hand():
    codes = np.array([[1, 7], [3, 2], [0, 0], [2, 5],    # group 0 of 4 vectors: max (3, 7)
                      [4, 4], [4, 1], [6, 0], [5, 3]])   # group 1: max (6, 4)
    assert group_max_codes(codes, 4).tolist() == [[3, 7], [6, 4]]
    assert group_max_codes(codes, 1).tolist() == codes.tolist()
    with pytest.raises(ValueError, match="count a multiple of group"):
        group_max_codes(codes[:6], 4)


@pytest.mark.parametrize("pool", [2, 4])
def test_group_max_of_pooling_windows_is_maxpool(pool):
    """A map's positions in pooling-window order (each window's ``pool**2`` positions
    consecutive, windows row-major), grouped: :func:`maxpool_codes` of the map."""
    rows, h, w = 3, 8, 12
    codes = np.random.default_rng(pool).integers(0, 16, size=(rows, h, w))
    windows = codes.reshape(rows, h // pool, pool, w // pool, pool).transpose(1, 3, 2, 4, 0)
    pooled = group_max_codes(windows.reshape(-1, rows), pool * pool)  # (windows, rows)
    want = maxpool_codes(codes[None], pool)[0]  # (rows, h // pool, w // pool)
    assert np.array_equal(pooled.T.reshape(rows, h // pool, w // pool), want)


def test_maxpool_commutes_with_quantization():
    """Paper Eqn 15: quantize(max(x)) == max(quantize(x))."""
    x = torch.rand(2, 3, 8, 8) * 1.4 - 0.2
    for bits in range(1, 9):
        pooled_then_quantized = numeric.activation_codes(F.max_pool2d(x, 2), bits).numpy()
        quantized_then_pooled = maxpool_codes(numeric.activation_codes(x, bits).numpy(), 2)
        assert np.array_equal(pooled_then_quantized, quantized_then_pooled)


def test_integer_inference_rejects_full_precision_activations(digits):
    with pytest.raises(ValueError, match="quantized activations"):
        integer_inference(build_model("digits", (1, 32, 32)), digits.test_x[:2])


def test_integer_inference_with_thresholds_on_the_core(digits):
    """Forward inference through the core's activation stage (the byte-level core model):
    every quantized block's codes come back from the core and equal the float model's."""
    from sw.core_model import CoreModel
    from sw.core_engine import CoreEngine
    from sw.driver import CoreClient, LoopbackTransport

    model = train_briefly(build_model("digits", (1, 2, 6), width=0.25), digits, steps=20)
    perturb_bn_signs(model)
    model.eval()
    model.trace(True)
    images = digits.test_x[:40]
    with torch.no_grad():
        logits = model(images)
    core = CoreEngine(CoreClient(LoopbackTransport(CoreModel())))
    core_logits, core_codes = integer_inference(model, images, engine=core)
    for layer, (block, codes) in enumerate(zip(model.blocks, core_codes)):
        assert torch.equal(codes, block.codes), f"layer {layer}"
    assert torch.equal(core_logits, logits)
    quantized_activated = sum(b.product.quantized and b.act_bits is not None for b in model.blocks)
    assert core.stats == {"core_thresholds": quantized_activated, "host_thresholds": 0, "core_sums": 0,
                          "host_sums": 0,  # inference: no backward-weight sums
                          "windowed": 0, "patched": 4,  # a core without a feature map: the patches sent
                          "core_pools": 0, "host_pools": 1, "interleaved": 0, "host_outer": 0}  # ... and no pooling: the digits net's pool here
    assert quantized_activated == 4


# --------------------------------------------------------------------------- backward-input lowerings

class _Transposed(IntRefEngine):
    """The integer reference, backward-input always lowered as the transposed convolution."""

    def transposed_backward_input(self, geometry, g, w, input_shape):
        return True


def _reference_backward_input(g, w, padding, input_shape):
    """dX by the definition, in int64 loops' vectorised form: every output position's
    gradient times every tap's weight, added where the tap lands inside the input."""
    gi, wi = g.integers().numpy().astype(np.int64), w.integers().numpy().astype(np.int64)
    b, o, oh, ow = gi.shape
    _, c, h, wd = input_shape
    k = wi.shape[2]
    out = np.zeros((b, c, h + 2 * padding, wd + 2 * padding), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            out[:, :, ky:ky + oh, kx:kx + ow] += np.einsum("boyx,oc->bcyx", gi, wi[:, :, ky, kx])
    return out[:, :, padding:padding + h, padding:padding + wd]


@pytest.mark.parametrize("b, c, o, h, k, padding, g_bits, w_bits, g_signed", [
    (2, 3, 4, 6, 3, 1, 6, 1, True),    # the digits net's 3x3 "same" convs
    (3, 5, 2, 5, 3, 0, 4, 2, True),    # no padding: the border taps' correction varies most
    (2, 4, 6, 4, 4, 0, 6, 1, True),    # the last conv's 4x4 kernel on a 4x4 map
    (1, 2, 3, 7, 2, 1, 3, 3, True),    # an even kernel
    (2, 3, 2, 5, 5, 2, 2, 1, True),
    (2, 3, 4, 6, 3, 1, 3, 2, False),   # an unsigned left side: no correction at all
])
def test_transposed_backward_input_equals_the_folded_patches(b, c, o, h, k, padding, g_bits, w_bits, g_signed):
    """Both lowerings of a stride-1 conv's backward-input give the definition's integers:
    patches of the gradient against W^T folded back by col2im, and the transposed convolution
    (unsigned patches of the zero-padded gradient against the flipped kernel, less n times
    the in-bounds taps' weight sum)."""
    from sw.products import ConvGeometry
    from sw.quantizers import Quantized
    rng = np.random.default_rng(h * k + padding)
    oh = h + 2 * padding - k + 1
    g = Quantized(torch.from_numpy(rng.integers(0, 1 << g_bits, (b, o, oh, oh))), torch.ones(b), g_bits, g_signed)
    w = Quantized(torch.from_numpy(rng.integers(0, 1 << w_bits, (o, c, k, k))), torch.tensor(1.0), w_bits, True)
    geometry, shape = ConvGeometry(stride=1, padding=padding), (b, c, h, h)
    want = _reference_backward_input(g, w, padding, shape)
    folded = IntRefEngine().backward_input(geometry, g, w, shape)
    transposed = _Transposed().backward_input(geometry, g, w, shape)
    assert np.array_equal(folded.numpy(), want) and np.array_equal(transposed.numpy(), want)
    assert not IntRefEngine().transposed_backward_input(geometry, g, w, shape)
