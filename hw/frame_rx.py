"""Frame receiver of the host link: the core's side of :class:`sw.protocol.FrameDecoder`
(``backtrack=False``) plus the idle timeout.

Bytes come in on a stream; the receiver hunts for ``SYNC``, takes ``CMD``,
``TAG`` and ``LEN``, checks ``LEN`` against ``max_payload``, writes the
payload into the caller's request buffer (``wr``) while it runs the
CRC-16/CCITT-FALSE over ``CMD .. payload`` and compares it with ``CRC_H
CRC_L`` (the same test as a zero CRC over ``CMD .. CRC_L``), and reports
each frame as one event on ``o``::

    status = BAD_LENGTH   LEN > max_payload: reported right after LEN_H; no
                          payload is taken, hunting resumes at the next byte
    status = BAD_CRC      the CRC over CMD .. payload is not CRC_H CRC_L
    status = OK           a good frame: LEN payload bytes are in the buffer
                          at addresses 0 .. LEN - 1

The event waits on ``o`` until taken, and no byte is taken meanwhile
(``i.ready`` is low), so the consumer executes a request and sends its
reply before the next one is read: byte for byte the lock step of
:class:`sw.core_model.CoreModel`, whatever the host sends.  No
backtracking: after any frame or error, hunting starts at the next byte.

Idle timeout: inside a frame (after ``SYNC``, before the event), a run of
``timeout`` cycles with no byte offered on ``i`` drops the partial frame
silently (no event) and the receiver hunts again -- a truncated request
cannot wedge the core (the protocol's ``RX_IDLE_TIMEOUT_S``; the caller
converts seconds to cycles).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.link import FRAME_FIELDS, LOAD_HEADER, MAX_PAYLOAD, SYNC, Status

from .crc16 import crc16_processor
from .params import check_int

__all__ = ["FrameReceiver", "event_layout"]


def event_layout(head_bytes: int) -> data.StructLayout:
    """The layout of the receiver's events (:class:`FrameReceiver`, port ``o``): ``status``,
    ``cmd``, ``tag``, ``length`` and the payload's first ``head_bytes`` bytes, ``head``."""
    frame = {f.name: unsigned(8 * f.size) for f in FRAME_FIELDS.fields}
    return data.StructLayout({
        "status": unsigned(8),
        "cmd": frame["code"],
        "tag": frame["tag"],
        "length": frame["length"],
        "head": data.ArrayLayout(unsigned(8), head_bytes),
    })


class FrameReceiver(wiring.Component):
    """SYNC hunt, header, length check, payload to a buffer, CRC check, idle timeout.

    Parameters
    ----------
    max_payload : int
        Largest ``LEN`` accepted, ``1 .. 4096`` (:data:`sw.protocol.MAX_PAYLOAD`).
    timeout : int
        Idle cycles inside a frame after which it is dropped, ``>= 1``.
    head_bytes : int
        Leading payload bytes also returned in the event (the command
        headers), ``0 .. max_payload``; default :data:`sw.protocol.LOAD_HEADER`.

    Ports
    -----
    i : ``In(stream.Signature(8))``
        Request bytes.
    wr : ``Out(stream.Signature(wr_layout))``
        Payload bytes for the request buffer: ``wr_layout`` is a
        ``StructLayout`` of ``addr`` (``range(max_payload)``, the byte's index
        in the payload) and ``data`` (8 bits).  A payload byte is taken from
        ``i`` only together with its ``wr`` transfer (``i.ready = wr.ready``
        meanwhile); tie ``wr.ready`` high for a plain memory write port.
    o : ``Out(stream.Signature(event_layout))``
        One event per frame: ``status`` (8 bits, a :class:`sw.protocol.Status`:
        OK, BAD_CRC or BAD_LENGTH), ``cmd`` and ``tag`` (bytes 1 and 2 as
        received), ``length`` (16 bits, ``LEN`` as received) and ``head``
        (``ArrayLayout(8, head_bytes)``, payload bytes ``0 .. head_bytes -
        1``; those at or past ``length`` are stale).

    Latency and throughput
    ----------------------
    One byte per cycle in every state (hunting included); the event is
    valid the cycle after ``LEN_H`` (BAD_LENGTH) or ``CRC_L`` is taken.
    ``i.ready`` is low while an event waits on ``o``.
    """

    def __init__(self, max_payload: int, *, timeout: int, head_bytes: int = LOAD_HEADER):
        self._max_payload = check_int("max_payload", max_payload, 1, MAX_PAYLOAD)
        self._timeout = check_int("timeout", timeout, 1)
        self._head_bytes = check_int("head_bytes", head_bytes, 0, max_payload)
        self._wr_layout = data.StructLayout({"addr": range(max_payload), "data": unsigned(8)})
        self._event_layout = event_layout(head_bytes)
        super().__init__({
            "i": In(stream.Signature(8)),
            "wr": Out(stream.Signature(self._wr_layout)),
            "o": Out(stream.Signature(self._event_layout)),
        })

    max_payload = property(lambda self: self._max_payload)
    timeout = property(lambda self: self._timeout)
    head_bytes = property(lambda self: self._head_bytes)
    wr_layout = property(lambda self: self._wr_layout)
    event_layout = property(lambda self: self._event_layout)

    def elaborate(self, platform):
        m = Module()
        event = self.o.payload
        byte = self.i.payload
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)

        # The CRC of CMD .. payload (registered: the CRC bytes are not fed to
        # it), compared with CRC_H (held) and CRC_L as CRC_L arrives.
        m.submodules.crc = crc16 = crc16_processor()
        crc_h = Signal(8)
        m.d.comb += crc16.data.eq(byte)
        count = Signal(range(self._max_payload + 1))  # payload bytes taken
        idle = Signal(range(self._timeout))  # cycles with no byte offered
        expired = Signal()  # idle == timeout - 1, registered (no compare before the FSM's next state)
        last_count = Signal.like(count)  # LEN - 1: the payload's last byte (registered at LEN_H)
        # The header bytes, each its own enable.  No domain reset: nothing reads them before
        # a frame's bytes arrive, and a reset beside the enables costs a LUT a byte.
        head = Signal.like(event.head, reset_less=True)
        m.d.comb += event.head.eq(head)
        # LEN's low byte against max_payload's and 0, registered at LEN_L: LEN_H compares its
        # own byte only (no 16-bit compare between the byte's arrival and the next state).
        limit_high, limit_low = self._max_payload >> 8, self._max_payload & 0xFF
        low_over = Signal()
        low_zero = Signal()

        def restart_idle():
            m.d.sync += [idle.eq(0), expired.eq(self._timeout == 1)]

        def idle_timeout():
            """Inside a frame: drop it after ``timeout`` cycles with no byte
            offered.  (Its transition happens only on cycles with no byte, so
            it never meets the byte-driven ones.)"""
            with m.If(self.i.valid):
                restart_idle()
            with m.Elif(expired):
                restart_idle()
                m.next = "HUNT"
            with m.Else():
                m.d.sync += [idle.eq(idle + 1), expired.eq(idle == self._timeout - 2)]

        def header_byte(update, next_state, crc=True):
            """Take one byte (into the CRC if ``crc``), then go to ``next_state``."""
            idle_timeout()
            m.d.comb += self.i.ready.eq(1)
            with m.If(take):
                m.d.comb += crc16.valid.eq(crc)
                m.d.sync += update
                m.next = next_state

        with m.FSM():
            with m.State("HUNT"):
                restart_idle()
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & (byte == SYNC)):
                    m.d.comb += crc16.start.eq(1)
                    m.next = "CMD"
            with m.State("CMD"):
                header_byte([event.cmd.eq(byte)], "TAG")
            with m.State("TAG"):
                header_byte([event.tag.eq(byte)], "LEN_L")
            with m.State("LEN_L"):
                header_byte([event.length[:8].eq(byte), low_over.eq(byte > limit_low), low_zero.eq(byte == 0)],
                            "LEN_H")
            with m.State("LEN_H"):
                idle_timeout()
                m.d.comb += self.i.ready.eq(1)
                length = Cat(event.length[:8], byte)
                with m.If(take):
                    m.d.comb += crc16.valid.eq(1)
                    m.d.sync += [event.length[8:].eq(byte), count.eq(0), last_count.eq(length - 1)]
                    # LEN > max_payload and LEN == 0, byte by byte (max_payload < 2**16).
                    with m.If((byte > limit_high) | ((byte == limit_high) & low_over)):
                        m.d.sync += event.status.eq(Status.BAD_LENGTH)
                        m.next = "EVENT"
                    with m.Elif((byte == 0) & low_zero):
                        m.next = "CRC_H"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                idle_timeout()
                m.d.comb += [
                    self.wr.valid.eq(self.i.valid),
                    self.wr.payload.addr.eq(count),
                    self.wr.payload.data.eq(byte),
                    self.i.ready.eq(self.wr.ready),
                ]
                with m.If(take):
                    m.d.comb += crc16.valid.eq(1)
                    m.d.sync += count.eq(count + 1)
                    if self._head_bytes:
                        with m.If(count < self._head_bytes):
                            m.d.sync += head[count].eq(byte)
                    with m.If(count == last_count):
                        m.next = "CRC_H"
            with m.State("CRC_H"):
                header_byte([crc_h.eq(byte)], "CRC_L", crc=False)
            with m.State("CRC_L"):
                idle_timeout()
                m.d.comb += self.i.ready.eq(1)
                with m.If(take):
                    good = Cat(byte, crc_h) == crc16.crc
                    m.d.sync += event.status.eq(Mux(good, Status.OK, Status.BAD_CRC))
                    m.next = "EVENT"
            with m.State("EVENT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "HUNT"

        return m

