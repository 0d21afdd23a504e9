"""8N1 UART: a transmitter and a receiver with byte streams on the core side.

The host link of the training core (:mod:`sw.protocol`) runs over a plain
asynchronous serial line: one start bit (0), eight data bits least
significant first, one stop bit (1), idle high.  Both units count the bit
time in clock cycles, ``divisor = clk_freq / baud`` (rounded by the caller;
the receiver tolerates the usual few per cent of mismatch, see below).

* :class:`UARTTransmitter` -- ``i`` (bytes) -> ``tx`` pin.
* :class:`UARTReceiver` -- ``rx`` pin -> ``o`` (bytes), with a 2-flop
  synchroniser, mid-bit sampling, false-start (glitch) rejection and
  framing-error handling (a byte whose stop bit reads 0 is dropped).

Timing (``D = divisor``)::

    tx/rx   ~~~~\\_____/ d0  \\ d1 ... d7 /~~~~~ stop ~~~~~
                |<-D->|<-D->|                |<-D->|
    receiver     ^ edge seen   ^ samples at the middle of each bit
                 (+2 cycles of synchroniser)

The receiver samples ``D // 2`` cycles into the start bit (its middle,
counted from the falling edge on ``rx``), then every ``D`` cycles; it is back
looking for the next start bit half a bit before the stop bit ends, so
back-to-back bytes and a sender up to about ``1/(2 * 10) = 5 %`` faster or
slower than ``D`` are received.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["UARTTransmitter", "UARTReceiver", "MIN_DIVISOR"]

#: Smallest bit time in cycles: the receiver needs a middle to sample.
MIN_DIVISOR = 4


def _check_divisor(divisor) -> int:
    return check_int("divisor", divisor, MIN_DIVISOR, note="clock cycles per bit, clk_freq // baud")


class UARTTransmitter(wiring.Component):
    """8N1 serial transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, ``clk_freq // baud``, ``>= 4``.

    Ports
    -----
    i : ``In(stream.Signature(8))``
        Bytes to send.  ``ready`` is high only while the line is idle (no
        byte in flight), so a byte is taken at the start of its frame.
    tx : ``Out(1, init=1)``
        The serial line (registered, idle high; high through reset).

    Latency and throughput
    ----------------------
    The start bit appears on ``tx`` one cycle after the transfer on ``i``;
    each frame lasts ``10 * divisor`` cycles and ``i.ready`` rises again in
    its last cycle (the stop bit's last), so back-to-back bytes leave with no
    idle time between frames: one byte per ``10 * divisor`` cycles.
    """

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    divisor = property(lambda self: self._divisor)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        # Start bit, 8 data bits, stop bit; shifted out LSB first.  `bits`
        # counts the bits still to send (0: idle).
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))
        timer = Signal(range(d))

        m.d.comb += [
            self.tx.eq(shreg[0]),
            self.i.ready.eq((bits == 0) | ((bits == 1) & (timer == 0))),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shreg.eq(Cat(0, self.i.payload, 1)),
                bits.eq(10),
                timer.eq(d - 1),
            ]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    shreg.eq(Cat(shreg[1:], 1)),
                    bits.eq(bits - 1),
                    timer.eq(d - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTReceiver(wiring.Component):
    """8N1 serial receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, ``clk_freq // baud``, ``>= 4``.

    Ports
    -----
    rx : ``In(1, init=1)``
        The serial line, asynchronous to the clock: it passes a two-flop
        synchroniser (both flops reset to the idle level 1) first.
    o : ``Out(stream.Signature(8))``
        Received bytes.  A byte is offered from the cycle after its stop bit
        is sampled until taken; a byte completing while the previous one
        still waits is dropped (``overrun`` pulses), never overwrites it.
    framing_error : ``Out(1)``
        Pulses for one cycle when a stop bit reads 0: the byte is dropped and
        the receiver waits for the line to go idle (high) before it hunts for
        the next start bit, so a held-low line (break) gives one error, not a
        stream of zero bytes.
    overrun : ``Out(1)``
        Pulses for one cycle when a byte is dropped because ``o`` was full.

    A low pulse that is over before the middle of the start bit is a glitch
    (false start): ignored, no byte, no error.

    Latency and throughput
    ----------------------
    ``o.valid`` rises ``latency = 4 + (divisor - 2) // 2 + 9 * divisor``
    cycles after the falling edge of the start bit reaches ``rx``
    (synchroniser, edge detection, half a bit, 8 data bits and the stop
    bit's first half); the line is sampled ``divisor // 2`` cycles into each
    bit.  One byte per ``10 * divisor`` cycles, back to back.
    """

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    divisor = property(lambda self: self._divisor)

    @property
    def latency(self) -> int:
        """Cycles from the start bit's falling edge on ``rx`` to ``o.valid``."""
        d = self._divisor
        return 4 + (d - 2) // 2 + 9 * d

    def elaborate(self, platform):
        m = Module()
        d = self._divisor

        # Two-flop synchroniser (plain registers: the same in simulation and
        # on every platform; idle level through reset).
        meta = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [meta.eq(self.rx), line.eq(meta)]

        timer = Signal(range(d))
        bits = Signal(range(9))  # data bits still to sample
        shreg = Signal(8)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq((d - 2) // 2)
                    m.next = "START"
            with m.State("START"):
                # Wait for the middle of the start bit; a line high again by
                # then was a glitch.
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), bits.eq(8)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [
                        shreg.eq(Cat(shreg[1:], line)),
                        bits.eq(bits - 1),
                        timer.eq(d - 1),
                    ]
                    with m.If(bits == 1):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~line):
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
                with m.Else():
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
