"""Properties of the numeric contract (sw.numeric), checked against exact arithmetic."""

from fractions import Fraction
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sw import numeric
from sw.contract import gradients
from sw.prng import NOISE_BITS

QUANT_BITS = list(range(1, 9))
bits_st = st.sampled_from(QUANT_BITS)
unit_floats = st.floats(min_value=-0.5, max_value=1.5, allow_nan=False, width=32)


def exact_round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


# --------------------------------------------------------------------------- bitwidths

@pytest.mark.parametrize("bits", [0, 9, 16, 31, 33, -1, 2.5, "4", None, True])
def test_check_bits_rejects_and_names_allowed_values(bits):
    with pytest.raises(ValueError, match=r"1\.\.8 or 32"):
        numeric.check_bits(bits)


@pytest.mark.parametrize("text, expected", [("1,2,6", (1, 2, 6)), ("32, 32,32", (32, 32, 32)), ("8,1,4", (8, 1, 4))])
def test_parse_bits(text, expected):
    assert numeric.parse_bits(text) == expected


@pytest.mark.parametrize("text", ["1,2", "1,2,3,4", "a,b,c", "1,2,9", "0,2,6", ""])
def test_parse_bits_rejects(text):
    with pytest.raises(ValueError, match="W,A,G|1..8 or 32"):
        numeric.parse_bits(text)


def test_levels_of_full_precision_is_an_error():
    with pytest.raises(ValueError, match="not quantized"):
        numeric.levels(32)


# --------------------------------------------------------------------------- quantize_k / activations

@settings(max_examples=300, deadline=None)
@given(bits=bits_st, x=st.floats(min_value=0, max_value=1, allow_nan=False, width=32))
def test_quantize_k_matches_exact_round_half_up(bits, x):
    n = (1 << bits) - 1
    got = numeric.quantize_k(torch.tensor([x], dtype=torch.float64), bits).item()
    assert got == exact_round_half_up(Fraction(x) * n) / n


@pytest.mark.parametrize("bits", QUANT_BITS)
def test_round_half_up_at_exact_ties(bits):
    """x*n = j + 1/2 exactly rounds up to j + 1 (torch.round would give the even one)."""
    n = (1 << bits) - 1
    ties = torch.tensor([(j + 0.5) / n for j in range(n)], dtype=torch.float64)
    ties = ties[(ties * n) == torch.arange(n, dtype=torch.float64) + 0.5]  # keep the exactly representable ones
    assert len(ties) > 0
    codes = numeric.round_half_up(ties * n)
    assert torch.equal(codes, torch.floor(ties * n) + 1)
    assert numeric.round_half_up(torch.tensor([0.5, 1.5, 2.5])).tolist() == [1.0, 2.0, 3.0]


@settings(max_examples=200, deadline=None)
@given(bits=bits_st, xs=st.lists(unit_floats, min_size=1, max_size=40))
def test_activation_codes_range_idempotence_monotonicity(bits, xs):
    n = (1 << bits) - 1
    x = torch.tensor(sorted(xs), dtype=torch.float32)
    codes = numeric.activation_codes(x, bits)
    assert codes.min() >= 0 and codes.max() <= n
    assert torch.all(codes[1:] >= codes[:-1])  # monotone
    values = codes.to(torch.float32) * numeric.activation_scale(bits)
    assert torch.equal(numeric.activation_codes(values, bits), codes)  # idempotent
    # The product x*n is rounded to the activations' float32 first (the float model's own
    # arithmetic, which the thresholds follow); rounding half up is exact after that.
    # At a near-tie the float32 product may round onto the tie: x = 0.7f (just under 7/10),
    # n = 15 gives 10.5f, code 11, where the exact rational product would give 10.
    products = torch.clamp(x, 0.0, 1.0) * n
    for pi, ci in zip(products.tolist(), codes.tolist()):
        assert ci == exact_round_half_up(Fraction(pi))


def test_activation_codes_round_the_float32_product():
    """The near-tie hypothesis found: 0.7f * 15 is 10.4999998 exactly but 10.5 in float32."""
    x = torch.tensor([0.7], dtype=torch.float32)
    assert Fraction(x.item()) * 15 < Fraction(21, 2)
    assert numeric.activation_codes(x, 4).item() == 11


# --------------------------------------------------------------------------- weights

@settings(max_examples=150, deadline=None)
@given(bits=st.sampled_from(range(2, 9)),
       w=st.lists(st.floats(min_value=-4, max_value=4, allow_nan=False, width=32), min_size=1, max_size=30))
def test_weight_codes_k_ge_2_are_odd_in_range_and_monotone(bits, w):
    n = (1 << bits) - 1
    wt = torch.tensor(sorted(w), dtype=torch.float32)
    codes, scale = numeric.weight_codes(wt, bits)
    assert torch.all((codes % 2) == (n % 2)) and codes.abs().max() <= n
    assert torch.all(codes[1:] >= codes[:-1])
    assert scale.item() == pytest.approx(1 / n, rel=1e-7)
    # the weight of largest magnitude lands on the end of the range
    if wt.abs().max() > 0:
        peak = int(wt.abs().argmax())
        assert codes[peak] == (n if wt[peak] > 0 else -n)


@pytest.mark.parametrize("bits", QUANT_BITS)
def test_zero_weight_maps_to_plus_one_and_zero_layer_has_no_nan(bits):
    w = torch.tensor([-0.3, 0.0, 0.7, -0.0])
    codes, _ = numeric.weight_codes(w, bits)
    assert codes[1] == 1 and codes[3] == 1
    zeros = torch.zeros(3, 4)
    codes, scale = numeric.weight_codes(zeros, bits)
    assert torch.all(codes == 1)
    assert torch.isfinite(numeric.weight_values(codes, scale)).all()


def test_binary_weights_use_mean_magnitude():
    w = torch.tensor([0.5, -1.5, 0.0, 2.0])
    codes, scale = numeric.weight_codes(w, 1)
    assert codes.tolist() == [1, -1, 1, 1]
    assert scale.item() == pytest.approx(1.0)


# --------------------------------------------------------------------------- gradients

def paper_gradient_code(g: Fraction, m: Fraction, r: int, bits: int) -> int:
    """The paper's formula in exact rational arithmetic."""
    n = (1 << bits) - 1
    u = Fraction(r - (1 << (NOISE_BITS - 1)), 1 << NOISE_BITS)
    x = min(max(g / (2 * m) + Fraction(1, 2) + u / n, Fraction(0)), Fraction(1))
    return exact_round_half_up(x * n)


@settings(max_examples=200, deadline=None)
@given(bits=bits_st, data=st.data())
def test_gradient_codes_equal_exact_paper_formula_on_floats(bits, data):
    size = data.draw(st.integers(1, 12))
    g = data.draw(st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32),
                           min_size=size, max_size=size))
    r = data.draw(st.lists(st.integers(0, (1 << NOISE_BITS) - 1), min_size=size, max_size=size))
    gt = torch.tensor([g], dtype=torch.float32)
    codes, m = numeric.gradient_codes(gt, torch.tensor([r]), bits)
    mx = max(abs(Fraction(v)) for v in gt[0].tolist())
    assert m.item() == float(mx)
    for gi, ri, ci in zip(gt[0].tolist(), r, codes[0].tolist()):
        expected = (1 << bits) - 1 if mx == 0 else paper_gradient_code(Fraction(gi), mx, ri, bits)
        assert ci == expected


@pytest.mark.parametrize("bits", QUANT_BITS)
def test_gradient_codes_at_constructed_ties(bits):
    """Cases where n*x + 1/2 is exactly an integer (e.g. g = 0 with u = 0 gives (n + 1)/2),
    where a naive float evaluation can round the wrong way."""
    cases = []
    for m in (3, 5, 7, 12, 1000):
        for g in range(-m, m + 1):
            for r in (0, 1, 1 << 15, (1 << 16) - 1, 12345):
                cases.append((g, m, r))
    # one sample per case: [g, m], so the per-sample max is m
    gt = torch.tensor([[g, m] for g, m, _ in cases], dtype=torch.int64)
    draws = torch.tensor([[r, 0] for _, _, r in cases], dtype=torch.int64)
    c, _ = numeric.gradient_codes(gt, draws, bits)
    expected = [paper_gradient_code(Fraction(g), Fraction(m), r, bits) for g, m, r in cases]
    assert c[:, 0].tolist() == expected
    cf, _ = numeric.gradient_codes(gt.to(torch.float32), draws, bits)
    assert torch.equal(cf, c)


@settings(max_examples=100, deadline=None)
@given(bits=bits_st, seed=st.integers(0, 2**31))
def test_gradient_integer_and_float_paths_agree(bits, seed):
    rng = np.random.default_rng(seed)
    g = torch.from_numpy(rng.integers(-(1 << 20), 1 << 20, size=(3, 2, 5)))
    r = torch.from_numpy(rng.integers(0, 1 << NOISE_BITS, size=g.shape))
    c_int, m_int = numeric.gradient_codes(g, r, bits)
    c_flt, m_flt = numeric.gradient_codes(g.to(torch.float32), r, bits)
    assert torch.equal(c_int, c_flt)
    assert torch.equal(m_int.to(torch.float32), m_flt)


def test_gradient_scale_is_per_sample_max_over_non_batch_axes():
    g = torch.tensor([[[1.0, -5.0], [2.0, 0.5]], [[0.0, 0.25], [-0.125, 0.0]]])
    assert numeric.gradient_scale(g).tolist() == [5.0, 0.25]


def test_all_zero_sample_gives_zero_gradient_without_nan():
    g = torch.zeros(2, 3, 4)
    g[1, 0, 0] = 2.0
    r = torch.randint(0, 1 << NOISE_BITS, g.shape)
    codes, m = numeric.gradient_codes(g, r, 4)
    values = numeric.gradient_values(codes, m, 4)
    assert torch.isfinite(values).all()
    assert torch.all(values[0] == 0)
    assert values[1].abs().max() == 2.0


@pytest.mark.parametrize("bits", QUANT_BITS)
def test_gradient_value_is_unbiased_in_expectation(bits):
    """Averaged over every noise draw, the quantized gradient equals g (stochastic rounding)."""
    n = (1 << bits) - 1
    g_values = [-0.9, -0.31, 0.0, 0.123, 0.77]
    r = torch.arange(1 << NOISE_BITS)
    for gv in g_values:
        g = torch.tensor([[1.0] + [gv] * (1 << NOISE_BITS)], dtype=torch.float32)
        draws = torch.cat([torch.zeros(1, 1, dtype=torch.int64), r[None]], dim=1)
        codes, m = numeric.gradient_codes(g, draws, bits)
        mean = (2 * codes[0, 1:] - n).double().mean().item() / n
        # the noise is discrete, 2**16 steps per code step of 2/n
        assert abs(mean - float(torch.tensor(gv, dtype=torch.float32))) <= 2 / n / (1 << NOISE_BITS) + 1e-12


def test_gradient_noise_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        numeric.gradient_codes(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.int64), 2)


# --------------------------------------------------------------------------- thresholds

@pytest.mark.parametrize("act_bits", QUANT_BITS)
def test_fold_thresholds_equal_float_path_for_every_accumulator(act_bits):
    """Every accumulator in range, positive, negative and zero BN scales."""
    gen = torch.Generator().manual_seed(act_bits)
    channels = 12
    alpha = torch.randn(channels, generator=gen) * 0.3
    alpha[0], alpha[1] = 0.0, -0.0
    alpha[2] = -abs(alpha[2])
    beta = torch.rand(channels, generator=gen) * 1.4 - 0.2
    scale = torch.tensor(1 / 3, dtype=torch.float32) * 0.0137
    bound = 600
    thresholds, direction = numeric.fold_thresholds(scale, alpha, beta, act_bits, -bound, bound)
    acc = torch.arange(-bound, bound + 1).reshape(-1, 1).expand(-1, channels)
    assert torch.equal(numeric.apply_thresholds(acc, thresholds, direction),
                       numeric.activation_from_accumulator(acc, scale, alpha, beta, act_bits))
    assert set(direction.tolist()) <= {-1, 1}
    assert direction[2] == -1


def test_apply_thresholds_counts_passed_thresholds():
    thresholds = torch.tensor([[0, 5, 10], [3, 0, -3]])
    direction = torch.tensor([1, -1])
    acc = torch.tensor([[-1, 4], [5, 0], [10, -3], [11, -4]])
    assert numeric.apply_thresholds(acc, thresholds, direction).tolist() == [[0, 0], [2, 2], [3, 3], [3, 3]]


# --------------------------------------------------------------------------- the batch sum of weight gradients

float32_scales = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)


def exact_batch_sum(partials, scales) -> Fraction:
    """``sum_b m_b I_b`` in exact rational arithmetic (the paper's formula)."""
    return sum((Fraction(float(m)) * int(i) for m, i in zip(scales, partials)), Fraction(0))


def s_of(hi, lo) -> int:
    return (int(hi) << 32) + int(lo)


def trunc24(s: int) -> int:
    """``s`` truncated toward zero to 24 significant bits, from its binary digits (not the
    contract's shifts): the digits after the 24th become zeros."""
    digits = bin(abs(int(s)))[2:]
    kept = int(digits[:24] + "0" * max(len(digits) - 24, 0), 2)
    return -kept if s < 0 else kept


def trunc24_real(x: Fraction) -> Fraction:
    """A real ``x`` truncated toward zero to 24 significant bits: ``floor(|x| / 2**e) * 2**e``
    with ``2**23 <= |x| / 2**e < 2**24``."""
    if x == 0:
        return x
    e = math.floor(math.log2(abs(x))) - 23
    while abs(x) / Fraction(2) ** e >= 1 << 24:
        e += 1
    while abs(x) / Fraction(2) ** e < 1 << 23:
        e -= 1
    kept = math.floor(abs(x) / Fraction(2) ** e) * Fraction(2) ** e
    return -kept if x < 0 else kept


def float32_pattern(value: int) -> int:
    """numpy's binary32 bit pattern of an integer with at most 24 significant bits."""
    return int(np.array([float(value)], dtype=np.float32).view(np.uint32)[0])


SUM_EDGES = [0, 1, -1, 2, -2, (1 << 23) - 1, 1 << 23, (1 << 24) - 1, -((1 << 24) - 1), 1 << 24, -(1 << 24),
             (1 << 24) + 1, -(1 << 24) - 1, (1 << 25) - 1, -(1 << 25) + 1, (1 << 32) - 1, -(1 << 32), (1 << 32) + 1,
             (1 << 56) - 1, -(1 << 56) + 1, (1 << 84) - 1, -(1 << 84) - 1, (1 << 95) - 1, -(1 << 95),
             (1 << 127) - 1, -(1 << 127)]


@pytest.mark.parametrize("total", SUM_EDGES + [pow(3, k) * (-1) ** k for k in range(1, 80, 7)])
def test_truncate_sum_and_its_float32_pattern(total):
    assert gradients.truncate_sum(total) == trunc24(total)
    assert abs(gradients.truncate_sum(total)) <= abs(total)
    assert abs(total - gradients.truncate_sum(total)) <= abs(total) * Fraction(1, 1 << 23)
    pattern = gradients.sum_float_bits(total)
    assert pattern == float32_pattern(trunc24(total))
    assert gradients.sum_from_float_bits(pattern) == trunc24(total)


def test_sum_float_bits_by_hand():
    assert gradients.sum_float_bits(0) == 0
    assert gradients.sum_float_bits(1) == 0x3F800000
    assert gradients.sum_float_bits(-1) == 0xBF800000
    assert gradients.sum_float_bits(3) == 0x40400000
    assert gradients.sum_float_bits((1 << 24) + 1) == 0x4B800000  # 2**24: the 1 is cut
    assert gradients.sum_float_bits(-(1 << 127)) == 0xFF000000
    assert gradients.sum_float_bits((1 << 127) - 1) == 0x7EFFFFFF  # (2**24 - 1) * 2**103: exponent 126 + 127


@pytest.mark.parametrize("bad", [1 << 127, -(1 << 127) - 1, 1 << 200])
def test_truncate_sum_refuses_sums_past_128_bits(bad):
    for f in (gradients.truncate_sum, gradients.sum_float_bits):
        with pytest.raises(ValueError, match="128-bit two's-complement"):
            f(bad)


@pytest.mark.parametrize("pattern, why", [
    (-1, "0 .. 2\\*\\*32"), (1 << 32, "0 .. 2\\*\\*32"), (0x80000000, "exponent 0"),
    (0x3F000000, "exponent 126"), (0x00000001, "exponent 0"), (0x7F800000, "exponent 255"),
    (0x7FC00000, "exponent 255"), (0x3FC00000, "not an integer"), (0x4B000001 - (1 << 23), "not an integer")])
def test_sum_from_float_bits_refuses_patterns_no_sum_has(pattern, why):
    with pytest.raises(ValueError, match=why):
        gradients.sum_from_float_bits(pattern)


def test_truncated_sum_value_is_truncate_sum_on_the_limbs():
    rng = np.random.default_rng(5)
    sums = list(SUM_EDGES[:-2])  # int64 limbs hold |S| <= 2**95
    sums += [(1 << 84) + 12345, -(1 << 84) + 3, ((1 << 52) << 32) - 1, -((1 << 52) << 32), ((1 << 52) << 32) + 77]
    for bits in rng.integers(1, 95, 3000).tolist():
        value = int(rng.integers(0, 1 << 62)) << 34 | int(rng.integers(0, 1 << 34))
        sums.append(value >> (96 - bits) if rng.random() < 0.5 else -(value >> (96 - bits)))
    hi, lo = numeric.sum_limbs(np.array(sums, dtype=object))
    got = numeric.truncated_sum_value(hi, lo)
    assert got.dtype == torch.float64
    assert [int(v) for v in got.tolist()] == [trunc24(v) for v in sums]


@given(st.lists(float32_scales, min_size=1, max_size=40))
def test_scale_parts_rebuild_the_float32_scale(scales):
    m = torch.tensor(scales, dtype=torch.float32)
    significand, exponent = numeric.scale_parts(m)
    for value, s, e in zip(m.tolist(), significand.tolist(), exponent.tolist()):
        assert 0 <= s < 1 << gradients.SCALE_MANTISSA_BITS
        assert Fraction(s) * Fraction(2) ** e == Fraction(value)
        assert (s, e) == gradients.scale_parts(value)


def test_scale_parts_of_subnormal_and_zero_scales():
    tiny = float(torch.tensor(1e-44, dtype=torch.float32))  # subnormal: 7 * 2**-149
    assert gradients.scale_parts(tiny) == (7 << 21, -149 - 21)
    assert gradients.scale_parts(0.0) == (0, 0)
    with pytest.raises(ValueError, match="float32"):
        gradients.scale_parts(0.1)  # a float64 value with more than 24 significant bits
    with pytest.raises(ValueError, match=">= 0"):
        gradients.scale_parts(-1.0)


@settings(max_examples=200)
@given(st.lists(st.tuples(float32_scales, st.integers(-(1 << 20), 1 << 20)), min_size=1, max_size=33))
def test_aligned_batch_sum_is_the_contract_sum_and_within_its_bound(samples):
    scales = [m for m, _ in samples]
    partials = [i for _, i in samples]
    m = torch.tensor(scales, dtype=torch.float32)
    hi, lo, top = numeric.aligned_batch_sum(torch.tensor(partials, dtype=torch.int64).reshape(-1, 1), m)
    assert 0 <= int(lo[0]) < 1 << 32
    # the integer S: the contract's definition, term by term in Python integers
    parts = [gradients.scale_parts(float(x)) for x in m.tolist()]
    expected_top, shifts = gradients.batch_shifts(parts)
    expected = sum(gradients.aligned_term(s, i, k) for (s, _), i, k in zip(parts, partials, shifts))
    assert top == expected_top and s_of(hi[0], lo[0]) == expected
    # against the exact sum: exact unless a sample is shifted past the guard bits, then the bound
    exact = exact_batch_sum(partials, m.tolist())
    got = Fraction(expected) * Fraction(2) ** (top - gradients.GUARD_BITS)
    truncated = sum(k > gradients.GUARD_BITS for k in shifts)
    assert got <= exact
    assert exact - got < truncated * Fraction(2) ** (top - gradients.GUARD_BITS) or got == exact
    value = float(numeric.aligned_sum_value(hi, lo, top)[0])
    assert value == math.ldexp(trunc24(expected), top - gradients.GUARD_BITS)  # S truncated to 24 bits, exactly
    assert abs(Fraction(value) - got) <= abs(got) * Fraction(1, 1 << 23)  # the revision's bound against S


def test_aligned_batch_sum_truncates_a_tiny_sample_by_floor():
    m = torch.tensor([1.0, 2.0 ** -40], dtype=torch.float32)  # shift 40 > 32 guard bits
    partials = torch.tensor([[3, 0], [-5, 5]], dtype=torch.int64)  # samples x weights
    hi, lo, top = numeric.aligned_batch_sum(partials, m)
    # M = 2**23 for both; E = -23; terms: 3 * 2**23 * 2**32 and floor(-5 * 2**23 * 2**-8) = -163840
    assert top == -23
    assert s_of(hi[0], lo[0]) == 3 * 2 ** 55 - 5 * 2 ** 15
    assert s_of(hi[1], lo[1]) == 5 * 2 ** 15
    m = torch.tensor([1.0, 2.0 ** -60], dtype=torch.float32)  # past the term's bits: floor gives -1, not 0
    hi, lo, _ = numeric.aligned_batch_sum(partials, m)
    assert s_of(hi[0], lo[0]) == 3 * 2 ** 55 - 1 and s_of(hi[1], lo[1]) == 0


@pytest.mark.parametrize("s, want", [
    ((1 << 60) + (1 << 7) + 1, 1 << 60),                    # the bits below the 24th are cut
    (-((1 << 60) + (1 << 7) + 1), -(1 << 60)),              # toward zero (a floor would give -(2**60 + 2**37))
    (0xFFFFFF8 << 40 | 0xFF, 0xFFFFFF0 << 40),              # 25 ones: the last one goes, no rounding up
    ((1 << 24) - 1, (1 << 24) - 1), ((1 << 24) + 1, 1 << 24), (-(1 << 24) - 1, -(1 << 24)),
    ((1 << 90) + 3, 1 << 90), (-(1 << 90) - (1 << 60), -(1 << 90)),  # hi past 2**52: from Python's integers
    (-(1 << 95), -(1 << 95)), (0, 0),
])
def test_aligned_sum_value_truncates_to_24_bits(s, want):
    hi, lo = torch.tensor([s >> 32]), torch.tensor([s & 0xFFFFFFFF])
    assert float(numeric.aligned_sum_value(hi, lo, gradients.GUARD_BITS)[0]) == float(want)
    assert float(numeric.aligned_sum_value(hi, lo, gradients.GUARD_BITS - 3)[0]) == float(want) / 8


def test_backward_weight_values_of_an_all_zero_batch_is_zero():
    partials = torch.tensor([[7, -3], [1, 2]])
    got = numeric.backward_weight_values(partials, torch.zeros(2), torch.tensor(1 / 3), 4)
    assert got.dtype == torch.float32 and torch.equal(got, torch.zeros(2))


@pytest.mark.parametrize("gbits", [1, 6, 8])
def test_backward_weight_values_is_the_truncated_exact_sum(gbits):
    """Typical scales (within 2**32 of each other): float32 of the exact sum truncated to 24
    significant bits, scaled."""
    torch.manual_seed(gbits)
    partials = torch.randint(-40000, 40000, (32, 6, 4))
    m = (torch.rand(32) * torch.exp(torch.randn(32) * 4)).to(torch.float32)
    a_scale = torch.tensor(1 / 3, dtype=torch.float32)
    got = numeric.backward_weight_values(partials, m, a_scale, gbits)
    factor = float(a_scale) / numeric.levels(gbits)
    for index in [(0, 0), (5, 3), (2, 1)]:
        exact = exact_batch_sum(partials[(slice(None), *index)].tolist(), m.tolist())
        total = float(trunc24_real(exact))  # 24 bits: exact in float64
        assert abs(Fraction(total) - exact) <= abs(exact) * Fraction(1, 1 << 23)
        assert float(got[index]) == float(torch.tensor(total * factor, dtype=torch.float64).to(torch.float32))


@pytest.mark.parametrize("sums", [
    [0, 1, -1, (1 << 32) - 1, 1 << 32, -(1 << 32), -(1 << 32) - 1],
    [(1 << 95) - 1, -(1 << 95) + 1, 3 * 2 ** 55 - 5 * 2 ** 15, -(3 * 2 ** 55) + 5],
], ids=["limb-edges", "widest"])
def test_sum_limbs_split_python_ints_as_aligned_batch_sum_does(sums):
    hi, lo = numeric.sum_limbs(np.array(sums, dtype=object).reshape(1, -1))
    assert hi.dtype == lo.dtype == torch.int64 and hi.shape == lo.shape == (1, len(sums))
    assert [s_of(h, l) for h, l in zip(hi[0], lo[0])] == sums
    assert all(0 <= int(l) < 1 << 32 for l in lo[0])
    # hand-written limbs: -1 = -1 * 2**32 + (2**32 - 1); -(2**32) - 1 = -2 * 2**32 + (2**32 - 1)
    if sums[0] == 0:
        assert hi[0].tolist() == [0, 0, -1, 0, 1, -1, -2]
        assert lo[0].tolist() == [0, 1, (1 << 32) - 1, (1 << 32) - 1, 0, 0, (1 << 32) - 1]


def test_sum_limbs_refuses_sums_past_the_int64_limbs():
    for s in (1 << 95, -(1 << 95) - 1, 1 << 100):
        with pytest.raises(OverflowError, match="2\\*\\*95"):
            numeric.sum_limbs([s])
    hi, lo = numeric.sum_limbs([])
    assert hi.numel() == lo.numel() == 0


@pytest.mark.parametrize("gbits", [1, 6, 8])
def test_weight_gradient_of_a_sum_made_elsewhere_equals_backward_weight_values(gbits):
    """A batch sum made from Python ints (as a core's READ_SUMS gives it), split by sum_limbs,
    gives the host's weight gradient bit for bit."""
    torch.manual_seed(gbits + 10)
    partials = torch.randint(-40000, 40000, (16, 5, 3))
    m = (torch.rand(16) * torch.exp(torch.randn(16) * 8)).to(torch.float32)
    m[3] = 0.0
    a_scale = torch.tensor(1 / 3, dtype=torch.float32)
    parts = [gradients.scale_parts(float(x)) for x in m.tolist()]
    top, shifts = gradients.batch_shifts(parts)
    flat = partials.reshape(16, -1).tolist()
    sums = np.array([sum(gradients.aligned_term(s, sample[i], k) for (s, _), sample, k in zip(parts, flat, shifts))
                     for i in range(15)], dtype=object).reshape(5, 3)
    got = numeric.weight_gradient(*numeric.sum_limbs(sums), top, a_scale, gbits)
    assert got.dtype == torch.float32 and got.shape == (5, 3)
    assert torch.equal(got, numeric.backward_weight_values(partials, m, a_scale, gbits))
    # The contract's formula in plain Python: S truncated to 24 significant bits (exact in
    # float64), ldexp scales exactly, then a_scale / n in float64 and float32 at the end.
    n = (1 << gbits) - 1
    want = [np.float32(math.ldexp(float(trunc24(s)), top - gradients.GUARD_BITS) * (float(a_scale) / n))
            for s in sums.ravel()]
    assert got.ravel().tolist() == [float(v) for v in want]
    # The sums as a core's binary32 READ_SUMS gives them (already truncated): the same gradient.
    floated = np.array([gradients.sum_from_float_bits(float32_pattern(trunc24(s))) for s in sums.ravel()],
                       dtype=object).reshape(5, 3)
    assert torch.equal(numeric.weight_gradient(*numeric.sum_limbs(floated), top, a_scale, gbits), got)


def test_sum_bits_holds_the_extremes():
    bits = gradients.sum_bits(32, 37044)
    extreme = 32 * ((1 << 24) - 1) * 37044 << gradients.GUARD_BITS
    assert extreme < 1 << (bits - 1) and -extreme >= -(1 << (bits - 1))
    assert extreme >= 1 << (bits - 2)  # and no wider than needed
    with pytest.raises(ValueError, match="batch"):
        gradients.sum_bits(0, 5)
