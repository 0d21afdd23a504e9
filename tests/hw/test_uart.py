"""hw.uart: 8N1 transmitter and receiver in the Amaranth simulator.

Loopback of random bytes at several divisors (with valid gaps and
back-pressure), back-to-back throughput, exact receive latency, a bit-banged
sender whose baud rate is a few per cent off, glitches (false starts),
framing errors, overrun, and the constructors' validation.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.uart import MIN_DIVISOR, UARTReceiver, UARTTransmitter
from sim.amaranth_sim import simulate, stream_get_n, stream_put_all
from tests.hw.helpers import unelaborated


def loopback(divisor):
    """Transmitter wired to receiver; returns (top, tx, rx)."""
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    return m, tx, rx


def frame_bits(byte, stop=1):
    """Line levels of one 8N1 frame: start, 8 data bits LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


async def drive_line(ctx, pin, levels, bit_cycles):
    """Bit-bang ``levels`` on ``pin``, each for ``bit_cycles`` (a float: the
    edges fall on rounded multiples, as a sender with another clock would)."""
    for index, level in enumerate(levels):
        ctx.set(pin, level)
        cycles = round((index + 1) * bit_cycles) - round(index * bit_cycles)
        await ctx.tick().repeat(cycles)


def sim_run(dut, bench, *background):
    """Run ``bench`` to its end with ``background`` testbenches beside it."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    for testbench in background:
        sim.add_testbench(testbench, background=True)
    sim.run()


class Collector:
    """Background testbench: takes every byte from ``o`` and counts error pulses."""

    def __init__(self, rx):
        self.rx = rx
        self.bytes = []
        self.framing_errors = 0
        self.overruns = 0

    async def run(self, ctx):
        ctx.set(self.rx.o.ready, 1)
        async for _, _, valid, payload, ferr, ovr in ctx.tick().sample(
                self.rx.o.valid, self.rx.o.payload, self.rx.framing_error, self.rx.overrun):
            if valid:
                self.bytes.append(payload)
            self.framing_errors += ferr
            self.overruns += ovr


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_loopback_random_bytes(divisor):
    top, tx, rx = loopback(divisor)
    data = [random.Random(divisor).randrange(256) for _ in range(40)] + [0x00, 0xFF, 0xA5, 0x5A]
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, tx.i, data, rng=random.Random(1), gap=0.5)

    async def consumer(ctx):
        # Short stalls only: a byte must be taken within a frame time.
        got.extend(await stream_get_n(ctx, rx.o, len(data), rng=random.Random(2), stall=0.3))

    simulate(top, producer, consumer, deadline=None)
    assert got == data


@pytest.mark.parametrize("divisor", [4, 13])
def test_back_to_back_throughput(divisor):
    """Always-valid input: one byte per 10 * divisor cycles, nothing lost."""
    top, tx, rx = loopback(divisor)
    data = list(range(0, 256, 7))
    accepted_at = []
    collector = Collector(rx)

    async def producer(ctx):
        ctx.set(tx.i.valid, 1)
        for byte in data:
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)
        await ctx.tick().repeat(12 * divisor + 20)

    async def watch(ctx):
        cycle = 0
        async for _, _, valid, ready in ctx.tick().sample(tx.i.valid, tx.i.ready):
            if valid and ready:
                accepted_at.append(cycle)
            cycle += 1

    sim_run(top, producer, collector.run, watch)
    gaps = {b - a for a, b in zip(accepted_at, accepted_at[1:])}
    assert gaps == {10 * divisor}, gaps
    assert collector.bytes == data
    assert collector.framing_errors == collector.overruns == 0


@pytest.mark.parametrize("divisor", [4, 9, 10])
def test_receive_latency(divisor):
    """``o.valid`` exactly ``latency`` cycles after the start bit's edge."""
    dut = UARTReceiver(divisor)
    seen = []

    async def bench(ctx):
        await ctx.tick().repeat(3)
        ctx.set(dut.rx, 0)  # the falling edge, right after a clock edge
        cycles = 0
        levels = frame_bits(0x96)[1:] + [1]
        bit = 0
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            cycles += 1
            if cycles % divisor == 0 and bit < len(levels):
                ctx.set(dut.rx, levels[bit])
                bit += 1
        seen.append((cycles, ctx.get(dut.o.payload)))

    simulate(dut, bench)
    assert seen == [(dut.latency, 0x96)]


@pytest.mark.parametrize("skew", [-0.04, 0.04])
def test_baud_mismatch(skew):
    """A sender 4 % slow or fast, back to back, is still received."""
    divisor = 25
    dut = UARTReceiver(divisor)
    data = [random.Random(7).randrange(256) for _ in range(12)]
    collector = Collector(dut)

    async def sender(ctx):
        await ctx.tick().repeat(5)
        levels = [level for byte in data for level in frame_bits(byte)]
        await drive_line(ctx, dut.rx, levels + [1, 1], divisor * (1 + skew))

    sim_run(dut, sender, collector.run)
    assert collector.bytes == data
    assert collector.framing_errors == 0




@pytest.mark.parametrize("divisor", [4, 8, 16])
def test_glitch_is_ignored(divisor):
    """Low pulses shorter than half a bit are false starts: no byte, no error;
    the byte after them is received."""
    dut = UARTReceiver(divisor)
    collector = Collector(dut)

    async def sender(ctx):
        await ctx.tick().repeat(5)
        for width in range(1, (divisor - 1) // 2 + 1):
            ctx.set(dut.rx, 0)
            await ctx.tick().repeat(width)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(2 * divisor)
        await drive_line(ctx, dut.rx, frame_bits(0x3C) + [1], divisor)
        await ctx.tick().repeat(divisor)

    sim_run(dut, sender, collector.run)
    assert collector.bytes == [0x3C]
    assert collector.framing_errors == collector.overruns == 0


@pytest.mark.parametrize("divisor", [4, 11])
def test_framing_error_drops_byte(divisor):
    """A zero stop bit drops the byte (one error pulse); a line held low
    after it (a break) gives no more bytes; the next good byte arrives."""
    dut = UARTReceiver(divisor)
    collector = Collector(dut)

    async def sender(ctx):
        await ctx.tick().repeat(5)
        await drive_line(ctx, dut.rx, frame_bits(0x81, stop=0) + [1, 1], divisor)
        # A break: low for 3 frame times.
        await drive_line(ctx, dut.rx, [0] * 30 + [1, 1], divisor)
        await drive_line(ctx, dut.rx, frame_bits(0x42) + [1], divisor)
        await ctx.tick().repeat(divisor)

    sim_run(dut, sender, collector.run)
    assert collector.bytes == [0x42]
    assert collector.framing_errors == 2


def test_overrun_keeps_first_byte():
    divisor = 4
    dut = UARTReceiver(divisor)
    got, pulses = [], []

    async def sender(ctx):
        await ctx.tick().repeat(3)
        await drive_line(ctx, dut.rx, frame_bits(0x11) + frame_bits(0x22) + [1, 1], divisor)
        await ctx.tick().repeat(5)
        assert ctx.get(dut.o.valid)
        ctx.set(dut.o.ready, 1)
        (payload,) = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
        got.append(payload)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        assert not ctx.get(dut.o.valid)

    async def watch(ctx):
        async for _, _, ovr in ctx.tick().sample(dut.overrun):
            if ovr:
                pulses.append(1)

    sim_run(dut, sender, watch)
    assert got == [0x11]
    assert pulses == [1]


@pytest.mark.parametrize("cls", [UARTTransmitter, UARTReceiver])
@pytest.mark.parametrize("divisor", [MIN_DIVISOR - 1, 0, -5, 4.0, True, "8"])
def test_bad_divisor(cls, divisor):
    with unelaborated(), pytest.raises(ValueError, match="divisor"):
        cls(divisor)


def test_ports():
    with unelaborated():
        tx, rx = UARTTransmitter(8), UARTReceiver(8)
        assert tx.divisor == rx.divisor == 8
        assert tx.i.payload.shape().width == rx.o.payload.shape().width == 8
        assert tx.signature.members["tx"].init == 1
        assert rx.signature.members["rx"].init == 1
        del tx, rx
