"""Code unpacker: the protocol's dense LSB-first bit stream (bytes) back to codes.

:func:`sw.protocol.pack_codes` puts code ``i`` (``bits`` wide) at stream bits
``i*bits .. i*bits + bits - 1``, stream bit ``j`` being bit ``j % 8`` of byte
``j // 8``.  This unit is its inverse, :func:`sw.protocol.unpack_codes`, with
``bits`` chosen at run time (``1 .. max_bits``).

It holds at most two bytes, ``lo`` and ``hi``, in a 16-bit window, and
``have`` unread bits of it, starting at bit ``pos = (-have) mod 8`` of ``lo``
(the bits below ``pos`` are spent, ``hi`` holds anything only when ``have >
8 - pos``)::

    a byte in (when have < bits):  into lo if have == 0, else into hi ; have += 8
    a code out (when have >= bits): code = (window >> pos) & (2**bits - 1) ;
                                    have -= bits ; lo <- hi if pos + bits >= 8

A byte enters a fixed place (no shifter between the byte and the registers)
and one 3-bit shifter extracts the code.  The counters hold ``-have`` (whose
low three bits are ``pos``) and ``bits - 1 - have``, whose sign bit is
``o.valid``: both are updated with the transfers of the cycle, so ``o.valid``
(``have >= bits``) is a flip-flop, computed a cycle ahead, and ``i.ready``
is its complement (and ``~clear``): no path runs from ``bits`` or from the
consumer's ``ready`` to either.  Padding bits at the end of a payload simply
stay; ``clear`` drops them before the next payload.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS

from .params import check_int

__all__ = ["CodeUnpacker"]


class CodeUnpacker(wiring.Component):
    """Bytes in, ``bits``-bit codes out (LSB-first dense packing).

    Parameters
    ----------
    max_bits : int
        Widest code, ``1 .. 8``.

    Ports
    -----
    i : ``In(stream.Signature(8))``
        Packed bytes, in order.  ``i.ready`` is ``~o.valid & ~clear``.
    o : ``Out(stream.Signature(max_bits))``
        Codes, zero-extended to ``max_bits``.  ``o.valid`` comes straight
        from a flip-flop (no path from ``bits``, ``clear``, ``i`` or
        ``o.ready``); ``o.payload`` from the window and ``pos`` registers
        through a 3-bit shifter and the ``bits`` mask.
    bits : ``In(range(max_bits + 1))``
        Code width, ``1 .. max_bits``; set it by the cycle of ``clear`` (it
        is sampled then) and hold it until the payload's last code is out.
    clear : ``In(1)``
        Drop the bits held (the padding of a previous payload): ``o.valid``
        is low from the next cycle until a code is complete again.  Nothing
        is taken on ``i`` while it is high, and the consumer must not take
        a code on ``o`` then (``o.valid`` may still show the old payload's
        padding; a code taken is dropped).

    Latency and throughput
    ----------------------
    ``o.valid`` rises the cycle after the byte completing a code is taken.
    A byte is taken only while fewer than ``bits`` bits are held
    (``i.ready = ~o.valid``), one cycle each, and a code leaves per cycle
    otherwise: with both sides always ready, ``1 + bits / 8`` cycles per
    code on average (2 at 8 bits, 9 cycles per 8 codes at 1 bit).
    """

    def __init__(self, max_bits: int = MAX_CODE_BITS):
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(max_bits)),
            "bits": In(range(max_bits + 1)),
            "clear": In(1),
        })

    max_bits = property(lambda self: self._max_bits)

    def elaborate(self, platform):
        m = Module()
        max_bits = self._max_bits
        # At most max_bits - 1 bits are held when a byte comes in.
        most = max_bits + 7
        lo = Signal(8)
        hi = Signal(8)
        neg_have = Signal(range(-most, 1))  # -have: its low three bits are pos
        short = Signal(range(-most, max_bits))  # bits - 1 - have: negative iff have >= bits
        pos = neg_have[:3]
        m.d.comb += [
            self.o.valid.eq(short[-1]),
            self.o.payload.eq((Cat(lo, hi) >> pos)[:max_bits] & Cat(self.bits > j for j in range(max_bits))),
            self.i.ready.eq(~self.o.valid & ~self.clear),
        ]
        take_in = self.i.valid & self.i.ready
        take_out = self.o.valid & self.o.ready
        # A byte goes to lo when nothing is held, to hi otherwise; hi loads on
        # every cycle it may take a byte (what it holds then is unread).
        with m.If(self.i.ready):
            m.d.sync += hi.eq(self.i.payload)
        lo_spent = (pos + self.bits)[3]  # the code out reads lo's last bits
        with m.If((take_in & ~neg_have[-1]) | (take_out & lo_spent)):
            m.d.sync += lo.eq(Mux(self.o.valid, hi, self.i.payload))
        with m.If(self.clear):
            m.d.sync += [neg_have.eq(0), short.eq(self.bits - 1)]
        with m.Elif(take_in):
            m.d.sync += [neg_have.eq(neg_have - 8), short.eq(short - 8)]
        with m.Elif(take_out):
            m.d.sync += [neg_have.eq(neg_have + self.bits), short.eq(short + self.bits)]
        return m
