"""The host-link protocol (sw.protocol): CRC, frames, the receiver, code packing, payloads.

The byte strings spelled out here are golden vectors for the gateware too.
"""

import random

import numpy as np
import pytest

from sw import protocol as P
from sw.protocol import Cmd, Frame, FrameDecoder, FrameError, Status


def crc_bitwise(data, crc=0xFFFF):
    for b in data:
        crc = P.crc16_update(crc, b)
    return crc


# --------------------------------------------------------------------------- CRC

def test_crc_check_value():
    assert P.crc16(b"123456789") == 0x29B1
    assert crc_bitwise(b"123456789") == 0x29B1
    assert P.crc16(b"") == 0xFFFF


def test_host_crc_has_the_contract_parameters():
    """binascii's CRC (the host's) against a CRC computed from the contract's
    parameters alone (the ones the gateware's amaranth.lib.crc is checked against)."""
    from sw.contract import link as L
    assert not (L.CRC_REFLECT_INPUT or L.CRC_REFLECT_OUTPUT)

    def from_parameters(data):
        crc, top, mask = L.CRC_INIT, 1 << (L.CRC_WIDTH - 1), (1 << L.CRC_WIDTH) - 1
        for byte in data:
            crc ^= byte << (L.CRC_WIDTH - 8)
            for _ in range(8):
                crc = ((crc << 1) ^ L.CRC_POLY) & mask if crc & top else (crc << 1) & mask
        return crc ^ L.CRC_XOR_OUTPUT

    rng = random.Random(5)
    for data in [b"123456789", b""] + [bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
                                       for _ in range(100)]:
        assert P.crc16(data) == from_parameters(data)
    assert P.crc16(b"123456789") == L.CRC_CHECK
    frame = P.encode_frame(P.Cmd.PING, b"", 3)
    assert from_parameters(frame[1:]) == L.CRC_RESIDUE


def test_crc_table_and_bitwise_agree():
    rng = random.Random(1)
    for n in (1, 2, 7, 64, 300):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert P.crc16(data) == crc_bitwise(data)
        # incremental
        assert P.crc16(data[n // 2:], P.crc16(data[:n // 2])) == P.crc16(data)


def test_frame_crc_residue_is_zero():
    frame = P.encode_frame(Cmd.RUN, bytes(range(40)), tag=200)
    assert P.crc16(frame[1:]) == 0
    assert crc_bitwise(frame[1:]) == 0


# --------------------------------------------------------------------------- frames

def test_frame_golden_bytes():
    # SYNC, CMD, TAG, LEN (LE), payload, CRC (big-endian)
    assert P.encode_frame(Cmd.PING, b"", tag=7) == bytes.fromhex("a5 01 07 0000 77e4")
    frame = P.encode_frame(Status.OK, b"\x01\x02\x03", tag=0x42)
    assert frame[:5] == bytes.fromhex("a5 00 42 0300") and frame[5:8] == b"\x01\x02\x03"
    assert frame[8:] == P.crc16(frame[1:8]).to_bytes(2, "big")
    assert len(frame) == P.OVERHEAD + 3


def test_encode_frame_limits():
    P.encode_frame(Cmd.RUN, bytes(P.MAX_PAYLOAD))
    with pytest.raises(ValueError, match="exceeds"):
        P.encode_frame(Cmd.RUN, bytes(P.MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        P.encode_frame(256, b"")
    with pytest.raises(ValueError):
        P.encode_frame(Cmd.PING, b"", tag=-1)


@pytest.mark.parametrize("backtrack", [False, True])
def test_round_trip_whole_and_bytewise(backtrack):
    rng = random.Random(2)
    frames = [(rng.randrange(256), rng.randrange(256), bytes(rng.randrange(256) for _ in range(rng.randrange(300))))
              for _ in range(30)]
    stream = b"".join(P.encode_frame(c, p, t) for c, t, p in frames)
    expected = [Frame(c, t, p) for c, t, p in frames]
    assert FrameDecoder(backtrack=backtrack).feed(stream) == expected
    dec = FrameDecoder(backtrack=backtrack)
    got = []
    for b in stream:
        got += dec.feed(bytes([b]))
    assert got == expected and dec.pending == 0


@pytest.mark.parametrize("backtrack", [False, True])
def test_resync_after_garbage_without_sync(backtrack):
    garbage = bytes(b for b in range(256) if b != P.SYNC)
    frame = P.encode_frame(Cmd.PING, b"", 3)
    dec = FrameDecoder(backtrack=backtrack)
    assert dec.feed(garbage + frame + garbage[:10] + frame) == [Frame(Cmd.PING, 3, b"")] * 2
    assert dec.dropped == len(garbage) + 10


def test_garbage_with_sync_before_a_frame():
    # a stray SYNC whose 1-byte "frame" swallows the start of the real frame
    frame = P.encode_frame(Status.OK, b"hello", 9)
    stream = bytes([0x11, P.SYNC, 0x00, 0x00, 0x01, 0x00]) + frame
    # host decoder: bad CRC, re-scan from the byte after the stray SYNC, the frame is found
    events = FrameDecoder(backtrack=True).feed(stream)
    assert events == [FrameError(Status.BAD_CRC, 0, 0, 1), Frame(Status.OK, 9, b"hello")]
    # core decoder: no backtracking, that frame is lost but the next one decodes
    dec = FrameDecoder(backtrack=False)
    assert dec.feed(stream) == [FrameError(Status.BAD_CRC, 0, 0, 1)]
    assert dec.feed(frame) == [Frame(Status.OK, 9, b"hello")]


def test_core_decoder_does_not_backtrack_and_reset_drops_partial():
    frame = P.encode_frame(Cmd.PING, b"", 1)
    dec = FrameDecoder(backtrack=False)
    # stray SYNC + 2 bytes take SYNC,CMD,TAG of the real frame as header: LEN = 0x01a5 -> waits
    assert dec.feed(bytes([P.SYNC, 0x00, 0x00]) + frame[:2]) == []
    assert dec.pending == 5
    dec.reset()  # idle timeout
    assert dec.pending == 0
    assert dec.feed(frame) == [Frame(Cmd.PING, 1, b"")]


@pytest.mark.parametrize("backtrack", [False, True])
def test_truncated_frame_waits_then_completes(backtrack):
    frame = P.encode_frame(Cmd.RUN, bytes(range(20)), 5)
    dec = FrameDecoder(backtrack=backtrack)
    for cut in (1, 4, 5, 24, len(frame) - 1):
        dec.reset()
        assert dec.feed(frame[:cut]) == [] and dec.pending == cut
        assert dec.feed(frame[cut:]) == [Frame(Cmd.RUN, 5, bytes(range(20)))]


def test_truncated_frame_followed_by_frame():
    truncated = P.encode_frame(Cmd.RUN, bytes(10), 1)[:8]
    good = P.encode_frame(Cmd.PING, b"", 2)
    # host decoder: bad CRC on the merged frame, then backtracks and finds the good one
    events = FrameDecoder(backtrack=True).feed(truncated + good + bytes(10))
    assert any(isinstance(e, FrameError) and e.status == Status.BAD_CRC for e in events)
    assert events[-1] == Frame(Cmd.PING, 2, b"")
    # core decoder: the merged frame is one BAD_CRC; the next request decodes normally
    dec = FrameDecoder(backtrack=False)
    events = dec.feed(truncated + good + bytes(3))
    assert events == [FrameError(Status.BAD_CRC, Cmd.RUN, 1, 10)] and dec.pending == 0
    assert dec.feed(good) == [Frame(Cmd.PING, 2, b"")]


@pytest.mark.parametrize("backtrack", [False, True])
@pytest.mark.parametrize("where", [1, 2, 3, 5, 10, -2, -1])
def test_bad_crc_reported_and_next_frame_decodes(backtrack, where):
    bad = bytearray(P.encode_frame(Cmd.LOAD_MATRIX, bytes(range(12)), 4))
    bad[where] ^= 0x10
    good = P.encode_frame(Cmd.PING, b"", 5)
    if where in (3, 4):  # corrupted length: the frame swallows the next one (LEN grows by 16)
        return
    events = FrameDecoder(backtrack=backtrack).feed(bytes(bad) + good)
    assert isinstance(events[0], FrameError) and events[0].status == Status.BAD_CRC
    assert events[-1] == Frame(Cmd.PING, 5, b"")


@pytest.mark.parametrize("backtrack", [False, True])
def test_oversize_length(backtrack):
    dec = FrameDecoder(max_payload=100, backtrack=backtrack)
    header = bytes([P.SYNC, Cmd.RUN, 6]) + (101).to_bytes(2, "little")
    # reported as soon as the header is in, without waiting for the payload
    assert dec.feed(header) == [FrameError(Status.BAD_LENGTH, Cmd.RUN, 6, 101)]
    assert dec.pending == 0
    good = P.encode_frame(Cmd.PING, b"", 7)
    assert dec.feed(good) == [Frame(Cmd.PING, 7, b"")]
    # the limit itself is fine
    assert dec.feed(P.encode_frame(Cmd.RUN, bytes(100), 8)) == [Frame(Cmd.RUN, 8, bytes(100))]
    with pytest.raises(ValueError):
        FrameDecoder(max_payload=P.MAX_PAYLOAD + 1)


# --------------------------------------------------------------------------- code packing

def test_pack_golden():
    assert P.pack_codes([1, 2, 3], 2) == bytes([0b111001])
    assert P.pack_codes([5, 3], 3) == bytes([0b011101])
    assert P.pack_codes([0, 1, 2, 3, 0, 1], 2) == bytes([0xE4, 0x04])
    assert P.pack_codes([0xAB, 0x01], 8) == bytes([0xAB, 0x01])
    assert P.pack_codes([1, 0, 1, 1, 0, 0, 0, 0, 1], 1) == bytes([0b1101, 1])
    assert P.pack_codes([], 3) == b""


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_round_trip(bits):
    rng = np.random.default_rng(bits)
    for count in (1, 7, 8, 9, 63, 200):
        codes = rng.integers(0, 1 << bits, count)
        data = P.pack_codes(codes, bits)
        assert len(data) == P.packed_size(count, bits)
        np.testing.assert_array_equal(P.unpack_codes(data, bits, count), codes)
        # padding bits are ignored
        if count * bits % 8:
            padded = bytearray(data)
            padded[-1] |= 0xFF << (count * bits % 8) & 0xFF
            np.testing.assert_array_equal(P.unpack_codes(bytes(padded), bits, count), codes)


def test_pack_rejects_bad_codes():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        P.pack_codes([4], 2)
    with pytest.raises(ValueError):
        P.pack_codes([-1], 2)
    with pytest.raises(ValueError):
        P.pack_codes([1], 9)
    with pytest.raises(ValueError):
        P.pack_codes([0.5], 2)
    with pytest.raises(ValueError, match="need"):
        P.unpack_codes(b"\x00", 3, 3)


# --------------------------------------------------------------------------- payloads

def test_load_matrix_payload_golden():
    payload = P.encode_load_matrix(2, 3, 2, True, 0, [0, 1, 2, 3, 0, 1])
    assert payload == bytes.fromhex("0200 0300 02 01 00000000 0600 e4 04")
    h = P.decode_load_matrix_header(payload)
    assert (h.rows, h.cols, h.bits, h.signed, h.offset, h.count, h.data) == (2, 3, 2, True, 0, 6, b"\xe4\x04")
    h = P.decode_load_matrix_header(P.encode_load_matrix(300, 400, 8, False, 70000, [9]))
    assert (h.rows, h.cols, h.bits, h.signed, h.offset, h.count) == (300, 400, 8, False, 70000, 1)


def test_run_payload_golden():
    payload = P.encode_run(3, False, np.array([[5], [3]]))
    assert payload == bytes.fromhex("0200 03 00 1d")
    h = P.decode_run_header(payload)
    assert (h.count, h.bits, h.signed, h.data) == (2, 3, False, b"\x1d")
    with pytest.raises(ValueError):
        P.encode_run(3, False, [1, 2])


@pytest.mark.parametrize("width, out, hex_", [
    (1, [[127, -128, -1]], "01 7f 80 ff"),
    (2, [[768, -768], [-32768, 32767]], "02 0003 00fd 0080 ff7f"),
    (3, [[-(1 << 23), (1 << 23) - 1]], "03 000080 ffff7f"),
])
def test_narrow_accumulators_are_twos_complement_little_endian(width, out, hex_):
    data = P.encode_accumulators(out, width)
    assert data == bytes.fromhex(hex_)
    rows = len(out[0])
    np.testing.assert_array_equal(P.decode_accumulators(data, len(out), rows, width), out)
    with pytest.raises(P.FramingError, match=f"states {width}-byte accumulators, expected 4"):
        P.decode_accumulators(data, len(out), rows, 4)
    with pytest.raises(OverflowError, match=f"{width}-byte"):
        P.encode_accumulators([[1 << (8 * width - 1)]], width)


@pytest.mark.parametrize("cols, m_bits, v_bits, bound, width", [
    (15, 1, 2, 2**7 - 1, 1),   # 4 + 1 + 2 + 1 = 8 bits: the widest 1-byte product at 1 x 2 bits
    (16, 1, 2, 2**8 - 1, 2),
    (256, 1, 2, 2**12 - 1, 2),  # the digits net's forward products (768 at most)
    (32, 1, 6, 2**13 - 1, 2),  # its backward-input
    (64, 6, 2, 2**15 - 1, 2),  # its backward-weight: 7 + 6 + 2 + 1 = 16 bits
    (65, 6, 2, 2**15 - 1, 2),
    (128, 6, 2, 2**16 - 1, 3),
    (127, 8, 8, 2**23 - 1, 3),  # 7 + 16 + 1 = 24 bits
    (128, 8, 8, 2**24 - 1, 4),
    (65535, 8, 8, 2**32 - 1, 4),  # never wider than int32
])
def test_accumulator_width_is_the_fewest_bytes_holding_the_bound(cols, m_bits, v_bits, bound, width):
    assert P.accumulator_bound(cols, m_bits, v_bits) == bound
    assert bound >= cols * ((1 << m_bits) - 1) * ((1 << v_bits) - 1)  # a bound of the product
    assert P.accumulator_width(cols, m_bits, v_bits) == width
    assert bound < 1 << (8 * width - 1) or width == 4  # holds it, and no fewer bytes would
    assert width == 1 or bound >= 1 << (8 * (width - 1) - 1)
    assert P.accumulator_reply_size(3, 5, width) == 1 + 15 * width


def test_accumulators_and_ping_reply():
    out = np.array([[1, -1, 2**31 - 1], [-(2**31), 0, 7]])
    data = P.encode_accumulators(out, 4)
    assert data[:9] == bytes.fromhex("04 01000000 ffffffff")
    np.testing.assert_array_equal(P.decode_accumulators(data, 2, 3, 4), out)
    with pytest.raises(OverflowError):
        P.encode_accumulators([2**31], 4)
    with pytest.raises(P.FramingError, match="payload bytes"):
        P.decode_accumulators(data, 3, 3, 4)
    info = P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4)
    version = "08"  # protocol 8
    assert P.PING_REPLY == 24
    # baud u32 at byte 13: 0 for a core without a UART (the default); then sum_slots u16 and
    # sum_bits u8, 0 for a core without batch sums (the default); then fmap_codes u16, 0 for
    # a core without a feature map (the default); then packed_accumulators u8, 0 for a core
    # that replies whole bytes (the default); then max_pool u8, 1 for a core that does not pool
    assert P.encode_ping_reply(info) == bytes.fromhex(version + "08 0400 1000 4000 0002 0004 04 00000000 0000 00 0000 00 01")
    assert P.decode_ping_reply(P.encode_ping_reply(info)) == info
    # 3,000,000 = 0x002DC6C0, little-endian
    uart = P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4, baud=3_000_000)
    assert P.encode_ping_reply(uart) == bytes.fromhex(version + "08 0400 1000 4000 0002 0004 04 c0c62d00 0000 00 0000 00 01")
    assert P.decode_ping_reply(P.encode_ping_reply(uart)).baud == 3_000_000
    # 1,000 sums (0x03E8) of 96 bits (0x60)
    sums = P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4, baud=3_000_000, sum_slots=1000, sum_bits=96)
    assert P.encode_ping_reply(sums) == bytes.fromhex(version + "08 0400 1000 4000 0002 0004 04 c0c62d00 e803 60 0000 00 01")
    assert P.decode_ping_reply(P.encode_ping_reply(sums)) == sums
    # a feature map of 4,096 codes (0x1000)
    fmap = P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4, fmap_codes=4096)
    assert P.encode_ping_reply(fmap) == bytes.fromhex(version + "08 0400 1000 4000 0002 0004 04 00000000 0000 00 0010 00 01")
    assert P.decode_ping_reply(P.encode_ping_reply(fmap)) == fmap
    # packed accumulators (FLAG_PACKED)
    packed = P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4, packed_accumulators=1)
    assert P.encode_ping_reply(packed) == bytes.fromhex(version + "08 0400 1000 4000 0002 0004 04 00000000 0000 00 0000 01 01")
    assert P.decode_ping_reply(P.encode_ping_reply(packed)) == packed
    P.check_core_info(packed)
    # pooling up to 4 x 4 (a core with a feature map and an activation stage)
    pooled = P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4, fmap_codes=4096, max_pool=4)
    assert P.encode_ping_reply(pooled) == bytes.fromhex(version + "08 0400 1000 4000 0002 0004 04 00000000 0000 00 0010 00 04")
    assert P.decode_ping_reply(P.encode_ping_reply(pooled)) == pooled
    P.check_core_info(pooled)
    assert "max_pool 3 not in (1, 2, 4)" in P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4,
                                                       fmap_codes=4096, max_pool=3).problems()
    assert "max_pool 2 needs a feature map" in " ".join(P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4,
                                                                   max_pool=2).problems())
    assert "packed_accumulators 2 not 0 or 1" in P.CoreInfo(P.PROTOCOL_VERSION, 8, 4, 16, 64, 512, 1024, 4,
                                                            packed_accumulators=2).problems()
    P.check_core_info(info)
    P.check_core_info(uart)
    P.check_core_info(sums)
    P.check_core_info(fmap)
    with pytest.raises(P.FramingError):
        P.decode_ping_reply(b"\x01")
    with pytest.raises(P.FramingError, match="version 1"):
        P.decode_ping_reply(P.encode_ping_reply(info)[:12])
    with pytest.raises(P.FramingError, match=r"has 13 payload bytes, expected 24 \(a protocol version 2 core\?\)"):
        P.decode_ping_reply(P.encode_ping_reply(info)[:13])
    with pytest.raises(P.FramingError, match=r"has 17 payload bytes, expected 24 \(a protocol version 3 core\?\)"):
        P.decode_ping_reply(P.encode_ping_reply(info)[:17])
    with pytest.raises(P.FramingError, match=r"has 20 payload bytes, expected 24 \(a protocol version 4 core\?\)"):
        P.decode_ping_reply(P.encode_ping_reply(info)[:20])
    with pytest.raises(P.FramingError, match=r"has 22 payload bytes, expected 24 \(a protocol version 5 core\?\)"):
        P.decode_ping_reply(P.encode_ping_reply(info)[:22])
    with pytest.raises(P.FramingError, match=r"has 23 payload bytes, expected 24 \(a protocol version 6 core\?\)"):
        P.decode_ping_reply(P.encode_ping_reply(info)[:23])
    with pytest.raises(P.FramingError, match=r"has 25 payload bytes, expected 24$"):
        P.decode_ping_reply(P.encode_ping_reply(info) + b"\x00")


@pytest.mark.parametrize("bad", [
    dict(version=1), dict(max_bits=9), dict(max_rows=0), dict(max_payload=4097), dict(max_act_bits=9),
    dict(max_act_bits=8),  # 6 + 1 + 4 * 255 bytes > 1024
    dict(max_cols=1021),  # 4 + 1021 bytes > 1024
    dict(max_rows=256),   # 1 + 256 * 4 > 1024
    dict(sum_bits=96),    # sums' width without sums
    dict(sum_slots=64),   # sums without a width (below the 88 bits one aligned term needs)
    dict(sum_slots=64, sum_bits=87), dict(sum_slots=64, sum_bits=129),
])
def test_core_info_invariants(bad):
    fields = dict(version=P.PROTOCOL_VERSION, max_bits=8, pe=1, simd=1, max_rows=64, max_cols=512, max_payload=1024)
    fields.update(bad)
    with pytest.raises(P.FramingError, match="break the protocol"):
        P.check_core_info(P.CoreInfo(**fields))


def test_errors_and_exception_hierarchy():
    assert P.encode_error(Cmd.RUN, P.Detail.BITS) == b"\x04\x03"
    err = P.decode_error(Status.BAD_PARAMS, b"\x04\x03", Cmd.RUN)
    assert isinstance(err, P.CoreError) and isinstance(err, P.ProtocolError)
    assert (err.status, err.command, err.detail) == (Status.BAD_PARAMS, Cmd.RUN, P.Detail.BITS)
    assert "BAD_PARAMS" in str(err) and "RUN" in str(err) and "BITS" in str(err)
    odd = P.decode_error(0x77, b"\x99\x00", Cmd.PING)
    assert odd.status == 0x77 and odd.command == 0x99 and "0x77" in str(odd)
    assert "malformed" in str(P.decode_error(Status.BAD_CRC, b"", Cmd.PING))
    assert issubclass(P.LinkTimeout, P.LinkError) and issubclass(P.LinkError, P.ProtocolError)
    assert issubclass(P.LinkError, ConnectionError) and issubclass(P.LinkTimeout, TimeoutError)
    assert issubclass(P.FramingError, P.ProtocolError) and not issubclass(P.CoreError, P.LinkError)


def test_threshold_records_and_activation_replies():
    thresholds = np.array([[-1, 0, 2**31 - 1], [-(2**31), 5, 256]])
    payload = P.encode_load_thresholds(3, 2, thresholds, [1, -1])
    assert payload[:P.THRESHOLD_HEADER] == bytes.fromhex("0300 0200 02 00")
    assert payload[P.THRESHOLD_HEADER:] == bytes.fromhex(
        "00 ffffffff 00000000 ffffff7f"
        "01 00000080 05000000 00010000")
    h = P.decode_load_thresholds_header(payload)
    assert (h.offset, h.count, h.bits, h.flags) == (3, 2, 2, 0)
    got, direction = h.rows()
    np.testing.assert_array_equal(got, thresholds)
    np.testing.assert_array_equal(direction, [1, -1])
    assert direction.dtype == np.int64
    assert P.threshold_record_size(4) == 61
    with pytest.raises(ValueError, match=r"\(rows, 3\)"):
        P.encode_load_thresholds(0, 2, thresholds[:, :2], [1, -1])
    with pytest.raises(OverflowError):
        P.encode_load_thresholds(0, 2, thresholds + 1, [1, -1])
    # the host API speaks directions (+1 / -1); the wire bit is the codec's business
    for bad in ([False, True], [0, -1], [1, 2], [1.0, -1.0]):
        with pytest.raises(ValueError, match=r"directions must be \+1"):
            P.encode_load_thresholds(0, 2, thresholds, bad)
    codes = np.array([[3, 0, 1], [2, 2, 0]])
    assert P.activation_reply_size(2, 3, 2) == 2
    np.testing.assert_array_equal(P.decode_activations(P.pack_codes(codes, 2), 2, 3, 2), codes)
    with pytest.raises(P.FramingError, match="expected 2"):
        P.decode_activations(b"\x00", 2, 3, 2)
    run = P.decode_run_header(P.encode_run(3, True, codes, activate=True))
    assert run.flags == P.FLAG_SIGNED | P.FLAG_ACTIVATE and run.activate and run.signed
