"""cocotb tests of :class:`hw.window.WindowGenerator` against ``sw.contract.window.window_index``.

Run through ``tb/test_window_tb.py`` on the unit as a standalone module
(:func:`hw.catalog.standalone`: its always-ready ``write`` has no
``ready``); :func:`sim.cocotb_runner.tb_config` gives ``depth``,
``max_bits``, ``max_cols``, ``latency``, ``seed``, ``jobs`` (windows per
map in :func:`random_windows`) and ``maps``.

The bench plays the core: it writes a random map through ``write`` (a
random address order, decoy writes overwritten later, random idle cycles
with garbage on the payload), sets ``shape``, ``window`` and ``cols``,
pulses ``start`` and takes codes from ``o`` under random back-pressure,
checking each cycle that a code offered and not taken stays offered,
unchanged.  Every expected code is the contract's: ``map[idx] if inside
else 0`` with ``idx, inside = window_index(shape, window, vector, col)``
over the codes the bench wrote; nothing expected comes from the unit.  The
module is not named ``test_*.py``, so pytest never imports it.
"""

from __future__ import annotations

import math
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.window import SHAPE_LAYOUT, WINDOW_LAYOUT
from sim.cocotb_runner import tb_config
from sw.contract.link import WINDOW_FIELDS
from sw.contract.window import MAX_STRIDE, ORDERS, PATCH, FmapShape, Window, window_index
from tb.common import Scoreboard, reset, start_clock

#: Window fields in the order of :meth:`Window.fields`.
FIELDS = WINDOW_FIELDS.names


def pack(layout, values: dict) -> int:
    """``values`` (field name -> int) as the flat vector of the struct port of ``layout``."""
    word = 0
    for name, field in layout:
        width = field.width
        value = values[name]
        assert 0 <= value < 1 << width, (name, value)
        word |= value << field.offset
    return word


def expected_codes(memory: np.ndarray, shape: FmapShape, window: Window, vectors: int, cols: int) -> list[int]:
    """The contract's codes of ``vectors`` vectors of ``cols`` codes, in stream order,
    read from ``memory`` (what the bench wrote; -1 where it wrote nothing)."""
    vector = np.arange(vectors, dtype=np.int64)[:, None]
    col = np.arange(cols, dtype=np.int64)[None, :]
    idx, inside = np.broadcast_arrays(*window_index(shape, window, vector, col))
    codes = np.where(inside, memory[np.where(inside, idx, 0)], 0).reshape(-1)
    assert (codes >= 0).all(), "a code inside the map that the bench never wrote"
    return codes.tolist()


def random_shape(rng: random.Random, depth: int) -> FmapShape:
    """A map of at most ``depth`` codes (sides up to 255, the LOAD_FMAP byte): mostly
    squarish, now and then one row, one column or the widest row the memory holds."""
    channels = rng.randint(1, min(depth, 6))
    plane = depth // channels
    side = math.isqrt(plane)
    kind = rng.random()
    if kind < 0.1:
        height, width = 1, rng.randint(1, min(255, plane))
    elif kind < 0.2:
        height, width = rng.randint(1, min(255, plane)), 1
    else:
        height = rng.randint(max(1, side // 2), min(255, side + side // 2, plane))
        width = rng.randint(max(1, plane // height // 3), min(255, plane // height))
    return FmapShape(channels, height, width)


def random_window(rng: random.Random, shape: FmapShape, order: int) -> Window:
    """A valid window of ``order`` on ``shape``: kernel 1..5, every stride, pad below the
    kernel, the natural output width or a random one, random starts; now and then a
    start far past the map (PATCH rows and columns near the 16-bit fields' top)."""
    kernel = rng.randint(1, 5)
    stride = rng.randint(1, MAX_STRIDE)
    pad = rng.randrange(kernel)
    natural = max(1, (shape.width + 2 * pad - kernel) // stride + 1)
    out_width = natural if rng.random() < 0.6 else rng.randint(1, natural + 4)
    channel = rng.randrange(shape.channels)
    if order == PATCH:
        out_h = max(1, (shape.height + 2 * pad - kernel) // stride + 1)
        y, x = rng.randrange(out_h + 1), rng.randrange(out_width)
        if rng.random() < 0.05:
            out_width, y, x = 65535, 65535 - rng.randrange(2), 65535 - 1 - rng.randrange(8)
    else:
        y, x = rng.randrange(kernel), rng.randrange(kernel)
    window = Window(kernel, stride, pad, order, out_width, channel, y, x)
    assert not window.problems(shape), window.problems(shape)
    return window


class WindowBench:
    """Drives the unit's ports; every read is in the ``ReadOnly`` phase, every write just
    after a rising edge (the timing discipline of :mod:`tb.common`)."""

    def __init__(self, dut, seed: int, *, stall: float = 0.3, write_gap: float = 0.3):
        config = tb_config()
        self.dut = dut
        self.depth, self.max_bits, self.max_cols = config["depth"], config["max_bits"], config["max_cols"]
        self.latency = config["latency"]
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.stall = stall
        self.write_gap = write_gap
        self.memory = np.full(self.depth, -1, dtype=np.int64)  # what the bench wrote
        self.scoreboard = Scoreboard("window", dut._log)
        self.patch_codes = self.shift_codes = 0

    async def start(self) -> None:
        dut = self.dut
        dut.write__valid.value = 0
        dut.write__payload.value = 0
        dut.start.value = 0
        dut.o__ready.value = 0
        dut.shape.value = 0
        dut.window.value = 0
        dut.cols.value = 0
        start_clock(dut)
        await reset(dut)

    def _write_word(self, addr: int, code: int) -> int:
        return addr | code << (self.depth - 1).bit_length()

    async def write_map(self, shape: FmapShape) -> np.ndarray:
        """Write a random map of ``shape`` (its codes at ``0 .. shape.codes - 1``; what lies
        beyond is left as it was): first a few decoy codes at random addresses, then every
        code once in a random order; ``write_gap`` idle cycles carry garbage payloads."""
        rng, top = self.rng, 1 << self.max_bits
        fmap = self.np_rng.integers(0, top, shape.codes)
        if rng.random() < 0.3:
            fmap[:] = rng.choice((0, top - 1))  # one uniform channel now and then
            fmap[rng.randrange(shape.codes)] = rng.randrange(top)
        order = list(range(shape.codes))
        rng.shuffle(order)
        decoys = [(rng.randrange(shape.codes), rng.randrange(top)) for _ in range(rng.randrange(4))]
        for addr, code in decoys + [(a, int(fmap[a])) for a in order]:
            while rng.random() < self.write_gap:
                self.dut.write__valid.value = 0
                self.dut.write__payload.value = self._write_word(rng.randrange(self.depth), rng.randrange(top))
                await RisingEdge(self.dut.clk)
            self.dut.write__valid.value = 1
            self.dut.write__payload.value = self._write_word(addr, code)
            self.memory[addr] = code
            await RisingEdge(self.dut.clk)
        self.dut.write__valid.value = 0
        return fmap

    async def job(self, shape: FmapShape, window: Window, cols: int, take: int, *,
                  stall: "float | None" = None) -> tuple[list[int], "int | None", int]:
        """Set the inputs, pulse ``start`` (``o.ready`` random in that cycle: nothing taken
        then) and take ``take`` codes, ``o.ready`` low with probability ``stall``.  Returns
        the codes, the cycle (after the start cycle) of the first ``o.valid`` and the
        cycles spent; leaves ``o.ready`` low, just after a rising edge."""
        dut, rng = self.dut, self.rng
        stall = self.stall if stall is None else stall
        dut.shape.value = pack(SHAPE_LAYOUT, {"channels": shape.channels, "height": shape.height,
                                              "width": shape.width})
        dut.window.value = pack(WINDOW_LAYOUT, dict(zip(FIELDS, window.fields())))
        dut.cols.value = cols
        dut.start.value = 1
        dut.o__ready.value = rng.random() < 0.5
        await RisingEdge(dut.clk)
        dut.start.value = 0
        got, first, held, cycles = [], None, None, 0
        limit = 20 * (take + 10) if stall < 0.9 else 200 * (take + 10)
        while len(got) < take:
            cycles += 1
            assert cycles < limit, f"the unit stopped: {len(got)} of {take} codes in {cycles} cycles"
            ready = not (stall and rng.random() < stall)
            dut.o__ready.value = int(ready)
            await ReadOnly()
            valid = int(dut.o__valid.value)
            payload = int(dut.o__payload.value) if valid else None
            if held is not None:
                assert valid and payload == held, (f"code {len(got)}: {held} offered and not taken, "
                                                   f"then valid={valid} payload={payload}")
            if valid and first is None:
                first = cycles
            if valid and ready:
                got.append(payload)
            held = payload if valid and not ready else None
            await RisingEdge(dut.clk)
        dut.o__ready.value = 0
        return got, first, cycles

    def check(self, shape, window, cols, got, *, vectors: "int | None" = None) -> None:
        """``got`` equals the contract's first ``len(got)`` codes (all the codes of
        ``vectors`` vectors, if given)."""
        if vectors is None:
            want = expected_codes(self.memory, shape, window, -(-len(got) // cols), cols)[:len(got)]
        else:
            want = expected_codes(self.memory, shape, window, vectors, cols)
        self.scoreboard.check(want, got, describe=lambda i: f"{shape}, {window}, cols {cols}: "
                                                            f"vector {i // cols} col {i % cols}")
        if window.order == PATCH:
            self.patch_codes += len(got)
        else:
            self.shift_codes += len(got)

    def summary(self, name: str) -> None:
        self.dut._log.info("%s: %d codes checked (%d PATCH, %d SHIFT)", name, self.scoreboard.checked,
                           self.patch_codes, self.shift_codes)


def random_take(rng: random.Random, shape: FmapShape, window: Window, cols: int, budget: int) -> int:
    """Codes to take: whole vectors, past the map's last position (PATCH) or tap (SHIFT)
    where the budget allows, else as many as fit it."""
    if window.order == PATCH:
        out_h = (shape.height + 2 * window.pad - window.kernel) // window.stride + 2
        vectors = window.out_width * out_h + 2 if window.out_width < 1000 else 12
    else:
        vectors = shape.channels * window.kernel ** 2 + 2
    return max(cols, min(vectors * cols, budget - rng.randrange(budget // 4 + 1)))


async def random_windows(bench: WindowBench, maps: int, jobs: int, budget: int) -> None:
    """``maps`` random maps in turn (later ones written over earlier ones, shapes varied),
    ``jobs`` windows of each, the orders alternating, ``cols`` from 1 to ``max_cols``."""
    rng = bench.rng
    for _ in range(maps):
        shape = random_shape(rng, bench.depth)
        await bench.write_map(shape)
        await ClockCycles(bench.dut.clk, rng.randrange(3))
        for index in range(jobs):
            window = random_window(rng, shape, ORDERS[index % 2])
            cols = rng.choice((1, window.kernel ** 2, rng.randint(1, bench.max_cols), bench.max_cols))
            cols = min(cols, bench.max_cols)
            take = random_take(rng, shape, window, cols, budget)
            got, _, _ = await bench.job(shape, window, cols, take)
            bench.check(shape, window, cols, got)


@cocotb.test()
async def random_stream(dut):
    """``maps`` random maps, ``jobs`` random windows each (both orders, kernels 1..5,
    strides 1..4, every pad, starts anywhere), each job's codes taken under random
    back-pressure and started back to back on the previous job's."""
    config = tb_config()
    bench = WindowBench(dut, config["seed"], stall=0.3)
    await bench.start()
    await random_windows(bench, config["maps"], config["jobs"], budget=400)
    bench.summary("random_stream")


@cocotb.test()
async def full_rate(dut):
    """``o.ready`` always high: the first code ``latency`` cycles after the ``start`` cycle,
    then one code per cycle; a PATCH and a SHIFT window each."""
    config = tb_config()
    bench = WindowBench(dut, config["seed"] + 10, stall=0.0, write_gap=0.0)
    await bench.start()
    rng = bench.rng
    shape = random_shape(rng, bench.depth)
    await bench.write_map(shape)
    for order in ORDERS * 2:
        window = random_window(rng, shape, order)
        cols = rng.randint(1, bench.max_cols)
        take = random_take(rng, shape, window, cols, 300)
        got, first, cycles = await bench.job(shape, window, cols, take)
        bench.check(shape, window, cols, got)
        assert first == bench.latency, f"first code {first} cycles after start, documented {bench.latency}"
        assert cycles == bench.latency + take - 1, f"{take} codes in {cycles} cycles: not one a cycle"
    bench.summary("full_rate")


@cocotb.test()
async def restarts(dut):
    """``start`` in the middle of a stream (codes in flight, some held under back-pressure),
    after 0, 1, a few or many codes: the next job's codes come from its vector 0, nothing
    of the cut job's; jobs alternate between windows and ``cols`` on one map."""
    config = tb_config()
    bench = WindowBench(dut, config["seed"] + 20, stall=0.5)
    await bench.start()
    rng = bench.rng
    shape = random_shape(rng, bench.depth)
    await bench.write_map(shape)
    jobs = [(w, min(bench.max_cols, rng.randint(1, bench.max_cols)))
            for w in (random_window(rng, shape, order) for order in ORDERS * 3)]
    for _ in range(config["jobs"] * 2):
        window, cols = rng.choice(jobs)
        whole = random_take(rng, shape, window, cols, 200)
        cut = rng.choice((0, 1, 2, rng.randint(3, 12), rng.randint(1, whole), whole))
        got, _, _ = await bench.job(shape, window, cols, cut)
        bench.check(shape, window, cols, got)
    bench.summary("restarts")


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset while codes are in flight: ``o.valid`` low right after it and no code until the
    next ``start``; then a new map written and its windows exact."""
    config = tb_config()
    bench = WindowBench(dut, config["seed"] + 30, stall=0.4)
    await bench.start()
    rng = bench.rng
    for _ in range(3):
        shape = random_shape(rng, bench.depth)
        await bench.write_map(shape)
        window = random_window(rng, shape, rng.choice(ORDERS))
        cols = rng.randint(1, bench.max_cols)
        got, _, _ = await bench.job(shape, window, cols, rng.randint(1, 60))
        bench.check(shape, window, cols, got)
        # codes keep coming while ready toggles; then the reset cuts them
        dut.o__ready.value = 1
        await ClockCycles(dut.clk, rng.randint(0, 5))
        dut.o__ready.value = 0
        await reset(dut, 3)
        for _ in range(20):
            dut.o__ready.value = rng.random() < 0.5
            await ReadOnly()
            assert int(dut.o__valid.value) == 0, "o.valid without a start after reset"
            await RisingEdge(dut.clk)
        dut.o__ready.value = 0
    await random_windows(bench, 1, 4, budget=200)
    bench.summary("reset_mid_stream")
