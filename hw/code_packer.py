"""Code packer: codes to the protocol's dense LSB-first bit stream (bytes).

The inverse of :class:`hw.code_unpacker.CodeUnpacker`: exactly
:func:`sw.protocol.pack_codes`, with ``bits`` chosen at run time (``1 ..
max_bits``).  Code ``i`` (``bits`` wide) goes to stream bits ``i*bits ..
i*bits + bits - 1``, stream bit ``j`` being bit ``j % 8`` of byte ``j // 8``::

    reservoir |= code << have ; have += bits       (a code in, when have < 8)
    byte = reservoir & 0xFF ; reservoir >>= 8 ; have -= 8   (a byte out, when have >= 8)

The code flagged ``last`` ends a payload: the bits still held then leave as
a final byte padded with zero bits (flagged ``last``), and the reservoir is
empty again for the next payload.  A code is taken only while fewer than 8
bits are held, so the reservoir is ``max_bits + 7`` bits.
"""

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS

from .params import check_int

__all__ = ["CodePacker", "BYTE_LAYOUT"]

#: One packed byte and whether it is the payload's last (the layout of
#: :data:`hw.frame_tx.BODY_LAYOUT`, so the output can feed a reply body).
BYTE_LAYOUT = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


class CodePacker(wiring.Component):
    """``bits``-bit codes in, bytes out (LSB-first dense packing).

    Parameters
    ----------
    max_bits : int
        Widest code, ``1 .. 8``.

    Ports
    -----
    i : ``In(stream.Signature(StructLayout({"code": unsigned(max_bits), "last": 1})))``
        Codes, in order; bits of ``code`` at and above ``bits`` are ignored.
        ``last`` on the final code of a payload.
    o : ``Out(stream.Signature(BYTE_LAYOUT))``
        Packed bytes (``data``); ``last`` on the final byte of a payload,
        whose bits past the last code are zero.  A payload of ``count`` codes
        gives ``ceil(count * bits / 8)`` bytes.
    bits : ``In(range(max_bits + 1))``
        Code width, ``1 .. max_bits``; hold it while a payload's codes flow
        (change it only between payloads).

    Latency and throughput
    ----------------------
    ``o.valid`` rises the cycle after the code completing a byte (or the
    ``last`` code) is taken.  A code is taken only while fewer than 8 bits
    are held and no final byte is pending (``i.ready``), one cycle each, and
    a byte leaves per cycle otherwise: with both sides always ready, ``1 +
    bits / 8`` cycles per code on average (2 at 8 bits, 9 cycles per 8 codes
    at 1 bit), plus the final partial byte.
    """

    def __init__(self, max_bits: int = MAX_CODE_BITS):
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        self._in_layout = data.StructLayout({"code": unsigned(max_bits), "last": unsigned(1)})
        super().__init__({
            "i": In(stream.Signature(self._in_layout)),
            "o": Out(stream.Signature(BYTE_LAYOUT)),
            "bits": In(range(max_bits + 1)),
        })

    max_bits = property(lambda self: self._max_bits)
    in_layout = property(lambda self: self._in_layout)

    def elaborate(self, platform):
        m = Module()
        width = self._max_bits + 7
        reservoir = Signal(width)
        have = Signal(range(width + 1))
        flush = Signal()  # the payload's last code is in: send what is held, then `last`
        mask = Signal(self._max_bits)
        final = Signal()  # the byte on `o` is the payload's last
        m.d.comb += [
            mask.eq((Const(1, self._max_bits + 1) << self.bits) - 1),
            final.eq(flush & (have <= 8)),
            self.o.valid.eq((have >= 8) | flush),
            self.o.payload.data.eq(reservoir[:8]),
            self.o.payload.last.eq(final),
            self.i.ready.eq((have < 8) & ~flush),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                # have < 8 while a code is taken: a shift by its low 3 bits
                reservoir.eq(reservoir | ((self.i.payload.code & mask) << have[:3])),
                have.eq(have + self.bits),
                flush.eq(self.i.payload.last),
            ]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += reservoir.eq(reservoir >> 8)
            with m.If(final):
                m.d.sync += [have.eq(0), flush.eq(0)]
            with m.Else():
                m.d.sync += have.eq(have - 8)
        return m
