"""The gradient-noise generator's constants: Marsaglia's xorshift32.

One step, all mod ``2**STATE_BITS``::

    s ^= s << 13;  s ^= s >> 17;  s ^= s << 5          (SHIFTS = (13, 17, 5))

Each draw steps the state once and returns its top :data:`NOISE_BITS` bits,
``r = s >> (STATE_BITS - NOISE_BITS)``.  :func:`step` is the step on a Python
int; the host (:mod:`sw.prng`) and the gateware (:mod:`hw.prng`) build theirs
from :data:`SHIFTS`.
"""

from __future__ import annotations

__all__ = ["STATE_BITS", "NOISE_BITS", "SHIFTS", "DEFAULT_SEED", "STATE_MASK", "step"]

STATE_BITS = 32
NOISE_BITS = 16
#: Marsaglia's shift triple: left, right, left.
SHIFTS = (13, 17, 5)
#: Reset state when none is given: the seed of Marsaglia's "Xorshift RNGs" paper.
DEFAULT_SEED = 2463534242
STATE_MASK = (1 << STATE_BITS) - 1


def step(state: int) -> int:
    """The state after one step (``state`` a ``STATE_BITS``-bit int)."""
    left_a, right, left_b = SHIFTS
    state ^= (state << left_a) & STATE_MASK
    state ^= state >> right
    state ^= (state << left_b) & STATE_MASK
    return state
