"""Code packer: codes to the protocol's dense LSB-first bit stream (bytes).

The inverse of :class:`hw.code_unpacker.CodeUnpacker`: exactly
:func:`sw.protocol.pack_codes`, with ``bits`` chosen at run time (``1 ..
max_bits``).  The core packs every RUN reply's values with one: activation
codes, packed accumulators (:func:`sw.contract.link.accumulator_bits` each,
up to 32) and whole-byte accumulators (their low ``width`` bytes, a byte a
code).  Code ``i`` (``bits`` wide) goes to stream bits ``i*bits ..
i*bits + bits - 1``, stream bit ``j`` being bit ``j % 8`` of byte ``j // 8``::

    byte = reservoir & 0xFF ; reservoir >>= 8 ; have -= 8   (a byte out, when have >= 8)
    reservoir |= code << have ; have += bits       (a code in, when fewer than 8 bits stay)

both in one cycle where a byte leaves and fewer than 16 bits are held (the
code then goes in at ``have - 8``, whose low three bits are ``have``'s).
The code flagged ``last`` ends a payload: the bits still held then leave as
a final byte padded with zero bits (flagged ``last``), and the reservoir is
empty again for the next payload.  A code is taken only while fewer than 8
bits stay, so the reservoir is ``max_bits + 7`` bits.
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS
from sw.contract.link import ACC_BYTES

from .params import check_int

__all__ = ["CodePacker", "BYTE_LAYOUT", "MAX_PACKED_BITS"]

#: The widest code a packer takes: an int32 accumulator.
MAX_PACKED_BITS = 8 * ACC_BYTES

#: One packed byte and whether it is the payload's last (the layout of
#: :data:`hw.frame_tx.BODY_LAYOUT`, so the output can feed a reply body).
BYTE_LAYOUT = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


class CodePacker(wiring.Component):
    """``bits``-bit codes in, bytes out (LSB-first dense packing).

    Parameters
    ----------
    max_bits : int
        Widest code, ``1 .. 32`` (:data:`MAX_PACKED_BITS`).

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
    ``last`` code) is taken.  A code is taken (``i.ready``) while no final
    byte is pending and fewer than 8 bits are held, or fewer than 16 while a
    byte leaves (``i.ready`` follows ``o.ready`` then); a byte leaves each
    cycle that 8 are held.  With both sides always ready a payload of
    ``count`` codes takes ``max(count, ceil(count * bits / 8))`` cycles and
    a few (one code or one byte a cycle, whichever is slower), then its
    final byte.
    """

    def __init__(self, max_bits: int = MAX_CODE_BITS):
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_PACKED_BITS)
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
        emit = Signal()  # a byte leaves
        take = Signal()  # a code comes in
        m.d.comb += [
            mask.eq((Const(1, self._max_bits + 1) << self.bits) - 1),
            final.eq(flush & (have <= 8)),
            self.o.valid.eq((have >= 8) | flush),
            self.o.payload.data.eq(reservoir[:8]),
            self.o.payload.last.eq(final),
            emit.eq(self.o.valid & self.o.ready),
            self.i.ready.eq(~flush & ((have < 8) | (emit & (have < 16)))),
            take.eq(self.i.valid & self.i.ready),
        ]
        # The bits that stay (all, or all but the byte leaving: fewer than 8 where a
        # code comes in), and the code at their end: a shift by have's low 3 bits.
        kept = Mux(emit, reservoir >> 8, reservoir)
        code = Mux(take, (self.i.payload.code & mask) << have[:3], 0)
        m.d.sync += reservoir.eq(kept | code)
        with m.If(emit & final):
            m.d.sync += [have.eq(0), flush.eq(0)]
        with m.Elif(emit | take):
            m.d.sync += have.eq(have - Mux(emit, 8, 0) + Mux(take, self.bits, 0))
        with m.If(take):
            m.d.sync += flush.eq(self.i.payload.last)
        return m
