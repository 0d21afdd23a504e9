"""The gradient-noise PRNG shared by software and hardware (its constants and
step: :mod:`sw.contract.prng`).

Marsaglia's xorshift32 with shifts (13, 17, 5)::

    s ^= s << 13;  s ^= s >> 17;  s ^= s << 5      (all mod 2**32)

Each draw steps the state once and returns its top ``NOISE_BITS`` (16) bits,
``r = s >> 16``.  The stochastic gradient quantizer turns ``r`` into the uniform
noise ``u = (r - 2**15) / 2**16`` in ``[-1/2, 1/2)`` (see :mod:`sw.numeric`).

Hardware needs only XOR gates and one register for this generator
(:mod:`hw.prng`), one draw per clock.  Software draws millions of values per
training step, so :meth:`XorShift32.draw` does not loop in Python: the step is
linear over GF(2), so the states ``M**i s0`` for a whole block are built by
doubling, applying the 32x32 bit-matrix ``M**L`` to the first ``L`` states to get
the next ``L``.  The result is bit-identical to stepping one at a time (tested).
"""

from __future__ import annotations

import numpy as np

from .contract.prng import NOISE_BITS, STATE_BITS
from .contract.prng import STATE_MASK as _MASK
from .contract.prng import step as _step

__all__ = ["XorShift32", "NOISE_BITS", "STATE_BITS"]


class _BitMatrix:
    """A linear map on 32-bit words over GF(2), stored as the images of the unit vectors.

    Applied through four 256-entry tables, one per byte of the input word.
    """

    __slots__ = ("columns", "_tables")

    def __init__(self, columns):
        self.columns = np.asarray(columns, dtype=np.uint64)
        byte = np.arange(256, dtype=np.uint64)
        self._tables = []
        for lane in range(STATE_BITS // 8):
            table = np.zeros(256, dtype=np.uint64)
            for bit in range(8):
                table ^= ((byte >> np.uint64(bit)) & np.uint64(1)) * self.columns[8 * lane + bit]
            self._tables.append(table)

    @classmethod
    def step(cls) -> "_BitMatrix":
        return cls([_step(1 << j) for j in range(STATE_BITS)])

    def apply(self, words: np.ndarray) -> np.ndarray:
        words = words.astype(np.uint64, copy=False)
        out = self._tables[0][words & np.uint64(0xFF)]
        for lane in range(1, len(self._tables)):
            out ^= self._tables[lane][(words >> np.uint64(8 * lane)) & np.uint64(0xFF)]
        return out

    def compose(self, other: "_BitMatrix") -> "_BitMatrix":
        """``self`` after ``other``."""
        return _BitMatrix(self.apply(other.columns))


_JUMPS = [_BitMatrix.step()]  # _JUMPS[i] = M**(2**i), grown on demand


def _jump(log2_steps: int) -> _BitMatrix:
    while len(_JUMPS) <= log2_steps:
        _JUMPS.append(_JUMPS[-1].compose(_JUMPS[-1]))
    return _JUMPS[log2_steps]


class XorShift32:
    """Seeded xorshift32 stream of 16-bit noise draws (see module docstring).

    ``seed`` is the initial 32-bit state and must be non-zero (zero is the
    generator's only fixed point).  The first draw is the top half of the state
    after one step.
    """

    def __init__(self, seed: int):
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
        if not 0 < seed <= _MASK:
            raise ValueError(f"seed must be in 1..{_MASK} (a non-zero 32-bit state), got {seed}")
        self.state = int(seed)

    def states(self, count: int) -> np.ndarray:
        """The next ``count`` states (uint64 array), advancing the generator."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        out = np.empty(count, dtype=np.uint64)
        if count == 0:
            return out
        serial = min(count, 256)
        state = self.state
        for i in range(serial):
            state = _step(state)
            out[i] = state
        filled = serial
        # From here on serial == 256, a power of two: double the block each round.
        while filled < count:
            take = min(filled, count - filled)
            out[filled:filled + take] = _jump(filled.bit_length() - 1).apply(out[:take])
            filled += take
        self.state = int(out[-1])
        return out

    def draw(self, count: int) -> np.ndarray:
        """The next ``count`` noise draws ``r`` in ``[0, 2**16)`` (int64 array)."""
        return (self.states(count) >> np.uint64(STATE_BITS - NOISE_BITS)).astype(np.int64)

    def draw_like(self, shape) -> np.ndarray:
        """Draws for a tensor of ``shape``, filled in row-major (C) order."""
        shape = tuple(int(s) for s in shape)
        return self.draw(int(np.prod(shape, dtype=np.int64))).reshape(shape)
