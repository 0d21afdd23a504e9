"""Sum reader: a run of batch sums out of :class:`hw.batch_sum.BatchSum`, as reply bytes, one a cycle.

READ_SUMS' reply body after its width byte (:mod:`sw.contract.link`): the sums
at ``slot .. slot + count - 1``, each as its low ``sum_bytes`` bytes, two's
complement little-endian, or (``binary32``) as the 4-byte pattern of
:func:`sw.contract.gradients.sum_float_bits`, made by a
:class:`hw.sum_float.SumToFloat`::

    addresses -> BatchSum's read port (read_latency) -> [SumToFloat] -> queue (depth words) -> bytes

A read is issued while fewer than ``depth`` sums are in flight or queued, so
the queue never overflows and the read pipeline, which cannot stall, needs
no back-pressure; the bytes leave through a ``valid``/``ready`` stream (the
link may stall it).  The serialiser takes its next word in the cycle its
last byte leaves.

Latency and throughput
----------------------
The first byte is offered :attr:`latency` cycles after ``start``: 1 to
issue the first read, the read port's latency, 2 through the queue and 1
into the serialiser (:attr:`hw.sum_float.SumToFloat.latency` more for
``binary32``).  Then one byte a cycle while
``o.ready`` is high: the ``depth`` words in flight cover the round trip from
a read's issue to its word's use (:meth:`full_rate_depth`), so ``count`` sums
take ``count * sum_bytes`` cycles after the first byte.

Parameters
----------
slots : int
    Sums held (the ``BatchSum``'s), ``>= 1``.
sum_bits : int
    Bits of each sum, ``2 .. 128``.
read_latency : int
    Cycles from an address on ``read_addr`` to its sum on ``read_data``
    (``BatchSum.read_latency``), ``>= 0``.

Ports
-----
start : ``In(1)``
    Begin a run with ``slot``, ``count`` (``1 .. slots - slot``), ``sum_bytes``
    (``1 .. ceil(sum_bits / 8)``; 4 with ``binary32``) and ``binary32``,
    all taken in that cycle.  Only while ``busy`` is low.
read_addr : ``Out(range(slots))``, read_data : ``In(signed(sum_bits))``
    The sums' read port (data ``read_latency`` cycles after the address,
    one read a cycle).  The address is a register; it is read only while
    a run is issued.
o : ``Out(stream.Signature(BYTE_LAYOUT))``
    The bytes; ``last`` on the run's final byte.
busy : ``Out(1)``
    From the cycle after ``start`` until the final byte is taken.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sw.contract.gradients import MAX_FLOAT_SUM_BITS
from sw.contract.link import FLOAT_SUM_BYTES, sum_width

from .code_packer import BYTE_LAYOUT
from .params import check_int
from .sum_float import SumToFloat

__all__ = ["SumReader"]

#: Cycles from a word's write into the queue (``SyncFIFOBuffered``) to its ``r_rdy``.
_QUEUE_LATENCY = 2


class SumReader(wiring.Component):
    """A run of ``BatchSum`` sums to little-endian bytes, a byte a cycle (module docstring)."""

    def __init__(self, *, slots: int, sum_bits: int, read_latency: int):
        self._slots = check_int("slots", slots, 1)
        self._sum_bits = check_int("sum_bits", sum_bits, 2, MAX_FLOAT_SUM_BITS)
        self._read_latency = check_int("read_latency", read_latency, 0)
        self._word_bytes = max(sum_width(sum_bits), FLOAT_SUM_BYTES)
        super().__init__({
            "start": In(1),
            "slot": In(range(slots)),
            "count": In(range(slots + 1)),
            "sum_bytes": In(range(self._word_bytes + 1)),
            "binary32": In(1),
            "read_addr": Out(range(slots)),
            "read_data": In(signed(sum_bits)),
            "o": Out(stream.Signature(BYTE_LAYOUT)),
            "busy": Out(1),
        })

    def _round_trip(self, binary32: bool) -> int:
        # A read issued in cycle t: its word is written into the queue at the end of cycle
        # t + read_latency (+ SumToFloat's), offered by the queue _QUEUE_LATENCY cycles on,
        # taken, and its place counted free for the issue the cycle after.
        return self._read_latency + (SumToFloat.latency if binary32 else 0) + _QUEUE_LATENCY + 1

    def full_rate_depth(self) -> int:
        """Words in flight that keep a byte a cycle at every ``sum_bytes``: one read's
        round trip (issue to the issue its freed place allows) over the bytes a word
        lasts, the worst of one byte a sum and ``binary32``'s four."""
        return max(-(-self._round_trip(binary32) // size) for binary32, size in ((False, 1), (True, FLOAT_SUM_BYTES)))

    @property
    def latency(self) -> int:
        """Cycles from ``start`` to the first byte offered, as a plain run (``binary32``
        adds :attr:`hw.sum_float.SumToFloat.latency`)."""
        return 1 + self._read_latency + _QUEUE_LATENCY + 1

    def elaborate(self, platform):
        m = Module()
        depth = self.full_rate_depth()
        word_bits = 8 * self._word_bytes

        # ------------------------------------------------------------ issue
        addr = Signal(range(self._slots))
        to_read = Signal(range(self._slots + 1))  # reads still to issue
        to_send = Signal(range(self._slots + 1))  # sums whose bytes have not all left
        in_flight = Signal(range(depth + 1))  # read, and not yet taken from the queue
        binary32 = Signal()
        last_byte = Signal(range(self._word_bytes))  # sum_bytes - 1
        issue, take = Signal(), Signal()
        m.d.comb += [
            issue.eq((to_read != 0) & (in_flight != depth)),
            self.read_addr.eq(addr),
            self.busy.eq(to_send != 0),
        ]
        m.d.sync += in_flight.eq(in_flight + issue - take)
        with m.If(issue):
            m.d.sync += [addr.eq(addr + 1), to_read.eq(to_read - 1)]

        # ------------------------------------------------------------ read, convert, queue
        read = issue
        for k in range(self._read_latency):
            stage = Signal(name=f"read{k}")
            m.d.sync += stage.eq(read)
            read = stage
        m.submodules.to_float = to_float = SumToFloat(sum_bits=self._sum_bits)
        # One entry more than can be in flight: SyncFIFOBuffered's inner memory holds depth - 1,
        # and a write while its output register refills must still find room.
        m.submodules.queue = queue = SyncFIFOBuffered(width=word_bits, depth=depth + 1)
        m.d.comb += [
            to_float.i.valid.eq(read & binary32),
            to_float.i.payload.eq(self.read_data),
            queue.w_en.eq(Mux(binary32, to_float.o.valid, read)),
            # A sum sign-extended to whole bytes, or the binary32 pattern.
            queue.w_data.eq(Mux(binary32, to_float.o.payload, self.read_data)),
        ]

        # ------------------------------------------------------------ bytes
        word = Signal(word_bits)
        byte = Signal(range(self._word_bytes))
        have = Signal()
        ends = Signal()  # the byte offered is its sum's last
        m.d.comb += [
            ends.eq(byte == last_byte),
            self.o.valid.eq(have),
            self.o.payload.data.eq(word[:8]),
            self.o.payload.last.eq(ends & (to_send == 1)),
            queue.r_en.eq(~have | (self.o.ready & ends)),
            take.eq(queue.r_en & queue.r_rdy),
        ]
        with m.If(have & self.o.ready):
            m.d.sync += [byte.eq(byte + 1), word.eq(word >> 8)]
            with m.If(ends):
                m.d.sync += [have.eq(0), to_send.eq(to_send - 1)]
        with m.If(take):
            m.d.sync += [word.eq(queue.r_data), byte.eq(0), have.eq(1)]

        with m.If(self.start):
            m.d.sync += [addr.eq(self.slot), to_read.eq(self.count), to_send.eq(self.count),
                         binary32.eq(self.binary32), last_byte.eq(self.sum_bytes - 1)]
        return m
