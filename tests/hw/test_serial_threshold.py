"""hw.serial_threshold.SerialThresholdUnit against sw.numeric, in the Amaranth simulator.

Thresholds from :func:`sw.numeric.fold_thresholds` (the layers of
``tests/hw/test_threshold.py``, whose expected codes are checked against the float
path too) and arbitrary ones; the code width changes at run time between layers.
"""

import random

import pytest
import torch
from amaranth.hdl import signed

from hw.serial_threshold import SerialThresholdUnit
from sim.amaranth_sim import simulate, stream_get_n, stream_put_all
from sw.contract.codes import levels
from sw.numeric import apply_thresholds
from tests.hw.helpers import unelaborated
from tests.hw.test_threshold import sample_layer

INT32 = range(-(1 << 31), 1 << 31)


def load_records(thresholds, direction, channels=None):
    """``load`` payloads: every threshold of ``channels`` (default all), one a beat."""
    channels = range(thresholds.shape[0]) if channels is None else channels
    return [{"channel": c, "index": i, "direction": int(direction[c] < 0), "threshold": int(t)}
            for c in channels for i, t in enumerate(thresholds[c].tolist())]


def items_and_codes(acc, thresholds, direction):
    """``i`` payloads in conv-output order (channels fastest), the last flagged, and their codes."""
    codes = apply_thresholds(acc, thresholds, direction)
    acc, codes = acc.permute(0, 2, 1).reshape(-1, acc.shape[1]), codes.permute(0, 2, 1).reshape(-1)
    items = [{"channel": c, "acc": int(a), "last": 0} for row in acc.tolist() for c, a in enumerate(row)]
    items[-1]["last"] = 1
    return items, [{"code": code, "last": int(k == len(items) - 1)} for k, code in enumerate(codes.tolist())]


def run(dut, layers, *, seed, gap=0.3, stall=0.3):
    """Each layer ``(bits, load records, items)``: its bits set and its thresholds
    loaded once the previous layer's codes are all out, then its items streamed.
    Returns the ``o`` payloads of each layer."""
    rng = random.Random(seed)
    got = [None] * len(layers)
    drained = [False] * len(layers)

    async def producer(ctx):
        for index, (bits, records, items) in enumerate(layers):
            while index and not drained[index - 1]:
                await ctx.tick()
            ctx.set(dut.bits, bits)
            await stream_put_all(ctx, dut.load, records, rng=rng, gap=gap)
            await stream_put_all(ctx, dut.i, items, rng=rng, gap=gap)

    async def consumer(ctx):
        for index, (_, _, items) in enumerate(layers):
            got[index] = await stream_get_n(ctx, dut.o, len(items), rng=rng, stall=stall)
            drained[index] = True
        ctx.set(dut.o.ready, 1)
        for _ in range(levels(dut.max_act_bits) + dut.latency + 2):
            assert not ctx.get(dut.o.valid), "a code with no accumulator for it"
            await ctx.tick()

    cycles = sum(len(records) + len(items) * levels(bits) for bits, records, items in layers)
    simulate(dut, producer, consumer, deadline=10e-9 * (4 * cycles + 200))
    return [[{"code": p.code, "last": p.last} for p in payloads] for payloads in got]


@pytest.mark.parametrize("read_stages", [0, 1])
@pytest.mark.parametrize("max_act_bits, bits", [(1, 1), (2, 1), (2, 2), (3, 3), (4, 2), (5, 5), (8, 8)])
def test_matches_sw(max_act_bits, bits, read_stages):
    """Folded layers of 5 channels (+, -, 0, +, - BN scales), random gaps and back-pressure."""
    channels = 5
    dut = SerialThresholdUnit(max_act_bits, channels, read_stages=read_stages)
    acc_range = range(-300, 401)
    gen, layer = sample_layer(10 * max_act_bits + bits, bits, channels, acc_range)
    acc = layer.accumulators(gen, 2, 3 if bits == 8 else 30)
    layer.codes(acc)  # the integer path equals the float one
    items, codes = items_and_codes(acc, layer.thresholds, layer.direction)
    [got] = run(dut, [(bits, load_records(layer.thresholds, layer.direction), items)], seed=bits)
    assert got == codes
    assert len({c["code"] for c in codes}) > min(levels(bits) // 2, 10)  # the stimulus reaches many codes


def test_bits_change_between_layers():
    """One unit, layers of 3, 1 and 2 bits, the last reloading only some channels
    (the others keep the thresholds of the layer before, read at the new width)."""
    dut = SerialThresholdUnit(3, 4)
    rng = torch.Generator().manual_seed(5)
    layers, expected = [], []
    kept = None
    for bits, reload in [(3, range(4)), (1, range(4)), (2, range(4)), (2, range(1, 3))]:
        gen, layer = sample_layer(int(torch.randint(0, 1000, (), generator=rng)), bits, 4, range(-99, 100))
        thresholds, direction = layer.thresholds, layer.direction
        if kept is not None and len(reload) < 4:  # channels 0 and 3 keep the previous layer's
            for c in set(range(4)) - set(reload):
                thresholds[c], direction[c] = kept[0][c], kept[1][c]
        kept = (thresholds, direction)
        acc = layer.accumulators(gen, 1, 15)
        items, codes = items_and_codes(acc, thresholds, direction)
        layers.append((bits, load_records(thresholds, direction, reload), items))
        expected.append(codes)
    assert run(dut, layers, seed=9) == expected


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_any_thresholds_and_int32_ends(bits):
    """Unordered thresholds and accumulators at the ends of int32: the unit counts passes."""
    rng = random.Random(bits)
    channels = 3
    ends = [INT32.start, INT32.start + 1, -1, 0, 1, INT32.stop - 2, INT32.stop - 1]
    thresholds = torch.tensor([[rng.choice(ends + [rng.randint(-50, 50)]) for _ in range(levels(bits))]
                               for _ in range(channels)], dtype=torch.int64)
    direction = torch.tensor([1, -1, rng.choice([1, -1])])
    acc = torch.tensor([[ends + [rng.randint(-60, 60) for _ in range(13)]] * channels], dtype=torch.int64)
    items, codes = items_and_codes(acc, thresholds, direction)
    dut = SerialThresholdUnit(3, channels)
    [got] = run(dut, [(bits, load_records(thresholds, direction), items)], seed=bits)
    assert got == codes


@pytest.mark.parametrize("read_stages", [0, 1])
@pytest.mark.parametrize("max_act_bits, bits", [(2, 1), (2, 2), (4, 3)])
def test_full_rate_cycles(max_act_bits, bits, read_stages):
    """No gaps, no back-pressure: a value taken every ``n_a`` cycles, each code
    ``n_a + latency`` cycles after its value, :meth:`cycles` in all."""
    channels = 3
    dut = SerialThresholdUnit(max_act_bits, channels, read_stages=read_stages)
    gen, layer = sample_layer(70 + bits, bits, channels, range(-50, 51))
    acc = layer.accumulators(gen, 1, 6)
    items, codes = items_and_codes(acc, layer.thresholds, layer.direction)
    taken, given, got = [], [], []

    async def testbench(ctx):
        ctx.set(dut.bits, bits)
        ctx.set(dut.o.ready, 1)
        await stream_put_all(ctx, dut.load, load_records(layer.thresholds, layer.direction))
        pending = list(items)
        for cycle in range(len(items) * levels(bits) + dut.latency + 3):
            ctx.set(dut.i.valid, bool(pending))
            if pending:
                ctx.set(dut.i.payload, pending[0])
                if ctx.get(dut.i.ready):
                    taken.append(cycle)
                    pending.pop(0)
            if ctx.get(dut.o.valid):
                payload = ctx.get(dut.o.payload)
                got.append({"code": payload.code, "last": payload.last})
                given.append(cycle)
            await ctx.tick()

    simulate(dut, testbench)
    n_a = levels(bits)
    assert got == codes
    assert taken == [taken[0] + k * n_a for k in range(len(items))]
    assert given == [cycle + n_a + dut.latency for cycle in taken]
    assert given[-1] - taken[0] == dut.cycles(len(items), bits)


def test_ports_and_memories():
    with unelaborated():
        dut = SerialThresholdUnit(2, 64)
        assert dut.bits.shape().width == 2  # 0 .. 2
        assert dut.i.payload.shape().size == 6 + 32 + 1
        assert dut.load.payload.shape()["threshold"].shape == signed(32)
        assert dut.memories == {"thresholds": (1, 256, 32), "directions": (1, 64, 1)}
        assert dut.cycles(10, 2) == 10 * 3 + dut.latency and dut.latency == 3
        assert SerialThresholdUnit(2, 64, read_stages=1).latency == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"max_act_bits": 0}, r"max_act_bits must be in 1\.\.8, got 0"),
    ({"max_act_bits": 9}, r"max_act_bits must be in 1\.\.8, got 9"),
    ({"channels": 0}, r"channels must be >= 1, got 0"),
    ({"acc_width": 1}, r"acc_width must be >= 2 \(a signed accumulator's bits\), got 1"),
    ({"acc_width": 32.0}, r"acc_width must be an integer"),
    ({"read_stages": 2}, r"read_stages must be in 0\.\.1, got 2"),
])
def test_constructor_validation(kwargs, message):
    args = {"max_act_bits": 2, "channels": 4, **kwargs}
    with unelaborated(), pytest.raises(ValueError, match=message):
        SerialThresholdUnit(**args)
