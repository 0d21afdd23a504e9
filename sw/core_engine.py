"""The engine that runs a model's products on a training core.

:class:`CoreEngine` is the :class:`sw.products.Engine` protocol over a
:class:`sw.driver.CoreClient`: ``model.set_engine(CoreEngine(client))`` runs
the three training products of every quantized conv/FC as GEMMs on the core,
giving the same int64 integers as :class:`sw.intref.IntRefEngine`.  It is the
torch side of the host driver; the transports and the client
(:mod:`sw.driver`) need no torch.

A conv product's vectors are made one of two ways, whichever puts fewer bytes
on the link (:meth:`CoreEngine._cheaper`):

* **windows** (a core with a feature map, PING's ``fmap_codes``): the host
  sends each sample's feature map (LOAD_FMAP) and the core makes the vectors
  from it (RUN / ACCUMULATE with a :class:`sw.contract.window.Window`):
  forward and backward-input (the transposed convolution) in PATCH order,
  backward-weight in SHIFT order (:mod:`sw.contract.window`);
* **patches**: :class:`sw.intref.GemmEngine`'s lowering, im2col on the host
  (and the cores without a feature map, or shapes a window cannot take:
  stride > 4, kernel > 16, padding >= kernel, a side > 255, a map larger
  than the core's).

The windows make code for code the vectors :func:`sw.intref.im2col` makes
(padding is code 0 in both), so either way the integers are the reference's.

Backward-weight's per-sample products of a layer with one output position (an FC
layer's, a conv's with a 1 x 1 output) are outer products, ``G_b`` (``O x 1``) by
``x_b`` (``1 x C k k``): a reduction of length 1, so one of the core's ``simd`` lanes
would do useful work in each.  (Samples' gradients have scales of their own, so the
batch cannot be the reduction.)  The host makes them and their batch sums
(:class:`sw.intref.IntRefEngine`'s integers, so the results are the same), and the
link carries none of their operands.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from . import numeric
from . import protocol as P
from .contract.window import PATCH, SHIFT, Window
from .driver import CoreClient, wire_shift
from .intref import (GemmEngine, IntRefEngine, _np, accumulator_bound, conv_output_size, flipped_kernel,
                     transposed_input)
from .products import LinearGeometry

__all__ = ["CoreEngine"]

#: Link bytes of one request and its reply beyond their payloads (two frames' headers and CRCs).
EXCHANGE = 2 * P.OVERHEAD
#: Link bytes of one sample's LOAD_FMAP beyond its codes (one frame: the header, the 4-byte reply).
FMAP_EXTRA = EXCHANGE + P.LOAD_FMAP_HEADER + 4


def _ceil(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _tiles(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


class CoreEngine(GemmEngine):
    """The three products of conv and FC layers on the core: conv products from
    feature maps through the core's windows where that takes fewer link bytes, else
    as GEMMs of im2col patches (the lowering of :class:`sw.intref.GemmEngine`)."""

    def __init__(self, client):
        self.client = client if isinstance(client, CoreClient) else CoreClient(client)
        #: Activated products: on the core's threshold stage, or thresholded on the host
        #: (a fan-in longer than the core's columns, or more activation bits than it has).
        #: Backward-weight batch sums: on the core's sums, or of per-sample products on the host.
        #: Backward-weight outer products (one output position): made on the host.
        #: Conv products (each forward, backward-input, backward-weight): ``windowed``, their
        #: vectors made on the core from feature maps, or ``patched``, sent by the host.
        #: Max-pooled blocks (evaluation): pooled on the core's windows, or on the host.
        #: Interleaved: conv layers whose two backward products went sample by sample, each
        #: gradient map crossing once (:meth:`backward_products`).
        self.stats = {"core_thresholds": 0, "host_thresholds": 0, "core_sums": 0, "host_sums": 0,
                      "windowed": 0, "patched": 0, "core_pools": 0, "host_pools": 0, "interleaved": 0,
                      "host_outer": 0}
        self._reference = IntRefEngine()

    def close(self) -> None:
        """Close the link to the core (idempotent)."""
        self.client.close()

    @contextmanager
    def product(self, name: str):
        """The requests made inside serve the product ``name`` (``"forward"``,
        ``"backward-input"``, ``"backward-weight"``): a hook for an engine that tallies the
        link by product (``bench/``), where one method makes two products' requests
        (:meth:`backward_products`).  Here: nothing."""
        yield

    # ------------------------------------------------------------------ GEMMs of the host's vectors

    def matmul(self, a, a_codes, b, b_codes):
        # The rows of B are the matrix loaded into the core, the rows of A the vectors streamed.
        return self.client.matmul(np.ascontiguousarray(a_codes), a.bits, a.signed,
                                  np.ascontiguousarray(b_codes), b.bits, b.signed)

    def matmul_activate(self, a, a_codes, b, b_codes, unit):
        # On the core's activation stage when a row's whole sum fits one matrix;
        # otherwise the core's partial sums are added and thresholded here.
        if not self.client.can_activate(b_codes.shape[1], unit.act_bits):
            self.stats["host_thresholds"] += 1
            return super().matmul_activate(a, a_codes, b, b_codes, unit)
        self.stats["core_thresholds"] += 1
        return torch.from_numpy(self.client.activations(
            np.ascontiguousarray(a_codes), a.bits, a.signed, np.ascontiguousarray(b_codes), b.bits, b.signed,
            unit.thresholds, unit.direction, unit.act_bits))

    # ------------------------------------------------------------------ link bytes, for choosing

    def _cheaper(self, windows: int | None, patches: int) -> bool:
        """Whether a product goes through windows: it can (``windows``, its bytes, not
        ``None``) with fewer bytes than the patches'; counted in :attr:`stats`."""
        windowed = windows is not None and windows < patches
        self.stats["windowed" if windowed else "patched"] += 1
        return windowed

    def _run_requests(self, n: int, cols: int, rows: int, v_bits: int, m_bits: int, codes: bool) -> int:
        """RUN requests of ``n`` vectors of ``cols`` codes against ``rows`` rows, as
        :meth:`~sw.driver.CoreClient.run` (``codes``: the vectors in the request) or
        :meth:`~sw.driver.CoreClient.run_window` split them."""
        return _ceil(n, self.client.vectors_per_run(cols, rows, v_bits, m_bits, codes=codes))

    def _patch_gemm_bytes(self, n: int, k: int, o: int, v_bits: int, m_bits: int) -> int:
        """About the link bytes of :meth:`~sw.driver.CoreClient.matmul` of ``n`` host vectors
        of ``k`` codes by ``o`` rows: :meth:`~sw.driver.CoreClient.matmul_bytes` and the
        RUN frames' headers (the matrix, the same either way, left out)."""
        info = self.client.info
        frames = sum(self._run_requests(n, len(range(k)[cols]), len(range(o)[rows]), v_bits, m_bits, True)
                     for rows in _tiles(o, info.max_rows) for cols in _tiles(k, info.max_cols))
        return self.client.matmul_bytes(n, k, o, v_bits, m_bits) + frames * (EXCHANGE + P.RUN_HEADER
                                                                            + P.RUN_REPLY_HEADER)

    def _window_conv_bytes(self, batch: int, maps_shape, bits: int, weights_shape, m_bits: int,
                           positions: int, slices) -> int:
        """About the link bytes of :meth:`_window_conv`: per row tile, channel slice and
        sample a LOAD_FMAP of the slice's channels and the RUNs of its positions, and the
        accumulators (the matrix, the same either way, left out)."""
        info = self.client.info
        _, _, h, w = maps_shape
        o, _, k, _ = weights_shape
        total = 0
        for rows in _tiles(o, info.max_rows):
            height = rows.stop - rows.start
            for c0, c1 in slices:
                cols = (c1 - c0) * k * k
                runs = self._run_requests(positions, cols, height, bits, m_bits, False)
                total += batch * (P.packed_size((c1 - c0) * h * w, bits) + FMAP_EXTRA
                                  + runs * (EXCHANGE + P.RUN_HEADER + P.WINDOW_HEADER + P.RUN_REPLY_HEADER)
                                  + P.packed_size(positions * height, self.client.reply_bits(cols, m_bits, bits)))
        return total

    # ------------------------------------------------------------------ PATCH windows

    def _patch_slices(self, maps_shape, bits: int, k: int, stride: int, pad: int, out_width: int):
        """The channel slices ``[(c0, c1), ...]`` of a conv's PATCH windows over maps of
        ``maps_shape`` ``(B, C, H, W)``: as many whole channels as the core's columns hold
        (``C*k*k > max_cols``: the matrix is sliced by channels, and each slice's channels
        are loaded as a map of their own); ``None`` where the core cannot make them."""
        _, c, h, w = maps_shape
        per = self.client.info.max_cols // (k * k)
        if not self.client.fmap_codes or per < 1:
            return None
        slices = [(t.start, t.stop) for t in _tiles(c, per)]
        window = Window(k, stride, pad, PATCH, out_width)
        if all(self.client.can_window(c1 - c0, h, w, bits, window) for c0, c1 in slices):
            return slices
        return None

    def _window_conv(self, maps, bits: int, signed: bool, weights, m_bits: int, m_signed: bool, stride: int,
                     pad: int, out_hw, slices, unit=None, pool: int = 1) -> np.ndarray:
        """``(B, OH*OW, O)``: the convolution of ``maps`` ``(B, C, H, W)`` codes (read as
        ``bits``, ``signed`` say) with ``weights`` ``(O, C, k, k)`` codes, zero-padded by
        ``pad``, as PATCH windows on the core: the host sends each sample's map, not its
        patches.  Row tiles (``max_rows``) and channel slices (``slices``) are outer, so
        each matrix (and its thresholds) is loaded once and the maps, the smaller, once per
        tile and slice; the slices' accumulators are added here.  With ``unit`` (one slice
        only) the replies are the activation codes of its thresholds; with ``pool > 1`` as
        well, max-pooled on the core ``pool x pool``: ``(B, (OH // pool) * (OW // pool), O)``,
        row-major."""
        info = self.client.info
        b = maps.shape[0]
        o, _, k, _ = weights.shape
        oh, ow = out_hw
        count = (oh // pool) * (ow // pool) * pool * pool  # a partial pooling window is not made
        window = Window(k, stride, pad, PATCH, ow // pool * pool, pool=pool)
        out = np.zeros((b, count // (pool * pool), o), dtype=np.int64)
        for rows in _tiles(o, info.max_rows):
            for c0, c1 in slices:
                self.client.load_matrix(weights[rows, c0:c1].reshape(rows.stop - rows.start, -1), m_bits, m_signed)
                if unit is not None:
                    self.client.load_thresholds(unit.thresholds[rows], unit.direction[rows], unit.act_bits)
                for i in range(b):
                    self.client.load_fmap(maps[i, c0:c1], bits)
                    out[i, :, rows] += self.client.run_window(count, bits, signed, window,
                                                              activate=unit is not None)
        return out

    def _windowed_forward(self, geometry, x, w, unit=None, pool: int = 1) -> torch.Tensor | None:
        """A conv's forward ``(B, O, OH, OW)`` through PATCH windows (activation codes with
        ``unit``: on the core's threshold stage where :meth:`matmul_activate` would use it,
        else the accumulators thresholded here), or ``None`` where the patches go instead.
        ``pool > 1`` (with ``unit``): the codes max-pooled on the core, ``(B, O, OH // pool,
        OW // pool)``, or ``None`` where the core cannot pool them."""
        xc, wc = _np(x.codes), _np(w.codes)
        b, c, h, wd = xc.shape
        o, _, k, _ = wc.shape
        s, p = geometry.stride, geometry.padding
        oh, ow = conv_output_size(h, k, s, p), conv_output_size(wd, k, s, p)
        slices = self._patch_slices(xc.shape, x.bits, k, s, p, ow)
        on_core = unit is not None and self.client.can_activate(c * k * k, unit.act_bits)
        if pool > 1 and not (on_core and slices is not None and len(slices) == 1
                             and self.client.can_pool(pool, oh, ow)):
            return None
        windows = None if slices is None else self._window_conv_bytes(b, xc.shape, x.bits, wc.shape, w.bits,
                                                                        oh * ow, slices)
        patches = self._patch_gemm_bytes(b * oh * ow, c * k * k, o, x.bits, w.bits)
        if pool > 1 and (windows is None or windows >= patches):
            return None  # (counted by the unpooled product the caller falls back to)
        if not self._cheaper(windows, patches):
            return None
        if unit is not None:
            self.stats["core_thresholds" if on_core else "host_thresholds"] += 1
        out = torch.from_numpy(self._window_conv(xc, x.bits, x.signed, wc, w.bits, w.signed, s, p, (oh, ow), slices,
                                                 unit if on_core else None, pool))
        if unit is not None and not on_core:
            out = numeric.apply_thresholds(out.reshape(-1, o), unit.thresholds, unit.direction).reshape(b, -1, o)
        if pool > 1:
            self.stats["core_pools"] += 1
        return out.reshape(b, oh // pool, ow // pool, o).permute(0, 3, 1, 2).contiguous()

    def forward(self, geometry, x, w):
        if isinstance(geometry, LinearGeometry):
            return super().forward(geometry, x, w)
        out = self._windowed_forward(geometry, x, w)
        return out if out is not None else super().forward(geometry, x, w)

    def forward_activations(self, geometry, x, w, unit):
        if isinstance(geometry, LinearGeometry):
            return super().forward_activations(geometry, x, w, unit)
        out = self._windowed_forward(geometry, x, w, unit)
        return out if out is not None else super().forward_activations(geometry, x, w, unit)

    def forward_pooled(self, geometry, x, w, unit):
        # Pooled on the core where its windows can take the block whole; else the codes
        # come as forward_activations gives them and are pooled here.
        out = None if isinstance(geometry, LinearGeometry) else self._windowed_forward(geometry, x, w, unit,
                                                                                     pool=unit.pool)
        if out is None:
            self.stats["host_pools"] += 1
            return super().forward_pooled(geometry, x, w, unit)
        return out

    # ------------------------------------------------------------------ backward-input

    def transposed_backward_input(self, geometry, g, w, input_shape):
        """The lowering of a conv's backward-input with fewer bytes on this core's link:
        ``C*k*k`` sums per output position folded by the host (vectors: the gradient's
        ``O`` codes), or the transposed convolution's ``C`` per input position, its
        ``O*k*k``-code patches made on the core from the gradient's map (windows) where it
        can, else sent."""
        b, o, oh, ow = g.codes.shape
        _, c, h, wd = input_shape
        k = w.codes.shape[2]
        folded = self._patch_gemm_bytes(b * oh * ow, o, c * k * k, g.bits, w.bits)
        transposed = self._patch_gemm_bytes(b * h * wd, o * k * k, c, g.bits, w.bits)
        slices = self._patch_slices(g.codes.shape, g.bits, k, 1, k - 1 - geometry.padding, wd)
        if slices is not None:
            transposed = min(transposed, self._window_conv_bytes(b, g.codes.shape, g.bits, (c, o, k, k), w.bits,
                                                                 h * wd, slices))
        return transposed < folded

    def backward_input(self, geometry, g, w, input_shape):
        counted = self.stats["windowed"] + self.stats["patched"]
        out = super().backward_input(geometry, g, w, input_shape)
        if not isinstance(geometry, LinearGeometry) and self.stats["windowed"] + self.stats["patched"] == counted:
            self.stats["patched"] += 1  # the folded lowering: the gradient's codes sent as vectors
        return out

    def transposed_products(self, g, gc, w, flipped, pad):
        """The transposed convolution's products (:meth:`sw.intref.GemmEngine.transposed_products`)
        through PATCH windows over the gradient's maps where that takes fewer bytes."""
        b, o, oh, ow = gc.shape
        c, _, k, _ = flipped.shape
        h, wd = conv_output_size(oh, k, 1, pad), conv_output_size(ow, k, 1, pad)
        slices = self._patch_slices(gc.shape, g.bits, k, 1, pad, wd)
        windows = None if slices is None else self._window_conv_bytes(b, gc.shape, g.bits, flipped.shape, w.bits,
                                                                        h * wd, slices)
        if not self._cheaper(windows, self._patch_gemm_bytes(b * h * wd, o * k * k, c, g.bits, w.bits)):
            return super().transposed_products(g, gc, w, flipped, pad)
        return self._window_conv(gc, g.bits, g.signed, flipped, w.bits, w.signed, 1, pad, (h, wd), slices)

    # ------------------------------------------------------------------ backward-weight (SHIFT windows)

    @staticmethod
    def _outer(g) -> bool:
        """Whether backward-weight's per-sample products are outer products: the gradient
        ``g`` has one output position (module docstring), so they go to the host."""
        return g.codes[0, 0].numel() == 1

    def _shift_window(self, geometry, x, g, weight_shape) -> Window:
        return Window(weight_shape[2], geometry.stride, geometry.padding, SHIFT, g.codes.shape[3])

    def _shift_chunks(self, geometry, x, g, weight_shape, step: int):
        """``[(v0, count, c0, c1, window), ...]``: the taps ``v0 .. v0 + count - 1`` of each
        group of at most ``step`` (``C*k*k`` taps in all, SHIFT order: the weight's columns),
        the map channels ``c0 .. c1 - 1`` they read and the window of tap ``v0`` on that map;
        ``None`` where the core cannot make them (no map, a map or window it does not take,
        more output positions than its columns)."""
        _, c, h, wd = x.codes.shape
        k = weight_shape[2]
        taps = k * k
        positions = g.codes.shape[2] * g.codes.shape[3]
        if not self.client.fmap_codes or positions > self.client.info.max_cols:
            return None
        base = self._shift_window(geometry, x, g, weight_shape)
        chunks = []
        for t in _tiles(c * taps, step):
            c0, c1 = t.start // taps, _ceil(t.stop, taps)
            window = base.advanced(t.start - c0 * taps)
            if not self.client.can_window(c1 - c0, h, wd, x.bits, window):
                return None
            chunks.append((t.start, t.stop - t.start, c0, c1, window))
        return chunks

    def _shift_bytes(self, x, chunks, positions: int, requests) -> tuple[int, int]:
        """``(windows, patches)``: about the link bytes per sample of ``chunks``' vectors made
        from maps (a LOAD_FMAP and ``requests(count, True)`` windowed requests each) or sent
        (``requests(count, False)`` requests with ``count * positions`` codes)."""
        _, _, h, wd = x.codes.shape
        windows = sum(P.packed_size((c1 - c0) * h * wd, x.bits) + FMAP_EXTRA + requests(count, True)
                      for _, count, c0, c1, _ in chunks)
        patches = sum(P.packed_size(count * positions, x.bits) + requests(count, False)
                      for _, count, _, _, _ in chunks)
        return windows, patches

    def backward_weight_sum(self, geometry, x, g, weight_shape):
        """``(hi, lo, E)`` of the batch sum of weight gradients made on the core's sums
        (ACCUMULATE, READ_SUMS in binary32: ``hi * 2**32 + lo`` is ``truncate_sum(S)`` of
        :mod:`sw.contract.gradients`, all :func:`sw.numeric.weight_gradient` needs), or
        ``None`` where the core cannot (no sums, a product longer than its columns, a sum
        wider than its sums hold) or should not (outer products, module docstring).  A
        conv's vectors (the weight's taps, SHIFT order) are made on the core from each
        sample's map where that takes fewer bytes (:meth:`_window_batch_sums`), else sent
        (:meth:`sw.driver.CoreClient.batch_sums` of :meth:`backward_weight_operands`)."""
        if self._outer(g):
            return None  # counted by backward_weight
        batch = x.codes.shape[0]
        cols = g.codes.shape[2] * g.codes.shape[3]  # a conv's: a linear layer's are outer products
        bound = accumulator_bound(cols, x, g)
        if not self.client.can_batch_sum(batch, cols, bound):
            self.stats["host_sums"] += 1
            return None
        self.stats["core_sums"] += 1
        mantissa, shift, top = numeric.batch_shifts(g.scale)
        sums = self._window_batch_sums(geometry, x, g, weight_shape, mantissa.tolist(), shift.tolist(),
                                       P.SUM_FLOAT32)  # READ_SUMS: truncate_sum(S), 4 bytes a sum
        if sums is None:
            vectors, matrices = self.backward_weight_operands(geometry, x, g, weight_shape)
            sums = self.client.batch_sums(vectors, x.bits, x.signed, matrices, g.bits, g.signed,
                                          mantissa.tolist(), shift.tolist())
        hi, lo = numeric.sum_limbs(sums.T.reshape(weight_shape))  # (N, O) -> the weight's (O, N)
        return hi, lo, top

    def _window_batch_sums(self, geometry, x, g, weight_shape, mantissas, shifts, width):
        """The ``(N, O)`` batch sums of :meth:`sw.driver.CoreClient.batch_sums` with the
        vectors made on the core: per row tile and group of taps that fits the sums, per
        sample the gradient ``G_b``'s rows (the matrix), the channels of ``x_b`` the taps read
        (the map) and one windowed ACCUMULATE (SHIFT order: vector ``n`` is tap ``n``, so the
        sums land where the patches' land), read at READ_SUMS's ``width``; ``None`` (counted
        patched) where the patches go."""
        windows, patches, _, plan = self._sum_plan(geometry, x, g, weight_shape)
        if not self._cheaper(windows, patches):
            return None
        xc, gc = _np(x.codes), _np(g.codes)
        batch, o = gc.shape[0], gc.shape[1]
        matrices = gc.reshape(batch, o, -1)
        out = np.empty((xc.shape[1] * weight_shape[2] ** 2, o), dtype=object)
        for rows, chunks in plan:
            height = rows.stop - rows.start
            for v0, count, c0, c1, window in chunks:
                for b in range(batch):
                    self.client.load_matrix(matrices[b, rows], g.bits, g.signed)
                    self.client.load_fmap(xc[b, c0:c1], x.bits)
                    self.client.accumulate_window(count, x.bits, x.signed, window, slot=0,
                                                  mantissa=int(mantissas[b]), shift=wire_shift(shifts[b]),
                                                  first=b == 0)
                out[v0:v0 + count, rows] = np.array(self.client.read_sums(0, count * height, width),
                                                    dtype=object).reshape(count, height)
        return out

    def _sum_plan(self, geometry, x, g, weight_shape):
        """``(windows, patches, gradients, plan)`` of :meth:`_window_batch_sums`: the link
        bytes of its vectors made on the core (``None``: it cannot) and sent, of the
        gradient rows' loads (the same either way), and the plan ``[(rows, chunks), ...]``
        (:meth:`_shift_chunks` per row tile) of the row tiles' height that crosses fewer bytes."""
        info = self.client.info
        gc = _np(g.codes)
        o = gc.shape[1]
        positions = gc.shape[2] * gc.shape[3]
        frame = max(1, (info.max_payload - P.ACCUMULATE_HEADER) * 8 // (positions * x.bits))

        def costed(height):
            """``(windows, patches, gradients, plan)`` of row tiles of ``height`` rows: the
            vectors' bytes either way (windows ``None``: the core cannot), the gradient rows'
            loads (the same either way), the plan ``[(rows, chunks), ...]``."""
            plan, windows, patches, gradients = [], 0, 0, 0
            for rows in _tiles(o, height):
                chunks = self._shift_chunks(geometry, x, g, weight_shape, info.sum_slots // (rows.stop - rows.start))
                if chunks is None:
                    return None, patches, gradients, None
                w, p = self._shift_bytes(x, chunks, positions, lambda count, windowed: (
                    (EXCHANGE + P.ACCUMULATE_HEADER + P.WINDOW_HEADER) * _ceil(count, 0xFFFF) if windowed
                    else (EXCHANGE + P.ACCUMULATE_HEADER) * _ceil(count, frame)))
                gradients += len(chunks) * (P.packed_size((rows.stop - rows.start) * positions, g.bits)
                                            + EXCHANGE + P.LOAD_HEADER + 4)
                plan.append((rows, chunks))
                windows, patches = windows + w, patches + p
            return windows, patches, gradients, plan

        return self._sum_tiles(o, costed)

    def _sum_tiles(self, o: int, costed):
        """The row tiles of windowed batch sums over ``o`` gradient rows: ``costed(height)``
        (:meth:`_window_batch_sums`) of the height that crosses fewer bytes.  Taller tiles
        load each sample's maps fewer times, but their taps share the sums among more rows,
        so a sample's gradient rows may be loaded for more groups of taps: the core's rows,
        halved while that helps."""
        best = costed(self.client.info.max_rows)
        height = self.client.info.max_rows // 2
        while best[0] is not None and height >= 1 and _ceil(o, height) > _ceil(o, 2 * height):
            shorter = costed(height)
            if shorter[0] is None or shorter[0] + shorter[2] >= best[0] + best[2]:
                break
            best, height = shorter, height // 2
        return best

    # ------------------------------------------------------------------ both backward products, sample by sample

    def backward_products(self, geometry, x, g, w, input_shape):
        """``(backward_input, backward_weight_sum)`` of a conv layer made sample by sample,
        so that each sample's gradient map crosses the link once, or ``None`` where the
        products go one after the other (:meth:`backward_input`,
        :meth:`backward_weight_sum`).  Apart, a sample's gradient ``G_b`` crosses twice: as
        the map of backward-input's windows (the transposed convolution) and as the
        matrix of backward-weight's.  Here, per sample: the flipped kernel (the matrix),
        ``G_b`` (the map), backward-input's windowed RUN; then the matrix made on the core
        from that map (:meth:`~sw.driver.CoreClient.load_matrix_window`, a kernel-1 SHIFT
        window: row ``o`` is channel ``o``), ``x_b`` (the map) and the windowed ACCUMULATE;
        the sums read at the end.  The kernel then crosses once per sample instead of once
        per batch, so this is chosen only where both products would go through windows in
        one matrix each (one row tile, one channel slice, one group of taps) and it crosses
        fewer bytes than the two apart."""
        if self._outer(g) or geometry.stride != 1:
            return None
        info = self.client.info
        xc, gc = _np(x.codes), _np(g.codes)
        batch, o, oh, ow = gc.shape
        c, k = w.codes.shape[1], w.codes.shape[2]
        h, wd = input_shape[2], input_shape[3]
        pad = k - 1 - geometry.padding
        positions = oh * ow
        if (pad < 0 or c > info.max_rows or o > info.max_rows
                or not self.client.can_batch_sum(batch, positions, accumulator_bound(positions, x, g))):
            return None
        gradient_rows = Window(1, 1, 0, SHIFT, ow)  # vector (matrix row) r: channel r's positions
        if (self._patch_slices(gc.shape, g.bits, k, 1, pad, wd) != [(0, o)]
                or not self.client.can_window(o, oh, ow, g.bits, gradient_rows)
                or not self.transposed_backward_input(geometry, g, w, input_shape)):
            return None
        weight_shape = tuple(w.codes.shape)
        flipped4 = flipped_kernel(w)
        windows = self._window_conv_bytes(batch, gc.shape, g.bits, flipped4.shape, w.bits, h * wd, [(0, o)])
        if windows >= self._patch_gemm_bytes(batch * h * wd, o * k * k, c, g.bits, w.bits):
            return None
        sums_windows, sums_patches, gradients, plan = self._sum_plan(geometry, x, g, weight_shape)
        if sums_windows is None or sums_windows >= sums_patches or len(plan) != 1 or len(plan[0][1]) != 1:
            return None
        frames = _ceil(flipped4.size * w.bits, 8 * (info.max_payload - P.LOAD_HEADER))
        kernel = P.packed_size(flipped4.size, w.bits) + frames * (EXCHANGE + P.LOAD_HEADER + 4)
        # (_sum_plan's bytes are a sample's: its gradient rows cross once less, the kernel once more.)
        if (batch - 1) * kernel + batch * (EXCHANGE + P.LOAD_HEADER + P.WINDOW_HEADER + 4) >= batch * gradients:
            return None
        self.stats["windowed"] += 2
        self.stats["core_sums"] += 1
        self.stats["interleaved"] += 1
        mantissas, shifts, top = numeric.batch_shifts(g.scale)
        _, count, c0, c1, taps = plan[0][1][0]
        flipped = flipped4.reshape(c, -1)
        patches = Window(k, 1, pad, PATCH, wd)
        products = np.empty((batch, h * wd, c), dtype=np.int64)
        for b in range(batch):
            with self.product("backward-input"):
                self.client.load_matrix(flipped, w.bits, w.signed)
                self.client.load_fmap(gc[b], g.bits)
                products[b] = self.client.run_window(h * wd, g.bits, False, patches)  # unsigned: transposed_input
            with self.product("backward-weight"):
                self.client.load_matrix_window(o, positions, g.bits, g.signed, gradient_rows)
                self.client.load_fmap(xc[b, c0:c1], x.bits)
                self.client.accumulate_window(count, x.bits, x.signed, taps, slot=0, mantissa=int(mantissas[b]),
                                              shift=wire_shift(shifts[b]), first=b == 0)
        with self.product("backward-weight"):
            sums = np.array(self.client.read_sums(0, count * o, P.SUM_FLOAT32), dtype=object).reshape(count, o)
        hi, lo = numeric.sum_limbs(sums.T.reshape(weight_shape))  # (N, O) -> the weight's (O, N)
        return transposed_input(g, w, input_shape, pad, products), (hi, lo, top)

    def backward_weight(self, geometry, x, g, weight_shape):
        """Per-sample products ``(B, *weight_shape)`` (a core without sums, or sums too
        narrow): a conv's from each sample's map through SHIFT windows (the map once per
        sample, one RUN of the ``C*k*k`` taps per row tile of ``G_b``) where that takes fewer
        bytes, else :meth:`sw.intref.GemmEngine.backward_weight`'s patches; outer products
        on the host (module docstring)."""
        if self._outer(g):
            self.stats["host_outer"] += 1
            return self._reference.backward_weight(geometry, x, g, weight_shape)
        info = self.client.info
        xc, gc = _np(x.codes), _np(g.codes)
        batch, c = xc.shape[:2]
        o, positions = gc.shape[1], gc.shape[2] * gc.shape[3]
        n = c * weight_shape[2] ** 2
        chunks = self._shift_chunks(geometry, x, g, weight_shape, n)  # one chunk: the whole map
        tiles = _tiles(o, info.max_rows)
        windows = None
        if chunks is not None:
            def requests(count, windowed):
                return sum(self._run_requests(count, positions, t.stop - t.start, x.bits, g.bits, not windowed)
                           for t in tiles) * (EXCHANGE + P.RUN_HEADER + P.RUN_REPLY_HEADER
                                              + (P.WINDOW_HEADER if windowed else 0))
            windows, _ = self._shift_bytes(x, chunks, positions, requests)
            windows += P.packed_size(n * o, self.client.reply_bits(positions, g.bits, x.bits))  # as matmul_bytes
        patches = self._patch_gemm_bytes(n, positions, o, x.bits, g.bits)
        if not self._cheaper(windows, patches):
            return super().backward_weight(geometry, x, g, weight_shape)
        window = chunks[0][4]
        out = np.empty((batch, n, o), dtype=np.int64)
        for b in range(batch):
            self.client.load_fmap(xc[b], x.bits)
            for rows in tiles:
                self.client.load_matrix(gc[b, rows].reshape(rows.stop - rows.start, positions), g.bits, g.signed)
                out[b, :, rows] = self.client.run_window(n, x.bits, x.signed, window)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 2, 1)).reshape((batch, *weight_shape)))
