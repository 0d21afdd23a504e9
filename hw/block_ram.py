"""Block RAM read ports that map onto the FPGA's block RAM with no logic around them.

Helpers, not a unit: the attributes and the read port that the buffers of
the training core use for memories that are never read and written at one
address in the same cycle (loading and computing are separate phases).

* :data:`NO_RW_CHECK`: the memory's ``no_rw_check`` attribute.  Yosys
  honours it only where it merges a register into an asynchronous read port
  (``memory_dff``), so the read port must be :func:`registered_read`'s: an
  Amaranth synchronous read port says "old data on a collision", which
  Yosys emulates with the write's address and data registered and compared
  (iCE40 EBR and ECP5 DP16KD leave a collision undefined).
* :data:`NO_INIT`: that register's initial value is dropped before
  synthesis (``setattr -unset init a:dorefa_no_init``, in each board's
  script: :data:`boards.top.SPLIT_NETS`).  Yosys otherwise emulates the
  initial value (zero) on a block RAM whose output register has none: a
  flag set by the first read and an AND gate a data bit (256 LUTs for the
  iCEBreaker core's matrix).  No reader looks at the data before its first
  read, so simulation (which starts it at zero) and hardware agree on every
  value read.
"""

from amaranth.hdl import Signal

__all__ = ["NO_RW_CHECK", "NO_INIT", "BANK_ATTRS", "registered_read"]

#: Memory attributes for buffers that are never read and written at one address in the same
#: cycle: Yosys then maps them onto block RAM as they are (module docstring).
NO_RW_CHECK = {"no_rw_check": True}

#: The wire attribute that marks a read register whose initial value the build drops (module docstring).
NO_INIT = "dorefa_no_init"

#: The attributes of a buffer that must be block RAM: also ``ram_style = "block"``, so that
#: Yosys puts a shallow one (e.g. 32 words of 128 bits at pe 16, simd 128) in block RAM too,
#: never in LUT RAM, whose cost it would otherwise prefer (ECP5: 1,255 DPR16X4 cells for the
#: matrix of a 16 x 4 x 128 array).
BANK_ATTRS = {**NO_RW_CHECK, "ram_style": "block"}


def registered_read(m, memory, addr, en):
    """The data of ``memory`` at ``addr``, read when ``en`` is high: it changes the cycle
    after such a read and holds otherwise.  An asynchronous port and a register, which Yosys
    folds into the block RAM's read port; for a memory with :data:`NO_RW_CHECK`, with no
    logic for a read and write at one address, and with no initial value (:data:`NO_INIT`)."""
    read = memory.read_port(domain="comb")
    # No reset (it would cost a LUT per bit), and no initial value in the netlist.
    data = Signal.like(read.data, reset_less=True, attrs={NO_INIT: 1})
    m.d.comb += read.addr.eq(addr)
    with m.If(en):
        m.d.sync += data.eq(read.data)
    return data
