"""Host driver of the training core: transports and a client for the link
protocol (:mod:`sw.protocol`).  Torch-free (numpy at most), so the simulated
core (``sim``) and tools use it without the golden model; the engine that runs
a model's products on a core is :class:`sw.core_engine.CoreEngine`.

* :class:`Transport` -- bytes in, bytes out: :class:`LoopbackTransport` (an
  in-process :class:`sw.core_model.CoreModel`) and :class:`SerialTransport`
  (a UART through pyserial).
* :class:`CoreClient` -- PING, RESET, LOAD_MATRIX, RUN, LOAD_THRESHOLDS, ACCUMULATE,
  READ_SUMS, LOAD_FMAP and the windowed RUN, ACCUMULATE and LOAD_MATRIX
  (:meth:`CoreClient.load_fmap`, :meth:`CoreClient.run_window`,
  :meth:`CoreClient.accumulate_window`, :meth:`CoreClient.load_matrix_window`: vectors,
  or a matrix's rows, made on the core from a feature map), and :meth:`CoreClient.matmul`, which tiles a GEMM of any size to the
  core's limits, and :meth:`CoreClient.batch_sums`, a batch's scaled sum of GEMMs.  Nothing is retried:
  every failure raises a :class:`sw.protocol.ProtocolError` (a device that
  echoes the request back, :data:`ECHO_MESSAGE`, a :class:`LinkError`).
"""

from __future__ import annotations

import abc
import os
import sys
import time

import numpy as np

from . import protocol as P
from .contract.backends import BAUD_TOLERANCE, DEFAULT_BAUD, SERIAL_PREFIX, baud_error
from .contract.codes import levels
from .contract.gradients import SCALE_MANTISSA_BITS, sum_bits
from .contract.window import MAX_SIDE, POOLS, FmapShape, Window, pooled_vectors
from .protocol import (CoreError, CoreInfo, FramingError, LinkError, LinkTimeout, ProtocolError,
                       check_core_info)

__all__ = ["Transport", "LoopbackTransport", "SerialTransport", "CoreClient", "ECHO_MESSAGE", "DEFAULT_TIMEOUT_S",
           "wire_shift",
           "ProtocolError", "LinkError", "LinkTimeout", "CoreError", "FramingError"]

#: Seconds :class:`CoreClient` waits for each reply, unless it or its transport
#: (:attr:`Transport.reply_timeout`) says otherwise.
DEFAULT_TIMEOUT_S = 2.0

#: What :class:`CoreClient` raises (as a :class:`LinkError`) when the answer to
#: a request is that request itself: a serial loopback plug, a port wired
#: back to itself, or another device that echoes.
ECHO_MESSAGE = "the device echoes what it is sent: not a DoReFa core (wrong port or a loopback?)"


# --------------------------------------------------------------------------- transports

class Transport(abc.ABC):
    """A byte pipe to a core."""

    #: Whether the core may hold half a request from before this link was opened
    #: (a serial line: an earlier session, a pulled cable).  :class:`CoreClient`
    #: then keeps the line idle for its recovery time before the first request,
    #: so the core's idle timeout drops it.
    may_hold_partial_request = False

    #: Seconds a :class:`CoreClient` on this link waits for each reply when not
    #: given a ``timeout``; ``None``: :data:`DEFAULT_TIMEOUT_S`.  A transport to a
    #: slow (simulated) core sets it, so whoever opens the transport also knows
    #: how long its core may take.
    reply_timeout: float | None = None

    #: The bit rate of the UART this link crosses, or ``None`` where no rate matters (an
    #: in-process core, a pseudo-terminal).  A :class:`CoreClient`'s PING checks it
    #: against the rate the core reports, and a first PING that fails names it.
    baudrate: int | None = None

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of ``data`` (raises :class:`LinkError` if the link is dead)."""

    @abc.abstractmethod
    def read(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes, waiting at most ``timeout`` seconds for the first;
        ``b""`` when none came (or none can come)."""

    def close(self) -> None:
        """Release the link (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LoopbackTransport(Transport):
    """The core model in this process: what is written is fed to it at once,
    its reply bytes wait to be read.  With ``clock`` (e.g. ``time.monotonic``)
    the model's idle timeout runs on that clock."""

    def __init__(self, core, *, clock=None):
        self.core = core
        self.clock = clock
        self._rx = bytearray()
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkError("loopback transport is closed")
        self._rx += self.core.feed(bytes(data), now=None if self.clock is None else self.clock())

    def read(self, size: int, timeout: float) -> bytes:
        if self._closed:
            raise LinkError("loopback transport is closed")
        data = bytes(self._rx[:size])
        del self._rx[:size]
        return data  # nothing more can arrive without a write: never wait

    def close(self) -> None:
        self._closed = True


def _is_pseudo_terminal(device) -> bool:
    """Whether ``device`` is a (Unix 98) pseudo-terminal, ``/dev/pts/N``: no UART, no bit rate."""
    try:
        return os.path.realpath(device).startswith("/dev/pts/")
    except (TypeError, ValueError, OSError):
        return False


class SerialTransport(Transport):
    """A UART (or any pyserial port, e.g. a pseudo-terminal) at ``baudrate`` bits per
    second (default :data:`sw.contract.backends.DEFAULT_BAUD`, 3 Mbaud; a board core
    built with ``dorefa build --baud 115200`` needs ``115200``).  A pseudo-terminal
    ignores the rate: on one, :attr:`baudrate` is ``None``."""

    may_hold_partial_request = True

    def __init__(self, device: str, baudrate: int = DEFAULT_BAUD, timeout: float = DEFAULT_TIMEOUT_S):
        import serial  # pyserial; imported here so the rest works without it

        self._serial_mod = serial
        self.device = device
        self.baudrate = None if _is_pseudo_terminal(device) else baudrate
        try:
            self.port = serial.Serial(device, baudrate=baudrate, timeout=timeout, write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open serial device {device!r} at {baudrate} baud: {e}") from e

    def _fail(self, what, e):
        if isinstance(e, self._serial_mod.SerialTimeoutException):
            return LinkTimeout(f"{what} on {self.device!r} timed out: {e}")
        return LinkError(f"{what} on {self.device!r} failed (device gone?): {e}")

    def write(self, data: bytes) -> None:
        if self.port is None:
            raise LinkError(f"serial device {self.device!r} is closed")
        try:
            self.port.write(bytes(data))
            self.port.flush()
        except (self._serial_mod.SerialException, OSError) as e:
            raise self._fail("write", e) from e

    def read(self, size: int, timeout: float) -> bytes:
        if self.port is None:
            raise LinkError(f"serial device {self.device!r} is closed")
        try:
            self.port.timeout = max(0.0, timeout)
            first = self.port.read(1)
            if not first or size <= 1:
                return first
            waiting = self.port.in_waiting
            return first + (self.port.read(min(waiting, size - 1)) if waiting else b"")
        except (self._serial_mod.SerialException, OSError) as e:
            raise self._fail("read", e) from e

    def close(self) -> None:
        port, self.port = getattr(self, "port", None), None
        if port is not None:
            try:
                port.close()
            except (self._serial_mod.SerialException, OSError):
                pass


# --------------------------------------------------------------------------- client

def _is_echo(frame: P.Frame, cmd: int, payload: bytes) -> bool:
    """Whether ``frame`` (received with the request's tag) is byte for byte the
    request ``cmd`` / ``payload`` come back.

    Requests and replies share one frame format and byte 1's values overlap
    (PING is 0x01, as is BAD_CRC), so only the whole frame tells them apart.
    An OK reply (status 0x00) never equals a request (commands start at
    0x01); an error reply could only if its 2-byte payload named this very
    command, as :func:`sw.protocol.decode_error` expects -- such a frame is
    taken for what a core would mean by it, an error reply.
    """
    if frame.code != cmd or frame.payload != bytes(payload):
        return False
    return not (len(frame.payload) == P.ERROR_PAYLOAD and frame.payload[0] == cmd)


def _serial_spec(transport: Transport, rate) -> str:
    """``serial:DEVICE@RATE`` for ``transport``'s device (``DEVICE`` if it has none)."""
    return f"{SERIAL_PREFIX}{getattr(transport, 'device', 'DEVICE')}@{rate}"


def wire_shift(shift) -> int:
    """The ACCUMULATE ``shift`` that sends a sample's alignment ``shift`` (``>= 0``): the
    wire's shift is a byte, and any shift past :data:`sw.protocol.MAX_SHIFT` floors the same
    term (to 0 or -1) as it, since ``|M * I| < 2**(24 + 32)`` is gone after ``GUARD_BITS + 56``."""
    return min(int(shift), P.MAX_SHIFT)


def _bits(bits, what: str, max_bits: int) -> int:
    if isinstance(bits, bool) or int(bits) != bits or not 1 <= int(bits) <= max_bits:
        raise ValueError(f"{what} must be 1..{max_bits} on this core, got {bits!r}")
    return int(bits)


def _codes(codes, ndim: int, what: str) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor can only come from a process that imported torch
    if torch is not None and isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {codes.shape}")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{what} must be integer codes, got dtype {codes.dtype}")
    return codes.astype(np.int64, copy=False)


def _check_loaded(command: str, reply: bytes, expected: int) -> None:
    """A LOAD_MATRIX or LOAD_FMAP reply (``loaded u32``) saying ``expected`` codes: else ``FramingError``."""
    loaded = int.from_bytes(reply, "little") if len(reply) == 4 else None
    if loaded != expected:
        raise FramingError(f"{command} reply says {loaded} codes loaded, expected {expected}")


class CoreClient:
    """Requests to a core over ``transport``, one at a time (lock step).

    ``timeout``: seconds to wait for each reply (default: the transport's
    :attr:`~Transport.reply_timeout`, else :data:`DEFAULT_TIMEOUT_S`).  Every failure raises:
    :class:`CoreError` (the core said no), :class:`LinkTimeout` /
    :class:`LinkError` (no answer), :class:`FramingError` (a garbled answer).
    After a lost reply the next request waits ``recovery`` seconds first, so
    the core's idle timeout can drop whatever it half received; so does the
    first request on a link that may carry such a leftover
    (:attr:`Transport.may_hold_partial_request`: a serial line).
    """

    def __init__(self, transport: Transport, timeout: float | None = None, *,
                 recovery: float = P.HOST_RECOVERY_S):
        self.transport = transport
        if timeout is None:
            timeout = transport.reply_timeout if transport.reply_timeout is not None else DEFAULT_TIMEOUT_S
        self.timeout = float(timeout)
        self.recovery = float(recovery)
        self._decoder = P.FrameDecoder(P.MAX_PAYLOAD, backtrack=True)
        self._tag = 0
        self._recover_until = time.monotonic() + self.recovery if transport.may_hold_partial_request else 0.0
        self._info: CoreInfo | None = None
        self._matrix = None  # (rows, cols, bits, signed) of the complete matrix on the core
        self._thresholds = None  # activation bits of the thresholds loaded for that matrix
        self._fmap = None  # (FmapShape, bits) of the complete feature map on the core
        self.stats = {"requests": 0, "bytes_out": 0, "bytes_in": 0, "stale_replies": 0, "bad_frames": 0}

    # ------------------------------------------------------------------ raw requests

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one request, return the OK reply's payload (or raise)."""
        wait = self._recover_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        tag = self._tag
        self._tag = (self._tag + 1) & 0xFF
        frame = P.encode_frame(cmd, payload, tag)
        self.transport.write(frame)
        self.stats["requests"] += 1
        self.stats["bytes_out"] += len(frame)
        name = P.command_name(cmd)
        deadline = time.monotonic() + self.timeout
        bad = []
        while True:
            remaining = deadline - time.monotonic()
            data = self.transport.read(1 << 16, remaining) if remaining > 0 else b""
            if not data:
                self._recover_until = time.monotonic() + self.recovery
                self._decoder.reset()  # whatever half frame it holds will never complete
                if bad:
                    raise FramingError(f"no valid reply to {name} within {self.timeout:g} s; "
                                       f"{len(bad)} corrupt frame(s) received: "
                                       + ", ".join(f"{e.status.name} (LEN {e.length})" for e in bad[:3]))
                raise LinkTimeout(f"no reply to {name} within {self.timeout:g} s (link dead or core wedged)")
            self.stats["bytes_in"] += len(data)
            for event in self._decoder.feed(data):
                if isinstance(event, P.FrameError):
                    self.stats["bad_frames"] += 1
                    bad.append(event)
                elif event.tag != tag:
                    self.stats["stale_replies"] += 1
                elif _is_echo(event, cmd, payload):
                    raise LinkError(f"{ECHO_MESSAGE}; the answer to {name} was the request itself")
                elif event.code != P.Status.OK:
                    raise P.decode_error(event.code, event.payload, cmd)
                else:
                    return event.payload

    # ------------------------------------------------------------------ commands

    def ping(self) -> CoreInfo:
        """The core's capabilities (checked against the protocol's invariants and, on a
        serial line, the core's UART rate against the line's: :meth:`_check_baud`).

        Until a PING has succeeded on a serial line, a lost or garbled reply says the
        rate the line runs at: a core built for another rate answers garbage or nothing.
        """
        rate = self.transport.baudrate
        try:
            payload = self.request(P.Cmd.PING)
        except (LinkTimeout, FramingError) as e:
            if rate is None or self._info is not None:
                raise
            raise type(e)(f"{e}; the line runs at {rate} baud and a core built for another rate answers "
                          f"garbage or nothing: open it at the core's rate ({_serial_spec(self.transport, 'RATE')}) "
                          f"or rebuild the core with dorefa build --baud {rate}") from e
        info = P.decode_ping_reply(payload)
        check_core_info(info)
        self._check_baud(info)
        self._info = info
        return info

    def _check_baud(self, info: CoreInfo) -> None:
        """``LinkError`` if the core reports a UART rate (nonzero) that differs from the serial
        line's by more than :data:`sw.contract.backends.BAUD_TOLERANCE`."""
        rate = self.transport.baudrate
        if not info.baud or rate is None or baud_error(info.baud, rate) <= BAUD_TOLERANCE:
            return
        raise LinkError(f"the core's UART runs at {info.baud} baud but this host opened the line at {rate} baud "
                        f"({100 * baud_error(info.baud, rate):.1f} % apart; at most {100 * BAUD_TOLERANCE:g} % "
                        f"works): open it as {_serial_spec(self.transport, info.baud)} or rebuild the core "
                        f"with dorefa build --baud {rate}")

    @property
    def info(self) -> CoreInfo:
        """Capabilities, from a PING on first use."""
        return self._info if self._info is not None else self.ping()

    def reset(self) -> None:
        """Forget the core's matrix, thresholds and feature map (and zero its sums)."""
        self._matrix = None
        self._thresholds = None
        self._fmap = None
        self.request(P.Cmd.RESET)

    def load_matrix(self, codes, bits: int, signed: bool) -> None:
        """Load ``codes`` (rows x cols, within the core's limits), over as many frames as needed."""
        info = self.info
        codes = _codes(codes, 2, "matrix codes")
        bits = _bits(bits, "matrix bits", info.max_bits)
        rows, cols = codes.shape
        if not (1 <= rows <= info.max_rows and 1 <= cols <= info.max_cols):
            raise ValueError(f"matrix {rows}x{cols} exceeds the core's {info.max_rows}x{info.max_cols} "
                             "(use matmul, which tiles)")
        if codes.min() < 0 or codes.max() >> bits:
            raise ValueError(f"matrix codes must be in [0, {(1 << bits) - 1}] for {bits} bits")
        flat = codes.ravel()
        per_frame = min((info.max_payload - P.LOAD_HEADER) * 8 // bits, 0xFFFF)
        self._matrix = None
        self._thresholds = None  # the core forgets them with a new matrix
        for offset in range(0, flat.size, per_frame):
            chunk = flat[offset:offset + per_frame]
            reply = self.request(P.Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, cols, bits, signed, offset, chunk))
            _check_loaded("LOAD_MATRIX", reply, offset + chunk.size)
        self._matrix = (rows, cols, bits, bool(signed))

    def load_thresholds(self, thresholds, direction, bits: int) -> None:
        """Load the activation stage's thresholds for every row of the loaded matrix:
        ``thresholds`` (rows, 2**bits - 1) int32, ``direction`` (rows,) of +1 / -1
        (:func:`sw.numeric.fold_thresholds`), over as many frames as needed."""
        if self._matrix is None:
            raise ValueError("no matrix loaded by this client: call load_matrix before load_thresholds")
        info = self.info
        if not info.max_act_bits:
            raise ValueError("this core has no activation stage (PING reports max_act_bits = 0)")
        bits = _bits(bits, "activation bits", info.max_act_bits)
        rows = self._matrix[0]
        thresholds = _codes(thresholds, 2, "thresholds")
        direction = _codes(direction, 1, "directions")
        if thresholds.shape != (rows, (1 << bits) - 1) or direction.shape != (rows,):
            raise ValueError(f"thresholds must be ({rows}, {(1 << bits) - 1}) and directions ({rows},) for the "
                             f"loaded {rows}-row matrix at {bits} activation bits, got {thresholds.shape} "
                             f"and {direction.shape}")
        P.check_directions(direction)
        per_frame = (info.max_payload - P.THRESHOLD_HEADER) // P.threshold_record_size(bits)
        self._thresholds = None
        for offset in range(0, rows, per_frame):
            part = slice(offset, offset + per_frame)
            reply = self.request(P.Cmd.LOAD_THRESHOLDS,
                                 P.encode_load_thresholds(offset, bits, thresholds[part], direction[part]))
            loaded = int.from_bytes(reply, "little") if len(reply) == 2 else None
            if loaded != min(offset + per_frame, rows):
                raise FramingError(f"LOAD_THRESHOLDS reply says {loaded} rows loaded, "
                                   f"expected {min(offset + per_frame, rows)}")
        self._thresholds = bits

    def _vectors(self, vectors, bits) -> tuple[np.ndarray, int]:
        """``(vectors, bits)`` checked against the core and the loaded matrix (``ValueError``)."""
        vectors = _codes(vectors, 2, "vectors")
        bits = _bits(bits, "vector bits", self.info.max_bits)
        cols = self._matrix[1]
        if vectors.shape[1] != cols:
            raise ValueError(f"vectors have {vectors.shape[1]} codes, the loaded matrix has {cols} columns")
        if vectors.size and (vectors.min() < 0 or vectors.max() >> bits):
            raise ValueError(f"vector codes must be in [0, {(1 << bits) - 1}] for {bits} bits")
        return vectors, bits

    @property
    def packs_accumulators(self) -> bool:
        """Whether this core packs a RUN reply's accumulators (PING's ``packed_accumulators``):
        then every RUN of this client that replies accumulators asks for it (``FLAG_PACKED``)."""
        return bool(self.info.packed_accumulators)

    def reply_bits(self, cols: int, m_bits: int, v_bits: int) -> int:
        """Bits each accumulator of a RUN of ``v_bits`` codes on a ``cols``-column matrix of
        ``m_bits`` takes in this core's reply: :func:`sw.protocol.accumulator_bits` packed,
        else 8 x :func:`sw.protocol.accumulator_width`."""
        return (P.accumulator_bits(cols, m_bits, v_bits) if self.packs_accumulators
                else 8 * P.accumulator_width(cols, m_bits, v_bits))

    def _accumulators(self, reply: bytes, count: int, rows: int, cols: int, m_bits: int, v_bits: int) -> np.ndarray:
        """The ``(count, rows)`` accumulators of a RUN reply (:meth:`reply_bits` each)."""
        if self.packs_accumulators:
            return P.decode_packed_accumulators(reply, count, rows, P.accumulator_bits(cols, m_bits, v_bits))
        return P.decode_accumulators(reply, count, rows, P.accumulator_width(cols, m_bits, v_bits))

    def vectors_per_run(self, cols: int, rows: int, v_bits: int, m_bits: int, *, codes: bool,
                        act_bits: int = 0) -> int:
        """The most vectors one RUN takes here (:meth:`run`, :meth:`run_window` split at it):
        its reply must fit a frame (accumulators of ``rows`` rows, or with ``act_bits`` their
        activation codes), its count field must hold it and, with ``codes`` (the vectors in
        the request, not a window), the request itself must fit."""
        info = self.info
        per = (info.max_payload * 8 // (act_bits * rows) if act_bits
               else (info.max_payload - P.RUN_REPLY_HEADER) * 8 // (self.reply_bits(cols, m_bits, v_bits) * rows))
        if codes:
            per = min(per, (info.max_payload - P.RUN_HEADER) * 8 // (cols * v_bits))
        return max(1, min(per, 0xFFFF))

    def run(self, vectors, bits: int, signed: bool, *, activate: bool = False) -> np.ndarray:
        """``(N, rows)`` int64: each of ``vectors`` (N x cols codes) against the loaded
        matrix: accumulators, or with ``activate`` the activation codes of the
        loaded thresholds."""
        if self._matrix is None:
            raise ValueError("no matrix loaded by this client: call load_matrix first")
        if activate and self._thresholds is None:
            raise ValueError("no thresholds loaded for this matrix: call load_thresholds first")
        rows, cols, m_bits, _ = self._matrix
        vectors, bits = self._vectors(vectors, bits)
        packed = self.packs_accumulators and not activate
        per_frame = self.vectors_per_run(cols, rows, bits, m_bits, codes=True,
                                         act_bits=self._thresholds if activate else 0)
        out = np.empty((vectors.shape[0], rows), dtype=np.int64)
        for start in range(0, vectors.shape[0], per_frame):
            chunk = vectors[start:start + per_frame]
            reply = self.request(P.Cmd.RUN, P.encode_run(bits, signed, chunk, activate=activate, packed=packed))
            out[start:start + chunk.shape[0]] = (
                P.decode_activations(reply, chunk.shape[0], rows, self._thresholds) if activate
                else self._accumulators(reply, chunk.shape[0], rows, cols, m_bits, bits))
        return out

    def matmul(self, vectors, v_bits: int, v_signed: bool, matrix, m_bits: int, m_signed: bool) -> np.ndarray:
        """``value(vectors) @ value(matrix).T`` as int64 ``(N, O)`` for any sizes, tiled
        to the core's limits; equals :func:`sw.bitplanes.signed_matmul`
        ``(vectors, n_v or None, v_bits, matrix, n_m or None, m_bits)``."""
        info = self.info
        vectors = _codes(vectors, 2, "vectors")
        matrix = _codes(matrix, 2, "matrix codes")
        if vectors.shape[1] != matrix.shape[1]:
            raise ValueError(f"vectors {vectors.shape} and matrix {matrix.shape} differ in length")
        n, k = vectors.shape
        o = matrix.shape[0]
        out = np.zeros((n, o), dtype=np.int64)
        if n == 0 or o == 0:
            return out
        if k == 0:
            raise ValueError("cannot multiply zero-length vectors on the core")
        for r0 in range(0, o, info.max_rows):
            for c0 in range(0, k, info.max_cols):
                self.load_matrix(matrix[r0:r0 + info.max_rows, c0:c0 + info.max_cols], m_bits, m_signed)
                out[:, r0:r0 + info.max_rows] += self.run(vectors[:, c0:c0 + info.max_cols], v_bits, v_signed)
        return out

    def matmul_bytes(self, n: int, k: int, o: int, v_bits: int, m_bits: int) -> int:
        """About the bytes of :meth:`matmul` of ``n`` vectors of ``k`` codes by ``o`` matrix
        rows on this core: the vectors once per row tile, the accumulators once per column
        tile (the matrix, the same size either way a product is lowered, and the frames'
        headers left out).  For choosing between lowerings, not a count."""
        info = self.info
        row_tiles, col_tiles = -(-o // info.max_rows), -(-k // info.max_cols)
        return (row_tiles * P.packed_size(n * k, v_bits)
                + col_tiles * P.packed_size(n * o, self.reply_bits(min(k, info.max_cols), m_bits, v_bits)))

    def can_activate(self, cols: int, act_bits: int) -> bool:
        """Whether :meth:`activations` can run ``cols``-long products at ``act_bits``
        here: the activation stage needs each row's whole sum in one matrix."""
        info = self.info
        return 1 <= cols <= info.max_cols and 1 <= act_bits <= info.max_act_bits

    def activations(self, vectors, v_bits: int, v_signed: bool, matrix, m_bits: int, m_signed: bool,
                    thresholds, direction, act_bits: int) -> np.ndarray:
        """Activation codes ``(N, O)`` of ``value(vectors) @ value(matrix).T``, thresholds
        applied on the core (:func:`sw.numeric.apply_thresholds` of :meth:`matmul`'s
        result): ``thresholds`` (O, 2**act_bits - 1), ``direction`` (O,).  The rows
        are tiled to the core's limits; the columns must fit one matrix
        (:meth:`can_activate`), since a threshold needs the whole sum."""
        info = self.info
        vectors = _codes(vectors, 2, "vectors")
        matrix = _codes(matrix, 2, "matrix codes")
        thresholds = _codes(thresholds, 2, "thresholds")
        direction = _codes(direction, 1, "directions")
        if vectors.shape[1] != matrix.shape[1]:
            raise ValueError(f"vectors {vectors.shape} and matrix {matrix.shape} differ in length")
        if not self.can_activate(matrix.shape[1], act_bits):
            raise ValueError(f"the core's activation stage takes up to {info.max_cols} columns and "
                             f"{info.max_act_bits} activation bits, got {matrix.shape[1]} columns at "
                             f"{act_bits} bits (use matmul and apply the thresholds on the host)")
        out = np.zeros((vectors.shape[0], matrix.shape[0]), dtype=np.int64)
        if vectors.shape[0] == 0:
            return out
        for r0 in range(0, matrix.shape[0], info.max_rows):
            rows = slice(r0, r0 + info.max_rows)
            self.load_matrix(matrix[rows], m_bits, m_signed)
            self.load_thresholds(thresholds[rows], direction[rows], act_bits)
            out[:, rows] = self.run(vectors, v_bits, v_signed, activate=True)
        return out

    # ------------------------------------------------------------------ batch sums

    def accumulate(self, vectors, bits: int, signed: bool, *, slot: int, mantissa: int, shift: int,
                   first: bool) -> None:
        """One sample's products of ``vectors`` (N x cols codes) with the loaded matrix into
        the core's sums ``slot .. slot + N * rows - 1`` (ACCUMULATE: ``floor(mantissa * out
        * 2**(GUARD_BITS - shift))`` each, :func:`sw.contract.gradients.aligned_term`; ``first``
        writes instead of adding), over as many frames as needed."""
        info = self.info
        if not info.sum_slots:
            raise ValueError("this core holds no batch sums (PING reports sum_slots = 0)")
        if self._matrix is None:
            raise ValueError("no matrix loaded by this client: call load_matrix first")
        rows, cols, _, _ = self._matrix
        vectors, bits = self._vectors(vectors, bits)
        if slot < 0 or slot + vectors.shape[0] * rows > info.sum_slots:
            raise ValueError(f"sums {slot} .. {slot + vectors.shape[0] * rows - 1} are not among the core's "
                             f"0 .. {info.sum_slots - 1}")
        if not 0 <= mantissa < 1 << SCALE_MANTISSA_BITS or not 0 <= shift <= P.MAX_SHIFT:
            raise ValueError(f"mantissa must be in [0, 2**{SCALE_MANTISSA_BITS}) and shift in 0..{P.MAX_SHIFT}, "
                             f"got {mantissa}, {shift}")
        per_frame = min((info.max_payload - P.ACCUMULATE_HEADER) * 8 // (cols * bits), 0xFFFF)
        for start in range(0, vectors.shape[0], per_frame):
            self.request(P.Cmd.ACCUMULATE, P.encode_accumulate(
                bits, signed, vectors[start:start + per_frame], slot=slot + start * rows, mantissa=mantissa,
                shift=shift, first=first))

    def read_sums(self, slot: int, count: int, width: int) -> list[int]:
        """Sums ``slot .. slot + count - 1`` of the core, each read as its low ``width``
        bytes (sign-extended), or for ``width`` :data:`~sw.protocol.SUM_FLOAT32` as its
        binary32 pattern (4 bytes), given as the integer ``truncate_sum(S)``
        (:mod:`sw.contract.gradients`), over as many frames as needed."""
        info = self.info
        if not info.sum_slots:
            raise ValueError("this core holds no batch sums (PING reports sum_slots = 0)")
        if width != P.SUM_FLOAT32 and not 1 <= width <= P.sum_width(info.sum_bits):
            raise ValueError(f"sum width must be {P.SUM_FLOAT32} (binary32) or 1..{P.sum_width(info.sum_bits)} "
                             f"bytes, got {width}")
        if count < 0 or slot < 0 or slot + count > info.sum_slots:
            raise ValueError(f"sums {slot} .. {slot + count - 1} (count {count}) are not among the core's "
                             f"0 .. {info.sum_slots - 1}")
        per_frame = (info.max_payload - P.SUMS_REPLY_HEADER) // P.sum_bytes(width)
        sums = []
        for start in range(slot, slot + count, per_frame):
            n = min(per_frame, slot + count - start)
            sums += P.decode_sums(self.request(P.Cmd.READ_SUMS, P.encode_read_sums(start, n, width)), n, width)
        return sums

    def can_batch_sum(self, batch: int, cols: int, partial_bound: int) -> bool:
        """Whether :meth:`batch_sums` can sum ``batch`` samples of ``cols``-long products
        bounded by ``partial_bound`` here: the core holds sums wide enough
        (:func:`sw.contract.gradients.sum_bits`) and at least a tile of ``max_rows``, and
        each sample's product fits one matrix (a sum of floors is not the floor of a sum)."""
        info = self.info
        return (info.sum_slots >= info.max_rows and 1 <= cols <= info.max_cols and batch >= 1
                and sum_bits(batch, partial_bound) <= info.sum_bits)

    def batch_sums(self, vectors, v_bits: int, v_signed: bool, matrices, m_bits: int, m_signed: bool,
                   mantissas, shifts) -> np.ndarray:
        """The batch sum ``S[n][o] = sum_b aligned_term(mantissas[b], out_b[n][o], shifts[b])``
        of the products ``out_b = value(vectors[b]) @ value(matrices[b]).T`` (``vectors``
        ``(B, N, K)``, ``matrices`` ``(B, O, K)`` codes, ``K`` within the core's columns), made
        on the core's sums and read as binary32 (4 bytes a sum): an ``(N, O)`` array of
        the Python ints ``truncate_sum(S)`` (:mod:`sw.contract.gradients`, all the weight
        gradient needs).  Each tile of rows and vectors that fits the sums is accumulated
        over the batch, then read."""
        info = self.info
        vectors = _codes(vectors, 3, "vectors")
        matrices = _codes(matrices, 3, "matrices")
        batch, n, k = vectors.shape
        o = matrices.shape[1]
        if matrices.shape[0] != batch or matrices.shape[2] != k or len(mantissas) != batch or len(shifts) != batch:
            raise ValueError(f"vectors {vectors.shape}, matrices {matrices.shape}, {len(mantissas)} mantissas "
                             f"and {len(shifts)} shifts do not describe one batch")
        bound = k * levels(v_bits) * levels(m_bits)
        if not self.can_batch_sum(batch, k, bound):
            raise ValueError(f"this core cannot sum {batch} samples of {k}-long products here "
                             f"(sum_slots {info.sum_slots}, sum_bits {info.sum_bits}, max_cols {info.max_cols}; "
                             f"see can_batch_sum)")
        width = P.SUM_FLOAT32  # the core holds S whole (can_batch_sum); 4 bytes of it cross the link
        out = np.empty((n, o), dtype=object)
        for r0 in range(0, o, info.max_rows):
            rows = slice(r0, r0 + info.max_rows)
            height = len(range(o)[rows])
            step = info.sum_slots // height
            for v0 in range(0, n, step):
                chunk = slice(v0, v0 + step)
                for b in range(batch):
                    self.load_matrix(matrices[b, rows], m_bits, m_signed)
                    self.accumulate(vectors[b, chunk], v_bits, v_signed, slot=0, mantissa=int(mantissas[b]),
                                    shift=wire_shift(shifts[b]), first=b == 0)
                count = len(range(n)[chunk])
                out[chunk, rows] = np.array(self.read_sums(0, count * height, width),
                                            dtype=object).reshape(count, height)
        return out

    # ------------------------------------------------------------------ feature maps, windows

    @property
    def fmap_codes(self) -> int:
        """Codes of the core's feature map (PING's ``fmap_codes``; 0: it has none)."""
        return self.info.fmap_codes

    def _fmap_problems(self, shape: FmapShape, bits: int) -> list[str]:
        """Why this core cannot hold a ``shape`` map of ``bits``-bit codes (empty: it can)."""
        info = self.info
        if not info.fmap_codes:
            return ["this core holds no feature map (PING reports fmap_codes = 0)"]
        problems = []
        if not 1 <= bits <= info.max_bits:
            problems.append(f"map bits {bits} not in 1..{info.max_bits}")
        if shape.height > MAX_SIDE or shape.width > MAX_SIDE or shape.channels > 0xFFFF:
            problems.append(f"feature map {shape.channels} x {shape.height} x {shape.width}: sides must be at "
                            f"most {MAX_SIDE}, channels at most 65535")
        return problems + shape.problems(info.fmap_codes)

    def can_window(self, channels: int, height: int, width: int, bits: int, window: Window | None = None) -> bool:
        """Whether :meth:`load_fmap` takes a ``channels x height x width`` map of ``bits``-bit
        codes here (and, given ``window``, whether the core takes that window on it)."""
        shape = FmapShape(channels, height, width)
        return not self._fmap_problems(shape, bits) and not (
            window is not None and window.problems(shape, self.info.max_pool))

    def can_pool(self, pool: int, height: int, width: int) -> bool:
        """Whether :meth:`run_window` can max-pool ``pool x pool`` (a PATCH window's activation
        codes) here, on a ``height x width`` output: a pool the core has (PING's ``max_pool``)
        and at least one whole pooling window."""
        return pool in POOLS and pool <= self.info.max_pool and min(height, width) >= pool

    def load_fmap(self, codes, bits: int) -> None:
        """Load the feature map ``codes`` (channels x height x width, at most the core's
        ``fmap_codes``), over as many LOAD_FMAP frames as needed; it serves
        :meth:`run_window`, :meth:`accumulate_window` and :meth:`load_matrix_window` until
        the next one or a reset."""
        codes = _codes(codes, 3, "feature map codes")
        shape = FmapShape(*codes.shape)
        problems = self._fmap_problems(shape, bits)
        if problems:
            raise ValueError("cannot load the feature map: " + "; ".join(problems))
        if codes.min() < 0 or codes.max() >> bits:
            raise ValueError(f"feature map codes must be in [0, {(1 << bits) - 1}] for {bits} bits")
        flat = codes.ravel()
        per_frame = min((self.info.max_payload - P.LOAD_FMAP_HEADER) * 8 // bits, 0xFFFF)
        self._fmap = None
        for offset in range(0, flat.size, per_frame):
            chunk = flat[offset:offset + per_frame]
            reply = self.request(P.Cmd.LOAD_FMAP, P.encode_load_fmap(*codes.shape, bits, offset, chunk))
            _check_loaded("LOAD_FMAP", reply, offset + chunk.size)
        self._fmap = (shape, int(bits))

    def load_matrix_window(self, rows: int, cols: int, bits: int, signed: bool, window: Window) -> None:
        """Make the ``rows x cols`` matrix on the core from its feature map (LOAD_MATRIX with
        the window flag, protocol 8): row ``r`` is vector ``r`` of ``window`` (``bits``: the
        map's), so a map already on the core becomes the matrix without crossing the link
        again (a gradient's map, loaded for backward-input's windows, as backward-weight's
        matrix).  One request; checked before it is sent (``ValueError``)."""
        info = self.info
        if self._fmap is None:
            raise ValueError("no feature map loaded by this client: call load_fmap first")
        shape, f_bits = self._fmap
        if bits != f_bits:
            raise ValueError(f"a matrix made from the feature map has its bits ({f_bits}), got {bits}")
        if not (1 <= rows <= info.max_rows and 1 <= cols <= info.max_cols):
            raise ValueError(f"matrix {rows}x{cols} exceeds the core's {info.max_rows}x{info.max_cols}")
        problems = window.problems(shape, info.max_pool) + window.pool_problems(rows, False)
        if problems:
            raise ValueError(f"window {window} is not valid on the {shape.channels} x {shape.height} x "
                             f"{shape.width} map: " + "; ".join(problems))
        self._matrix = None
        self._thresholds = None  # the core forgets them with a new matrix
        reply = self.request(P.Cmd.LOAD_MATRIX, P.encode_load_matrix_window(rows, cols, bits, signed, window))
        _check_loaded("LOAD_MATRIX", reply, rows * cols)
        self._matrix = (rows, cols, bits, bool(signed))

    def _windows(self, count: int, bits: int, window: Window, per_request: int, *,
                 activate: bool = False) -> list[tuple[int, Window]]:
        """``(start, window advanced to start)`` of each request of at most ``per_request`` of
        ``count`` windowed vectors (a pooled window's: whole pooling windows), all checked before
        any is sent (``ValueError``); ``activate``: an activated RUN's."""
        if self._matrix is None:
            raise ValueError("no matrix loaded by this client: call load_matrix first")
        if self._fmap is None:
            raise ValueError("no feature map loaded by this client: call load_fmap first")
        shape, f_bits = self._fmap
        if bits != f_bits:
            raise ValueError(f"windowed vectors have the feature map's bits ({f_bits}), got {bits}")
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"count must be a whole number of vectors >= 0, got {count!r}")
        group = window.pool * window.pool
        if group > 1 and per_request < group:
            raise ValueError(f"a {window.pool} x {window.pool} pooling window's {group} vectors do not fit "
                             f"one request here ({per_request})")
        per_request -= per_request % group
        requests = [(start, window.advanced(start)) for start in range(0, int(count), per_request)]
        for start, advanced in requests:
            n = min(per_request, int(count) - start)
            problems = advanced.problems(shape, self.info.max_pool) + advanced.pool_problems(n, activate)
            if problems:
                raise ValueError(f"window {advanced} (vector {start} of {window}) is not valid on the "
                                 f"{shape.channels} x {shape.height} x {shape.width} map: " + "; ".join(problems))
            if any(v >= 1 << (8 * f.size) for f, v in zip(P.WINDOW_FIELDS.fields, advanced.fields())):
                raise ValueError(f"window {advanced} (vector {start} of {window}) does not fit the window header")
        return requests

    def run_window(self, count: int, bits: int, signed: bool, window: Window, *,
                   activate: bool = False) -> np.ndarray:
        """``(count, rows)`` int64: :meth:`run` of the ``count`` vectors the core makes from its
        feature map under ``window`` (:mod:`sw.contract.window`; ``bits``: the map's), split
        into requests whose replies fit, each with the window advanced to its first vector
        (:meth:`Window.advanced`).  Every request's window must be one the core takes (a SHIFT
        request may not start past the map's last channel): all are checked before any is sent.
        A pooled window (``window.pool > 1``, ``activate`` only) gives ``(count // pool**2,
        rows)``: each pooling window's max code per row."""
        if activate and self._thresholds is None:
            raise ValueError("no thresholds loaded for this matrix: call load_thresholds first")
        if self._matrix is None:
            raise ValueError("no matrix loaded by this client: call load_matrix first")
        rows, cols, m_bits, _ = self._matrix
        packed = self.packs_accumulators and not activate
        per_request = self.vectors_per_run(cols, rows, bits, m_bits, codes=False,
                                           act_bits=self._thresholds if activate else 0)
        group = window.pool * window.pool
        requests = self._windows(count, bits, window, per_request, activate=activate)
        out = np.empty((int(count) // group, rows), dtype=np.int64)
        for (start, advanced), end in zip(requests, [start for start, _ in requests[1:]] + [int(count)]):
            n = end - start
            reply = self.request(P.Cmd.RUN, P.encode_run_window(n, bits, signed, advanced, activate=activate,
                                                                packed=packed))
            out[start // group:end // group] = (
                P.decode_activations(reply, pooled_vectors(n, window.pool), rows, self._thresholds) if activate
                else self._accumulators(reply, n, rows, cols, m_bits, bits))
        return out

    def accumulate_window(self, count: int, bits: int, signed: bool, window: Window, *, slot: int, mantissa: int,
                          shift: int, first: bool) -> None:
        """:meth:`accumulate` of the ``count`` vectors the core makes from its feature map under
        ``window`` into the sums ``slot .. slot + count * rows - 1``, split into requests of at
        most 65,535 vectors (the header's count), each with the window advanced."""
        info = self.info
        if not info.sum_slots:
            raise ValueError("this core holds no batch sums (PING reports sum_slots = 0)")
        if self._matrix is None:
            raise ValueError("no matrix loaded by this client: call load_matrix first")
        rows = self._matrix[0]
        if slot < 0 or slot + count * rows > info.sum_slots:
            raise ValueError(f"sums {slot} .. {slot + count * rows - 1} are not among the core's "
                             f"0 .. {info.sum_slots - 1}")
        if not 0 <= mantissa < 1 << SCALE_MANTISSA_BITS or not 0 <= shift <= P.MAX_SHIFT:
            raise ValueError(f"mantissa must be in [0, 2**{SCALE_MANTISSA_BITS}) and shift in 0..{P.MAX_SHIFT}, "
                             f"got {mantissa}, {shift}")
        per_request = 0xFFFF
        for start, advanced in self._windows(count, bits, window, per_request):
            self.request(P.Cmd.ACCUMULATE, P.encode_accumulate_window(
                min(per_request, count - start), bits, signed, advanced, slot=slot + start * rows,
                mantissa=mantissa, shift=shift, first=first))

    def close(self) -> None:
        self.transport.close()
