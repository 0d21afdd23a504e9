"""Packed accumulators (protocol 6: RUN's FLAG_PACKED).

The expected widths and bytes are worked by hand here (the bound ``cols * n_m * n_v``,
the LSB-first bit stream); the core model's packed replies are checked against its own
whole-byte replies to the same requests (the accumulators) and against those hand
figures (the sizes); the driver's products against :func:`sw.bitplanes.signed_matmul`.
"""

import numpy as np
import pytest

from sw import protocol as P
from sw.bitplanes import signed_matmul
from sw.contract.codes import levels_or_none
from sw.contract.core import CoreConfig
from sw.core_model import CoreModel
from sw.core_scripts import SMALL, WINDOWS, bad_requests, expected_replies, packed_script
from sw.driver import CoreClient, LoopbackTransport
from sw.protocol import Cmd, Detail, Status

PACKED = dict(max_rows=8, max_cols=64, max_bits=8, pe=2, simd=8, max_payload=1024, max_act_bits=3,
              packed_accumulators=1)


@pytest.mark.parametrize("cols, m_bits, v_bits, bits", [
    (1, 1, 1, 2),         # |acc| <= 1: a sign and one bit
    (144, 1, 2, 10),      # the digits net's first 3x3 conv: 432 < 2**9
    (288, 1, 6, 16),      # its backward-input: 18,144 < 2**15 (whole bytes: 3, by bit_length(cols) + 8)
    (1024, 8, 8, 27),     # the ULX3S's widest: 66,585,600 < 2**26
    (3, 2, 2, 6),         # 27 < 2**5
    (4, 1, 1, 4),         # 4 = 2**2: bit_length 3
])
def test_accumulator_bits_is_the_exact_bound(cols, m_bits, v_bits, bits):
    assert P.accumulator_bits(cols, m_bits, v_bits) == bits
    assert P.accumulator_bits(cols, m_bits, v_bits) <= 8 * P.accumulator_width(cols, m_bits, v_bits)


def test_core_config_packed_bits_is_its_widest_packed_accumulator():
    """What the core's packer and width registers are sized by: 27 bits at the ULX3S's
    1,024 columns of 8-bit codes (the row above), 0 without packed accumulators."""
    assert CoreConfig(max_rows=64, max_cols=1024, max_bits=8, max_payload=4096, packed_accumulators=1).packed_bits == 27
    assert CoreConfig(**{**PACKED, "max_bits": 2}).packed_bits == 11  # 64 * 3 * 3 = 576 < 2**10, and a sign
    assert CoreConfig(**{**PACKED, "packed_accumulators": 0}).packed_bits == 0


def test_packed_accumulators_round_trip_and_bytes():
    # 1 = 0001, -1 = 1111, 5 = 0101, LSB first: 1000 1111 | 1010 0000 -> 0xF1, 0x05
    data = P.encode_packed_accumulators([[1, -1, 5]], 4)
    assert data == bytes.fromhex("04 f1 05")
    np.testing.assert_array_equal(P.decode_packed_accumulators(data, 1, 3, 4), [[1, -1, 5]])
    assert P.packed_accumulator_reply_size(1, 3, 4) == 3
    rng = np.random.default_rng(0)
    for bits in (2, 7, 13, 27, 32):
        out = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (5, 3))
        out[0, :2] = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        data = P.encode_packed_accumulators(out, bits)
        assert len(data) == 1 + (15 * bits + 7) // 8
        np.testing.assert_array_equal(P.decode_packed_accumulators(data, 5, 3, bits), out)
    with pytest.raises(OverflowError):
        P.encode_packed_accumulators([8], 4)
    with pytest.raises(P.FramingError, match="states 4-bit packed accumulators, expected 5"):
        P.decode_packed_accumulators(data[:0] + bytes([4, 0, 0]), 1, 3, 5)
    with pytest.raises(P.FramingError, match="payload bytes"):
        P.decode_packed_accumulators(bytes([4, 0]), 1, 3, 4)


def _wire(**limits):
    core = CoreModel(**limits)

    def request(cmd, payload):
        (reply,) = P.FrameDecoder(backtrack=True).feed(core.feed(P.encode_frame(cmd, payload)))
        return reply.code, reply.payload
    return core, request


@pytest.mark.parametrize("m_bits, m_signed, v_bits, v_signed", [(1, True, 2, False), (3, False, 6, True),
                                                                  (8, True, 8, True), (2, False, 1, False)])
def test_core_model_packs_what_it_would_send_whole(m_bits, m_signed, v_bits, v_signed):
    rng = np.random.default_rng(m_bits * 10 + v_bits)
    rows, cols, count = 5, 37, 9
    matrix = rng.integers(0, 1 << m_bits, (rows, cols))
    vectors = rng.integers(0, 1 << v_bits, (count, cols))
    vectors[0] = (1 << v_bits) - 1  # a vector at the bound
    _, request = _wire(**PACKED)
    assert request(Cmd.LOAD_MATRIX, P.encode_load_matrix(rows, cols, m_bits, m_signed, 0, matrix))[0] == Status.OK
    status, whole = request(Cmd.RUN, P.encode_run(v_bits, v_signed, vectors))
    assert status == Status.OK
    status, packed = request(Cmd.RUN, P.encode_run(v_bits, v_signed, vectors, packed=True))
    assert status == Status.OK
    bits = P.accumulator_bits(cols, m_bits, v_bits)
    assert packed[0] == bits and len(packed) == 1 + (count * rows * bits + 7) // 8
    expected = signed_matmul(vectors, levels_or_none(v_bits, v_signed), v_bits,
                             matrix, levels_or_none(m_bits, m_signed), m_bits)
    np.testing.assert_array_equal(P.decode_packed_accumulators(packed, count, rows, bits), expected)
    np.testing.assert_array_equal(P.decode_accumulators(whole, count, rows, whole[0]), expected)


def test_core_model_refuses_packed_where_it_cannot():
    for limits, flags in ((PACKED, P.FLAG_PACKED | P.FLAG_ACTIVATE),          # codes or accumulators
                          (dict(PACKED, packed_accumulators=0), P.FLAG_PACKED)):  # a core that does not pack
        _, request = _wire(**limits)
        assert request(Cmd.LOAD_MATRIX, P.encode_load_matrix(1, 2, 2, False, 0, [1, 2]))[0] == Status.OK
        payload = P.RUN_FIELDS.pack(1, 2, flags) + P.pack_codes([3, 3], 2)
        assert request(Cmd.RUN, payload) == (Status.BAD_PARAMS, bytes([Cmd.RUN, Detail.FLAGS]))


def test_packed_reply_too_big_is_refused_at_its_packed_size():
    # 32 rows of 64 columns of 1-bit by 1-bit codes: 8 bits (one byte) each packed, 2 bytes
    # whole; 299 payload bytes after the header hold 9 vectors packed, 4 whole
    _, request = _wire(**dict(PACKED, max_rows=32, max_payload=300))
    assert request(Cmd.LOAD_MATRIX, P.encode_load_matrix(32, 64, 1, True, 0, np.ones((32, 64), dtype=int)))[0] == 0
    assert (P.accumulator_bits(64, 1, 1), P.accumulator_width(64, 1, 1)) == (8, 2)
    for n, packed, status in ((4, False, Status.OK), (5, False, Status.BAD_PARAMS),
                              (9, True, Status.OK), (10, True, Status.BAD_PARAMS)):
        reply = request(Cmd.RUN, P.encode_run(1, True, np.ones((n, 64), dtype=int), packed=packed))
        assert reply[0] == status, (n, packed)
        if status != Status.OK:
            assert reply[1] == bytes([Cmd.RUN, Detail.REPLY_TOO_BIG])


def test_scripts_replay_on_the_model():
    """The scripts the gateware's tests replay: packed RUNs, every one answered, and the
    packed requests of :func:`bad_requests`, refused by a core that does not pack."""
    script = packed_script(np.random.default_rng(3), params=WINDOWS)
    (replies,) = expected_replies(script, WINDOWS, timeout=10)
    frames = P.FrameDecoder(backtrack=True).feed(replies)
    assert len(frames) == len(script) and all(f.code == Status.OK for f in frames)
    assert sum(P.decode_run_header(f[P.HEADER_SIZE:]).packed for f in script if f[1] == Cmd.RUN) > 50
    for params, status in ((SMALL, Status.BAD_PARAMS), (WINDOWS, Status.OK)):
        requests = bad_requests(params)
        at = [name for name, _ in requests].index("RUN packed (ok on a core that packs)")
        core = CoreModel(**params)
        core.feed(b"".join(data for _, data in requests[:at]))
        (reply,) = P.FrameDecoder(backtrack=True).feed(core.feed(requests[at][1]))
        assert reply.code == status
        assert requests[at - 1][0] == "RUN packed and activated"


@pytest.mark.parametrize("limits", [PACKED, dict(PACKED, packed_accumulators=0)])
def test_driver_products_either_way(limits):
    rng = np.random.default_rng(5)
    client = CoreClient(LoopbackTransport(CoreModel(**limits)))
    assert client.packs_accumulators == bool(limits["packed_accumulators"])
    vectors, matrix = rng.integers(0, 64, (50, 100)), rng.integers(0, 2, (20, 100))
    out = client.matmul(vectors, 6, False, matrix, 1, True)
    np.testing.assert_array_equal(out, signed_matmul(vectors, None, 6, matrix, 1, 1))
    sent = client.stats["bytes_in"]
    assert client.reply_bits(64, 1, 6) == (P.accumulator_bits(64, 1, 6) if limits["packed_accumulators"]
                                           else 16)
    assert sent > 0
