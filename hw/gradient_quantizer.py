"""Stochastic gradient quantizer: the hardware form of :func:`sw.numeric.gradient_codes`.

The contract, per element ``g`` of a sample with scale ``m = max|g|``, noise
draw ``r`` and ``n = 2**G - 1``, is the number of ``j`` in ``1..n`` with::

    n * g * 2**16  >=  m * ((2j - n) * 2**16 - 2r)

Rather than ``n`` comparators this unit computes that count as one quotient.
Move the noise to the left, ``A = n*g*2**16 + 2*m*r >= 2**16 * m*(2j - n)``;
the right side is a multiple of ``2**16``, so the test is unchanged when the
left side is floored to ``B = n*g + floor(m*r / 2**15)``.  Adding ``n*m``::

    j  <=  D / (2m)       with   D = n*(g + m) + floor(m*r / 2**15)

and ``|g| <= m``, ``0 <= r < 2**16`` give ``0 <= D < 2m(n + 1)``, so the count is
exactly ``c = floor(D / 2m)``, already in ``[0, n]`` with no clamp.  A G-stage
restoring divider finds it, one quotient bit per stage.  For ``m = 0`` every
stage compares against a zero divisor and sets its bit, giving ``c = n``,
which is what the contract says for an all-zero sample.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.contract.codes import levels
from sw.contract.prng import DEFAULT_SEED, NOISE_BITS, STATE_BITS

from .params import check_int
from .prng import XorShift32, check_seed

__all__ = ["GradientQuantizer", "MAX_WIDTH", "input_layout", "output_layout"]

#: Widest gradient accepted: the reference, :func:`sw.numeric.gradient_codes`, is
#: documented exact for integers ``|g| < 2**38``, so nothing wider can be checked.
MAX_WIDTH = 38


def input_layout(width: int) -> data.StructLayout:
    """One input beat: a signed gradient and the end-of-sample flag."""
    return data.StructLayout({"grad": signed(width), "last": 1})


def output_layout(gbits: int, width: int) -> data.StructLayout:
    """One output beat: the code, its sample's scale ``m = max|g|`` and the end-of-sample flag."""
    return data.StructLayout({"code": unsigned(gbits), "scale": unsigned(width), "last": 1})


class GradientQuantizer(wiring.Component):
    """Stochastic G-bit gradient quantizer with per-sample scale ``m = max|g|``.

    Parameters
    ----------
    gbits : int
        Code width G, ``1..8``; codes lie in ``[0, n]``, ``n = 2**G - 1``.
    width : int
        Width of the signed input gradients, ``1..MAX_WIDTH``.
    depth : int
        Longest sample in elements, ``>= 1`` (the size of the sample buffer).
    seed : int
        Reset state of the internal :class:`hw.prng.XorShift32`, non-zero 32 bit.

    Ports
    -----
    i : ``In(stream.Signature(i_layout))``
        Gradients, one element per beat, ``{grad: signed(width), last: 1}``.
        ``last`` marks the final element of a sample.  A sample that reaches
        ``depth`` elements ends there as if its final beat carried ``last``;
        the beats that follow start a new sample.
    o : ``Out(stream.Signature(o_layout))``
        Codes, one per input element in input order,
        ``{code: unsigned(gbits), scale: unsigned(width), last: 1}``.  ``scale``
        is the sample's ``m = max|g|`` on every beat; ``last`` marks the final
        code of each sample (a sample cut at ``depth`` included).
    seed : ``In(stream.Signature(32))``
        Reloads the PRNG state; always ready, zero is ignored (see
        :class:`hw.prng.XorShift32`).  Load between samples: the next element
        whose code is computed takes the first draw of the new seed.

    Noise: the PRNG steps once per element, in element order, samples in
    arrival order, so a batch fed sample after sample in row-major order uses
    ``sw.prng.XorShift32(seed).draw_like(g.shape)``.

    Timing: a sample is written to a buffer while ``max|g|`` is tracked (pass
    1); its codes are computed once its last element has arrived (pass 2).
    Latency: the first code is offered ``gbits + 3`` cycles after the last
    input beat is accepted (``latency + 1``), then one code per cycle while
    ``o.ready``.  Throughput: the next sample is written into the slots pass 2
    has already read, so both passes overlap and a steady stream of samples
    of length ``L`` moves at ``L`` elements per ``L + 1`` cycles.
    ``i.ready`` depends on registers only; ``o.ready`` fans out
    combinationally to the pipeline enables (the pipeline stalls as a whole).

    Formula (see the module docstring):
    ``code = floor((n*(g + m) + floor(m*r / 2**15)) / 2m)``, equal to
    :func:`sw.numeric.gradient_codes`; ``m = 0`` gives ``code = n``.
    """

    def __init__(self, *, gbits: int, width: int, depth: int, seed: int = DEFAULT_SEED):
        check_int("gbits", gbits, 1, 8, note="the gradient code width G")
        check_int("width", width, 1, MAX_WIDTH, note="bits of a signed gradient")
        check_int("depth", depth, 1, note="the longest sample, in elements")
        self._seed = check_seed(seed)
        self.gbits, self.width, self.depth = gbits, width, depth
        self.i_layout = input_layout(width)
        self.o_layout = output_layout(gbits, width)
        super().__init__({
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(self.o_layout)),
            "seed": In(stream.Signature(STATE_BITS)),
        })

    @property
    def init_seed(self) -> int:
        """The PRNG state after reset."""
        return self._seed

    @property
    def latency(self) -> int:
        """Cycles from reading an element back to its code on ``o`` (no stalls)."""
        return self.gbits + 2

    def elaborate(self, platform):
        m = Module()
        G, w, depth = self.gbits, self.width, self.depth
        n = levels(G)
        # D < 2**(w + G): m <= 2**(w - 1) and D < 2m(n + 1) = m * 2**(G + 1).
        dividend_bits = w + G

        m.submodules.prng = prng = XorShift32(self._seed)
        wiring.connect(m, wiring.flipped(self.seed), prng.seed)
        m.submodules.buffer = buffer = Memory(shape=signed(w), depth=depth, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()  # no transparency needed: the writer only rewrites slots already read

        # ------------------------------------------------------------ pass 1: write, track max|g|
        w_idx = Signal(range(depth))
        w_max = Signal(unsigned(w))     # max|g| of the elements accepted so far in this sample
        # Reader: the sample whose codes are being computed, and at most one complete sample waiting.
        r_busy = Signal()
        r_idx = Signal(range(depth))    # next slot to read back
        r_end = Signal(range(depth))    # index of its final element
        r_scale = Signal(unsigned(w))
        p_valid = Signal()
        p_end = Signal(range(depth))
        p_scale = Signal(unsigned(w))

        grad = self.i.payload.grad
        new_max = Signal(unsigned(w))
        m.d.comb += new_max.eq(Mux(abs(grad) > w_max, abs(grad), w_max))
        ends = Signal()
        m.d.comb += ends.eq(self.i.payload.last | (w_idx == depth - 1))
        take = Signal()
        # A slot is free once the reader has passed it; a waiting sample holds slots 0..p_end.
        m.d.comb += [
            self.i.ready.eq(~p_valid & (~r_busy | (w_idx < r_idx))),
            take.eq(self.i.valid & self.i.ready),
            wr.addr.eq(w_idx),
            wr.data.eq(grad),
            wr.en.eq(take),
        ]
        with m.If(take):
            with m.If(ends):
                m.d.sync += [w_idx.eq(0), w_max.eq(0)]
            with m.Else():
                m.d.sync += [w_idx.eq(w_idx + 1), w_max.eq(new_max)]

        # ------------------------------------------------------------ pass 2: read back, code
        out = self.o
        advance = Signal()              # the whole pipeline moves (it stalls as one)
        issue = Signal()                # read a slot and take a noise draw this cycle
        m.d.comb += [
            advance.eq(~out.valid | out.ready),
            issue.eq(r_busy & advance),
            rd.addr.eq(r_idx),
            rd.en.eq(advance),          # a stalled read port holds its data
            prng.noise.ready.eq(issue),
        ]
        r_done = issue & (r_idx == r_end)
        with m.If(~r_busy | r_done):
            with m.If(p_valid):
                m.d.sync += [r_busy.eq(1), r_idx.eq(0), r_end.eq(p_end), r_scale.eq(p_scale),
                             p_valid.eq(0)]
            with m.Elif(take & ends):
                m.d.sync += [r_busy.eq(1), r_idx.eq(0), r_end.eq(w_idx), r_scale.eq(new_max)]
            with m.Else():
                m.d.sync += r_busy.eq(0)
        with m.Else():
            with m.If(issue):
                m.d.sync += r_idx.eq(r_idx + 1)
            with m.If(take & ends):
                m.d.sync += [p_valid.eq(1), p_end.eq(w_idx), p_scale.eq(new_max)]

        # Stage 1: the slot's g arrives from the buffer; m*r is registered beside it.
        s1 = Signal(data.StructLayout({
            "valid": 1, "last": 1, "scale": unsigned(w), "scaled_noise": unsigned(w + NOISE_BITS),
        }))
        with m.If(advance):
            m.d.sync += [
                s1.valid.eq(issue),
                s1.last.eq(r_idx == r_end),
                s1.scale.eq(r_scale),
                s1.scaled_noise.eq(r_scale * prng.noise.payload),
            ]
        # Stage 2: the dividend D = n*(g + m) + floor(m*r / 2**15), in [0, 2**dividend_bits).
        s2 = Signal(_stage_layout(w, dividend_bits, 0))
        g_plus_m = rd.data + s1.scale                       # in [0, 2m]
        dividend = g_plus_m * n + (s1.scaled_noise >> (NOISE_BITS - 1))
        with m.If(advance):
            m.d.sync += [
                s2.valid.eq(s1.valid),
                s2.last.eq(s1.last),
                s2.scale.eq(s1.scale),
                s2.rem.eq(dividend[:dividend_bits]),          # exact: D is non-negative and fits
            ]
        # Stages 3 .. G + 2: restoring division by 2m, quotient bit k = G-1 down to 0.
        # Entering bit k the remainder is below 2m * 2**(k + 1), so no bit overflows.
        prev = s2
        for k in reversed(range(G)):
            divisor = prev.scale << (k + 1)
            fits = prev.rem >= divisor
            # After bit k the remainder is below 2m * 2**k <= 2**(w + k); bit 0 keeps none.
            stage = Signal(_stage_layout(w, w + k if k else 0, G - k), name=f"div{k}")
            with m.If(advance):
                m.d.sync += [
                    stage.valid.eq(prev.valid),
                    stage.last.eq(prev.last),
                    stage.scale.eq(prev.scale),
                    stage.quotient.eq((prev.quotient << 1) | fits),
                ]
                if k:
                    m.d.sync += stage.rem.eq(Mux(fits, prev.rem - divisor, prev.rem))
            prev = stage

        m.d.comb += [
            out.valid.eq(prev.valid),
            out.payload.code.eq(prev.quotient),
            out.payload.scale.eq(prev.scale),
            out.payload.last.eq(prev.last),
        ]
        return m


def _stage_layout(width, rem_bits, quotient_bits):
    """Pipeline registers of one divider stage: a flag, the sample's tags, remainder and quotient so far."""
    return data.StructLayout({
        "valid": 1, "last": 1, "scale": unsigned(width),
        "rem": unsigned(rem_bits), "quotient": unsigned(quotient_bits),
    })
