"""hw.maxpool.MaxPool against sw.intref.maxpool_codes, in the Amaranth simulator.

Frames go in raster order with channels fastest (``(B, C, H, W)`` permuted to
``(B, H, W, C)``), back to back; the pooled codes come out in the same order.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import unsigned

from hw.maxpool import MaxPool
from sim.amaranth_sim import simulate, stream_get_n, stream_put_all
from sw.contract.codes import MAX_CODE_BITS
from sw.intref import maxpool_codes
from tests.hw.helpers import stream_across_reset, unelaborated

PERIOD = 10e-9  # simulate()'s default clock


def raster(codes):
    """``(B, C, H, W)`` codes as the stream order: for b, y, x, c."""
    return np.asarray(codes).transpose(0, 2, 3, 1).reshape(-1).tolist()


def random_frames(seed, act_bits, batch, channels, height, width):
    """Frame 0 uniform; frame 1 sparse (a lone large code must win from every
    tap); frame 2 dense (the top code almost everywhere); then uniform again."""
    rng = np.random.default_rng(seed)
    top = (1 << act_bits) - 1
    frames = rng.integers(0, top + 1, (batch, channels, height, width))
    rare = rng.random(frames.shape) < 0.15
    if batch >= 2:
        frames[1] = np.where(rare[1], frames[1], 0)
    if batch >= 3:
        frames[2] = np.where(rare[2], frames[2], top)
    return frames


def run(dut, frames, *, seed, gap=0.3, stall=0.3):
    words = raster(frames)
    outputs = len(frames) * dut.channels * dut.out_height * dut.out_width
    rng = random.Random(seed)
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, words, rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.o, outputs, rng=random.Random(seed + 1), stall=stall))
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 2):
            assert not ctx.get(dut.o.valid), "a pooled code with no window for it"
            await ctx.tick()

    simulate(dut, producer, consumer, deadline=PERIOD * (20 * len(words) + 100))
    return got


# (channels, height, width, kernel, stride)
SHAPES = [
    pytest.param(3, 6, 7, 2, 2, id="c3-6x7-k2s2"),          # the usual 2x2/2, odd width dropped
    pytest.param(2, 7, 9, 3, 2, id="c2-7x9-k3s2"),          # overlapping windows
    pytest.param(1, 5, 5, 3, 1, id="c1-5x5-k3s1"),          # one lane: read right after write
    pytest.param(4, 8, 5, 2, 3, id="c4-8x5-k2s3"),          # stride > kernel: inputs skipped
    pytest.param(2, 4, 6, 1, 2, id="c2-4x6-k1s2"),          # no window, subsampling only
    pytest.param(1, 2, 2, 2, 1, id="c1-2x2-k2s1"),          # a single window, single lane
    pytest.param(3, 3, 8, 3, 3, id="c3-3x8-k3s3"),          # one output row
    pytest.param(5, 9, 4, 4, None, id="c5-9x4-k4"),         # stride defaults to kernel
]


@pytest.mark.parametrize("act_bits", range(1, MAX_CODE_BITS + 1))
@pytest.mark.parametrize("channels, height, width, kernel, stride", SHAPES[:2])
def test_bitwidths(act_bits, channels, height, width, kernel, stride):
    frames = random_frames(act_bits, act_bits, 3, channels, height, width)
    dut = MaxPool(act_bits, channels, height, width, kernel, stride)
    assert run(dut, frames, seed=act_bits) == raster(maxpool_codes(frames, kernel, stride))


@pytest.mark.parametrize("act_bits", [1, 3, 8])
@pytest.mark.parametrize("channels, height, width, kernel, stride", SHAPES)
def test_shapes(act_bits, channels, height, width, kernel, stride):
    frames = random_frames(100 + act_bits, act_bits, 3, channels, height, width)
    dut = MaxPool(act_bits, channels, height, width, kernel, stride)
    assert run(dut, frames, seed=act_bits + channels) == raster(maxpool_codes(frames, kernel, stride))


@pytest.mark.parametrize("gap, stall", [(0.0, 0.8), (0.8, 0.0), (0.5, 0.5)])
def test_gaps_and_backpressure(gap, stall):
    frames = random_frames(7, 4, 2, 3, 6, 6)
    dut = MaxPool(4, 3, 6, 6, 3, 1)
    assert run(dut, frames, seed=int(gap * 10), gap=gap, stall=stall) == \
        raster(maxpool_codes(frames, 3, 1))


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1), (1, 1)])
def test_full_rate_latency(kernel, stride):
    """No gaps, no back-pressure: one code per cycle in; each pooled code
    :attr:`latency` cycles after the code that completes its window."""
    act_bits, channels, height, width = 3, 2, 5, 6
    frames = random_frames(11, act_bits, 2, channels, height, width)
    dut = MaxPool(act_bits, channels, height, width, kernel, stride)
    words = raster(frames)
    # The last input of window (oy, ox), channel c: pixel (oy*s + k - 1, ox*s + k - 1).
    completes = [((b * height + oy * stride + kernel - 1) * width + ox * stride + kernel - 1)
                 * channels + c
                 for b in range(2) for oy in range(dut.out_height) for ox in range(dut.out_width)
                 for c in range(channels)]
    got, given = [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(len(words) + dut.latency + 2):
            ctx.set(dut.i.valid, cycle < len(words))
            if cycle < len(words):
                ctx.set(dut.i.payload, words[cycle])
                assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
                given.append(cycle)
            await ctx.tick()

    simulate(dut, testbench)
    assert got == raster(maxpool_codes(frames, kernel, stride))
    assert given == [cycle + dut.latency for cycle in completes]


@pytest.mark.parametrize("cut", [5, 37, 61])
def test_reset_mid_frame(cut):
    """A reset mid-frame drops the partial frame; what came out before is a
    correct prefix and the next frame, from its top-left pixel, is exact."""
    act_bits, channels, height, width, kernel, stride = 2, 3, 6, 6, 3, 1
    frames = random_frames(cut, act_bits, 2, channels, height, width)
    words = [raster(frames[:1]), raster(frames[1:])]
    expected = [raster(maxpool_codes(frames[:1], kernel, stride)),
                raster(maxpool_codes(frames[1:], kernel, stride))]
    dut = MaxPool(act_bits, channels, height, width, kernel, stride)
    got, _ = stream_across_reset(dut, words, [len(codes) for codes in expected], cut=cut,
                                 rng=random.Random(cut))
    assert got[0] == expected[0][:len(got[0])]
    assert len(got[0]) < len(expected[0])
    assert got[1] == expected[1]


def test_ports_and_sizes():
    with unelaborated():
        dut = MaxPool(3, 4, 7, 9, 3, 2)
        assert dut.i.payload.shape() == unsigned(3) and dut.o.payload.shape() == unsigned(3)
        assert (dut.out_height, dut.out_width) == maxpool_codes(np.zeros((1, 4, 7, 9)), 3, 2).shape[2:]
        assert (dut.kernel, dut.stride, dut.latency) == (3, 2, 4)
        assert MaxPool(1, 1, 4, 4, 2).stride == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"act_bits": 0}, r"act_bits must be in 1\.\.8, got 0"),
    ({"act_bits": 9}, r"act_bits must be in 1\.\.8, got 9"),
    ({"act_bits": 1.0}, r"act_bits must be an integer"),
    ({"channels": 0}, r"channels must be >= 1, got 0"),
    ({"height": 0}, r"height must be >= 1, got 0"),
    ({"width": None}, r"width must be an integer, got None"),
    ({"kernel": 0}, r"kernel must be >= 1, got 0"),
    ({"stride": 0}, r"stride must be >= 1, got 0"),
    ({"stride": True}, r"stride must be an integer"),
    ({"kernel": 5}, r"feature map \(height x width = 4 x 6\) must be at least the 5 x 5 window"),
    ({"height": 2}, r"feature map \(height x width = 2 x 6\) must be at least the 3 x 3 window"),
])
def test_constructor_validation(kwargs, message):
    args = {"act_bits": 2, "channels": 3, "height": 4, "width": 6, "kernel": 3, "stride": 1, **kwargs}
    with unelaborated(), pytest.raises(ValueError, match=message):
        MaxPool(**args)
