"""Batch sum: the on-core sum of weight gradients over a batch, exact in integers.

The numeric contract (:mod:`sw.contract.gradients`) fixes a weight's batch sum
as the integer ``S = sum_b floor(M_b * I_b * 2**(GUARD_BITS - shift_b))``:
``M_b`` sample ``b``'s :data:`~sw.contract.gradients.SCALE_MANTISSA_BITS`-bit
scale mantissa, ``I_b`` its signed integer partial sum of the weight,
``shift_b`` its right shift against the batch's largest exponent.  This unit
keeps one ``S`` per weight ("slot") in a memory and adds one sample's term
per beat::

    term      = floor(M * I * 2**(GUARD_BITS - shift))     (= aligned_term(M, I, shift))
    S[slot]  <= term            if first
                S[slot] + term  otherwise                  (modulo 2**sum_bits)

The shift is one arithmetic right shift of ``(M * I) << GUARD_BITS`` by
``shift``: a left shift by ``GUARD_BITS - shift`` for ``shift <=
GUARD_BITS``, a floor (sign-filling) right shift by ``shift - GUARD_BITS``
past it (a negative product shifted far gives ``-1``, a positive one ``0``).
The host sizes ``sum_bits`` so that no sum overflows
(:func:`sw.contract.gradients.sum_bits`); the unit itself wraps.

Pipeline (every stage registered; ``t`` the cycle a beat is accepted)::

    t      accept the beat; the memory reads S[slot]; latch M, shift, first; compare slots
    t + 1  register the multiplier's partial products and S[slot] as they leave the
           DSP blocks and the block RAM (no logic after their slow clock-to-output)
    t + 2  register M * I (the partial products summed); register S[slot] again
    t + 3  register the term (one barrel shift); pick the sum to add to
    t + 4  register S[slot] + term, or the term alone (``first``)
    t + 5  write that register to the memory

Six stages rather than four (multiply, shift, add, write) to meet 125 MHz on
ECP5 (nextpnr, out of context): an adder feeding the block RAM's data input,
and logic behind the unregistered output of a DP16KD or a MULT18X18D, each
took more than the 8 ns.  The stored sum passes two registers, so that the
first can sit beside its block RAM wherever the placer puts that (a wide
memory of 1-bit slices spreads over the whole chip, and the DP16KD's 5.8 ns
clock-to-output leaves little of a cycle for routing) and the second crosses
the chip in a cycle of its own.

Zeroing: after a reset, and after a ``clear`` pulse, the unit writes 0 to
every slot, one per cycle (``slots`` cycles, ``busy`` high and ``i.ready``
low meanwhile), so the sums start from a defined state that a model of the
core can follow.

Hazard rule: **forwarding**, never a stall (``i.ready`` is high but while zeroing).  The
word read in cycle ``t`` misses the writes of the up to five beats still in
the pipeline (stages 1 .. 5), whose sums the adder makes at the ends of
cycles ``t + 3 .. t - 1``.  In cycle ``t`` the beat's slot is compared with
theirs (the flags are registered; nothing reaches ``i.ready``), and the beat
takes the newest of those sums made for its slot in place of the stored
word: in cycle ``t + 3`` from the adder's register and its last three values
(one-hot, the sums of cycles ``t + 2``, ``t + 1``, ``t``, ``t - 1``), and at
the adder itself (the sum of ``t + 3``, the beat just ahead).  A ``first``
beat takes none.  The memory's read of a word in the cycle it is written is
never used, so the memory needs no read-during-write behaviour
(``no_rw_check``).

Ports
-----
mantissa : ``In(SCALE_MANTISSA_BITS)``
    ``M``, unsigned; taken with each beat.
shift : ``In(8)``
    The right shift, ``0 .. 255``; taken with each beat.
first : ``In(1)``
    The beat overwrites its slot's sum (a batch's first sample) instead of
    adding to it; taken with each beat.
i : ``In(stream.Signature(StructLayout({"slot": range(slots), "partial": signed(partial_bits)})))``
    One term per beat: the slot and ``I``.  ``mantissa``, ``shift`` and
    ``first`` are latched with the beat, so a change between beats affects
    only later beats.  ``i.ready`` is high but while zeroing (a flip-flop).
clear : ``In(1)``
    Zero every sum: a sweep of ``slots`` cycles from the next one.  Only
    while ``busy`` is low (no beat in flight).
busy : ``Out(1)``
    High while an accepted beat has not been written to the memory (from the
    cycle after a beat is accepted to its write's cycle) and while zeroing; a
    flip-flop.
read_addr : ``In(range(slots))``, read_data : ``Out(signed(sum_bits))``
    A read port with :attr:`read_latency` ``= 3`` cycles of latency, one a
    cycle: ``read_data`` is the sum at the ``read_addr`` of three cycles before,
    from stage 2's register (the block RAM's slow output goes no further than
    a register beside it).  It shares the memory's one read port with the
    accumulating pipeline, so a read is valid only from a cycle with ``busy``
    low and no beat offered (``i.valid`` low); in a cycle with ``i.valid`` high
    the memory reads the beat's slot instead.

Latency and throughput
----------------------
A beat accepted in cycle ``t`` is written at the clock edge ending cycle
``t + 5``; from cycle ``t +`` :attr:`latency` ``= t + 6`` on (if no later
beat came) ``busy`` is low and ``read_addr`` may ask for the new sum, which
``read_data`` shows in cycle ``t + 9``.  One beat per cycle, in any pattern
of slots (the same slot on consecutive beats included) and of ``i.valid``:
``n`` beats take ``n`` cycles, and the last sum is readable ``latency``
cycles after the last beat.

Resources
---------
One :data:`~sw.contract.gradients.SCALE_MANTISSA_BITS` x ``partial_bits``
signed multiplier, cut into 18 x 18-bit products (two MULT18X18D for
``partial_bits <= 18``, four up to 35) summed in the next stage; one
arithmetic barrel shifter of :meth:`min_sum_bits` bits by ``0 .. 255``; one
``sum_bits`` adder; about nine ``sum_bits`` registers (the forwarding
sources and the values in flight); a memory of ``slots`` x ``sum_bits`` with
one write and one read port, written whole, in block RAM (``ram_style =
"block"``), cut into bit slices each one block RAM wide at its depth
(:func:`slice_bits`: on ECP5 36-bit slices up to 512 slots, 2-bit slices at
8,192, 1-bit ones at 16,384; 96-bit sums take 3 DP16KD a 512 slots either
way), so that no block RAM's output goes through a depth cascade's
multiplexer before its register: 16,384 sums of 96 bits are 96 DP16KD side
by side, their outputs straight into stage 1.
Measured (Yosys ``synth_ecp5``, nextpnr out of context, LFE5U-85F): 256
slots, ``partial_bits`` 16, ``sum_bits`` 96: 3 DP16KD, 2 MULT18X18D, about
1,040 TRELLIS_COMB and 870 TRELLIS_FF, 123 MHz (the critical path is the DP16KD's
clock-to-output into the register behind it, no logic); 64 x 20 x 128 bits:
119 MHz (the 128-bit adder).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.contract.gradients import GUARD_BITS, SCALE_MANTISSA_BITS, term_bits
from sw.contract.link import MAX_SUM_BITS, SHIFT_BITS

from .params import check_int
from .block_ram import BANK_ATTRS, registered_read

__all__ = ["BatchSum", "MAX_PARTIAL_BITS", "slice_bits"]

#: Bits of the ``shift`` input: a right shift of ``0 .. 255``.
MAX_PARTIAL_BITS = MAX_SUM_BITS - term_bits(1) + 1

#: The widest port of one ECP5 DP16KD (18 kbit) at each depth, parity bits included.
_BLOCK_WIDTHS = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def slice_bits(slots: int) -> int:
    """Bits of each slice of a memory of ``slots`` sums: the widest port of one block RAM
    ``slots`` deep (ECP5 DP16KD: 36 bits at up to 512, then 18, 9, 4, 2, and 1 bit at
    up to 16,384 deep; beyond that 1 bit, in a cascade)."""
    return next((width for depth, width in _BLOCK_WIDTHS if slots <= depth), 1)


class BatchSum(wiring.Component):
    """``slots`` batch sums of aligned gradient terms (module docstring).

    Parameters
    ----------
    slots : int
        Sums held (weights), ``>= 1``.
    partial_bits : int
        Width of the signed partial sum ``I``, ``>= 2`` (and at most
        :data:`MAX_PARTIAL_BITS`, a term's width then :data:`~sw.contract.link.MAX_SUM_BITS`).
    sum_bits : int
        Width of a stored sum (two's complement), from :meth:`min_sum_bits`
        (a single term at shift 0) to :data:`sw.contract.link.MAX_SUM_BITS`.
    """

    #: Cycles from a beat's acceptance to the first cycle its sum may be read (``busy`` low).
    latency = 6
    #: Cycles from ``read_addr`` to ``read_data``.
    read_latency = 3

    @staticmethod
    def min_sum_bits(partial_bits: int) -> int:
        """Bits of a two's-complement integer that holds any single term: ``M * I << GUARD_BITS``
        at shift 0 (:func:`sw.contract.gradients.term_bits`)."""
        return term_bits(partial_bits)

    def __init__(self, *, slots: int, partial_bits: int, sum_bits: int):
        self._slots = check_int("slots", slots, 1)
        self._partial_bits = check_int(
            "partial_bits", partial_bits, 2, MAX_PARTIAL_BITS,
            note=f"a sum of SCALE_MANTISSA_BITS + partial_bits + GUARD_BITS must fit {MAX_SUM_BITS} bits")
        self._sum_bits = check_int(
            "sum_bits", sum_bits, self.min_sum_bits(partial_bits), MAX_SUM_BITS,
            note=f"at least SCALE_MANTISSA_BITS + partial_bits + GUARD_BITS = "
                 f"{SCALE_MANTISSA_BITS} + {partial_bits} + {GUARD_BITS}, one term at shift 0")
        super().__init__({
            "mantissa": In(SCALE_MANTISSA_BITS),
            "shift": In(SHIFT_BITS),
            "first": In(1),
            "i": In(stream.Signature(data.StructLayout({"slot": range(slots), "partial": signed(partial_bits)}))),
            "clear": In(1),
            "busy": Out(1),
            "read_addr": In(range(slots)),
            "read_data": Out(signed(sum_bits)),
        })

    slots = property(lambda self: self._slots)
    partial_bits = property(lambda self: self._partial_bits)
    sum_bits = property(lambda self: self._sum_bits)
    slice_bits = property(lambda self: slice_bits(self._slots),
                          doc="Bits of each of the memory's slices (:func:`slice_bits`).")

    def elaborate(self, platform):
        m = Module()
        sum_shape = signed(self._sum_bits)
        product_shape = signed(SCALE_MANTISSA_BITS + self._partial_bits)  # |M * I| <= 2**(24 + pb - 1)
        term_shape = signed(self.min_sum_bits(self._partial_bits))

        # The sums in bit slices, each as deep as the slots and as wide as one block RAM is at
        # that depth (:func:`slice_bits`): the word is the slices side by side, and no
        # block RAM's output passes a multiplexer (a cascade of depth) on its way to stage 1.
        slices = []
        for n, low in enumerate(range(0, self._sum_bits, self.slice_bits)):
            width = min(self.slice_bits, self._sum_bits - low)
            memory = m.submodules[f"sums{n}"] = Memory(shape=width, depth=self._slots, init=[], attrs=BANK_ATTRS)
            slices.append((memory, memory.write_port(), low, width))

        # Every beat carries its valid and slot through stages 1 .. 5.
        valid = [None] + [Signal(name=f"s{k}_valid") for k in range(1, 6)]
        slot = [self.i.payload.slot] + [Signal(range(self._slots), name=f"s{k}_slot") for k in range(1, 6)]
        # Zeroing (after a reset, or a `clear`): one slot a cycle, no beat taken meanwhile.
        zeroing = Signal(init=1)
        zero_slot = Signal(range(self._slots))
        with m.If(self.clear):
            m.d.sync += [zeroing.eq(1), zero_slot.eq(0)]
        with m.Elif(zeroing):
            m.d.sync += zero_slot.eq(zero_slot + 1)
            with m.If(zero_slot == self._slots - 1):
                m.d.sync += zeroing.eq(0)
        accept = Signal()
        m.d.comb += [self.i.ready.eq(~zeroing), accept.eq(self.i.valid & ~zeroing)]
        m.d.sync += [valid[1].eq(accept), slot[1].eq(slot[0])]
        m.d.sync += [valid[k + 1].eq(valid[k]) for k in range(1, 5)]
        m.d.sync += [slot[k + 1].eq(slot[k]) for k in range(1, 5)]
        # Any of stages 1 .. 5 next cycle, or zeroing (the last slot's write included).
        busy = Signal(init=1)  # zeroing from the reset on
        m.d.comb += self.busy.eq(busy)
        m.d.sync += busy.eq(accept | valid[1] | valid[2] | valid[3] | valid[4] | self.clear
                            | (zeroing & (zero_slot != self._slots - 1)))

        # The adder's register (the sum written at the end of this cycle, stage 5) and its last
        # three values (written at the ends of the three cycles before): the forwarding sources.
        new_sum, *older = (Signal(sum_shape, name="new_sum" + (f"_{k}" if k else "")) for k in range(4))

        # ---- Stage 0 (cycle t): accept; read the slot's sum; latch the side inputs; compare the
        # slot with the beats in stages 1 .. 5, whose sums are written at the ends of cycles
        # t + 4 .. t (the read of cycle t misses them all).
        # The memory's registered read (a reset-less register that Yosys folds into the block RAM):
        # the beat's slot while one is offered, the user's address otherwise.
        read_addr = Mux(accept, slot[0], self.read_addr)
        stored = Signal(sum_shape)
        m.d.comb += stored.eq(Cat(*(registered_read(m, memory, read_addr, 1) for memory, *_ in slices)))
        s1_partial = Signal(signed(self._partial_bits))
        s1_mantissa = Signal(SCALE_MANTISSA_BITS)
        s1_shift = Signal(SHIFT_BITS)
        s1_first = Signal()
        s1_same = Signal(5)  # s1_same[k - 1]: the beat in stage k has this beat's slot
        m.d.sync += [
            s1_first.eq(self.first),
            s1_partial.eq(self.i.payload.partial),
            s1_mantissa.eq(self.mantissa),
            s1_shift.eq(self.shift),
            s1_same.eq(Cat(*(valid[k] & (slot[k] == slot[0]) for k in range(1, 6)))),
        ]

        # ---- Stage 1 (cycle t + 1): the multiplier's partial products, each one DSP block's
        # output straight into a register; the stored sum, straight from the block RAM into a
        # register (no logic after either's slow clock-to-output).
        partials = []  # (register, offset)
        for n, (product, offset) in enumerate(_partial_products(s1_mantissa, s1_partial)):
            register = Signal(product.shape(), name=f"s2_partial{n}")
            m.d.sync += register.eq(product)
            partials.append((register, offset))
        # Where the beat's old sum will come from (a first beat has none): the newest write to
        # its slot among those of cycles t + 3 .. t (stages 2 .. 5), taken in stage 3, else the
        # stored one; the write of cycle t + 4 (stage 1) is taken at the adder.
        h1, *ahead = (s1_same[k] & ~s1_first for k in range(5))  # ahead: stages 2 .. 5
        take = [h & ~Cat(*ahead[:k]).any() for k, h in enumerate(ahead)] + [~s1_first & ~Cat(*ahead).any()]
        s2_take = Signal(len(take))  # one-hot: new_sum, its three last values, the stored sum
        s2_shift = Signal(SHIFT_BITS)
        s2_stored = Signal(sum_shape, reset_less=True)
        s2_h1 = Signal()
        m.d.sync += [
            s2_shift.eq(s1_shift),
            s2_stored.eq(stored),
            s2_take.eq(Cat(*take)),
            s2_h1.eq(h1),
        ]

        # ---- Stage 2 (cycle t + 2): the product M * I; the stored sum, registered again.
        s3_product = Signal(product_shape)
        s3_shift = Signal(SHIFT_BITS)
        s3_stored = Signal(sum_shape, reset_less=True)
        s3_take = Signal(len(take))
        s3_h1 = Signal()
        m.d.sync += [
            s3_product.eq(sum(register << offset for register, offset in partials)),
            s3_shift.eq(s2_shift),
            s3_stored.eq(s2_stored),
            s3_take.eq(s2_take),
            s3_h1.eq(s2_h1),
        ]
        m.d.comb += self.read_data.eq(s3_stored)  # the read port: read_latency = 3

        # ---- Stage 3 (cycle t + 3): the term floor(M * I * 2**GUARD_BITS / 2**shift), one
        # arithmetic right shift; the old sum: the stored one, or a write of cycles t + 3 .. t.
        aligned = Signal(term_shape)
        m.d.comb += aligned.eq(s3_product << GUARD_BITS)
        s4_term = Signal(term_shape)
        s4_old = Signal(sum_shape)
        s4_h1 = Signal()
        m.d.sync += [
            s4_term.eq(aligned >> s3_shift),  # arithmetic: aligned is signed
            s4_old.eq(_one_hot(s3_take, (new_sum, *older, s3_stored))),
            s4_h1.eq(s3_h1),
        ]

        # ---- Stage 4 (cycle t + 4): add, to the sum written at the end of this cycle if it is
        # this slot's.
        m.d.sync += [
            new_sum.eq(Mux(s4_h1, new_sum, s4_old) + s4_term),
            *(later.eq(earlier) for earlier, later in zip([new_sum, *older], older)),
        ]

        # ---- Stage 5 (cycle t + 5): write, from the register (or a zero, while zeroing).
        for _, write, low, width in slices:
            m.d.comb += [
                write.addr.eq(Mux(zeroing, zero_slot, slot[5])),
                write.data.eq(Mux(zeroing, 0, new_sum[low:low + width])),
                write.en.eq(valid[5] | zeroing),
            ]
        return m


#: Operand bits per DSP multiplier input: ECP5's MULT18X18D multiplies 18 x 18 bits (signed
#: or unsigned), so an unsigned chunk has 17 bits and a signed top chunk up to 18.
_DSP_BITS = 18


def _chunks(value, signed_top):
    """``value`` cut into ``(piece, offset)`` with ``value = sum(piece << offset)``: unsigned
    17-bit pieces, and a top piece of at most 18 bits, signed if ``signed_top``."""
    pieces, offset, width = [], 0, len(value)
    while width - offset > (_DSP_BITS if signed_top else _DSP_BITS - 1):
        pieces.append((value[offset:offset + _DSP_BITS - 1], offset))
        offset += _DSP_BITS - 1
    top = value[offset:]
    pieces.append((top.as_signed() if signed_top else top, offset))
    return pieces


def _partial_products(mantissa, partial):
    """``(product, offset)`` with ``mantissa * partial = sum(product << offset)``, each product
    one DSP block's (both operands within :data:`_DSP_BITS`)."""
    return [(a * b, i + j) for a, i in _chunks(mantissa, False) for b, j in _chunks(partial, True)]


def _one_hot(select, values):
    """The OR of ``values[k]`` where ``select[k]`` is high (at most one is): AND-OR, no priority chain."""
    result = 0
    for k, value in enumerate(values):
        result = result | Mux(select[k], value, 0)
    return result
