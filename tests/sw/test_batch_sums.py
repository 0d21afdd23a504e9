"""Batch sums of weight gradients on the core (protocol 4: ACCUMULATE, READ_SUMS).

Every expected sum here is made independently of the code under test: Python
ints, the contract's :func:`sw.contract.gradients.aligned_term` term by term,
and products of code values by numpy (``2q - n`` or ``q``).  The byte strings
spelled out are golden vectors for the gateware too.
"""

import re

import numpy as np
import pytest
import torch

from sw import numeric
from sw import protocol as P
from sw.contract import gradients
from sw.contract.codes import levels
from sw.contract.core import MIN_SUM_BITS, CoreConfig
from sw.contract.link import LOAD_FIELDS, MAX_SUM_BITS
from sw.core_engine import CoreEngine
from sw.core_model import CoreModel
from sw.driver import CoreClient, LoopbackTransport
from sw.intref import IntRefEngine
from sw.products import ConvGeometry, LinearGeometry, batch_weight_sum
from sw.protocol import Cmd, Detail, Status
from sw.quantizers import Quantized
from tests.sw.test_numeric import float32_pattern, trunc24

# A tiny core (as tests/sw/test_driver.py's) with 48 sums of 96 bits: 12 bytes each.
TINY_SUMS = dict(max_rows=8, max_cols=40, max_bits=8, pe=2, simd=8, max_payload=64, max_act_bits=3,
                 sum_slots=48, sum_bits=96)
# The same with room for one request per sample and one READ_SUMS of every sum.
ROOMY_SUMS = dict(TINY_SUMS, max_payload=1024, sum_slots=64)
# The shifts the contract's aligned_term treats differently: a left shift, none, right shifts
# within and far past a term's bits (255: the widest shift byte).
SHIFTS = [0, 31, 32, 33, 100, 255]


def values(codes, bits, signed):
    """The integers a product sees: ``2q - n`` for signed codes, else ``q`` (int64)."""
    codes = np.asarray(codes, dtype=np.int64)
    return 2 * codes - levels(bits) if signed else codes


def products(vectors, v_bits, v_signed, matrix, m_bits, m_signed):
    """``(N, rows)`` products ``value(vectors) @ value(matrix).T`` as Python ints."""
    out = values(vectors, v_bits, v_signed) @ values(matrix, m_bits, m_signed).T
    return [[int(x) for x in row] for row in out]


def batch_sum(partials, mantissas, shifts):
    """``S = sum_b aligned_term(M_b, I_b, shift_b)`` elementwise over lists of ``(N, O)`` ints."""
    n, o = len(partials[0]), len(partials[0][0])
    return [[sum(gradients.aligned_term(m, p[i][j], s) for p, m, s in zip(partials, mantissas, shifts))
             for j in range(o)] for i in range(n)]


class Wire:
    """Raw frames to a core model, replies decoded (no driver in between)."""

    def __init__(self, **limits):
        self.core = CoreModel(**limits)
        self.tag = 0

    def __call__(self, cmd, payload=b""):
        self.tag = (self.tag + 1) & 0xFF
        (reply,) = P.FrameDecoder(backtrack=False).feed(self.core.feed(P.encode_frame(cmd, payload, self.tag)))
        assert isinstance(reply, P.Frame) and reply.tag == self.tag
        return reply.code, reply.payload

    def ok(self, cmd, payload=b""):
        status, reply = self(cmd, payload)
        assert status == Status.OK, (status, reply)
        return reply

    def load(self, matrix, bits, signed):
        """LOAD_MATRIX over as many frames as the core's payload needs."""
        matrix = np.asarray(matrix)
        flat = matrix.ravel()
        per_frame = (self.core.info.max_payload - P.LOAD_HEADER) * 8 // bits
        for offset in range(0, flat.size, per_frame):
            self.ok(Cmd.LOAD_MATRIX, P.encode_load_matrix(matrix.shape[0], matrix.shape[1], bits, signed, offset,
                                                          flat[offset:offset + per_frame]))

    def accumulate(self, vectors, bits, signed, *, slot, mantissa, shift, first):
        return self.ok(Cmd.ACCUMULATE, P.encode_accumulate(bits, signed, np.asarray(vectors), slot=slot,
                                                            mantissa=mantissa, shift=shift, first=first))

    def read(self, slot, count, width):
        return P.decode_sums(self.ok(Cmd.READ_SUMS, P.encode_read_sums(slot, count, width)), count, width)


# --------------------------------------------------------------------------- codecs

def test_accumulate_payload_golden():
    payload = P.encode_accumulate(2, True, [[1, 2, 3], [0, 3, 1]], slot=0x0102, mantissa=0xABCDEF, shift=33,
                                  first=True)
    # count u16, bits u8, flags u8 (signed 0x01 | first 0x04), slot u16, mantissa u32, shift u8, then
    # the six 2-bit codes packed lowest bits first: 1 | 2<<2 | 3<<4 | 0<<6 = 0x39, 3 | 1<<2 = 0x07
    assert payload == bytes.fromhex("0200 02 05 0201 efcdab00 21 39 07")
    assert P.ACCUMULATE_HEADER == 11
    h = P.decode_accumulate_header(payload)
    assert (h.count, h.bits, h.flags, h.slot, h.mantissa, h.shift, h.data) == (2, 2, 5, 0x0102, 0xABCDEF, 33,
                                                                             b"\x39\x07")
    assert h.signed and h.first
    h = P.decode_accumulate_header(P.encode_accumulate(8, False, [[200]], slot=0, mantissa=0, shift=0, first=False))
    assert (h.count, h.bits, h.flags, h.slot, h.mantissa, h.shift, h.data) == (1, 8, 0, 0, 0, 0, b"\xc8")
    assert not h.signed and not h.first
    with pytest.raises(ValueError, match="count, cols"):
        P.encode_accumulate(2, False, [1, 2], slot=0, mantissa=1, shift=0, first=False)


def test_read_sums_payload_and_reply_golden():
    payload = P.encode_read_sums(0x0203, 5, 12)
    assert payload == bytes.fromhex("0302 0500 0c") and P.READ_SUMS_HEADER == 5
    assert P.decode_read_sums(payload) == P.ReadSums(slot=0x0203, count=5, width=12)
    # a width byte, then each sum's low 6 bytes, two's complement little-endian:
    # -(2**40) is 0xFF00_0000_0000 in 48 bits, 2**47 - 1 is 0x7FFF_FFFF_FFFF
    sums = [1, -1, -(1 << 40), (1 << 47) - 1]
    reply = P.encode_sums(sums, 6)
    assert reply == bytes.fromhex("06 010000000000 ffffffffffff 0000000000ff ffffffffff7f")
    assert P.decode_sums(reply, 4, 6) == sums
    assert P.sums_reply_size(4, 6) == 25 == len(reply)
    # a narrower width keeps the low bytes: 2**90 + 0x8005 -> 0x8005, read back as -32763
    assert P.encode_sums([(1 << 90) + 0x8005], 2) == bytes.fromhex("02 0580")
    assert P.decode_sums(bytes.fromhex("02 0580"), 1, 2) == [0x8005 - 0x10000]
    assert P.encode_sums([], 3) == b"\x03" and P.decode_sums(b"\x03", 0, 3) == []


def test_float_sums_reply_golden():
    """Width 0 (SUM_FLOAT32): each sum as the binary32 pattern of its 24-bit truncation, LE."""
    assert P.SUM_FLOAT32 == 0 and P.FLOAT_SUM_BYTES == 4
    assert P.encode_read_sums(7, 3, P.SUM_FLOAT32) == bytes.fromhex("0700 0300 00")
    # 1 = 0x3F800000; -3 = 0xC0400000; 2**24 + 1 -> 2**24 = 0x4B800000 (exponent 151);
    # -(2**40 + 5) -> -(2**40) = 0xD3800000 (sign, exponent 167); 0 = 0
    sums = [1, -3, (1 << 24) + 1, -(1 << 40) - 5, 0]
    reply = P.encode_sums(sums, P.SUM_FLOAT32)
    assert reply == bytes.fromhex("00 0000803f 000040c0 0000804b 000080d3 00000000")
    assert P.sums_reply_size(5, P.SUM_FLOAT32) == 21 == len(reply)
    assert P.decode_sums(reply, 5, P.SUM_FLOAT32) == [1, -3, 1 << 24, -(1 << 40), 0]


def test_float_sums_round_trip():
    rng = np.random.default_rng(32)
    sums = [0, 1, -1, (1 << 95) - 1, -(1 << 95), (1 << 127) - 1, -(1 << 127)]
    sums += [int.from_bytes(rng.bytes(12), "little", signed=True) >> int(rng.integers(0, 96)) for _ in range(200)]
    reply = P.encode_sums(sums, P.SUM_FLOAT32)
    assert len(reply) == 1 + 4 * len(sums)
    assert [int.from_bytes(reply[1 + 4 * i:5 + 4 * i], "little") for i in range(len(sums))] == [
        float32_pattern(trunc24(v)) for v in sums]
    assert P.decode_sums(reply, len(sums), P.SUM_FLOAT32) == [trunc24(v) for v in sums]


@pytest.mark.parametrize("width", [1, 2, 5, 11, 12, 16])
def test_sums_round_trip(width):
    rng = np.random.default_rng(width)
    top = 1 << (8 * width - 1)
    sums = [-top, top - 1, 0, -1] + [int.from_bytes(rng.bytes(width), "little", signed=True) for _ in range(20)]
    reply = P.encode_sums(sums, width)
    assert len(reply) == 1 + width * len(sums)
    assert P.decode_sums(reply, len(sums), width) == sums


@pytest.mark.parametrize("bits", [1, 3, 8])
@pytest.mark.parametrize("signed, first", [(False, False), (True, False), (False, True), (True, True)])
def test_accumulate_round_trip(bits, signed, first):
    rng = np.random.default_rng(bits)
    vectors = rng.integers(0, 1 << bits, (3, 7))
    payload = P.encode_accumulate(bits, signed, vectors, slot=65535, mantissa=(1 << 24) - 1, shift=255, first=first)
    h = P.decode_accumulate_header(payload)
    assert (h.count, h.bits, h.signed, h.first, h.slot, h.mantissa, h.shift) == (3, bits, signed, first, 65535,
                                                                                 (1 << 24) - 1, 255)
    assert len(payload) == 11 + (21 * bits + 7) // 8
    np.testing.assert_array_equal(P.unpack_codes(h.data, bits, 21).reshape(3, 7), vectors)


@pytest.mark.parametrize("reply, count, width, match", [
    pytest.param(bytes.fromhex("05 0102030405"), 1, 6, "states 5-byte sums, expected 6", id="width-byte"),
    pytest.param(bytes.fromhex("06 010203040506"), 2, 6, "has 7 payload bytes, expected 13", id="short"),
    pytest.param(bytes.fromhex("06 01020304050607"), 1, 6, "has 8 payload bytes, expected 7", id="long"),
    pytest.param(b"", 0, 4, "states None-byte sums, expected 4", id="empty"),
    pytest.param(bytes.fromhex("0c 0000803f"), 1, 0, "states 12-byte sums, expected 0", id="float-width-byte"),
    pytest.param(bytes.fromhex("00 0000803f 00"), 1, 0, "has 6 payload bytes, expected 5", id="float-long"),
    pytest.param(bytes.fromhex("00 0000c07f"), 1, 0, "exponent 255", id="float-nan"),
    pytest.param(bytes.fromhex("00 0000003f"), 1, 0, "exponent 126", id="float-half"),
    pytest.param(bytes.fromhex("00 00000080"), 1, 0, "exponent 0", id="float-negative-zero"),
])
def test_decode_sums_errors(reply, count, width, match):
    with pytest.raises(P.FramingError, match=match):
        P.decode_sums(reply, count, width)


def test_command_and_detail_codes():
    assert (Cmd.ACCUMULATE, Cmd.READ_SUMS) == (0x06, 0x07)
    assert (Detail.WIDTH, Detail.SCALE) == (0x0A, 0x0B)
    assert P.FLAG_FIRST == 0x04
    assert P.sum_width(88) == 11 and P.sum_width(96) == 12 and P.sum_width(89) == 12 and P.sum_width(128) == 16


# --------------------------------------------------------------------------- core model

def test_core_model_accumulate_by_hand():
    """One 1x1 product per request: every term worked out by hand, and the reply bytes."""
    wire = Wire(**TINY_SUMS)
    wire.load([[1]], 1, False)  # the matrix's one value: 1
    # a signed 1-bit vector code 0 is -1: I = -1; floor(3 * -1 / 2**(33 - 32)) = floor(-1.5) = -2
    wire.ok(Cmd.ACCUMULATE, bytes.fromhex("0100 01 05 0000 03000000 21 00"))
    assert wire.core.sums[0] == -2
    # shift 0: + 3 * -1 * 2**32
    wire.accumulate([[0]], 1, True, slot=0, mantissa=3, shift=0, first=False)
    assert wire.core.sums[0] == -2 - 3 * 2 ** 32
    # shift 255: (2**24 - 1) * 1 / 2**223 floors to 0, (2**24 - 1) * -1 / 2**223 to -1
    wire.accumulate([[1]], 1, True, slot=0, mantissa=(1 << 24) - 1, shift=255, first=False)
    assert wire.core.sums[0] == -2 - 3 * 2 ** 32
    wire.accumulate([[0]], 1, True, slot=0, mantissa=(1 << 24) - 1, shift=255, first=False)
    # -(3 * 2**32 + 3) in 96 bits: 0xFFFFFFFF_FFFFFFFC_FFFFFFFD, little-endian after the width byte
    status, reply = wire(Cmd.READ_SUMS, bytes.fromhex("0000 0100 0c"))
    assert (status, reply) == (Status.OK, bytes.fromhex("0c fdffffff fcffffff ffffffff"))
    # first overwrites: 5 * 1 * 2**(32 - 31)
    wire.accumulate([[1]], 1, True, slot=0, mantissa=5, shift=31, first=True)
    assert wire.read(0, 1, 12) == [10]


@pytest.mark.parametrize("case", [
    # (v_bits, v_signed, m_bits, m_signed, rows, cols, vectors, slot)
    (1, True, 1, True, 3, 5, 2, 0),
    (2, False, 6, True, 8, 40, 4, 17),
    (8, False, 8, True, 2, 7, 3, 1),
    (3, True, 2, False, 5, 1, 6, 30),
], ids=str)
def test_core_model_accumulate_then_read_is_the_contract_sum(case):
    v_bits, v_signed, m_bits, m_signed, rows, cols, n, slot = case
    rng = np.random.default_rng(sum(case))
    wire = Wire(**ROOMY_SUMS)
    slots = ROOMY_SUMS["sum_slots"]
    # an earlier batch fills every sum (first writes them): the ones this batch leaves alone keep them
    earlier_matrix = rng.integers(0, 1 << m_bits, (1, cols))
    earlier_vectors = rng.integers(0, 1 << v_bits, (slots, cols))
    wire.load(earlier_matrix, m_bits, m_signed)
    wire.accumulate(earlier_vectors, v_bits, v_signed, slot=0, mantissa=12345, shift=20, first=True)
    earlier = [gradients.aligned_term(12345, row[0], 20)
               for row in products(earlier_vectors, v_bits, v_signed, earlier_matrix, m_bits, m_signed)]
    assert wire.read(0, slots, 12) == earlier
    # this batch: one sample per shift (and one with a zero scale), a new matrix per sample
    shifts = SHIFTS + [0]
    mantissas = [(1 << 24) - 1] + [int(m) for m in rng.integers(1, 1 << 24, len(SHIFTS) - 1)] + [0]
    partials = []
    terms = wire.core.stats["terms"]
    for b, (mantissa, shift) in enumerate(zip(mantissas, shifts)):
        matrix = rng.integers(0, 1 << m_bits, (rows, cols))
        vectors = rng.integers(0, 1 << v_bits, (n, cols))
        wire.load(matrix, m_bits, m_signed)
        assert wire.accumulate(vectors, v_bits, v_signed, slot=slot, mantissa=mantissa, shift=shift,
                               first=b == 0) == b""
        partials.append(products(vectors, v_bits, v_signed, matrix, m_bits, m_signed))
    assert wire.core.stats["terms"] - terms == len(shifts) * n * rows
    assert any(p < 0 for sample in partials for row in sample for p in row)  # floors of negative products
    total = batch_sum(partials, mantissas, shifts)
    expected = list(earlier)
    expected[slot:slot + n * rows] = [total[v][r] for v in range(n) for r in range(rows)]
    assert wire.read(0, slots, 12) == expected
    assert wire.core.sums == expected


@pytest.mark.parametrize("m_signed", [False, True], ids=["positive", "negative"])
def test_core_model_sums_wrap_modulo_sum_bits_and_narrow_reads_truncate(m_signed):
    """88-bit sums: 64 terms of about 2**82 each pass 2**87 and wrap; a narrower READ_SUMS
    gives the low bytes, sign-extended."""
    wire = Wire(max_rows=4, max_cols=1000, max_payload=1024, sum_slots=8, sum_bits=MIN_SUM_BITS)
    # unsigned 255 or signed code 0 (-255): every product is +-1000 * 255 * 255
    wire.load(np.full((4, 1000), 0 if m_signed else 255), 8, m_signed)
    partial = (-1 if m_signed else 1) * 1000 * 255 * 255
    rng = np.random.default_rng(int(m_signed))
    mantissas = [int(m) for m in rng.integers((1 << 24) - 4096, 1 << 24, 64)]
    shifts = [int(s) for s in rng.integers(0, 2, 64)]
    for b, (mantissa, shift) in enumerate(zip(mantissas, shifts)):
        wire.accumulate(np.full((1, 1000), 255), 8, False, slot=4, mantissa=mantissa, shift=shift, first=b == 0)
    exact = sum(gradients.aligned_term(m, partial, s) for m, s in zip(mantissas, shifts))
    assert abs(exact) >= 1 << 87  # past what 88 bits hold
    stored = gradients.wrap_sum(exact, 88)
    assert stored != exact and wire.core.sums == [0] * 4 + [stored] * 4
    for width in range(1, 12):
        assert wire.read(4, 4, width) == [gradients.wrap_sum(exact, 8 * width)] * 4, width


def test_reset_zeroes_the_sums():
    wire = Wire(**TINY_SUMS)
    assert wire.read(0, 4, 12) == [0] * 4  # a new core's sums are 0
    wire.load([[3, 1], [0, 2]], 2, True)
    wire.accumulate([[1, 2], [3, 0]], 2, False, slot=10, mantissa=777, shift=40, first=True)
    assert any(wire.core.sums)
    assert wire(Cmd.RESET) == (Status.OK, b"")
    assert wire.core.sums == [0] * 48
    assert wire.read(0, 5, 12) == [0] * 5 and wire.read(10, 4, 3) == [0] * 4
    # the matrix is gone too: ACCUMULATE needs a new one
    assert wire(Cmd.ACCUMULATE, P.encode_accumulate(2, False, [[1, 2]], slot=0, mantissa=1, shift=0, first=True)) \
        == (Status.BAD_STATE, bytes([Cmd.ACCUMULATE, Detail.NO_MATRIX]))
    # an error leaves the sums as they are: a failed RESET does not zero them
    wire.load([[3, 1], [0, 2]], 2, True)
    wire.accumulate([[1, 2]], 2, False, slot=0, mantissa=5, shift=0, first=True)
    before = wire.core.sums
    assert any(before)
    assert wire(Cmd.RESET, b"\x00") == (Status.BAD_LENGTH, bytes([Cmd.RESET, 0]))
    assert wire.core.sums == before


def accumulate_payload(count=2, bits=2, flags=P.FLAG_SIGNED, slot=0, mantissa=5, shift=3, data=None, cols=5):
    """An ACCUMULATE payload for the 3 x 5 matrix of the error tests: valid by default."""
    data = bytes(P.packed_size(count * cols, bits)) if data is None else data
    return P.ACCUMULATE_FIELDS.pack(count, bits, flags, slot, mantissa, shift) + data


OK, LENGTH, PARAMS, STATE = Status.OK, Status.BAD_LENGTH, Status.BAD_PARAMS, Status.BAD_STATE


# Check 8, in order; each case fails that check only (earlier checks pass).  TINY_SUMS: 48 sums,
# max_bits 8; the matrix is 3 x 5.
@pytest.mark.parametrize("state, payload, status, detail", [
    pytest.param("matrix", accumulate_payload()[:10], LENGTH, Detail.NONE, id="short"),          # LEN < 11
    pytest.param("matrix", b"", LENGTH, Detail.NONE, id="empty"),
    pytest.param("reset", accumulate_payload(), STATE, Detail.NO_MATRIX, id="no-matrix"),
    pytest.param("partial", accumulate_payload(), STATE, Detail.NO_MATRIX, id="half-a-matrix"),
    pytest.param("matrix", accumulate_payload(bits=0, data=b""), PARAMS, Detail.BITS, id="bits-0"),
    pytest.param("matrix", accumulate_payload(bits=9), PARAMS, Detail.BITS, id="bits-9"),      # > max_bits
    pytest.param("matrix", accumulate_payload(flags=P.FLAG_ACTIVATE), PARAMS, Detail.FLAGS, id="flag-activate"),
    pytest.param("matrix", accumulate_payload(flags=0x08 | P.FLAG_FIRST), PARAMS, Detail.FLAGS, id="flag-0x08"),
    pytest.param("matrix", accumulate_payload(mantissa=1 << 24), PARAMS, Detail.SCALE, id="mantissa-2**24"),
    pytest.param("matrix", accumulate_payload(mantissa=0xFFFFFFFF), PARAMS, Detail.SCALE, id="mantissa-max"),
    pytest.param("matrix", accumulate_payload(count=0), PARAMS, Detail.COUNT, id="count-0"),  # LEN 11 fits 0
    pytest.param("matrix", accumulate_payload(slot=46, count=1), PARAMS, Detail.COUNT, id="slot-46"),  # 46+3 > 48
    pytest.param("matrix", accumulate_payload(count=17), PARAMS, Detail.COUNT, id="count-17"),  # 17*3 > 48
    pytest.param("matrix", accumulate_payload() + b"\x00", LENGTH, Detail.NONE, id="long"),  # LEN != 11 + 3
    pytest.param("matrix", accumulate_payload()[:-1], LENGTH, Detail.NONE, id="data-short"),
    # two checks fail: the earlier one answers
    pytest.param("reset", accumulate_payload()[:10], LENGTH, Detail.NONE, id="order-short-no-matrix"),
    pytest.param("reset", accumulate_payload(bits=9, flags=0x80), STATE, Detail.NO_MATRIX, id="order-no-matrix-bits"),
    pytest.param("matrix", accumulate_payload(bits=9, flags=0x80), PARAMS, Detail.BITS, id="order-bits-flags"),
    pytest.param("matrix", accumulate_payload(flags=0x80, mantissa=1 << 24), PARAMS, Detail.FLAGS,
                 id="order-flags-scale"),
    pytest.param("matrix", accumulate_payload(mantissa=1 << 24, count=17), PARAMS, Detail.SCALE,
                 id="order-scale-count"),
    pytest.param("matrix", accumulate_payload(count=17, data=b""), PARAMS, Detail.COUNT, id="order-count-length"),
    # and the edges that pass
    pytest.param("matrix", accumulate_payload(slot=45, count=1, mantissa=(1 << 24) - 1, shift=255), OK, None,
                 id="ok-last-slots"),
    pytest.param("matrix", accumulate_payload(count=16, flags=P.FLAG_FIRST), OK, None, id="ok-every-slot"),
])
def test_core_model_accumulate_errors_in_order(state, payload, status, detail):
    wire = Wire(**TINY_SUMS)
    rng = np.random.default_rng(8)
    wire.load(rng.integers(0, 4, (3, 5)), 2, True)
    # signed codes are odd: each product, a sum of 5 odd numbers, is odd and so every sum nonzero
    # (a write of zeros would show)
    wire.accumulate(rng.integers(0, 4, (16, 5)), 2, True, slot=0, mantissa=(1 << 24) - 3, shift=2, first=True)
    assert all(wire.core.sums)
    if state == "reset":  # no matrix (and the sums zeroed)
        wire.ok(Cmd.RESET)
    elif state == "partial":  # a new matrix begun, the sums kept
        wire.ok(Cmd.LOAD_MATRIX, LOAD_FIELDS.pack(3, 5, 2, 0, 0, 10) + bytes(3))  # 10 of 15 codes
        assert all(wire.core.sums)
    before = wire.core.sums
    terms = wire.core.stats["terms"]
    got = wire(Cmd.ACCUMULATE, payload)
    if status == OK:
        assert got == (OK, b"")
        return
    assert got == (status, bytes([Cmd.ACCUMULATE, detail]))
    assert wire.core.sums == before and wire.core.stats["terms"] == terms  # no effect


# Check 9, in order; TINY_SUMS: 48 sums of 96 bits (12 bytes), 64-byte payloads.
@pytest.mark.parametrize("payload, status, detail", [
    pytest.param(P.encode_read_sums(0, 2, 12)[:4], LENGTH, Detail.NONE, id="short"),           # LEN != 5
    pytest.param(P.encode_read_sums(0, 2, 12) + b"\x00", LENGTH, Detail.NONE, id="long"),
    pytest.param(b"", LENGTH, Detail.NONE, id="empty"),
    pytest.param(P.encode_read_sums(0, 2, 13), PARAMS, Detail.WIDTH, id="width-13"),           # > ceil(96 / 8)
    pytest.param(P.encode_read_sums(0, 0, 12), PARAMS, Detail.COUNT, id="count-0"),
    pytest.param(P.encode_read_sums(47, 2, 1), PARAMS, Detail.COUNT, id="past-the-end"),      # 47 + 2 > 48
    pytest.param(P.encode_read_sums(48, 1, 1), PARAMS, Detail.COUNT, id="slot-48"),
    pytest.param(P.encode_read_sums(0, 6, 12), PARAMS, Detail.REPLY_TOO_BIG, id="reply-73"),   # 1 + 72 > 64
    pytest.param(P.encode_read_sums(0, 32, 2), PARAMS, Detail.REPLY_TOO_BIG, id="reply-65"),   # 1 + 64 > 64
    pytest.param(P.encode_read_sums(0, 16, 0), PARAMS, Detail.REPLY_TOO_BIG, id="float-reply-65"),  # 1 + 4*16
    # two checks fail: the earlier one answers
    pytest.param(P.encode_read_sums(0, 2, 13) + b"\x00", LENGTH, Detail.NONE, id="order-long-width"),
    pytest.param(P.encode_read_sums(0, 0, 13), PARAMS, Detail.WIDTH, id="order-width-count"),
    pytest.param(P.encode_read_sums(40, 9, 12), PARAMS, Detail.COUNT, id="order-count-reply"),
    # and the edges that pass
    pytest.param(P.encode_read_sums(0, 5, 12), OK, None, id="ok-reply-61"),
    pytest.param(P.encode_read_sums(17, 31, 2), OK, None, id="ok-reply-63-to-the-last-sum"),
    pytest.param(P.encode_read_sums(47, 1, 1), OK, None, id="ok-last-sum"),
    pytest.param(P.encode_read_sums(0, 15, 0), OK, None, id="ok-float-reply-61"),
    pytest.param(P.encode_read_sums(33, 15, 0), OK, None, id="ok-float-to-the-last-sum"),
])
def test_core_model_read_sums_errors_in_order(payload, status, detail):
    wire = Wire(**TINY_SUMS)
    wire.load([[1, 2, 3]], 2, True)
    wire.accumulate(np.arange(48 * 3).reshape(48, 3) % 4, 2, False, slot=0, mantissa=99, shift=7, first=True)
    before = wire.core.sums
    got = wire(Cmd.READ_SUMS, payload)
    if status == OK:
        h = P.decode_read_sums(payload)
        assert got[0] == OK
        want = [trunc24(s) if h.width == 0 else gradients.wrap_sum(s, 8 * h.width)
                for s in before[h.slot:h.slot + h.count]]
        assert P.decode_sums(got[1], h.count, h.width) == want
        assert len(got[1]) == 1 + (4 if h.width == 0 else h.width) * h.count
        return
    assert got == (status, bytes([Cmd.READ_SUMS, detail]))
    assert wire.core.sums == before


def test_core_without_sums_answers_bad_command():
    wire = Wire(**dict(TINY_SUMS, sum_slots=0, sum_bits=0))
    wire.load([[1, 2]], 2, False)
    assert wire.ok(Cmd.PING)[17:] == bytes(6) + b"\x01"  # PING: sum_slots 0, sum_bits 0 (fmap_codes 0, not packed, pool 1)
    for cmd, payload in ((Cmd.ACCUMULATE, P.encode_accumulate(2, False, [[1, 2]], slot=0, mantissa=1, shift=0,
                                                              first=True)),
                         (Cmd.READ_SUMS, P.encode_read_sums(0, 1, 1))):
        assert wire(cmd, payload) == (Status.BAD_COMMAND, bytes([cmd, 0]))
    assert wire.core.sums == []


def test_core_model_ping_reports_its_sums():
    wire = Wire(**TINY_SUMS)
    # ... baud u32 (0), sum_slots u16 (48 = 0x30), sum_bits u8 (96 = 0x60), fmap_codes u16 (0),
    # packed_accumulators u8 (0), max_pool u8 (1)
    assert wire.ok(Cmd.PING)[13:] == bytes.fromhex("00000000 3000 60 0000 00 01")
    info = P.decode_ping_reply(wire.ok(Cmd.PING))
    assert (info.sum_slots, info.sum_bits) == (48, 96)


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("limits, problem", [
    (dict(sum_bits=96), r"^sum_bits 96 without batch sums \(sum_slots 0\): must be 0$"),
    (dict(sum_slots=64), r"^sum_bits 0 not in 88..128 "),
    (dict(sum_slots=64, sum_bits=87), r"^sum_bits 87 not in 88..128 \(one aligned term of an int32 partial "
                                      r"sum needs 88\)$"),
    (dict(sum_slots=64, sum_bits=129), r"^sum_bits 129 not in 88..128 "),
    (dict(sum_slots=0x10000, sum_bits=96), r"^sum_slots 65536 not in 0..65535$"),
    (dict(sum_slots=-1, sum_bits=96), r"^sum_slots -1 not in 0..65535$"),
    # 1 + 16 bytes of a 128-bit sum in 16 (every other rule holds: 11 + 5 for ACCUMULATE)
    (dict(max_rows=3, max_cols=5, max_payload=16, max_act_bits=1, sum_slots=4, sum_bits=128),
     r"^one 128-bit sum does not fit a 16-byte payload$"),
    # 11 + 54 bytes of an ACCUMULATE vector in 64 (RUN's 4 + 54 fits)
    (dict(TINY_SUMS, max_cols=54), r"^one ACCUMULATE vector of 54 8-bit codes does not fit a 64-byte payload$"),
], ids=["bits-without-slots", "slots-without-bits", "bits-87", "bits-129", "slots-65536", "slots-negative",
        "sum-reply-too-big", "accumulate-too-big"])
def test_core_config_sum_problems(limits, problem):
    problems = CoreConfig(**limits).problems()
    assert len(problems) == 1, problems
    assert re.search(problem, problems[0]), problems
    with pytest.raises(ValueError, match="bad core limits"):
        CoreModel(**limits)
    with pytest.raises(P.FramingError, match="break the protocol"):
        P.check_core_info(CoreConfig(**limits).info())


@pytest.mark.parametrize("limits", [
    dict(), dict(sum_slots=1024, sum_bits=96), dict(sum_slots=0xFFFF, sum_bits=128), dict(sum_slots=1, sum_bits=88),
    dict(max_rows=3, max_cols=5, max_payload=16, max_act_bits=1, sum_slots=4, sum_bits=120),  # 1 + 15 bytes
    dict(TINY_SUMS, max_cols=53),  # 11 + 53 bytes
], ids=["no-sums", "1024x96", "widest", "narrowest", "sum-reply-fills-payload", "accumulate-fills-payload"])
def test_core_config_with_valid_sums(limits):
    config = CoreConfig(**limits)
    assert config.problems() == []
    info = config.info()
    assert (info.sum_slots, info.sum_bits) == (config.sum_slots, config.sum_bits)
    assert info.config == config and P.decode_ping_reply(P.encode_ping_reply(info)) == info


def test_sum_width_limits():
    assert MIN_SUM_BITS == 24 + 32 + 32  # M_b (24 bits) times an int32, shifted left by the 32 guard bits
    assert MAX_SUM_BITS == 128
    # the widest aligned term of an int32 partial sum fits MIN_SUM_BITS, and needs them all
    widest = gradients.aligned_term((1 << 24) - 1, -(1 << 31), 0)
    assert -(1 << (MIN_SUM_BITS - 1)) <= widest < 1 << (MIN_SUM_BITS - 1)
    assert widest < -(1 << (MIN_SUM_BITS - 2))


def test_preset_batch_sums_hold_the_digits_net():
    from sw.contract.core import BATCH_SUMS
    assert CoreConfig(**BATCH_SUMS).problems() == []
    # backward-weight of the digits net at (1, 2, 6) bits: at most 8 x 8 = 64 positions of 3 x 63;
    # 32 * (2**24 - 1) * 12096 * 2**32 is just under 2**75: 75 bits and a sign
    bound = 64 * 3 * 63
    assert 1 << 74 < 32 * ((1 << 24) - 1) * bound << 32 < 1 << 75
    assert gradients.sum_bits(32, bound) == 76 <= BATCH_SUMS["sum_bits"]


# --------------------------------------------------------------------------- client

def sums_client(**limits):
    return CoreClient(LoopbackTransport(CoreModel(**dict(TINY_SUMS, **limits))))


def test_client_batch_sum_arguments_are_checked_before_sending():
    client = sums_client()
    with pytest.raises(ValueError, match="no matrix loaded by this client: call load_matrix first"):
        client.accumulate([[1, 2, 3, 0, 1]], 2, False, slot=0, mantissa=1, shift=0, first=True)
    client.load_matrix(np.ones((3, 5), dtype=np.int64), 2, True)
    v = np.ones((2, 5), dtype=np.int64)
    requests = client.stats["requests"]
    cases = [
        (lambda: client.accumulate(v[:, :4], 2, False, slot=0, mantissa=1, shift=0, first=True),
         "vectors have 4 codes, the loaded matrix has 5 columns"),
        (lambda: client.accumulate(v * 4, 2, False, slot=0, mantissa=1, shift=0, first=True),
         r"vector codes must be in \[0, 3\] for 2 bits"),
        (lambda: client.accumulate(-v, 2, False, slot=0, mantissa=1, shift=0, first=True),
         r"vector codes must be in \[0, 3\] for 2 bits"),
        (lambda: client.accumulate(v, 9, False, slot=0, mantissa=1, shift=0, first=True),
         "vector bits must be 1..8 on this core, got 9"),
        (lambda: client.accumulate(v[0], 2, False, slot=0, mantissa=1, shift=0, first=True),
         "vectors must have 2 dimensions"),
        (lambda: client.accumulate(v, 2, False, slot=43, mantissa=1, shift=0, first=True),
         "sums 43 .. 48 are not among the core's 0 .. 47"),  # 2 vectors x 3 rows from 43
        (lambda: client.accumulate(v, 2, False, slot=-1, mantissa=1, shift=0, first=True),
         "sums -1 .. 4 are not among the core's 0 .. 47"),
        (lambda: client.accumulate(v, 2, False, slot=0, mantissa=1 << 24, shift=0, first=True),
         r"mantissa must be in \[0, 2\*\*24\) and shift in 0..255, got 16777216, 0"),
        (lambda: client.accumulate(v, 2, False, slot=0, mantissa=-1, shift=0, first=True),
         r"got -1, 0"),
        (lambda: client.accumulate(v, 2, False, slot=0, mantissa=1, shift=256, first=True),
         r"shift in 0..255, got 1, 256"),
        (lambda: client.accumulate(v, 2, False, slot=0, mantissa=1, shift=-1, first=True),
         r"shift in 0..255, got 1, -1"),
        (lambda: client.read_sums(0, 1, 13), r"sum width must be 0 \(binary32\) or 1..12 bytes, got 13"),
        (lambda: client.read_sums(0, 1, 255), r"sum width must be 0 \(binary32\) or 1..12 bytes, got 255"),
        (lambda: client.read_sums(40, 9, 12), r"sums 40 .. 48 \(count 9\) are not among the core's 0 .. 47"),
        (lambda: client.read_sums(-1, 2, 12), r"sums -1 .. 0 \(count 2\) are not among"),
        (lambda: client.read_sums(0, -1, 12), r"\(count -1\) are not among"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert client.stats["requests"] == requests  # nothing sent
    no_sums = sums_client(sum_slots=0, sum_bits=0)
    no_sums.load_matrix(np.ones((3, 5), dtype=np.int64), 2, True)
    for call in (lambda: no_sums.accumulate(v, 2, False, slot=0, mantissa=1, shift=0, first=True),
                 lambda: no_sums.read_sums(0, 1, 1)):
        with pytest.raises(ValueError, match=r"this core holds no batch sums \(PING reports sum_slots = 0\)"):
            call()


@pytest.mark.parametrize("bits, vectors, frames", [
    (8, 16, 2),   # (64 - 11) * 8 // (5 * 8) = 10 vectors a frame
    (3, 16, 1),   # 424 // 15 = 28
    (1, 5, 1),
])
def test_client_accumulate_and_read_over_many_frames(bits, vectors, frames):
    client = sums_client()
    rng = np.random.default_rng(bits)
    mantissas, shifts = [(1 << 24) - 1, 4097, 0, 300], [0, 33, 0, 100]
    partials = []
    for b, (mantissa, shift) in enumerate(zip(mantissas, shifts)):
        matrix = rng.integers(0, 1 << bits, (3, 5))
        v = rng.integers(0, 1 << bits, (vectors, 5))
        client.load_matrix(matrix, bits, True)
        requests = client.stats["requests"]
        client.accumulate(v, bits, False, slot=0, mantissa=mantissa, shift=shift, first=b == 0)
        assert client.stats["requests"] - requests == frames
        partials.append(products(v, bits, False, matrix, bits, True))
    total = batch_sum(partials, mantissas, shifts)
    flat = [total[i][r] for i in range(vectors) for r in range(3)]
    requests = client.stats["requests"]
    assert client.read_sums(0, 3 * vectors, 12) == flat
    assert client.stats["requests"] - requests == -(-3 * vectors // 5)  # (64 - 1) // 12 = 5 sums a frame
    for slot, count, width in ((1, 7, 11), (0, 3 * vectors, 9), (2, 1, 1)):
        want = [gradients.wrap_sum(s, 8 * width) for s in flat[slot:slot + count]]
        assert client.read_sums(slot, count, width) == want
    assert client.read_sums(4, 0, 12) == []
    requests = client.stats["requests"]
    assert client.read_sums(0, 3 * vectors, P.SUM_FLOAT32) == [trunc24(s) for s in flat]
    assert client.stats["requests"] - requests == -(-3 * vectors // 15)  # (64 - 1) // 4 = 15 sums a frame


BATCH_CASES = [
    # (B, N, O, K, v_bits, v_signed, m_bits, m_signed)
    (3, 13, 11, 40, 2, False, 6, True),   # O > max_rows: row tiles of 8 and 3; 13 * 8 > 48: vector chunks
    (2, 30, 3, 9, 3, False, 2, True),     # 30 * 3 > 48 sums: chunks of 16 vectors
    (1, 5, 4, 17, 8, True, 8, True),      # batch 1
    (4, 2, 1, 1, 1, True, 1, False),
]


@pytest.mark.parametrize("scales", ["mixed", "zero"])
@pytest.mark.parametrize("case", BATCH_CASES, ids=str)
def test_client_batch_sums_are_the_contract_sum(case, scales):
    batch, n, o, k, v_bits, v_signed, m_bits, m_signed = case
    rng = np.random.default_rng(sum(case))
    client = sums_client()
    vectors = rng.integers(0, 1 << v_bits, (batch, n, k))
    matrices = rng.integers(0, 1 << m_bits, (batch, o, k))
    if scales == "zero":
        mantissas, shifts = [0] * batch, [0] * batch
    else:
        mantissas = [int(m) for m in rng.integers(1, 1 << 24, batch)]
        mantissas[-1] = 0 if batch > 1 else mantissas[-1]  # a sample of zero gradient
        shifts = [SHIFTS[(b + n) % len(SHIFTS)] for b in range(batch)]
    assert client.can_batch_sum(batch, k, k * levels(v_bits) * levels(m_bits))
    got = client.batch_sums(vectors, v_bits, v_signed, matrices, m_bits, m_signed, mantissas, shifts)
    partials = [products(vectors[b], v_bits, v_signed, matrices[b], m_bits, m_signed) for b in range(batch)]
    expected = batch_sum(partials, mantissas, shifts)
    assert got.shape == (n, o)
    assert got.tolist() == [[trunc24(s) for s in row] for row in expected]  # read as binary32
    assert all(type(s) is int for s in got.ravel())
    if scales == "zero":
        assert not any(got.ravel())


def test_client_can_batch_sum_limits():
    client = sums_client()  # 40 columns, 96-bit sums
    assert client.can_batch_sum(4, 40, 40 * 255 * 255)
    assert not client.can_batch_sum(4, 41, 41 * 3)      # a product longer than the columns
    assert not client.can_batch_sum(4, 0, 0)
    assert not client.can_batch_sum(0, 40, 40)
    narrow = sums_client(sum_bits=88)
    # (2**24 - 1) * (2**31 - 1) * 2**32 < 2**87: 87 bits and a sign; twice that needs 89
    assert narrow.can_batch_sum(1, 40, (1 << 31) - 1)
    assert not narrow.can_batch_sum(2, 40, (1 << 31) - 1)
    no_sums = sums_client(sum_slots=0, sum_bits=0)
    assert not no_sums.can_batch_sum(1, 1, 1)
    codes = np.ones((2, 3, 41), dtype=np.int64)
    with pytest.raises(ValueError, match="cannot sum 2 samples of 41-long products"):
        client.batch_sums(codes, 1, False, codes, 1, True, [1, 1], [0, 0])
    with pytest.raises(ValueError, match="do not describe one batch"):
        client.batch_sums(codes[:, :, :5], 1, False, codes[:, :, :5], 1, True, [1], [0])


# --------------------------------------------------------------------------- CoreEngine

# Per-sample float32 gradient scales over some 2**70 (shifts up to about 75, one zero scale).
SCALES = [1.0, 0.75e-3, 0.0, 1.25 * 2.0 ** -40, 3.5e4, 0.3, 2.0 ** -20]


def grad_q(rng, shape, bits):
    scale = torch.tensor(SCALES[:shape[0]], dtype=torch.float32)
    return Quantized(torch.from_numpy(rng.integers(0, 1 << bits, shape)), scale, bits, True)


def act_q(rng, shape, bits):
    return Quantized(torch.from_numpy(rng.integers(0, 1 << bits, shape)), torch.tensor(1.0), bits, False)


def contract_sum(partials, scale):
    """``(S, E)`` per weight: Python ints from the contract's functions term by term."""
    parts = [gradients.scale_parts(float(m)) for m in scale.tolist()]
    top, shifts = gradients.batch_shifts(parts)
    flat = partials.reshape(partials.shape[0], -1).tolist()
    return [sum(gradients.aligned_term(m, sample[i], s) for (m, _), sample, s in zip(parts, flat, shifts))
            for i in range(len(flat[0]))], top


CONV_SUM_CASES = [  # (B, C, H, O, k, stride, padding): P = output positions <= 40 columns
    (3, 2, 6, 5, 3, 1, 0),    # P = 16
    (2, 3, 5, 11, 3, 2, 1),   # P = 9, O > max_rows
    (4, 2, 6, 3, 3, 1, 1),    # P = 36
    (7, 1, 4, 2, 2, 2, 0),    # P = 4, every scale
]


def check_engine_sum(geometry, x, g, weight_shape):
    core = CoreEngine(sums_client())
    got = core.backward_weight_sum(geometry, x, g, weight_shape)
    assert got is not None and core.stats["core_sums"] == 1 and core.stats["host_sums"] == 0
    partials = IntRefEngine().backward_weight(geometry, x, g, weight_shape)
    hi, lo, top = numeric.aligned_batch_sum(partials, g.scale)
    assert got[2] == top
    assert got[0].dtype == got[1].dtype == torch.int64 and got[0].shape == tuple(weight_shape)
    sums, expected_top = contract_sum(partials, g.scale)
    assert top == expected_top
    # the core sends truncate_sum(S) (binary32): the contract's sums truncated to 24 bits ...
    assert [(h << 32) + l for h, l in zip(got[0].ravel().tolist(), got[1].ravel().tolist())] == [
        trunc24(s) for s in sums]
    # ... and so the host's weight gradient, bit for bit
    for gbits in (1, 6):
        assert torch.equal(numeric.weight_gradient(*got, torch.tensor(0.25), gbits),
                           numeric.weight_gradient(hi, lo, top, torch.tensor(0.25), gbits))
    return core


@pytest.mark.parametrize("wag", [(1, 2, 6), (8, 8, 8)], ids=str)
@pytest.mark.parametrize("case", CONV_SUM_CASES, ids=str)
def test_core_engine_conv_weight_sum_on_the_core(case, wag):
    b, c, h, o, k, stride, padding = case
    _, a_bits, g_bits = wag
    rng = np.random.default_rng(sum(case) + sum(wag))
    oh = (h + 2 * padding - k) // stride + 1
    check_engine_sum(ConvGeometry(stride=stride, padding=padding), act_q(rng, (b, c, h, h), a_bits),
                     grad_q(rng, (b, o, oh, oh), g_bits), (o, c, k, k))


OUTER_CASES = [  # (geometry, x shape, g shape, weight shape): one output position a sample
    (LinearGeometry(), (5, 50), (5, 11), (11, 50)),
    (ConvGeometry(stride=1, padding=0), (4, 3, 4, 4), (4, 7, 1, 1), (7, 3, 4, 4)),  # a 1 x 1 output
    (ConvGeometry(stride=2, padding=1), (3, 2, 2, 2), (3, 5, 1, 1), (5, 2, 3, 3)),  # padded
]


@pytest.mark.parametrize("wag", [(1, 1, 1), (2, 3, 4), (8, 8, 8)], ids=str)
@pytest.mark.parametrize("case", range(len(OUTER_CASES)))
def test_core_engine_makes_outer_products_on_the_host(case, wag):
    """Backward-weight's per-sample products of a layer with one output position are outer
    products (a reduction of length 1): the host makes them, the reference's integers, and
    the link carries nothing for them."""
    geometry, x_shape, g_shape, weight_shape = OUTER_CASES[case]
    _, a_bits, g_bits = wag
    rng = np.random.default_rng(case + sum(wag))
    x, g = act_q(rng, x_shape, a_bits), grad_q(rng, g_shape, g_bits)
    core = CoreEngine(sums_client())
    before = dict(core.client.stats)
    record = {}
    total = batch_weight_sum(core, geometry, x, g, weight_shape, record)
    assert core.client.stats == before  # no request, no byte
    assert (core.stats["host_outer"], core.stats["core_sums"], core.stats["host_sums"]) == (1, 0, 0)
    # Each sample's product, by hand: the gradient's signed odd values (2q - n) times the
    # input's codes at the one output position's patch (torch's unfold, not the engines' im2col).
    g_values = (2 * g.codes - levels(g_bits)).reshape(len(g.codes), -1)
    if isinstance(geometry, LinearGeometry):
        patches = x.codes
    else:
        patches = torch.nn.functional.unfold(x.codes.double(), weight_shape[2:], padding=geometry.padding,
                                             stride=geometry.stride)[:, :, 0].long()
    partials = torch.einsum("bo,bi->boi", g_values, patches).reshape(len(g.codes), *weight_shape)
    assert torch.equal(record["backward_weight"], partials)
    assert torch.equal(partials, IntRefEngine().backward_weight(geometry, x, g, weight_shape))
    expected = numeric.aligned_batch_sum(partials, g.scale)
    assert torch.equal(total[0], expected[0]) and torch.equal(total[1], expected[1]) and total[2] == expected[2]
    assert core.backward_products(geometry, x, g, None, weight_shape) is None  # nor interleaved


def test_core_engine_weight_sum_falls_back_to_the_host():
    rng = np.random.default_rng(1)
    x, g = act_q(rng, (2, 2, 8, 8), 2), grad_q(rng, (2, 3, 8, 8), 6)
    geometry = ConvGeometry(stride=1, padding=1)
    for core in (CoreEngine(sums_client()),                         # 64 positions > 40 columns
                 CoreEngine(sums_client(sum_slots=0, sum_bits=0))):  # no sums
        assert core.backward_weight_sum(geometry, x, g, (3, 2, 3, 3)) is None
        assert core.stats == {"core_thresholds": 0, "host_thresholds": 0, "core_sums": 0, "host_sums": 1,
                              "windowed": 0, "patched": 0, "core_pools": 0, "host_pools": 0,
                              "interleaved": 0, "host_outer": 0}  # no product made: batch_weight_sum makes it


@pytest.mark.parametrize("engine, per_sample", [
    ("core with sums", False), ("core without sums", True), ("intref", True),
])
def test_batch_weight_sum_records_per_sample_products_only_where_made(engine, per_sample):
    engines = {"core with sums": lambda: CoreEngine(sums_client()),
               "core without sums": lambda: CoreEngine(sums_client(sum_slots=0, sum_bits=0)),
               "intref": IntRefEngine}
    rng = np.random.default_rng(3)
    geometry = ConvGeometry(stride=1, padding=0)
    x, g = act_q(rng, (3, 2, 6, 6), 2), grad_q(rng, (3, 4, 4, 4), 6)
    partials = IntRefEngine().backward_weight(geometry, x, g, (4, 2, 3, 3))
    expected = numeric.aligned_batch_sum(partials, g.scale)
    record = {}
    total = batch_weight_sum(engines[engine](), geometry, x, g, (4, 2, 3, 3), record)
    assert set(record) == ({"backward_weight", "backward_weight_sum"} if per_sample else {"backward_weight_sum"})
    assert record["backward_weight_sum"] is total
    assert total[2] == expected[2]
    if per_sample:  # the host's sums: S whole
        assert torch.equal(total[0], expected[0]) and torch.equal(total[1], expected[1])
    else:  # the core's, read as binary32: truncate_sum(S), the same gradient
        s_of = lambda hi, lo: [(h << 32) + l for h, l in zip(hi.ravel().tolist(), lo.ravel().tolist())]
        assert s_of(*total[:2]) == [trunc24(s) for s in s_of(*expected[:2])]
    assert torch.equal(numeric.weight_gradient(*total, torch.tensor(1 / 3), 6),
                       numeric.weight_gradient(*expected, torch.tensor(1 / 3), 6))
    if per_sample:
        assert torch.equal(record["backward_weight"], partials)
    again = batch_weight_sum(engines[engine](), geometry, x, g, (4, 2, 3, 3))  # no record
    assert all(torch.equal(a, b) for a, b in zip(again[:2], total[:2])) and again[2] == total[2]


# --------------------------------------------------------------------------- a training step

def test_training_step_with_sums_on_the_core_is_bit_identical_to_intref():
    from tests.checks import assert_training_step_matches_intref

    engine = CoreEngine(CoreClient(LoopbackTransport(CoreModel(sum_slots=1024, sum_bits=96))))
    assert_training_step_matches_intref(engine)
    assert engine.stats["core_sums"] > 0
    assert engine.client.transport.core.stats["terms"] > 0


def test_core_engine_weight_sum_with_scales_2_to_the_276_apart():
    """float32 scales 2**127 and 2**-149 give shift 276, past the wire's byte: the client
    sends 255, which floors the term the same way (to 0 or -1), so the sum is the contract's."""
    x = Quantized(torch.tensor([[1, 2, 3], [3, 2, 1]]).reshape(2, 1, 1, 3), torch.tensor(1.0), 2, False)
    g = Quantized(torch.tensor([[1, 2, 0], [3, 0, 2]]).reshape(2, 1, 1, 3),
                  torch.tensor([2.0 ** 127, 2.0 ** -149], dtype=torch.float32), 2, True)
    assert numeric.batch_shifts(g.scale)[1].tolist() == [0, 276]
    check_engine_sum(ConvGeometry(stride=1, padding=0), x, g, (1, 1, 1, 1))  # three output positions


# --------------------------------------------------------------------------- backward-input's lowering

def test_matmul_bytes_by_hand():
    client = CoreClient(LoopbackTransport(CoreModel(max_rows=32, max_cols=256)))
    # 10 vectors of 300 2-bit codes by 40 1-bit rows: 2 row tiles re-send the vectors (750 bytes
    # each), 2 column tiles each return 10 x 40 accumulators of 2 bytes (bit_length(256) + 1 + 2 + 1
    # = 13 bits).
    assert client.matmul_bytes(10, 300, 40, 2, 1) == 2 * 750 + 2 * 10 * 40 * 2


@pytest.mark.parametrize("c, o, h, k, padding, fmap_codes, transposed", [
    (32, 32, 8, 3, 1, 0, True),      # the digits net's middle convs: 9x fewer replies, patches cost less
    (32, 32, 8, 3, 1, 4096, True),   # ... and the core makes the patches from the gradient's map
    (64, 64, 4, 4, 0, 0, False),     # its last conv: one output position, the folded vectors win over patches
    (64, 64, 4, 4, 0, 4096, True),   # ... but not over the gradient's map (64 codes a sample) and windows
    (16, 16, 4, 4, 0, 4096, False),  # at width 0.25 the folded vectors still win
])
def test_core_engine_lowers_backward_input_with_fewer_bytes(c, o, h, k, padding, fmap_codes, transposed):
    """The core engine picks the lowering whose link bytes, counted on the wire, are fewer,
    and its integers are the reference's."""
    from sw.contract.core import LARGE_LIMITS
    LARGE_LIMITS = dict(LARGE_LIMITS, fmap_codes=fmap_codes, max_pool=LARGE_LIMITS["max_pool"] if fmap_codes else 1)  # noqa: N806

    class Forced(CoreEngine):
        def __init__(self, client, choice):
            super().__init__(client)
            self.choice = choice

        def transposed_backward_input(self, *args):
            return self.choice

    rng = np.random.default_rng(c + k)
    oh = h + 2 * padding - k + 1
    g = Quantized(torch.from_numpy(rng.integers(0, 64, (4, o, oh, oh))), torch.ones(4), 6, True)
    w = Quantized(torch.from_numpy(rng.integers(0, 2, (o, c, k, k))), torch.tensor(1.0), 1, True)
    geometry, shape = ConvGeometry(stride=1, padding=padding), (4, c, h, h)
    want = IntRefEngine().backward_input(geometry, g, w, shape)
    wire = {}
    for choice in (False, True):
        client = CoreClient(LoopbackTransport(CoreModel(**LARGE_LIMITS)))
        client.ping()
        before = client.stats["bytes_out"] + client.stats["bytes_in"]
        assert torch.equal(Forced(client, choice).backward_input(geometry, g, w, shape), want)
        wire[choice] = client.stats["bytes_out"] + client.stats["bytes_in"] - before
    engine = CoreEngine(CoreClient(LoopbackTransport(CoreModel(**LARGE_LIMITS))))
    assert engine.transposed_backward_input(geometry, g, w, shape) is transposed
    assert (wire[True] < wire[False]) is transposed
    assert torch.equal(engine.backward_input(geometry, g, w, shape), want)


def test_wrap_sum_by_hand():
    """The sums a core keeps in ``bits`` bits: two's complement modulo ``2**bits``."""
    assert [gradients.wrap_sum(v, 8) for v in (0, 127, 128, 255, 256, -1, -128, -129)] == \
        [0, 127, -128, -1, 0, -1, -128, 127]
    assert gradients.wrap_sum((1 << 95) + 5, 96) == -(1 << 95) + 5
    with pytest.raises(ValueError, match="bits must be >= 1"):
        gradients.wrap_sum(3, 0)
