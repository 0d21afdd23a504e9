"""Frame transmitter of the host link: wraps a reply body in ``SYNC`` and the CRC.

The body is everything the CRC covers (:mod:`sw.protocol`, :mod:`sw.contract.link`)::

    body:  STATUS TAG LEN_L LEN_H payload...          (last: on its final byte)
    out:   SYNC   STATUS TAG LEN_L LEN_H payload... CRC_H CRC_L

so a reply is produced on the fly, its payload computed while it is being
sent (a RUN's accumulators leave as they are made); nothing is buffered.
The transmitter does not look at ``LEN``: the producer's body must hold
exactly ``LEN`` payload bytes, as :func:`sw.protocol.encode_frame` makes.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.link import CRC_SIZE, SYNC

from .crc16 import crc16_processor

__all__ = ["FrameTransmitter", "BODY_LAYOUT"]

#: One body byte and whether it is the frame's last.
BODY_LAYOUT = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


class FrameTransmitter(wiring.Component):
    """``SYNC`` + body + CRC-16/CCITT-FALSE (big-endian) per frame.

    Ports
    -----
    i : ``In(stream.Signature(BODY_LAYOUT))``
        Body bytes (``data``); ``last`` on the final byte of each frame (a
        body has at least the 4 bytes STATUS, TAG, LEN_L, LEN_H).
    o : ``Out(stream.Signature(8))``
        Frame bytes.

    Latency and throughput
    ----------------------
    Combinational from ``i`` to ``o`` inside a body (one byte per cycle);
    ``SYNC`` is offered as soon as a body's first byte is valid (it waits
    on ``i`` meanwhile), the two CRC bytes follow its last byte: a frame
    of ``B`` body bytes takes ``B + 3`` transfers on ``o``.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(BODY_LAYOUT)),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc16 = crc16_processor()
        crc = crc16.crc  # of the body so far (registered)
        assert len(crc) == 8 * CRC_SIZE
        sent = Signal()
        m.d.comb += sent.eq(self.o.valid & self.o.ready)

        with m.FSM():
            with m.State("SYNC"):
                m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(SYNC)]
                with m.If(sent):
                    m.d.comb += crc16.start.eq(1)
                    m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += [
                    self.o.valid.eq(self.i.valid),
                    self.o.payload.eq(self.i.payload.data),
                    self.i.ready.eq(self.o.ready),
                ]
                m.d.comb += [crc16.data.eq(self.i.payload.data), crc16.valid.eq(sent)]
                with m.If(sent):
                    with m.If(self.i.payload.last):
                        m.next = "CRC_H"
            with m.State("CRC_H"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc[8:])]
                with m.If(sent):
                    m.next = "CRC_L"
            with m.State("CRC_L"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc[:8])]
                with m.If(sent):
                    m.next = "SYNC"
        return m
