"""Request scripts for the training core's testbenches (Amaranth and cocotb).

A *script* is a list of steps: ``bytes`` (sent to the core's ``rx`` as they
are), :class:`Idle` (no byte offered for some cycles) and :class:`Reset` (the
core's reset held for two cycles).  Requests are built with
:mod:`sw.protocol`'s encoders, or broken on purpose (:func:`bad_requests`);
:func:`expected_replies` feeds the same steps to :class:`sw.core_model.CoreModel`
(an idle gap of at least the core's ``idle_timeout`` calls its
:meth:`~sw.core_model.CoreModel.idle`, a reset starts a fresh model): the
reply bytes the core must send, per reset-separated segment.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import numpy as np

from sw import protocol as P
from sw.core_model import CoreModel

__all__ = ["SMALL", "Idle", "Reset", "expected_replies", "describe_replies", "frame", "load_frames",
           "run_frame", "codes", "gemm_script", "bad_requests", "fuzz_script"]

#: Small enough to simulate quickly, with ragged folds (12 = 3 x 4, 6 = 3 x 2).
SMALL = dict(max_rows=6, max_cols=12, max_bits=8, pe=2, simd=4, max_payload=64)

_LOAD = struct.Struct("<HHBBIH")  # LOAD_MATRIX header (sw.protocol)
_RUN = struct.Struct("<HBB")  # RUN header


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


def describe_replies(data: bytes) -> list:
    """The reply frames in ``data``, decoded for an error message."""
    return [(e.status.name, e.code) if isinstance(e, P.FrameError) else (e.code, e.tag, e.payload.hex())
            for e in P.FrameDecoder(backtrack=True).feed(data)]


def frame(cmd, payload=b"", tag=0) -> bytes:
    return P.encode_frame(cmd, payload, tag)


def load_frames(matrix, bits, signed, *, chunk=None, tag=0, max_payload=SMALL["max_payload"]) -> list:
    """LOAD_MATRIX frames for ``matrix``, ``chunk`` codes each (default: as many as fit)."""
    rows, cols = matrix.shape
    flat = matrix.ravel()
    if chunk is None:
        chunk = (max_payload - P.LOAD_HEADER) * 8 // bits
    return [frame(P.Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, cols, bits, signed, offset,
                                                          flat[offset:offset + chunk]), tag + i)
            for i, offset in enumerate(range(0, flat.size, chunk))]


def run_frame(vectors, bits, signed, tag=0) -> bytes:
    return frame(P.Cmd.RUN, P.encode_run(bits, signed, vectors), tag)


def codes(rng, bits, shape) -> np.ndarray:
    """Random codes, some rows pinned to the ends of the range."""
    out = rng.integers(0, 1 << bits, size=shape)
    pinned = rng.random(shape[0]) < 0.2
    out[pinned] = rng.choice([0, (1 << bits) - 1], size=(int(pinned.sum()), 1))
    return out


def gemm_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, vectors, *, chunk=None,
                params=SMALL) -> list:
    """LOAD_MATRIX frames of a random ``rows x cols`` matrix (``chunk`` codes
    per frame, default as many as fit), then RUN frames of ``vectors`` random
    vectors (as many per frame as fit the request and the reply)."""
    matrix = codes(rng, m_bits, (rows, cols))
    script = load_frames(matrix, m_bits, m_signed, chunk=chunk, max_payload=params["max_payload"])
    per_frame = min((params["max_payload"] - P.RUN_HEADER) * 8 // (cols * v_bits),
                    params["max_payload"] // (P.ACC_BYTES * rows))
    vecs = codes(rng, v_bits, (vectors, cols))
    for start in range(0, vectors, per_frame):
        script.append(run_frame(vecs[start:start + per_frame], v_bits, v_signed, tag=0x80 + start))
    return script


def bad_requests(params=SMALL):
    """One of every error of the protocol (in check order), plus good
    requests between them, as (name, bytes)."""
    mr, mc, mb, mp = params["max_rows"], params["max_cols"], params["max_bits"], params["max_payload"]
    load = lambda rows, cols, bits, flags, offset, count, data=None, extra=0: frame(
        P.Cmd.LOAD_MATRIX,
        _LOAD.pack(rows, cols, bits, flags, offset, count)
        + (bytes(P.packed_size(count, bits) + extra) if data is None else data))
    run = lambda count, bits, flags, nbytes: frame(P.Cmd.RUN, _RUN.pack(count, bits, flags) + bytes(nbytes))
    good = frame(P.Cmd.PING, tag=0x55)
    ping = frame(P.Cmd.PING, tag=1)
    out = [
        ("bad CRC", ping[:-1] + bytes([ping[-1] ^ 1])),
        ("bad CRC in payload", (lambda f: f[:8] + bytes([f[8] ^ 0x10]) + f[9:])(load(2, 3, 2, 0, 0, 6))),
        ("LEN > max_payload, payload follows", P.SYNC.to_bytes(1, "little") + bytes([P.Cmd.RUN, 9])
         + (mp + 1).to_bytes(2, "little") + bytes([0x11] * 10)),
        ("LEN = 0xFFFF", bytes([P.SYNC, P.Cmd.LOAD_MATRIX, 3, 0xFF, 0xFF])),
        ("unknown command 0", frame(0x00)),
        ("unknown command 5", frame(0x05, b"xyz", tag=3)),
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
        ("RUN (ok)", run(2, 2, 1, 2)),
        ("RESET (ok)", frame(P.Cmd.RESET, tag=9)),
        ("RUN after RESET", run(1, 2, 0, 1)),
        ("continue after RESET", load(2, 3, 2, 1, 4, 2)),
        good,
    ]
    return [item if isinstance(item, tuple) else ("good PING", item) for item in out]


def fuzz_script(seed: int, steps: int, params: dict = SMALL, *, timeout: int) -> list:
    """Random requests, some valid, many mutated (a bit flipped, cut short and
    followed by an idle gap past ``timeout``)."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    rows, cols = min(4, params["max_rows"]), min(7, params["max_cols"])
    bits = min(3, params["max_bits"])
    pool = ([frame(P.Cmd.PING), frame(P.Cmd.RESET)]
            + gemm_script(nprng, rows, cols, bits, True, bits, True, 3, params=params)
            + gemm_script(nprng, params["max_rows"], min(3, cols), 1, False, params["max_bits"], False, 2,
                          params=params)
            + [data for _, data in bad_requests(params)])
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
