"""Window generator: a feature map's im2col vectors, made on chip (as FINN's ConvolutionInputGenerator).

The unit holds one feature map of ``channels x height x width`` codes in a
memory (channel-major, then row-major: flat index ``(c * height + iy) *
width + ix``) and streams the codes of the vectors of a window
(:mod:`sw.contract.window`): code ``col`` of vector ``vector`` is::

    idx, inside = window_index(shape, window, vector, col)
    code        = map[idx] if inside else 0

vector 0's codes ``col = 0 .. cols - 1`` first, then vector 1's, and so on,
for as long as the consumer takes them.  Every output position ``(oy, ox)``
and tap ``(c, ky, kx)`` reads input row ``iy = oy * stride + ky - pad``, column
``ix = ox * stride + kx - pad`` of channel ``c``.  Two counters follow
:func:`~sw.contract.window.window_index`'s nesting: a *position* counter
``(oy, ox)`` (``ox`` wraps at ``out_width``) and a *tap* counter ``(c, ky, kx)``
(``kx``, then ``ky``, wrap at ``kernel``).  :data:`~sw.contract.window.PATCH`:
the position is the vector (outer: it steps once per vector, from ``(y,
x)``), the tap the code (inner: from ``(channel, 0, 0)`` again at each
vector's col 0).  :data:`~sw.contract.window.SHIFT`: the tap is the vector
(outer, from ``(channel, y, x)``), the position the code (inner, from ``(0,
0)``).  A col counter wraps after ``cols`` codes.  A pooled PATCH window (``pool = p >
1``) steps its positions pooling window by pooling window: ``(dy, dx)``, the
position's place in its window, count to ``p - 1`` (``dx`` fastest), then
the position moves to the next window of the band (``ox + 1``, ``oy - (p -
1)``) or, after the band's last, to the next band's first (``ox = 0``, ``oy
+ 1``): the steps are ``+-stride``, ``-(p - 1) * stride`` and their ``*
width`` forms, registered products like the others.

No runtime product is made per code: beside the counters run ``oy * stride``,
``ox * stride`` (adding ``stride``), and, modulo ``2**addr_bits`` (a code's
address is only used when it lies inside the map, where it is below
``depth``), ``oy * stride * width``, ``ky * width`` and ``c * height *
width`` (adding ``stride * width``, ``width``, ``height * width``).  Their
start values (``channel * height * width``, ``y * stride * width``, ...) are
registered products, made in the two cycles after ``start`` from the held
inputs.

Pipeline (``t`` the cycle a code leaves the counters; all stages advance
together, when ``o`` can take: ``~o.valid | o.ready``)::

    t      counters (c, ky, kx, oy, ox, col) and their running sums
    t + 1  register iy + pad, ix + pad (exact), c < channels, and the address's row part
    t + 2  register inside (two range compares) and the address
    t + 3  the memory's registered read
    t + 4  register o.payload: the code read, or 0 outside the map

Ports
-----
write : ``In(stream.Signature(StructLayout({"addr": range(depth), "code": max_bits}), always_ready=True))``
    Loads the map: ``code`` is written at ``addr`` in each cycle ``valid``
    is high (``ready`` is the constant 1).  **Never while generating**: the
    core writes a map (LOAD_FMAP) only between windowed commands, so the
    memory needs no read-during-write behaviour (``no_rw_check``).
shape : ``In(StructLayout({"channels": 16, "height": 8, "width": 8}))``
    The map's shape (LOAD_FMAP's fields), ``channels * height * width <= depth``.
window : ``In(header_layout(WINDOW_FIELDS))``
    The window (:class:`sw.contract.window.Window`), valid by
    :meth:`~sw.contract.window.Window.problems` (the core checks it first).
cols : ``In(range(max_cols + 1))``
    Codes per vector, ``>= 1``.
start : ``In(1)``
    A one-cycle pulse: drop everything in flight and start again at vector
    0, col 0.  ``shape``, ``window`` and ``cols`` must be stable from the
    ``start`` cycle until the last code wanted is taken.  In the ``start``
    cycle itself ``o`` may still show a code of the previous generation (the
    core does not take codes then); from the next cycle on ``o`` carries only
    codes of this one.
o : ``Out(stream.Signature(max_bits))``
    The codes, in order, without end (the consumer stops taking).
    ``o.valid`` and ``o.payload`` are flip-flops; ``o.ready`` drives only
    register enables.

Latency and throughput
----------------------
The first code is valid :attr:`latency` ``= 7`` cycles after the ``start``
cycle (``start`` in cycle ``t``, ``o.valid`` high from cycle ``t + 7``),
then one code per cycle while ``o.ready`` is high, in any pattern of
``o.ready`` (no code lost or repeated).  Counters are sized for
:data:`MAX_VECTORS` vectors of ``max_cols`` codes from any valid window
(the ``y`` of a PATCH window up to its field's 65,535, channels past the
map's): every code of those is exactly ``window_index``'s.

Resources
---------
The map memory, ``depth`` x ``max_bits`` in block RAM (``ram_style =
"block"``, written whole words); three registered products of the held
inputs in DSP blocks (``height * width``, ``channel * height * width`` and
``y * stride * width``, both modulo the address width), the products by the
narrow stride, pad and SHIFT's ``y`` in logic; about a dozen counters and
adders of 16 to 20 bits.  Measured (Yosys ``synth_ecp5``, nextpnr out of
context, LFE5U-85F, speed 6): depth 1,024, ``max_bits`` 6, ``max_cols``
256: 1 DP16KD, 3 MULT18X18D, 535 LUT4 + 200 CCU2C, 368 TRELLIS_FF, 140 MHz;
16,384 x 8 bits, ``max_cols`` 1,024: 8 DP16KD, 3 MULT18X18D, 134 MHz.  The
critical paths are the primitives' own: a MULT18X18D's combinational
product (3.9 ns) into its register, and the DP16KD's clock-to-output (5.8
ns) through the zeroing LUT into ``o.payload`` (144 MHz).
"""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.contract.link import ACCUMULATE_FIELDS, LOAD_FMAP_FIELDS, RUN_FIELDS, WINDOW_FIELDS
from sw.contract.window import MAX_KERNEL, MAX_POOL, MAX_STRIDE, PATCH

from .layouts import header_layout
from .params import check_int
from .block_ram import BANK_ATTRS, registered_read

__all__ = ["WindowGenerator", "MAX_VECTORS", "SHAPE_LAYOUT", "WINDOW_LAYOUT"]

#: The most vectors a windowed command asks for (its ``count`` field's range): the counters are
#: sized so that every code of that many vectors is exact.
MAX_VECTORS = max(2 ** (8 * f.field("count").size) - 1 for f in (RUN_FIELDS, ACCUMULATE_FIELDS))
#: ``shape``: LOAD_FMAP's fields of the same names.
SHAPE_LAYOUT = data.StructLayout({name: 8 * LOAD_FMAP_FIELDS.field(name).size
                                  for name in ("channels", "height", "width")})
#: ``window``: the window header's fields.
WINDOW_LAYOUT = header_layout(WINDOW_FIELDS)


def _times_small(value, factor):
    """``value * factor`` for a narrow ``factor`` (stride, pad, a SHIFT's y: a few bits) as a sum of
    shifted copies, in logic: Yosys would give each such product a whole DSP block."""
    return sum(Mux(bit, value << i, 0) for i, bit in enumerate(factor))


def _top(name: str) -> int:
    """The largest value of window field ``name``."""
    return 2 ** Shape.cast(WINDOW_LAYOUT[name].shape).width - 1


class WindowGenerator(wiring.Component):
    """A feature map in block RAM and the codes of a window's vectors (module docstring).

    Parameters
    ----------
    depth : int
        Codes held, ``1 .. 65535`` (a map's ``channels * height * width`` at most).
    max_bits : int
        Bits of a code, ``>= 1``.
    max_cols : int
        Most codes per vector, ``>= 1``.
    """

    #: Cycles from the ``start`` cycle to the first cycle with ``o.valid`` high.
    latency = 7

    def __init__(self, *, depth: int, max_bits: int, max_cols: int):
        self._depth = check_int("depth", depth, 1, 2 ** 16 - 1, note="feature-map codes")
        self._max_bits = check_int("max_bits", max_bits, 1)
        self._max_cols = check_int("max_cols", max_cols, 1)
        super().__init__({
            "write": In(stream.Signature(data.StructLayout({"addr": range(depth), "code": max_bits}),
                                         always_ready=True)),
            "shape": In(SHAPE_LAYOUT),
            "window": In(WINDOW_LAYOUT),
            "cols": In(range(max_cols + 1)),
            "start": In(1),
            "o": Out(stream.Signature(max_bits)),
        })

    depth = property(lambda self: self._depth)
    max_bits = property(lambda self: self._max_bits)
    max_cols = property(lambda self: self._max_cols)

    def elaborate(self, platform):
        m = Module()
        w, sh = self.window, self.shape
        a_bits = Shape.cast(range(self._depth)).width  # addresses, and sums kept modulo 2**a_bits
        k_bits = Shape.cast(range(MAX_KERNEL)).width   # ky, kx, pad, and SHIFT's y, x (< kernel)
        width = sh.width

        # ------------------------------------------------ bounds of the exact counters
        # PATCH: oy = y + (x + vector) // out_width <= y + vector (x < out_width);
        # SHIFT: oy = col // out_width < max_cols.  ox < out_width.
        oy_top = max(_top("y") + MAX_VECTORS, self._max_cols - 1)
        ox_top = _top("out_width") - 1
        # PATCH: c = channel + col // kernel**2; SHIFT: c = channel + (y * k + x + vector) // k**2
        # <= channel + vector (y * k + x < k**2).
        c_top = _top("channel") + max(self._max_cols - 1, MAX_VECTORS)
        oys_top = oy_top * MAX_STRIDE
        oxs_top = ox_top * MAX_STRIDE

        def mod(value):
            return value[:a_bits]

        # ------------------------------------------------ setup: products of the held inputs
        # Made every cycle; valid two cycles after the inputs are (the start cycle).
        patch = Signal()
        k_m1 = Signal(k_bits)
        stride = Signal(range(MAX_STRIDE + 1))
        pad = Signal(k_bits)
        ow_m1 = Signal(range(ox_top + 1))
        cols_m2 = Signal(range(self._max_cols))  # cols - 2 (wraps for one col: no col is the one before last)
        one_col = Signal()  # cols == 1
        channels = Signal.like(sh.channels)
        h_pad = Signal(len(sh.height) + 1)  # height + pad
        w_pad = Signal(len(width) + 1)      # width + pad
        plane = Signal(a_bits)              # height * width
        s_w = Signal(a_bits)                # stride * width
        p_w = Signal(a_bits)                # pad * width
        y_s = Signal(range(oys_top + 1))    # y * stride (PATCH: the first oy * stride)
        x_s = Signal(range(oxs_top + 1))    # x * stride (PATCH: the first ox * stride)
        y_w = Signal(a_bits)                # y * width (SHIFT: the first ky * width)
        pool_m1 = Signal(range(MAX_POOL))   # pool - 1: the last dx, dy of a pooling window
        pm1_s = Signal(range((MAX_POOL - 1) * MAX_STRIDE + 1))  # (pool - 1) * stride
        m.d.sync += [
            pool_m1.eq(w.pool - 1),
            pm1_s.eq(_times_small(w.stride[:len(stride)], (w.pool - 1)[:len(pool_m1)])),
            patch.eq(w.order == PATCH),
            k_m1.eq(w.kernel[:k_bits + 1] - 1),
            stride.eq(w.stride),
            pad.eq(w.pad),
            ow_m1.eq(w.out_width - 1),
            cols_m2.eq(self.cols - 2),
            one_col.eq(self.cols == 1),
            channels.eq(sh.channels),
            h_pad.eq(sh.height + w.pad[:k_bits]),
            w_pad.eq(width + w.pad[:k_bits]),
            plane.eq(mod(sh.height * width)),
            s_w.eq(mod(_times_small(width, w.stride[:len(stride)]))),
            p_w.eq(mod(_times_small(width, w.pad[:k_bits]))),
            y_s.eq(_times_small(w.y, w.stride[:len(stride)])),
            x_s.eq(_times_small(w.x, w.stride[:len(stride)])),
            y_w.eq(mod(_times_small(width, w.y[:k_bits]))),
        ]
        c_plane0 = Signal(a_bits)  # channel * height * width
        y_s_w = Signal(a_bits)     # y * stride * width (PATCH: the first oy * stride * width)
        pad_addr = Signal(a_bits)  # pad * width + pad: the address of (iy, ix) = (0, 0) is row + col - this
        pm1_s_w = Signal(a_bits)   # (pool - 1) * stride * width
        m.d.sync += [
            pm1_s_w.eq(mod(_times_small(s_w, pool_m1))),
            c_plane0.eq(mod(mod(w.channel) * plane)),
            y_s_w.eq(mod(mod(y_s) * width)),
            pad_addr.eq(p_w + pad),
        ]
        setup = Signal(range(3))  # counts the two setup cycles after start
        load = Signal()
        m.d.comb += load.eq(setup == 1)
        with m.If(self.start):
            m.d.sync += setup.eq(2)
        with m.Elif(setup != 0):
            m.d.sync += setup.eq(setup - 1)

        # ------------------------------------------------ stage 0: the counters
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        v0 = Signal()
        col = Signal(range(self._max_cols))
        # tap (c, ky, kx), with c * plane and ky * width modulo 2**a_bits
        c = Signal(range(c_top + 1))
        ky = Signal(k_bits)
        kx = Signal(k_bits)
        c_plane = Signal(a_bits)
        ky_w = Signal(a_bits)
        # position (oy, ox) as oy * stride, ox, ox * stride, and oy * stride * width modulo 2**a_bits
        oy_s = Signal(range(oys_top + 1))
        ox = Signal(range(ox_top + 1))
        ox_s = Signal(range(oxs_top + 1))
        oy_s_w = Signal(a_bits)
        # the position's place (dy, dx) in its pooling window (a pooled PATCH window; else 0, 0)
        dy = Signal.like(pool_m1)
        dx = Signal.like(pool_m1)

        def tap_first(first_ky, first_kx, first_ky_w):
            return [c.eq(w.channel), ky.eq(first_ky), kx.eq(first_kx), c_plane.eq(c_plane0), ky_w.eq(first_ky_w)]

        def position_first(first_ox, first_ox_s, first_oy_s, first_oy_s_w):
            return [ox.eq(first_ox), ox_s.eq(first_ox_s), oy_s.eq(first_oy_s), oy_s_w.eq(first_oy_s_w),
                    dy.eq(0), dx.eq(0)]

        last_col = Signal()  # col == cols - 1, registered: no compare before the counters' enables
        tap_step = Mux(patch, ~last_col, last_col)  # PATCH: inner; SHIFT: outer
        position_step = Mux(patch, last_col, ~last_col)

        with m.If(self.start):
            m.d.sync += v0.eq(0)
        with m.Elif(load):
            m.d.sync += [
                v0.eq(1),
                col.eq(0),
                last_col.eq(one_col),
                *tap_first(Mux(patch, 0, w.y[:k_bits]), Mux(patch, 0, w.x[:k_bits]), Mux(patch, 0, y_w)),
                *position_first(Mux(patch, w.x, 0), Mux(patch, x_s, 0), Mux(patch, y_s, 0), Mux(patch, y_s_w, 0)),
            ]
        with m.Elif(v0 & advance):
            m.d.sync += [col.eq(Mux(last_col, 0, col + 1)),
                         last_col.eq(Mux(last_col, one_col, col == cols_m2))]
            with m.If(patch & last_col):  # PATCH: the next vector's patch starts at its first tap
                m.d.sync += tap_first(0, 0, 0)
            with m.Elif(tap_step):
                with m.If(kx == k_m1):
                    m.d.sync += kx.eq(0)
                    with m.If(ky == k_m1):
                        m.d.sync += [ky.eq(0), ky_w.eq(0), c.eq(c + 1), c_plane.eq(c_plane + plane)]
                    with m.Else():
                        m.d.sync += [ky.eq(ky + 1), ky_w.eq(ky_w + width)]
                with m.Else():
                    m.d.sync += kx.eq(kx + 1)
            with m.If(~patch & last_col):  # SHIFT: the next tap's shifts start at position (0, 0)
                m.d.sync += position_first(0, 0, 0, 0)
            with m.Elif(position_step):
                # Pooling window by pooling window (pool 1: every position is a window's last).
                with m.If(dx != pool_m1):  # along the window's row
                    m.d.sync += [dx.eq(dx + 1), ox.eq(ox + 1), ox_s.eq(ox_s + stride)]
                with m.Elif(dy != pool_m1):  # the window's next row, from its first column
                    m.d.sync += [dx.eq(0), dy.eq(dy + 1), ox.eq(ox - pool_m1), ox_s.eq(ox_s - pm1_s),
                                 oy_s.eq(oy_s + stride), oy_s_w.eq(oy_s_w + s_w)]
                with m.Elif(ox == ow_m1):  # the band's last window: the next band's first
                    m.d.sync += [dx.eq(0), dy.eq(0), ox.eq(0), ox_s.eq(0), oy_s.eq(oy_s + stride),
                                 oy_s_w.eq(oy_s_w + s_w)]
                with m.Else():  # the band's next window, from its first row
                    m.d.sync += [dx.eq(0), dy.eq(0), ox.eq(ox + 1), ox_s.eq(ox_s + stride),
                                 oy_s.eq(oy_s - pm1_s), oy_s_w.eq(oy_s_w - pm1_s_w)]

        # ------------------------------------------------ stage 1: row and column (plus pad), row address
        v1 = Signal()
        c_in = Signal()
        iy_pad = Signal(range(oys_top + MAX_KERNEL))  # iy + pad = oy * stride + ky
        ix_pad = Signal(range(oxs_top + MAX_KERNEL))  # ix + pad = ox * stride + kx
        row_addr = Signal(a_bits)                     # (c * height + iy + pad) * width
        # ------------------------------------------------ stage 2: inside, address
        v2 = Signal()
        inside2 = Signal()
        addr = Signal(a_bits)
        # ------------------------------------------------ stage 3: the memory's read
        v3 = Signal()
        inside3 = Signal()
        with m.If(self.start):
            m.d.sync += [v1.eq(0), v2.eq(0), v3.eq(0), self.o.valid.eq(0)]
        with m.Elif(advance):
            m.d.sync += [
                v1.eq(v0),
                c_in.eq(c < channels),
                iy_pad.eq(oy_s + ky),
                ix_pad.eq(ox_s + kx),
                row_addr.eq(mod(oy_s_w + ky_w + c_plane)),
                v2.eq(v1),
                inside2.eq(c_in & (iy_pad >= pad) & (iy_pad < h_pad) & (ix_pad >= pad) & (ix_pad < w_pad)),
                addr.eq(mod(row_addr + mod(ix_pad) - pad_addr)),
                v3.eq(v2),
                inside3.eq(inside2),
                self.o.valid.eq(v3),
            ]

        memory = m.submodules.map = Memory(shape=self._max_bits, depth=self._depth, init=[], attrs=BANK_ATTRS)
        wr = memory.write_port()
        m.d.comb += [
            wr.en.eq(self.write.valid),
            wr.addr.eq(self.write.payload.addr),
            wr.data.eq(self.write.payload.code),
        ]
        code = registered_read(m, memory, addr, advance)
        # ------------------------------------------------ stage 4: the output register
        with m.If(advance):
            m.d.sync += self.o.payload.eq(Mux(inside3, code, 0))
        return m
