"""Threshold activation unit: scale, BatchNorm, clip and quantize as integer comparisons.

:func:`sw.numeric.fold_thresholds` turns a layer's accumulator scale and the
per-channel BN affine ``(alpha, beta)`` into ``n_a = 2**act_bits - 1`` integer
thresholds ``T[c][1..n_a]`` and a direction per channel.  This unit applies
them, exactly :func:`sw.numeric.apply_thresholds`::

    code = #{i : acc >= T[c][i]}     direction +1 (BN scale alpha >= 0)
    code = #{i : acc <= T[c][i]}     direction -1 (alpha < 0)

A zero BN scale needs nothing special: sw encodes it as thresholds at the
ends of the range (``acc_min`` or ``acc_max + 1``), which give a constant code.

Two implementations share the ports (``variant=``):

``"parallel"``
    A bank of ``n_a`` comparators and a popcount of their results
    (:func:`hw.popcount.popcount_tree`).  Correct for *any* thresholds,
    ordered or not.  Threshold ``i`` of every channel lives in memory ``i``.
``"search"``
    A pipelined binary search: ``act_bits`` stages of one comparator each.  Stage
    ``j`` decides code bit ``act_bits - 1 - j`` by comparing against one threshold
    of level ``j`` of the perfect binary tree over ``T[1..n_a]``, held in its own
    memory of ``channels * 2**j`` one-threshold rows, so each stage reads a
    single threshold (block-RAM friendly): ``act_bits`` comparators instead of
    ``2**act_bits - 1``, paid for by a ``2**j``-way mux per level on the load
    path.  It needs *monotone* thresholds (ascending for direction +1,
    descending for -1), which is what ``fold_thresholds`` makes: the folded
    code is monotone in ``acc``, so the passed thresholds are always
    ``T[1..code]``.  (yosys ``synth_ice40 -noabc``, 16 channels, 12-bit
    accumulators: 385 vs 259 LUTs at ``act_bits = 3``, 3072 vs 1101 at 6.)

Both compare against a key instead of the raw threshold: for direction -1 the
unit stores ``~T`` and compares ``~acc >= ~T``, which is ``acc <= T`` (bitwise
NOT is ``-x - 1`` in two's complement and never overflows), so every
comparator is a single signed ``>=``.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sw.contract.codes import MAX_CODE_BITS, levels

from .params import check_choice, check_int
from .popcount import popcount_tree

__all__ = ["ThresholdUnit", "VARIANTS", "comparison_key"]

#: The implementations :class:`ThresholdUnit` offers.
VARIANTS = ("parallel", "search")


def _check_acc_range(acc_range):
    if isinstance(acc_range, range):
        if acc_range.step != 1 or len(acc_range) == 0:
            raise ValueError(f"acc_range must be a non-empty range with step 1 "
                             f"(range(acc_min, acc_max + 1)), got {acc_range!r}")
        return acc_range
    if isinstance(acc_range, int) and not isinstance(acc_range, bool):
        check_int("acc_range", acc_range, 1, note="an accumulator width")
        return range(-(1 << (acc_range - 1)), 1 << (acc_range - 1))
    raise ValueError(f"acc_range must be range(acc_min, acc_max + 1) or a signed accumulator "
                     f"width (int >= 1), got {acc_range!r}")


def comparison_key(value, direction):
    """The comparison key: ``~value`` for direction -1 (``direction`` bit 1), so
    ``acc <= T`` becomes ``key(acc) >= key(T)`` (shared with :mod:`hw.serial_threshold`)."""
    return Mux(direction, ~value, value)


class ThresholdUnit(wiring.Component):
    """Per-channel threshold activation, bit-exact with :func:`sw.numeric.apply_thresholds`.

    Parameters
    ----------
    act_bits : int
        Activation bitwidth ``A``, 1..8; ``n_a = 2**A - 1`` thresholds per channel.
    channels : int
        Number of channels ``C`` (>= 1), each with its own thresholds and direction.
    acc_range : range or int
        Accumulator values: ``range(acc_min, acc_max + 1)``, the range passed to
        ``fold_thresholds``; or an int ``w`` meaning a signed ``w``-bit
        accumulator.  The accumulator port takes ``Shape.cast(acc_range)``;
        thresholds are signed, just wide enough for ``acc_min - 1 .. acc_max + 1``
        (the "never passed" values ``fold_thresholds`` uses).
    variant : ``"parallel"`` or ``"search"``
        Comparator bank or pipelined binary search (see the module docstring).

    Ports
    -----
    i : ``In(stream.Signature(StructLayout({"channel": range(C), "acc": acc_shape})))``
        Accumulators, each tagged with its channel, in any order; a conv
        layer's output stream (raster order, channels fastest) fits as is.
    o : ``Out(stream.Signature(unsigned(A)))``
        The codes, one per accumulator, in input order (the channel is not
        repeated: the consumer knows the order it produced).
    load : ``In(stream.Signature(StructLayout({"channel": range(C), "direction": 1,
    "thresholds": ArrayLayout(threshold_shape, n_a)})))``
        Writes one channel's thresholds ``T[1..n_a]`` (``thresholds[i - 1]``) and
        direction (the link's ``DIRECTION_NEGATIVE`` bit: ``direction = 1`` for
        direction -1, ``acc <= T``; 0 for +1, ``acc >= T``).  The parallel variant takes
        one record per cycle (``load.ready`` is always high); the search variant
        spreads a record over ``2**(A - 1)`` cycles, one threshold per tree level
        and cycle, raising ``load.ready`` on the last (:attr:`load_cycles`).  Load
        between layers: a channel loaded while its accumulators are in flight may
        see old, new or (search) mixed thresholds.  Thresholds are memories, so
        reset does not clear them; after power-up they read as all zero.

    Latency and throughput: one accumulator per cycle; a code leaves
    :attr:`latency` cycles after its accumulator was taken (3 for the parallel
    variant: memory read, comparators, popcount; ``A + 1`` for the search one:
    memory read, then ``A`` comparator stages).  The pipeline stalls as a whole
    while ``o`` is valid and not ready; ``i.ready`` is ``~o.valid | o.ready``.
    """

    def __init__(self, act_bits, channels, acc_range, *, variant="parallel"):
        self._act_bits = check_int("act_bits", act_bits, 1, MAX_CODE_BITS)
        self._channels = check_int("channels", channels, 1)
        self._acc_range = _check_acc_range(acc_range)
        self._variant = check_choice("variant", variant, VARIANTS)

        acc_min, acc_stop = self._acc_range.start, self._acc_range.stop
        # acc_min - 1 and acc_max + 1 = acc_stop are the "never passed" thresholds.
        self._threshold_shape = signed(max(bits_for(acc_min - 1, True), bits_for(acc_stop, True)))

        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(unsigned(self._act_bits))),
            "load": In(stream.Signature(self.load_layout)),
        })

    # ------------------------------------------------------------------ parameters

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def channels(self):
        return self._channels

    @property
    def acc_range(self):
        """Accumulator values the thresholds are exact for, as a ``range``."""
        return self._acc_range

    @property
    def variant(self):
        return self._variant

    @property
    def levels(self):
        """``n_a = 2**act_bits - 1``, the number of thresholds per channel."""
        return levels(self._act_bits)

    @property
    def acc_shape(self):
        return Shape.cast(self._acc_range)

    @property
    def threshold_shape(self):
        return self._threshold_shape

    @property
    def input_layout(self):
        return data.StructLayout({"channel": range(self._channels), "acc": self.acc_shape})

    @property
    def load_layout(self):
        return data.StructLayout({
            "channel": range(self._channels),
            "direction": 1,
            "thresholds": data.ArrayLayout(self._threshold_shape, self.levels),
        })

    @property
    def latency(self):
        """Cycles from taking an accumulator to offering its code, with no stalls."""
        return 3 if self._variant == "parallel" else self._act_bits + 1

    @property
    def load_cycles(self):
        """Cycles one ``load`` record occupies the port."""
        return 1 if self._variant == "parallel" else 1 << (self._act_bits - 1)

    # ------------------------------------------------------------------ gateware

    def elaborate(self, platform):
        m = Module()
        load = self.load.payload

        # One global stall: every stage moves when the output register is free.
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        # A load record takes `load_cycles` cycles; its payload is held stable
        # until `load.ready`, so the unit reads it in place instead of copying it.
        step = Signal(range(self.load_cycles))
        last = Signal()
        m.d.comb += [last.eq(step == self.load_cycles - 1), self.load.ready.eq(last)]
        with m.If(self.load.valid):
            m.d.sync += step.eq(Mux(last, 0, step + 1))

        m.submodules.direction = direction = Memory(shape=1, depth=self._channels, init=[])
        write = direction.write_port()
        m.d.comb += [write.en.eq(self.load.valid & last), write.addr.eq(load.channel),
                     write.data.eq(load.direction)]

        # Stage 1: the channel's direction (and the first thresholds) arrive from
        # memory while the accumulator waits in a register; then it becomes a key.
        read = direction.read_port()
        m.d.comb += [read.en.eq(advance), read.addr.eq(self.i.payload.channel)]
        valid_1 = Signal()
        acc_1 = Signal(self._threshold_shape)
        with m.If(advance):
            m.d.sync += [valid_1.eq(self.i.valid), acc_1.eq(self.i.payload.acc)]
        key_1 = Signal(self._threshold_shape)
        m.d.comb += key_1.eq(comparison_key(acc_1, read.data))

        if self._variant == "parallel":
            self._elaborate_parallel(m, advance, valid_1, key_1)
        else:
            self._elaborate_search(m, advance, step, valid_1, key_1)
        return m

    def _elaborate_parallel(self, m, advance, valid_1, key_1):
        load = self.load.payload
        # One narrow memory per comparator (column i holds T[i + 1] of every
        # channel), all read at the same address: one wide row, in effect.
        passed = Signal(self.levels)
        for index in range(self.levels):
            memory = Memory(shape=self._threshold_shape, depth=self._channels, init=[])
            m.submodules[f"threshold{index + 1}"] = memory
            write = memory.write_port()
            m.d.comb += [
                write.en.eq(self.load.valid),
                write.addr.eq(load.channel),
                write.data.eq(comparison_key(load.thresholds[index], load.direction)),
            ]
            read = memory.read_port()
            m.d.comb += [
                read.en.eq(advance),
                read.addr.eq(self.i.payload.channel),
                passed[index].eq(key_1 >= read.data),
            ]

        # Stage 2: comparator results; stage 3 (the output register): their count.
        valid_2 = Signal()
        passed_2 = Signal.like(passed)
        count = popcount_tree(m, passed_2, name="count")
        with m.If(advance):
            m.d.sync += [
                valid_2.eq(valid_1),
                passed_2.eq(passed),
                self.o.valid.eq(valid_2),
                self.o.payload.eq(count),
            ]

    def _elaborate_search(self, m, advance, step, valid_1, key_1):
        act_bits = self._act_bits
        load = self.load.payload

        # Level j of the tree holds, for each prefix p of the code's top j bits,
        # the threshold that decides the next bit: T[(2p + 1) * 2**(act_bits - 1 - j)],
        # at address (p, channel).  Load cycle `step` writes prefix `step` of every
        # level that has one, so a record takes 2**(act_bits - 1) cycles.
        levels = []
        for j in range(act_bits):
            memory = Memory(shape=self._threshold_shape, depth=self._channels << j, init=[])
            m.submodules[f"level{j}"] = memory
            levels.append(memory)
            choices = [load.thresholds[((2 * p + 1) << (act_bits - 1 - j)) - 1] for p in range(1 << j)]
            threshold = choices[0] if j == 0 else Array(choices)[step[:j]]
            write = memory.write_port()
            m.d.comb += [
                write.en.eq(self.load.valid & (step < (1 << j))),
                write.addr.eq(Cat(step[:j], load.channel)),
                write.data.eq(comparison_key(threshold, load.direction)),
            ]

        # Stage j reads level j at (prefix, channel), so the threshold meets its
        # accumulator in stage j + 1, which compares and appends the decided bit.
        valid, key, prefix, channel = valid_1, key_1, Cat(), self.i.payload.channel
        for j, memory in enumerate(levels):
            stage = j + 1
            read = memory.read_port()
            m.d.comb += [read.en.eq(advance), read.addr.eq(Cat(prefix, channel))]
            if j > 0:  # stage 1's registers are shared with the direction lookup
                stage_valid = Signal(name=f"valid_{stage}")
                stage_key = Signal(self._threshold_shape, name=f"key_{stage}")
                stage_prefix = Signal(j, name=f"prefix_{stage}")
                with m.If(advance):
                    m.d.sync += [stage_valid.eq(valid), stage_key.eq(key), stage_prefix.eq(prefix)]
                valid, key, prefix = stage_valid, stage_key, stage_prefix
            if j < act_bits - 1:  # the last stage addresses no further level
                stage_channel = Signal(range(self._channels), name=f"channel_{stage}")
                with m.If(advance):
                    m.d.sync += stage_channel.eq(channel)
                channel = stage_channel
            prefix = Cat(key >= read.data, prefix)

        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid), self.o.payload.eq(prefix)]
