"""cocotb tests of :class:`hw.core.TrainingCore` against :class:`sw.core_model.CoreModel`.

Run through ``tb/test_core_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``params`` (the core's constructor parameters but ``idle_timeout``),
``timeout`` (its ``idle_timeout`` in cycles), ``seed``, ``vectors`` (random
vectors per GEMM of :func:`gemm`), ``fuzz_steps`` and, optionally,
``window_scripts`` (how many :func:`~sw.core_scripts.window_script`\\ s
:func:`windows` replays on a core with a feature map; default 1).

Request bytes (:mod:`sw.core_scripts`) go in through the ``rx`` byte stream
with random valid gaps, reply bytes come out of ``tx`` under random
back-pressure, and the scoreboard compares them byte for byte with the
model's replies to the same bytes.  The module is not named ``test_*.py``, so
pytest never imports it.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from sim.cocotb_runner import tb_config
from sw import protocol as P
from tb.common import Scoreboard, StreamDriver, StreamMonitor, reset, start_clock
from sw.contract.window import PATCH, Window
from sw.core_scripts import (Idle, Reset, act_run_frame, act_script, bad_requests, bad_sums_requests,
                             bad_thresholds_requests, bad_window_requests, codes, describe_replies, expected_replies,
                             fmap_frames, frame, fuzz_script, gemm_script, load_frames, packed_script, run_frame,
                             sums_script, window_run_frame, window_script, window_vectors_per_frame)


class Bench:
    """Drives scripts into the core and checks its replies against the model."""

    def __init__(self, dut, seed: int, *, gap: float = 0.3, stall: float = 0.3):
        config = tb_config()
        self.dut = dut
        self.params = config["params"]
        self.timeout = config["timeout"]
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.driver = StreamDriver(dut, "rx", rng=random.Random(seed), gap=gap)
        self.monitor = StreamMonitor(dut, "tx", rng=random.Random(seed + 1), stall=stall)
        self.scoreboard = Scoreboard("core", dut._log, show=3)
        self.stats = {}

    async def start(self):
        start_clock(self.dut)
        await reset(self.dut)
        self.monitor.start()

    async def run(self, script, *, max_cycles: int = 2_000_000) -> list[list[int]]:
        """Send ``script``; the reply bytes of its last reset-separated
        segment must equal the model's, earlier segments (cut by a reset)
        must be prefixes of theirs.  Returns the bytes received per segment."""
        want = expected_replies(script, self.params, self.timeout, self.stats)
        got = []
        for step in script:
            if isinstance(step, Idle):
                if step.cycles:
                    await ClockCycles(self.dut.clk, step.cycles)
            elif isinstance(step, Reset):
                self.monitor.stop()
                got.append(list(self.monitor.received))
                self.monitor.received.clear()
                await reset(self.dut)
                self.monitor.start()
            else:
                await self.driver.send(list(step))
        await self.monitor.wait_for(len(want[-1]), timeout_cycles=max_cycles)
        await ClockCycles(self.dut.clk, 50)  # nothing more may come out
        got.append(list(self.monitor.received))
        self.monitor.received.clear()
        for segment, expected in zip(got[:-1], want[:-1]):
            self.scoreboard.check(list(expected), segment, prefix=True)
        try:
            self.scoreboard.check(list(want[-1]), got[-1])
        except AssertionError:
            self.dut._log.error("core replies:  %s", describe_replies(bytes(got[-1])))
            self.dut._log.error("model replies: %s", describe_replies(bytes(want[-1])))
            raise
        return got

    def summary(self, name: str) -> None:
        self.dut._log.info("%s: %d reply bytes checked; %d RUN vectors (%d MACs, %d activation codes), "
                           "%d requests, %d error replies, %d idle drops", name, self.scoreboard.checked,
                           self.stats.get("vectors", 0), self.stats.get("macs", 0),
                           self.stats.get("activations", 0), self.stats.get("frames", 0),
                           self.stats.get("errors", 0), self.stats.get("idle_drops", 0))


def signedness_mixes(max_bits: int):
    """(m_bits, m_signed, v_bits, v_signed): every signedness pair, 1 and max bits."""
    mid = max(1, max_bits // 2)
    return [(1, True, 1, True), (max_bits, True, max_bits, True), (max_bits, False, 1, False),
            (1, False, max_bits, True), (mid, True, max(1, max_bits - 1), False),
            (max(1, max_bits - 2), False, mid, True)]


@cocotb.test()
async def gemm(dut):
    """For each bit width / signedness mix: a random matrix (ragged shape,
    loaded over stale memory) and ``vectors`` random vectors."""
    config = tb_config()
    bench = Bench(dut, config["seed"])
    await bench.start()
    params = bench.params
    rng = bench.rng
    script = []
    for index, (m_bits, m_signed, v_bits, v_signed) in enumerate(signedness_mixes(params["max_bits"])):
        rows = params["max_rows"] if index % 2 == 0 else int(rng.integers(1, params["max_rows"] + 1))
        cols = params["max_cols"] if index % 3 == 0 else int(rng.integers(1, params["max_cols"] + 1))
        script += gemm_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, config["vectors"],
                              chunk=None if index % 2 else int(rng.integers(1, 40)), params=params)
    await bench.run(script)
    bench.summary("gemm")


@cocotb.test()
async def errors_garbage_timeout(dut):
    """Every error of the protocol, garbage between frames, truncated frames
    dropped by the idle timeout, a pause just under it."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 10)
    await bench.start()
    params, timeout = bench.params, bench.timeout
    pick = random.Random(config["seed"])
    noise = lambda n: bytes(pick.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))
    script = []
    for _, request in bad_requests(params) + bad_thresholds_requests(params) + bad_sums_requests(params):
        script += [noise(pick.randrange(0, 4)), request]
    good = gemm_script(bench.rng, 3, 5, 2, True, 2, False, 2, params=params)
    ping = frame(P.Cmd.PING, tag=0x42)
    script += [good[0][:9], Idle(timeout + 5), ping[:3], Idle(timeout), *good,
               good[-1][:8], Idle(timeout - 10), good[-1][8:], bytes([P.SYNC, 0x01, 0x02]), ping]
    await bench.run(script)
    bench.summary("errors")


@cocotb.test()
async def activation(dut):
    """For each activation width of the core (none: LOAD_THRESHOLDS and the
    activate flag refused): a random matrix (bit width and signedness
    varied), its thresholds (ties, accumulator edges, int32 extremes,
    rows of direction -1 and unsorted rows) one or several rows per frame, and
    ``vectors`` activated RUN vectors; then a reset in the middle of an
    activated RUN, and the exchange again."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 40)
    await bench.start()
    params, rng = bench.params, bench.rng
    rows, cols, bits = params["max_rows"], params["max_cols"], params["max_bits"]
    script = []
    for a_bits in range(1, params.get("max_act_bits", 0) + 1):
        m_bits, v_bits = (bits, max(1, bits - 1)) if a_bits % 2 else (1, bits)
        script += act_script(rng, rows if a_bits % 2 else int(rng.integers(1, rows + 1)), cols, m_bits,
                             a_bits < 3, v_bits, a_bits % 2 == 0, a_bits, config["vectors"],
                             t_chunk=None if a_bits % 2 else 1, params=params)
    if not params.get("max_act_bits"):
        script += gemm_script(rng, rows, cols, bits, True, bits, False, 2, params=params)
        script += [data for _, data in bad_thresholds_requests(params)]
        await bench.run(script)
    else:
        a_bits = params["max_act_bits"]
        setup = act_script(rng, rows, cols, bits, True, bits, False, a_bits, 2, params=params)
        run = act_run_frame(codes(rng, bits, (2, cols)), bits, True, tag=0xC3)
        cut = random.Random(config["seed"]).randrange(20, 150)
        await bench.run(script + setup + [run, Idle(cut), Reset(), run, frame(P.Cmd.PING)] + setup)
    bench.summary("activation")


@cocotb.test()
async def batch_sums(dut):
    """For each bit width / signedness mix on a core with batch sums: a batch of
    samples (a random matrix and ``vectors`` vectors each, scales at the extremes
    of mantissa and shift) accumulated into the sums at a random slot, read at
    two widths.  Without sums: both commands refused."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 50)
    await bench.start()
    params, rng = bench.params, bench.rng
    script = []
    if params.get("sum_slots"):
        for index, (m_bits, m_signed, v_bits, v_signed) in enumerate(signedness_mixes(params["max_bits"])):
            rows = params["max_rows"] if index % 2 == 0 else int(rng.integers(1, params["max_rows"] + 1))
            cols = params["max_cols"] if index % 3 == 0 else int(rng.integers(1, params["max_cols"] + 1))
            vectors = int(rng.integers(1, params["sum_slots"] // rows + 1))
            slot = int(rng.integers(0, params["sum_slots"] - vectors * rows + 1))
            script += sums_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, batch=1 + index % 3,
                                  vectors=vectors, slot=slot, params=params)
    script += [data for _, data in bad_sums_requests(params)]
    await bench.run(script)
    bench.summary("batch_sums")


@cocotb.test()
async def fuzz(dut):
    """Random valid and mutated requests (bit flips, truncations)."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 20, gap=0.2, stall=0.4)
    await bench.start()
    await bench.run(fuzz_script(config["seed"], config["fuzz_steps"], bench.params, timeout=bench.timeout))
    bench.summary("fuzz")


@cocotb.test()
async def reset_mid_run(dut):
    """A reset while a RUN is being answered forgets the matrix (NO_MATRIX,
    like a fresh model); then a good exchange."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 30, gap=0.1, stall=0.1)
    await bench.start()
    params = bench.params
    rows, cols, bits = params["max_rows"], params["max_cols"], params["max_bits"]
    matrix = codes(bench.rng, bits, (rows, cols))
    vectors = codes(bench.rng, bits, (1, cols))
    run = run_frame(vectors, bits, True)
    after = [run, frame(P.Cmd.PING)] + gemm_script(bench.rng, rows, cols, bits, True, bits, False, 2,
                                                   params=params)
    cut = random.Random(config["seed"]).randrange(20, 200)
    got = await bench.run(load_frames(matrix, bits, True, max_payload=params["max_payload"])
                          + [run, Idle(cut), Reset()] + after)
    dut._log.info("reset_mid_run: %d reply bytes before the reset (%d cycles into the RUN)",
                  len(got[0]), cut)
    bench.summary("reset_mid_run")


@cocotb.test()
async def windows(dut):
    """Feature maps (protocol 5).  On a core with one: ``window_scripts`` window scripts
    (LOAD_FMAP, then windowed RUNs, activated RUNs and ACCUMULATEs of both orders at every
    stride and pad of the scripts, from random starts, split where a reply fits, and the
    sums read), every window error with garbage between (:func:`bad_window_requests`:
    each check's first failing case, the state rules), then a reset in the middle of a
    windowed RUN (the map and matrix forgotten: refused like a fresh model) and a good
    windowed exchange.  On a core without one: the same error requests, refused as an
    unknown command and a bad flag."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 60)
    await bench.start()
    params, rng = bench.params, bench.rng
    pick = random.Random(config["seed"] + 60)
    noise = lambda n: bytes(pick.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))
    errors = []
    for _, request in bad_window_requests(params):
        errors += [noise(pick.randrange(0, 4)), request]
    if not params.get("fmap_codes"):
        await bench.run(errors)
        bench.summary("windows")
        return
    script = []
    for _ in range(config.get("window_scripts", 1)):
        script += window_script(rng, params=params)
    script += errors
    # A 1 x 5 x 6 map and a matrix of one 3 x 3 channel patch; RUNs of as many vectors as a reply holds.
    shape = (1, 5, 6)
    bits = params["max_bits"]
    window = Window(3, 1, 1, PATCH, 6)
    cols = 9 if params["max_cols"] >= 9 else 1
    window = window if cols == 9 else Window(1, 1, 0, PATCH, 6)
    setup = (fmap_frames(codes(rng, bits, (1, 30)).reshape(shape), bits, params=params)
             + load_frames(codes(rng, bits, (params["max_rows"], cols)), bits, True,
                           max_payload=params["max_payload"]))
    fit = window_vectors_per_frame(params["max_rows"], cols, bits, bits, params=params)
    run = window_run_frame(fit, bits, False, window, tag=0x5A)
    cut = pick.randrange(20, 150)
    got = await bench.run(script + setup + [run, Idle(cut), Reset(), run, frame(P.Cmd.PING)] + setup
                          + [run, window_run_frame(fit, bits, True, window.advanced(7), tag=0x5B)])
    dut._log.info("windows: %d reply bytes before the reset (%d cycles into the windowed RUN)", len(got[0]), cut)
    bench.summary("windows")


@cocotb.test()
async def window_fuzz(dut):
    """Window scripts mutated in place (a core with a feature map; skipped without): each
    request of ``window_scripts`` :func:`window_script`\\ s sent in order, a few with a bit
    flipped (a window field, a count, a map code, the CRC) or cut short and left to the
    idle timeout, so most windowed RUNs still meet a loaded map and matrix; then a PING.
    (:func:`fuzz` draws from a pool, where a windowed RUN rarely finds its map and matrix.)"""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 70, gap=0.2, stall=0.4)
    if not bench.params.get("fmap_codes"):
        dut._log.info("window_fuzz: no feature map on this core")
        return
    await bench.start()
    pick = random.Random(config["seed"] + 70)
    script = []
    for _ in range(config.get("window_scripts", 1)):
        for data in window_script(bench.rng, params=bench.params):
            data, kind = bytearray(data), pick.random()
            if kind < 0.08 and len(data) > 6:
                data[pick.randrange(1, len(data))] ^= 1 << pick.randrange(8)
            elif kind < 0.12:
                script += [bytes(data[:pick.randrange(1, len(data))]), Idle(bench.timeout + 3)]
                continue
            script.append(bytes(data))
    await bench.run(script + [frame(P.Cmd.PING, tag=0x77)])
    bench.summary("window_fuzz")


@cocotb.test()
async def packed(dut):
    """Packed accumulators (protocol 6).  On a core that packs: a :func:`packed_script` (RUNs
    with FLAG_PACKED at every width pair's exact bound, partial last bytes, replies split
    where their packed size fits) with garbage between some requests, then every protocol
    error (:func:`bad_requests`: the packed flag with activate refused, a packed RUN
    answered).  On a core that does not: the error requests, the packed RUN refused too."""
    config = tb_config()
    bench = Bench(dut, config["seed"] + 80)
    await bench.start()
    pick = random.Random(config["seed"] + 80)
    noise = lambda n: bytes(pick.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))
    script = packed_script(bench.rng, params=bench.params) if bench.params.get("packed_accumulators") else []
    for _, request in bad_requests(bench.params):
        script += [noise(pick.randrange(0, 3)), request]
    await bench.run(script)
    bench.summary("packed")
