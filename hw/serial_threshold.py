"""Serial threshold activation: one comparator, the code width chosen at run time.

The serial variant of :mod:`hw.threshold`, the training core's activation stage.
Thresholds ``T[c][1..n_a]`` (``n_a = 2**bits - 1``) and a direction per channel,
as :func:`sw.numeric.fold_thresholds` makes them and the link carries them
(``LOAD_THRESHOLDS``); each accumulator's code is the count of thresholds it
passes, exactly :func:`sw.numeric.apply_thresholds`::

    code = #{i : acc >= T[c][i]}     direction +1
    code = #{i : acc <= T[c][i]}     direction -1

Where :class:`hw.threshold.ThresholdUnit` fixes ``act_bits`` at elaboration and
spends ``2**A - 1`` comparators (``parallel``) or ``A`` comparators and a tree of
memories (``search``) on one value a cycle, this unit compares one threshold a
cycle against a single memory of every channel's thresholds, so ``bits`` can
change between layers (``1 .. max_act_bits``) and a threshold is written as it
arrives: one comparator, ``n_a`` cycles a value.  Counting passes, it is exact
for any thresholds, ordered or not.

As in :mod:`hw.threshold`, the memory holds each threshold's comparison key,
``~T`` for direction -1, and the accumulator is compared as ``~acc``, so one
signed ``>=`` serves both directions (:func:`hw.threshold.comparison_key`).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS, levels

from .group_max import code_layout
from .params import check_int
from .block_ram import BANK_ATTRS, registered_read
from .threshold import comparison_key

__all__ = ["SerialThresholdUnit"]


class SerialThresholdUnit(wiring.Component):
    """Per-channel threshold activation, one threshold compared a cycle.

    Parameters
    ----------
    max_act_bits : int
        Widest code, ``1 .. 8``: up to ``2**max_act_bits - 1`` thresholds a channel.
    channels : int
        Number of channels ``C`` (>= 1).
    acc_width : int
        Width of the signed accumulators and of the thresholds (the link's int32: 32).
    read_stages : int
        0: the comparator takes the threshold memory's read data as it is (the
        iCE40's block RAM is quick to read); 1: a register first, and one cycle
        more :attr:`latency` (the ECP5's DP16KD, whose output register Yosys does
        not infer, takes 5.8 ns to read: with the 32-bit compare, 12.6 ns).

    Ports
    -----
    bits : ``In(range(max_act_bits + 1))``
        The code width ``A``, ``1 .. max_act_bits``: ``n_a = 2**A - 1`` thresholds a
        channel.  Hold it while values are in flight.
    i : ``In(stream.Signature(StructLayout({"channel": range(C), "acc": signed(acc_width), "last": 1})))``
        Accumulators, each with its channel, in any order; ``last`` travels with it.
    o : ``Out(stream.Signature(hw.group_max.code_layout(max_act_bits)))``
        The codes, in input order, each with its accumulator's ``last``.
    load : ``In(stream.Signature(StructLayout({"channel": range(C), "index": max_act_bits,
    "direction": 1, "threshold": signed(acc_width)})))``
        Writes threshold ``T[channel][index + 1]`` and the channel's direction (1:
        direction -1, ``acc <= T``; every threshold of a channel carries the same
        direction).  ``load.ready`` is always high: one threshold a cycle.  Load
        between layers, never while values of the loaded channels are in flight.
        Thresholds are memories: reset does not clear them.

    Latency and throughput
    ----------------------
    A value is taken every ``n_a`` cycles (``i.ready`` rises on the cycle its
    predecessor's last threshold is read) and its code is offered ``n_a +``
    :attr:`latency` cycles after it was taken: its ``n_a`` threshold reads, then
    the accumulator's key registered beside the threshold's read data (with
    ``read_stages = 1`` both registered once more), their compare registered,
    the count.  The whole pipeline stalls while ``o`` is valid and not ready
    (``i.ready`` is low then).

    Resources: one ``C * 2**max_act_bits`` x ``acc_width`` memory (the keys), one
    ``C`` x 1 memory (the directions), both in block RAM, one ``acc_width``-bit
    comparator.
    """

    def __init__(self, max_act_bits: int, channels: int, acc_width: int = 32, *, read_stages: int = 0):
        self._max_act_bits = check_int("max_act_bits", max_act_bits, 1, MAX_CODE_BITS)
        self._channels = check_int("channels", channels, 1)
        self._acc_width = check_int("acc_width", acc_width, 2, note="a signed accumulator's bits")
        self._read_stages = check_int("read_stages", read_stages, 0, 1)
        super().__init__({
            "bits": In(range(max_act_bits + 1)),
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(code_layout(max_act_bits))),
            "load": In(stream.Signature(self.load_layout)),
        })

    max_act_bits = property(lambda self: self._max_act_bits)
    channels = property(lambda self: self._channels)
    acc_width = property(lambda self: self._acc_width)
    read_stages = property(lambda self: self._read_stages)

    @property
    def latency(self) -> int:
        """Cycles from a value's last threshold read to its code on ``o``: ``3 + read_stages``."""
        return 3 + self._read_stages

    @property
    def input_layout(self) -> data.StructLayout:
        return data.StructLayout({"channel": range(self._channels), "acc": signed(self._acc_width), "last": 1})

    @property
    def load_layout(self) -> data.StructLayout:
        return data.StructLayout({"channel": range(self._channels), "index": self._max_act_bits,
                                  "direction": 1, "threshold": signed(self._acc_width)})

    @property
    def memories(self) -> dict:
        """Each memory as ``(count, depth, width)``: the ``thresholds`` (word
        ``channel * 2**max_act_bits + i`` holds ``T[channel][i + 1]``'s key) and
        the ``directions``."""
        return {"thresholds": (1, self._channels << self._max_act_bits, self._acc_width),
                "directions": (1, self._channels, 1)}

    def cycles(self, values: int, bits: int) -> int:
        """Cycles from taking the first of ``values`` back-to-back accumulators to
        offering the last one's code, ``o`` always ready."""
        return values * levels(bits) + self.latency

    def elaborate(self, platform):
        m = Module()
        index_bits = self._max_act_bits

        # One global stall: every stage moves while the output register is free.
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Both in block RAM, the directions too (Yosys would make flip-flops of a few
        # dozen bits: on the iCE40, ~80 logic cells for 32 channels); never written and
        # read in one cycle (loads come between layers).
        m.submodules.thresholds = thresholds = Memory(shape=signed(self._acc_width),
                                                      depth=self._channels << index_bits, init=[],
                                                      attrs=BANK_ATTRS)
        m.submodules.directions = directions = Memory(shape=1, depth=self._channels, init=[], attrs=BANK_ATTRS)
        load = self.load.payload
        t_write, d_write = thresholds.write_port(), directions.write_port()
        m.d.comb += [
            self.load.ready.eq(1),
            t_write.en.eq(self.load.valid),
            t_write.addr.eq(Cat(load.index, load.channel)),
            t_write.data.eq(comparison_key(load.threshold, load.direction)),
            d_write.en.eq(self.load.valid),
            d_write.addr.eq(load.channel),
            d_write.data.eq(load.direction),
        ]

        # The index of a value's last threshold, n_a - 1, and the one before it
        # (registered: `bits` is held while values flow).
        last_index = Signal(index_bits)
        before_last = Signal(index_bits)
        m.d.sync += [last_index.eq((1 << self.bits) - 2), before_last.eq((1 << self.bits) - 3)]

        # Stage 0: the value being compared and the threshold it reads now; its
        # direction, read as it was taken, is held by the read port meanwhile.
        valid_0 = Signal()
        value_0 = Signal(self.input_layout)
        index_0 = Signal(index_bits)
        final_0 = Signal()  # index_0 is the value's last threshold
        take = Signal()
        m.d.comb += [take.eq(advance & (~valid_0 | final_0)), self.i.ready.eq(take)]
        with m.If(take):
            m.d.sync += [valid_0.eq(self.i.valid), value_0.eq(self.i.payload), index_0.eq(0),
                         final_0.eq(last_index == 0)]
        with m.Elif(advance):
            m.d.sync += [index_0.eq(index_0 + 1), final_0.eq(index_0 == before_last)]
        t_data = registered_read(m, thresholds, Cat(index_0, value_0.channel), advance)
        d_data = registered_read(m, directions, self.i.payload.channel, take)

        # Stage 1: the threshold's key arrives from memory beside the accumulator's
        # key (registered); stage 2: their compare (registered); then the count,
        # into the output register.
        def stage(n, valid, first, final, last):
            regs = [Signal(name=f"{name}_{n}") for name in ("valid", "first", "final", "last")]
            with m.If(advance):
                m.d.sync += [reg.eq(value) for reg, value in zip(regs, (valid, first, final, last))]
            return regs

        valid_1, first_1, final_1, last_1 = stage(1, valid_0, index_0 == 0, final_0, value_0.last)
        key_1 = Signal(signed(self._acc_width))
        with m.If(advance):
            m.d.sync += key_1.eq(comparison_key(value_0.acc, d_data))
        key, threshold, tags = key_1, t_data, (valid_1, first_1, final_1, last_1)
        if self._read_stages:  # both registered: the read data straight into flip-flops
            tags = stage(2, *tags)
            key, threshold = Signal.like(key_1, name="key_2"), Signal.like(key_1, name="threshold_2")
            with m.If(advance):
                m.d.sync += [key.eq(key_1), threshold.eq(t_data)]
        compare = 2 + self._read_stages
        valid_c, first_c, final_c, last_c = stage(compare, *tags)
        passed = Signal(name=f"passed_{compare}")
        with m.If(advance):
            m.d.sync += passed.eq(key >= threshold)

        count = Signal(unsigned(self._max_act_bits))  # thresholds passed so far
        total = Signal(unsigned(self._max_act_bits))
        m.d.comb += total.eq(Mux(first_c, 0, count) + passed)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid_c & final_c), self.o.payload.code.eq(total),
                         self.o.payload.last.eq(last_c)]
            with m.If(valid_c):
                m.d.sync += count.eq(total)
        return m
