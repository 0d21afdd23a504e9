"""sw.prng.XorShift32 (block-vectorised by GF(2) jump matrices) against a plain serial xorshift32."""

from __future__ import annotations

import numpy as np
import pytest

from sw.prng import NOISE_BITS, STATE_BITS, XorShift32

MASK32 = 0xFFFF_FFFF
SEEDS = [1, 2, 0x8000_0000, MASK32, 0xDEAD_BEEF, 2463534242]
COUNTS = [0, 1, 2, 255, 256, 257, 511, 512, 513, 1000, 70_001]


def serial_states(seed: int, count: int) -> list[int]:
    """Marsaglia's xorshift32 (13, 17, 5), one Python-int step at a time."""
    s = seed
    out = []
    for _ in range(count):
        s ^= (s << 13) & MASK32
        s ^= s >> 17
        s ^= (s << 5) & MASK32
        out.append(s)
    return out


def serial_draws(seed: int, count: int) -> list[int]:
    return [s >> 16 for s in serial_states(seed, count)]


def test_constants():
    assert STATE_BITS == 32
    assert NOISE_BITS == 16


def test_known_answer_marsaglia():
    # Marsaglia, "Xorshift RNGs" (2003): xor32 from y = 2463534242 first returns 723471715.
    assert serial_states(2463534242, 1) == [723471715]
    gen = XorShift32(2463534242)
    assert gen.states(1).tolist() == [723471715]
    assert gen.state == 723471715


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("seed", [1, 0xDEAD_BEEF, MASK32])
def test_draw_equals_serial(seed, count):
    gen = XorShift32(seed)
    got = gen.draw(count)
    assert got.dtype == np.int64
    assert got.shape == (count,)
    expected_states = serial_states(seed, count)
    assert got.tolist() == [s >> 16 for s in expected_states]
    # the generator's state is the last state stepped to
    assert gen.state == (expected_states[-1] if count else seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_states_equal_serial_across_seeds(seed):
    count = 3000
    got = XorShift32(seed).states(count)
    assert got.dtype == np.uint64
    assert [int(v) for v in got] == serial_states(seed, count)
    assert int(got.max()) <= MASK32
    assert int(got.min()) > 0  # xorshift32 never reaches 0 from a non-zero state


@pytest.mark.parametrize("seed", [1, 0x1234_5678])
def test_draw_range(seed):
    r = XorShift32(seed).draw(5000)
    assert r.min() >= 0 and r.max() < 2**NOISE_BITS
    # 16-bit draws from 5000 steps use both halves of the range
    assert r.min() < 2**12 and r.max() > 2**16 - 2**12


@pytest.mark.parametrize("a, b", [(0, 5), (1, 1), (1, 1000), (255, 2), (256, 256), (257, 300),
                                  (300, 70_001), (1000, 0), (4097, 9000)])
def test_successive_calls_continue_the_stream(a, b):
    seed = 0xC0FF_EE01
    gen = XorShift32(seed)
    first = gen.draw(a)
    second = gen.draw(b)
    expected = serial_draws(seed, a + b)
    assert first.tolist() == expected[:a]
    assert second.tolist() == expected[a:]
    assert np.concatenate([first, second]).tolist() == XorShift32(seed).draw(a + b).tolist()


def test_many_small_calls_continue_the_stream():
    seed = 77
    gen = XorShift32(seed)
    sizes = [3, 0, 250, 1, 256, 7, 600, 1]
    got = np.concatenate([gen.draw(n) for n in sizes])
    assert got.tolist() == serial_draws(seed, sum(sizes))


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 300), (1,), (), (4, 0, 2), (2, 3, 17, 19)])
def test_draw_like_is_row_major(shape):
    seed = 0xABCD_1234
    gen = XorShift32(seed)
    got = gen.draw_like(shape)
    assert got.shape == shape
    count = int(np.prod(shape, dtype=np.int64))
    flat = serial_draws(seed, count)
    # fill a nested list in C order by hand: the last index varies fastest
    expected = np.empty(shape, dtype=np.int64)
    for i, index in enumerate(np.ndindex(*shape)):
        expected[index] = flat[i]
    assert np.array_equal(got, expected)
    # and the stream continues after draw_like
    assert gen.draw(5).tolist() == serial_draws(seed, count + 5)[count:]


def test_draw_like_accepts_torch_size():
    torch = pytest.importorskip("torch")
    got = XorShift32(9).draw_like(torch.Size([2, 3]))
    assert got.tolist() == np.array(serial_draws(9, 6)).reshape(2, 3).tolist()


def test_numpy_integer_seed():
    assert XorShift32(np.uint32(12345)).draw(300).tolist() == serial_draws(12345, 300)
    assert XorShift32(np.int64(MASK32)).draw(3).tolist() == serial_draws(MASK32, 3)


@pytest.mark.parametrize("seed", [0, -1, -(2**31), 2**32, 2**40])
def test_seed_out_of_range(seed):
    with pytest.raises(ValueError, match=r"non-zero|1\.\."):
        XorShift32(seed)


@pytest.mark.parametrize("seed", [True, False, 1.0, 3.5, "7", None])
def test_seed_wrong_type(seed):
    with pytest.raises(TypeError, match="integer"):
        XorShift32(seed)


def test_negative_count():
    with pytest.raises(ValueError, match="count"):
        XorShift32(1).draw(-1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_long_stream_equals_serial(seed):
    count = 300_000
    gen = XorShift32(seed)
    got = np.concatenate([gen.draw(100_003), gen.draw(count - 100_003)])
    assert got.tolist() == serial_draws(seed, count)
