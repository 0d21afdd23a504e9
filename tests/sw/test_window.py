"""Feature maps and windows (protocol 5: LOAD_FMAP, the window flag of RUN and ACCUMULATE).

The expected vectors are made independently of :func:`sw.contract.window.window_index`:
by ``torch.nn.functional.unfold`` (im2col: a PATCH vector is a column of it, a SHIFT
vector a row), and the products by torch's convolutions (``conv2d`` for the forward
patches, ``conv_transpose2d`` for backward-input, ``torch.nn.grad.conv2d_weight`` for the
shifts of backward-weight).  The core model's windowed replies are compared byte for
byte with its replies to the same vectors sent as codes; the status of every error is
spelled out here, not taken from the code under test.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sw import protocol as P
from sw.contract.codes import levels
from sw.contract.core import CoreConfig
from sw.contract.window import PATCH, SHIFT, FmapShape, Window, window_index
from sw.core_model import CoreModel, window_vectors
from sw.core_scripts import WINDOWS, bad_window_requests, expected_replies, fuzz_script, window_script
from sw.driver import CoreClient, LoopbackTransport
from sw.protocol import Cmd, Detail, Status

# Room for every map and product below in one request (the windowed ones are split anyway).
ROOMY = dict(max_rows=8, max_cols=256, max_bits=8, pe=2, simd=8, max_payload=4096, max_act_bits=3,
             sum_slots=4096, sum_bits=96, fmap_codes=600)
# A tiny core: maps over many LOAD_FMAP frames, windows over many RUNs.
TINY = dict(max_rows=8, max_cols=48, max_bits=8, pe=2, simd=8, max_payload=64, max_act_bits=3,
            sum_slots=64, sum_bits=96, fmap_codes=600)

# (channels, height, width), kernel, stride, pad: every stride up to 4, pads 0 .. kernel - 1.
CASES = [
    ((3, 7, 9), 3, 1, 1),
    ((2, 8, 6), 3, 2, 0),
    ((2, 9, 9), 2, 2, 1),
    ((4, 5, 5), 1, 1, 0),
    ((1, 11, 10), 4, 3, 3),
    ((3, 9, 8), 3, 4, 2),
    ((2, 6, 7), 5, 1, 2),
]


def unfold(fmap, kernel, stride, pad) -> np.ndarray:
    """im2col of a ``(C, H, W)`` map: ``(C * k * k, L)`` int64, rows ``(c, ky, kx)``, columns the
    output positions row-major, zero padding (torch's ``unfold``, exact in float64)."""
    x = torch.from_numpy(np.asarray(fmap, dtype=np.float64))[None]
    return F.unfold(x, kernel, padding=pad, stride=stride)[0].numpy().astype(np.int64)


def out_side(side, kernel, stride, pad):
    return (side + 2 * pad - kernel) // stride + 1


def gather(fmap, shape, window, vectors, cols):
    """The codes of ``window_index`` read from ``fmap`` (the test's own gather)."""
    index, inside = window_index(shape, window, np.arange(vectors)[:, None], np.arange(cols)[None, :])
    flat = np.asarray(fmap).ravel()
    return np.where(inside, flat[np.where(inside, index, 0)], 0)


# --------------------------------------------------------------------------- window_index

@pytest.mark.parametrize("shape, kernel, stride, pad", CASES, ids=str)
def test_patch_index_is_im2col(shape, kernel, stride, pad):
    """PATCH vector v from output position (y, x) = unfold's column y * out_w + x + v, channels
    from ``channel`` on; the map holds 1 .. codes, so 0 can only be padding."""
    c, h, w = shape
    fmap = np.arange(1, c * h * w + 1).reshape(shape)
    cols_all = unfold(fmap, kernel, stride, pad).T  # (L, C * k * k)
    out_w, taps = out_side(w, kernel, stride, pad), kernel * kernel
    for channel in range(c):
        for first in (0, 1, out_w, cols_all.shape[0] - 1):
            for slice_channels in range(1, c - channel + 1):
                window = Window(kernel, stride, pad, PATCH, out_w, channel, first // out_w, first % out_w)
                count, cols = cols_all.shape[0] - first, slice_channels * taps
                want = cols_all[first:, channel * taps:channel * taps + cols]
                np.testing.assert_array_equal(gather(fmap, FmapShape(*shape), window, count, cols), want)
    # columns past the map's channels read padding
    window = Window(kernel, stride, pad, PATCH, out_w, c - 1)
    got = gather(fmap, FmapShape(*shape), window, cols_all.shape[0], 2 * taps)
    np.testing.assert_array_equal(got[:, :taps], cols_all[:, (c - 1) * taps:])
    assert not got[:, taps:].any()


@pytest.mark.parametrize("shape, kernel, stride, pad", CASES, ids=str)
def test_shift_index_is_im2col_transposed(shape, kernel, stride, pad):
    """SHIFT vector v from tap (channel, y, x) = unfold's row (channel * k + y) * k + x + v."""
    c, h, w = shape
    fmap = np.arange(1, c * h * w + 1).reshape(shape)
    rows_all = unfold(fmap, kernel, stride, pad)  # (C * k * k, L)
    out_w = out_side(w, kernel, stride, pad)
    for first in sorted({0, 1, kernel, kernel * kernel, rows_all.shape[0] - 1}):
        tap = (first // (kernel * kernel), first // kernel % kernel, first % kernel)
        window = Window(kernel, stride, pad, SHIFT, out_w, *tap)
        got = gather(fmap, FmapShape(*shape), window, rows_all.shape[0] - first, rows_all.shape[1])
        np.testing.assert_array_equal(got, rows_all[first:])


@pytest.mark.parametrize("shape, kernel, stride, pad", CASES, ids=str)
def test_windows_lower_the_three_products_of_a_convolution(shape, kernel, stride, pad):
    """Forward (PATCH @ W = conv2d), backward-weight (SHIFT @ G = conv2d_weight) and, at stride
    1, backward-input (PATCH over G with pad k - 1 - p @ the flipped, transposed W =
    conv_transpose2d), in exact integers."""
    rng = np.random.default_rng(sum(shape) + kernel * 7 + stride * 3 + pad)
    c, h, w = shape
    o = 3
    x = rng.integers(0, 4, shape)
    weight = rng.integers(-3, 4, (o, c, kernel, kernel))
    out_h, out_w = out_side(h, kernel, stride, pad), out_side(w, kernel, stride, pad)
    tx, tw = torch.from_numpy(x[None].astype(np.float64)), torch.from_numpy(weight.astype(np.float64))
    # forward
    patches = gather(x, FmapShape(*shape), Window(kernel, stride, pad, PATCH, out_w), out_h * out_w,
                     c * kernel * kernel)
    want = F.conv2d(tx, tw, stride=stride, padding=pad)[0].numpy().astype(np.int64)
    np.testing.assert_array_equal((patches @ weight.reshape(o, -1).T).T.reshape(o, out_h, out_w), want)
    # backward-weight: the output gradients' positions against the activations' shifts
    g = rng.integers(-5, 6, (o, out_h, out_w))
    tg = torch.from_numpy(g[None].astype(np.float64))
    shifts = gather(x, FmapShape(*shape), Window(kernel, stride, pad, SHIFT, out_w), c * kernel * kernel,
                    out_h * out_w)
    want = torch.nn.grad.conv2d_weight(tx, tw.shape, tg, stride=stride, padding=pad).numpy().astype(np.int64)
    np.testing.assert_array_equal((shifts @ g.reshape(o, -1).T).T.reshape(weight.shape), want)
    # backward-input at stride 1: a forward convolution of the gradients, padded k - 1 - p
    if stride == 1:
        gi = rng.integers(0, 7, (o, out_h, out_w))
        back = Window(kernel, 1, kernel - 1 - pad, PATCH, w)
        patches = gather(gi, FmapShape(o, out_h, out_w), back, h * w, o * kernel * kernel)
        flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, -1)
        want = F.conv_transpose2d(torch.from_numpy(gi[None].astype(np.float64)), tw, padding=pad)
        np.testing.assert_array_equal((patches @ flipped.T).T.reshape(c, h, w), want[0].numpy().astype(np.int64))


@pytest.mark.parametrize("order", [PATCH, SHIFT], ids=["patch", "shift"])
@pytest.mark.parametrize("shape, kernel, stride, pad", CASES, ids=str)
def test_advanced_window_starts_at_vector_n(order, shape, kernel, stride, pad):
    out_w = out_side(shape[2], kernel, stride, pad)
    window = Window(kernel, stride, pad, order, out_w, 1 if shape[0] > 1 else 0,
                    *((1, out_w - 1) if order == PATCH else (kernel - 1, 0)))
    cols = 13
    whole = window_index(FmapShape(*shape), window, np.arange(40)[:, None], np.arange(cols)[None, :])
    for n in (0, 1, 5, 17):
        part = window_index(FmapShape(*shape), window.advanced(n), np.arange(40 - n)[:, None],
                            np.arange(cols)[None, :])
        np.testing.assert_array_equal(part[0], whole[0][n:])
        np.testing.assert_array_equal(part[1], whole[1][n:])


def test_advanced_by_hand():
    # PATCH: position 1 * 5 + 3 + 4 = 12 of 5-wide rows: (2, 2)
    assert Window(3, 1, 1, PATCH, 5, 2, 1, 3).advanced(4) == Window(3, 1, 1, PATCH, 5, 2, 2, 2)
    # SHIFT: tap (0 * 3 + 2) * 3 + 2 + 1 = 9: channel 1, (0, 0)
    assert Window(3, 1, 1, SHIFT, 4, 0, 2, 2).advanced(1) == Window(3, 1, 1, SHIFT, 4, 1, 0, 0)
    assert Window(2, 1, 0, SHIFT, 4, 3, 1, 0).advanced(0) == Window(2, 1, 0, SHIFT, 4, 3, 1, 0)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="whole number of vectors"):
            Window(3, 1, 1, PATCH, 5).advanced(bad)
    with pytest.raises(ValueError, match="order 2"):
        Window(3, 1, 1, 2, 5).advanced(1)


# --------------------------------------------------------------------------- codecs

def test_load_fmap_payload_golden():
    # 2 x 3 x 4 map of 2-bit codes, codes 5 .. 7 = 1, 2, 3: 0b11_10_01 = 0x39
    payload = P.encode_load_fmap(2, 3, 4, 2, 5, [1, 2, 3])
    assert payload == bytes.fromhex("0200 03 04 02 0500 0300 39")
    h = P.decode_load_fmap_header(payload)
    assert (h.channels, h.height, h.width, h.bits, h.offset, h.count, h.data) == (2, 3, 4, 2, 5, 3, b"\x39")
    assert h.shape == FmapShape(2, 3, 4) and P.LOAD_FMAP_HEADER == 9
    for bad in (dict(height=256), dict(channels=-1), dict(offset=1 << 16)):
        args = dict(channels=2, height=3, width=4, bits=2, offset=0, codes=[1])
        args.update(bad)
        with pytest.raises(ValueError, match=f"LOAD_FMAP field {next(iter(bad))} must be an integer in 0.."):
            P.encode_load_fmap(**args)


def test_windowed_run_and_accumulate_payloads_golden():
    window = Window(3, 2, 1, SHIFT, 300, 1, 2, 0)
    wire = bytes.fromhex("03 02 01 01 2c01 0100 0200 0000 01")  # pool 1 (none), the last byte
    assert P.encode_window(window) == wire and P.decode_window(wire) == window and P.WINDOW_HEADER == 13
    pooled = Window(3, 1, 1, PATCH, 8, 0, 2, 4, pool=2)
    assert P.encode_window(pooled) == bytes.fromhex("03 01 01 00 0800 0000 0200 0400 02")
    # flags: signed 0x01 | activate 0x02 | window 0x08
    run = P.encode_run_window(5, 2, True, window, activate=True)
    assert run == bytes.fromhex("0500 02 0b") + wire
    h = P.decode_run_header(run)
    assert (h.count, h.bits, h.signed, h.activate, h.window) == (5, 2, True, True, window)
    assert P.decode_run_header(P.encode_run_window(1, 8, False, window)).flags == P.FLAG_WINDOW == 0x08
    # flags: first 0x04 | window 0x08; mantissa 0x123456, shift 40
    acc = P.encode_accumulate_window(7, 3, False, window, slot=9, mantissa=0x123456, shift=40, first=True)
    assert acc == bytes.fromhex("0700 03 0c 0900 56341200 28") + wire
    h = P.decode_accumulate_header(acc)
    assert (h.count, h.slot, h.first, h.signed, h.window) == (7, 9, True, False, window)
    # no window without the flag, or without its bytes
    assert P.decode_run_header(P.encode_run(2, False, [[1, 2, 3]])).window is None
    assert P.decode_run_header(P.RUN_FIELDS.pack(1, 2, P.FLAG_WINDOW) + wire[:-1]).window is None
    assert P.decode_accumulate_header(P.encode_accumulate(2, False, [[1]], slot=0, mantissa=1, shift=0,
                                                          first=False)).window is None
    # LOAD_MATRIX (protocol 8): rows 3, cols 300, bits 6, flags signed 0x01 | window 0x08,
    # offset 0, count rows * cols = 900
    load = P.encode_load_matrix_window(3, 300, 6, True, window)
    assert load == bytes.fromhex("0300 2c01 06 09 00000000 8403") + wire
    h = P.decode_load_matrix_header(load)
    assert (h.rows, h.cols, h.bits, h.signed, h.offset, h.count, h.window) == (3, 300, 6, True, 0, 900, window)
    assert P.decode_load_matrix_header(P.encode_load_matrix(1, 2, 3, False, 0, [1, 2])).window is None
    with pytest.raises(ValueError, match="LOAD_MATRIX field count must be an integer in 0..65535"):
        P.encode_load_matrix_window(300, 300, 6, True, window)
    with pytest.raises(ValueError, match="window field channel must be an integer in 0..65535"):
        P.encode_window(Window(3, 1, 1, PATCH, 4, 1 << 16))
    with pytest.raises(ValueError, match="RUN field count must be an integer in 0..65535"):
        P.encode_run_window(-1, 2, False, window)


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_load_fmap_round_trip(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, 37)
    h = P.decode_load_fmap_header(P.encode_load_fmap(5, 255, 2, bits, 61, codes))
    assert (h.channels, h.height, h.width, h.bits, h.offset, h.count) == (5, 255, 2, bits, 61, 37)
    assert len(h.data) == P.packed_size(37, bits)
    np.testing.assert_array_equal(P.unpack_codes(h.data, bits, 37), codes)


@pytest.mark.parametrize("order", [PATCH, SHIFT], ids=["patch", "shift"])
@pytest.mark.parametrize("kernel, stride, pad", [(1, 1, 0), (3, 2, 1), (16, 4, 15)])
@pytest.mark.parametrize("signed, flag", [(False, False), (True, True)])
def test_windowed_requests_round_trip(order, kernel, stride, pad, signed, flag):
    window = Window(kernel, stride, pad, order, 0xFFFF, 0xFFFE, 513, 7)
    run = P.decode_run_header(P.encode_run_window(0xFFFF, 8, signed, window, activate=flag))
    assert (run.count, run.bits, run.signed, run.activate, run.window) == (0xFFFF, 8, signed, flag, window)
    acc = P.decode_accumulate_header(P.encode_accumulate_window(3, 1, signed, window, slot=0xFFFF,
                                                                mantissa=(1 << 24) - 1, shift=255, first=flag))
    assert (acc.count, acc.bits, acc.signed, acc.first, acc.slot, acc.mantissa, acc.shift, acc.window) == (
        3, 1, signed, flag, 0xFFFF, (1 << 24) - 1, 255, window)


def test_contract_codes():
    assert (Cmd.LOAD_FMAP, Detail.NO_FMAP, Detail.WINDOW, Detail.SHAPE) == (0x08, 0x0C, 0x0D, 0x0E)
    assert P.PROTOCOL_VERSION == 8 and P.PING_REPLY == 24 and P.WINDOW_HEADER == 13


# --------------------------------------------------------------------------- core model

class Wire:
    """Raw requests to a core model, replies decoded."""

    def __init__(self, **limits):
        self.core = CoreModel(**limits)

    def raw(self, cmd, payload=b"", tag=0):
        return self.core.feed(P.encode_frame(cmd, payload, tag))

    def __call__(self, cmd, payload=b""):
        (reply,) = P.FrameDecoder(backtrack=True).feed(self.raw(cmd, payload))
        return reply.code, reply.payload

    def ok(self, cmd, payload=b""):
        status, reply = self(cmd, payload)
        assert status == Status.OK, (Status(status), reply)
        return reply

    def load_fmap(self, fmap, bits, chunk=4000):
        flat = np.asarray(fmap).ravel()
        for offset in range(0, flat.size, chunk):
            self.ok(Cmd.LOAD_FMAP, P.encode_load_fmap(*fmap.shape, bits, offset, flat[offset:offset + chunk]))

    def load(self, matrix, bits, signed):
        self.ok(Cmd.LOAD_MATRIX, P.encode_load_matrix(*np.shape(matrix), bits, signed, 0, matrix))


def test_core_model_ping_and_load_fmap_by_hand():
    wire = Wire(**dict(TINY, fmap_codes=300))
    assert wire.ok(Cmd.PING)[20:22] == bytes.fromhex("2c01")  # fmap_codes 300
    assert P.decode_ping_reply(wire.ok(Cmd.PING)).fmap_codes == 300
    assert Wire(**dict(TINY, fmap_codes=0)).ok(Cmd.PING)[20:22] == bytes(2)
    assert wire.core.fmap is None
    # codes 0 .. 4 of a 1 x 2 x 3 map of 3-bit codes 1..5: reply loaded = 5 (u32)
    assert wire.ok(Cmd.LOAD_FMAP, P.encode_load_fmap(1, 2, 3, 3, 0, [1, 2, 3, 4, 5])) == bytes.fromhex("05000000")
    assert wire.core.fmap is None  # not complete
    assert wire.ok(Cmd.LOAD_FMAP, P.encode_load_fmap(1, 2, 3, 3, 5, [6])) == bytes.fromhex("06000000")
    np.testing.assert_array_equal(wire.core.fmap, [[[1, 2, 3], [4, 5, 6]]])
    wire.load([[1, 0, 0, 0], [0, 0, 0, 1]], 1, False)  # a new matrix keeps the map
    np.testing.assert_array_equal(wire.core.fmap, [[[1, 2, 3], [4, 5, 6]]])
    # 2 x 2 kernel, stride 1, no pad, PATCH: positions (0, 0), (0, 1): patches 1 2 4 5, 2 3 5 6;
    # the matrix picks taps (0, 0) and (1, 1): 1 5, 2 6; one byte each (bit_length(4) + 1 + 3 + 1 = 8 bits)
    reply = wire.ok(Cmd.RUN, P.encode_run_window(2, 3, False, Window(2, 1, 0, PATCH, 2)))
    assert reply == bytes.fromhex("01 01 05 02 06")
    # SHIFT from tap (0, 1, 1): the map under it at positions (0, 0), (0, 1) as the 4 columns
    # (positions (1, 0), (1, 1) read row 2: padding): 5 6 0 0 -> 5 and 0
    assert wire.ok(Cmd.RUN, P.encode_run_window(1, 3, False, Window(2, 1, 0, SHIFT, 2, 0, 1, 1))) == \
        bytes.fromhex("01 05 00")
    assert wire.ok(Cmd.RESET) == b"" and wire.core.fmap is None


def test_core_model_matrix_from_the_map_by_hand():
    """LOAD_MATRIX with the window flag: the matrix's rows are the window's vectors."""
    wire = Wire(**dict(TINY, fmap_codes=300))
    wire.load_fmap(np.array([[[1, 2], [3, 4]], [[5, 6], [7, 0]]]), 3)  # 2 channels of 2 x 2
    # kernel 1, SHIFT: row r = channel r's four positions (the gradient map as a matrix)
    rows = Window(1, 1, 0, SHIFT, 2)
    assert wire.ok(Cmd.LOAD_MATRIX, P.encode_load_matrix_window(2, 4, 3, False, rows)) == bytes.fromhex("08000000")
    np.testing.assert_array_equal(wire.core.matrix, [[1, 2, 3, 4], [5, 6, 7, 0]])
    # vector (1, 0, 0, 1) against rows (1 2 3 4) and (5 6 7 0): 1 + 4 = 5 and 5 + 0 = 5, two bytes
    # each (bit_length(4) + 3 + 3 + 1 = 10 bits)
    assert wire.ok(Cmd.RUN, P.encode_run(3, False, [[1, 0, 0, 1]])) == bytes.fromhex("02 0500 0500")
    # signed (2q - 7): rows -5 -3 -1 1 and 3 5 7 -7; the map stays (a windowed RUN reads it)
    wire.ok(Cmd.LOAD_MATRIX, P.encode_load_matrix_window(2, 4, 3, True, rows))
    assert wire.ok(Cmd.RUN, P.encode_run(3, False, [[1, 0, 0, 1]])) == bytes.fromhex("02 fcff fcff")
    # kernel 2, pad 1, from tap (1, 1, 1) of channel 1: output positions (0, 0) .. (2, 2) of a 3-wide
    # output (9 columns), the map's channel 1 under tap (1, 1): 5 6 0 / 7 0 0 / 0 0 0; a second row
    # (vector 1: tap (1, 0, 0) would be past the last tap of 2 channels: channel 2 is padding)
    taps = Window(2, 1, 1, SHIFT, 3, 1, 1, 1)
    wire.ok(Cmd.LOAD_MATRIX, P.encode_load_matrix_window(2, 9, 3, False, taps))
    np.testing.assert_array_equal(wire.core.matrix, [[5, 6, 0, 7, 0, 0, 0, 0, 0], [0] * 9])
    # the request's bits must be the map's; a pooled window is refused; nothing changes on an error
    assert wire(Cmd.LOAD_MATRIX, P.encode_load_matrix_window(2, 4, 2, False, rows)) == (
        Status.BAD_PARAMS, bytes([Cmd.LOAD_MATRIX, Detail.BITS]))
    assert wire(Cmd.LOAD_MATRIX, P.encode_load_matrix_window(1, 4, 3, False, Window(2, 1, 0, PATCH, 2, pool=2))) \
        == (Status.BAD_PARAMS, bytes([Cmd.LOAD_MATRIX, Detail.WINDOW]))
    np.testing.assert_array_equal(wire.core.matrix, [[5, 6, 0, 7, 0, 0, 0, 0, 0], [0] * 9])
    # a core without a feature map: the flag is a bad flag
    assert Wire(**dict(TINY, fmap_codes=0))(Cmd.LOAD_MATRIX, P.encode_load_matrix_window(2, 4, 3, False, rows)) \
        == (Status.BAD_PARAMS, bytes([Cmd.LOAD_MATRIX, Detail.FLAGS]))


def test_core_model_window_of_1024_vectors_of_576_codes():
    """The digits net's widest window (64 channels of 3 x 3 taps at 12 x 16 positions, and more
    vectors than positions) in one request: the model makes it with broadcast arrays."""
    wire = Wire(**dict(ROOMY, max_cols=576, fmap_codes=64 * 12 * 16, sum_slots=0, sum_bits=0))
    rng = np.random.default_rng(5)
    fmap = rng.integers(0, 4, (64, 12, 16))
    wire.load_fmap(fmap, 2)
    matrix = rng.integers(0, 2, (1, 576))
    wire.load(matrix, 1, True)
    reply = wire.ok(Cmd.RUN, P.encode_run_window(1024, 2, False, Window(3, 1, 1, PATCH, 16)))
    # positions past the map's 12 x 16 read its last row and zeros below: a map 64 rows high
    patches = unfold(np.pad(fmap, ((0, 0), (0, 52), (0, 0))), 3, 1, 1).T
    assert patches.shape == (1024, 576)
    want = values(patches, 2, False) @ values(matrix, 1, True).T
    width = P.accumulator_width(576, 1, 2)
    np.testing.assert_array_equal(P.decode_accumulators(reply, 1024, 1, width), want)


def values(codes, bits, signed):
    codes = np.asarray(codes, dtype=np.int64)
    return 2 * codes - levels(bits) if signed else codes


def explicit_vectors(fmap, order, kernel, stride, pad, channel, first, count, cols):
    """The vectors a window makes, from unfold (the test's im2col), zero past its end."""
    u = unfold(fmap, kernel, stride, pad)
    taps = kernel * kernel
    if order == PATCH:
        source = u.T[:, channel * taps:channel * taps + cols]
        source = np.pad(source, ((0, 0), (0, cols - source.shape[1])))
    else:
        source = u[channel * taps:, :cols]
    out = np.zeros((count, cols), dtype=np.int64)
    part = source[first:first + count]
    out[:part.shape[0]] = part
    return out


def window_case(rng, shape, kernel, stride, pad, order, max_cols=ROOMY["max_cols"]):
    """A random window on ``shape``: ``(window, cols, count)`` and the explicit vectors' origin."""
    c, h, w = shape
    out_h, out_w = out_side(h, kernel, stride, pad), out_side(w, kernel, stride, pad)
    taps = kernel * kernel
    if order == PATCH:
        channel = int(rng.integers(0, c))
        cols = int(rng.integers(1, c - channel + 1)) * taps
        first = int(rng.integers(0, out_h * out_w))
        window = Window(kernel, stride, pad, PATCH, out_w, channel, first // out_w, first % out_w)
        return window, cols, out_h * out_w - first, (channel, first)
    first = int(rng.integers(0, c * taps))
    window = Window(kernel, stride, pad, SHIFT, out_w, first // taps, first // kernel % kernel, first % kernel)
    return window, out_h * out_w, c * taps - first, (0, first)


@pytest.mark.parametrize("v_signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("bits", [1, 3, 8])
@pytest.mark.parametrize("order", [PATCH, SHIFT], ids=["patch", "shift"])
@pytest.mark.parametrize("shape, kernel, stride, pad", CASES, ids=str)
def test_windowed_run_is_the_run_of_its_vectors_byte_for_byte(shape, kernel, stride, pad, order, bits, v_signed):
    rng = np.random.default_rng([bits, order, kernel, stride, pad, sum(shape)])
    fmap = rng.integers(0, 1 << bits, shape)
    window, cols, count, (channel, first) = window_case(rng, shape, kernel, stride, pad, order)
    vectors = explicit_vectors(fmap, order, kernel, stride, pad, channel, first, count, cols)
    m_bits, m_signed = int(rng.integers(1, 9)), bool(rng.integers(2))
    matrix = rng.integers(0, 1 << m_bits, (5, cols))
    windowed, explicit = Wire(**ROOMY), Wire(**ROOMY)
    windowed.load_fmap(fmap, bits)
    for wire in (windowed, explicit):
        wire.load(matrix, m_bits, m_signed)
    chunk = 7  # several requests, each window advanced to its first vector
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        got = windowed.raw(Cmd.RUN, P.encode_run_window(n, bits, v_signed, window.advanced(start)), tag=start)
        want = explicit.raw(Cmd.RUN, P.encode_run(bits, v_signed, vectors[start:start + n]), tag=start)
        assert got == want
        (frame,) = P.FrameDecoder(backtrack=True).feed(got)
        products = values(vectors[start:start + n], bits, v_signed) @ values(matrix, m_bits, m_signed).T
        np.testing.assert_array_equal(
            P.decode_accumulators(frame.payload, n, 5, P.accumulator_width(cols, m_bits, bits)), products)


@pytest.mark.parametrize("order", [PATCH, SHIFT], ids=["patch", "shift"])
@pytest.mark.parametrize("shape, kernel, stride, pad", CASES[:4], ids=str)
def test_windowed_activated_run_and_accumulate_are_those_of_their_vectors(shape, kernel, stride, pad, order):
    rng = np.random.default_rng([order, kernel, stride, pad])
    bits = 2
    fmap = rng.integers(0, 1 << bits, shape)
    window, cols, count, (channel, first) = window_case(rng, shape, kernel, stride, pad, order)
    vectors = explicit_vectors(fmap, order, kernel, stride, pad, channel, first, count, cols)
    matrix = rng.integers(0, 2, (4, cols))
    thresholds = np.sort(rng.integers(-cols, cols + 1, (4, 3)), axis=1)
    windowed, explicit = Wire(**ROOMY), Wire(**ROOMY)
    windowed.load_fmap(fmap, bits)
    for wire in (windowed, explicit):
        wire.load(matrix, 1, True)
        wire.ok(Cmd.LOAD_THRESHOLDS, P.encode_load_thresholds(0, 2, thresholds, [1, -1, 1, 1]))
    assert (windowed.raw(Cmd.RUN, P.encode_run_window(count, bits, False, window, activate=True))
            == explicit.raw(Cmd.RUN, P.encode_run(bits, False, vectors, activate=True)))
    for b, (mantissa, shift) in enumerate(((0xABCDEF, 30), (3, 0), ((1 << 24) - 1, 255))):
        got = windowed.raw(Cmd.ACCUMULATE, P.encode_accumulate_window(count, bits, False, window, slot=7,
                                                                        mantissa=mantissa, shift=shift,
                                                                        first=b == 0))
        want = explicit.raw(Cmd.ACCUMULATE, P.encode_accumulate(bits, False, vectors, slot=7, mantissa=mantissa,
                                                                 shift=shift, first=b == 0))
        assert got == want
    assert windowed.core.sums == explicit.core.sums and any(windowed.core.sums)


# Every check, in order: the status and detail each of bad_window_requests' requests must get
# on a core with a feature map (WINDOWS: max_bits 8, thresholds, sums).
OK = (Status.OK, None)
EXPECTED = {
    "RESET (ok)": OK,
    "LOAD_FMAP too short": (Status.BAD_LENGTH, Detail.NONE),
    "LOAD_FMAP bits 0": (Status.BAD_PARAMS, Detail.BITS),
    "LOAD_FMAP bits > max": (Status.BAD_PARAMS, Detail.BITS),
    "LOAD_FMAP channels 0": (Status.BAD_PARAMS, Detail.SHAPE),
    "LOAD_FMAP height 0": (Status.BAD_PARAMS, Detail.SHAPE),
    "LOAD_FMAP width 0": (Status.BAD_PARAMS, Detail.SHAPE),
    "LOAD_FMAP one code more than the core holds": (Status.BAD_PARAMS, Detail.SHAPE),
    "LOAD_FMAP 0xFFFF x 255 x 255": (Status.BAD_PARAMS, Detail.SHAPE),
    "LOAD_FMAP count 0": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_FMAP count past the end": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_FMAP offset past the end": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_FMAP huge offset": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_FMAP LEN one short": (Status.BAD_LENGTH, Detail.NONE),
    "LOAD_FMAP LEN one long": (Status.BAD_LENGTH, Detail.NONE),
    "LOAD_FMAP offset > 0 with no map": (Status.BAD_STATE, Detail.SEQUENCE),
    "LOAD_FMAP bits 0 and channels 0": (Status.BAD_PARAMS, Detail.BITS),
    "LOAD_FMAP channels 0 and count 0": (Status.BAD_PARAMS, Detail.SHAPE),
    "LOAD_FMAP count 0 and LEN one long": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_FMAP offset > 0 with no map, LEN one long": (Status.BAD_LENGTH, Detail.NONE),
    "RUN window too short": (Status.BAD_LENGTH, Detail.NONE),
    "RUN window without matrix": (Status.BAD_STATE, Detail.NO_MATRIX),
    "ACCUMULATE window too short": (Status.BAD_LENGTH, Detail.NONE),
    "ACCUMULATE window without matrix": (Status.BAD_STATE, Detail.NO_MATRIX),
    "LOAD 2 x 9 signed (ok)": OK,
    "LOAD_MATRIX window before any map": (Status.BAD_STATE, Detail.NO_FMAP),
    "RUN window before any map": (Status.BAD_STATE, Detail.NO_FMAP),
    "RUN window LEN one short before any map": (Status.BAD_LENGTH, Detail.NONE),
    "ACCUMULATE window before any map": (Status.BAD_STATE, Detail.NO_FMAP),
    "LOAD_FMAP the largest map's first code (ok)": OK,
    "RUN window on a partial largest map": (Status.BAD_STATE, Detail.NO_FMAP),
    "LOAD_FMAP first 10 codes (ok)": OK,
    "LOAD_FMAP continue with other channels": (Status.BAD_STATE, Detail.SEQUENCE),
    "LOAD_FMAP continue with other height": (Status.BAD_STATE, Detail.SEQUENCE),
    "LOAD_FMAP continue with other width": (Status.BAD_STATE, Detail.SEQUENCE),
    "LOAD_FMAP continue with other bits": (Status.BAD_STATE, Detail.SEQUENCE),
    "LOAD_FMAP continue at the wrong offset": (Status.BAD_STATE, Detail.SEQUENCE),
    "LOAD_FMAP continue at the wrong offset+": (Status.BAD_STATE, Detail.SEQUENCE),
    "RUN window on a partial map": (Status.BAD_STATE, Detail.NO_FMAP),
    "LOAD_MATRIX window on a partial map": (Status.BAD_STATE, Detail.NO_FMAP),
    "RUN window, other bits and kernel 0, on a partial map": (Status.BAD_STATE, Detail.NO_FMAP),
    "ACCUMULATE window on a partial map": (Status.BAD_STATE, Detail.NO_FMAP),
    "LOAD_FMAP complete the map (ok)": OK,
    "LOAD_FMAP continue a complete map": (Status.BAD_PARAMS, Detail.COUNT),
    "RUN window bits 0": (Status.BAD_PARAMS, Detail.BITS),
    "RUN window bits > max": (Status.BAD_PARAMS, Detail.BITS),
    "RUN window flags 0x28": (Status.BAD_PARAMS, Detail.FLAGS),
    "RUN window|first": (Status.BAD_PARAMS, Detail.FLAGS),
    "RUN window|activate without thresholds": (Status.BAD_STATE, Detail.NO_THRESHOLDS),
    "RUN window count 0": (Status.BAD_PARAMS, Detail.COUNT),
    "RUN window reply too big": (Status.BAD_PARAMS, Detail.REPLY_TOO_BIG),
    "RUN window count 0xFFFF": (Status.BAD_PARAMS, Detail.REPLY_TOO_BIG),
    "RUN window LEN one short": (Status.BAD_LENGTH, Detail.NONE),
    "RUN window LEN one long": (Status.BAD_LENGTH, Detail.NONE),
    "RUN window with codes, not a window": (Status.BAD_LENGTH, Detail.NONE),
    "RUN window bits other than the map's": (Status.BAD_PARAMS, Detail.BITS),
    "RUN window bits other than the map's and kernel 0": (Status.BAD_PARAMS, Detail.BITS),
    "RUN window kernel 0": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window kernel 17": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window stride 0": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window stride 5": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window pad = kernel": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window order 2": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window out_width 0": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window channel past the map's": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window PATCH x = out_width": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window SHIFT y = kernel": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window SHIFT x = kernel": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window PATCH (ok)": OK,
    "RUN window PATCH signed, y past the output (ok)": OK,
    "RUN window SHIFT (ok)": OK,
    "RUN window SHIFT from channel 1, tap (1, 2), stride 2 (ok)": OK,
    "RUN window the biggest (ok)": OK,
    "RUN with codes still (ok)": OK,
    "LOAD_MATRIX window flags 0x28": (Status.BAD_PARAMS, Detail.FLAGS),
    "LOAD_MATRIX window|activate": (Status.BAD_PARAMS, Detail.FLAGS),
    "LOAD_MATRIX window rows 0": (Status.BAD_PARAMS, Detail.ROWS),
    "LOAD_MATRIX window cols 0": (Status.BAD_PARAMS, Detail.COLS),
    "LOAD_MATRIX window count 0": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_MATRIX window count one short": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_MATRIX window offset 1": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_MATRIX window LEN one short": (Status.BAD_LENGTH, Detail.NONE),
    "LOAD_MATRIX window LEN one long": (Status.BAD_LENGTH, Detail.NONE),
    "LOAD_MATRIX window with codes, not a window": (Status.BAD_LENGTH, Detail.NONE),
    "LOAD_MATRIX window bits other than the map's": (Status.BAD_PARAMS, Detail.BITS),
    "LOAD_MATRIX window kernel 0": (Status.BAD_PARAMS, Detail.WINDOW),
    "LOAD_MATRIX window channel past the map's": (Status.BAD_PARAMS, Detail.WINDOW),
    "LOAD_MATRIX window SHIFT y = kernel": (Status.BAD_PARAMS, Detail.WINDOW),
    "LOAD_MATRIX window pool 2": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN with codes: refused loads left the matrix (ok)": OK,
    "LOAD_MATRIX window PATCH, signed (ok)": OK,
    "RUN with codes on it (ok)": OK,
    "LOAD_MATRIX continue a windowed matrix": (Status.BAD_PARAMS, Detail.COUNT),
    "LOAD_MATRIX window SHIFT from channel 1, tap (1, 2), stride 2 (ok)": OK,
    "RUN window on the map's own matrix (ok)": OK,
    "LOAD_MATRIX window 1 x 1 SHIFT: the map's channels as rows (ok)": OK,
    "LOAD 2 x 9 signed again (ok)": OK,
    "THRESHOLDS (ok)": OK,
    "RUN window|activate (ok)": OK,
    "RUN window|activate reply too big": (Status.BAD_PARAMS, Detail.REPLY_TOO_BIG),
    "RUN window|activate, kernel 0": (Status.BAD_PARAMS, Detail.WINDOW),
    # pooling: every rule of the window's pool a bad window
    "RUN window|activate pool 0": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 3": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool past the core's": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 2, SHIFT": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 2, out_width 3": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 2, x 1": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 2, y 1": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 2, count 3": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window pool 2, not activated": (Status.BAD_PARAMS, Detail.WINDOW),
    "RUN window|activate pool 2 (ok)": OK,
    "RUN window|activate pool 2, two bands, past the output (ok)": OK,
    "RUN window|activate pool 4, past the output (ok)": OK,
    "ACCUMULATE window bits 0": (Status.BAD_PARAMS, Detail.BITS),
    "ACCUMULATE window bits > max": (Status.BAD_PARAMS, Detail.BITS),
    "ACCUMULATE window|activate": (Status.BAD_PARAMS, Detail.FLAGS),
    "ACCUMULATE window mantissa 2**24": (Status.BAD_PARAMS, Detail.SCALE),
    "ACCUMULATE window count 0": (Status.BAD_PARAMS, Detail.COUNT),
    "ACCUMULATE window sums past the last": (Status.BAD_PARAMS, Detail.COUNT),
    "ACCUMULATE window count 0xFFFF": (Status.BAD_PARAMS, Detail.COUNT),
    "ACCUMULATE window LEN one short": (Status.BAD_LENGTH, Detail.NONE),
    "ACCUMULATE window LEN one long": (Status.BAD_LENGTH, Detail.NONE),
    "ACCUMULATE window bits other than the map's": (Status.BAD_PARAMS, Detail.BITS),
    "ACCUMULATE window kernel 0": (Status.BAD_PARAMS, Detail.WINDOW),
    "ACCUMULATE window SHIFT y = kernel": (Status.BAD_PARAMS, Detail.WINDOW),
    "ACCUMULATE window pool 2": (Status.BAD_PARAMS, Detail.WINDOW),
    "ACCUMULATE window SHIFT, first (ok)": OK,
    "ACCUMULATE window PATCH, added (ok)": OK,
    "READ_SUMS (ok)": OK,
    "LOAD the matrix again (ok)": OK,
    "RUN window after a new matrix: the map stays (ok)": OK,
    "LOAD_FMAP a new map's first codes (ok)": OK,
    "RUN window on the new partial map": (Status.BAD_STATE, Detail.NO_FMAP),
    "LOAD_FMAP complete it (ok)": OK,
    "RESET (ok) again": OK,
    "LOAD after RESET (ok)": OK,
    "RUN window after RESET": (Status.BAD_STATE, Detail.NO_FMAP),
    "LOAD_FMAP continue after RESET": (Status.BAD_STATE, Detail.SEQUENCE),
}


def state(core):
    return (core.matrix if core.matrix is None else core.matrix.tolist(),
            core.fmap if core.fmap is None else core.fmap.tolist(), core.sums, core._f_loaded, core._loaded,
            core._t_loaded)


def test_every_window_error_in_check_order_and_without_effect():
    requests = bad_window_requests(WINDOWS)
    assert [name for name, _ in requests] == list(EXPECTED)
    core = CoreModel(**WINDOWS)
    for name, data in requests:
        before = state(core)
        (reply,) = P.FrameDecoder(backtrack=True).feed(core.feed(data))
        status, detail = EXPECTED[name]
        assert reply.code == status, (name, Status(reply.code), reply.payload)
        if status != Status.OK:
            assert reply.payload == bytes([data[1], detail]), name
            assert state(core) == before, name  # an error has no effect


def test_without_a_feature_map_load_fmap_is_unknown_and_the_window_flag_bad():
    params = dict(WINDOWS, fmap_codes=0, max_pool=1)
    core = CoreModel(**params)
    for name, data in bad_window_requests(params):
        (reply,) = P.FrameDecoder(backtrack=True).feed(core.feed(data))
        if data[1] == Cmd.LOAD_FMAP:
            assert (reply.code, reply.payload) == (Status.BAD_COMMAND, bytes([Cmd.LOAD_FMAP, 0])), name
        elif name in ("RUN window before any map", "ACCUMULATE window before any map", "RUN window PATCH (ok)",
                      "RUN window|activate (ok)", "ACCUMULATE window SHIFT, first (ok)",
                      "LOAD_MATRIX window before any map", "LOAD_MATRIX window PATCH, signed (ok)"):
            assert (reply.code, reply.payload) == (Status.BAD_PARAMS, bytes([data[1], Detail.FLAGS])), name


def test_window_script_and_fuzz_are_answered_by_the_model():
    rng = np.random.default_rng(3)
    script = window_script(rng, params=WINDOWS)
    commands = {step[1] for step in script}
    assert {Cmd.LOAD_FMAP, Cmd.RUN, Cmd.ACCUMULATE, Cmd.LOAD_THRESHOLDS, Cmd.READ_SUMS} <= commands
    windows = [P.decode_run_header(step[5:-2]).window for step in script if step[1] == Cmd.RUN]
    windows = [w for w in windows if w is not None]  # (RUNs with codes against matrices made from maps)
    made = [P.decode_load_matrix_header(step[5:-2]).window for step in script if step[1] == Cmd.LOAD_MATRIX]
    assert {(w.order, w.kernel) for w in made if w is not None} >= {(SHIFT, 1), (SHIFT, 3), (SHIFT, 2)}
    assert {w.order for w in windows} == {PATCH, SHIFT} and {w.stride for w in windows} >= {1, 2, 3, 4}
    assert {w.pad for w in windows} >= {0, 1, 2, 3} and any(w.channel for w in windows)
    (replies,) = expected_replies(script, WINDOWS, timeout=100)
    frames = P.FrameDecoder(backtrack=True).feed(replies)
    assert len(frames) == len(script) and all(f.code == Status.OK for f in frames)
    fuzz = fuzz_script(7, 400, WINDOWS, timeout=100)
    assert any(isinstance(step, bytes) and step[1:2] == bytes([Cmd.LOAD_FMAP]) for step in fuzz)
    expected_replies(fuzz, WINDOWS, timeout=100)


# --------------------------------------------------------------------------- driver

def client(**limits):
    return CoreClient(LoopbackTransport(CoreModel(**limits)))


@pytest.mark.parametrize("activate", [False, True], ids=["accumulators", "activated"])
@pytest.mark.parametrize("order", [PATCH, SHIFT], ids=["patch", "shift"])
@pytest.mark.parametrize("shape, kernel, stride, pad", CASES[:3], ids=str)
def test_client_split_windows_equal_one_request(shape, kernel, stride, pad, order, activate):
    rng = np.random.default_rng([kernel, stride, pad, order, activate])
    bits = 3
    fmap = rng.integers(0, 1 << bits, shape)
    window, cols, count, (channel, first) = window_case(rng, shape, kernel, stride, pad, order)
    matrix = rng.integers(0, 4, (6, cols))
    thresholds = np.sort(rng.integers(-100, 100, (6, 3)), axis=1)
    results = []
    tiny = dict(TINY, max_bits=4, max_cols=max(cols, TINY["max_cols"]))
    for limits in (ROOMY, tiny):
        c = client(**limits)
        c.load_fmap(fmap, bits)
        c.load_matrix(matrix, 2, False)
        if activate:
            c.load_thresholds(thresholds, np.ones(6, dtype=np.int64), 2)
        before = c.stats["requests"]
        results.append(c.run_window(count, bits, True, window, activate=activate))
        results.append(c.stats["requests"] - before)
    (roomy, roomy_requests, tiny, tiny_requests) = results
    np.testing.assert_array_equal(tiny, roomy)
    # as many requests as the tiny core's replies need: 6 rows of 2-bit codes, or of accumulators
    per_request = (64 * 8 // (6 * 2) if activate else (64 - 1) // (6 * P.accumulator_width(cols, 2, bits)))
    assert roomy_requests == 1 and tiny_requests == -(-count // per_request)
    vectors = explicit_vectors(fmap, order, kernel, stride, pad, channel, first, count, cols)
    acc = values(vectors, bits, True) @ matrix.T
    want = (acc[:, :, None] >= thresholds[None]).sum(axis=2) if activate else acc
    np.testing.assert_array_equal(roomy, want)


@pytest.mark.parametrize("pool", [2, 4])
def test_client_pooled_windows_split_between_pooling_windows(pool):
    """A pooled window's RUNs split only between whole pooling windows (the tiny core's 64-byte
    replies take 42 vectors of 6 rows of 2-bit codes: 40 or 32 of them go a request), and the
    pooled codes are the unpooled ones max-pooled (``sw.intref.maxpool_codes``); the client
    refuses what the core would (not activated, not whole windows, a pool past the core's)."""
    from sw.intref import maxpool_codes

    rng = np.random.default_rng(pool)
    fmap = rng.integers(0, 8, (2, 8, 8))
    matrix = rng.integers(0, 4, (6, 18))
    thresholds = np.sort(rng.integers(-40, 40, (6, 3)), axis=1)
    out = 8 // pool * pool
    count = out * out
    pooled, plain = Window(3, 1, 1, PATCH, out, pool=pool), Window(3, 1, 1, PATCH, 8)
    results = {}
    for name, limits in (("tiny", dict(TINY, max_pool=4)), ("roomy", dict(ROOMY, max_pool=4))):
        c = client(**limits)
        c.load_fmap(fmap, 3)
        c.load_matrix(matrix, 2, False)
        c.load_thresholds(thresholds, np.ones(6, dtype=np.int64), 2)
        before = c.stats["requests"]
        results[name] = c.run_window(count, 3, False, pooled, activate=True)
        per = 64 * 8 // (6 * 2) // (pool * pool) * pool * pool
        assert c.stats["requests"] - before == (-(-count // per) if name == "tiny" else 1)
        codes = c.run_window(64, 3, False, plain, activate=True)  # (64, 6): every position
        want = maxpool_codes(codes.T.reshape(1, 6, 8, 8), pool)[0].reshape(6, -1).T
        np.testing.assert_array_equal(results[name], want)
    with pytest.raises(ValueError, match="only an activated RUN's codes are pooled"):
        c.run_window(count, 3, False, pooled)  # (the roomy core: its accumulator replies fit a window)
    with pytest.raises(ValueError, match="not whole"):
        c.run_window(pool * pool + 1, 3, False, pooled, activate=True)
    with pytest.raises(ValueError, match=r"pool \d not in \(1, 2\)"):
        c = client(**dict(ROOMY, max_pool=2))
        c.load_fmap(fmap, 3)
        c.load_matrix(matrix, 2, False)
        c.load_thresholds(thresholds, np.ones(6, dtype=np.int64), 2)
        c.run_window(16, 3, False, Window(3, 1, 1, PATCH, 8, pool=4), activate=True)


def test_client_load_fmap_frames_and_accumulate_window():
    rng = np.random.default_rng(11)
    fmap = rng.integers(0, 256, (3, 10, 10))  # 300 8-bit codes: 55 a frame in a 64-byte payload
    c = client(**dict(TINY, sum_slots=64))
    assert c.info.fmap_codes == 600  # PING first
    before = c.stats["requests"]
    c.load_fmap(fmap, 8)
    assert c.stats["requests"] - before == 6  # ceil(300 / 55)
    np.testing.assert_array_equal(c.transport.core.fmap, fmap)
    window = Window(3, 2, 1, SHIFT, 5, 0, 1, 1)  # 5 x 5 output positions
    gradients = rng.integers(0, 2, (2, 25))
    c.load_matrix(gradients, 1, True)
    c.accumulate_window(26, 8, False, window, slot=3, mantissa=12345, shift=20, first=True)
    vectors = explicit_vectors(fmap, SHIFT, 3, 2, 1, 0, 4, 26, 25)  # 23 taps, then 3 past the last channel
    reference = Wire(**dict(TINY, sum_slots=64))
    reference.load(gradients, 1, True)
    for start in range(26):  # the vectors as codes, one a request
        reference.ok(Cmd.ACCUMULATE, P.encode_accumulate(8, False, vectors[start:start + 1], slot=3 + 2 * start,
                                                         mantissa=12345, shift=20, first=True))
    assert c.transport.core.sums == reference.core.sums and any(reference.core.sums)
    assert c.read_sums(3, 52, 12) == reference.core.sums[3:55]


def test_client_window_arguments_are_checked_before_sending():
    c = client(**TINY)
    assert c.fmap_codes == 600
    assert c.can_window(2, 10, 30, 8) and not c.can_window(2, 10, 31, 8) and not c.can_window(1, 1, 1, 9)
    assert not c.can_window(1, 300, 1, 2)  # a side past 255
    assert c.can_window(1, 5, 5, 2, Window(3, 1, 1, PATCH, 5))
    assert not c.can_window(1, 5, 5, 2, Window(3, 1, 3, PATCH, 5))
    requests = c.stats["requests"]
    with pytest.raises(ValueError, match="exceeds the core's 600"):
        c.load_fmap(np.zeros((2, 10, 31), dtype=int), 2)
    with pytest.raises(ValueError, match="sides must be at most 255"):
        c.load_fmap(np.zeros((1, 300, 1), dtype=int), 2)
    with pytest.raises(ValueError, match=r"must be in \[0, 3\] for 2 bits"):
        c.load_fmap(np.full((1, 2, 2), 4), 2)
    with pytest.raises(ValueError, match="3 dimensions"):
        c.load_fmap(np.zeros((2, 2), dtype=int), 2)
    with pytest.raises(ValueError, match="no matrix loaded"):
        c.run_window(1, 2, False, Window(3, 1, 1, PATCH, 5))
    assert c.stats["requests"] == requests
    c.load_matrix(np.ones((2, 9), dtype=int), 1, False)
    with pytest.raises(ValueError, match="no feature map loaded"):
        c.run_window(1, 2, False, Window(3, 1, 1, PATCH, 5))
    c.load_fmap(np.ones((2, 5, 5), dtype=int), 2)
    requests = c.stats["requests"]
    with pytest.raises(ValueError, match=r"the feature map's bits \(2\), got 3"):
        c.run_window(1, 3, False, Window(3, 1, 1, PATCH, 5))
    with pytest.raises(ValueError, match="pad 3 not in 0..kernel - 1"):
        c.run_window(1, 2, False, Window(3, 1, 3, PATCH, 5))
    # 18 taps of 2 channels from tap 10, 31 vectors a request (2 rows of 1-byte accumulators):
    # the second request's window would start at tap 41, channel 4, past the map's
    with pytest.raises(ValueError, match="channel 4 not below the map's 2"):
        c.run_window(40, 2, False, Window(3, 1, 1, SHIFT, 5, 1, 0, 1))
    with pytest.raises(ValueError, match="sums 60 .. 65 are not among the core's 0 .. 63"):
        c.accumulate_window(3, 2, False, Window(3, 1, 1, PATCH, 5), slot=60, mantissa=1, shift=0, first=True)
    with pytest.raises(ValueError, match="no thresholds loaded"):
        c.run_window(1, 2, False, Window(3, 1, 1, PATCH, 5), activate=True)
    assert c.stats["requests"] == requests
    np.testing.assert_array_equal(c.run_window(2, 2, False, Window(1, 1, 0, PATCH, 5)), [[2, 2], [2, 2]])
    c.load_matrix(np.ones((1, 4), dtype=int), 1, False)  # a new matrix keeps the map
    assert c.run_window(1, 2, False, Window(2, 1, 0, PATCH, 4)).tolist() == [[4]]
    c.reset()
    with pytest.raises(ValueError, match="no matrix loaded"):
        c.run_window(1, 2, False, Window(1, 1, 0, PATCH, 5))
    c.load_matrix(np.ones((1, 4), dtype=int), 1, False)
    with pytest.raises(ValueError, match="no feature map loaded"):
        c.run_window(1, 2, False, Window(1, 1, 0, PATCH, 5))
    bare = client(**dict(TINY, fmap_codes=0))
    assert bare.fmap_codes == 0 and not bare.can_window(1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"holds no feature map \(PING reports fmap_codes = 0\)"):
        bare.load_fmap(np.zeros((1, 2, 2), dtype=int), 1)


def test_core_config_and_model_take_fmap_codes():
    assert CoreModel(**TINY).info.fmap_codes == 600
    with pytest.raises(ValueError, match="fmap_codes 65536 not in 0..65535"):
        CoreModel(**dict(TINY, fmap_codes=1 << 16))
    assert CoreConfig(**TINY).info().fmap_codes == 600
    assert window_vectors(np.arange(1, 5).reshape(1, 2, 2), Window(2, 1, 1, PATCH, 3), 1, 4).tolist() == \
        [[0, 0, 0, 1]]


def test_client_matrix_from_the_map():
    """``load_matrix_window``: the matrix is the window's first ``rows`` vectors (a gradient map's
    channels as rows, then runs against it), one request; refused before sending where the core
    would refuse it."""
    c = client(**TINY)
    rng = np.random.default_rng(11)
    fmap = rng.integers(0, 8, (3, 4, 5))
    with pytest.raises(ValueError, match="no feature map loaded"):
        c.load_matrix_window(3, 20, 3, True, Window(1, 1, 0, SHIFT, 5))
    c.load_fmap(fmap, 3)
    requests = c.stats["requests"]
    with pytest.raises(ValueError, match=r"has its bits \(3\), got 2"):
        c.load_matrix_window(3, 20, 2, True, Window(1, 1, 0, SHIFT, 5))
    with pytest.raises(ValueError, match="matrix 9x20 exceeds the core's 8x48"):
        c.load_matrix_window(9, 20, 3, True, Window(1, 1, 0, SHIFT, 5))
    with pytest.raises(ValueError, match="channel 3 not below the map's 3"):
        c.load_matrix_window(1, 20, 3, True, Window(1, 1, 0, SHIFT, 5, 3))
    with pytest.raises(ValueError, match="only an activated RUN's codes are pooled"):
        c.load_matrix_window(4, 4, 3, True, Window(2, 1, 0, PATCH, 4, pool=2))
    assert c.stats["requests"] == requests
    c.load_matrix_window(3, 20, 3, True, Window(1, 1, 0, SHIFT, 5))
    assert c.stats["requests"] == requests + 1
    np.testing.assert_array_equal(c.transport.core.matrix, fmap.reshape(3, 20))
    vectors = rng.integers(0, 4, (2, 20))
    np.testing.assert_array_equal(c.run(vectors, 2, False), vectors @ (2 * fmap.reshape(3, 20) - 7).T)
