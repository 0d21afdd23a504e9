"""Streaming max-pool on activation codes, bit-exact with :func:`sw.intref.maxpool_codes`.

Pooling runs after the threshold unit: quantization is monotone, so the max of
codes is the code of the max (paper Eqn 15) and only ``act_bits``-bit codes need
storing.  The ``kernel x kernel`` window is separable, so the unit is two
passes of one sliding-window max along one axis:

1. along a row: for each input row ``y`` and each window column ``ox``,
   ``h[y][ox][c] = max(x[y][ox*s .. ox*s + k - 1][c])``, keeping the last ``k - 1``
   codes of each channel (a memory of ``C`` rows);
2. down the columns: ``out[oy][ox][c] = max(h[oy*s .. oy*s + k - 1][ox][c])``,
   keeping the last ``k - 1`` values of each ``(ox, c)`` (the line buffers, a
   memory of ``OW * C`` rows).

No padding; partial windows are dropped (floor): ``OH = (H - k) // s + 1``,
``OW = (W - k) // s + 1``.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.contract.codes import MAX_CODE_BITS

from .params import check_int

__all__ = ["MaxPool"]



def _max_tree(values):
    """The largest of unsigned ``values``, as a balanced tree of compare-and-select."""
    values = list(values)
    while len(values) > 1:
        paired = [Mux(a > b, a, b) for a, b in zip(values[0::2], values[1::2])]
        values = paired + values[len(paired) * 2:]
    return values[0]


class _SlidingMax(wiring.Component):
    """Max over a sliding window of ``kernel`` positions with ``stride``, along one axis.

    The input is ``length`` positions of ``depth`` codes each (position slow,
    ``depth`` fast), repeated; the output, for each position that closes a
    window (``kernel - 1``, then every ``stride``), is the max of the window for
    each of the ``depth`` lanes, in lane order.  A memory row per lane keeps
    its last ``kernel - 1`` codes, oldest first.

    Two pipeline stages: the lane's row is read as a code is taken, and the
    window max is registered into ``o`` one cycle later, when the updated row is
    written back.  Both happen on the same (global) pipeline step, so a lane
    read right after it was written (``depth == 1``) sees the new row through
    the read port's transparency.
    """

    def __init__(self, act_bits, kernel, stride, length, depth):
        self._act_bits, self._kernel, self._stride = act_bits, kernel, stride
        self._length, self._depth = length, depth
        super().__init__({
            "i": In(stream.Signature(unsigned(act_bits))),
            "o": Out(stream.Signature(unsigned(act_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        kernel, stride = self._kernel, self._stride

        advance = Signal()  # the whole unit steps when its output register is free
        take = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            take.eq(self.i.valid & advance),
        ]

        # Where the incoming code sits: lane, position, and positions left
        # until the next window closes (a countdown instead of a modulo).
        lane = Signal(range(self._depth))
        position = Signal(range(self._length))
        to_close = Signal(range(max(kernel, stride)), init=kernel - 1)
        with m.If(take):
            with m.If(lane == self._depth - 1):
                m.d.sync += lane.eq(0)
                with m.If(position == self._length - 1):
                    m.d.sync += [position.eq(0), to_close.eq(kernel - 1)]
                with m.Else():
                    m.d.sync += [position.eq(position + 1),
                                 to_close.eq(Mux(to_close == 0, stride - 1, to_close - 1))]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)

        # Stage 1: the code, whether it closes a window, and its lane's history.
        valid_1 = Signal()
        code_1 = Signal(self._act_bits)
        closes_1 = Signal()
        lane_1 = Signal.like(lane)
        with m.If(advance):
            m.d.sync += [valid_1.eq(self.i.valid), code_1.eq(self.i.payload),
                         closes_1.eq(to_close == 0), lane_1.eq(lane)]

        if kernel == 1:
            window = [code_1]
        else:
            # Rows older than the window are never read: a window closes only
            # after `kernel - 1` fresh positions, so no clearing is needed.
            history = Memory(shape=data.ArrayLayout(self._act_bits, kernel - 1), depth=self._depth, init=[])
            m.submodules.history = history
            write = history.write_port()
            read = history.read_port(transparent_for=(write,))
            m.d.comb += [read.en.eq(advance), read.addr.eq(lane)]
            window = [read.data[index] for index in range(kernel - 1)] + [code_1]
            m.d.comb += [write.en.eq(advance & valid_1), write.addr.eq(lane_1)]
            for index in range(kernel - 1):
                m.d.comb += write.data[index].eq(window[index + 1])

        # Stage 2 (the output register): the window max, for codes that close one.
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid_1 & closes_1), self.o.payload.eq(_max_tree(window))]
        return m


class MaxPool(wiring.Component):
    """Streaming ``kernel x kernel`` max-pool with ``stride`` on ``act_bits``-bit codes.

    Parameters
    ----------
    act_bits : int
        Code bitwidth, 1..8.
    channels : int
        Channels ``C`` >= 1.
    height, width : int
        Input feature map ``H x W``, each at least ``kernel``.
    kernel : int
        Window size ``k`` >= 1.
    stride : int or None
        Step ``s`` >= 1 between windows; ``None`` means ``kernel`` (as in
        :func:`sw.intref.maxpool_codes`).  ``s > k`` skips inputs.

    Ports
    -----
    i : ``In(stream.Signature(unsigned(act_bits)))``
        One code per transfer in raster order, channels fastest: for ``y`` in
        ``0..H-1``, for ``x`` in ``0..W-1``, for ``c`` in ``0..C-1``, code
        ``x[c][y][x]``: a conv layer's output stream after the threshold unit.
        Frames follow each other with no gap or marker.
    o : ``Out(stream.Signature(unsigned(act_bits)))``
        The pooled codes in the same order over the ``OH x OW`` output map:
        for ``oy``, for ``ox``, for ``c``, ``max`` of
        ``x[c][oy*s + dy][ox*s + dx]`` over ``dy, dx`` in ``0..k-1``.

    Latency and throughput: one input code per cycle; a pooled code is offered
    4 cycles (:attr:`latency`) after the code that completes its window was
    taken.  Each pass stalls as a whole while its output is valid and not
    ready.  Storage: ``C * (k - 1) * act_bits`` bits for the row pass and
    ``OW * C * (k - 1) * act_bits`` bits of line buffer, in :class:`Memory`.
    Reset (mid-frame too) restarts at the top-left pixel of a frame; memory
    contents are stale but never read before being rewritten.
    """

    def __init__(self, act_bits, channels, height, width, kernel, stride=None):
        self._act_bits = check_int("act_bits", act_bits, 1, MAX_CODE_BITS)
        self._channels = check_int("channels", channels, 1)
        self._kernel = check_int("kernel", kernel, 1)
        self._stride = kernel if stride is None else check_int("stride", stride, 1)
        self._height = check_int("height", height, 1)
        self._width = check_int("width", width, 1)
        if height < kernel or width < kernel:
            raise ValueError(f"the feature map (height x width = {height} x {width}) must be at "
                             f"least the {kernel} x {kernel} window")
        super().__init__({
            "i": In(stream.Signature(unsigned(act_bits))),
            "o": Out(stream.Signature(unsigned(act_bits))),
        })

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def channels(self):
        return self._channels

    @property
    def height(self):
        return self._height

    @property
    def width(self):
        return self._width

    @property
    def kernel(self):
        return self._kernel

    @property
    def stride(self):
        return self._stride

    @property
    def out_height(self):
        return (self._height - self._kernel) // self._stride + 1

    @property
    def out_width(self):
        return (self._width - self._kernel) // self._stride + 1

    @property
    def latency(self):
        """Cycles from taking the code that completes a window to offering its max."""
        return 4

    def elaborate(self, platform):
        m = Module()
        # Along the row: lanes are the channels, positions the columns.
        m.submodules.rows = rows = _SlidingMax(self._act_bits, self._kernel, self._stride,
                                               length=self._width, depth=self._channels)
        # Down the columns: lanes are (ox, c) of a row of window maxes, positions the rows.
        m.submodules.columns = columns = _SlidingMax(self._act_bits, self._kernel, self._stride,
                                                     length=self._height,
                                                     depth=self.out_width * self._channels)
        wiring.connect(m, wiring.flipped(self.i), rows.i)
        wiring.connect(m, rows.o, columns.i)
        wiring.connect(m, columns.o, wiring.flipped(self.o))
        return m
