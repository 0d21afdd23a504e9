"""Single-port RAM: the iCE40 UltraPlus's SPRAMs (``SB_SPRAM256KA``) or a plain memory.

An iCE40 UP5K has four single-port RAMs of 16K x 16 bits (256 kbit each,
1 Mbit in all) beside its thirty 4-kbit EBRs.  Yosys does not infer them
from a memory with separate read and write ports, so :class:`SinglePortRAM`
instantiates them: on a platform whose ``device`` starts with ``iCE40UP``
(amaranth's ``ICE40Platform``, e.g. the iCEBreaker's ``iCE40UP5K``) it tiles
``SB_SPRAM256KA`` cells ``ceil(width / 16)`` wide and ``ceil(depth / 16384)``
deep, and refuses a tiling of more than :data:`SPRAM_COUNT` cells or write
lanes that do not fall on the cells' 4-bit write masks.  Elsewhere (no
platform: the Amaranth simulator, Verilog export; any other FPGA) it is a
:class:`amaranth.lib.memory.Memory` with one write port and one registered
read port used as a single port, with the same timing.

The primitive, as Yosys's simulation model (``share/ice40/cells_sim.v``) and
Lattice's usage guide describe it: ``ADDRESS`` (14 bits), ``DATAIN`` (16),
``MASKWREN`` (4: nibble ``n`` is written when bit ``n`` is high), ``WREN``
(write, else read), ``CHIPSELECT`` (no access when low: ``DATAOUT`` holds),
``DATAOUT`` registered (the read word the cycle after the address; undefined
after a write cycle), and the power controls, tied off here: ``STANDBY`` 0,
``SLEEP`` 0 and ``POWEROFF`` **1** (it is active low: 0 powers the cell off
and loses its contents).  The SPRAM has no initial contents.
"""

from amaranth.hdl import Array, C, Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .params import check_int

__all__ = ["SinglePortRAM", "SPRAM_WIDTH", "SPRAM_DEPTH", "SPRAM_MASK_BITS", "SPRAM_COUNT", "spram_cells",
           "spram_lane", "is_ultraplus"]

#: One ``SB_SPRAM256KA``: 16K words of 16 bits, written in nibbles (``MASKWREN``).
SPRAM_WIDTH, SPRAM_DEPTH, SPRAM_MASK_BITS = 16, 1 << 14, 4
#: SPRAM cells of an iCE40 UltraPlus (UP3K and UP5K alike).
SPRAM_COUNT = 4


def spram_cells(width: int, depth: int) -> int:
    """``SB_SPRAM256KA`` cells that tile ``depth`` words of ``width`` bits."""
    return -(-width // SPRAM_WIDTH) * -(-depth // SPRAM_DEPTH)


def spram_lane(bits: int) -> int:
    """``bits`` rounded up to whole write masks (nibbles): a write lane that SPRAM cells can mask."""
    return -(-bits // SPRAM_MASK_BITS) * SPRAM_MASK_BITS


def is_ultraplus(platform) -> bool:
    """Whether ``platform`` is an iCE40 UltraPlus (its ``device`` names one), the chips with SPRAM."""
    device = getattr(platform, "device", None)
    return isinstance(device, str) and device.startswith("iCE40UP")


class SinglePortRAM(wiring.Component):
    """``depth`` words of ``width`` bits behind one port (module docstring).

    Parameters
    ----------
    width, depth : int
        Bits per word and words, ``>= 1``.
    granularity : int or None
        Bits per write lane: ``w_en`` has a bit per lane (``width`` a multiple
        of it).  ``None``: one lane, the whole word.  On an UltraPlus the lanes
        must fall on the SPRAM's nibbles: a multiple of :data:`SPRAM_MASK_BITS`.

    Ports
    -----
    addr : ``In(max(1, ceil_log2(depth)))``
        The word written or read.
    w_data : ``In(width)``, w_en : ``In(width // granularity)``
        Lane ``n`` of the word at ``addr`` takes ``w_data``'s lane ``n`` at the
        clock edge where ``w_en[n]`` is high.
    r_en : ``In(1)``
        Read the word at ``addr`` (ignored in a cycle with any ``w_en`` bit high:
        writes have priority, the port does one or the other).
    r_data : ``Out(width)``
        The word read, from the cycle after a cycle with ``r_en`` high and no
        write.  After a write cycle it is undefined (the SPRAM's ``DATAOUT``;
        the plain memory holds it); otherwise it holds.  A word never written
        is undefined (the SPRAM has no initial contents; the plain memory
        reads 0).

    Latency and throughput: one access per cycle, a write or a read; read
    data one cycle after the address.
    """

    def __init__(self, *, width: int, depth: int, granularity: "int | None" = None):
        self._width = check_int("width", width, 1)
        self._depth = check_int("depth", depth, 1)
        if granularity is None:
            granularity = width
        self._granularity = check_int("granularity", granularity, 1, width)
        if width % granularity:
            raise ValueError(f"granularity must divide width = {width} (whole write lanes), got {granularity}")
        super().__init__({
            "addr": In(max(1, ceil_log2(depth))),
            "w_data": In(width),
            "w_en": In(width // granularity),
            "r_en": In(1),
            "r_data": Out(width),
        })

    width = property(lambda self: self._width)
    depth = property(lambda self: self._depth)
    granularity = property(lambda self: self._granularity)

    @property
    def cells(self) -> int:
        """``SB_SPRAM256KA`` cells of the UltraPlus tiling (:func:`spram_cells`)."""
        return spram_cells(self._width, self._depth)

    def elaborate(self, platform):
        if is_ultraplus(platform):
            return self._elaborate_spram(platform)
        m = Module()
        # Reads never meet writes (a write cycle reads nothing): no read-before-write logic.
        memory = m.submodules.memory = Memory(shape=self._width, depth=self._depth, init=[],
                                              attrs={"no_rw_check": True})
        write = memory.write_port(granularity=self._granularity if len(self.w_en) > 1 else None)
        read = memory.read_port()
        m.d.comb += [
            write.addr.eq(self.addr),
            write.data.eq(self.w_data),
            write.en.eq(self.w_en),
            read.addr.eq(self.addr),
            read.en.eq(self.r_en & ~self.w_en.any()),
            self.r_data.eq(read.data),
        ]
        return m

    def _elaborate_spram(self, platform):
        width, depth, granularity = self._width, self._depth, self._granularity
        if self.cells > SPRAM_COUNT:
            raise ValueError(f"{width} bits x {depth} words need {self.cells} SB_SPRAM256KA of "
                             f"{SPRAM_WIDTH} x {SPRAM_DEPTH}; {platform.device} has {SPRAM_COUNT}")
        if len(self.w_en) > 1 and granularity % SPRAM_MASK_BITS:
            raise ValueError(f"granularity must be a multiple of {SPRAM_MASK_BITS} in SB_SPRAM256KA "
                             f"(its write masks are nibbles), got {granularity}")
        m = Module()
        columns, banks = -(-width // SPRAM_WIDTH), -(-depth // SPRAM_DEPTH)
        low_bits = SPRAM_DEPTH.bit_length() - 1
        writing = Signal()
        address = Signal(low_bits)  # the cells' ADDRESS: the low bits, zero-extended
        m.d.comb += [writing.eq(self.w_en.any()), address.eq(self.addr[:low_bits])]
        bank = self.addr[low_bits:] if banks > 1 else C(0, 1)
        # Each nibble's write enable: the lane it lies in (nibbles past the word: never).
        nibbles = [self.w_en[(b * SPRAM_MASK_BITS) // granularity] if b * SPRAM_MASK_BITS < width else C(0, 1)
                   for b in range(columns * SPRAM_WIDTH // SPRAM_MASK_BITS)]
        w_data = Cat(self.w_data, Const(0, columns * SPRAM_WIDTH - width))
        outs = []
        for k in range(banks):
            out = Signal(columns * SPRAM_WIDTH, name=f"bank{k}_data")
            for c in range(columns):
                per = SPRAM_WIDTH // SPRAM_MASK_BITS
                m.submodules[f"spram{k}_{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address,
                    i_DATAIN=w_data[c * SPRAM_WIDTH:(c + 1) * SPRAM_WIDTH],
                    i_MASKWREN=Cat(*nibbles[c * per:(c + 1) * per]),
                    i_WREN=writing,
                    i_CHIPSELECT=(writing | self.r_en) & (bank == k),
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=C(0, 1),
                    i_SLEEP=C(0, 1),
                    i_POWEROFF=C(1, 1),  # active low
                    o_DATAOUT=out[c * SPRAM_WIDTH:(c + 1) * SPRAM_WIDTH],
                )
            outs.append(out)
        if banks == 1:
            m.d.comb += self.r_data.eq(outs[0][:width])
        else:
            read_bank = Signal(range(banks))  # the bank of the last read: the others hold theirs
            with m.If(self.r_en & ~writing):
                m.d.sync += read_bank.eq(bank)
            m.d.comb += self.r_data.eq(Array(outs)[read_bank][:width])
        return m
