"""A byte-level Python model of the training core's host link (:mod:`sw.protocol`).

:class:`CoreModel` is what the gateware does, seen from the wire: feed it
request bytes, get reply bytes.  Its receiver is the core's (no
backtracking, idle timeout), its checks run in the protocol's order, and its
arithmetic is :func:`sw.bitplanes.signed_matmul`, for an activated RUN
:func:`sw.numeric.apply_thresholds` and for ACCUMULATE the contract's
:func:`sw.contract.gradients.aligned_term` -- no new arithmetic; a windowed
RUN or ACCUMULATE (LOAD_MATRIX: its rows) makes its vectors from the feature map with the contract's
:func:`sw.contract.window.window_index` (vectorised) and goes on as one
whose vectors came as codes -- so
the host driver can be tested without hardware, and RTL testbenches can
compare the core's reply bytes with this model's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from . import protocol as P
from .bitplanes import signed_matmul
from .contract.codes import levels, levels_or_none
from .contract.core import CORE_DEFAULTS, CoreConfig
from .contract.gradients import SCALE_MANTISSA_BITS, aligned_term, wrap_sum
from .intref import group_max_codes
from .numeric import apply_thresholds

__all__ = ["CoreModel", "CORE_DEFAULTS", "window_vectors"]  # CORE_DEFAULTS: the contract's (sw.contract.core)


def window_vectors(fmap, window: P.Window, count: int, cols: int) -> np.ndarray:
    """The ``(count, cols)`` int64 codes a core makes from ``fmap`` (its feature map,
    ``(channels, height, width)`` codes) under ``window``: the map's code at
    :func:`sw.contract.window.window_index`, 0 outside it (one gather over broadcast
    index arrays, no loop)."""
    fmap = np.asarray(fmap)
    if fmap.ndim != 3:
        raise ValueError(f"a feature map is (channels, height, width), got shape {fmap.shape}")
    index, inside = P.window_index(P.FmapShape(*fmap.shape), window, np.arange(count, dtype=np.int64)[:, None],
                                   np.arange(cols, dtype=np.int64)[None, :])
    flat = fmap.astype(np.int64, copy=False).ravel()
    return np.where(inside, flat[np.where(inside, index, 0)], 0)


class CoreModel:
    """The core's link and GEMM engine.

    Parameters are the capabilities PING reports; they must satisfy the
    protocol's invariants (one vector and its reply fit in a frame).
    ``rx_idle_timeout`` is the idle gap after which a partial request is
    dropped; it only applies when :meth:`feed` is given ``now``.  ``baud`` is
    only reported by PING (the UART rate of the core modelled; 0: none).
    ``sum_slots`` and ``sum_bits`` size the batch sums (ACCUMULATE, READ_SUMS; 0: none).
    ``fmap_codes`` sizes the feature map (LOAD_FMAP, the window flag; 0: none).
    ``max_pool`` is the largest pool of a window (1: none).
    """

    def __init__(self, max_rows: int = CORE_DEFAULTS["max_rows"], max_cols: int = CORE_DEFAULTS["max_cols"], *,
                 max_bits: int = CORE_DEFAULTS["max_bits"], pe: int = CORE_DEFAULTS["pe"],
                 simd: int = CORE_DEFAULTS["simd"], max_payload: int = CORE_DEFAULTS["max_payload"],
                 max_act_bits: int = CORE_DEFAULTS["max_act_bits"], sum_slots: int = CORE_DEFAULTS["sum_slots"],
                 sum_bits: int = CORE_DEFAULTS["sum_bits"], fmap_codes: int = CORE_DEFAULTS["fmap_codes"],
                 packed_accumulators: int = CORE_DEFAULTS["packed_accumulators"],
                 max_pool: int = CORE_DEFAULTS["max_pool"], rx_idle_timeout: float = P.RX_IDLE_TIMEOUT_S,
                 baud: int = 0):
        config = CoreConfig(int(max_rows), int(max_cols), int(max_bits), int(pe), int(simd), int(max_payload),
                            int(max_act_bits), int(sum_slots), int(sum_bits), int(fmap_codes),
                            int(packed_accumulators), int(max_pool))
        problems = config.problems()
        if problems:
            raise ValueError("bad core limits: " + "; ".join(problems))
        if isinstance(baud, bool) or not isinstance(baud, int) or not 0 <= baud < 1 << 32:
            raise ValueError(f"baud must be an integer in 0..{(1 << 32) - 1} (0: not a UART core), got {baud!r}")
        self.info = replace(config.info(), baud=baud)
        self.rx_idle_timeout = float(rx_idle_timeout)
        self._decoder = P.FrameDecoder(self.info.max_payload, backtrack=False)
        self._last_rx = None
        self.stats = {"frames": 0, "errors": 0, "idle_drops": 0, "vectors": 0, "macs": 0, "activations": 0,
                      "terms": 0}
        self._sums = [0] * self.info.sum_slots  # sum_bits-bit two's complement values; RESET zeroes them
        self._clear_matrix()
        self._clear_fmap()

    # ------------------------------------------------------------------ state

    def _clear_matrix(self) -> None:
        self._shape = None  # (rows, cols, bits, flags) of the matrix being loaded / loaded
        self._matrix = None  # flat row-major int64 codes
        self._loaded = 0
        self._clear_thresholds()

    def _clear_thresholds(self) -> None:
        self._t_bits = 0
        self._t_loaded = 0  # rows with thresholds
        self._thresholds = None  # (max_rows, n_a) int64
        self._direction = None  # (max_rows,) int64, +1 or -1

    def _clear_fmap(self) -> None:
        self._f_head = None  # (channels, height, width, bits) of the map being loaded / loaded
        self._fmap = None  # flat int64 codes, channel-major, row-major
        self._f_loaded = 0

    @property
    def fmap_ready(self) -> bool:
        return self._f_head is not None and self._f_loaded == self._fmap.size

    @property
    def fmap(self) -> np.ndarray | None:
        """The complete feature map (channels, height, width) or ``None``."""
        if not self.fmap_ready:
            return None
        return self._fmap.reshape(self._f_head[:3]).copy()

    @property
    def matrix_ready(self) -> bool:
        return self._shape is not None and self._loaded == self._shape[0] * self._shape[1]

    @property
    def matrix(self) -> np.ndarray | None:
        """The complete loaded matrix (rows, cols) or ``None``."""
        if not self.matrix_ready:
            return None
        return self._matrix.reshape(self._shape[0], self._shape[1]).copy()

    @property
    def thresholds(self):
        """``(thresholds (rows, n_a), direction (rows,) of +1 / -1, bits)`` loaded so far, or ``None``."""
        if not self._t_loaded:
            return None
        rows = self._t_loaded
        return self._thresholds[:rows].copy(), self._direction[:rows].copy(), self._t_bits

    @property
    def sums(self) -> list[int]:
        """The batch sums (a copy)."""
        return list(self._sums)

    @property
    def pending(self) -> int:
        """Bytes of a partial request held by the receiver."""
        return self._decoder.pending

    def idle(self) -> None:
        """The receiver's idle timeout fired: drop a partial request (no reply)."""
        if self._decoder.pending:
            self.stats["idle_drops"] += 1
        self._decoder.reset()

    # ------------------------------------------------------------------ wire

    def feed(self, data, now: float | None = None) -> bytes:
        """Receive ``data``; return the reply bytes it caused (possibly none).

        ``now`` (seconds, monotonic) enables the idle timeout: a gap longer
        than ``rx_idle_timeout`` since the previous byte drops a partial request.
        """
        if now is not None:
            if self._last_rx is not None and now - self._last_rx > self.rx_idle_timeout:
                self.idle()
            if data:
                self._last_rx = now
        out = bytearray()
        for event in self._decoder.feed(data):
            if isinstance(event, P.FrameError):
                self.stats["errors"] += 1
                out += P.encode_frame(event.status, P.encode_error(event.code), event.tag)
                continue
            self.stats["frames"] += 1
            status, payload = self.execute(event.code, event.payload)
            if status != P.Status.OK:
                self.stats["errors"] += 1
            out += P.encode_frame(status, payload, event.tag)
        return bytes(out)

    # ------------------------------------------------------------------ commands

    def held(self) -> dict:
        """What the request checks read of the core's state (zero where it holds nothing):
        ``matrix`` (``has``: a LOAD_MATRIX at offset 0 was taken; its ``rows``, ``cols``,
        ``bits``, ``flags``; ``total`` codes, ``loaded`` so far), with an activation stage
        ``thresholds`` (``bits``, ``loaded`` rows), with a feature map ``fmap`` (``has``,
        ``dims``: ``channels``, ``height``, ``width``; ``bits``, ``total``, ``loaded``)."""
        rows, cols, bits, flags = self._shape or (0, 0, 0, 0)
        held = {"matrix": {"has": self._shape is not None, "rows": rows, "cols": cols, "bits": bits,
                           "flags": flags, "total": rows * cols, "loaded": self._loaded}}
        if self.info.max_act_bits:
            held["thresholds"] = {"bits": self._t_bits, "loaded": self._t_loaded}
        if self.info.fmap_codes:
            channels, height, width, f_bits = self._f_head or (0, 0, 0, 0)
            held["fmap"] = {"has": self._f_head is not None, "bits": f_bits, "total": channels * height * width,
                            "loaded": self._f_loaded, "dims": {"channels": channels, "height": height, "width": width}}
        return held

    def execute(self, cmd: int, payload: bytes) -> tuple[int, bytes]:
        """Execute one request whose frame checked: ``(status, reply payload)``."""
        def error(status, detail=P.Detail.NONE):
            return status, P.encode_error(cmd, detail)

        if cmd == P.Cmd.PING:
            if payload:
                return error(P.Status.BAD_LENGTH)
            return P.Status.OK, P.encode_ping_reply(self.info)
        if cmd == P.Cmd.RESET:
            if payload:
                return error(P.Status.BAD_LENGTH)
            self._clear_matrix()
            self._clear_fmap()
            self._sums = [0] * self.info.sum_slots
            return P.Status.OK, b""
        if cmd == P.Cmd.LOAD_MATRIX:
            return self._load(payload, error)
        if cmd == P.Cmd.RUN:
            return self._run(payload, error)
        if cmd == P.Cmd.LOAD_THRESHOLDS and self.info.max_act_bits:
            return self._load_thresholds(payload, error)
        if cmd == P.Cmd.ACCUMULATE and self.info.sum_slots:
            return self._accumulate(payload, error)
        if cmd == P.Cmd.READ_SUMS and self.info.sum_slots:
            return self._read_sums(payload, error)
        if cmd == P.Cmd.LOAD_FMAP and self.info.fmap_codes:
            return self._load_fmap(payload, error)
        return error(P.Status.BAD_COMMAND)

    def _bad_bits_or_flags(self, bits, flags, allowed=P.FLAG_SIGNED):
        if not 1 <= bits <= self.info.max_bits:
            return P.Detail.BITS
        if flags & ~allowed:
            return P.Detail.FLAGS
        return None

    def _load(self, payload, error):
        if len(payload) < P.LOAD_HEADER:
            return error(P.Status.BAD_LENGTH)
        h = P.decode_load_matrix_header(payload)
        windowed = bool(h.flags & P.FLAG_WINDOW)
        detail = self._bad_bits_or_flags(h.bits, h.flags,
                                         P.FLAG_SIGNED | (P.FLAG_WINDOW if self.info.fmap_codes else 0))
        if detail is not None:
            return error(P.Status.BAD_PARAMS, detail)
        if not 1 <= h.rows <= self.info.max_rows:
            return error(P.Status.BAD_PARAMS, P.Detail.ROWS)
        if not 1 <= h.cols <= self.info.max_cols:
            return error(P.Status.BAD_PARAMS, P.Detail.COLS)
        total = h.rows * h.cols
        if h.count == 0 or h.offset + h.count > total or (windowed and (h.offset or h.count != total)):
            return error(P.Status.BAD_PARAMS, P.Detail.COUNT)
        data_size = P.WINDOW_HEADER if windowed else P.packed_size(h.count, h.bits)
        if len(payload) != P.LOAD_HEADER + data_size:
            return error(P.Status.BAD_LENGTH)
        shape = (h.rows, h.cols, h.bits, h.flags)
        if h.offset and (shape != self._shape or h.offset != self._loaded):
            return error(P.Status.BAD_STATE, P.Detail.SEQUENCE)
        failed = self._window_error(h.flags, h.bits, h.window, h.rows)
        if failed:
            return error(*failed)
        if h.offset == 0:
            self._shape = shape
            self._matrix = np.zeros(total, dtype=np.int64)
            self._clear_thresholds()
        if windowed:
            codes = window_vectors(self._fmap.reshape(self._f_head[:3]), h.window, h.rows, h.cols).ravel()
        else:
            codes = P.unpack_codes(h.data, h.bits, h.count)
        self._matrix[h.offset:h.offset + h.count] = codes
        self._loaded = h.offset + h.count
        return P.Status.OK, self._loaded.to_bytes(4, "little")

    def _vectors(self, h) -> np.ndarray:
        """``(count, cols)`` codes of a RUN's or ACCUMULATE's vectors: unpacked from its
        data, or with the window flag made from the feature map (``window_index``)."""
        cols = self._shape[1]
        window = h.window
        if window is None:
            return P.unpack_codes(h.data, h.bits, h.count * cols).reshape(h.count, cols)
        return window_vectors(self._fmap.reshape(self._f_head[:3]), window, h.count, cols)

    def _window_error(self, flags: int, bits: int, window, count: int, activate: bool = False):
        """The error of a request with the window flag (after its LEN check) of ``bits``
        and ``count`` vectors: no complete map, bits other than the map's, a window out of
        range or pooling what it may not (``activate``: an activated RUN's); ``None`` if
        it has none."""
        if not flags & P.FLAG_WINDOW:
            return None
        if not self.fmap_ready:
            return P.Status.BAD_STATE, P.Detail.NO_FMAP
        if bits != self._f_head[3]:
            return P.Status.BAD_PARAMS, P.Detail.BITS
        if (window.problems(P.FmapShape(*self._f_head[:3]), self.info.max_pool)
                or window.pool_problems(count, activate)):
            return P.Status.BAD_PARAMS, P.Detail.WINDOW
        return None

    def _data_size(self, h, cols) -> int:
        """The bytes after a RUN's or ACCUMULATE's header: the window header, or the codes."""
        return P.WINDOW_HEADER if h.flags & P.FLAG_WINDOW else P.packed_size(h.count * cols, h.bits)

    def _products(self, h) -> np.ndarray:
        """``(count, rows)`` products of a RUN's or ACCUMULATE's vectors with the matrix."""
        rows, cols, m_bits, m_flags = self._shape
        vectors = self._vectors(h)
        matrix = self._matrix.reshape(rows, cols)
        self.stats["vectors"] += h.count
        self.stats["macs"] += h.count * rows * cols
        return signed_matmul(vectors, levels_or_none(h.bits, h.signed), h.bits,
                             matrix, levels_or_none(m_bits, m_flags & P.FLAG_SIGNED), m_bits)

    def _run(self, payload, error):
        if len(payload) < P.RUN_HEADER:
            return error(P.Status.BAD_LENGTH)
        if not self.matrix_ready:
            return error(P.Status.BAD_STATE, P.Detail.NO_MATRIX)
        h = P.decode_run_header(payload)
        allowed = (P.FLAG_SIGNED | (P.FLAG_ACTIVATE if self.info.max_act_bits else 0)
                   | (P.FLAG_WINDOW if self.info.fmap_codes else 0)
                   | (P.FLAG_PACKED if self.info.packed_accumulators else 0))
        detail = self._bad_bits_or_flags(h.bits, h.flags, allowed)
        if detail is None and h.packed and h.activate:  # packed accumulators, or activations
            detail = P.Detail.FLAGS
        if detail is not None:
            return error(P.Status.BAD_PARAMS, detail)
        rows, cols, m_bits, m_flags = self._shape
        if h.activate and self._t_loaded != rows:
            return error(P.Status.BAD_STATE, P.Detail.NO_THRESHOLDS)
        if h.count == 0:
            return error(P.Status.BAD_PARAMS, P.Detail.COUNT)
        width = P.accumulator_width(cols, m_bits, h.bits)
        packed_bits = P.accumulator_bits(cols, m_bits, h.bits)
        reply_size = (P.activation_reply_size(h.count, rows, self._t_bits) if h.activate
                      else P.packed_accumulator_reply_size(h.count, rows, packed_bits) if h.packed
                      else P.accumulator_reply_size(h.count, rows, width))
        if reply_size > self.info.max_payload:
            return error(P.Status.BAD_PARAMS, P.Detail.REPLY_TOO_BIG)
        if len(payload) != P.RUN_HEADER + self._data_size(h, cols):
            return error(P.Status.BAD_LENGTH)
        failed = self._window_error(h.flags, h.bits, h.window, h.count, h.activate)
        if failed:
            return error(*failed)
        out = self._products(h)
        if h.packed:
            return P.Status.OK, P.encode_packed_accumulators(out, packed_bits)
        if not h.activate:
            return P.Status.OK, P.encode_accumulators(out, width)
        codes = apply_thresholds(torch.from_numpy(out), torch.from_numpy(self._thresholds[:rows]),
                                 torch.from_numpy(self._direction[:rows])).numpy()
        self.stats["activations"] += h.count * rows
        pool = h.window.pool if h.window is not None else 1
        if pool > 1:  # each pooling window's pool**2 positions are consecutive vectors
            codes = group_max_codes(codes, pool * pool)
        return P.Status.OK, P.pack_codes(codes, self._t_bits)

    def _load_thresholds(self, payload, error):
        if len(payload) < P.THRESHOLD_HEADER:
            return error(P.Status.BAD_LENGTH)
        if not self.matrix_ready:
            return error(P.Status.BAD_STATE, P.Detail.NO_MATRIX)
        h = P.decode_load_thresholds_header(payload)
        if not 1 <= h.bits <= self.info.max_act_bits:
            return error(P.Status.BAD_PARAMS, P.Detail.BITS)
        if h.flags:
            return error(P.Status.BAD_PARAMS, P.Detail.FLAGS)
        rows = self._shape[0]
        if h.count == 0 or h.offset + h.count > rows:
            return error(P.Status.BAD_PARAMS, P.Detail.COUNT)
        if len(payload) != P.THRESHOLD_HEADER + h.count * P.threshold_record_size(h.bits):
            return error(P.Status.BAD_LENGTH)
        if h.offset and (h.offset != self._t_loaded or h.bits != self._t_bits):
            return error(P.Status.BAD_STATE, P.Detail.SEQUENCE)
        if h.offset == 0:
            self._t_bits = h.bits
            self._thresholds = np.zeros((self.info.max_rows, levels(h.bits)), dtype=np.int64)
            self._direction = np.ones(self.info.max_rows, dtype=np.int64)
        thresholds, direction = h.rows()
        self._thresholds[h.offset:h.offset + h.count] = thresholds
        self._direction[h.offset:h.offset + h.count] = direction
        self._t_loaded = h.offset + h.count
        return P.Status.OK, self._t_loaded.to_bytes(2, "little")

    def _accumulate(self, payload, error):
        if len(payload) < P.ACCUMULATE_HEADER:
            return error(P.Status.BAD_LENGTH)
        if not self.matrix_ready:
            return error(P.Status.BAD_STATE, P.Detail.NO_MATRIX)
        h = P.decode_accumulate_header(payload)
        detail = self._bad_bits_or_flags(h.bits, h.flags, P.FLAG_SIGNED | P.FLAG_FIRST
                                         | (P.FLAG_WINDOW if self.info.fmap_codes else 0))
        if detail is not None:
            return error(P.Status.BAD_PARAMS, detail)
        if h.mantissa >> SCALE_MANTISSA_BITS:
            return error(P.Status.BAD_PARAMS, P.Detail.SCALE)
        rows, cols = self._shape[:2]
        if h.count == 0 or h.slot + h.count * rows > self.info.sum_slots:
            return error(P.Status.BAD_PARAMS, P.Detail.COUNT)
        if len(payload) != P.ACCUMULATE_HEADER + self._data_size(h, cols):
            return error(P.Status.BAD_LENGTH)
        failed = self._window_error(h.flags, h.bits, h.window, h.count)
        if failed:
            return error(*failed)
        partials = self._products(h).ravel().tolist()
        for index, partial in enumerate(partials, h.slot):
            total = aligned_term(h.mantissa, partial, h.shift) + (0 if h.first else self._sums[index])
            self._sums[index] = wrap_sum(total, self.info.sum_bits)
        self.stats["terms"] += len(partials)
        return P.Status.OK, b""

    def _read_sums(self, payload, error):
        if len(payload) != P.READ_SUMS_HEADER:
            return error(P.Status.BAD_LENGTH)
        h = P.decode_read_sums(payload)
        if h.width != P.SUM_FLOAT32 and not 1 <= h.width <= P.sum_width(self.info.sum_bits):
            return error(P.Status.BAD_PARAMS, P.Detail.WIDTH)
        if h.count == 0 or h.slot + h.count > self.info.sum_slots:
            return error(P.Status.BAD_PARAMS, P.Detail.COUNT)
        if P.sums_reply_size(h.count, h.width) > self.info.max_payload:
            return error(P.Status.BAD_PARAMS, P.Detail.REPLY_TOO_BIG)
        return P.Status.OK, P.encode_sums(self._sums[h.slot:h.slot + h.count], h.width)

    def _load_fmap(self, payload, error):
        if len(payload) < P.LOAD_FMAP_HEADER:
            return error(P.Status.BAD_LENGTH)
        h = P.decode_load_fmap_header(payload)
        if not 1 <= h.bits <= self.info.max_bits:
            return error(P.Status.BAD_PARAMS, P.Detail.BITS)
        if h.shape.problems(self.info.fmap_codes):
            return error(P.Status.BAD_PARAMS, P.Detail.SHAPE)
        if h.count == 0 or h.offset + h.count > h.shape.codes:
            return error(P.Status.BAD_PARAMS, P.Detail.COUNT)
        if len(payload) != P.LOAD_FMAP_HEADER + P.packed_size(h.count, h.bits):
            return error(P.Status.BAD_LENGTH)
        head = (h.channels, h.height, h.width, h.bits)
        if h.offset and (head != self._f_head or h.offset != self._f_loaded):
            return error(P.Status.BAD_STATE, P.Detail.SEQUENCE)
        if h.offset == 0:
            self._f_head = head
            self._fmap = np.zeros(h.shape.codes, dtype=np.int64)
        self._fmap[h.offset:h.offset + h.count] = P.unpack_codes(h.data, h.bits, h.count)
        self._f_loaded = h.offset + h.count
        return P.Status.OK, self._f_loaded.to_bytes(4, "little")
