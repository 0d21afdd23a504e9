"""Wide byte windows around a core's byte streams, for a host bridge in cocotb.

A cocotb coroutine that fed a core one byte per clock edge would spend
most of a simulation in Python.  :class:`ByteWindow` lets it move up to
``window`` bytes per access instead: it writes a whole window of request
bytes in one assignment, the gateware offers them to the core's ``rx`` one
per cycle, and the reply bytes from ``tx`` collect in a window the
coroutine reads in one go (:mod:`sim.verilator_bridge`).

Ports
-----
``in_data`` : ``In(8 * window)``
    Bytes to send, byte 0 in bits 0..7.
``in_count`` : ``In(range(window + 1))``
    How many of them.
``in_toggle`` : ``In(1)``
    Flipping it loads ``in_data`` / ``in_count``: at once if ``in_empty``,
    else once every pending byte has been taken.
``in_empty`` : ``Out(1)``
    Every loaded byte has been taken by the core.
``out_data`` : ``Out(8 * window)``
    Reply bytes, shifted in from the top: the last ``out_count`` bytes
    received are bytes ``window - out_count .. window - 1`` (oldest first).
``out_count`` : ``Out(range(window + 1))``
    Bytes received and not yet taken.  At ``window`` the core's ``tx`` is
    stalled (back-pressure: no byte is lost).
``out_take`` : ``In(range(window + 1))``, ``out_toggle`` : ``In(1)``
    Flipping ``out_toggle`` forgets the oldest ``out_take`` bytes (at most
    ``out_count``).
``core_busy`` : ``Out(1)``
    The core takes no byte (its ``rx.ready`` is low): it is executing or
    answering a request.
``wake_on_empty`` : ``In(1)``, ``attention`` : ``Out(1)``
    ``attention`` is high while bytes wait to be taken and the core has
    finished its reply (it is no longer busy, nor offering a byte), or the
    window is at least half full, or, with ``wake_on_empty``, while
    ``in_empty``: the bridge sleeps until it rises.  (Not at every pause
    of a reply: a RUN pauses after each group of accumulators.)

The toggles make a load or a take happen exactly once whatever the number
of clock edges before the coroutine runs again.

Latency and throughput: one byte per cycle each way, as the core's streams
allow; a load or a take acts at the first clock edge after the toggle.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_int

__all__ = ["ByteWindow"]


class ByteWindow(wiring.Component):
    """``core`` (``rx``/``tx`` byte streams) behind ``window``-byte windows (module docstring).

    Parameters
    ----------
    core : wiring.Component
        With ``rx: In(stream.Signature(8))`` and ``tx: Out(stream.Signature(8))``
        in the ``sync`` domain.
    window : int
        Bytes per window, ``1 .. 65536``.
    """

    def __init__(self, core, window: int = 512):
        self._window = check_int("window", window, 1, 1 << 16)
        self.core = core
        super().__init__({
            "in_data": In(8 * window),
            "in_count": In(range(window + 1)),
            "in_toggle": In(1),
            "in_empty": Out(1),
            "out_data": Out(8 * window),
            "out_count": Out(range(window + 1)),
            "out_take": In(range(window + 1)),
            "out_toggle": In(1),
            "core_busy": Out(1),
            "wake_on_empty": In(1),
            "attention": Out(1),
        })

    window = property(lambda self: self._window)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        window = self._window

        # Request side: a shift register of pending bytes, byte 0 offered first.
        pending = Signal(8 * window)
        left = Signal(range(window + 1))
        in_seen = Signal()
        m.d.comb += [
            core.rx.payload.eq(pending[:8]),
            core.rx.valid.eq(left != 0),
            self.in_empty.eq(left == 0),
            self.core_busy.eq(~core.rx.ready),
        ]
        with m.If(left == 0):
            with m.If(self.in_toggle != in_seen):
                m.d.sync += [pending.eq(self.in_data), left.eq(self.in_count), in_seen.eq(self.in_toggle)]
        with m.Elif(core.rx.ready):
            m.d.sync += [pending.eq(pending >> 8), left.eq(left - 1)]

        # Reply side: bytes shift in from the top; a take lowers the count.
        received = Signal(8 * window)
        count = Signal(range(window + 1))
        out_seen = Signal()
        taken = Signal(range(window + 1))
        accept = Signal()
        m.d.comb += [
            core.tx.ready.eq(count != window),
            accept.eq(core.tx.valid & core.tx.ready),
            self.out_data.eq(received),
            self.out_count.eq(count),
        ]
        with m.If(self.out_toggle != out_seen):
            m.d.sync += out_seen.eq(self.out_toggle)
            with m.If(self.out_take > count):
                m.d.comb += taken.eq(count)
            with m.Else():
                m.d.comb += taken.eq(self.out_take)
        with m.If(accept):
            m.d.sync += received.eq(Cat(received[8:], core.tx.payload))
        m.d.sync += count.eq(count - taken + accept)

        # Wake the bridge when a reply is over or half a window waits, or when asked, once input drains.
        m.d.comb += self.attention.eq(((count != 0) & core.rx.ready & ~core.tx.valid)
                                      | (count >= (window + 1) // 2)
                                      | (self.wake_on_empty & (left == 0)))
        return m
