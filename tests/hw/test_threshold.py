"""hw.threshold.ThresholdUnit against sw.numeric, in the Amaranth simulator.

Thresholds come from :func:`sw.numeric.fold_thresholds` on random scale and BN
parameters (positive, negative and zero BN scales); every expected code is
:func:`sw.numeric.apply_thresholds` *and* equals the float path
:func:`sw.numeric.activation_from_accumulator`.
"""

import random

import pytest
import torch
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hw.threshold import VARIANTS, ThresholdUnit
from sim.amaranth_sim import simulate, stream_get_n, stream_put_all
from sw.contract.codes import MAX_CODE_BITS
from sw.numeric import activation_codes, activation_from_accumulator, apply_thresholds, fold_thresholds
from tests.hw.helpers import stream_across_reset, unelaborated

PERIOD = 10e-9  # simulate()'s default clock


# --------------------------------------------------------------------------- reference

class Layer:
    """Random scale and BN parameters for ``signs`` (+1, -1 or 0 per channel), folded."""

    def __init__(self, gen, act_bits, acc_range, signs):
        self.act_bits, self.acc_range = act_bits, acc_range
        span = max(1, len(acc_range) - 1)
        # Scale the accumulator range to about [-2, 2] before BN, so that
        # every code from 0 to n_a occurs, the clipped ends included.
        self.scale = torch.tensor(4.0 / span, dtype=torch.float32) * (0.5 + torch.rand((), generator=gen))
        sign = torch.tensor(signs, dtype=torch.float32)
        self.alpha = sign * (0.25 + 2 * torch.rand(len(signs), generator=gen))
        # A zero scale gives the constant code of beta: spread beta over [-0.2, 1.2].
        self.beta = torch.where(sign == 0, -0.2 + 1.4 * torch.rand(len(signs), generator=gen),
                                -1 + 2 * torch.rand(len(signs), generator=gen))
        self.thresholds, self.direction = fold_thresholds(
            self.scale, self.alpha, self.beta, act_bits, acc_range.start, acc_range.stop - 1)

    @property
    def channels(self):
        return self.alpha.numel()

    def records(self):
        """``load`` payloads, one per channel."""
        return [{"channel": c, "direction": int(self.direction[c] < 0),
                 "thresholds": self.thresholds[c].tolist()} for c in range(self.channels)]

    def codes(self, acc):
        """Expected codes for ``acc`` (B, C, ...): the integer path, checked against the float one."""
        codes = apply_thresholds(acc, self.thresholds, self.direction)
        float_path = activation_from_accumulator(acc, self.scale, self.alpha, self.beta, self.act_bits)
        assert torch.equal(codes, float_path), "sw: thresholds disagree with the float path"
        return codes

    def accumulators(self, gen, batch, positions):
        """Uniform accumulators, a quarter of them moved onto a threshold or next to one."""
        lo, hi = self.acc_range.start, self.acc_range.stop - 1
        acc = torch.randint(lo, hi + 1, (batch, self.channels, positions), generator=gen)
        levels = self.thresholds.shape[1]
        pick = torch.randint(0, levels, acc.shape, generator=gen)
        near = torch.gather(self.thresholds.reshape(1, -1, levels).expand(batch, -1, -1), 2, pick)
        near = torch.clamp(near + torch.randint(-1, 2, acc.shape, generator=gen), lo, hi)
        return torch.where(torch.rand(acc.shape, generator=gen) < 0.25, near, acc)


def stream_order(acc, codes):
    """A conv layer's output order, channels fastest: ``(channel, acc)`` items and their codes."""
    acc = acc.permute(0, 2, 1).reshape(-1, acc.shape[1])   # (B * P, C)
    codes = codes.permute(0, 2, 1).reshape(-1)
    items = [{"channel": c, "acc": int(a)} for row in acc.tolist() for c, a in enumerate(row)]
    return items, codes.tolist()


# --------------------------------------------------------------------------- simulation

def run(dut, batches, *, seed, gap=0.3, stall=0.3):
    """Load and stream: ``batches`` is a list of ``(load records, items)``, each
    batch's records sent after the previous batch's codes all came out.
    Returns the codes received for each batch."""
    rng = random.Random(seed)
    got = [[] for _ in batches]
    drained = [False] * len(batches)

    async def producer(ctx):
        for index, (records, items) in enumerate(batches):
            while index and not drained[index - 1]:  # load between layers
                await ctx.tick()
            await stream_put_all(ctx, dut.load, records, rng=rng, gap=gap)
            await stream_put_all(ctx, dut.i, items, rng=rng, gap=gap)

    async def consumer(ctx):
        for index, (_, items) in enumerate(batches):
            got[index] = await stream_get_n(ctx, dut.o, len(items), rng=rng, stall=stall)
            drained[index] = True
        # Nothing more may come out.
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 2):
            assert not ctx.get(dut.o.valid), "a code with no accumulator for it"
            await ctx.tick()

    cycles = sum(len(r) * dut.load_cycles + len(i) for r, i in batches)
    simulate(dut, producer, consumer, deadline=PERIOD * (20 * cycles + 100))
    return got


def sample_layer(seed, act_bits, channels, acc_range, signs=None):
    gen = torch.Generator().manual_seed(seed)
    if signs is None:
        signs = [(+1, -1, 0)[c % 3] for c in range(channels)]
    return gen, Layer(gen, act_bits, acc_range, signs)


def acc_range_for(act_bits):
    # Odd widths: an asymmetric range; even: a plain signed width.
    return range(-37 * act_bits - 20, 29 * act_bits + 41) if act_bits % 2 else 10 + act_bits // 2


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("act_bits", range(1, MAX_CODE_BITS + 1))
def test_matches_sw(variant, act_bits):
    """Random layers of 5 channels (+, -, 0, +, - BN scales), accumulators in
    conv-output order, random valid gaps and back-pressure."""
    channels = 5
    dut = ThresholdUnit(act_bits, channels, acc_range_for(act_bits), variant=variant)
    gen, layer = sample_layer(act_bits, act_bits, channels, dut.acc_range)
    # The 63- to 255-comparator banks are slow to simulate in Python: fewer vectors.
    positions = 12 if variant == "parallel" and act_bits >= 6 else 60
    acc = layer.accumulators(gen, 2, positions)
    items, codes = stream_order(acc, layer.codes(acc))
    [got] = run(dut, [(layer.records(), items)], seed=act_bits)
    assert got == codes
    assert len(set(codes)) > 1 << (act_bits - 1) or act_bits > 6  # the stimulus reaches most codes


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sign", [+1, -1, 0], ids=["positive", "negative", "zero"])
@pytest.mark.parametrize("act_bits", [1, 3, 6])
def test_bn_scale_sign(variant, sign, act_bits):
    """Every channel with a BN scale of one sign; a zero scale gives each
    channel the constant code of its ``beta``."""
    channels = 4
    dut = ThresholdUnit(act_bits, channels, range(-200, 301), variant=variant)
    gen, layer = sample_layer(10 + act_bits, act_bits, channels, dut.acc_range, [sign] * channels)
    assert torch.equal(layer.direction, torch.full((channels,), -1 if sign < 0 else 1))
    acc = layer.accumulators(gen, 1, 40)
    acc[0, :, :2] = torch.tensor([dut.acc_range.start, dut.acc_range.stop - 1])
    expected = layer.codes(acc)
    if sign == 0:
        constant = activation_codes(layer.beta, act_bits).reshape(1, -1, 1)
        assert torch.equal(expected, constant.expand_as(expected))
    items, codes = stream_order(acc, expected)
    [got] = run(dut, [(layer.records(), items)], seed=20 + act_bits)
    assert got == codes


@pytest.mark.parametrize("act_bits", [1, 2, 4, 5])
def test_parallel_takes_any_thresholds(act_bits):
    """The comparator bank counts passed thresholds whatever their order."""
    rng = random.Random(act_bits)
    channels, acc_range = 3, range(-20, 21)
    levels = (1 << act_bits) - 1
    thresholds = torch.tensor([[rng.randint(-21, 21) for _ in range(levels)] for _ in range(channels)])
    direction = torch.tensor([1, -1, rng.choice([1, -1])])
    acc = torch.randint(-20, 21, (1, channels, 50), generator=torch.Generator().manual_seed(act_bits))
    items, codes = stream_order(acc, apply_thresholds(acc, thresholds, direction))
    records = [{"channel": c, "direction": int(direction[c] < 0), "thresholds": thresholds[c].tolist()}
               for c in range(channels)]
    dut = ThresholdUnit(act_bits, channels, acc_range, variant="parallel")
    [got] = run(dut, [(records, items)], seed=act_bits)
    assert got == codes


ACC_RANGES = [
    pytest.param(1, id="width1"),                    # accumulators -1, 0
    pytest.param(range(0, 1), id="single-value"),
    pytest.param(range(0, 37), id="unsigned"),
    pytest.param(range(-100, -89), id="all-negative"),
    pytest.param(range(5, 12), id="all-positive"),
    pytest.param(18, id="width18"),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("acc_range", ACC_RANGES)
def test_accumulator_ranges(variant, acc_range):
    """Narrow, one-sided and wide ranges; the range ends and every threshold
    (with its neighbours) are fed, sentinel thresholds included."""
    act_bits = 3
    dut = ThresholdUnit(act_bits, 3, acc_range, variant=variant)
    lo, hi = dut.acc_range.start, dut.acc_range.stop - 1
    gen, layer = sample_layer(len(dut.acc_range), act_bits, 3, dut.acc_range)
    probes = {lo, hi} | {int(t) + k for t in layer.thresholds.reshape(-1) for k in (-1, 0, 1)}
    probes = sorted(v for v in probes if lo <= v <= hi)
    acc = torch.tensor(probes).reshape(1, 1, -1).expand(1, 3, -1)
    items, codes = stream_order(acc, layer.codes(acc))
    [got] = run(dut, [(layer.records(), items)], seed=len(probes))
    assert got == codes


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("act_bits", [1, 4, 7])
def test_single_channel(variant, act_bits):
    dut = ThresholdUnit(act_bits, 1, 9, variant=variant)
    gen, layer = sample_layer(30 + act_bits, act_bits, 1, dut.acc_range, [-1])
    acc = layer.accumulators(gen, 3, 20)
    items, codes = stream_order(acc, layer.codes(acc))
    [got] = run(dut, [(layer.records(), items)], seed=act_bits, gap=0.5, stall=0.5)
    assert got == codes


@pytest.mark.parametrize("variant", VARIANTS)
def test_reload_between_layers(variant):
    """A second layer's thresholds replace the first's; channels not reloaded keep theirs."""
    act_bits, channels = 4, 6
    dut = ThresholdUnit(act_bits, channels, 12, variant=variant)
    gen, first = sample_layer(40, act_bits, channels, dut.acc_range)
    _, second = sample_layer(41, act_bits, channels, dut.acc_range, [-1, 0, 1, -1, 1, 1])
    acc = [first.accumulators(gen, 1, 25) for _ in range(3)]
    # Third batch: only channels 0..2 reloaded (to the first layer's values).
    mixed = torch.cat([first.codes(acc[2])[:, :3], second.codes(acc[2])[:, 3:]], dim=1)
    batches = [(first.records(), stream_order(acc[0], first.codes(acc[0]))),
               (second.records(), stream_order(acc[1], second.codes(acc[1]))),
               (first.records()[:3], stream_order(acc[2], mixed))]
    got = run(dut, [(records, items) for records, (items, _) in batches], seed=7)
    assert got == [codes for _, (_, codes) in batches]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("act_bits", [2, 5])
def test_full_rate_latency(variant, act_bits):
    """No gaps, no back-pressure: one code per cycle, :attr:`latency` cycles
    after its accumulator; a load record takes :attr:`load_cycles` cycles."""
    dut = ThresholdUnit(act_bits, 3, 10, variant=variant)
    gen, layer = sample_layer(50 + act_bits, act_bits, 3, dut.acc_range)
    acc = layer.accumulators(gen, 1, 20)
    items, codes = stream_order(acc, layer.codes(acc))
    taken, given, got, load_cycles = [], [], [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for record in layer.records():
            ctx.set(dut.load.valid, 1)
            ctx.set(dut.load.payload, record)
            cycles = 1
            while not ctx.get(dut.load.ready):
                await ctx.tick()
                cycles += 1
            await ctx.tick()
            load_cycles.append(cycles)
        ctx.set(dut.load.valid, 0)
        for cycle in range(len(items) + dut.latency + 2):
            offering = cycle < len(items)
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(dut.i.payload, items[cycle])
                assert ctx.get(dut.i.ready)
                taken.append(cycle)
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
                given.append(cycle)
            await ctx.tick()

    simulate(dut, testbench)
    assert load_cycles == [dut.load_cycles] * 3
    assert got == codes
    assert given == [cycle + dut.latency for cycle in taken]


@pytest.mark.parametrize("variant", VARIANTS)
def test_reset_mid_stream(variant):
    """A reset with codes in flight drops them (what came out before is a
    correct prefix) and keeps the loaded thresholds: the next stream is exact."""
    act_bits, channels = 3, 4
    dut = ThresholdUnit(act_bits, channels, 11, variant=variant)
    gen, layer = sample_layer(60, act_bits, channels, dut.acc_range)
    acc = [layer.accumulators(gen, 1, 30) for _ in range(2)]
    streams = [stream_order(a, layer.codes(a)) for a in acc]
    # Load, then cut the first stream at cycle 40, with codes in flight.
    got, taken = stream_across_reset(dut, [items for items, _ in streams],
                                     [len(codes) for _, codes in streams],
                                     cut=40, rng=random.Random(3), reset_cycles=2,
                                     setup=lambda ctx: stream_put_all(ctx, dut.load, layer.records()))
    assert taken - len(got[0]) > 0
    assert 0 < len(got[0]) < len(streams[0][1])
    assert got[0] == streams[0][1][:len(got[0])]
    assert got[1] == streams[1][1]


def test_ports_and_shapes():
    with unelaborated():
        dut = ThresholdUnit(3, 5, range(-50, 61), variant="search")
        # -51 and 61, the never-passed thresholds, need 7 signed bits.
        assert dut.threshold_shape == signed(7)
        assert dut.acc_shape == signed(7)
        assert dut.levels == 7 and dut.latency == 4 and dut.load_cycles == 4
        assert dut.i.payload.shape() == data.StructLayout({"channel": range(5), "acc": signed(7)})
        assert dut.o.payload.shape() == unsigned(3)
        assert dut.load.payload.shape() == data.StructLayout({
            "channel": range(5), "direction": 1, "thresholds": data.ArrayLayout(signed(7), 7)})
        # An unsigned range: the port is unsigned, the thresholds reach -1.
        dut = ThresholdUnit(2, 1, range(0, 100))
        assert dut.acc_shape == unsigned(7) and dut.threshold_shape == signed(8)
        assert (dut.latency, dut.load_cycles) == (3, 1)
        # A width: signed accumulators, one more bit for the sentinels.
        dut = ThresholdUnit(8, 2, 12)
        assert dut.acc_range == range(-2048, 2048) and dut.threshold_shape == signed(13)


@pytest.mark.parametrize("kwargs, message", [
    ({"act_bits": 0}, r"act_bits must be in 1\.\.8, got 0"),
    ({"act_bits": 9}, r"act_bits must be in 1\.\.8, got 9"),
    ({"act_bits": 2.0}, r"act_bits must be an integer"),
    ({"act_bits": True}, r"act_bits must be an integer"),
    ({"channels": 0}, r"channels must be >= 1, got 0"),
    ({"channels": "4"}, r"channels must be an integer"),
    ({"acc_range": range(5, 5)}, r"acc_range must be a non-empty range with step 1"),
    ({"acc_range": range(0, 10, 2)}, r"acc_range must be a non-empty range with step 1"),
    ({"acc_range": 0}, r"acc_range must be >= 1 \(an accumulator width\), got 0"),
    ({"acc_range": (0, 10)}, r"acc_range must be range\(acc_min, acc_max \+ 1\) or a signed"),
    ({"variant": "tree"}, r"variant must be one of 'parallel', 'search', got 'tree'"),
])
def test_constructor_validation(kwargs, message):
    args = {"act_bits": 2, "channels": 4, "acc_range": 8, **kwargs}
    variant = args.pop("variant", "parallel")
    with unelaborated(), pytest.raises(ValueError, match=message):
        ThresholdUnit(args["act_bits"], args["channels"], args["acc_range"], variant=variant)
