"""hw.window.WindowGenerator (a feature map's im2col vectors) in the Amaranth simulator.

One testbench plays the core: it writes a random map (NumPy) through
``write``, sets ``shape``, ``window`` and ``cols``, pulses ``start`` and
takes codes from ``o`` under random back-pressure, sometimes restarting in
the middle of a stream.  Every expected code is the contract's:
``map[idx] if inside else 0`` with ``idx, inside =
sw.contract.window.window_index(...)`` on NumPy arrays; nothing expected is
taken from the unit.  Each cycle the stream rules are checked (a code
offered and not taken is offered again unchanged), and the first code's
latency after ``start`` is the docstring's.
"""

import random

import numpy as np
import pytest
from amaranth.back import rtlil, verilog

from hw.catalog import standalone
from hw.window import MAX_VECTORS, WindowGenerator
from sim.amaranth_sim import simulate
from sw.contract.link import WINDOW_FIELDS
from sw.contract.window import ORDERS, PATCH, SHIFT, FmapShape, Window, window_index
from tests.hw.helpers import unelaborated


def expected_codes(fmap: np.ndarray, shape: FmapShape, window: Window, vectors: int, cols: int) -> list[int]:
    """The contract's codes of ``vectors`` vectors of ``cols`` codes, in stream order."""
    vector = np.arange(vectors, dtype=np.int64)[:, None]
    col = np.arange(cols, dtype=np.int64)[None, :]
    idx, inside = window_index(shape, window, vector, col)
    idx, inside = np.broadcast_arrays(idx, inside)
    flat = fmap.reshape(-1)
    codes = np.where(inside, flat[np.where(inside, idx, 0)], 0)
    return [int(v) for v in codes.reshape(-1)]


def random_map(shape: FmapShape, bits: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 1 << bits, size=shape.codes, dtype=np.int64)


def set_job(ctx, dut, shape: FmapShape, window: Window, cols: int):
    ctx.set(dut.shape, {"channels": shape.channels, "height": shape.height, "width": shape.width})
    ctx.set(dut.window, dict(zip(WINDOW_FIELDS.names, window.fields())))
    ctx.set(dut.cols, cols)


def run(dut: WindowGenerator, fmap, jobs, *, seed=0, ready=1.0, write_gap=0.3):
    """Write ``fmap`` (random order, idle cycles between writes), then play ``jobs``:
    each ``(shape, window, cols, take, cut)`` sets the inputs, pulses ``start`` and
    takes ``take`` codes, or, with ``cut`` not None, only ``cut`` of them and restarts
    (the next job) at once; ``o.ready`` is random in the start cycle (no code is taken then).
    Returns, per job, the codes taken and the cycles from ``start`` to the first
    ``o.valid``; checks the stream rules throughout."""
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        # Writes, in a random order, with garbage on the inputs of the window.
        order = list(range(len(fmap)))
        rng.shuffle(order)
        for addr in order:
            while rng.random() < write_gap:
                ctx.set(dut.write.valid, 0)
                ctx.set(dut.write.payload, {"addr": rng.randrange(dut.depth), "code": rng.randrange(1 << dut.max_bits)})
                await ctx.tick()
            ctx.set(dut.write.valid, 1)
            ctx.set(dut.write.payload, {"addr": addr, "code": int(fmap[addr])})
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        assert not ctx.get(dut.o.valid), "codes before any start"
        for shape, window, cols, take, cut in jobs:
            set_job(ctx, dut, shape, window, cols)
            ctx.set(dut.start, 1)
            ctx.set(dut.o.ready, rng.random() < 0.5)  # no code is offered and taken in the start cycle
            await ctx.tick()
            ctx.set(dut.start, 0)
            got, cycles, first, held = [], 0, None, None
            goal = take if cut is None else cut
            while len(got) < goal:
                cycles += 1
                assert cycles < 50 * (take + 10), "the unit stopped"
                valid = ctx.get(dut.o.valid)
                payload = ctx.get(dut.o.payload)
                if held is not None:
                    assert valid and payload == held, "a code offered and not taken changed or vanished"
                if valid and first is None:
                    first = cycles
                r = rng.random() < ready
                ctx.set(dut.o.ready, r)
                if valid and r:
                    got.append(payload)
                held = payload if valid and not r else None
                await ctx.tick()
            results.append((got, first))

    simulate(dut, bench)
    return results


def check(fmap, shape, window, cols, vectors, got):
    want = expected_codes(fmap.reshape(-1), shape, window, vectors, cols)
    assert len(got) == len(want)
    bad = [i for i, (g, e) in enumerate(zip(got, want)) if g != e]
    assert not bad, (f"{len(bad)} of {len(want)} codes wrong, first at vector {bad[0] // cols} col "
                     f"{bad[0] % cols}: got {got[bad[0]]}, want {want[bad[0]]}")


def windows_for(shape: FmapShape, kernel: int, stride: int, pad: int, order: int, rng: random.Random, *,
                count: int = 2) -> list[Window]:
    """Valid windows (their problems checked): the model's out_width and a random one, random starts."""
    natural = max(1, (shape.width + 2 * pad - kernel) // stride + 1)
    out = []
    for out_width in (natural, rng.randint(1, natural + 3))[:count]:
        channel = rng.randrange(shape.channels)
        if order == PATCH:
            window = Window(kernel, stride, pad, order, out_width, channel, rng.randrange(3), rng.randrange(out_width))
        else:
            window = Window(kernel, stride, pad, order, out_width, channel, rng.randrange(kernel),
                            rng.randrange(kernel))
        assert not window.problems(shape), window.problems(shape)
        out.append(window)
    return out


def run_sweep(max_bits, shape, kernel, stride, pad, order, seed, *, ready=0.7):
    rng = random.Random(seed)
    fmap = random_map(shape, max_bits, np.random.default_rng(seed))
    depth = shape.codes + rng.randrange(3)
    taps = shape.channels * kernel * kernel
    jobs, checks = [], []
    for window in windows_for(shape, kernel, stride, pad, order, rng):
        # cols: shorter than a channel's taps, exactly a channel's, longer (PATCH: channel slices);
        # vectors past the map's end.
        positions = window.out_width * ((shape.height + 2 * pad - kernel) // stride + 2)
        for cols in sorted({max(1, kernel * kernel - 1), kernel * kernel, rng.randint(1, taps + 5)}):
            vectors = max(2, min((positions if order == PATCH else taps) + 3, 400 // cols + 2))
            jobs.append((shape, window, cols, vectors * cols, None))
            checks.append((window, cols, vectors))
    dut = WindowGenerator(depth=depth, max_bits=max_bits, max_cols=max(c for _, c, _ in checks) + rng.randrange(3))
    results = run(dut, fmap, jobs, seed=seed, ready=ready)
    for (window, cols, vectors), (got, first) in zip(checks, results):
        check(fmap, shape, window, cols, vectors, got)
        if ready == 1.0:
            assert first == WindowGenerator.latency


SHAPES = [FmapShape(1, 5, 5), FmapShape(3, 4, 6), FmapShape(2, 7, 3)]
SWEEP = [(order, kernel, stride, pad)
         for order in ORDERS for kernel in (1, 3, 4) for stride in (1, 2)
         for pad in sorted({0, min(1, kernel - 1), kernel - 1})]


@pytest.mark.parametrize("order, kernel, stride, pad", SWEEP,
                         ids=[f"{'patch' if o == PATCH else 'shift'}-k{k}-s{s}-p{p}" for o, k, s, p in SWEEP])
def test_codes_are_the_contracts(order, kernel, stride, pad):
    seed = hash((order, kernel, stride, pad)) & 0xFFFF
    shape = SHAPES[seed % len(SHAPES)]
    max_bits = (1, 2, 6, 8)[seed % 4]
    run_sweep(max_bits, shape, kernel, stride, pad, order, seed)


@pytest.mark.parametrize("pool", [2, 4])
@pytest.mark.parametrize("kernel, stride, pad", [(1, 1, 0), (3, 1, 1), (3, 2, 2), (2, 3, 1)])
def test_pooled_codes_are_the_contracts(pool, kernel, stride, pad):
    """A pooled PATCH window: positions pooling window by pooling window, from a window's
    top-left, over whole bands and on past the map's last row."""
    seed = pool * 1000 + kernel * 100 + stride * 10 + pad
    rng = random.Random(seed)
    shape = FmapShape(2, 9, 10)
    fmap = random_map(shape, 3, np.random.default_rng(seed))
    natural = (shape.width + 2 * pad - kernel) // stride + 1
    jobs, checks = [], []
    for out_width in sorted({natural // pool * pool, pool, 3 * pool}):
        window = Window(kernel, stride, pad, PATCH, out_width, rng.randrange(2), pool * rng.randrange(2),
                        pool * rng.randrange(out_width // pool), pool=pool)
        assert not window.problems(shape), window.problems(shape)
        for cols in (kernel * kernel, 2 * kernel * kernel):
            vectors = pool * pool * (3 * out_width // pool + 2)
            jobs.append((shape, window, cols, vectors * cols, None))
            checks.append((window, cols, vectors))
    dut = WindowGenerator(depth=shape.codes, max_bits=3, max_cols=2 * kernel * kernel)
    for (window, cols, vectors), (got, _) in zip(checks, run(dut, fmap, jobs, seed=seed, ready=0.7)):
        check(fmap, shape, window, cols, vectors, got)


@pytest.mark.parametrize("max_bits", [1, 2, 6, 8])
@pytest.mark.parametrize("order", ORDERS)
def test_full_rate_latency(order, max_bits):
    """o.ready always high: one code per cycle from the documented latency on."""
    run_sweep(max_bits, FmapShape(2, 5, 4), 3, 1, 1, order, 7 + max_bits, ready=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [FmapShape(1, 1, 1), FmapShape(4, 9, 9), FmapShape(5, 3, 11), FmapShape(2, 16, 2)],
                         ids=str)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_codes_are_the_contracts_wide(shape, order, kernel, stride):
    seed = hash((shape, order, kernel, stride)) & 0xFFFF
    for pad in sorted({0, kernel // 2, kernel - 1}):
        run_sweep((1, 2, 6, 8)[(seed + pad) % 4], shape, kernel, stride, pad, order, seed + pad, ready=0.8)


def test_run_past_the_end_of_the_map():
    """Far beyond the map: positions past its last row (PATCH from y = 65535, the field's
    largest), channels past its last (SHIFT from the last channel); every code 0 but
    those the window still covers, as window_index says."""
    shape = FmapShape(3, 4, 5)
    fmap = random_map(shape, 6, np.random.default_rng(3))
    jobs = [
        (shape, Window(3, 4, 2, PATCH, 2, 0, 2, 1), 27, 27 * 6, None),     # rows 2, 3, 4 (iy from 6)
        (shape, Window(3, 1, 1, PATCH, 65535, 2, 65535, 65530), 9, 9 * 12, None),  # oy 65535, 65536
        (shape, Window(2, 1, 1, SHIFT, 4, 2, 1, 0), 20, 20 * 9, None),     # taps of channel 2, 3, 4
        (shape, Window(1, 1, 0, PATCH, 5, 1, 3, 2), 2, 2 * 20, None),      # channel slice 1..2, rows 3, 4, 5 ...
    ]
    dut = WindowGenerator(depth=shape.codes, max_bits=6, max_cols=32)
    for (_, window, cols, take, _), (got, _) in zip(jobs, run(dut, fmap, jobs, seed=4, ready=0.6)):
        check(fmap, shape, window, cols, take // cols, got)
    # the windows reach past the map: some of their codes are padding
    assert any(not inside for _, w, cols, take, _ in jobs
               for inside in np.broadcast_to(window_index(shape, w, np.arange(take // cols)[:, None],
                                                          np.arange(cols)[None, :])[1], (take // cols, cols)).flat)


@pytest.mark.slow
@pytest.mark.parametrize("shape, window", [
    (FmapShape(300, 1, 1), Window(1, 1, 0, SHIFT, 3, 299, 0, 0)),     # c = 299 + vector, up to 65833
    (FmapShape(2, 2, 3), Window(1, 4, 0, PATCH, 1, 0, 65535, 0)),     # iy = 4 * (65535 + vector), past 2**19
    (FmapShape(2, 2, 3), Window(2, 1, 1, PATCH, 1, 1, 0, 0)),
], ids=str)
def test_the_counters_hold_for_max_vectors(shape, window):
    """MAX_VECTORS vectors of one code: the counters never wrap back into the map."""
    fmap = random_map(shape, 8, np.random.default_rng(5))
    dut = WindowGenerator(depth=shape.codes, max_bits=8, max_cols=1)
    (got, first), = run(dut, fmap, [(shape, window, 1, MAX_VECTORS, None)], seed=6, ready=1.0)
    check(fmap, shape, window, 1, MAX_VECTORS, got)
    assert first == WindowGenerator.latency


def test_restart_drops_what_was_in_flight():
    """start in the middle of a stream (back-pressure, codes in flight): the next job's codes
    come out from its vector 0, nothing of the cut job's."""
    shape = FmapShape(2, 6, 6)
    fmap = random_map(shape, 8, np.random.default_rng(11))
    a = Window(3, 1, 1, PATCH, 6, 0, 1, 2)
    b = Window(3, 2, 2, SHIFT, 3, 1, 2, 1)
    c = Window(4, 1, 3, PATCH, 7, 1, 0, 0)
    jobs = [(shape, a, 18, 18 * 5, 7), (shape, b, 9, 9 * 6, 1), (shape, c, 16, 16 * 4, 0),
            (shape, b, 9, 9 * 6, None), (shape, a, 18, 18 * 5, 30), (shape, c, 16, 16 * 4, None)]
    dut = WindowGenerator(depth=shape.codes, max_bits=8, max_cols=20)
    results = run(dut, fmap, jobs, seed=12, ready=0.5)
    for (_, window, cols, take, cut), (got, _) in zip(jobs, results):
        want = expected_codes(fmap, shape, window, take // cols, cols)
        assert got == want[:len(got)] and len(got) == (take if cut is None else cut)


def test_rewrite_then_generate():
    """A second map written over the first (another shape): the codes are the new map's."""
    shape1, shape2 = FmapShape(2, 3, 3), FmapShape(1, 4, 4)
    rng = np.random.default_rng(21)
    fmap1, fmap2 = random_map(shape1, 2, rng), random_map(shape2, 2, rng)
    window = Window(3, 1, 1, PATCH, 3, 0, 0, 0)
    dut = WindowGenerator(depth=18, max_bits=2, max_cols=18)
    (got1, _), = run(dut, fmap1, [(shape1, window, 18, 18 * 9, None)], seed=22)
    check(fmap1, shape1, window, 18, 9, got1)
    # A fresh simulation writes the second map over a first one of random codes.
    dut = WindowGenerator(depth=18, max_bits=2, max_cols=18)
    window2 = Window(3, 1, 1, PATCH, 4, 0, 0, 0)
    merged = np.concatenate([fmap2, rng.integers(0, 4, size=2)])
    (got2, _), = run(dut, merged, [(shape2, window2, 9, 9 * 16, None)], seed=23)
    check(fmap2, shape2, window2, 9, 16, got2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=0, max_bits=2, max_cols=4), "depth must be in 1..65535"),
    (dict(depth=65536, max_bits=2, max_cols=4), "depth must be in 1..65535"),
    (dict(depth=16, max_bits=0, max_cols=4), "max_bits must be >= 1"),
    (dict(depth=16, max_bits=2, max_cols=0), "max_cols must be >= 1"),
    (dict(depth=16, max_bits=2, max_cols=True), "max_cols must be an integer"),
])
def test_parameters_are_checked(kwargs, message):
    with unelaborated(), pytest.raises(ValueError, match=message):
        WindowGenerator(**kwargs)


def test_ports():
    with unelaborated():
        dut = WindowGenerator(depth=300, max_bits=6, max_cols=40)
        assert len(dut.write.payload.addr) == 9 and len(dut.write.payload.code) == 6
        assert (len(dut.shape.channels), len(dut.shape.height), len(dut.shape.width)) == (16, 8, 8)
        assert len(dut.window.kernel) == 8 and len(dut.window.out_width) == 16
        assert len(dut.cols) == 6 and len(dut.o.payload) == 6
        del dut


def test_converts():
    """To RTLIL and Verilog (the map a memory, not flip-flops)."""
    text = rtlil.convert(standalone(WindowGenerator(depth=1000, max_bits=2, max_cols=64)), name="top")
    assert "$mem" in text and "write__ready" not in text  # the constant ready is no port
    assert "module top" in verilog.convert(standalone(WindowGenerator(depth=1, max_bits=1, max_cols=1)), name="top")
