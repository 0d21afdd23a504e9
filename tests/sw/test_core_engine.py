"""The core engine's conv products from feature maps (protocol 5's windows).

Every expected value is :class:`sw.intref.IntRefEngine`'s (im2col and bit-plane
popcounts on the host), never the engine under test's; bytes are counted on the
wire by the client, against the same engine on a core without a feature map.
"""

import numpy as np
import pytest
import torch

from sw import numeric
from sw.contract.core import LARGE_LIMITS
from sw.core_engine import CoreEngine
from sw.core_model import CoreModel
from sw.driver import CoreClient, LoopbackTransport
from sw.intref import BlockThresholds, IntRefEngine, conv_output_size
from sw.products import ConvGeometry
from sw.quantizers import Quantized


class Windowed(CoreEngine):
    """The core engine with windows wherever the core can make them, whatever the bytes."""

    def _cheaper(self, windows, patches):
        return super()._cheaper(windows, patches if windows is None else windows + 1)


def engine(kind=CoreEngine, **limits) -> CoreEngine:
    return kind(CoreClient(LoopbackTransport(CoreModel(**dict(LARGE_LIMITS, **limits)))))


def codes(rng, shape, bits, signed, scale=None):
    scale = torch.tensor(1.0) if scale is None else scale
    return Quantized(torch.from_numpy(rng.integers(0, 1 << bits, shape)), scale, bits, signed)


def wire(client) -> tuple[int, int]:
    """Bytes so far ``(to the core, both ways)``."""
    return client.stats["bytes_out"], client.stats["bytes_out"] + client.stats["bytes_in"]


#: (B, C, H, O, k, stride, padding, core limits): pad 0/1, k 3/4, stride 1/2, a matrix sliced
#: by channels (C*k*k > max_cols: 4 channels of 9 taps a slice), row tiles (O > max_rows).
CASES = [
    (2, 3, 6, 5, 3, 1, 1, {}),
    (2, 3, 7, 5, 3, 2, 1, {}),
    (3, 2, 6, 4, 4, 1, 0, {}),
    (2, 2, 9, 3, 4, 2, 1, {}),
    (2, 9, 5, 6, 3, 1, 1, {"max_cols": 40}),
    (2, 3, 6, 11, 3, 1, 1, {"max_rows": 4}),
    (2, 10, 5, 11, 3, 2, 1, {"max_rows": 4, "max_cols": 40}),
]
IDS = [f"B{b}-C{c}-H{h}-O{o}-k{k}-s{s}-p{p}" + "".join(f"-{n}{v}" for n, v in lim.items())
       for b, c, h, o, k, s, p, lim in CASES]


def operands(case, x_signed, seed):
    b, c, h, o, k, s, p, _ = case
    rng = np.random.default_rng(seed)
    oh = conv_output_size(h, k, s, p)
    x = codes(rng, (b, c, h, h), 2, x_signed)
    w = codes(rng, (o, c, k, k), 1, True)
    g = codes(rng, (b, o, oh, oh), 6, True, scale=torch.tensor([0.5, 3e-3, 1.0][:b], dtype=torch.float32))
    return ConvGeometry(stride=s, padding=p), x, w, g


@pytest.mark.parametrize("x_signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_windowed_forward_is_the_reference(case, x_signed):
    geometry, x, w, _ = operands(case, x_signed, 1)
    core = engine(Windowed, **case[-1])
    assert torch.equal(core.forward(geometry, x, w), IntRefEngine().forward(geometry, x, w))
    assert core.stats["windowed"] == 1 and core.stats["patched"] == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_windowed_backward_input_is_the_reference(case):
    geometry, x, w, g = operands(case, False, 2)
    shape = tuple(x.codes.shape)
    core = engine(Windowed, **case[-1])
    want = IntRefEngine().backward_input(geometry, g, w, shape)
    assert torch.equal(core.backward_input(geometry, g, w, shape), want)
    # the transposed convolution (stride 1) through windows over the gradient's map; a
    # strided conv's backward-input is the folded lowering, its vectors the gradient's codes
    windowed = geometry.stride == 1 and core.transposed_backward_input(geometry, g, w, shape)
    assert core.stats == dict(core.stats, windowed=int(windowed), patched=1 - int(windowed))
    if geometry.stride == 1:
        assert torch.equal(core._transposed_backward_input(geometry, g, w, shape), want)
        assert core.stats["windowed"] == 1 + int(windowed)


def same_sum(got, want):
    """The batch sums ``(hi, lo, E)`` reach the same gradient (:func:`sw.numeric.aligned_sum_value`:
    a core reads ``S`` truncated, the host's limbs hold it whole)."""
    assert got is not None and got[2] == want[2]
    assert torch.equal(numeric.aligned_sum_value(*got), numeric.aligned_sum_value(*want))


@pytest.mark.parametrize("x_signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_windowed_backward_weight_is_the_reference(case, x_signed):
    geometry, x, w, g = operands(case, x_signed, 3)
    shape = tuple(w.codes.shape)
    partials = IntRefEngine().backward_weight(geometry, x, g, shape)
    no_sums = engine(Windowed, sum_slots=0, sum_bits=0, **case[-1])
    assert torch.equal(no_sums.backward_weight(geometry, x, g, shape), partials)
    assert no_sums.stats["windowed"] == 1 and no_sums.stats["patched"] == 0
    with_sums = engine(Windowed, **case[-1])
    same_sum(with_sums.backward_weight_sum(geometry, x, g, shape), numeric.aligned_batch_sum(partials, g.scale))
    assert with_sums.stats["windowed"] == 1 and with_sums.stats["core_sums"] == 1


class Tallest(Windowed):
    """Windowed batch sums in row tiles of the core's rows, whatever the bytes."""

    def _sum_tiles(self, o, costed):
        return costed(self.client.info.max_rows)


def test_windowed_sums_split_the_taps_over_maps_of_their_channels():
    """Sums for 32 rows hold 4 taps at a time (128 slots): the 3 x 9 taps go in 7 groups,
    each loading only the channels its taps read (row tiles of 32 held: the engine's own
    choice here is 8 tiles of 4 rows, test_weight_sums_take_the_row_tiles_that_cross_fewer_bytes)."""
    geometry, x, _, g = operands((2, 3, 6, 32, 3, 1, 1, {}), False, 4)
    core = engine(Tallest, sum_slots=128)
    loaded = []
    load_fmap = core.client.load_fmap
    core.client.load_fmap = lambda fmap, bits: loaded.append(fmap.shape[0]) or load_fmap(fmap, bits)
    same_sum(core.backward_weight_sum(geometry, x, g, (32, 3, 3, 3)),
             numeric.aligned_batch_sum(IntRefEngine().backward_weight(geometry, x, g, (32, 3, 3, 3)), g.scale))
    # taps 0-3, 4-7 (channel 0), 8-11 (channels 0, 1), 12-15, 16-19 (1, 2), 20-23, 24-26 (2): per sample
    assert loaded == [1] * 2 + [1] * 2 + [2] * 2 + [1] * 2 + [2] * 2 + [1] * 2 + [1] * 2


def unit_for(rng, o, act_bits, bound):
    direction = torch.from_numpy(rng.choice([-1, 1], o))
    thresholds = torch.from_numpy(np.sort(rng.integers(-bound, bound, (o, (1 << act_bits) - 1)), axis=1))
    thresholds = torch.where(direction[:, None] > 0, thresholds, thresholds.flip(1))
    return BlockThresholds(thresholds, direction, -bound, bound, None)


@pytest.mark.parametrize("case, act_bits, on_core", [
    (CASES[0], 2, True),
    (CASES[5], 3, True),    # row tiles: each tile's thresholds
    (CASES[4], 2, False),   # channel slices: the slices' sums thresholded on the host
    (CASES[0], 5, False),   # more activation bits than the core's 4
], ids=["one-tile", "row-tiles", "sliced", "wide-codes"])
def test_windowed_forward_activations_are_the_reference(case, act_bits, on_core):
    geometry, x, w, _ = operands(case, False, 5)
    unit = unit_for(np.random.default_rng(6), w.codes.shape[0], act_bits, 40)
    core = engine(Windowed, **case[-1])
    want = IntRefEngine().forward_activations(geometry, x, w, unit)
    assert torch.equal(core.forward_activations(geometry, x, w, unit), want)
    assert core.stats["windowed"] == 1
    assert (core.stats["core_thresholds"], core.stats["host_thresholds"]) == ((1, 0) if on_core else (0, 1))


@pytest.mark.parametrize("case, pool", [
    (CASES[0], 2),   # 6 x 6 positions: 3 x 3 pooling windows
    (CASES[1], 2),   # stride 2, 3 x 3 positions: the last row and column are a partial window, dropped
    (CASES[5], 2),   # row tiles: each tile's codes pooled
    (CASES[3], 4),   # 4 x 4 positions: one 4 x 4 window
], ids=["one-tile", "partial", "row-tiles", "pool4"])
def test_pooled_forward_is_the_reference_and_crosses_fewer_bytes(case, pool):
    """A block with max-pool (evaluation): the codes pooled on the core (a pooled PATCH
    window) are the reference's thresholds then ``maxpool_codes``, and cross fewer bytes
    than the same block on a core that does not pool (the codes pooled on the host)."""
    geometry, x, w, _ = operands(case, False, 8)
    unit = unit_for(np.random.default_rng(9), w.codes.shape[0], 2, 40)
    unit = BlockThresholds(unit.thresholds, unit.direction, unit.acc_min, unit.acc_max, pool)
    want = IntRefEngine().forward_pooled(geometry, x, w, unit)
    crossed = []
    for max_pool in (4, 1):
        core = engine(Windowed, max_pool=max_pool, **case[-1])
        before = wire(core.client)[1]
        assert torch.equal(core.forward_pooled(geometry, x, w, unit), want), max_pool
        crossed.append(wire(core.client)[1] - before)
        assert (core.stats["core_pools"], core.stats["host_pools"]) == ((1, 0) if max_pool > 1 else (0, 1))
        assert core.stats["windowed"] == 1 and core.stats["core_thresholds"] == 1
    assert crossed[0] < crossed[1], crossed


def test_weight_sums_take_the_row_tiles_that_cross_fewer_bytes():
    """64 gradient rows of 288 taps (the digits net's 4th conv) on a core of 64 rows and
    16,384 sums: one tile of 64 rows takes the taps in two groups, each sample's 64 gradient
    rows loaded twice; two tiles of 32 take them whole, each row loaded once: the engine
    takes the tiles of 32 (the same sums)."""
    rng = np.random.default_rng(10)
    geometry = ConvGeometry(stride=1, padding=1)
    x = codes(rng, (2, 32, 4, 4), 2, False)
    w = codes(rng, (64, 32, 3, 3), 1, True)
    g = codes(rng, (2, 64, 4, 4), 6, True, scale=torch.rand(2))
    core = engine(max_rows=64)
    heights = []
    load_matrix = core.client.load_matrix
    core.client.load_matrix = lambda matrix, *a, **k: heights.append(len(matrix)) or load_matrix(matrix, *a, **k)
    same_sum(core.backward_weight_sum(geometry, x, g, (64, 32, 3, 3)),
             numeric.aligned_batch_sum(IntRefEngine().backward_weight(geometry, x, g, (64, 32, 3, 3)), g.scale))
    assert heights == [32] * 4  # two tiles, a sample's rows each


@pytest.mark.parametrize("case", CASES[:3], ids=IDS[:3])
def test_core_without_a_map_gives_the_same_products_through_patches(case):
    geometry, x, w, g = operands(case, False, 7)
    shape = tuple(x.codes.shape)
    ref = IntRefEngine()
    for kind in (Windowed, CoreEngine):
        core = engine(kind, fmap_codes=0, max_pool=1, **case[-1])
        assert torch.equal(core.forward(geometry, x, w), ref.forward(geometry, x, w))
        assert torch.equal(core.backward_input(geometry, g, w, shape), ref.backward_input(geometry, g, w, shape))
        assert torch.equal(core.backward_weight(geometry, x, g, tuple(w.codes.shape)),
                           ref.backward_weight(geometry, x, g, tuple(w.codes.shape)))
        assert core.stats["windowed"] == 0 and core.stats["patched"] == 3


def test_maps_too_large_or_windows_out_of_range_fall_back_to_patches():
    ref = IntRefEngine()
    # a 6 x 10 x 10 map of 600 codes on a core holding 512
    geometry, x, w, _ = operands((2, 6, 10, 4, 3, 1, 1, {}), False, 8)
    core = engine(Windowed, fmap_codes=512)
    assert torch.equal(core.forward(geometry, x, w), ref.forward(geometry, x, w))
    assert core.stats["windowed"] == 0 and core.stats["patched"] == 1
    # stride 5: past the window's 4
    geometry, x, w, _ = operands((2, 2, 11, 4, 3, 5, 1, {}), False, 9)
    core = engine(Windowed)
    assert torch.equal(core.forward(geometry, x, w), ref.forward(geometry, x, w))
    assert core.stats["windowed"] == 0 and core.stats["patched"] == 1


# The digits net's quantized convs at full width (C, H, O, k, padding), batch 8.
DIGITS = [(16, 8, 32, 3, 1), (32, 8, 32, 3, 1), (32, 4, 64, 3, 1)]


@pytest.mark.parametrize("c, h, o, k, padding", DIGITS, ids=str)
def test_windows_are_chosen_and_put_fewer_bytes_on_the_wire(c, h, o, k, padding):
    """The engine's own choice on the model backend's core (LARGE_LIMITS, a feature map)
    takes the windows for the digits net's 3x3 convs, and each product crosses fewer bytes
    than on the same core without a map (the patches), with the same integers."""
    rng = np.random.default_rng(c + h)
    geometry = ConvGeometry(stride=1, padding=padding)
    x = codes(rng, (8, c, h, h), 2, False)
    w = codes(rng, (o, c, k, k), 1, True)
    g = codes(rng, (8, o, h, h), 6, True, scale=torch.rand(8))
    products = {
        "forward": lambda e: e.forward(geometry, x, w),
        "backward-input": lambda e: e.backward_input(geometry, g, w, tuple(x.codes.shape)),
        "backward-weight": lambda e: e.backward_weight_sum(geometry, x, g, tuple(w.codes.shape)),
        "backward-weight per sample": lambda e: e.backward_weight(geometry, x, g, tuple(w.codes.shape)),
    }
    for name, product in products.items():
        sums = {} if name != "backward-weight per sample" else {"sum_slots": 0, "sum_bits": 0}
        results, bytes_ = [], []
        for fmap_codes in (LARGE_LIMITS["fmap_codes"], 0):
            core = engine(fmap_codes=fmap_codes, max_pool=LARGE_LIMITS["max_pool"] if fmap_codes else 1, **sums)
            core.client.ping()
            before = wire(core.client)
            results.append(product(core))
            bytes_.append([after - start for after, start in zip(wire(core.client), before)])
            assert core.stats["windowed"] == (1 if fmap_codes else 0), name
        (sent, total), (sent_patches, total_patches) = bytes_
        # fewer bytes both ways, and to the core (a map instead of 9 patches a code) at most
        # half; backward-weight's gradient matrices (reloaded per sample) are the same either way
        assert total < total_patches and sent < sent_patches * (0.8 if "weight" in name else 0.5), (name, bytes_)
        if isinstance(results[0], tuple):  # (hi, lo, E) of the batch sum
            same_sum(*results)
        else:
            assert torch.equal(results[0], results[1]), name


class Apart(CoreEngine):
    """The core engine with its backward products one after the other, never sample by sample."""

    def backward_products(self, *args):
        return None


@pytest.mark.parametrize("c, h, o, k, padding", DIGITS, ids=str)
def test_backward_products_sample_by_sample_cross_each_gradient_once(c, h, o, k, padding):
    """The digits net's 3x3 convs whose kernel and gradient rows each fit one matrix (32
    rows): both backward products sample by sample, each gradient map crossing once (the
    matrix of backward-weight made on the core from backward-input's map), the same
    integers as the reference's and fewer bytes than the two products apart; the 64-row
    conv's sums take two row tiles here, so its products go apart."""
    rng = np.random.default_rng(c * h)
    geometry = ConvGeometry(stride=1, padding=padding)
    batch = 8
    x = codes(rng, (batch, c, h, h), 2, False)
    w = codes(rng, (o, c, k, k), 1, True)
    g = codes(rng, (batch, o, h, h), 6, True, scale=torch.rand(batch))
    shape = tuple(x.codes.shape)
    ref = IntRefEngine()
    partials = ref.backward_weight(geometry, x, g, tuple(w.codes.shape))
    together, apart = engine(), engine(Apart)
    for core in (together, apart):
        core.client.ping()
    before = wire(together.client)
    made = together.backward_products(geometry, x, g, w, shape)
    if o > 32:
        assert made is None and together.stats["interleaved"] == 0
        return
    crossed = [after - start for after, start in zip(wire(together.client), before)]
    assert made is not None and together.stats == dict(together.stats, interleaved=1, windowed=2, core_sums=1)
    assert torch.equal(made[0], ref.backward_input(geometry, g, w, shape))
    same_sum(made[1], numeric.aligned_batch_sum(partials, g.scale))
    before = wire(apart.client)
    assert apart.backward_products(geometry, x, g, w, shape) is None
    assert torch.equal(apart.backward_input(geometry, g, w, shape), made[0])
    same_sum(apart.backward_weight_sum(geometry, x, g, tuple(w.codes.shape)), made[1])
    apart_crossed = [after - start for after, start in zip(wire(apart.client), before)]
    # to the core: each sample's gradient map (o x h x h codes of 6 bits) once less, the kernel
    # (o x c x k x k bits) once more, and a 13-byte window where the matrix's codes were
    saved = batch * (o * h * h * 6 // 8) - (batch - 1) * (o * c * k * k // 8)
    assert apart_crossed[0] - crossed[0] >= saved - batch * 32, (crossed, apart_crossed, saved)
    assert crossed[1] < apart_crossed[1]


def test_training_step_through_windows_is_bit_identical_to_intref():
    """A digits training step (W,A,G = 1,2,6) on the model backend's core: every gradient
    equals the integer reference's, and conv products of all three kinds went through windows."""
    from tests.checks import assert_training_step_matches_intref

    core = engine()
    assert_training_step_matches_intref(core, width=0.5)
    # the 3 quantized 3x3 convs' 3 products through windows; the 4x4 conv on a 4x4 map (one
    # output position: its patch is the map) sends its forward's vectors, fewer bytes at
    # batch 8, and its backward-input is folded (the gradient's codes of its one position
    # against the whole kernel, C k^2 = 512 rows: on a 64-row core fewer bytes than the
    # transposed conv's windows over the 1 x 1 gradient map); its backward-weight, outer
    # products, is made on the host (the FC layer is float: no product on the core)
    assert core.stats["windowed"] == 9 and core.stats["patched"] == 2, core.stats
    assert core.stats["core_sums"] == 3 and core.stats["host_sums"] == 0 and core.stats["host_outer"] == 1
    # both 32-row 3x3 convs' backward products went sample by sample (their gradients crossed once)
    assert core.stats["interleaved"] == 2, core.stats
