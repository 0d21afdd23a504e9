"""sw.bitplanes: the AND + popcount dot product (paper Eqn 3) against plain integer arithmetic.

Requirement: the popcount dot product equals a plain integer dot product for
random codes over the whole (W, A, G) grid.  Each training product depends on
two of the three bitwidths, so the 8 x 8 grid of (x_bits, y_bits) with every
signedness combination covers all three products at every (W, A, G):

* forward:          weight (signed odd)   x activation (unsigned)
* backward-input:   gradient (signed odd) x weight (signed odd)
* backward-weight:  gradient (signed odd) x activation (unsigned)
"""

from __future__ import annotations

import numpy as np
import pytest

from sw.bitplanes import WORD_BITS, bit_planes, code_bits, pack_planes, plane_matmul, popcount, signed_matmul

BITS = list(range(1, 9))
SIGNEDNESS = {
    "unsigned-unsigned": (False, False),
    "signed-unsigned": (True, False),    # weight x activation (forward), gradient x activation (bwd-weight)
    "unsigned-signed": (False, True),    # activation x weight
    "signed-signed": (True, True),       # gradient x weight (backward-input)
}


def random_codes(rng, shape, bits):
    """Random codes in [0, 2**bits - 1], with an all-max row and an all-zero row to hit every carry."""
    codes = rng.integers(0, 2**bits, size=shape, dtype=np.int64)
    codes[0] = 2**bits - 1
    if shape[0] > 1:
        codes[1] = 0
    return codes


def reference_product(x, x_levels, y, y_levels):
    """Plain int64 numpy matmul of the integers the operands stand for."""
    xi = 2 * x - x_levels if x_levels is not None else x
    yi = 2 * y - y_levels if y_levels is not None else y
    return xi.astype(np.int64) @ yi.astype(np.int64).T


def serial_dot(a, b):
    return sum(int(p) * int(q) for p, q in zip(a, b))


# --------------------------------------------------------------------------- the (W, A, G) grid

@pytest.mark.parametrize("y_bits", BITS)
@pytest.mark.parametrize("x_bits", BITS)
@pytest.mark.parametrize("signedness", list(SIGNEDNESS), ids=list(SIGNEDNESS))
def test_signed_matmul_grid(signedness, x_bits, y_bits):
    x_signed, y_signed = SIGNEDNESS[signedness]
    rng = np.random.default_rng(1000 * x_bits + 10 * y_bits + x_signed + 2 * y_signed)
    k = 137  # not a multiple of 64, more than two words
    x = random_codes(rng, (6, k), x_bits)
    y = random_codes(rng, (5, k), y_bits)
    x_levels = 2**x_bits - 1 if x_signed else None
    y_levels = 2**y_bits - 1 if y_signed else None
    got = signed_matmul(x, x_levels, x_bits, y, y_levels, y_bits)
    assert got.dtype == np.int64
    assert got.shape == (6, 5)
    assert np.array_equal(got, reference_product(x, x_levels, y, y_levels))


@pytest.mark.parametrize("y_bits", BITS)
@pytest.mark.parametrize("x_bits", BITS)
def test_plane_matmul_grid(x_bits, y_bits):
    rng = np.random.default_rng(x_bits * 31 + y_bits)
    k = 100
    x = random_codes(rng, (7, k), x_bits)
    y = random_codes(rng, (4, k), y_bits)
    got = plane_matmul(x, x_bits, y, y_bits)
    assert got.dtype == np.int64
    assert np.array_equal(got, x @ y.T)
    # the all-max rows: sum over K of (2**x_bits - 1) * y
    assert got[0].tolist() == [(2**x_bits - 1) * int(row.sum()) for row in y]
    assert got[1].tolist() == [0] * 4


@pytest.mark.parametrize("k", [1, 63, 64, 65, 127, 128, 129, 1000])
@pytest.mark.parametrize("x_bits, y_bits", [(1, 1), (8, 8), (2, 6), (5, 3)])
def test_plane_matmul_lengths(k, x_bits, y_bits):
    rng = np.random.default_rng(k + 7 * x_bits + y_bits)
    x = random_codes(rng, (3, k), x_bits)
    y = random_codes(rng, (4, k), y_bits)
    got = plane_matmul(x, x_bits, y, y_bits)
    expected = [[serial_dot(a, b) for b in y] for a in x]
    assert got.tolist() == expected


@pytest.mark.parametrize("name, x_bits, y_bits, x_signed, y_signed", [
    # the three products at a few (W, A, G), named as the hardware sees them
    ("forward W1 A2", 1, 2, True, False),
    ("forward W8 A8", 8, 8, True, False),
    ("bwd-input G6 W1", 6, 1, True, True),
    ("bwd-input G8 W8", 8, 8, True, True),
    ("bwd-weight G4 A3", 4, 3, True, False),
    ("bwd-weight G8 A1", 8, 1, True, False),
])
def test_training_products_serial(name, x_bits, y_bits, x_signed, y_signed):
    """A Python-int serial loop: sum over k of (2q - n_x)(2c - n_y) etc."""
    rng = np.random.default_rng(sum(map(ord, name)))
    k = 70
    x = random_codes(rng, (3, k), x_bits)
    y = random_codes(rng, (3, k), y_bits)
    nx, ny = 2**x_bits - 1, 2**y_bits - 1
    got = signed_matmul(x, nx if x_signed else None, x_bits, y, ny if y_signed else None, y_bits)
    for i in range(3):
        for j in range(3):
            total = 0
            for t in range(k):
                a = 2 * int(x[i, t]) - nx if x_signed else int(x[i, t])
                b = 2 * int(y[j, t]) - ny if y_signed else int(y[j, t])
                total += a * b
            assert int(got[i, j]) == total


def test_signed_matmul_one_bit_is_sign_dot():
    # 1-bit signed odd codes are +-1: the product is the +-1 dot product
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, (4, 200))
    y = rng.integers(0, 2, (3, 200))
    got = signed_matmul(x, 1, 1, y, 1, 1)
    sx, sy = np.where(x == 1, 1, -1), np.where(y == 1, 1, -1)
    assert np.array_equal(got, sx @ sy.T)
    assert np.all(np.abs(got) <= 200) and np.all(got % 2 == 0)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4096])
def test_plane_matmul_chunking(chunk):
    rng = np.random.default_rng(chunk)
    x = random_codes(rng, (7, 90), 3)
    y = random_codes(rng, (5, 90), 4)
    assert np.array_equal(plane_matmul(x, 3, y, 4, chunk=chunk), x @ y.T)


def test_plane_matmul_empty_rows():
    x = np.zeros((0, 70), dtype=np.int64)
    y = np.ones((3, 70), dtype=np.int64)
    assert plane_matmul(x, 2, y, 2).shape == (0, 3)


@pytest.mark.slow
@pytest.mark.parametrize("y_bits", BITS)
@pytest.mark.parametrize("x_bits", BITS)
@pytest.mark.parametrize("signedness", list(SIGNEDNESS), ids=list(SIGNEDNESS))
def test_signed_matmul_grid_large(signedness, x_bits, y_bits):
    x_signed, y_signed = SIGNEDNESS[signedness]
    rng = np.random.default_rng(7 * x_bits + y_bits)
    x = random_codes(rng, (33, 4099), x_bits)
    y = random_codes(rng, (17, 4099), y_bits)
    x_levels = 2**x_bits - 1 if x_signed else None
    y_levels = 2**y_bits - 1 if y_signed else None
    got = signed_matmul(x, x_levels, x_bits, y, y_levels, y_bits)
    assert np.array_equal(got, reference_product(x, x_levels, y, y_levels))


# --------------------------------------------------------------------------- planes and packing

@pytest.mark.parametrize("bits", BITS)
def test_bit_planes(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2**bits, size=(3, 5, 7))
    planes = bit_planes(codes, bits)
    assert planes.shape == (bits, 3, 5, 7)
    assert planes.dtype == np.uint8
    for index in np.ndindex(codes.shape):
        value = int(codes[index])
        assert [int(planes[(b,) + index]) for b in range(bits)] == [(value >> b) & 1 for b in range(bits)]
    # round trip
    rebuilt = sum(planes[b].astype(np.int64) << b for b in range(bits))
    assert np.array_equal(rebuilt, codes)


@pytest.mark.parametrize("length", [1, 7, 63, 64, 65, 128, 130, 200])
def test_pack_planes_layout(length):
    rng = np.random.default_rng(length)
    planes = rng.integers(0, 2, size=(2, 3, length), dtype=np.uint8)
    packed = pack_planes(planes)
    words = -(-length // 64)
    assert packed.dtype == np.uint64
    assert packed.shape == (2, 3, words)
    for index in np.ndindex(planes.shape[:-1]):
        bits = [int(b) for b in planes[index]]
        # little-endian: element i is bit (i mod 64) of word i // 64; padding bits are 0
        expected = [sum(bits[64 * w + i] << i for i in range(64) if 64 * w + i < length) for w in range(words)]
        assert [int(v) for v in packed[index]] == expected
    # round trip through Python ints
    unpacked = [[(int(packed[index][i // 64]) >> (i % 64)) & 1 for i in range(length)]
                for index in np.ndindex(planes.shape[:-1])]
    assert np.array_equal(np.array(unpacked, dtype=np.uint8).reshape(planes.shape), planes)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_codes_planes_pack_round_trip(bits):
    rng = np.random.default_rng(40 + bits)
    codes = rng.integers(0, 2**bits, size=(4, 150))
    packed = pack_planes(bit_planes(codes, bits))
    rebuilt = np.zeros_like(codes)
    for b in range(bits):
        for r in range(codes.shape[0]):
            for i in range(codes.shape[1]):
                rebuilt[r, i] |= ((int(packed[b, r, i // 64]) >> (i % 64)) & 1) << b
    assert np.array_equal(rebuilt, codes)


def test_pack_planes_top_bit():
    planes = np.zeros(64, dtype=np.uint8)
    planes[63] = 1
    assert int(pack_planes(planes)[0]) == 2**63
    assert int(pack_planes(np.ones(64, dtype=np.uint8))[0]) == 2**64 - 1


@pytest.mark.parametrize("max_code, bits", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (255, 8), (256, 9)])
def test_code_bits(max_code, bits):
    assert code_bits(max_code) == bits


# --------------------------------------------------------------------------- popcount

def test_popcount_uint64_extremes():
    values = [0, 1, 2, 3, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1,
              0xAAAA_AAAA_AAAA_AAAA, 0x5555_5555_5555_5555]
    got = popcount(np.array(values, dtype=np.uint64))
    assert got.dtype == np.int64
    assert got.tolist() == [bin(v).count("1") for v in values]
    assert int(popcount(2**64 - 1)) == 64


def test_popcount_random_uint64():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**64, size=2000, dtype=np.uint64, endpoint=False)
    assert popcount(values).tolist() == [bin(int(v)).count("1") for v in values]


def test_popcount_int64_and_shape():
    rng = np.random.default_rng(4)
    values = rng.integers(0, 2**63 - 1, size=(5, 6), dtype=np.int64)
    got = popcount(values)
    assert got.shape == (5, 6)
    assert all(int(got[i]) == bin(int(values[i])).count("1") for i in np.ndindex(values.shape))


def test_popcount_wide_python_ints():
    values = np.array([2**64, 2**100 + 7, 2**200 - 1, 5], dtype=object)
    assert popcount(values).tolist() == [1, 4, 200, 2]


def test_popcount_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        popcount(np.array([3, -1], dtype=np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        popcount([-(2**40)])


def test_popcount_rejects_negative_wide_ints():
    """BUG: the object-dtype path (ints wider than 64 bits) skips the sign check, so
    popcount([2**70, -1]) returns [1, 1] (bin(-1).count('1')) instead of raising like
    the int64 path does."""
    with pytest.raises(ValueError, match="non-negative"):
        popcount(np.array([2**70, -1], dtype=object))


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("bits", [1, 3, 8])
def test_bit_planes_rejects_out_of_range(bits):
    with pytest.raises(ValueError, match=str(2**bits - 1)):
        bit_planes(np.array([0, 2**bits]), bits)
    with pytest.raises(ValueError):
        bit_planes(np.array([[1, -1]]), bits)


def test_plane_matmul_rejects_bad_codes_and_shapes():
    ok = np.ones((2, 70), dtype=np.int64)
    with pytest.raises(ValueError):
        plane_matmul(ok * 4, 2, ok, 2)  # code 4 needs 3 bits
    with pytest.raises(ValueError):
        plane_matmul(ok, 2, -ok, 2)
    with pytest.raises(ValueError):
        plane_matmul(ok, 2, np.ones((2, 71), dtype=np.int64), 2)  # K mismatch
    with pytest.raises(ValueError):
        plane_matmul(np.ones(70, dtype=np.int64), 2, ok, 2)  # not 2-D
    with pytest.raises(ValueError):
        signed_matmul(ok * 2, 1, 1, ok, None, 1)  # code 2 is not a 1-bit code


def test_word_bits():
    assert WORD_BITS == 64
