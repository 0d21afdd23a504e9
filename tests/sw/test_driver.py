"""The core model (sw.core_model) and the host driver (sw.driver) over a
loopback and over a pseudo-terminal with pyserial.

The core model's replies are checked byte for byte against the protocol's
rules (status order, no effect on error); the driver's GEMMs against
signed_matmul; CoreEngine against IntRefEngine, down to a short training run.
"""

import copy
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sim.pty_bridge import PtyBridge
from sw.contract.codes import levels
from sw import driver
from sw import protocol as P
from sw.bitplanes import signed_matmul
from sw.core_model import CoreModel
from sw.contract.link import LOAD_FIELDS, RUN_FIELDS, THRESHOLD_FIELDS
from sw.core_engine import CoreEngine
from sw.driver import CoreClient, LoopbackTransport, SerialTransport, Transport
from sw.intref import IntRefEngine
from sw.products import ConvGeometry, LinearGeometry
from sw.protocol import Cmd, CoreError, Detail, FramingError, LinkError, LinkTimeout, Status
from sw.quantizers import Quantized

# A deliberately tiny core: every GEMM below is tiled and split over many frames.
TINY = dict(max_rows=8, max_cols=40, max_bits=8, pe=2, simd=8, max_payload=64, max_act_bits=3)


def tiny_client(**kwargs):
    return CoreClient(LoopbackTransport(CoreModel(**TINY)), **kwargs)


def values(codes, bits, signed):
    return 2 * codes - levels(bits) if signed else codes


# --------------------------------------------------------------------------- core model, byte level

class Wire:
    """Raw frames to a core model, replies decoded (no driver in between)."""

    def __init__(self, **limits):
        self.core = CoreModel(**limits)
        self.tag = 0

    def send_raw(self, data, now=None):
        events = P.FrameDecoder(backtrack=False).feed(self.core.feed(data, now))
        assert all(isinstance(e, P.Frame) for e in events)
        return events

    def __call__(self, cmd, payload=b""):
        self.tag = (self.tag + 1) & 0xFF
        (reply,) = self.send_raw(P.encode_frame(cmd, payload, self.tag))
        assert reply.tag == self.tag
        return reply.code, reply.payload


def test_core_model_ping_reset_and_unknown_command():
    wire = Wire(**TINY)
    status, payload = wire(Cmd.PING)
    assert status == Status.OK
    assert P.decode_ping_reply(payload) == P.CoreInfo(P.PROTOCOL_VERSION, 8, 2, 8, 8, 40, 64, 3)
    assert P.decode_ping_reply(payload).baud == 0  # a model of a byte-stream core: no UART
    # the model reports the rate it is given, as PING's bytes 13..16 (3,000,000 = 0x002DC6C0),
    # then no batch sums (sum_slots u16 and sum_bits u8, both 0), no feature map (fmap_codes u16, 0)
    # and whole-byte accumulators (packed_accumulators u8, 0)
    status, payload = Wire(**TINY, baud=3_000_000)(Cmd.PING)
    assert status == Status.OK and payload[13:] == bytes.fromhex("c0c62d00 0000 00 0000 00 01")
    assert P.decode_ping_reply(payload) == P.CoreInfo(P.PROTOCOL_VERSION, 8, 2, 8, 8, 40, 64, 3, 3_000_000)
    assert wire(Cmd.PING, b"x") == (Status.BAD_LENGTH, bytes([Cmd.PING, 0]))
    assert wire(Cmd.RESET) == (Status.OK, b"")
    assert wire(Cmd.RESET, b"\x00") == (Status.BAD_LENGTH, bytes([Cmd.RESET, 0]))
    assert wire(0x7E) == (Status.BAD_COMMAND, bytes([0x7E, 0]))


def test_core_model_rejects_bad_limits():
    with pytest.raises(ValueError, match="does not fit"):
        CoreModel(max_rows=8, max_cols=100, max_payload=64)
    with pytest.raises(ValueError, match="thresholds of one row"):
        CoreModel(max_rows=8, max_cols=40, max_payload=64, max_act_bits=4)  # 6 + 61 bytes > 64
    with pytest.raises(ValueError, match="max_rows"):
        CoreModel(max_rows=0)
    for baud in (-1, 1 << 32, True, 3e6):
        with pytest.raises(ValueError, match=r"baud must be an integer in 0..4294967295 \(0: not a UART core\)"):
            CoreModel(baud=baud)


def test_core_model_load_and_run_bytes():
    wire = Wire(**TINY)
    m = np.array([[0, 1, 2], [3, 2, 1]])
    status, payload = wire(Cmd.LOAD_MATRIX, P.encode_load_matrix(2, 3, 2, True, 0, m))
    assert (status, payload) == (Status.OK, (6).to_bytes(4, "little"))
    v = np.array([[1, 0, 1], [1, 1, 1]])
    status, payload = wire(Cmd.RUN, P.encode_run(1, False, v))
    assert status == Status.OK
    expected = v @ (2 * m - 3).T  # [[-3+1, 3-1], [-3-1+1, 3+1-1]]
    # 3 columns of 2-bit by 1-bit codes: |acc| <= 9, one byte each after the width byte
    assert payload == bytes([1, 0xFE, 0x02, 0xFD, 0x03])
    np.testing.assert_array_equal(P.decode_accumulators(payload, 2, 2, 1), [[-2, 2], [-3, 3]])
    np.testing.assert_array_equal(wire.core.matrix, m)


def load(rows, cols, bits=2, flags=0, offset=0, count=None, data=None):
    count = rows * cols - offset if count is None else count
    data = bytes(P.packed_size(count, bits)) if data is None else data
    return LOAD_FIELDS.pack(rows, cols, bits, flags, offset, count) + data


def run(count, bits=2, flags=0, cols=3, data=None):
    data = bytes(P.packed_size(count * cols, bits)) if data is None else data
    return RUN_FIELDS.pack(count, bits, flags) + data


@pytest.mark.parametrize("payload, status, detail", [
    (load(2, 3)[:11], Status.BAD_LENGTH, Detail.NONE),
    (load(2, 3, bits=0), Status.BAD_PARAMS, Detail.BITS),
    (load(2, 3, bits=9), Status.BAD_PARAMS, Detail.BITS),
    (load(2, 3, flags=2), Status.BAD_PARAMS, Detail.FLAGS),
    (load(0, 3, bits=0), Status.BAD_PARAMS, Detail.BITS),  # bits are checked before rows
    (load(0, 3), Status.BAD_PARAMS, Detail.ROWS),
    (load(9, 3), Status.BAD_PARAMS, Detail.ROWS),
    (load(2, 0), Status.BAD_PARAMS, Detail.COLS),
    (load(2, 41), Status.BAD_PARAMS, Detail.COLS),
    (load(2, 3, count=0), Status.BAD_PARAMS, Detail.COUNT),
    (load(2, 3, count=7), Status.BAD_PARAMS, Detail.COUNT),
    (load(2, 3, offset=5, count=2), Status.BAD_PARAMS, Detail.COUNT),
    (load(2, 3) + b"\x00", Status.BAD_LENGTH, Detail.NONE),
    (load(2, 3)[:-1], Status.BAD_LENGTH, Detail.NONE),
    (load(2, 3, offset=2), Status.BAD_STATE, Detail.SEQUENCE),  # nothing being loaded
])
def test_core_model_load_errors_in_order(payload, status, detail):
    wire = Wire(**TINY)
    assert wire(Cmd.LOAD_MATRIX, payload) == (status, bytes([Cmd.LOAD_MATRIX, detail]))
    assert wire.core.matrix is None


@pytest.mark.parametrize("payload, status, detail", [
    (run(1)[:3], Status.BAD_LENGTH, Detail.NONE),
    (run(1, bits=0), Status.BAD_PARAMS, Detail.BITS),
    (run(1, flags=0x80), Status.BAD_PARAMS, Detail.FLAGS),
    (run(0), Status.BAD_PARAMS, Detail.COUNT),
    (run(8), Status.BAD_PARAMS, Detail.REPLY_TOO_BIG),  # 1 + 8 vectors x 8 rows x 1 byte > 64
    (run(4, bits=8), Status.BAD_PARAMS, Detail.REPLY_TOO_BIG),  # 2 + 2 + 8 + 1 bits: 2 bytes; 1 + 4 x 8 x 2 > 64
    (run(2) + b"\x00", Status.BAD_LENGTH, Detail.NONE),
    (run(2, cols=5), Status.BAD_LENGTH, Detail.NONE),
])
def test_core_model_run_errors_in_order(payload, status, detail):
    wire = Wire(**TINY)
    assert wire(Cmd.RUN, run(1)) == (Status.BAD_STATE, bytes([Cmd.RUN, Detail.NO_MATRIX]))
    assert wire(Cmd.LOAD_MATRIX, load(8, 3))[0] == Status.OK
    assert wire(Cmd.RUN, payload) == (status, bytes([Cmd.RUN, detail]))
    assert wire(Cmd.RUN, run(2))[0] == Status.OK  # still usable


def test_core_model_multi_frame_load_sequence_and_no_effect_on_error():
    wire = Wire(**TINY)
    m = np.arange(24).reshape(8, 3) % 4
    flat = m.ravel()
    first = P.encode_load_matrix(8, 3, 2, True, 0, flat[:10])
    assert wire(Cmd.LOAD_MATRIX, first) == (Status.OK, (10).to_bytes(4, "little"))
    assert wire.core.matrix is None  # incomplete
    assert wire(Cmd.RUN, run(1))[0] == Status.BAD_STATE
    # wrong offset, or a changed header, does not continue the matrix
    for bad in (P.encode_load_matrix(8, 3, 2, True, 11, flat[11:]), P.encode_load_matrix(8, 3, 2, False, 10, flat[10:]),
                P.encode_load_matrix(8, 3, 3, True, 10, flat[10:])):
        assert wire(Cmd.LOAD_MATRIX, bad) == (Status.BAD_STATE, bytes([Cmd.LOAD_MATRIX, Detail.SEQUENCE]))
    assert wire(Cmd.LOAD_MATRIX, P.encode_load_matrix(8, 3, 2, True, 10, flat[10:]))[1] == (24).to_bytes(4, "little")
    np.testing.assert_array_equal(wire.core.matrix, m)
    # a rejected new matrix leaves the old one in place
    assert wire(Cmd.LOAD_MATRIX, load(2, 50))[0] == Status.BAD_PARAMS
    np.testing.assert_array_equal(wire.core.matrix, m)
    # RESET forgets it
    wire(Cmd.RESET)
    assert wire.core.matrix is None and wire(Cmd.RUN, run(1))[0] == Status.BAD_STATE


def thresholds_payload(offset=0, count=2, bits=2, flags=0, records=None):
    records = bytes(count * P.threshold_record_size(bits)) if records is None else records
    return THRESHOLD_FIELDS.pack(offset, count, bits, flags) + records


def passes(acc, thresholds, direction):
    """The activation code by its definition: thresholds passed, one by one."""
    return sum((acc <= t) if direction < 0 else (acc >= t) for t in thresholds)


@pytest.mark.parametrize("act_bits", [1, 2, 3])
def test_core_model_activated_run_counts_thresholds_passed(act_bits):
    rng = np.random.default_rng(act_bits)
    wire = Wire(**TINY)
    m = rng.integers(0, 4, size=(8, 5))
    v = rng.integers(0, 8, size=(3, 5))
    acc = v @ (2 * m - 3).T  # 3-bit unsigned vectors x 2-bit signed matrix
    n = levels(act_bits)
    # ascending, descending and unordered thresholds around the accumulators, int32 extremes too
    thresholds = rng.integers(acc.min() - 2, acc.max() + 3, size=(8, n))
    thresholds[0] = 2**31 - 1
    thresholds[1] = -(2**31)
    direction = np.where(np.arange(8) % 3 == 1, -1, 1)
    assert wire(Cmd.LOAD_MATRIX, P.encode_load_matrix(8, 5, 2, True, 0, m))[0] == Status.OK
    per_frame = (TINY["max_payload"] - P.THRESHOLD_HEADER) // P.threshold_record_size(act_bits)
    for first in range(0, 8, per_frame):
        assert wire(Cmd.RUN, P.encode_run(3, False, v, activate=True)) == \
            (Status.BAD_STATE, bytes([Cmd.RUN, Detail.NO_THRESHOLDS]))  # not every row has them yet
        rows = slice(first, first + per_frame)
        status, loaded = wire(Cmd.LOAD_THRESHOLDS, P.encode_load_thresholds(first, act_bits, thresholds[rows],
                                                                            direction[rows]))
        assert (status, loaded) == (Status.OK, min(first + per_frame, 8).to_bytes(2, "little"))
    loaded_thresholds, loaded_direction, loaded_bits = wire.core.thresholds  # the model speaks +1 / -1 too
    np.testing.assert_array_equal(loaded_thresholds, thresholds)
    np.testing.assert_array_equal(loaded_direction, direction)
    assert loaded_bits == act_bits
    status, payload = wire(Cmd.RUN, P.encode_run(3, False, v, activate=True))
    assert status == Status.OK and len(payload) == P.packed_size(3 * 8, act_bits)
    want = [[passes(acc[i, r], thresholds[r], direction[r]) for r in range(8)] for i in range(3)]
    np.testing.assert_array_equal(P.decode_activations(payload, 3, 8, act_bits), want)
    assert wire.core.stats["activations"] == 24
    # the plain RUN still answers accumulators
    width = P.accumulator_width(5, 2, 3)  # 3 + 2 + 3 + 1 = 9 bits: two bytes
    assert wire(Cmd.RUN, P.encode_run(3, False, v[:1])) == (Status.OK, P.encode_accumulators(acc[:1], width))


@pytest.mark.parametrize("payload, status, detail", [
    (thresholds_payload()[:5], Status.BAD_LENGTH, Detail.NONE),
    (thresholds_payload(bits=0), Status.BAD_PARAMS, Detail.BITS),
    (thresholds_payload(bits=4, records=b""), Status.BAD_PARAMS, Detail.BITS),  # TINY: max_act_bits = 3
    (thresholds_payload(flags=1), Status.BAD_PARAMS, Detail.FLAGS),
    (thresholds_payload(count=0), Status.BAD_PARAMS, Detail.COUNT),
    (thresholds_payload(count=9, records=b""), Status.BAD_PARAMS, Detail.COUNT),  # the matrix has 8 rows
    (thresholds_payload(offset=7, count=2), Status.BAD_PARAMS, Detail.COUNT),
    (thresholds_payload() + b"\x00", Status.BAD_LENGTH, Detail.NONE),
    (thresholds_payload(count=2, records=bytes(12)), Status.BAD_LENGTH, Detail.NONE),
    (thresholds_payload(offset=3, count=2), Status.BAD_STATE, Detail.SEQUENCE),  # none being loaded
])
def test_core_model_threshold_errors_in_order(payload, status, detail):
    wire = Wire(**TINY)
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload()) == \
        (Status.BAD_STATE, bytes([Cmd.LOAD_THRESHOLDS, Detail.NO_MATRIX]))
    assert wire(Cmd.LOAD_MATRIX, load(8, 3))[0] == Status.OK
    assert wire(Cmd.LOAD_THRESHOLDS, payload) == (status, bytes([Cmd.LOAD_THRESHOLDS, detail]))
    assert wire.core.thresholds is None  # an error changes nothing
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload()) == (Status.OK, (2).to_bytes(2, "little"))


def test_core_model_threshold_sequence_lifetime_and_reply_limit():
    wire = Wire(**TINY)
    assert wire(Cmd.LOAD_MATRIX, load(8, 3))[0] == Status.OK
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload(count=3, bits=2))[0] == Status.OK
    for bad in (thresholds_payload(offset=3, count=1, bits=3),  # other bits
                thresholds_payload(offset=4, count=1, bits=2)):  # a gap
        assert wire(Cmd.LOAD_THRESHOLDS, bad) == (Status.BAD_STATE, bytes([Cmd.LOAD_THRESHOLDS, Detail.SEQUENCE]))
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload(offset=3, count=2, bits=2))[1] == (5).to_bytes(2, "little")
    assert wire(Cmd.RUN, run(1, flags=P.FLAG_ACTIVATE))[1] == bytes([Cmd.RUN, Detail.NO_THRESHOLDS])
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload(offset=5, count=3, bits=2))[1] == (8).to_bytes(2, "little")
    # 2-bit codes: 8 rows are 2 bytes a vector, so 32 vectors fit the 64-byte reply, 33 do not
    assert wire(Cmd.RUN, run(32, flags=P.FLAG_ACTIVATE))[0] == Status.OK
    assert wire(Cmd.RUN, run(33, flags=P.FLAG_ACTIVATE)) == \
        (Status.BAD_PARAMS, bytes([Cmd.RUN, Detail.REPLY_TOO_BIG]))
    # a matrix continued keeps them; a new matrix or RESET forgets them
    assert wire(Cmd.LOAD_MATRIX, load(8, 3, count=10))[0] == Status.OK
    assert wire.core.thresholds is None
    assert wire(Cmd.LOAD_MATRIX, load(8, 3, offset=10))[0] == Status.OK
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload())[0] == Status.OK
    assert wire(Cmd.LOAD_MATRIX, load(4, 3, count=2, offset=0))[0] == Status.OK
    assert wire(Cmd.LOAD_MATRIX, load(4, 3, offset=2))[0] == Status.OK
    assert wire(Cmd.RUN, run(1, flags=P.FLAG_ACTIVATE))[1] == bytes([Cmd.RUN, Detail.NO_THRESHOLDS])
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload(count=4))[0] == Status.OK
    wire(Cmd.RESET)
    assert wire.core.thresholds is None


def test_core_model_without_activation_stage():
    wire = Wire(**{**TINY, "max_act_bits": 0})
    assert P.decode_ping_reply(wire(Cmd.PING)[1]).max_act_bits == 0
    assert wire(Cmd.LOAD_MATRIX, load(8, 3))[0] == Status.OK
    assert wire(Cmd.LOAD_THRESHOLDS, thresholds_payload()) == \
        (Status.BAD_COMMAND, bytes([Cmd.LOAD_THRESHOLDS, Detail.NONE]))
    assert wire(Cmd.RUN, run(1, flags=P.FLAG_ACTIVATE)) == (Status.BAD_PARAMS, bytes([Cmd.RUN, Detail.FLAGS]))


def test_core_model_receiver_errors():
    wire = Wire(**TINY)
    good = P.encode_frame(Cmd.PING, b"", 1)
    bad = bytearray(good)
    bad[-1] ^= 1
    (reply,) = wire.send_raw(bytes(bad))
    assert (reply.code, reply.tag, reply.payload) == (Status.BAD_CRC, 1, bytes([Cmd.PING, 0]))
    # oversize length: answered right after the header, without waiting for the payload
    (reply,) = wire.send_raw(bytes([P.SYNC, Cmd.RUN, 2]) + (65).to_bytes(2, "little"))
    assert (reply.code, reply.tag, reply.payload) == (Status.BAD_LENGTH, 2, bytes([Cmd.RUN, 0]))
    # garbage between frames is skipped; the state machine keeps going
    replies = wire.send_raw(b"\x00\x13garbage" + good + b"\xff" * 5 + good)
    assert [r.code for r in replies] == [Status.OK, Status.OK]
    assert wire.core.pending == 0


def test_core_model_idle_timeout_drops_partial_request():
    wire = Wire(**TINY, rx_idle_timeout=0.1)
    frame = P.encode_frame(Cmd.PING, b"", 3)
    assert wire.send_raw(frame[:4], now=10.0) == [] and wire.core.pending == 4
    # within the timeout the frame continues
    assert [r.code for r in wire.send_raw(frame[4:], now=10.05)] == [Status.OK]
    # a truncated request followed, after an idle gap, by a whole one
    assert wire.send_raw(frame[:6], now=11.0) == []
    assert [r.code for r in wire.send_raw(frame, now=11.5)] == [Status.OK]
    assert wire.core.stats["idle_drops"] == 1
    # without the gap the truncated frame swallows the next one (error, no wedge)
    assert wire.send_raw(frame[:6], now=12.0) == []
    assert [r.code for r in wire.send_raw(frame, now=12.01)] == [Status.BAD_CRC]
    assert [r.code for r in wire.send_raw(frame, now=12.02)] == [Status.OK]


# --------------------------------------------------------------------------- client over loopback

def test_client_ping_and_info():
    client = tiny_client()
    info = client.ping()
    assert (info.max_rows, info.max_cols, info.max_bits, info.max_payload) == (8, 40, 8, 64)
    assert client.info is info


# (W, A, G) grid: the three products' readings (forward W x A, backward-input W x G, backward-weight G x A)
BIT_GRID = [(1, 1, 1), (1, 2, 6), (2, 3, 4), (3, 1, 8), (4, 4, 4), (5, 7, 2), (8, 8, 8)]


@pytest.mark.parametrize("w, a, g", BIT_GRID)
def test_gemm_grid_equals_signed_matmul(w, a, g):
    client = tiny_client()
    rng = np.random.default_rng(w * 100 + a * 10 + g)
    n, o, k = 13, 19, 91  # 3 row tiles x 3 column tiles, many frames each
    cases = [  # (vector bits, signed), (matrix bits, signed)
        ((a, False), (w, True)),   # forward: activations x W
        ((g, True), (w, True)),    # backward-input: gradients x W^T
        ((a, False), (g, True)),   # backward-weight: activations x G_b
    ]
    for (vb, vs), (mb, ms) in cases:
        v = rng.integers(0, 1 << vb, (n, k))
        m = rng.integers(0, 1 << mb, (o, k))
        got = client.matmul(v, vb, vs, m, mb, ms)
        assert got.dtype == np.int64 and got.shape == (n, o)
        np.testing.assert_array_equal(got, signed_matmul(v, levels(vb) if vs else None, vb,
                                                         m, levels(mb) if ms else None, mb))
        np.testing.assert_array_equal(got, values(v, vb, vs) @ values(m, mb, ms).T)


def test_gemm_extremes_fill_int32_range_of_a_tile():
    # the largest accumulator a UP5K-sized core can produce, and its negative
    client = CoreClient(LoopbackTransport(CoreModel()))
    k = client.info.max_cols
    v = np.full((2, k), 255)
    m = np.stack([np.full(k, 255), np.zeros(k, dtype=np.int64)])
    got = client.matmul(v, 8, True, m, 8, True)
    np.testing.assert_array_equal(got, [[k * 255 * 255, -k * 255 * 255]] * 2)


def test_client_load_and_run_directly():
    client = tiny_client()
    m = np.arange(8 * 40).reshape(8, 40) % 8
    client.load_matrix(m, 3, False)
    frames = client.stats["requests"]
    assert frames > 2  # 320 3-bit codes over 52-byte data fields
    v = np.arange(5 * 40).reshape(5, 40) % 2
    np.testing.assert_array_equal(client.run(v, 1, True), (2 * v - 1) @ m.T)
    assert client.run(np.zeros((0, 40), dtype=np.int64), 1, False).shape == (0, 8)


def test_client_validates_arguments_before_sending():
    client = tiny_client()
    with pytest.raises(ValueError, match="load_matrix first"):
        client.run([[1]], 1, False)
    with pytest.raises(ValueError, match="exceeds"):
        client.load_matrix(np.zeros((9, 3), dtype=np.int64), 1, False)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        client.load_matrix([[4]], 2, False)
    with pytest.raises(ValueError, match="1..8"):
        client.load_matrix([[1]], 9, False)
    client.load_matrix([[1, 2]], 2, False)
    with pytest.raises(ValueError, match="columns"):
        client.run([[1, 2, 3]], 2, False)
    with pytest.raises(ValueError, match="integer"):
        client.run(np.array([[0.5, 1.0]]), 2, False)


def random_thresholds(rng, acc, rows, act_bits):
    """Per row: sorted thresholds spanning the accumulators (as fold_thresholds makes them),
    descending for a row of direction -1; one row unordered, one constant (thresholds out of range)."""
    t = np.sort(rng.integers(acc.min() - 1, acc.max() + 2, size=(rows, levels(act_bits))), axis=1)
    direction = np.where(rng.random(rows) < 0.4, -1, 1)
    t[direction < 0] = t[direction < 0, ::-1]
    t[0] = rng.permutation(t[0])
    t[-1] = acc.max() + 1
    return t, direction


@pytest.mark.parametrize("v_bits, m_bits, act_bits", [(1, 1, 1), (2, 1, 2), (3, 4, 3), (8, 8, 2)])
def test_client_activations_equal_thresholds_of_matmul(v_bits, m_bits, act_bits):
    rng = np.random.default_rng(v_bits * 100 + m_bits * 10 + act_bits)
    client = tiny_client()
    rows, cols = 19, 40  # three row tiles of the 8-row core, one column tile
    v = rng.integers(0, 1 << v_bits, (37, cols))
    m = rng.integers(0, 1 << m_bits, (rows, cols))
    acc = signed_matmul(v, None, v_bits, m, levels(m_bits), m_bits)
    thresholds, direction = random_thresholds(rng, acc, rows, act_bits)
    got = client.activations(v, v_bits, False, m, m_bits, True, thresholds, direction, act_bits)
    want = [[passes(acc[i, r], thresholds[r], direction[r]) for r in range(rows)]
            for i in range(v.shape[0])]
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 1


def test_client_activation_arguments_are_checked():
    client = tiny_client()
    t2 = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="load_matrix before load_thresholds"):
        client.load_thresholds(t2, [1, 1], 2)
    client.load_matrix([[1, 2], [0, 3]], 2, False)
    with pytest.raises(ValueError, match="load_thresholds first"):
        client.run([[1, 1]], 2, False, activate=True)
    with pytest.raises(ValueError, match="activation bits must be 1..3"):
        client.load_thresholds(np.zeros((2, 15), dtype=np.int64), [1, 1], 4)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        client.load_thresholds(t2[:1], [1], 2)
    with pytest.raises(ValueError, match="directions must be"):
        client.load_thresholds(t2, [1, 0], 2)
    client.load_thresholds(t2, [1, -1], 2)
    np.testing.assert_array_equal(client.run([[1, 1]], 2, False, activate=True), [[3, 0]])
    client.load_matrix([[1, 2], [0, 3]], 2, False)  # a new matrix: the core forgot the thresholds
    with pytest.raises(ValueError, match="load_thresholds first"):
        client.run([[1, 1]], 2, False, activate=True)
    with pytest.raises(ValueError, match="up to 40 columns and 3 activation bits"):
        client.activations(np.zeros((1, 41), dtype=np.int64), 1, False, np.zeros((1, 41), dtype=np.int64), 1,
                           False, np.zeros((1, 1), dtype=np.int64), [1], 1)
    no_stage = CoreClient(LoopbackTransport(CoreModel(**{**TINY, "max_act_bits": 0})))
    no_stage.load_matrix([[1]], 1, False)
    with pytest.raises(ValueError, match="no activation stage"):
        no_stage.load_thresholds([[0]], [1], 1)


class Tamper(Transport):
    """Wraps a transport; can corrupt the next frame written or the bytes read."""

    def __init__(self, inner):
        self.inner = inner
        self.corrupt_next_write = None  # byte index to flip
        self.corrupt_reads = False

    def write(self, data):
        if self.corrupt_next_write is not None:
            data = bytearray(data)
            data[self.corrupt_next_write] ^= 0x01
            self.corrupt_next_write = None
        self.inner.write(bytes(data))

    def read(self, size, timeout):
        data = self.inner.read(size, timeout)
        if self.corrupt_reads and data:
            data = bytearray(data)
            data[-1] ^= 0x01
        return bytes(data)

    def close(self):
        self.inner.close()


def check_link_recovers(client, tamper):
    rng = np.random.default_rng(0)
    v, m = rng.integers(0, 4, (5, 50)), rng.integers(0, 2, (10, 50))
    expected = signed_matmul(v, None, 2, m, 1, 1)
    # bad CRC in a request: the core answers BAD_CRC, the client raises
    tamper.corrupt_next_write = -1
    with pytest.raises(CoreError) as info:
        client.ping()
    assert info.value.status == Status.BAD_CRC and info.value.command == Cmd.PING
    np.testing.assert_array_equal(client.matmul(v, 2, False, m, 1, True), expected)
    # a corrupted command byte: BAD_CRC again (the reply echoes the byte as received)
    tamper.corrupt_next_write = 1
    with pytest.raises(CoreError, match="BAD_CRC"):
        client.reset()
    # a well-formed but invalid request
    with pytest.raises(CoreError) as info:
        client.request(Cmd.RUN, RUN_FIELDS.pack(1, 9, 0) + bytes(8))
    assert (info.value.status, info.value.detail) == (Status.BAD_PARAMS, Detail.BITS)
    with pytest.raises(CoreError, match="BAD_COMMAND"):
        client.request(0x55)
    with pytest.raises(CoreError, match="BAD_LENGTH"):
        client.request(Cmd.PING, b"\x00")
    with pytest.raises(CoreError, match="BAD_LENGTH"):  # malformed: data shorter than count says
        client.request(Cmd.LOAD_MATRIX, P.encode_load_matrix(2, 3, 2, False, 0, [1] * 6)[:-1])
    np.testing.assert_array_equal(client.matmul(v, 2, False, m, 1, True), expected)


def test_error_replies_raise_and_link_recovers_loopback():
    tamper = Tamper(LoopbackTransport(CoreModel(**TINY)))
    check_link_recovers(CoreClient(tamper), tamper)


def test_corrupt_reply_raises_framing_error_and_stale_replies_are_ignored():
    tamper = Tamper(LoopbackTransport(CoreModel(**TINY)))
    client = CoreClient(tamper, timeout=0.2, recovery=0.0)
    client.ping()
    tamper.corrupt_reads = True
    with pytest.raises(FramingError, match="corrupt"):
        client.ping()
    tamper.corrupt_reads = False
    # a stale reply (old tag) in the pipe is skipped
    tamper.inner._rx += P.encode_frame(Status.BAD_PARAMS, b"\x04\x03", tag=(client._tag - 1) & 0xFF)
    client.ping()
    assert client.stats["stale_replies"] == 1


class Silent(Transport):
    def write(self, data):
        pass

    def read(self, size, timeout):
        time.sleep(min(timeout, 0.05))
        return b""


def test_silent_core_raises_link_timeout():
    client = CoreClient(Silent(), timeout=0.2, recovery=0.1)
    t = time.monotonic()
    with pytest.raises(LinkTimeout, match="no reply to PING within 0.2 s"):
        client.ping()
    assert time.monotonic() - t < 1.0
    with pytest.raises(LinkError):  # waits out the recovery time, then times out again
        client.reset()


class Slow(Silent):
    reply_timeout = 0.3  # a slow core: its transport says how long to wait


def test_reply_timeout_comes_from_the_client_then_the_transport_then_the_default():
    assert CoreClient(Silent()).timeout == driver.DEFAULT_TIMEOUT_S == 2.0
    assert CoreClient(Slow()).timeout == 0.3
    assert CoreClient(Slow(), timeout=0.1).timeout == 0.1
    with pytest.raises(LinkTimeout, match="no reply to PING within 0.3 s"):
        CoreClient(Slow(), recovery=0.0).ping()


def test_closed_loopback_raises_link_error():
    transport = LoopbackTransport(CoreModel(**TINY))
    client = CoreClient(transport)
    client.close()
    with pytest.raises(LinkError, match="closed"):
        client.ping()


# --------------------------------------------------------------------------- the serial line's rate

class UARTLoopback(LoopbackTransport):
    """The core model behind what the client takes for a UART at ``baudrate`` on ``device``."""

    def __init__(self, core, baudrate, device="/dev/ttyUSB1"):
        super().__init__(core)
        self.baudrate, self.device = baudrate, device


class Scripted(Transport):
    """A line at ``baudrate`` that answers each request with the next of ``replies`` (bytes,
    with ``{tag}`` frames built from the request's tag: a callable), then nothing."""

    def __init__(self, baudrate, replies, device="/dev/ttyUSB1"):
        self.baudrate, self.device, self.replies, self._rx = baudrate, device, list(replies), b""

    def write(self, data):
        reply = self.replies.pop(0) if self.replies else b""
        self._rx += reply(data[2]) if callable(reply) else reply

    def read(self, size, timeout):
        data, self._rx = self._rx[:size], self._rx[size:]
        return data


@pytest.mark.parametrize("core_baud, host_baud", [
    (3_000_000, 3_000_000),
    (115_385, 115_200),    # 27 MHz / 234: 0.16 % fast
    (2_941_176, 3_000_000),  # 50 MHz / 17: 1.96 % slow
    (3_075_000, 3_000_000),  # 2.5 % fast: the limit
    (0, 3_000_000),        # a core without a UART (a byte stream bridged to a line): nothing to check
    (115_200, None),       # a link without a rate (a pseudo-terminal): nothing to check
])
def test_ping_accepts_a_core_at_the_lines_rate(core_baud, host_baud):
    client = CoreClient(UARTLoopback(CoreModel(**TINY, baud=core_baud), host_baud))
    assert client.ping().baud == core_baud
    assert client.info.baud == core_baud


@pytest.mark.parametrize("core_baud, host_baud, apart", [
    (115_385, 3_000_000, "96.2 %"),   # a fallback build opened at the default rate
    (3_000_000, 115_200, "2504.2 %"),
    (3_076_000, 3_000_000, "2.5 %"),  # 2.53 %: just over
    (2_920_000, 3_000_000, "2.7 %"),
])
def test_ping_refuses_a_core_at_another_rate(core_baud, host_baud, apart):
    client = CoreClient(UARTLoopback(CoreModel(**TINY, baud=core_baud), host_baud))
    with pytest.raises(LinkError) as info:
        client.ping()
    message = str(info.value)
    assert message == (f"the core's UART runs at {core_baud} baud but this host opened the line at {host_baud} "
                       f"baud ({apart} apart; at most 2.5 % works): open it as serial:/dev/ttyUSB1@{core_baud} "
                       f"or rebuild the core with dorefa build --baud {host_baud}")
    # nothing is driven on a core the client refused: every request PINGs it again
    with pytest.raises(LinkError, match="the core's UART runs at"):
        client.load_matrix(np.zeros((2, 2), dtype=np.int64), 1, False)


FIRST_PING_HINT = ("the line runs at 3000000 baud and a core built for another rate answers garbage or nothing: "
                   "open it at the core's rate (serial:/dev/ttyUSB1@RATE) or rebuild the core with "
                   "dorefa build --baud 3000000")


def test_first_ping_without_reply_names_the_rate():
    with pytest.raises(LinkTimeout) as info:
        CoreClient(Scripted(3_000_000, []), timeout=0.1, recovery=0.0).ping()
    assert str(info.value) == "no reply to PING within 0.1 s (link dead or core wedged); " + FIRST_PING_HINT


def test_first_ping_with_garbage_names_the_rate():
    def corrupt(tag):  # a reply whose CRC is wrong: what a line at the wrong rate makes of bytes
        frame = bytearray(P.encode_frame(Status.OK, CoreModel(**TINY).info.pack(), tag))
        frame[-1] ^= 0xFF
        return bytes(frame)
    with pytest.raises(FramingError) as info:
        CoreClient(Scripted(3_000_000, [corrupt]), timeout=0.1, recovery=0.0).ping()
    message = str(info.value)
    assert message.startswith("no valid reply to PING within 0.1 s; 1 corrupt frame(s) received: BAD_CRC")
    assert message.endswith("; " + FIRST_PING_HINT)


def test_later_pings_and_rateless_links_do_not_blame_the_rate():
    ok = lambda tag: P.encode_frame(Status.OK, CoreModel(**TINY, baud=3_000_000).info.pack(), tag)  # noqa: E731
    client = CoreClient(Scripted(3_000_000, [ok]), timeout=0.1, recovery=0.0)
    assert client.ping().baud == 3_000_000
    with pytest.raises(LinkTimeout) as info:  # the rate worked: a lost reply is only that
        client.ping()
    assert str(info.value) == "no reply to PING within 0.1 s (link dead or core wedged)"
    with pytest.raises(LinkTimeout) as info:
        CoreClient(Scripted(None, []), timeout=0.1, recovery=0.0).ping()
    assert str(info.value) == "no reply to PING within 0.1 s (link dead or core wedged)"


def test_in_process_links_have_no_rate():
    assert Transport.baudrate is None and LoopbackTransport(CoreModel(**TINY)).baudrate is None


# --------------------------------------------------------------------------- CoreEngine == IntRefEngine

def rand_q(rng, shape, bits, signed):
    return Quantized(torch.from_numpy(rng.integers(0, 1 << bits, shape)), torch.tensor(1.0), bits, signed)


CONV_CASES = [  # (B, C, H, O, k, stride, padding)
    (2, 3, 6, 5, 3, 1, 1),
    (2, 4, 7, 9, 3, 2, 1),   # stride 2, odd size: backward-input must restore the full shape
    (1, 2, 8, 3, 2, 2, 0),
    (3, 5, 5, 4, 3, 1, 0),
    (1, 6, 9, 10, 5, 2, 2),  # K = 150 > max_cols, O > max_rows
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("wag", [(1, 2, 6), (3, 5, 2), (8, 8, 8)], ids=str)
def test_core_engine_conv_equals_intref(case, wag):
    b, c, h, o, k, stride, padding = case
    w_bits, a_bits, g_bits = wag
    rng = np.random.default_rng(sum(case) + sum(wag))
    geometry = ConvGeometry(stride=stride, padding=padding)
    x = rand_q(rng, (b, c, h, h), a_bits, False)
    w = rand_q(rng, (o, c, k, k), w_bits, True)
    oh = (h + 2 * padding - k) // stride + 1
    g = rand_q(rng, (b, o, oh, oh), g_bits, True)
    core, ref = CoreEngine(tiny_client()), IntRefEngine()
    for name, args in (("forward", (geometry, x, w)),
                       ("backward_input", (geometry, g, w, (b, c, h, h))),
                       ("backward_weight", (geometry, x, g, (o, c, k, k)))):
        got, expected = getattr(core, name)(*args), getattr(ref, name)(*args)
        assert got.dtype == torch.int64 and got.shape == expected.shape, name
        assert torch.equal(got, expected), name


@pytest.mark.parametrize("wag", [(1, 1, 1), (2, 3, 4), (8, 8, 8)], ids=str)
def test_core_engine_linear_equals_intref(wag):
    w_bits, a_bits, g_bits = wag
    rng = np.random.default_rng(sum(wag))
    geometry = LinearGeometry()
    x = rand_q(rng, (3, 50), a_bits, False)
    w = rand_q(rng, (11, 50), w_bits, True)
    g = rand_q(rng, (3, 11), g_bits, True)
    core, ref = CoreEngine(LoopbackTransport(CoreModel(**TINY))), IntRefEngine()
    for name, args in (("forward", (geometry, x, w)), ("backward_input", (geometry, g, w, (3, 50))),
                       ("backward_weight", (geometry, x, g, (11, 50)))):
        got, expected = getattr(core, name)(*args), getattr(ref, name)(*args)
        assert got.dtype == torch.int64 and torch.equal(got, expected), name


@pytest.mark.parametrize("case", [(2, 3, 6, 5, 3, 1, 1), (1, 6, 9, 10, 5, 2, 2)], ids=str)
def test_core_engine_forward_activations_equal_intref(case):
    from sw.intref import BlockThresholds
    b, c, h, o, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    geometry = ConvGeometry(stride=stride, padding=padding)
    x, w = rand_q(rng, (b, c, h, h), 2, False), rand_q(rng, (o, c, k, k), 1, True)
    ref = IntRefEngine()
    acc = ref.forward(geometry, x, w).numpy()
    thresholds, direction = random_thresholds(rng, acc, o, 2)
    unit = BlockThresholds(torch.from_numpy(thresholds), torch.from_numpy(direction), int(acc.min()),
                           int(acc.max()), None)
    core = CoreEngine(tiny_client())
    got = core.forward_activations(geometry, x, w, unit)
    assert torch.equal(got, ref.forward_activations(geometry, x, w, unit))
    # K = c * k * k: 27 fits the core's 40 columns (thresholds on the core), 150 does not (on the host)
    on_core = c * k * k <= TINY["max_cols"]
    assert core.stats == {"core_thresholds": int(on_core), "host_thresholds": int(not on_core),
                          "core_sums": 0, "host_sums": 0, "windowed": 0, "patched": 1,  # no feature map
                          "core_pools": 0, "host_pools": 0, "interleaved": 0, "host_outer": 0}


def test_core_engine_rejects_bits_beyond_the_core():
    core = CoreEngine(CoreClient(LoopbackTransport(CoreModel(max_rows=8, max_cols=40, max_bits=4, max_payload=64, max_act_bits=3))))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="1..4 on this core"):
        core.forward(LinearGeometry(), rand_q(rng, (2, 5), 2, False), rand_q(rng, (3, 5), 6, True))


TRAIN_CONFIGS = [
    ((1, 2, 6), {}),
    pytest.param((2, 3, 4), {"quantize_first": True, "quantize_last": True}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("bits, switches", TRAIN_CONFIGS, ids=str)
def test_training_on_core_is_bit_identical_to_intref(bits, switches):
    from sw.data import load_digits
    from sw.models import build_model
    from sw.quantizers import GradientNoise

    data = load_digits()
    torch.manual_seed(3)
    reference = build_model("digits", bits, width=0.5, **switches)
    on_core = copy.deepcopy(reference)
    reference.set_engine(IntRefEngine())
    client = CoreClient(LoopbackTransport(CoreModel()))
    on_core.set_engine(CoreEngine(client))
    for model in (reference, on_core):
        model.set_gradient_noise(GradientNoise(seed=11))
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (reference, on_core)]
    x, y = data.train_x[:12], data.train_y[:12]
    for _ in range(3):
        for model, opt in zip((reference, on_core), opts):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (name, p), q in zip(reference.named_parameters(), on_core.parameters()):
        assert torch.equal(p, q), f"{name} differs after 3 steps"
    for (name, p), q in zip(reference.state_dict().items(), on_core.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after 3 steps"
    assert client.stats["requests"] > 100 and client.stats["bad_frames"] == 0


# --------------------------------------------------------------------------- over a pseudo-terminal

@pytest.fixture
def pty_core():
    """The core model on a pty, its idle timeout on the wall clock."""
    served = PtyBridge(LoopbackTransport(CoreModel(**TINY, rx_idle_timeout=0.05), clock=time.monotonic))
    yield served
    served.close()


def test_serial_gemm_over_pty(pty_core):
    with SerialTransport(pty_core.device, 115200, timeout=1.0) as transport:
        client = CoreClient(transport, timeout=1.0)
        assert client.ping().max_cols == 40
        rng = np.random.default_rng(5)
        for (vb, vs), (mb, ms) in (((2, False), (1, True)), ((6, True), (1, True)), ((8, False), (8, True))):
            v = rng.integers(0, 1 << vb, (7, 45))
            m = rng.integers(0, 1 << mb, (10, 45))
            np.testing.assert_array_equal(client.matmul(v, vb, vs, m, mb, ms),
                                          signed_matmul(v, levels(vb) if vs else None, vb,
                                                        m, levels(mb) if ms else None, mb))


def test_serial_errors_and_recovery_over_pty(pty_core):
    with SerialTransport(pty_core.device, 115200, timeout=1.0) as transport:
        tamper = Tamper(transport)
        client = CoreClient(tamper, timeout=1.0)
        check_link_recovers(client, tamper)
        # a truncated request: the core's idle timeout drops the half frame
        tamper.inner.write(P.encode_frame(Cmd.PING, b"", 200)[:4])
        deadline = time.monotonic() + 2
        while pty_core.transport.core.pending != 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pty_core.transport.core.pending == 4
        time.sleep(0.2)
        assert client.ping().max_rows == 8
        assert pty_core.transport.core.stats["idle_drops"] == 1
        assert pty_core.transport.core.stats["errors"] >= 1


def test_serial_dead_link_raises_link_error_within_timeout(pty_core):
    with SerialTransport(pty_core.device, 115200, timeout=0.5) as transport:
        client = CoreClient(transport, timeout=0.5, recovery=0.0)
        client.ping()
        pty_core.stop()  # the core stops answering
        t = time.monotonic()
        with pytest.raises(LinkTimeout, match="no reply to PING"):
            client.ping()
        assert time.monotonic() - t < 1.5
        pty_core.close()  # the far end goes away: no slave fd left open but pyserial's, so EIO
        t = time.monotonic()
        with pytest.raises(LinkError, match="device gone"):
            client.ping()
            client.ping()
        assert time.monotonic() - t < 2.5


def test_serial_missing_device_raises_link_error():
    with pytest.raises(LinkError, match="cannot open serial device '/dev/does-not-exist-dorefa' at 115200 baud"):
        SerialTransport("/dev/does-not-exist-dorefa", 115200, timeout=0.1)
    with pytest.raises(LinkError, match="at 3000000 baud"):  # the default rate
        SerialTransport("/dev/does-not-exist-dorefa", timeout=0.1)


@pytest.mark.parametrize("baud", [None, 115_200, 3_000_000])
def test_serial_port_opens_at_the_rate_a_pty_has_none(pty_core, baud):
    rate = {} if baud is None else {"baudrate": baud}
    with SerialTransport(pty_core.device, timeout=1.0, **rate) as transport:
        assert transport.port.baudrate == (baud or 3_000_000)
        assert transport.baudrate is None  # a pseudo-terminal: no UART whose rate could disagree
        # so a core on it that reports a rate is not checked against the port's
        pty_core.transport.core.info = P.CoreInfo(**{**vars(pty_core.transport.core.info), "baud": 9600})
        assert CoreClient(transport, timeout=1.0).ping().baud == 9600


# --------------------------------------------------------------------------- a device that echoes

ECHO = "the device echoes what it is sent: not a DoReFa core (wrong port or a loopback?)"


class EchoTransport(Transport):
    """A loopback plug: every byte written comes straight back."""

    def __init__(self):
        self._rx = bytearray()

    def write(self, data):
        self._rx += data

    def read(self, size, timeout):
        data = bytes(self._rx[:size])
        del self._rx[:size]
        return data


def test_echo_of_ping_is_named():
    # Echoed, PING (0x01) reads as a BAD_CRC (0x01) reply with an empty payload.
    client = CoreClient(EchoTransport(), timeout=0.2)
    with pytest.raises(LinkError) as info:
        client.ping()
    assert ECHO in str(info.value) and "PING" in str(info.value)
    assert "BAD_CRC" not in str(info.value)


@pytest.mark.parametrize("cmd,payload", [
    (Cmd.LOAD_MATRIX, P.encode_load_matrix(3, 20, 5, True, 0, np.arange(60) % 32)),
    (Cmd.RUN, P.encode_run(4, False, np.arange(200).reshape(5, 40) % 16)),
    (Cmd.RESET, b""),
])
def test_echo_of_longer_requests_is_named(cmd, payload):
    client = CoreClient(EchoTransport(), timeout=0.2)
    with pytest.raises(LinkError, match=r"wrong port or a loopback\?"):
        client.request(cmd, payload)


def test_error_reply_equal_to_its_request_stays_an_error():
    # RESET with the payload [RESET, NONE] gets BAD_LENGTH (0x02 == RESET) [RESET, NONE]
    # from a real core: the reply is byte for byte the request, and still a reply.
    client = tiny_client()
    with pytest.raises(CoreError) as info:
        client.request(Cmd.RESET, bytes((Cmd.RESET, Detail.NONE)))
    assert info.value.status == Status.BAD_LENGTH
    assert client.ping().max_rows == TINY["max_rows"]


def test_train_on_an_echoing_serial_port_is_one_line(capsys, tmp_path):
    from sw.cli import main

    bridge = PtyBridge(EchoTransport())
    try:
        argv = ["train", "--bits", "1,2,6", "--epochs", "1", "--out", str(tmp_path / "run"),
                "--backend", f"serial:{bridge.device}", "--width", "0.25", "--train-limit", "32",
                "--test-limit", "32", "--batch-size", "32", "--no-progress"]
        assert main(argv) == 2
    finally:
        bridge.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("dorefa train: error: ") and ECHO in err, err
