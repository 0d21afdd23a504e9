# amaranth: UnusedElaboratable=no
"""hw.signed_correction.SignedCorrection (an unsigned code product to its signed value) in the Amaranth simulator.

The testbench plays the MAC array (``U`` per row and slot, from
``sw.bitplanes.plane_matmul``) and the two sum memories (``R``: each row's
code sum, ``S``: each vector's value sum in the vectors' reading, numpy;
answered one cycle after the address); every expected value is
``sw.bitplanes.signed_matmul`` of the same codes, with each side unsigned or
signed odd.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Fragment

from hw.gemm import GemmEngine
from hw.mac_array import MacArray
from hw.signed_correction import SignedCorrection
from sim.amaranth_sim import simulate
from sw.bitplanes import plane_matmul, signed_matmul
from sw.contract.codes import levels, levels_or_none
from tests.hw.helpers import unelaborated

READINGS = [(False, False), (True, False), (False, True), (True, True)]  # (m_signed, v_signed)


def run(dut: SignedCorrection, runs, *, seed=0, gap=0.0):
    """``runs`` of ``(matrix, m_bits, m_signed, vectors, v_bits, v_signed)``: the readings set two cycles
    before the run's first ``U`` (and kept while its values pass), then every ``(row, slot)`` in a random order, ``final`` on the
    last.  Returns, per run, the outputs ``(cycle, row, slot, value, final)`` and the input cycles."""
    rng = random.Random(seed)
    results = []

    async def testbench(ctx):
        cycle = 0
        for matrix, m_bits, m_signed, vectors, v_bits, v_signed in runs:
            u = plane_matmul(vectors, v_bits, matrix, m_bits)  # the array's sums, (slot, row)
            r_sums = matrix.sum(axis=1)  # codes
            s_sums = (2 * vectors - levels(v_bits) if v_signed else vectors).sum(axis=1)  # values
            for name, value in (("m_bits", m_bits), ("v_bits", v_bits), ("m_signed", m_signed),
                                ("v_signed", v_signed)):
                ctx.set(getattr(dut, name), value)
            items = [(row, slot) for row in range(len(matrix)) for slot in range(len(vectors))]
            rng.shuffle(items)
            outs, sent = [], []
            queue = list(items)
            idle = 2  # the readings settle
            while queue or len(outs) < len(items):
                assert len(sent) < len(items) or cycle <= sent[-1] + dut.latency, "a value went missing"
                if queue and not idle and not (gap and rng.random() < gap):
                    row, slot = queue.pop(0)
                    ctx.set(dut.i.valid, 1)
                    ctx.set(dut.i.payload, {"row": row, "slot": slot, "sum": int(u[slot, row]),
                                            "final": int(not queue)})
                    sent.append(cycle)
                else:
                    ctx.set(dut.i.valid, 0)
                    ctx.set(dut.i.payload, {"row": rng.randrange(len(matrix)), "slot": rng.randrange(len(vectors)),
                                            "sum": rng.getrandbits(8), "final": 1})  # garbage
                    idle = max(0, idle - 1)
                if ctx.get(dut.o.valid):
                    o = ctx.get(dut.o.payload)
                    outs.append((cycle, o.row, o.slot, o.value, o.final))
                m_addr, v_addr = ctx.get(dut.m_sum_addr), ctx.get(dut.v_sum_addr)
                await ctx.tick()
                cycle += 1
                # the sum memories: read every cycle, data one cycle after the address
                ctx.set(dut.m_sum, int(r_sums[m_addr]) if m_addr < len(r_sums) else rng.getrandbits(4))
                ctx.set(dut.v_sum, int(s_sums[v_addr]) if v_addr < len(s_sums) else rng.getrandbits(4))
            results.append((items, outs, sent))

    simulate(dut, testbench, deadline=None)
    return results


def check(dut, runs, results):
    for (matrix, m_bits, m_signed, vectors, v_bits, v_signed), (items, outs, sent) in zip(runs, results):
        want = signed_matmul(vectors, levels_or_none(v_bits, v_signed), v_bits,
                             matrix, levels_or_none(m_bits, m_signed), m_bits)
        assert [(row, slot) for _, row, slot, _, _ in outs] == items
        assert [value for _, _, _, value, _ in outs] == [int(want[slot, row]) for row, slot in items]
        assert [final for *_, final in outs] == [0] * (len(items) - 1) + [1]
        assert [cycle for cycle, *_ in outs] == [cycle + dut.latency for cycle in sent]


@pytest.mark.parametrize("m_signed, v_signed", READINGS)
def test_random_codes(m_signed, v_signed):
    """Each reading at random widths of each side (run after run on one unit: the run-time
    inputs change between them), with idle cycles between the sums."""
    dut = SignedCorrection(max_bits=8, max_cols=9, rows=6, slots=3)
    rng = np.random.default_rng(m_signed * 2 + v_signed)
    runs = []
    for m_bits, v_bits in [(1, 1), (2, 3), (3, 1), (8, 2), (5, 8), (8, 8), (4, 4)]:
        rows, cols, count = int(rng.integers(1, 7)), int(rng.integers(1, 10)), int(rng.integers(1, 4))
        runs.append((rng.integers(0, 1 << m_bits, (rows, cols)), m_bits, m_signed,
                     rng.integers(0, 1 << v_bits, (count, cols)), v_bits, v_signed))
    check(dut, runs, run(dut, runs, seed=m_signed * 2 + v_signed, gap=0.3))


def test_extremes_of_8_bit_codes():
    """All four readings back to back on codes 0 and 255 at the longest row: the largest
    magnitudes the value must hold, ``max_cols * 255**2`` either way."""
    max_cols = 13
    dut = SignedCorrection(max_bits=8, max_cols=max_cols, rows=4, slots=4)
    top = 255
    matrix = np.array([[top] * max_cols, [0] * max_cols, [top, 0] * 6 + [top], [0, top] * 6 + [0]])
    vectors = matrix.copy()
    runs = [(matrix, 8, m_signed, vectors, 8, v_signed) for m_signed, v_signed in READINGS]
    results = run(dut, runs)
    check(dut, runs, results)
    values = [value for _, outs, _ in results for _, _, _, value, _ in outs]
    assert max(values) == max_cols * top * top and min(values) == -max_cols * top * top
    assert dut.value_shape.width == (max_cols * top * top).bit_length() + 1


@pytest.mark.parametrize("fetch_stages", [0, 1, 2])
def test_full_rate(fetch_stages):
    """A sum every cycle: each value ``latency`` = ``3 + fetch_stages`` cycles later, in order."""
    dut = SignedCorrection(max_bits=4, max_cols=16, rows=8, slots=2, fetch_stages=fetch_stages)
    rng = np.random.default_rng(7)
    runs = [(rng.integers(0, 16, (8, 16)), 4, True, rng.integers(0, 8, (2, 16)), 3, True),
            (rng.integers(0, 2, (5, 11)), 1, True, rng.integers(0, 16, (2, 11)), 4, False)]
    results = run(dut, runs, seed=3)
    check(dut, runs, results)
    for _, _, sent in results:
        assert sent == list(range(sent[0], sent[0] + len(sent)))
    assert dut.latency == 3 + fetch_stages


# A ragged max_cols once gave the array's sums (sized for the padded lanes, ceil(max_cols / simd)
# * simd) another width than the correction's (max_cols): GemmEngine's wiring.connect failed.
@pytest.mark.parametrize("pe, vectors, simd, max_bits, max_rows, max_cols", [
    (2, 3, 4, 8, 7, 13), (3, 2, 5, 4, 8, 10), (1, 1, 1, 8, 3, 5), (4, 4, 8, 8, 32, 256),
    (3, 2, 5, 4, 8, 9),   # ragged: 10 padded lanes * 15**2 = 2250 >= 2**11 > 9 * 15**2
    (2, 1, 4, 3, 4, 9),   # ragged: 12 * 7**2 = 588 >= 2**9 > 9 * 7**2
])
def test_takes_the_arrays_sums(pe, vectors, simd, max_bits, max_rows, max_cols):
    """The correction's input is the MAC array's output, as GemmEngine connects them."""
    with unelaborated():
        array = MacArray(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows,
                         max_cols=max_cols)
        correction = SignedCorrection(max_bits=max_bits, max_cols=max_cols, rows=-(-max_rows // pe) * pe,
                                      slots=vectors)
        assert all(correction.i.payload.shape() == chain.payload.shape() for chain in array.o)  # each drain
        Fragment.get(GemmEngine(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows,
                                max_cols=max_cols), None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_bits=0), r"max_bits must be in 1\.\.8, got 0"),
    (dict(max_bits=9), r"max_bits must be in 1\.\.8, got 9"),
    (dict(max_cols=0), "max_cols must be >= 1, got 0"),
    (dict(fetch_stages=3), r"fetch_stages must be in 0\.\.2, got 3"),
    (dict(fetch_stages=-1), r"fetch_stages must be in 0\.\.2, got -1"),
])
def test_validation(kwargs, message):
    args = dict(max_bits=4, max_cols=8, rows=4, slots=2) | kwargs
    with unelaborated(), pytest.raises(ValueError, match=message):
        SignedCorrection(**args)
