"""xorshift32 gradient-noise generator: the hardware twin of :class:`sw.prng.XorShift32`
(its constants, :data:`SHIFTS` and :data:`DEFAULT_SEED` included: :mod:`sw.contract.prng`).

One step of Marsaglia's xorshift32 with shifts (13, 17, 5)::

    s ^= s << 13;  s ^= s >> 17;  s ^= s << 5      (all mod 2**32)

is a fixed XOR network on the 32-bit state: no adders, one register.
"""

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sw.contract.prng import DEFAULT_SEED, NOISE_BITS, SHIFTS, STATE_BITS

from .params import check_int

__all__ = ["XorShift32", "DEFAULT_SEED", "SHIFTS", "check_seed", "xorshift32_step"]


def check_seed(seed) -> int:
    """``seed`` if it is a valid state (an int in ``1 .. 2**STATE_BITS - 1``), else ``ValueError``."""
    return check_int("seed", seed, 1, 2**STATE_BITS - 1, note=f"a non-zero {STATE_BITS}-bit state")


def xorshift32_step(state: Value) -> Value:
    """The state after one step, as a combinational value of the same width."""
    width = len(state)
    left_a, right, left_b = SHIFTS
    # `<<` widens the value; truncating to `width` bits is the "mod 2**32".
    state = state ^ (state << left_a)[:width]
    state = state ^ (state >> right)
    state = state ^ (state << left_b)[:width]
    return state


class XorShift32(wiring.Component):
    """xorshift32 noise source, bit-exact with :class:`sw.prng.XorShift32`.

    Parameters
    ----------
    seed : int
        State after reset, ``1 .. 2**STATE_BITS - 1`` (zero is the generator's
        only fixed point).  Default: Marsaglia's example seed 2463534242.  A
        seed loaded at run time is lost on reset.

    Ports
    -----
    seed : ``In(stream.Signature(STATE_BITS))``
        Loads a new state; ``seed.ready`` is always 1.  A transfer replaces the
        state on the next clock edge; a payload of zero is ignored (the state
        is kept), so the generator can never lock up.  If ``noise`` transfers
        in the same cycle, that draw still comes from the old state; the next
        draw is the first draw of the new seed.
    noise : ``Out(stream.Signature(NOISE_BITS))``
        The next draw ``r``; ``noise.valid`` is always 1.  ``r`` is the top
        ``NOISE_BITS`` bits of the state *after* one step,
        ``noise.payload = step(s)[STATE_BITS - NOISE_BITS:]``.  Every cycle
        with ``noise.ready`` high takes the draw and steps the state.
        The first draw after reset (or after a load) is the top half of the
        state one step past the seed, exactly the order of
        :meth:`sw.prng.XorShift32.draw`.

    Latency and throughput: a draw is offered combinationally from the state
    register (zero latency, a few XOR levels deep); one draw per cycle.
    """

    def __init__(self, seed: int = DEFAULT_SEED):
        self._seed = check_seed(seed)
        super().__init__({
            # Not `always_ready`/`always_valid`: their constant members break
            # `verilog.convert(component)` in Amaranth 0.5 (amaranth#1574).
            "seed": In(stream.Signature(STATE_BITS)),
            "noise": Out(stream.Signature(NOISE_BITS)),
        })

    @property
    def init_seed(self) -> int:
        """The state after reset."""
        return self._seed

    def elaborate(self, platform):
        m = Module()

        state = Signal(STATE_BITS, init=self._seed)
        stepped = xorshift32_step(state)

        m.d.comb += [
            self.seed.ready.eq(1),
            self.noise.valid.eq(1),
            self.noise.payload.eq(stepped[STATE_BITS - NOISE_BITS:]),
        ]
        with m.If(self.seed.valid & (self.seed.payload != 0)):
            m.d.sync += state.eq(self.seed.payload)
        with m.Elif(self.noise.ready):
            m.d.sync += state.eq(stepped)
        return m
