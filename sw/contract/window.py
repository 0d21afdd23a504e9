"""Vectors made on the core from a feature map: the window of protocol 5.

A core with a feature-map memory (``fmap_codes > 0`` in PING) holds one
feature map of ``channels x height x width`` codes (LOAD_FMAP: channel-major,
then row-major, all of one ``bits``).  A RUN or ACCUMULATE with the window
flag carries a :class:`Window` instead of codes, and the core makes each of
its ``count`` vectors of ``cols`` codes (``cols``: the loaded matrix's) from
the map: code ``col`` of vector ``vector`` is the map's code at
:func:`window_index`, or code 0 where that falls outside the map (the
padding; 0 is the value 0 of an unsigned reading, the only reading padding is
used with).  Two orders serve the three training products of a convolution
with ``kernel x kernel`` taps, ``stride`` and ``pad`` (zero padding on every
side) whose output rows are ``out_width`` positions wide:

* :data:`PATCH` (forward, and backward-input as the transposed convolution):
  a vector is an output position, its codes the patch under the kernel, in the
  weight's order ``(channel, ky, kx)``.  Vector ``v`` is position ``y *
  out_width + x + v`` (row-major, so ``(y, x)`` is the first vector's); code
  ``col`` is channel ``channel + col // kernel**2`` (a matrix may hold a slice
  of the channels), tap ``(col // kernel % kernel, col % kernel)``.
  With ``pool = p > 1`` (1, 2 or 4; an activated RUN only) the positions come
  window by window of a ``p x p`` max-pool: vector ``v`` is position ``j =
  v % p**2`` (row-major, ``(j // p, j % p)``) of pooling window ``g0 + v //
  p**2``, windows row-major over the ``out_width // p`` of a band, window
  ``g0`` the one whose top-left position is ``(y, x)``; so ``y``, ``x`` and
  ``out_width`` are multiples of ``p`` (positions of a partial window are not
  made: ``out_width`` is the pooled columns' ``p`` times) and ``count`` of
  ``p**2``.  The core replies the max of each window's ``p**2`` codes per row,
  ``count // p**2`` vectors (:func:`pooled_vectors`).
* :data:`SHIFT` (backward-weight, the correlation of the activations with the
  output gradients): a vector is a tap ``(channel, ky, kx)`` of the weight,
  its codes the map's codes under that tap at every output position,
  row-major.  Vector ``v`` is tap ``(channel * kernel + y) * kernel + x + v``
  (so ``(channel, y, x)`` is the first vector's); code ``col`` is output
  position ``(col // out_width, col % out_width)``.

Both put output position ``(oy, ox)`` and tap ``(c, ky, kx)`` at input row
``oy * stride + ky - pad`` and column ``ox * stride + kx - pad`` of channel
``c``.  :func:`window_index` is written with ``//``, ``%``, ``*``, ``+`` and
``&`` only, so it serves Python integers (the gateware's scoreboards) and
broadcast NumPy integer arrays (the core model) alike: one definition.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, replace

__all__ = ["PATCH", "SHIFT", "ORDERS", "MAX_KERNEL", "MAX_STRIDE", "MAX_SIDE", "POOLS", "MAX_POOL", "FmapShape",
           "Window", "window_index", "pooled_vectors"]

#: :attr:`Window.order`: a vector is an output position (its patch), or a tap of the kernel (its shifts).
PATCH = 0
SHIFT = 1
ORDERS = (PATCH, SHIFT)
#: The largest kernel side and stride a window may have (``pad < kernel``).
MAX_KERNEL = 16
MAX_STRIDE = 4
#: The largest feature-map side (a byte in LOAD_FMAP).
MAX_SIDE = 255
#: :attr:`Window.pool`: the sides of the max-pool windows a PATCH window may make its positions
#: in (1: none); powers of two, so that a core finds a position's place in its window by bit slices.
POOLS = (1, 2, 4)
MAX_POOL = POOLS[-1]


@dataclass(frozen=True)
class FmapShape:
    """A loaded feature map's shape (LOAD_FMAP's ``channels``, ``height``, ``width``)."""
    channels: int
    height: int
    width: int

    @property
    def codes(self) -> int:
        return self.channels * self.height * self.width

    def problems(self, fmap_codes: int) -> list[str]:
        """Why a core holding ``fmap_codes`` codes refuses this shape (``Detail.SHAPE``); empty: it takes it."""
        if min(self.channels, self.height, self.width) < 1:
            return [f"feature map {self.channels} x {self.height} x {self.width} has a zero dimension"]
        if self.codes > fmap_codes:
            return [f"feature map of {self.codes} codes exceeds the core's {fmap_codes}"]
        return []


@dataclass(frozen=True)
class Window:
    """A window header (:data:`sw.contract.link.WINDOW_FIELDS`, fields in its order)."""
    kernel: int
    stride: int
    pad: int
    order: int
    out_width: int
    channel: int = 0
    y: int = 0
    x: int = 0
    pool: int = 1

    def fields(self) -> tuple:
        """The header's field values, in the wire's order."""
        return astuple(self)

    def advanced(self, n: int) -> "Window":
        """The window whose vector 0 is this one's vector ``n`` (``n >= 0``): the same
        vectors from ``n`` on, so a request of many vectors may be split into several
        (PATCH: the output position ``(y, x)`` moved on by ``n``, row-major; SHIFT: the
        tap ``(channel, y, x)`` moved on by ``n``)."""
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"a window advances by a whole number of vectors >= 0, got {n!r}")
        k, n = self.kernel, int(n)
        if self.order not in ORDERS:
            raise ValueError(f"a window of order {self.order} (not in {ORDERS}) cannot advance")
        if self.order == PATCH:
            if self.out_width < 1:
                raise ValueError("a PATCH window with out_width 0 cannot advance")
            p = self.pool
            if p > 1 and n % (p * p):
                raise ValueError(f"a window pooled {p} x {p} advances by whole pooling windows "
                                 f"(a multiple of {p * p} vectors), got {n}")
            pooled_width = self.out_width // p
            group = self.y // p * pooled_width + self.x // p + n // (p * p)
            return replace(self, y=group // pooled_width * p, x=group % pooled_width * p)
        if k < 1:
            raise ValueError("a SHIFT window with kernel 0 cannot advance")
        tap = (self.channel * k + self.y) * k + self.x + n
        return replace(self, channel=tap // (k * k), y=tap // k % k, x=tap % k)

    def problems(self, shape: FmapShape, max_pool: int = MAX_POOL) -> list[str]:
        """Why a core pooling windows up to ``max_pool`` (PING's) refuses this window on a map
        of ``shape`` (``Detail.WINDOW``); empty: valid.  A pooled window's request has its
        own rules too (:meth:`pool_problems`)."""
        problems = []
        if not 1 <= self.kernel <= MAX_KERNEL:
            problems.append(f"kernel {self.kernel} not in 1..{MAX_KERNEL}")
        if not 1 <= self.stride <= MAX_STRIDE:
            problems.append(f"stride {self.stride} not in 1..{MAX_STRIDE}")
        if not 0 <= self.pad < max(self.kernel, 1):
            problems.append(f"pad {self.pad} not in 0..kernel - 1")
        if self.order not in ORDERS:
            problems.append(f"order {self.order} not in {ORDERS}")
        if self.out_width < 1:
            problems.append("out_width 0")
        if self.channel >= shape.channels:
            problems.append(f"channel {self.channel} not below the map's {shape.channels}")
        first = (self.x, self.out_width) if self.order == PATCH else (max(self.y, self.x), self.kernel)
        if first[0] >= first[1]:
            problems.append("the first vector's x (and, for SHIFT, y) must be below out_width (SHIFT: kernel)")
        if self.pool not in POOLS or self.pool > max_pool:
            problems.append(f"pool {self.pool} not in {tuple(p for p in POOLS if p <= max_pool)}")
        elif self.pool > 1:
            if self.order != PATCH:
                problems.append("only a PATCH window is pooled")
            if (self.out_width | self.y | self.x) % self.pool:
                problems.append(f"out_width, y and x of a window pooled {self.pool} x {self.pool} must be "
                                f"multiples of {self.pool}")
        return problems

    def pool_problems(self, count: int, activate: bool) -> list[str]:
        """Why a request of ``count`` vectors (an activated RUN: ``activate``) refuses this
        window's pooling (``Detail.WINDOW``); empty: none pooled, or it may be."""
        if self.pool == 1:
            return []
        problems = [] if activate else ["only an activated RUN's codes are pooled"]
        if count % (self.pool * self.pool):
            problems.append(f"count {count} is not whole {self.pool} x {self.pool} pooling windows")
        return problems


def window_index(shape: FmapShape, window: Window, vector, col):
    """``(index, inside)`` of code ``col`` of vector ``vector`` (module docstring):
    the map's flat index ``(c * height + iy) * width + ix`` and whether it lies
    inside the map (else the code is 0).  Elementwise on Python or NumPy integers."""
    k, w = window.kernel, window
    if w.order == PATCH:
        p = w.pool
        group = w.y // p * (w.out_width // p) + w.x // p + vector // (p * p)
        oy = group // (w.out_width // p) * p + vector % (p * p) // p
        ox = group % (w.out_width // p) * p + vector % p
        c, ky, kx = w.channel + col // (k * k), col // k % k, col % k
    else:
        tap = (w.channel * k + w.y) * k + w.x + vector
        c, ky, kx = tap // (k * k), tap // k % k, tap % k
        oy, ox = col // w.out_width, col % w.out_width
    iy = oy * w.stride + ky - w.pad
    ix = ox * w.stride + kx - w.pad
    inside = (c < shape.channels) & (iy >= 0) & (iy < shape.height) & (ix >= 0) & (ix < shape.width)
    return (c * shape.height + iy) * shape.width + ix, inside


def pooled_vectors(count: int, pool: int) -> int:
    """Vectors in the reply of an activated RUN of ``count`` vectors through a window pooled
    ``pool x pool``: one per pooling window, ``count // pool**2``."""
    return int(count) // (int(pool) * int(pool))
