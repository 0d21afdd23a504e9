"""Plane buffer: banks of bit-plane words in block RAM or SPRAM, and a memory of row sums.

One bank per slot (a row of a matrix group, or a vector of a tile), each a
:class:`amaranth.lib.memory.Memory` of ``simd``-bit words written whole (no
write enables per lane or per code, so each bank maps onto plain block RAM:
ECP5 DP16KD, iCE40 EBR), all read at one address in the same cycle: a read
gives ``slots x simd`` bits, one plane of every slot.  The address layout is
:class:`hw.plane_writer.PlaneWriter`'s.  The row-sum memory holds one code
sum per row (the writer's ``sum_w``); for ``sum_reads`` readers it is kept
in as many copies, each written whole by every ``sum_w`` and read by one
reader (one write and one registered read port each: plain block RAM, where
``block_sums`` puts them; else Yosys chooses, LUT RAM on ECP5 for a few rows).

With ``memory="spram"`` the banks are instead the lanes of one wide
:class:`hw.spram.SinglePortRAM` (on an iCE40 UltraPlus, its ``SB_SPRAM256KA``
cells): a word of ``slots`` lanes of ``lane_bits = simd`` rounded up to the
SPRAM's 4-bit write masks, a plane word written into its slot's lane by
the lane's write enable (no read-modify-write).  The RAM is single-port: a
write and a read share the address, and the write has priority (a read
asked for in a write cycle does not happen, and the read data is undefined
after it).  A user must not write while it reads: :class:`hw.gemm.GemmEngine`
writes its matrix only while loading, never while computing.  Read
bandwidth bounds it: the UltraPlus has :data:`hw.spram.SPRAM_COUNT` cells of
16 bits, so ``slots * lane_bits <= 64`` (and the whole buffer in 4 cells).
"""

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .block_ram import BANK_ATTRS, NO_RW_CHECK, registered_read
from .params import check_bool, check_choice, check_int
from .plane_writer import plane_write_layout, sum_write_layout
from .spram import SPRAM_COUNT, SPRAM_MASK_BITS, SPRAM_WIDTH, SinglePortRAM, spram_cells, spram_lane

__all__ = ["PlaneBuffer", "MEMORIES"]

#: Where the plane banks live: block RAM (a memory per bank) or single-port RAM (one wide SPRAM).
MEMORIES = ("block", "spram")


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
    block_sums : bool
        Hold the row sums in block RAM (``ram_style = "block"``, as the banks), for a
        memory of many rows; else Yosys chooses (on ECP5, LUT RAM for up to a few
        hundred bits: the right place for a handful of rows).
    memory : str
        ``"block"`` (a memory per bank) or ``"spram"`` (the banks as lanes of one
        single-port RAM, module docstring: at most :data:`hw.spram.SPRAM_COUNT`
        SPRAM cells, so ``slots * lane_bits <= 64``; a write has priority
        over a read and must not come while reading).

    Ports
    -----
    w : ``In(stream.Signature(plane_write_layout(slots, simd, addr_bits), always_ready=True))``
        A word for one bank.
    sum_w : ``In(stream.Signature(sum_write_layout(rows, sum_bits), always_ready=True))``
        A row's sum.
    read_addr, read_en : ``In``
        Word address of every bank; the data changes the cycle after a
        read with ``read_en`` high, and holds otherwise (``"spram"``: a read
        in a cycle with ``w.valid`` does not happen, and the data is
        undefined after a write).
    read_data : ``Out(ArrayLayout(simd, slots))``
        ``read_data[s]`` is bank ``s``'s word.
    sum_addr : ``In(range(rows)).array(sum_reads)``, sum_data : ``Out(sum_bits).array(sum_reads)``
        The bits of the row sum at ``sum_addr[n]`` on ``sum_data[n]``, one
        cycle later (read every cycle); the reader knows whether they are
        signed.
    """

    def __init__(self, *, slots: int, simd: int, depth: int, rows: int, sum_bits: int, sum_reads: int = 1,
                 memory: str = "block", block_sums: bool = False):
        self._slots = check_int("slots", slots, 1)
        self._simd = check_int("simd", simd, 1)
        self._depth = check_int("depth", depth, 1)
        self._rows = check_int("rows", rows, 1)
        self._sum_reads = check_int("sum_reads", sum_reads, 1)
        self._memory = check_choice("memory", memory, MEMORIES)
        self._sum_attrs = BANK_ATTRS if check_bool("block_sums", block_sums) else NO_RW_CHECK
        if memory == "spram" and spram_cells(slots * self.lane_bits, depth) > SPRAM_COUNT:
            raise ValueError(
                f"memory 'spram' must fit {SPRAM_COUNT} SPRAM cells of {SPRAM_WIDTH} bits (slots * simd <= "
                f"{SPRAM_COUNT * SPRAM_WIDTH} read per cycle, simd rounded up to {SPRAM_MASK_BITS}), got "
                f"{slots} x {self.lane_bits} bits x {depth} words: {spram_cells(slots * self.lane_bits, depth)} cells")
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

    memory = property(lambda self: self._memory)

    @property
    def lane_bits(self) -> int:
        """Bits of a bank's lane in the ``"spram"`` word: ``simd`` rounded up to the write masks."""
        return spram_lane(self._simd)

    def _elaborate_block(self, m):
        for slot in range(self._slots):
            bank = m.submodules[f"bank{slot}"] = Memory(shape=self._simd, depth=self._depth, init=[], attrs=BANK_ATTRS)
            write = bank.write_port()
            m.d.comb += [
                write.addr.eq(self.w.payload.addr),
                write.data.eq(self.w.payload.data),
                write.en.eq(self.w.valid & (self.w.payload.slot == slot)),
            ]
            m.d.comb += self.read_data[slot].eq(registered_read(m, bank, self.read_addr, self.read_en))

    def _elaborate_spram(self, m):
        lane, slots, simd = self.lane_bits, self._slots, self._simd
        ram = m.submodules.banks = SinglePortRAM(width=slots * lane, depth=self._depth, granularity=lane)
        payload = self.w.payload
        m.d.comb += [
            # Write priority: the writer's address while it writes, the reader's otherwise.
            ram.addr.eq(Mux(self.w.valid, payload.addr, self.read_addr)),
            # The word in every lane; the slot's write enable picks the one written.
            ram.w_data.eq(Cat(*([Cat(payload.data, Const(0, lane - simd))] * slots))),
            ram.r_en.eq(self.read_en),
        ]
        for slot in range(slots):
            m.d.comb += [
                ram.w_en[slot].eq(self.w.valid & (payload.slot == slot)),
                self.read_data[slot].eq(ram.r_data[slot * lane:slot * lane + simd]),
            ]

    def elaborate(self, platform):
        m = Module()
        if self._memory == "spram":
            self._elaborate_spram(m)
        else:
            self._elaborate_block(m)
        for n in range(self._sum_reads):
            sums = m.submodules[f"sums{n}" if n else "sums"] = Memory(
                shape=len(self.sum_data[n]), depth=self._rows, init=[], attrs=self._sum_attrs)
            write = sums.write_port()
            m.d.comb += [
                write.addr.eq(self.sum_w.payload.row),
                write.data.eq(self.sum_w.payload.sum),
                write.en.eq(self.sum_w.valid),
                self.sum_data[n].eq(registered_read(m, sums, self.sum_addr[n], 1)),
            ]
        return m
