"""Code unpacker: the protocol's dense LSB-first bit stream (bytes) back to codes.

:func:`sw.protocol.pack_codes` puts code ``i`` (``bits`` wide) at stream bits
``i*bits .. i*bits + bits - 1``, stream bit ``j`` being bit ``j % 8`` of byte
``j // 8``.  This unit is its inverse, :func:`sw.protocol.unpack_codes`, with
``bits`` chosen at run time (``1 .. max_bits``)::

    reservoir |= byte << have ; have += 8          (a byte in, when have < bits)
    code = reservoir & (2**bits - 1) ; reservoir >>= bits ; have -= bits   (a code out)

A code never straddles more than two bytes' worth of reservoir, so the
reservoir is ``max_bits + 7`` bits.  Padding bits at the end of a payload
simply stay in the reservoir; ``clear`` drops them before the next payload.
"""

from amaranth.hdl import Const, Module, Signal
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
        Packed bytes, in order.
    o : ``Out(stream.Signature(max_bits))``
        Codes, zero-extended to ``max_bits``.
    bits : ``In(range(max_bits + 1))``
        Code width, ``1 .. max_bits``; hold it while codes flow (change it
        only together with ``clear``).
    clear : ``In(1)``
        Drop the bits held (the padding of a previous payload); no transfer
        on ``o`` or ``i`` completes in a cycle with ``clear`` high.

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
        width = self._max_bits + 7
        reservoir = Signal(width)
        have = Signal(range(width + 1))
        mask = Signal(self._max_bits)
        m.d.comb += [
            mask.eq((Const(1, self._max_bits + 1) << self.bits) - 1),
            self.o.valid.eq((have >= self.bits) & ~self.clear),
            self.o.payload.eq(reservoir & mask),
            self.i.ready.eq((have < self.bits) & ~self.clear),
        ]
        with m.If(self.clear):
            m.d.sync += [reservoir.eq(0), have.eq(0)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [reservoir.eq(reservoir | (self.i.payload << have)), have.eq(have + 8)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [reservoir.eq(reservoir >> self.bits), have.eq(have - self.bits)]
        return m
