"""Plane buffer: banks of bit-plane words in block RAM, and a memory of row sums.

One bank per slot (a row of a matrix group, or a vector of a tile), each a
:class:`amaranth.lib.memory.Memory` of ``simd``-bit words written whole (no
write enables per lane or per code, so each bank maps onto plain block RAM:
ECP5 DP16KD, iCE40 EBR), all read at one address in the same cycle: a read
gives ``slots x simd`` bits, one plane of every slot.  The address layout is
:class:`hw.plane_writer.PlaneWriter`'s.  The row-sum memory holds one code
sum per row (the writer's ``sum_w``); for ``sum_reads`` readers it is kept
in as many copies, each written whole by every ``sum_w`` and read by one
reader (one write and one registered read port each: plain block RAM).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import check_int
from .plane_writer import plane_write_layout, sum_write_layout

__all__ = ["PlaneBuffer", "NO_RW_CHECK"]

#: Memory attributes for buffers that are never read and written at one
#: address in the same cycle (loading and computing are separate phases):
#: Yosys then maps them onto block RAM as they are, without the registers
#: and multiplexers that emulate read-before-write (iCE40 EBRs leave it
#: undefined).
NO_RW_CHECK = {"no_rw_check": True}


def _registered_read(m, memory, addr, en):
    """A synchronous read as an asynchronous port and a register: Yosys folds the
    register into the block RAM's read port and, as the memory says
    ``no_rw_check``, adds no logic for a read and write at one address."""
    read = memory.read_port(domain="comb")
    data = Signal.like(read.data, reset_less=True)  # a reset would cost a LUT per bit
    m.d.comb += read.addr.eq(addr)
    with m.If(en):
        m.d.sync += data.eq(read.data)
    return data


class PlaneBuffer(wiring.Component):
    """``slots`` banks of ``depth`` x ``simd`` bits and ``rows`` row sums.

    Parameters
    ----------
    slots, simd : int
        Banks and bits per word, ``>= 1``.
    depth : int
        Words per bank (:attr:`hw.plane_writer.PlaneWriter.depth`).
    rows : int
        Row sums held.
    sum_bits : int
        Bits kept of each row sum (the low ones: a sum known to be
        non-negative may drop the writer's sign bit).
    sum_reads : int
        Independent read ports of the row sums (copies of the memory), ``>= 1``.

    Ports
    -----
    w : ``In(stream.Signature(plane_write_layout(slots, simd, addr_bits), always_ready=True))``
        A word for one bank.
    sum_w : ``In(stream.Signature(sum_write_layout(rows, sum_bits), always_ready=True))``
        A row's sum.
    read_addr, read_en : ``In``
        Word address of every bank; the data changes the cycle after a
        read with ``read_en`` high, and holds otherwise.
    read_data : ``Out(ArrayLayout(simd, slots))``
        ``read_data[s]`` is bank ``s``'s word.
    sum_addr : ``In(range(rows)).array(sum_reads)``, sum_data : ``Out(sum_bits).array(sum_reads)``
        The bits of the row sum at ``sum_addr[n]`` on ``sum_data[n]``, one
        cycle later (read every cycle); the reader knows whether they are
        signed.
    """

    def __init__(self, *, slots: int, simd: int, depth: int, rows: int, sum_bits: int, sum_reads: int = 1):
        self._slots = check_int("slots", slots, 1)
        self._simd = check_int("simd", simd, 1)
        self._depth = check_int("depth", depth, 1)
        self._rows = check_int("rows", rows, 1)
        self._sum_reads = check_int("sum_reads", sum_reads, 1)
        addr_bits = max(1, (depth - 1).bit_length())
        super().__init__({
            "w": In(stream.Signature(plane_write_layout(slots, simd, addr_bits), always_ready=True)),
            "sum_w": In(stream.Signature(sum_write_layout(rows, sum_bits), always_ready=True)),
            "read_addr": In(addr_bits),
            "read_en": In(1),
            "read_data": Out(data.ArrayLayout(simd, slots)),
            "sum_addr": In(range(rows)).array(sum_reads),
            "sum_data": Out(sum_bits).array(sum_reads),
        })

    def elaborate(self, platform):
        m = Module()
        for slot in range(self._slots):
            bank = m.submodules[f"bank{slot}"] = Memory(shape=self._simd, depth=self._depth, init=[], attrs=NO_RW_CHECK)
            write = bank.write_port()
            m.d.comb += [
                write.addr.eq(self.w.payload.addr),
                write.data.eq(self.w.payload.data),
                write.en.eq(self.w.valid & (self.w.payload.slot == slot)),
            ]
            m.d.comb += self.read_data[slot].eq(_registered_read(m, bank, self.read_addr, self.read_en))
        for n in range(self._sum_reads):
            sums = m.submodules[f"sums{n}" if n else "sums"] = Memory(
                shape=len(self.sum_data[n]), depth=self._rows, init=[], attrs=NO_RW_CHECK)
            write = sums.write_port()
            m.d.comb += [
                write.addr.eq(self.sum_w.payload.row),
                write.data.eq(self.sum_w.payload.sum),
                write.en.eq(self.sum_w.valid),
                self.sum_data[n].eq(_registered_read(m, sums, self.sum_addr[n], 1)),
            ]
        return m
