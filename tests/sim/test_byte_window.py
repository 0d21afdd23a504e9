# amaranth: UnusedElaboratable=no
"""sim.byte_window.ByteWindow in the Amaranth simulator, around an echo core (a small FIFO)."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sim.byte_window import ByteWindow


class Echo(wiring.Component):
    """Sends back every byte it receives, through a ``depth``-byte FIFO."""

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))

    def __init__(self, depth: int = 4):
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=8, depth=self.depth)
        m.d.comb += [
            buffer.w_data.eq(self.rx.payload), buffer.w_en.eq(self.rx.valid), self.rx.ready.eq(buffer.w_rdy),
            self.tx.payload.eq(buffer.r_data), self.tx.valid.eq(buffer.r_rdy), buffer.r_en.eq(self.tx.ready),
        ]
        return m


class Host:
    """What the cocotb bridge does, on the Amaranth simulator's context."""

    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx
        self.in_toggle = self.out_toggle = 0

    def load(self, data: bytes) -> None:
        self.ctx.set(self.dut.in_data, int.from_bytes(data, "little"))
        self.ctx.set(self.dut.in_count, len(data))
        self.in_toggle ^= 1
        self.ctx.set(self.dut.in_toggle, self.in_toggle)

    def received(self) -> bytes:
        count = self.ctx.get(self.dut.out_count)
        return (self.ctx.get(self.dut.out_data) >> (8 * (self.dut.window - count))).to_bytes(count, "little")

    def take(self, count: int) -> None:
        self.ctx.set(self.dut.out_take, count)
        self.out_toggle ^= 1
        self.ctx.set(self.dut.out_toggle, self.out_toggle)


def run(window, testbench):
    dut = ByteWindow(Echo(), window=window)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        await testbench(dut, ctx, Host(dut, ctx))

    sim.add_testbench(bench)
    sim.run()


def test_bytes_go_through_in_order_and_a_take_forgets_the_oldest():
    async def bench(dut, ctx, host):
        data = bytes(range(10, 20))
        host.load(data)
        await ctx.tick().repeat(3)  # many edges after one toggle: loaded once
        assert not ctx.get(dut.in_empty)
        await ctx.tick().repeat(20)
        assert ctx.get(dut.in_empty) and host.received() == data
        assert ctx.get(dut.attention)  # a reply waits and the core is done
        host.take(4)
        await ctx.tick().repeat(3)
        assert host.received() == data[4:] and ctx.get(dut.out_count) == 6
        host.take(dut.window)  # more than there is: everything
        await ctx.tick()
        assert ctx.get(dut.out_count) == 0 and not ctx.get(dut.attention)

    run(16, bench)


def test_a_full_window_stalls_the_core_and_loses_nothing():
    async def bench(dut, ctx, host):
        window = dut.window
        sent = bytes(range(3 * window))
        got = bytearray()
        host.load(sent[:window])
        await ctx.tick().repeat(2 * window)
        host.load(sent[window:2 * window])  # the core (4-byte FIFO) cannot take it all
        await ctx.tick().repeat(2 * window)
        assert ctx.get(dut.out_count) == window and ctx.get(dut.attention)
        assert ctx.get(dut.core_busy) and not ctx.get(dut.in_empty)
        host.load(sent[2 * window:])  # taken once the pending bytes are
        for _ in range(8):
            got += host.received()
            host.take(len(host.received()))
            await ctx.tick().repeat(window)
        assert bytes(got) == sent and ctx.get(dut.in_empty) and not ctx.get(dut.core_busy)

    run(8, bench)


def test_wake_on_empty():
    async def bench(dut, ctx, host):
        ctx.set(dut.wake_on_empty, 1)
        assert ctx.get(dut.attention)  # nothing loaded: empty
        host.load(b"\x01\x02\x03")
        await ctx.tick()
        assert not ctx.get(dut.attention)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.in_empty) and ctx.get(dut.attention)

    run(4, bench)


@pytest.mark.parametrize("window", [0, 1 << 17, 2.5])
def test_window_is_checked(window):
    with pytest.raises((ValueError, TypeError), match="window"):
        ByteWindow(Echo(), window=window)
