"""Request scripts for the training core's testbenches (Amaranth and cocotb).

Shared by ``tests/hw/test_core.py`` (Amaranth simulator) and ``tb/core``
(cocotb), so it lives where both may import it.  It lives in ``sw`` because
it is made of ``sw`` alone: requests from :mod:`sw.protocol`'s encoders,
expected replies from :class:`sw.core_model.CoreModel`, accumulators from
:mod:`sw.bitplanes` (numpy; no torch of its own).  It drives no gateware,
so it has no reason to be in ``sim``, and ``tests`` may not import ``tb``.

A *script* is a list of steps: ``bytes`` (sent to the core's ``rx`` as they
are), :class:`Idle` (no byte offered for some cycles) and :class:`Reset` (the
core's reset held for two cycles).  Requests are built with
:mod:`sw.protocol`'s encoders, or broken on purpose (:func:`bad_requests`);
:func:`expected_replies` feeds the same steps to :class:`sw.core_model.CoreModel`
(an idle gap of at least the core's ``idle_timeout`` calls its
:meth:`~sw.core_model.CoreModel.idle`, a reset starts a fresh model): the
reply bytes the core must send, per reset-separated segment.

Activation stage: :func:`threshold_frames` (LOAD_THRESHOLDS), :func:`act_run_frame`
(RUN with the activate flag) and :func:`act_script` (matrix, thresholds drawn
by :func:`thresholds_for` around the accumulators the vectors will make, then
activated RUNs).  The model alone says what the codes are.

Batch sums: :func:`accumulate_frames` (ACCUMULATE), :func:`read_sums_frames`
(READ_SUMS) and :func:`sums_script` (a batch of samples, each a matrix and
its vectors accumulated with a scale drawn from the extremes, then the sums
read at full and narrower widths); :func:`bad_sums_requests` every error.

Feature maps and windows: :func:`fmap_frames` (LOAD_FMAP), :func:`window_run_frame`
and :func:`window_run_frames` (RUN with the window flag, split where a reply
would not fit, each frame's window advanced), :func:`window_accumulate_frames`
(ACCUMULATE with the window flag) and :func:`window_script` (patches and shifts
of maps at every order, stride and pad, from channel, row and column starts,
activated, and accumulated into the sums); :func:`bad_window_requests` every
error of LOAD_FMAP and of the window flag.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np

from sw import protocol as P
from sw.bitplanes import signed_matmul
from sw.contract.codes import levels_or_none
from sw.contract.core import config_params
from sw.contract.gradients import SCALE_MANTISSA_BITS
from sw.contract.link import (ACCUMULATE_FIELDS, LOAD_FIELDS, LOAD_FMAP_FIELDS, READ_SUMS_FIELDS, RUN_FIELDS,
                              THRESHOLD_FIELDS, WINDOW_FIELDS)
from sw.contract.window import MAX_KERNEL, MAX_STRIDE, PATCH, POOLS, SHIFT, Window
from sw.core_model import CoreModel, window_vectors

__all__ = ["SMALL", "Idle", "Reset", "expected_replies", "CheckedRequest", "checked_requests",
           "describe_replies", "frame", "load_frames",
           "run_frame", "codes", "gemm_script", "bad_requests", "fuzz_script", "INT32_MIN", "INT32_MAX",
           "threshold_frames", "act_run_frame", "thresholds_for", "act_script", "threshold_rows_per_frame",
           "act_vectors_per_frame", "bad_thresholds_requests", "SUMS", "accumulate_frames", "read_sums_frames",
           "sums_script", "bad_sums_requests", "WINDOWS", "fmap_frames", "window_run_frame", "window_run_frames",
           "window_vectors_per_frame", "window_accumulate_frames", "window_script", "bad_window_requests",
           "accumulators_per_frame", "packed_script"]

#: Small enough to simulate quickly, with ragged folds (12 = 3 x 4, 6 = 3 x 2);
#: a 64-byte payload holds one row's thresholds at up to 3 activation bits.
SMALL = dict(max_rows=6, max_cols=12, max_bits=8, pe=2, simd=4, max_payload=64, max_act_bits=3)

#: SMALL with batch sums: 40 of them (not a power of two), 90 bits (not whole bytes:
#: READ_SUMS sign-extends to 12).
SUMS = dict(SMALL, sum_slots=40, sum_bits=90)

#: SUMS with a feature map of 300 codes (not a power of two; a 3 x 10 x 10 map) and
#: 18 columns (two channels of 3 x 3 patches; a ragged fold of 4 + 2 words at simd 4),
#: and packed accumulators (FLAG_PACKED), as the ULX3S's core.
WINDOWS = dict(SUMS, max_cols=18, fmap_codes=300, packed_accumulators=1, max_pool=4)

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@dataclass(frozen=True)
class Idle:
    """No byte offered for ``cycles`` cycles."""
    cycles: int


@dataclass(frozen=True)
class Reset:
    """Hold the core's reset for two cycles (the model starts afresh)."""


def expected_replies(script, params: dict, timeout: int, stats: "dict | None" = None) -> list[bytes]:
    """Per reset-separated segment: the model's reply bytes to that segment.

    ``stats``, if given, accumulates the models' counters (``vectors``,
    ``macs``, ``frames``, ``errors``, ``idle_drops``)."""
    params = config_params(params)
    models = [CoreModel(**params)]
    segments = [bytearray()]
    for step in script:
        if isinstance(step, Idle):
            if step.cycles >= timeout:
                models[-1].idle()
        elif isinstance(step, Reset):
            models.append(CoreModel(**params))
            segments.append(bytearray())
        else:
            segments[-1] += models[-1].feed(bytes(step))
    if stats is not None:
        for model in models:
            for key, value in model.stats.items():
                stats[key] = stats.get(key, 0) + value
    return [bytes(s) for s in segments]


@dataclass(frozen=True)
class CheckedRequest:
    """One request of a script as a core's request checks see it (:func:`checked_requests`):
    what the core held before it, the receiver's event, and the verdict and sizes the checks
    must find."""
    #: :meth:`sw.core_model.CoreModel.held` just before the request.
    held: dict
    #: The receiver's event: the frame's status (OK, or the error it found), command, tag, LEN, payload.
    status: int
    cmd: int
    tag: int
    length: int
    payload: bytes
    #: The reply's status and error detail (0 where OK).
    verdict: tuple
    #: Of an accepted request, what its execution is sized by, from the model's reply and
    #: what it holds after: RUN ``reply_size`` (the payload's bytes) and, unless activated, the
    #: width byte: ``width`` (bytes an accumulator) or, packed, ``packed_bits``; LOAD_MATRIX
    #: and LOAD_FMAP at offset 0 ``total`` / ``fmap_total`` (the codes held); READ_SUMS
    #: ``sums_bytes``, ``sum_bytes`` (where ``count > 0``) and ``sum_float`` (width 0).
    sizes: dict

    @property
    def ok(self) -> bool:
        return self.verdict[0] == P.Status.OK


def checked_requests(script, params: dict, timeout: int):
    """Each request of ``script`` (frames, ``(name, frame)`` pairs, :class:`Idle` gaps
    against ``timeout``, :class:`Reset`), the model executing it as it is yielded (:class:`CheckedRequest`)."""
    params = config_params(params)
    max_payload = params["max_payload"]
    model, decoder = CoreModel(**params), P.FrameDecoder(max_payload, backtrack=False)
    for step in script:
        if isinstance(step, Reset):
            model, decoder = CoreModel(**params), P.FrameDecoder(max_payload, backtrack=False)
            continue
        if isinstance(step, Idle):  # a gap past the timeout drops a partial frame
            if step.cycles >= timeout:
                decoder.reset()
            continue
        for event in decoder.feed(bytes(step[1] if isinstance(step, tuple) else step)):  # (name, frame) too
            held = model.held()
            if isinstance(event, P.FrameError):
                yield CheckedRequest(held, event.status, event.code, event.tag, event.length, b"",
                                     (event.status, 0), {})
                continue
            status, reply = model.execute(event.code, event.payload)
            detail = P.ERROR_FIELDS.unpack(reply)[1] if status != P.Status.OK else 0
            sizes = _sizes(event, reply, model.held()) if status == P.Status.OK else {}
            yield CheckedRequest(held, P.Status.OK, event.code, event.tag, len(event.payload), event.payload,
                                 (status, detail), sizes)


def _sizes(event, reply: bytes, held: dict) -> dict:
    """:attr:`CheckedRequest.sizes` of an accepted request."""
    payload = event.payload
    if event.code == P.Cmd.RUN:
        flags = RUN_FIELDS.unpack(payload[:RUN_FIELDS.size])[2]
        if flags & P.FLAG_ACTIVATE:
            return {"reply_size": len(reply)}
        return {"reply_size": len(reply), "packed_bits" if flags & P.FLAG_PACKED else "width": reply[0]}
    if event.code == P.Cmd.LOAD_MATRIX and LOAD_FIELDS.unpack(payload[:LOAD_FIELDS.size])[4] == 0:
        return {"total": held["matrix"]["total"]}
    if event.code == P.Cmd.LOAD_FMAP and LOAD_FMAP_FIELDS.unpack(payload[:LOAD_FMAP_FIELDS.size])[4] == 0:
        return {"fmap_total": held["fmap"]["total"]}
    if event.code == P.Cmd.READ_SUMS:
        _, count, width = READ_SUMS_FIELDS.unpack(payload[:READ_SUMS_FIELDS.size])
        sums_bytes = len(reply) - P.SUMS_REPLY_HEADER
        sizes = {"sums_bytes": sums_bytes, "sum_float": int(width == P.SUM_FLOAT32)}
        if count:
            sizes["sum_bytes"] = sums_bytes // count
        return sizes
    return {}


def describe_replies(data: bytes) -> list:
    """The reply frames in ``data``, decoded for an error message."""
    return [(e.status.name, e.code) if isinstance(e, P.FrameError) else (e.code, e.tag, e.payload.hex())
            for e in P.FrameDecoder(backtrack=True).feed(data)]


def frame(cmd, payload=b"", tag=0) -> bytes:
    """One request frame; ``tag`` modulo 256 (the scripts number a request's frames
    ``tag``, ``tag + 1`` ..., which on a large core outnumber a tag's values)."""
    return P.encode_frame(cmd, payload, tag & 0xFF)


def load_frames(matrix, bits, signed, *, chunk=None, tag=0, max_payload=SMALL["max_payload"]) -> list:
    """LOAD_MATRIX frames for ``matrix``, ``chunk`` codes each (default: as many as fit)."""
    rows, cols = matrix.shape
    flat = matrix.ravel()
    if chunk is None:
        chunk = (max_payload - P.LOAD_HEADER) * 8 // bits
    return [frame(P.Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, cols, bits, signed, offset,
                                                          flat[offset:offset + chunk]), tag + i)
            for i, offset in enumerate(range(0, flat.size, chunk))]


def run_frame(vectors, bits, signed, tag=0, *, packed=False) -> bytes:
    return frame(P.Cmd.RUN, P.encode_run(bits, signed, vectors, packed=packed), tag)


def accumulators_per_frame(rows, cols, m_bits, v_bits, *, packed=False, params=SMALL) -> int:
    """Vectors of ``rows`` accumulators whose RUN reply fits a frame: ``accumulator_width``
    bytes each, or with ``packed`` ``accumulator_bits`` bits."""
    room = params["max_payload"] - P.RUN_REPLY_HEADER
    if packed:
        return room * 8 // (P.accumulator_bits(cols, m_bits, v_bits) * rows)
    return room // (P.accumulator_width(cols, m_bits, v_bits) * rows)


def codes(rng, bits, shape) -> np.ndarray:
    """Random codes, some rows pinned to the ends of the range."""
    out = rng.integers(0, 1 << bits, size=shape)
    pinned = rng.random(shape[0]) < 0.2
    out[pinned] = rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
    return out


def gemm_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, vectors, *, chunk=None,
                packed=False, params=SMALL) -> list:
    """LOAD_MATRIX frames of a random ``rows x cols`` matrix (``chunk`` codes
    per frame, default as many as fit), then RUN frames of ``vectors`` random
    vectors (as many per frame as fit the request and the reply; ``packed``: the
    accumulators bit-packed, FLAG_PACKED)."""
    matrix = codes(rng, m_bits, (rows, cols))
    script = load_frames(matrix, m_bits, m_signed, chunk=chunk, max_payload=params["max_payload"])
    per_frame = min((params["max_payload"] - P.RUN_HEADER) * 8 // (cols * v_bits),
                    accumulators_per_frame(rows, cols, m_bits, v_bits, packed=packed, params=params))
    vecs = codes(rng, v_bits, (vectors, cols))
    for start in range(0, vectors, per_frame):
        script.append(run_frame(vecs[start:start + per_frame], v_bits, v_signed, tag=0x80 + start,
                                packed=packed))
    return script


def packed_script(rng, *, params=SMALL) -> list:
    """RUNs with their accumulators bit-packed (FLAG_PACKED) at every matrix and vector
    width pair the core takes (``accumulator_bits`` from 2 up to the widest), on random
    shapes: one row and one column, the widest matrix, ragged folds; each run's vectors
    in frames as full as their replies allow, then in frames of one to a few vectors
    (the packed stream's partial last byte in every reply)."""
    mr, mc, mb = params["max_rows"], params["max_cols"], params["max_bits"]
    script = []
    for m_bits in range(1, mb + 1):
        for v_bits in range(1, mb + 1):
            if (m_bits + v_bits) % 3 and (m_bits, v_bits) not in ((1, 1), (mb, mb)):
                continue  # a third of the pairs, the narrowest and the widest always
            rows = int(rng.choice([1, mr, int(rng.integers(1, mr + 1))]))
            cols = int(rng.choice([1, mc, int(rng.integers(1, mc + 1))]))
            vectors = int(rng.integers(1, 3 * accumulators_per_frame(rows, cols, m_bits, v_bits, packed=True,
                                                                     params=params) + 2))
            script += gemm_script(rng, rows, cols, m_bits, bool(rng.random() < 0.5), v_bits,
                                  bool(rng.random() < 0.5), min(vectors, 40), packed=True, params=params)
            vecs = codes(rng, v_bits, (int(rng.integers(1, 4)), cols))
            script.append(run_frame(vecs, v_bits, bool(rng.random() < 0.5), tag=0x40, packed=True))
    return script


def threshold_rows_per_frame(a_bits, params=SMALL) -> int:
    """Rows of thresholds at ``a_bits`` that fit one LOAD_THRESHOLDS frame."""
    return (params["max_payload"] - P.THRESHOLD_HEADER) // P.threshold_record_size(a_bits)


def threshold_frames(thresholds, direction, a_bits, *, chunk=None, tag=0, params=SMALL) -> list:
    """LOAD_THRESHOLDS frames for every row of ``thresholds`` ((rows, 2**a_bits - 1)
    int32) and ``direction`` ((rows,) of +1 / -1), ``chunk`` rows each (default: as many as fit)."""
    chunk = chunk or threshold_rows_per_frame(a_bits, params)
    return [frame(P.Cmd.LOAD_THRESHOLDS,
                  P.encode_load_thresholds(offset, a_bits, thresholds[offset:offset + chunk],
                                           direction[offset:offset + chunk]), tag + i)
            for i, offset in enumerate(range(0, len(direction), chunk))]


def act_run_frame(vectors, bits, signed, tag=0) -> bytes:
    """A RUN frame with the activate flag."""
    return frame(P.Cmd.RUN, P.encode_run(bits, signed, vectors, activate=True), tag)


def act_vectors_per_frame(rows, cols, v_bits, a_bits, params=SMALL) -> int:
    """Vectors of one activated RUN frame: the request and the packed reply must fit."""
    return min((params["max_payload"] - P.RUN_HEADER) * 8 // (cols * v_bits),
               params["max_payload"] * 8 // (rows * a_bits), 0xFFFF)


def thresholds_for(rng, acc, a_bits, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Random thresholds ``(rows, 2**a_bits - 1)`` and directions ``(rows,)`` for
    accumulators ``acc`` ``(count, rows)`` that lie within ``+-limit``: mostly
    spread over each row's values (so the codes vary), some equal to one of
    them (ties), some at the accumulator edges ``+-limit``, ``+-(limit + 1)``
    and at the int32 extremes; most rows sorted as a folded BN would make them
    (ascending, descending for rows of direction -1), the others in any order."""
    rows, n_a = acc.shape[1], (1 << a_bits) - 1
    edges = np.array([-limit - 1, -limit, limit, limit + 1, INT32_MIN, INT32_MIN + 1, INT32_MAX - 1, INT32_MAX])
    out = np.empty((rows, n_a), dtype=np.int64)
    for r in range(rows):
        lo, hi = int(acc[:, r].min()), int(acc[:, r].max())
        kind = rng.random(n_a)
        spread = rng.integers(lo - 1, hi + 2, size=n_a)
        ties = rng.choice(acc[:, r], size=n_a)
        out[r] = np.where(kind < 0.55, spread, np.where(kind < 0.8, ties, rng.choice(edges, size=n_a)))
    direction = np.where(rng.random(rows) < 0.4, -1, 1)
    for r in range(rows):
        if rng.random() < 0.75:
            out[r] = np.sort(out[r])[::-1] if direction[r] < 0 else np.sort(out[r])
    return out, direction


def act_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, a_bits, vectors, *, chunk=None,
               t_chunk=None, params=SMALL, thresholds=None) -> list:
    """LOAD_MATRIX frames of a random ``rows x cols`` matrix, LOAD_THRESHOLDS
    frames (``t_chunk`` rows each, default as many as fit) of ``a_bits``
    thresholds (:func:`thresholds_for`, or ``thresholds(acc, limit)`` giving
    ``(thresholds, direction)``), then activated RUN frames of ``vectors``
    random vectors (as many per frame as fit)."""
    matrix = codes(rng, m_bits, (rows, cols))
    vecs = codes(rng, v_bits, (vectors, cols))
    # Where the accumulators lie, to aim the thresholds (the model computes the codes).
    acc = signed_matmul(vecs, levels_or_none(v_bits, v_signed), v_bits, matrix, levels_or_none(m_bits, m_signed), m_bits)
    limit = cols * ((1 << m_bits) - 1) * ((1 << v_bits) - 1)
    t, direction = (thresholds or (lambda a, lim: thresholds_for(rng, a, a_bits, lim)))(acc, limit)
    script = load_frames(matrix, m_bits, m_signed, chunk=chunk, max_payload=params["max_payload"])
    script += threshold_frames(t, direction, a_bits, chunk=t_chunk, tag=0x40, params=params)
    per_frame = act_vectors_per_frame(rows, cols, v_bits, a_bits, params)
    for start in range(0, vectors, per_frame):
        script.append(act_run_frame(vecs[start:start + per_frame], v_bits, v_signed, tag=0xC0 + start % 64))
    return script


def bad_thresholds_requests(params=SMALL):
    """Every error of LOAD_THRESHOLDS and of an activated RUN (in check order),
    the state rules (sequence, thresholds forgotten by LOAD_MATRIX and RESET)
    and the good requests between them, as (name, bytes).  On a core without
    the stage (``max_act_bits = 0``) the same requests: BAD_COMMAND and FLAGS."""
    mp, max_act = params["max_payload"], params.get("max_act_bits", 0)
    rows, b = 3, min(2, params["max_bits"])  # a 3 x 3 matrix; 1 vector = 1 byte, 2 vectors = 2 bytes
    a = max(1, min(2, max_act))  # the thresholds' bits used here
    rec = P.threshold_record_size(a)

    def thr(offset, count, bits=a, flags=0, nbytes=None):
        size = count * P.threshold_record_size(bits) if nbytes is None else nbytes
        return frame(P.Cmd.LOAD_THRESHOLDS, THRESHOLD_FIELDS.pack(offset, count, bits, flags) + bytes(size))

    def good(offset, count, direction=1, bits=a):
        t = np.arange(-2, (1 << bits) - 3)[None, :].repeat(count, 0) * direction
        return frame(P.Cmd.LOAD_THRESHOLDS, P.encode_load_thresholds(offset, bits, t, [direction] * count))

    run = lambda count, bits, flags, nbytes: frame(P.Cmd.RUN, RUN_FIELDS.pack(count, bits, flags) + bytes(nbytes))
    load = frame(P.Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, 3, b, False, 0, np.arange(9) % (1 << b)))
    act_run = act_run_frame(np.arange(6).reshape(2, 3) % (1 << b), b, True)
    biggest = mp * 8 // (rows * a)  # vectors whose activated reply just fits
    out = [
        ("RESET (ok)", frame(P.Cmd.RESET)),
        ("THRESHOLDS too short", frame(P.Cmd.LOAD_THRESHOLDS, bytes(5))),
        ("THRESHOLDS without matrix", thr(0, 1)),
        ("RUN activate without matrix", run(1, b, 2, 1)),
        ("LOAD 3 x 3 (ok)", load),
        ("THRESHOLDS too short, with a matrix", frame(P.Cmd.LOAD_THRESHOLDS, b"\x00\x00\x01")),
        ("THRESHOLDS bits 0", thr(0, 1, bits=0, nbytes=1)),
        ("THRESHOLDS bits > max", thr(0, 1, bits=max_act + 1)),
        ("THRESHOLDS bits 0xFF", thr(0, 1, bits=0xFF, nbytes=3)),
        ("THRESHOLDS flags 1", thr(0, 1, flags=1)),
        ("THRESHOLDS flags 0x80", thr(0, 1, flags=0x80)),
        ("THRESHOLDS count 0", thr(0, 0)),
        ("THRESHOLDS count past the rows", thr(0, rows + 1)),
        ("THRESHOLDS offset past the rows", thr(rows, 1)),
        ("THRESHOLDS huge offset", thr(0xFFFF, 1)),
        ("THRESHOLDS offset 2**8", thr(1 << 8, 1)),  # (a high bit alone past the rows)
        ("THRESHOLDS count 2**8 + 1", thr(0, (1 << 8) + 1, nbytes=0)),
        ("THRESHOLDS count 0xFFFF", thr(1, 0xFFFF, nbytes=rec)),
        ("THRESHOLDS LEN one short", thr(0, 1, nbytes=rec - 1)),
        ("THRESHOLDS LEN one long", thr(0, 1, nbytes=rec + 1)),
        ("THRESHOLDS LEN of one row for two", thr(0, 2, nbytes=rec)),
        ("THRESHOLDS offset > 0, none loaded", thr(1, 1)),
        ("RUN activate, bits 0", run(1, 0, 2, 1)),
        ("RUN activate, flags 6", run(1, b, 6, 1)),
        ("RUN activate without thresholds", run(1, b, 2, 1)),
        ("RUN activate|signed without thresholds, count 0", run(0, b, 3, 0)),
        ("THRESHOLDS row 0 (ok)", good(0, 1)),
        ("RUN activate on a partial set", run(1, b, 2, 1)),
        ("THRESHOLDS continue at the wrong offset", thr(2, 1)),
    ]
    if max_act > 1:
        out.append(("THRESHOLDS continue with other bits", good(1, 1, bits=a % max_act + 1)))
    out += [
        ("THRESHOLDS rows 1, 2, direction -1 (ok)", good(1, 2, direction=-1)),
        ("RUN activate, count 0", run(0, b, 2, 0)),
        ("RUN activate, reply too big", run(biggest + 1, 1, 2, 1)),
        ("RUN activate, count 0xFFFF", run(0xFFFF, 1, 2, 1)),
        ("RUN activate, reply just fits, LEN wrong", run(biggest, 1, 2, 1)),
        ("RUN activate, LEN one short", run(2, b, 2, 1)),
        ("RUN activate, LEN one long", run(2, b, 2, 3)),
        ("RUN activate (ok)", act_run),
        ("RUN (ok)", run(2, b, 1, 2)),
        ("THRESHOLDS continue a complete set", thr(rows, 1)),
        ("THRESHOLDS restart at 0 (ok)", good(0, 1, direction=-1)),
        ("RUN activate on a restarted set", run(1, b, 2, 1)),
        ("THRESHOLDS complete it (ok)", good(1, 2)),
        ("LOAD the matrix again (ok)", load),
        ("RUN activate after a new matrix", run(1, b, 2, 1)),
        ("THRESHOLDS continue after a new matrix", good(1, 2)),
        ("THRESHOLDS all rows (ok)", good(0, rows)),
        ("RUN activate (ok) again", act_run),
        ("RESET (ok) again", frame(P.Cmd.RESET)),
        ("RUN activate after RESET", run(1, b, 2, 1)),
        ("LOAD once more (ok)", load),
        ("RUN activate after RESET and LOAD", run(1, b, 2, 1)),
    ]
    if max_act and P.THRESHOLD_HEADER + rows * P.threshold_record_size(max_act) <= mp:
        out += [("THRESHOLDS all rows at max_act_bits (ok)", good(0, rows, bits=max_act)),
                ("RUN activate at max_act_bits (ok)", act_run)]
    return out


def bad_requests(params=SMALL):
    """One of every error of the protocol (in check order), plus good
    requests between them, as (name, bytes)."""
    mr, mc, mb, mp = params["max_rows"], params["max_cols"], params["max_bits"], params["max_payload"]
    load = lambda rows, cols, bits, flags, offset, count, data=None, extra=0: frame(
        P.Cmd.LOAD_MATRIX,
        LOAD_FIELDS.pack(rows, cols, bits, flags, offset, count)
        + (bytes(P.packed_size(count, bits) + extra) if data is None else data))
    run = lambda count, bits, flags, nbytes: frame(P.Cmd.RUN, RUN_FIELDS.pack(count, bits, flags) + bytes(nbytes))
    good = frame(P.Cmd.PING, tag=0x55)
    ping = frame(P.Cmd.PING, tag=1)
    out = [
        ("bad CRC", ping[:-1] + bytes([ping[-1] ^ 1])),
        ("bad CRC in payload", (lambda f: f[:8] + bytes([f[8] ^ 0x10]) + f[9:])(load(2, 3, 2, 0, 0, 6))),
        ("LEN > max_payload, payload follows", P.SYNC.to_bytes(1, "little") + bytes([P.Cmd.RUN, 9])
         + (mp + 1).to_bytes(2, "little") + bytes([0x11] * 10)),
        ("LEN = 0xFFFF", bytes([P.SYNC, P.Cmd.LOAD_MATRIX, 3, 0xFF, 0xFF])),
        ("unknown command 0", frame(0x00)),
        ("LOAD_THRESHOLDS of 3 bytes (unknown command 5 without the stage)", frame(0x05, b"xyz", tag=3)),
        ("unknown command 6", frame(0x06, b"xyz", tag=4)),
        ("unknown command 0xFF", frame(0xFF)),
        ("PING with payload", frame(P.Cmd.PING, b"\x00")),
        ("RESET with payload", frame(P.Cmd.RESET, b"\x01\x02")),
        ("RUN without matrix", run(1, 2, 0, 3)),
        ("RUN too short", frame(P.Cmd.RUN, b"\x01\x00\x02")),
        ("LOAD too short", frame(P.Cmd.LOAD_MATRIX, bytes(11))),
        ("LOAD bits 0", load(2, 3, 0, 0, 0, 6, b"")),
        ("LOAD bits > max", load(2, 3, mb + 1, 0, 0, 6, bytes(7))),
        ("LOAD flags 2", load(2, 3, 2, 2, 0, 6)),
        ("LOAD flags 0x81", load(2, 3, 2, 0x81, 0, 6)),
        ("LOAD rows 0", load(0, 3, 2, 0, 0, 6)),
        ("LOAD rows > max", load(mr + 1, 3, 2, 0, 0, 6)),
        ("LOAD cols 0", load(2, 0, 2, 0, 0, 6)),
        ("LOAD cols > max", load(2, mc + 1, 2, 0, 0, 6)),
        ("LOAD rows 0x8003", load(0x8003, 3, 2, 0, 0, 6)),
        ("LOAD count 0", load(2, 3, 2, 0, 0, 0)),
        ("LOAD count past end", load(2, 3, 2, 0, 0, 7)),
        ("LOAD offset past end", load(2, 3, 2, 0, 5, 2)),
        ("LOAD huge offset", load(2, 3, 2, 0, 0xFFFFFFFF, 2)),
        # (Past the end by a high bit alone: offset + count's low bits are in range.)
        ("LOAD offset 2**16", load(2, 3, 2, 0, 1 << 16, 2)),
        ("LOAD count 2**15 + 1", load(2, 3, 2, 0, 0, (1 << 15) + 1, b"")),
        ("LOAD LEN one short", load(2, 3, 2, 0, 0, 6, bytes(1))),
        ("LOAD LEN one long", load(2, 3, 2, 0, 0, 6, extra=1)),
        ("LOAD offset > 0 with no matrix", load(2, 3, 2, 0, 2, 2)),
        good,
        ("partial LOAD (ok)", load(2, 3, 2, 1, 0, 4, bytes([0x1B]))),
        ("RUN on a partial matrix", run(1, 2, 0, 1)),
        ("continue with other rows", load(3, 3, 2, 1, 4, 2)),
        ("continue with other cols", load(2, 2, 2, 1, 4, 2)),
        ("continue with other bits", load(2, 3, 3, 1, 4, 2)),
        ("continue with other flags", load(2, 3, 2, 0, 4, 2)),
        ("continue at the wrong offset", load(2, 3, 2, 1, 3, 2)),
        ("continue at the wrong offset+", load(2, 3, 2, 1, 5, 1)),
        ("complete the matrix (ok)", load(2, 3, 2, 1, 4, 2, bytes([0x0E]))),
        ("continue a complete matrix", load(2, 3, 2, 1, 6, 1)),
        ("RUN bits 0", run(1, 0, 0, 1)),
        ("RUN bits > max", run(1, mb + 1, 0, 4)),
        ("RUN flags 3", run(1, 2, 3, 1)),
        ("RUN flags 0x80", run(1, 2, 0x80, 1)),
        ("RUN count 0", run(0, 2, 0, 0)),
        ("RUN reply too big", run(mp // 8 + 1, 1, 0, 1)),
        ("RUN count 0xFFFF", run(0xFFFF, 1, 0, 1)),
        ("RUN LEN one short", run(2, 2, 0, 1)),
        ("RUN LEN one long", run(2, 2, 0, 3)),
        ("RUN packed and activated", run(1, 2, P.FLAG_PACKED | P.FLAG_ACTIVATE, 1)),
        ("RUN packed (ok on a core that packs)", run(2, 2, P.FLAG_PACKED | P.FLAG_SIGNED, 2)),
        ("RUN (ok)", run(2, 2, 1, 2)),
        ("RESET (ok)", frame(P.Cmd.RESET, tag=9)),
        ("RUN after RESET", run(1, 2, 0, 1)),
        ("continue after RESET", load(2, 3, 2, 1, 4, 2)),
        good,
    ]
    return [item if isinstance(item, tuple) else ("good PING", item) for item in out]


def accumulate_frames(vectors, bits, signed, *, slot, mantissa, shift, first, tag=0, rows, params=SUMS) -> list:
    """ACCUMULATE frames for ``vectors`` (as many per frame as fit), their sums from ``slot``
    (``rows`` sums per vector: the loaded matrix's)."""
    per_frame = (params["max_payload"] - P.ACCUMULATE_HEADER) * 8 // (vectors.shape[1] * bits)
    return [frame(P.Cmd.ACCUMULATE, P.encode_accumulate(bits, signed, vectors[start:start + per_frame],
                                                        slot=slot + start * rows, mantissa=mantissa, shift=shift,
                                                        first=first), tag + i)
            for i, start in enumerate(range(0, vectors.shape[0], per_frame))]


def read_sums_frames(slot, count, width, *, tag=0, params=SUMS) -> list:
    """READ_SUMS frames for sums ``slot .. slot + count - 1`` (as many per frame as fit) at
    ``width`` (:data:`~sw.protocol.SUM_FLOAT32`: binary32 patterns)."""
    per_frame = (params["max_payload"] - P.SUMS_REPLY_HEADER) // P.sum_bytes(width)
    return [frame(P.Cmd.READ_SUMS, P.encode_read_sums(start, min(per_frame, slot + count - start), width), tag + i)
            for i, start in enumerate(range(slot, slot + count, per_frame))]


#: Scales of the batch-sum scripts: the extremes of the mantissa and of the shift
#: (0; the guard bits' edge, 32; right shifts, floors, and the last, 255).
SUM_MANTISSAS = (0, 1, (1 << SCALE_MANTISSA_BITS) - 1)
SUM_SHIFTS = (0, 1, 31, 32, 33, 63, 100, 255)


def sums_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, *, batch, vectors, slot=0,
                params=SUMS) -> list:
    """A batch: per sample a random ``rows x cols`` matrix (LOAD_MATRIX) and ``vectors``
    random vectors accumulated into the sums from ``slot`` (ACCUMULATE, the first sample
    writing), each sample's mantissa and shift drawn from the extremes or at random; then
    the sums read whole at the widest width, once more at a narrower one and as binary32
    patterns (:data:`~sw.protocol.SUM_FLOAT32`)."""
    script = []
    for b in range(batch):
        matrix = codes(rng, m_bits, (rows, cols))
        script += load_frames(matrix, m_bits, m_signed, max_payload=params["max_payload"], tag=0x10 * b)
        mantissa = int(rng.choice(SUM_MANTISSAS)) if rng.random() < 0.5 else int(rng.integers(1 << SCALE_MANTISSA_BITS))
        shift = int(rng.choice(SUM_SHIFTS)) if rng.random() < 0.6 else int(rng.integers(256))
        script += accumulate_frames(codes(rng, v_bits, (vectors, cols)), v_bits, v_signed, slot=slot,
                                    mantissa=mantissa, shift=shift, first=b == 0, rows=rows, tag=0x80 + b,
                                    params=params)
    widest = P.sum_width(params["sum_bits"])
    for width in (widest, int(rng.integers(1, widest)), P.SUM_FLOAT32):
        script += read_sums_frames(slot, vectors * rows, width, tag=0xC0 + width, params=params)
    return script


def bad_sums_requests(params=SUMS):
    """Every error of ACCUMULATE and READ_SUMS (in check order) and the good requests
    between them, as (name, bytes).  On a core without sums: BAD_COMMAND each."""
    mb, mp = params["max_bits"], params["max_payload"]
    rows, cols, b = 3, 3, min(2, mb)  # a 3 x 3 matrix: 1 vector = 1 byte at 2 bits
    # (Without sums every request is an unknown command; the numbers only shape the bytes.)
    slots, widest = params.get("sum_slots", 0) or 4 * rows, P.sum_width(params.get("sum_bits", 0)) or 1

    def acc(count, bits=b, flags=0, slot=0, mantissa=5, shift=7, nbytes=None):
        size = P.packed_size(count * cols, bits) if nbytes is None else nbytes
        return frame(P.Cmd.ACCUMULATE, ACCUMULATE_FIELDS.pack(count, bits, flags, slot, mantissa, shift)
                     + bytes((7 + i) & 0xFF for i in range(size)))

    read = lambda slot, count, width, extra=b"": frame(P.Cmd.READ_SUMS, READ_SUMS_FIELDS.pack(slot, count, width)
                                                      + extra)
    load = frame(P.Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, cols, b, True, 0, np.arange(9) % (1 << b)))
    last = max(slots // rows - 1, 0)  # the last vector whose sums fit from slot 0
    # One vector more than fit from slot 0, with its codes where they fit a frame; past a
    # frame (a core of many sums) one byte: the count is checked before the length.
    past = last + 2
    past_bytes = None if P.ACCUMULATE_HEADER + P.packed_size(past * cols, b) <= mp else 1
    return [
        ("RESET (ok)", frame(P.Cmd.RESET)),
        ("READ_SUMS (ok) of the initial sums", read(0, 2, widest)),
        ("ACCUMULATE too short", frame(P.Cmd.ACCUMULATE, bytes(10))),
        ("ACCUMULATE without matrix", acc(1)),
        ("LOAD 3 x 3 signed (ok)", load),
        ("ACCUMULATE bits 0", acc(1, bits=0, nbytes=1)),
        ("ACCUMULATE bits > max", acc(1, bits=mb + 1)),
        ("ACCUMULATE flags 2 (activate)", acc(1, flags=2)),
        ("ACCUMULATE flags 0x80", acc(1, flags=0x80)),
        ("ACCUMULATE mantissa 2**24", acc(1, mantissa=1 << SCALE_MANTISSA_BITS)),
        ("ACCUMULATE mantissa 0xFFFFFFFF", acc(1, mantissa=0xFFFFFFFF)),
        ("ACCUMULATE count 0", acc(0)),
        ("ACCUMULATE sums past the last", acc(1, slot=slots - rows + 1)),
        ("ACCUMULATE count past the sums", acc(past, nbytes=past_bytes)),
        ("ACCUMULATE count 0xFFFF", acc(0xFFFF, nbytes=1)),
        ("ACCUMULATE huge slot", acc(1, slot=0xFFFF)),
        ("ACCUMULATE slot 2**14", acc(1, slot=1 << 14)),  # (a high bit alone past the sums)
        ("ACCUMULATE LEN one short", acc(2, nbytes=1)),
        ("ACCUMULATE LEN one long", acc(2, nbytes=3)),
        ("ACCUMULATE signed|first (ok)", acc(2, flags=5, mantissa=(1 << SCALE_MANTISSA_BITS) - 1, shift=0)),
        ("ACCUMULATE into the last sums (ok)", acc(1, flags=1, slot=slots - rows, shift=40)),
        ("ACCUMULATE added (ok)", acc(2, flags=1, mantissa=3, shift=33)),
        ("READ_SUMS too short", frame(P.Cmd.READ_SUMS, bytes(4))),
        ("READ_SUMS too long", read(0, 1, 1, b"\x00")),
        ("READ_SUMS (ok) width 0: binary32 sums", read(0, 2 * rows, P.SUM_FLOAT32)),
        ("READ_SUMS width past the sums'", read(0, 1, widest + 1)),
        ("READ_SUMS width 0xFF, count 0", read(0, 0, 0xFF)),
        ("READ_SUMS count 0", read(0, 0, 1)),
        ("READ_SUMS past the last sum", read(slots - 1, 2, 1)),
        ("READ_SUMS huge slot", read(0xFFFF, 1, 1)),
        ("READ_SUMS slot 2**14", read(1 << 14, 1, 1)),  # (a high bit alone past the sums)
        ("READ_SUMS count 2**14 + 1", read(0, (1 << 14) + 1, 1)),
        ("READ_SUMS reply too big", read(0, (mp - P.SUMS_REPLY_HEADER) // widest + 1, widest)),
        ("READ_SUMS (ok) just fits", read(0, (mp - P.SUMS_REPLY_HEADER) // widest, widest)),
        ("READ_SUMS binary32 reply too big",
         read(0, (mp - P.SUMS_REPLY_HEADER) // P.FLOAT_SUM_BYTES + 1, P.SUM_FLOAT32)),
        ("READ_SUMS (ok) binary32 just fits",
         read(0, min(slots, (mp - P.SUMS_REPLY_HEADER) // P.FLOAT_SUM_BYTES), P.SUM_FLOAT32)),
        ("READ_SUMS (ok) narrow", read(0, 2 * rows, 1)),
        ("READ_SUMS (ok) the last sums", read(slots - rows, rows, widest)),
        ("RESET zeroes the sums (ok)", frame(P.Cmd.RESET)),
        ("READ_SUMS (ok) after RESET", read(0, rows, widest)),
        ("READ_SUMS (ok) binary32 after RESET", read(0, rows, P.SUM_FLOAT32)),
        ("ACCUMULATE after RESET", acc(1)),
    ]


# --------------------------------------------------------------------------- feature maps, windows

def fmap_frames(fmap, bits, *, chunk=None, tag=0, params=WINDOWS) -> list:
    """LOAD_FMAP frames for ``fmap`` (``(channels, height, width)`` codes), ``chunk`` codes
    each (default: as many as fit)."""
    channels, height, width = fmap.shape
    flat = np.asarray(fmap).ravel()
    if chunk is None:
        chunk = (params["max_payload"] - P.LOAD_FMAP_HEADER) * 8 // bits
    return [frame(P.Cmd.LOAD_FMAP, P.encode_load_fmap(channels, height, width, bits, offset,
                                                      flat[offset:offset + chunk]), tag + i)
            for i, offset in enumerate(range(0, flat.size, chunk))]


def window_run_frame(count, bits, signed, window, *, activate=False, packed=False, tag=0) -> bytes:
    """A RUN frame with the window flag: ``count`` vectors made under ``window``."""
    return frame(P.Cmd.RUN, P.encode_run_window(count, bits, signed, window, activate=activate, packed=packed),
                 tag)


def window_vectors_per_frame(rows, cols, m_bits, v_bits, *, a_bits=0, packed=False, params=WINDOWS) -> int:
    """Vectors of one windowed RUN frame whose reply fits: accumulators (``a_bits == 0``;
    ``packed``: bit-packed) or ``a_bits`` activation codes of ``rows`` rows (the request
    is its headers alone)."""
    fit = (params["max_payload"] * 8 // (rows * a_bits) if a_bits
           else accumulators_per_frame(rows, cols, m_bits, v_bits, packed=packed, params=params))
    return min(fit, 0xFFFF)


def window_run_frames(count, bits, signed, window, *, per_frame, activate=False, packed=False, tag=0) -> list:
    """Windowed RUN frames for ``count`` vectors under ``window``, ``per_frame`` a frame,
    each frame's window advanced to its first vector (:meth:`Window.advanced`)."""
    return [window_run_frame(min(per_frame, count - start), bits, signed, window.advanced(start),
                             activate=activate, packed=packed, tag=tag + i)
            for i, start in enumerate(range(0, count, per_frame))]


def window_accumulate_frames(count, bits, signed, window, *, slot, mantissa, shift, first, rows, per_frame=None,
                             tag=0) -> list:
    """Windowed ACCUMULATE frames for ``count`` vectors under ``window`` (``per_frame`` a
    frame, default all in one), their sums from ``slot`` (``rows`` sums a vector: the
    loaded matrix's), each frame's window advanced to its first vector."""
    per_frame = per_frame or count
    return [frame(P.Cmd.ACCUMULATE, P.encode_accumulate_window(
                min(per_frame, count - start), bits, signed, window.advanced(start), slot=slot + start * rows,
                mantissa=mantissa, shift=shift, first=first), tag + i)
            for i, start in enumerate(range(0, count, per_frame))]


def _fit_shape(shape, codes) -> tuple:
    """``shape`` (channels, height, width) shrunk, its largest side first, to at most ``codes`` codes."""
    shape = list(shape)
    while shape[0] * shape[1] * shape[2] > codes:
        shape[shape.index(max(shape))] -= 1
    return tuple(shape)


def _out_side(side, kernel, stride, pad) -> int:
    """Output positions along a map side of ``side`` (0: the kernel does not fit)."""
    return max(0, (side + 2 * pad - kernel) // stride + 1)


#: ``(kernel, stride, pad)`` of the scripts' windows: 1 x 1; 2, 3 and 4 wide with every
#: stride up to MAX_STRIDE and pads from 0 to kernel - 1.
PATCH_CASES = ((3, 1, 1), (3, 2, 0), (2, 2, 1), (1, 1, 0), (4, 3, 3), (3, MAX_STRIDE, 2))
SHIFT_CASES = ((3, 1, 1), (3, 2, 2), (2, 2, 0), (1, 1, 0), (3, 1, 0), (2, MAX_STRIDE, 1))


def _patch_window(rng, shape, kernel, stride, pad, max_cols):
    """A PATCH window on ``shape`` from a random channel and output position, its columns
    (the channels from there that fit ``max_cols``) and a vector count running to the
    map's last position (sometimes one past it); ``None`` if the kernel does not fit."""
    channels, height, width = shape
    out_h, out_w = _out_side(height, kernel, stride, pad), _out_side(width, kernel, stride, pad)
    if not out_h or not out_w or kernel * kernel > max_cols:
        return None
    channel = int(rng.integers(0, channels))
    cols = min(channels - channel, max_cols // (kernel * kernel)) * kernel * kernel
    first = int(rng.integers(0, out_h * out_w))
    count = out_h * out_w - first + int(rng.random() < 0.3)
    return Window(kernel, stride, pad, PATCH, out_w, channel, first // out_w, first % out_w), cols, count


def _shift_window(rng, shape, kernel, stride, pad, max_cols):
    """A SHIFT window on ``shape`` from a random tap, its columns (every output position)
    and a vector count running to the last tap; ``None`` if the positions do not fit."""
    channels, height, width = shape
    out_h, out_w = _out_side(height, kernel, stride, pad), _out_side(width, kernel, stride, pad)
    if not out_h or not out_w or out_h * out_w > max_cols:
        return None
    first = int(rng.integers(0, channels * kernel * kernel))
    taps = kernel * kernel
    window = Window(kernel, stride, pad, SHIFT, out_w, first // taps, first // kernel % kernel, first % kernel)
    return window, out_h * out_w, channels * taps - first


def window_script(rng, *, params=WINDOWS) -> list:
    """Windows over two feature maps (each as large as the core holds of its shape):
    PATCH windows on a 3 x 7 x 9 map and SHIFT windows on a 3 x 4 x 4 one, at every
    ``(kernel, stride, pad)`` of :data:`PATCH_CASES` / :data:`SHIFT_CASES` whose columns
    fit, from random channel, row and column starts, each with its own random matrix and
    bits, the vectors split at random where a reply fits; an activated PATCH RUN (with an
    activation stage) and a batch of two windowed ACCUMULATEs, a SHIFT and a PATCH one,
    then the sums read (with batch sums)."""
    mb, mc, mr, mp = params["max_bits"], params["max_cols"], params["max_rows"], params["max_payload"]
    max_act, slots = params.get("max_act_bits", 0), params.get("sum_slots", 0)
    script = []

    def load_map(shape, tag):
        bits = int(rng.integers(1, mb + 1))
        fmap = codes(rng, bits, (shape[0], shape[1] * shape[2])).reshape(shape)  # some channels pinned
        script.extend(fmap_frames(fmap, bits, tag=tag, params=params))
        return fmap, bits

    def load_matrix(rows, cols, tag):
        m_bits, m_signed = int(rng.integers(1, mb + 1)), bool(rng.random() < 0.5)
        matrix = codes(rng, m_bits, (rows, cols))
        script.extend(load_frames(matrix, m_bits, m_signed, max_payload=mp, tag=tag))
        return matrix, m_bits, m_signed

    def runs(made, fmap, bits, tag):
        window, cols, count = made
        rows = int(rng.integers(1, mr + 1))
        _, m_bits, _ = load_matrix(rows, cols, tag)
        packed = bool(params.get("packed_accumulators")) and rng.random() < 0.5
        fit = window_vectors_per_frame(rows, cols, m_bits, bits, packed=packed, params=params)
        per_frame = int(rng.integers(1, fit + 1)) if rng.random() < 0.5 else fit
        script.extend(window_run_frames(count, bits, bool(rng.random() < 0.2), window, per_frame=per_frame,
                                        packed=packed, tag=tag + 0x80))

    for order, shape, cases, make in ((PATCH, (3, 7, 9), PATCH_CASES, _patch_window),
                                      (SHIFT, (3, 4, 4), SHIFT_CASES, _shift_window)):
        fmap, bits = load_map(_fit_shape(shape, params["fmap_codes"]), 0x20 * order)
        for i, case in enumerate(cases):
            made = make(rng, fmap.shape, *case, mc)
            if made is not None:
                runs(made, fmap, bits, 0x10 * i)
        if order == PATCH and max_act:
            made = _patch_window(rng, fmap.shape, *PATCH_CASES[0], mc)
            if made is not None:
                window, cols, count = made
                rows, a_bits = int(rng.integers(1, mr + 1)), int(rng.integers(1, max_act + 1))
                matrix, m_bits, m_signed = load_matrix(rows, cols, 0x40)
                # Where the accumulators lie, to aim the thresholds (the model computes the codes).
                acc = signed_matmul(window_vectors(fmap, window, count, cols), None, bits, matrix,
                                    levels_or_none(m_bits, m_signed), m_bits)
                limit = cols * ((1 << m_bits) - 1) * ((1 << bits) - 1)
                t, direction = thresholds_for(rng, acc, a_bits, limit)
                script.extend(threshold_frames(t, direction, a_bits, tag=0x50, params=params))
                per_frame = window_vectors_per_frame(rows, cols, m_bits, bits, a_bits=a_bits, params=params)
                script.extend(window_run_frames(count, bits, False, window, per_frame=per_frame, activate=True,
                                                tag=0x60))
                # The same positions pooled (from the first, whole pooling windows only), the
                # requests split at random between pooling windows.
                out_h, out_w = (_out_side(side, window.kernel, window.stride, window.pad) for side in fmap.shape[1:])
                for pool in (p for p in POOLS[1:] if p <= params.get("max_pool", 1) and p <= min(out_h, out_w)):
                    group = pool * pool
                    pooled = replace(window, out_width=out_w // pool * pool, y=0, x=0, pool=pool)
                    count = (out_h // pool) * (out_w // pool) * group
                    split = group * int(rng.integers(1, max(1, per_frame // group) + 1))
                    script.extend(window_run_frames(count, bits, False, pooled, per_frame=split, activate=True,
                                                    tag=0x64 + pool))
    # Matrices made from the map (LOAD_MATRIX with the window flag): a kernel-1 SHIFT window's
    # rows (a gradient map's channels, backward-weight's matrix) and SHIFT windows' taps, each
    # run against sent vectors and against the map's own windows.
    fmap, bits = load_map(_fit_shape((3, 4, 4), params["fmap_codes"]), 0xB0)
    for i, case in enumerate(((1, 1, 0), *SHIFT_CASES[:3])):
        made = _shift_window(rng, fmap.shape, *case, mc)
        if made is None:
            continue
        window, cols, count = made
        rows = int(rng.integers(1, min(count, mr) + 1))
        signed = bool(rng.random() < 0.5)
        script.append(frame(P.Cmd.LOAD_MATRIX, P.encode_load_matrix_window(rows, cols, bits, signed, window),
                            0xB1 + 2 * i))
        v_bits = int(rng.integers(1, mb + 1))
        script.append(run_frame(codes(rng, v_bits, (2, cols)), v_bits, bool(rng.random() < 0.5), 0xB2 + 2 * i))
        script.extend(window_run_frames(min(count, 3), bits, False, window, per_frame=3, tag=0xC0 + i))
    if slots:
        rows, total = min(3, mr), 0
        for b, (shape, case, make) in enumerate((((3, 4, 4), SHIFT_CASES[0], _shift_window),
                                                 ((3, 7, 9), PATCH_CASES[0], _patch_window))):
            fmap, bits = load_map(_fit_shape(shape, params["fmap_codes"]), 0x70 + b)
            made = make(rng, fmap.shape, *case, mc)
            if made is None:
                continue
            window, cols, count = made
            count = min(count, slots // rows)
            load_matrix(rows, cols, 0x90 + b)
            mantissa = (int(rng.choice(SUM_MANTISSAS)) if rng.random() < 0.5
                        else int(rng.integers(1 << SCALE_MANTISSA_BITS)))
            shift = int(rng.choice(SUM_SHIFTS))
            script.extend(window_accumulate_frames(count, bits, False, window, slot=0, mantissa=mantissa, shift=shift,
                                                   first=b == 0, rows=rows, per_frame=int(rng.integers(1, count + 1)),
                                                   tag=0xA0 + 0x10 * b))
            total = max(total, count * rows)
        if total:
            script.extend(read_sums_frames(0, total, P.sum_width(params["sum_bits"]), tag=0xE0, params=params))
    return script


def bad_window_requests(params=WINDOWS):
    """Every error of LOAD_FMAP and of RUN and ACCUMULATE with the window flag, each
    check's first failing case in check order, the state rules (sequence, a partial
    map, RESET forgets the map, LOAD_MATRIX keeps it) and good requests between them,
    as (name, bytes).  On a core without a feature map: BAD_COMMAND and FLAGS."""
    mb, mp, codes_max = params["max_bits"], params["max_payload"], params.get("fmap_codes", 0)
    max_act, slots = params.get("max_act_bits", 0), params.get("sum_slots", 0)
    rows, b = 2, min(2, mb)  # a 2 x 9 matrix: one 3 x 3 patch of one channel, or 9 positions
    shape = (2, 3, 3)        # the map: 18 codes of b bits
    total = shape[0] * shape[1] * shape[2]
    other = b % mb + 1       # bits other than the map's (b itself on a 1-bit core)
    patch = Window(3, 1, 1, PATCH, 3)  # 9 positions, the map's first channel
    shift = Window(3, 1, 1, SHIFT, 3)  # 9 positions: 18 taps of 2 channels

    def fm(channels, height, width, offset, count, bits=b, nbytes=None):
        size = P.packed_size(count, bits) if nbytes is None else nbytes
        return frame(P.Cmd.LOAD_FMAP, LOAD_FMAP_FIELDS.pack(channels, height, width, bits, offset, count)
                     + bytes(range(3, 3 + size)))

    def good_map(offset, count):
        return frame(P.Cmd.LOAD_FMAP, P.encode_load_fmap(*shape, b, offset,
                                                         (np.arange(offset, offset + count) * 7 + 1) % (1 << b)))

    def win(kernel=3, stride=1, pad=1, order=PATCH, out_width=3, channel=0, y=0, x=0, pool=1):
        return WINDOW_FIELDS.pack(kernel, stride, pad, order, out_width, channel, y, x, pool)

    def run(count=1, bits=b, flags=P.FLAG_WINDOW, data=None):
        return frame(P.Cmd.RUN, RUN_FIELDS.pack(count, bits, flags) + (win() if data is None else data))

    def mat(height=rows, cols=9, bits=b, flags=P.FLAG_WINDOW, offset=0, count=None, data=None):
        count = height * cols if count is None else count
        return frame(P.Cmd.LOAD_MATRIX, LOAD_FIELDS.pack(height, cols, bits, flags, offset, count)
                     + (win() if data is None else data))

    def acc(count=1, bits=b, flags=P.FLAG_WINDOW, slot=0, mantissa=5, shift=7, data=None):
        return frame(P.Cmd.ACCUMULATE, ACCUMULATE_FIELDS.pack(count, bits, flags, slot, mantissa, shift)
                     + (win() if data is None else data))

    load = frame(P.Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, 9, b, True, 0, np.arange(18) % (1 << b)))
    width = P.accumulator_width(9, b, b)
    biggest = (mp - P.RUN_REPLY_HEADER) // (width * rows)  # vectors whose reply just fits
    over = (codes_max + 1, 1, 1) if codes_max < 0xFFFF else (0xFFFF, 2, 1)  # one code too many (or more)
    out = [
        ("RESET (ok)", frame(P.Cmd.RESET)),
        ("LOAD_FMAP too short", frame(P.Cmd.LOAD_FMAP, bytes(P.LOAD_FMAP_HEADER - 1))),
        ("LOAD_FMAP bits 0", fm(*shape, 0, total, bits=0, nbytes=1)),
        ("LOAD_FMAP bits > max", fm(*shape, 0, total, bits=mb + 1)),
        ("LOAD_FMAP channels 0", fm(0, 3, 3, 0, 1)),
        ("LOAD_FMAP height 0", fm(2, 0, 3, 0, 1)),
        ("LOAD_FMAP width 0", fm(2, 3, 0, 0, 1)),
        ("LOAD_FMAP one code more than the core holds", fm(*over, 0, 1)),
        ("LOAD_FMAP 0xFFFF x 255 x 255", fm(0xFFFF, 255, 255, 0, 1)),
        ("LOAD_FMAP count 0", fm(*shape, 0, 0)),
        ("LOAD_FMAP count past the end", fm(*shape, 0, total + 1)),
        ("LOAD_FMAP offset past the end", fm(*shape, total - 1, 2)),
        ("LOAD_FMAP huge offset", fm(*shape, 0xFFFF, 1)),
        ("LOAD_FMAP LEN one short", fm(*shape, 0, 9, nbytes=P.packed_size(9, b) - 1)),
        ("LOAD_FMAP LEN one long", fm(*shape, 0, 9, nbytes=P.packed_size(9, b) + 1)),
        ("LOAD_FMAP offset > 0 with no map", fm(*shape, 4, 2)),
        # two faults: the first check of the two answers
        ("LOAD_FMAP bits 0 and channels 0", fm(0, 3, 3, 0, 1, bits=0, nbytes=1)),
        ("LOAD_FMAP channels 0 and count 0", fm(0, 3, 3, 0, 0)),
        ("LOAD_FMAP count 0 and LEN one long", fm(*shape, 0, 0, nbytes=1)),
        ("LOAD_FMAP offset > 0 with no map, LEN one long", fm(*shape, 4, 2, nbytes=2)),
        ("RUN window too short", frame(P.Cmd.RUN, RUN_FIELDS.pack(1, b, P.FLAG_WINDOW)[:3])),
        ("RUN window without matrix", run()),
        ("ACCUMULATE window too short", frame(P.Cmd.ACCUMULATE, bytes(P.ACCUMULATE_HEADER - 1))),
        ("ACCUMULATE window without matrix", acc()),
        ("LOAD 2 x 9 signed (ok)", load),
        ("LOAD_MATRIX window before any map", mat()),
        ("RUN window before any map", run()),
        ("RUN window LEN one short before any map", run(data=win()[:-1])),
        ("ACCUMULATE window before any map", acc()),
        ("LOAD_FMAP the largest map's first code (ok)", fm(codes_max or 1, 1, 1, 0, 1)),
        ("RUN window on a partial largest map", run()),
        ("LOAD_FMAP first 10 codes (ok)", good_map(0, 10)),
        ("LOAD_FMAP continue with other channels", fm(3, 3, 3, 10, 2)),
        ("LOAD_FMAP continue with other height", fm(2, 4, 3, 10, 2)),
        ("LOAD_FMAP continue with other width", fm(2, 3, 4, 10, 2)),
        ("LOAD_FMAP continue with other bits", fm(*shape, 10, 2, bits=other)),
        ("LOAD_FMAP continue at the wrong offset", fm(*shape, 9, 2)),
        ("LOAD_FMAP continue at the wrong offset+", fm(*shape, 11, 2)),
        ("RUN window on a partial map", run()),
        ("LOAD_MATRIX window on a partial map", mat()),
        ("RUN window, other bits and kernel 0, on a partial map", run(bits=other, data=win(kernel=0, pad=0))),
        ("ACCUMULATE window on a partial map", acc()),
        ("LOAD_FMAP complete the map (ok)", good_map(10, total - 10)),
        ("LOAD_FMAP continue a complete map", fm(*shape, total, 1)),
        ("RUN window bits 0", run(bits=0)),
        ("RUN window bits > max", run(bits=mb + 1)),
        ("RUN window flags 0x28", run(flags=P.FLAG_WINDOW | 0x20)),
        ("RUN window|first", run(flags=P.FLAG_WINDOW | P.FLAG_FIRST)),
        ("RUN window|activate without thresholds", run(flags=P.FLAG_WINDOW | P.FLAG_ACTIVATE)),
        ("RUN window count 0", run(count=0)),
        ("RUN window reply too big", run(count=biggest + 1)),
        ("RUN window count 0xFFFF", run(count=0xFFFF)),
        ("RUN window LEN one short", run(data=win()[:-1])),
        ("RUN window LEN one long", run(data=win() + b"\x00")),
        ("RUN window with codes, not a window", run(count=1, data=bytes(P.packed_size(9, b)))),
        ("RUN window bits other than the map's", run(bits=other)),
        ("RUN window bits other than the map's and kernel 0", run(bits=other, data=win(kernel=0, pad=0))),
        ("RUN window kernel 0", run(data=win(kernel=0, pad=0))),
        ("RUN window kernel 17", run(data=win(kernel=MAX_KERNEL + 1))),
        ("RUN window stride 0", run(data=win(stride=0))),
        ("RUN window stride 5", run(data=win(stride=MAX_STRIDE + 1))),
        ("RUN window pad = kernel", run(data=win(pad=3))),
        ("RUN window order 2", run(data=win(order=2))),
        ("RUN window out_width 0", run(data=win(out_width=0))),
        ("RUN window channel past the map's", run(data=win(channel=shape[0]))),
        ("RUN window PATCH x = out_width", run(data=win(x=3))),
        ("RUN window SHIFT y = kernel", run(data=win(order=SHIFT, y=3))),
        ("RUN window SHIFT x = kernel", run(data=win(order=SHIFT, x=3))),
        ("RUN window PATCH (ok)", frame(P.Cmd.RUN, P.encode_run_window(9, b, False, patch))),
        ("RUN window PATCH signed, y past the output (ok)",
         frame(P.Cmd.RUN, P.encode_run_window(2, b, True, Window(3, 1, 1, PATCH, 3, 1, 5, 2)))),
        ("RUN window SHIFT (ok)", frame(P.Cmd.RUN, P.encode_run_window(3, b, False, shift))),
        ("RUN window SHIFT from channel 1, tap (1, 2), stride 2 (ok)",
         frame(P.Cmd.RUN, P.encode_run_window(4, b, False, Window(3, 2, 2, SHIFT, 3, 1, 1, 2)))),
        ("RUN window the biggest (ok)", run(count=biggest)),
        ("RUN with codes still (ok)", frame(P.Cmd.RUN, P.encode_run(b, False, np.ones((2, 9), dtype=int)))),
        # LOAD_MATRIX with the window flag (protocol 8): the matrix's rows made from the map
        ("LOAD_MATRIX window flags 0x28", mat(flags=P.FLAG_WINDOW | 0x20)),
        ("LOAD_MATRIX window|activate", mat(flags=P.FLAG_WINDOW | P.FLAG_ACTIVATE)),
        ("LOAD_MATRIX window rows 0", mat(height=0, count=9)),
        ("LOAD_MATRIX window cols 0", mat(cols=0, count=9)),
        ("LOAD_MATRIX window count 0", mat(count=0)),
        ("LOAD_MATRIX window count one short", mat(count=2 * 9 - 1)),
        ("LOAD_MATRIX window offset 1", mat(offset=1, count=2 * 9 - 1)),
        ("LOAD_MATRIX window LEN one short", mat(data=win()[:-1])),
        ("LOAD_MATRIX window LEN one long", mat(data=win() + b"\x00")),
        ("LOAD_MATRIX window with codes, not a window", mat(data=bytes(P.packed_size(18, b)))),
        ("LOAD_MATRIX window bits other than the map's", mat(bits=other)),
        ("LOAD_MATRIX window kernel 0", mat(data=win(kernel=0, pad=0))),
        ("LOAD_MATRIX window channel past the map's", mat(data=win(channel=shape[0]))),
        ("LOAD_MATRIX window SHIFT y = kernel", mat(data=win(order=SHIFT, y=3))),
        ("LOAD_MATRIX window pool 2", mat(height=4, cols=9, data=win(out_width=2, pool=2))),
        ("RUN with codes: refused loads left the matrix (ok)",
         frame(P.Cmd.RUN, P.encode_run(b, False, np.arange(18).reshape(2, 9) % (1 << b)))),
        ("LOAD_MATRIX window PATCH, signed (ok)", mat(flags=P.FLAG_WINDOW | P.FLAG_SIGNED)),
        ("RUN with codes on it (ok)", frame(P.Cmd.RUN, P.encode_run(b, False, np.ones((2, 9), dtype=int)))),
        ("LOAD_MATRIX continue a windowed matrix", mat(flags=P.FLAG_WINDOW | P.FLAG_SIGNED, offset=18, count=1)),
        ("LOAD_MATRIX window SHIFT from channel 1, tap (1, 2), stride 2 (ok)",
         mat(data=P.encode_window(Window(3, 2, 2, SHIFT, 3, 1, 1, 2)))),
        ("RUN window on the map's own matrix (ok)", frame(P.Cmd.RUN, P.encode_run_window(3, b, False, shift))),
        ("LOAD_MATRIX window 1 x 1 SHIFT: the map's channels as rows (ok)",
         mat(cols=9, data=P.encode_window(Window(1, 1, 0, SHIFT, 3)))),
        ("LOAD 2 x 9 signed again (ok)", load),
    ]
    if max_act:
        a = 1
        t = np.zeros((rows, 1), dtype=np.int64)
        out += [
            ("THRESHOLDS (ok)", frame(P.Cmd.LOAD_THRESHOLDS, P.encode_load_thresholds(0, a, t, [1] * rows))),
            ("RUN window|activate (ok)", frame(P.Cmd.RUN, P.encode_run_window(9, b, False, patch, activate=True))),
            ("RUN window|activate reply too big", run(count=mp * 8 // (rows * a) + 1,
                                                      flags=P.FLAG_WINDOW | P.FLAG_ACTIVATE)),
            ("RUN window|activate, kernel 0", run(data=win(kernel=0, pad=0), flags=P.FLAG_WINDOW | P.FLAG_ACTIVATE)),
        ]
        # Pooling (a 2 x 2 pooled window over the 3 x 3 output's first two columns): refused
        # outright on a core without it, and each of its own rules on one with it.
        act = P.FLAG_WINDOW | P.FLAG_ACTIVATE
        beyond = 2 * params.get("max_pool", 1) if params.get("max_pool", 1) < 4 else 8
        pooled = Window(3, 1, 1, PATCH, 2, pool=2)
        out += [
            ("RUN window|activate pool 0", run(count=4, data=win(out_width=2, pool=0), flags=act)),
            ("RUN window|activate pool 3", run(count=9, data=win(out_width=3, pool=3), flags=act)),
            ("RUN window|activate pool past the core's", run(count=beyond ** 2, data=win(out_width=beyond, pool=beyond),
                                                             flags=act)),
            ("RUN window|activate pool 2, SHIFT", run(count=4, data=win(order=SHIFT, out_width=2, pool=2), flags=act)),
            ("RUN window|activate pool 2, out_width 3", run(count=4, data=win(out_width=3, pool=2), flags=act)),
            ("RUN window|activate pool 2, x 1", run(count=4, data=win(out_width=4, x=1, pool=2), flags=act)),
            ("RUN window|activate pool 2, y 1", run(count=4, data=win(out_width=2, y=1, pool=2), flags=act)),
            ("RUN window|activate pool 2, count 3", run(count=3, data=win(out_width=2, pool=2), flags=act)),
            ("RUN window pool 2, not activated", run(count=4, data=win(out_width=2, pool=2))),
            ("RUN window|activate pool 2 (ok)", frame(P.Cmd.RUN, P.encode_run_window(4, b, False, pooled,
                                                                                        activate=True))),
            ("RUN window|activate pool 2, two bands, past the output (ok)",
             frame(P.Cmd.RUN, P.encode_run_window(8, b, False, pooled, activate=True))),
            ("RUN window|activate pool 4, past the output (ok)", frame(P.Cmd.RUN, P.encode_run_window(
                16, b, False, Window(3, 1, 1, PATCH, 4, pool=4), activate=True))),
        ]
    sums = slots or 4 * rows  # (without sums every ACCUMULATE is an unknown command)
    out += [
        ("ACCUMULATE window bits 0", acc(bits=0)),
        ("ACCUMULATE window bits > max", acc(bits=mb + 1)),
        ("ACCUMULATE window|activate", acc(flags=P.FLAG_WINDOW | P.FLAG_ACTIVATE)),
        ("ACCUMULATE window mantissa 2**24", acc(mantissa=1 << SCALE_MANTISSA_BITS)),
        ("ACCUMULATE window count 0", acc(count=0)),
        ("ACCUMULATE window sums past the last", acc(slot=sums - rows + 1)),
        ("ACCUMULATE window count 0xFFFF", acc(count=0xFFFF)),
        ("ACCUMULATE window LEN one short", acc(data=win()[:-1])),
        ("ACCUMULATE window LEN one long", acc(data=win() + b"\x00")),
        ("ACCUMULATE window bits other than the map's", acc(bits=other)),
        ("ACCUMULATE window kernel 0", acc(data=win(kernel=0, pad=0))),
        ("ACCUMULATE window SHIFT y = kernel", acc(data=win(order=SHIFT, y=3))),
        ("ACCUMULATE window pool 2", acc(count=4, data=win(out_width=2, pool=2))),
        ("ACCUMULATE window SHIFT, first (ok)", frame(P.Cmd.ACCUMULATE, P.encode_accumulate_window(
            3, b, False, shift, slot=0, mantissa=(1 << SCALE_MANTISSA_BITS) - 1, shift=0, first=True))),
        ("ACCUMULATE window PATCH, added (ok)", frame(P.Cmd.ACCUMULATE, P.encode_accumulate_window(
            3, b, False, patch.advanced(4), slot=0, mantissa=3, shift=33, first=False))),
        ("READ_SUMS (ok)", frame(P.Cmd.READ_SUMS, P.encode_read_sums(0, 3 * rows, max(1, min(
            P.sum_width(params.get("sum_bits", 0)), (mp - P.SUMS_REPLY_HEADER) // (3 * rows)))))),
        ("LOAD the matrix again (ok)", load),
        ("RUN window after a new matrix: the map stays (ok)",
         frame(P.Cmd.RUN, P.encode_run_window(2, b, False, patch))),
        ("LOAD_FMAP a new map's first codes (ok)", good_map(0, 4)),
        ("RUN window on the new partial map", run()),
        ("LOAD_FMAP complete it (ok)", good_map(4, total - 4)),
        ("RESET (ok) again", frame(P.Cmd.RESET)),
        ("LOAD after RESET (ok)", load),
        ("RUN window after RESET", run()),
        ("LOAD_FMAP continue after RESET", good_map(4, 2)),
    ]
    if other == b:  # a 1-bit core: no other bits to try
        out = [(name, data) for name, data in out if "other bits" not in name and "other than the map's" not in name]
    return out


def fuzz_script(seed: int, steps: int, params: dict = SMALL, *, timeout: int) -> list:
    """Random requests, some valid, many mutated (a bit flipped, cut short and
    followed by an idle gap past ``timeout``): PING, RESET, LOAD_MATRIX, RUN,
    LOAD_THRESHOLDS and activated RUNs at every activation width of the core,
    batch sums and windows where the core has them, and every error request."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    rows, cols = min(4, params["max_rows"]), min(7, params["max_cols"])
    bits = min(3, params["max_bits"])
    pool = ([frame(P.Cmd.PING), frame(P.Cmd.RESET)]
            + gemm_script(nprng, rows, cols, bits, True, bits, True, 3, params=params)
            + gemm_script(nprng, params["max_rows"], min(3, cols), 1, False, params["max_bits"], False, 2,
                          params=params)
            + [data for _, data in bad_requests(params) + bad_thresholds_requests(params)
               + bad_sums_requests(params)])
    for a_bits in range(1, params.get("max_act_bits", 0) + 1):
        pool += act_script(nprng, rows, cols, bits, a_bits % 2 == 1, bits, True, a_bits, 3,
                           t_chunk=1 + a_bits % 2, params=params)
    if params.get("sum_slots"):
        pool += sums_script(nprng, rows, cols, bits, True, bits, False, batch=2, vectors=2, params=params)
    if params.get("fmap_codes"):
        pool += [data for _, data in bad_window_requests(params)] + window_script(nprng, params=params)
    if params.get("packed_accumulators"):
        pool += gemm_script(nprng, rows, cols, bits, True, bits, False, 5, packed=True, params=params)
    script = []
    for _ in range(steps):
        data = bytearray(rng.choice(pool))
        kind = rng.random()
        if kind < 0.2 and len(data) > 6:
            data[rng.randrange(1, len(data))] ^= 1 << rng.randrange(8)
        elif kind < 0.3:
            script += [bytes(data[:rng.randrange(1, len(data))]), Idle(timeout + 3)]
            continue
        script.append(bytes(data))
    return script
