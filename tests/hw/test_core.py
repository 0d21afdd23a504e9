"""hw.core.TrainingCore against sw.core_model.CoreModel, byte for byte, in the Amaranth simulator.

Every test builds request bytes with :mod:`sw.protocol`'s encoders (or
breaks them on purpose), feeds the same bytes to the core (through its
``rx`` stream, with random valid gaps) and to the model, and requires the
core's reply bytes (``tx``, with random back-pressure) to equal the
model's.  Idle gaps longer than the core's ``idle_timeout`` call the
model's :meth:`~sw.core_model.CoreModel.idle`; a hardware reset starts a
fresh model.
"""

from __future__ import annotations

import random
from math import ceil

import numpy as np
import pytest
import torch
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.core import CORE_DEFAULTS, TrainingCore, UARTCore
from hw.uart import UARTReceiver, UARTTransmitter
from sim.amaranth_sim import stream_get, stream_put_all
from sim.core_transport import AmaranthCoreTransport
from sw import protocol as P
from sw.bitplanes import signed_matmul
from sw.contract.codes import levels_or_none
from sw.core_model import CoreModel
from sw.core_scripts import (INT32_MAX, INT32_MIN, SMALL, SUMS, WINDOWS, Idle, Reset, accumulate_frames,
                             act_run_frame, act_script,
                             act_vectors_per_frame, bad_requests, bad_sums_requests, bad_thresholds_requests,
                             bad_window_requests, codes, describe_replies, expected_replies, frame, fuzz_script,
                             gemm_script, load_frames, packed_script, read_sums_frames, run_frame, sums_script,
                             threshold_frames,
                             window_script)
from sw.driver import CoreClient
from sw.numeric import apply_thresholds
from tests.hw.helpers import unelaborated, with_sync_domain

TIMEOUT = 300  # idle_timeout in cycles: far above any random gap below


def run_core(script, params=SMALL, *, seed=0, gap=0.3, stall=0.3, timeout=TIMEOUT,
             max_cycles=400_000):
    """Simulate ``script`` (bytes, :class:`Idle`, :class:`Reset` steps) on a
    core; returns the reply bytes per reset-separated segment, the model's,
    and the cycles it took."""
    dut = TrainingCore(**params, idle_timeout=timeout)
    top, cd = with_sync_domain(dut)
    want = expected_replies(script, params, timeout)
    got = [bytearray()]
    state = {"cycles": 0, "done": False}

    async def producer(ctx):
        rng = random.Random(seed)
        for step in script:
            if isinstance(step, Idle):
                if step.cycles:
                    await ctx.tick().repeat(step.cycles)
            elif isinstance(step, Reset):
                ctx.set(cd.rst, 1)
                for _ in range(2):
                    await ctx.tick()  # (`repeat` would raise DomainReset)
                ctx.set(cd.rst, 0)
                got.append(bytearray())
            else:
                await stream_put_all(ctx, dut.rx, bytes(step), rng=rng, gap=gap)
        # Wait for the last segment's replies, then make sure nothing follows.
        for _ in range(max_cycles):
            if len(got[-1]) >= len(want[-1]):
                break
            await ctx.tick()
        await ctx.tick().repeat(50)
        state["done"] = True

    async def consumer(ctx):
        # Random back-pressure on tx; a byte is taken at an edge where
        # valid and ready are both high (and reset is not).
        rng = random.Random(seed + 1)
        ctx.set(dut.tx.ready, rng.random() >= stall)
        async for _, reset, ready, valid, payload in ctx.tick().sample(dut.tx.ready, dut.tx.valid,
                                                                        dut.tx.payload):
            if ready and valid and not reset:
                got[-1].append(payload)
            state["cycles"] += 1
            if state["done"]:
                break
            ctx.set(dut.tx.ready, rng.random() >= stall)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return [bytes(g) for g in got], want, state["cycles"]


def check(script, params=SMALL, **kwargs):
    """Run ``script``: the last segment must equal the model's replies exactly,
    earlier (reset-cut) segments must be prefixes of theirs."""
    got, want, cycles = run_core(script, params, **kwargs)
    assert len(got) == len(want)
    for g, w in zip(got[:-1], want[:-1]):
        assert w.startswith(g), (g.hex(), w.hex())
    assert_replies_equal(got[-1], want[-1])
    return got, cycles


def assert_replies_equal(got: bytes, want: bytes):
    if got != want:
        raise AssertionError(f"reply bytes differ:\n core:  {describe_replies(got)}\n"
                             f" model: {describe_replies(want)}")


# --------------------------------------------------------------------------- requests

# --------------------------------------------------------------------------- tests

def test_ping_reports_parameters():
    got, _ = check([frame(P.Cmd.PING, tag=7)])
    (reply,) = P.FrameDecoder().feed(got[-1])
    assert reply.tag == 7 and reply.code == P.Status.OK
    assert P.decode_ping_reply(reply.payload) == P.CoreInfo(P.PROTOCOL_VERSION, **SMALL)


# (m_bits, m_signed, v_bits, v_signed, rows, cols, vectors): every signedness
# pair, 1-bit and 8-bit sides, ragged folds and row groups, 1 x 1.
GEMMS = [
    (1, True, 1, True, 6, 12, 2),
    (8, True, 8, True, 5, 7, 2),
    (8, False, 8, False, 6, 12, 2),
    (1, False, 8, True, 3, 12, 3),
    (8, True, 1, False, 6, 9, 2),
    (2, True, 3, False, 4, 10, 3),
    (3, False, 2, True, 1, 1, 4),
    (5, True, 4, True, 2, 5, 3),
]


@pytest.mark.parametrize("m_bits, m_signed, v_bits, v_signed, rows, cols, vectors", GEMMS)
def test_run_matches_model(m_bits, m_signed, v_bits, v_signed, rows, cols, vectors):
    rng = np.random.default_rng(m_bits * 100 + v_bits * 10 + rows)
    # A full-size 8-bit matrix and vector first, so that the memories hold
    # stale codes past the tested shape (padding lanes must not count).
    dirty = gemm_script(rng, SMALL["max_rows"], SMALL["max_cols"], 8, True, 8, True, 1)
    script = gemm_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, vectors)
    check(dirty + script, seed=m_bits + v_bits)


OTHER_SHAPES = [
    dict(max_rows=3, max_cols=5, max_bits=4, pe=1, simd=1, max_payload=24, max_act_bits=1),  # scalar datapath
    dict(max_rows=7, max_cols=13, max_bits=6, pe=3, simd=5, max_payload=48, max_act_bits=3,
         vectors=2, popcount_stages=1, fetch_stages=1),  # nothing divides, tiles of two, pipelined
    dict(max_rows=4, max_cols=8, max_bits=1, pe=4, simd=8, max_payload=32, max_act_bits=0,
         vectors=3),  # 1-bit, no activation, tiles of three
    dict(max_rows=5, max_cols=6, max_bits=3, pe=5, simd=3, max_payload=72, max_act_bits=4),  # one row group
    # 130 columns of 8-bit codes: 4-byte accumulators (8 + 8 + 8 + 1 bits), 3 at 128 x 7 bits;
    # two drain chains
    dict(max_rows=4, max_cols=130, max_bits=8, pe=4, simd=32, max_payload=160, max_act_bits=0, drains=2),
    # the matrix in a single-port RAM (the UltraPlus's SPRAM elsewhere), tiles of four, a chain per row
    dict(max_rows=6, max_cols=20, max_bits=4, pe=2, simd=8, max_payload=96, max_act_bits=2, vectors=4,
         drains=2, matrix_memory="spram"),
]


@pytest.mark.parametrize("params", OTHER_SHAPES)
def test_other_shapes(params):
    """Other PE x SIMD foldings, code widths and activation stages: GEMMs at
    the limits and ragged, activated RUNs at every activation width, then
    every error."""
    rng = np.random.default_rng(params["pe"] * 10 + params["simd"])
    rows, cols, bits = params["max_rows"], params["max_cols"], params["max_bits"]
    script = gemm_script(rng, rows, cols, bits, True, bits, False, 2, params=params)
    script += gemm_script(rng, max(1, rows - 1), max(1, cols - 2), max(1, bits - 1), False, bits, True, 2,
                          chunk=5, params=params)
    for a_bits in range(1, params["max_act_bits"] + 1):
        script += act_script(rng, rows - a_bits % 2, cols, bits, a_bits % 2 == 0, max(1, bits - a_bits % 2),
                             True, a_bits, 3, params=params)
    script += [data for _, data in bad_requests(params) + bad_thresholds_requests(params)]
    check(script, params, seed=params["simd"])


def test_multi_frame_load_and_reload():
    """A matrix in odd-sized, unaligned chunks; RUN; a second matrix of
    another shape loaded over it; RUN again."""
    rng = np.random.default_rng(5)
    script = gemm_script(rng, 6, 12, 3, True, 2, False, 3, chunk=7)
    script += gemm_script(rng, 5, 11, 7, False, 5, True, 2, chunk=13)
    check(script, seed=3)


#: The cycle counts' cores: a configuration as it is, and with registers after its block RAMs'
#: reads (the result banks' among them: ``result_stages`` 1).
TIMED = ("plain", "staged")


def timed(params: dict, core: str) -> dict:
    """``params`` as the cycle counts' ``core`` (one of :data:`TIMED`)."""
    return dict(params, fetch_stages=1) if core == "staged" else params


def hidden(count: int, drain: float, load: float) -> float:
    """Cycles of ``count`` one-vector tiles' drains hidden: each but the last drains
    while the next tile loads (its TILE, VECTOR's first cycle, ``load`` cycles of
    unpacking and START), and that tile computes once both are done."""
    return (count - 1) * min(drain, 3 + load)


@pytest.mark.parametrize("core", TIMED)
@pytest.mark.parametrize("m_bits, v_bits, count, cols", [(4, 3, 2, 12), (8, 8, 1, 12), (2, 5, 2, 7)])
def test_full_rate_run_cycles(m_bits, v_bits, count, cols, core):
    """No gaps, no stalls: a RUN exchange takes its request bytes, the
    unpacking (``1 + v_bits / 8`` cycles per code, ``v_bits`` per fold
    to write its planes), the compute (``run_cycles``), the reply (per tile, its
    drain: the first read and its ``result_stages``, then ``width`` cycles per value,
    a byte a cycle, while the next tile loads) and a few cycles of handshakes."""
    params = timed(SMALL, core)
    rng = np.random.default_rng(9)
    load = load_frames(codes(rng, m_bits, (6, cols)), m_bits, True)
    run = run_frame(codes(rng, v_bits, (count, cols)), v_bits, False)
    _, load_cycles = check(load, params, gap=0, stall=0)
    _, cycles = check(load + [run], params, gap=0, stall=0)
    with unelaborated():
        dut = TrainingCore(**params)
        compute, stages, request = dut.run_cycles(count, 6, cols, m_bits, v_bits), dut.result_stages, dut.request_stages
        del dut
    assert stages == request == params.get("fetch_stages", 0)
    unpack_tile = cols * (1 + v_bits / 8) + ceil(cols / SMALL["simd"]) * v_bits
    width = P.accumulator_width(cols, m_bits, v_bits)
    drain = 1 + stages + width * 6
    reply = P.OVERHEAD + P.RUN_REPLY_HEADER + drain * count - hidden(count, drain, unpack_tile)
    tiles = 3 * count  # states TILE and START of each one-vector tile, and VECTOR's first cycle
    rest = cycles - load_cycles - len(run) - request - count * unpack_tile - compute - reply - tiles
    # The code slice (a skid buffer) lets the unpacker run up to two codes
    # ahead while a fold's planes are written; the last value's bytes leave after DONE's.
    ahead = count * ceil(cols / SMALL["simd"]) * 2 * (1 + v_bits / 8)
    assert -ahead <= rest <= 7, rest


def test_every_error_matches_model():
    requests = bad_requests() + bad_thresholds_requests()
    script = [data for _, data in requests]
    # Each must really be what its name says: one reply per request here.
    model = CoreModel(**SMALL)
    for name, data in requests:
        replies = P.FrameDecoder().feed(model.feed(data))
        assert len(replies) == 1, name
    check(script, seed=11)


def test_every_error_status_is_exercised():
    """The list above covers every (status, detail) the protocol defines."""
    def seen(requests, params=SMALL):
        model, out = CoreModel(**params), set()
        for _, data in requests:
            for reply in P.FrameDecoder().feed(model.feed(data)):
                out.add((reply.payload[0] if reply.code else data[1], reply.code,
                         reply.payload[1] if reply.code else 0))
        return out

    everything = {(P.Status.BAD_CRC, 0), (P.Status.BAD_LENGTH, 0), (P.Status.BAD_COMMAND, 0)}
    everything |= {(P.Status.BAD_PARAMS, d) for d in (P.Detail.ROWS, P.Detail.COLS, P.Detail.BITS,
                                                      P.Detail.FLAGS, P.Detail.COUNT, P.Detail.REPLY_TOO_BIG)}
    everything |= {(P.Status.BAD_STATE, P.Detail.SEQUENCE), (P.Status.BAD_STATE, P.Detail.NO_MATRIX)}
    got = {(status, detail) for _, status, detail in seen(bad_requests())}
    assert everything <= got, everything - got
    # The activation stage's own list: each of its errors, for LOAD_THRESHOLDS and for RUN.
    got = seen(bad_thresholds_requests())
    thresholds = {(P.Cmd.LOAD_THRESHOLDS, P.Status.BAD_LENGTH, 0), (P.Cmd.LOAD_THRESHOLDS, P.Status.OK, 0)}
    thresholds |= {(P.Cmd.LOAD_THRESHOLDS, P.Status.BAD_PARAMS, d)
                   for d in (P.Detail.BITS, P.Detail.FLAGS, P.Detail.COUNT)}
    thresholds |= {(P.Cmd.LOAD_THRESHOLDS, P.Status.BAD_STATE, d) for d in (P.Detail.NO_MATRIX, P.Detail.SEQUENCE)}
    thresholds |= {(P.Cmd.RUN, P.Status.BAD_STATE, d) for d in (P.Detail.NO_MATRIX, P.Detail.NO_THRESHOLDS)}
    thresholds |= {(P.Cmd.RUN, P.Status.BAD_PARAMS, d)
                   for d in (P.Detail.BITS, P.Detail.FLAGS, P.Detail.COUNT, P.Detail.REPLY_TOO_BIG)}
    thresholds |= {(P.Cmd.RUN, P.Status.BAD_LENGTH, 0), (P.Cmd.RUN, P.Status.OK, 0)}
    assert thresholds <= got, thresholds - got
    # Without the stage: LOAD_THRESHOLDS is unknown, the activate flag a bad flag.
    plain = dict(SMALL, max_act_bits=0)
    got = seen(bad_thresholds_requests(plain), plain)
    assert {status for cmd, status, _ in got if cmd == P.Cmd.LOAD_THRESHOLDS} == {P.Status.BAD_COMMAND}
    assert (P.Cmd.RUN, P.Status.BAD_PARAMS, P.Detail.FLAGS) in got
    assert (P.Cmd.RUN, P.Status.BAD_STATE, P.Detail.NO_THRESHOLDS) not in got


def test_garbage_between_frames():
    rng = random.Random(4)
    noise = lambda n: bytes(rng.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))
    nprng = np.random.default_rng(4)
    good = gemm_script(nprng, 3, 5, 2, True, 2, False, 2)
    script = []
    for request in [frame(P.Cmd.PING)] + good + [frame(P.Cmd.RESET)]:
        script += [noise(rng.randrange(0, 6)), request]
    # Garbage holding SYNC bytes: stray frames the core and the model read alike.
    script += [bytes([P.SYNC, 0x01, 0x02, 0x00, 0x00, 0x12, 0x34]), frame(P.Cmd.PING, tag=2),
               bytes([0x00, P.SYNC, P.SYNC]), frame(P.Cmd.PING, tag=3)]
    check(script, seed=4)


def test_truncated_frame_then_idle_timeout():
    """A request cut short is dropped after the idle timeout; the next frame
    is answered.  A gap just under the timeout keeps the frame alive."""
    rng = np.random.default_rng(6)
    matrix = codes(rng, 2, (3, 4))
    (load,) = load_frames(matrix, 2, False)
    vecs = codes(rng, 2, (2, 4))
    run = run_frame(vecs, 2, True, tag=4)
    script = [
        load[:9], Idle(TIMEOUT + 5),  # truncated in the payload
        run[:3], Idle(TIMEOUT + 5),  # truncated in the header
        bytes([P.SYNC]), Idle(TIMEOUT),  # just SYNC, exactly the timeout
        load,
        run[:10], Idle(TIMEOUT - 10), run[10:],  # a pause under the timeout
        frame(P.Cmd.PING, tag=5)[:-1], Idle(TIMEOUT + 1), frame(P.Cmd.PING, tag=6),
    ]
    # Without the drops, the truncated bytes would swallow the good frames.
    assert expected_replies([s for s in script if not isinstance(s, Idle)], SMALL, TIMEOUT) != \
        expected_replies(script, SMALL, TIMEOUT)
    check(script, gap=0, stall=0.2)


@pytest.mark.parametrize("when", ["receiving", "computing", "replying"])
def test_reset_mid_transfer(when):
    """A hardware reset mid-request or mid-RUN: the matrix is forgotten
    (RUN answers NO_MATRIX, like a fresh model), then a good exchange."""
    rng = np.random.default_rng(8)
    matrix = codes(rng, 8, (6, 12))
    load = load_frames(matrix, 8, True)
    vecs = codes(rng, 8, (2, 12))
    run = run_frame(vecs, 8, False)
    if when == "receiving":
        before = load[:-1] + [load[-1][:20]]
    else:
        before = load + [run]
    # Cycles after the last byte before the reset: mid-frame; in the first
    # group's compute loop (reply header and width sent, no accumulator yet); mid-reply.
    cut = {"receiving": 0, "computing": 40, "replying": 700}[when]
    after = [frame(P.Cmd.RUN, P.encode_run(8, False, vecs)), frame(P.Cmd.PING)] + \
        gemm_script(rng, 4, 6, 3, False, 4, True, 2)
    got, _ = check(before + [Idle(cut), Reset()] + after, gap=0.1, stall=0.1)
    model = CoreModel(**SMALL)
    loads = b"".join(model.feed(f) for f in load[:-1])
    if when == "receiving":
        assert got[0] == loads
        return
    loads += model.feed(load[-1])
    whole = loads + model.feed(run)
    header = P.HEADER_SIZE + P.RUN_REPLY_HEADER  # SYNC STATUS TAG LEN, the width byte
    if when == "computing":
        assert got[0] == whole[:len(loads) + header]
    else:
        assert len(loads) + header < len(got[0]) < len(whole)


# --------------------------------------------------------------------------- activation stage

# (m_bits, m_signed, v_bits, v_signed, a_bits, rows, cols, vectors): every
# signedness pair, every activation width of SMALL, ragged groups, 1 x 1.
ACT_RUNS = [
    (1, True, 1, True, 1, 6, 12, 5),
    (8, True, 8, True, 3, 5, 7, 4),
    (8, False, 8, False, 2, 6, 12, 3),
    (1, False, 8, True, 3, 3, 12, 4),
    (3, True, 2, False, 1, 4, 10, 6),
    (2, False, 3, True, 2, 1, 1, 9),
    (5, True, 4, True, 3, 6, 5, 3),
]


@pytest.mark.parametrize("m_bits, m_signed, v_bits, v_signed, a_bits, rows, cols, vectors", ACT_RUNS)
def test_activated_run_matches_model(m_bits, m_signed, v_bits, v_signed, a_bits, rows, cols, vectors):
    """Matrix, thresholds (ties, edges, int32 extremes, rows of direction -1, unsorted
    rows) and activated RUNs over stale memories, against the model."""
    rng = np.random.default_rng(1000 + m_bits * 100 + v_bits * 10 + a_bits)
    dirty = act_script(rng, SMALL["max_rows"], SMALL["max_cols"], 8, True, 8, True, SMALL["max_act_bits"], 2)
    script = act_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, a_bits, vectors)
    got, _ = check(dirty + script, seed=a_bits + v_bits)
    # Not trivially constant: the activated replies hold more than one code value.
    replies = [r for r in P.FrameDecoder().feed(got[-1]) if r.tag >= 0xC0 and r.code == P.Status.OK]
    values = {int(c) for r in replies for c in P.unpack_codes(r.payload, a_bits, len(r.payload) * 8 // a_bits)}
    assert len(values) > 1, values


def extremes(a_bits, row_direction):
    """Thresholds at the int32 extremes and the accumulator edges only, row ``r``
    of direction ``row_direction(r)``."""
    def make(acc, limit):
        rows, n_a = acc.shape[1], (1 << a_bits) - 1
        pool = np.array([INT32_MIN, INT32_MIN + 1, -limit - 1, -limit, -limit + 1, 0,
                         limit - 1, limit, limit + 1, INT32_MAX - 1, INT32_MAX])
        t = np.stack([np.roll(np.resize(pool, n_a), r) for r in range(rows)])
        return t, np.array([row_direction(r) for r in range(rows)])
    return make


@pytest.mark.parametrize("row_direction", [lambda r: 1, lambda r: -1, lambda r: -1 if r % 2 == 1 else 1],
                         ids=["direction+1", "direction-1", "mixed"])
def test_activation_at_the_extremes(row_direction):
    """Accumulators at their limits (all-max codes, signed and unsigned)
    against thresholds at the int32 extremes and at the accumulator edges
    +-1: the full signed 32-bit comparison and both directions."""
    rng = np.random.default_rng(21)
    a = SMALL["max_act_bits"]
    make = extremes(a, row_direction)
    rows, cols = SMALL["max_rows"], SMALL["max_cols"]
    script = []
    for m_signed, v_signed in [(True, True), (False, False), (True, False)]:
        matrix = np.full((rows, cols), 255)
        matrix[1::2] = 0  # odd rows at the other end: -limit when signed
        vectors = np.stack([np.full(cols, 255), np.zeros(cols, dtype=np.int64)])
        acc = signed_matmul(vectors, levels_or_none(8, v_signed), 8, matrix, levels_or_none(8, m_signed), 8)
        limit = cols * 255 * 255
        thresholds, direction = make(acc, limit)
        script += load_frames(matrix, 8, m_signed)
        script += threshold_frames(thresholds, direction, a)
        script += [act_run_frame(vectors, 8, v_signed, tag=0xC0)]
        assert np.abs(acc).max() == limit
    script += act_script(rng, rows, cols, 8, True, 8, True, 2, 4, thresholds=extremes(2, row_direction))
    check(script, seed=21)


def test_multi_frame_thresholds_and_big_activated_runs():
    """Thresholds one row per frame and two rows per frame; an activated RUN
    of far more vectors than an accumulator reply could hold (the request and
    the packed reply bound the count)."""
    rng = np.random.default_rng(22)
    script = act_script(rng, 6, 12, 3, True, 2, False, 3, 6, t_chunk=1)
    script += act_script(rng, 5, 11, 2, False, 4, True, 2, 5, t_chunk=2, chunk=9)
    # 1 row, 1 column of 1-bit codes, 1-bit activations: (64 - 4) * 8 = 480
    # vectors fit one request, their 480 codes a 60-byte reply.
    per_frame = act_vectors_per_frame(1, 1, 1, 1)
    assert per_frame == 480 > SMALL["max_payload"] // P.ACC_BYTES
    script += act_script(rng, 1, 1, 1, True, 1, False, 1, per_frame + 7)
    check(script, seed=22, max_cycles=1_000_000)


def test_thresholds_forgotten():
    """A new matrix (LOAD_MATRIX offset 0) and RESET forget the thresholds;
    thresholds survive the RUNs; a hardware reset forgets them too."""
    rng = np.random.default_rng(23)
    first = act_script(rng, 4, 6, 2, True, 2, True, 2, 3)
    vectors = codes(rng, 2, (2, 6))
    again = act_run_frame(vectors, 2, True, tag=0xC1)
    reload = load_frames(codes(rng, 2, (4, 6)), 2, True)
    script = first + [again, run_frame(vectors, 2, False), again] + reload + [again]
    script += first + [frame(P.Cmd.RESET)] + reload + [again]
    cut = len(script)
    script += first + [Idle(5), Reset(), again, frame(P.Cmd.PING)] + first
    got, _ = check(script, seed=23)
    # The script does what it says: the model refuses exactly the activated
    # RUNs after the new matrix and after RESET and a reload (NO_THRESHOLDS),
    # and after the hardware reset (NO_MATRIX, the second segment).
    model = CoreModel(**SMALL)
    details = [r.payload[1] for r in P.FrameDecoder().feed(b"".join(model.feed(s) for s in script[:cut])) if r.code]
    assert details == [P.Detail.NO_THRESHOLDS, P.Detail.NO_THRESHOLDS]
    assert [r.payload[1] for r in P.FrameDecoder().feed(got[-1]) if r.code] == [P.Detail.NO_MATRIX]


@pytest.mark.parametrize("core", TIMED)
@pytest.mark.parametrize("a_bits, count, cols", [(3, 3, 12), (1, 5, 7), (2, 2, 12)])
def test_full_rate_activated_run_cycles(a_bits, count, cols, core):
    """No gaps, no stalls: an activated RUN takes its request bytes, the
    unpacking, the compute (``run_cycles``), the activation (per tile its drain:
    the stream's first read and result stages, its values into the threshold unit,
    one every ``n_a = 2**A - 1`` cycles, while the next tile loads; after the last
    tile, the last value's ``n_a`` and the unit's latency) and only the reply's
    first bytes and last bytes on top (the packed codes leave meanwhile)."""
    params = timed(SMALL, core)
    rng = np.random.default_rng(24)
    t = np.sort(rng.integers(-200, 200, size=(6, (1 << a_bits) - 1)), axis=1)
    setup = load_frames(codes(rng, 4, (6, cols)), 4, True) + threshold_frames(t, np.ones(6, dtype=np.int64), a_bits)
    run = act_run_frame(codes(rng, 3, (count, cols)), 3, False)
    _, setup_cycles = check(setup, params, gap=0, stall=0)
    _, cycles = check(setup + [run], params, gap=0, stall=0)
    with unelaborated():
        dut = TrainingCore(**params)
        compute, stages, latency = dut.run_cycles(count, 6, cols, 4, 3), dut.result_stages, dut.activation_latency
        request = dut.request_stages
        del dut
    unpack_tile = cols * (1 + 3 / 8) + ceil(cols / SMALL["simd"]) * 3
    n_a = (1 << a_bits) - 1
    drain = 2 + stages + (6 - 1) * n_a  # the first read, its stages, the first value taken, the rest
    activation = drain * count - hidden(count, drain, unpack_tile) + n_a + latency
    tiles = 3 * count  # states TILE and START of each one-vector tile, and VECTOR's first cycle
    rest = (cycles - setup_cycles - len(run) - request - count * unpack_tile - compute - activation - tiles
            - P.HEADER_SIZE - P.CRC_SIZE)
    ahead = count * ceil(cols / SMALL["simd"]) * 2 * (1 + 3 / 8)  # the code slice runs ahead (above)
    # Where a drain outlasts the next tile's load, that load is what is hidden, and its
    # estimate's error (a tile's share of `ahead`, at each boundary) shows on the other
    # side.  On top, a few cycles of handshakes and of the estimate's fractions: 5.9 to 7.75
    # measured on 7-column vectors at 1 to 5 vectors, A = 1 or 2 alike (the old bound's
    # "packer at 1 bit" was not the cause).
    outlasted = (count - 1) * ceil(cols / SMALL["simd"]) * 2 * (1 + 3 / 8) if drain > 3 + unpack_tile else 0
    assert -ahead <= rest <= 8 + outlasted, rest


def test_no_activation_stage():
    """A core built with max_act_bits=0: PING says so, LOAD_THRESHOLDS is an
    unknown command, the activate flag a bad flag; GEMMs as usual."""
    params = dict(SMALL, max_act_bits=0)
    rng = np.random.default_rng(25)
    script = [frame(P.Cmd.PING, tag=1)] + gemm_script(rng, 4, 6, 3, True, 2, False, 2, params=params)
    script += [act_run_frame(codes(rng, 2, (1, 6)), 2, False)]
    script += threshold_frames(np.zeros((4, 1), dtype=np.int64), np.ones(4, dtype=np.int64), 1, params=params)
    script += [data for _, data in bad_thresholds_requests(params)]
    got, _ = check(script, params, seed=25)
    replies = P.FrameDecoder().feed(got[-1])
    assert P.decode_ping_reply(replies[0].payload).max_act_bits == 0
    assert {r.code for r in replies[-len(bad_thresholds_requests(params)):]} >= {P.Status.BAD_COMMAND}
    with unelaborated():
        assert "thresholds" not in TrainingCore(**params).memories


def test_fuzz_against_model():
    """Random requests, some valid, many mutated (a byte changed, cut short):
    the core and the model agree on every reply byte."""
    check(fuzz_script(12, 40, timeout=TIMEOUT), seed=12)


# --------------------------------------------------------------------------- UART wrapper

def test_uart_core_over_the_pins():
    """PING, LOAD, RUN through UART pins (divisor 4), against the model."""
    clk, baud = 100_000, 25_000  # divisor 4; idle timeout 0.01 s = 1000 cycles
    rng = np.random.default_rng(13)
    # PING last: this host sends the whole script back to back (not lock-step, as sw.driver is), so
    # the 16-byte FIFO holds what arrives while the core answers.  PING's reply (24 bytes with its
    # baud field) first would let ~24 bytes of the LOAD and RUN behind it arrive meanwhile: too many.
    script = gemm_script(rng, 3, 5, 2, True, 3, False, 2) + [frame(P.Cmd.PING)]
    request = b"".join(script)
    want = CoreModel(**SMALL, baud=baud).feed(request)  # PING reports the UART's rate

    top = Module()
    top.submodules.core = core = UARTCore(clk, baud, idle_timeout_s=0.01, **SMALL)
    top.submodules.host_tx = host_tx = UARTTransmitter(4)
    top.submodules.host_rx = host_rx = UARTReceiver(4)
    top.d.comb += [core.rx.eq(host_tx.tx), host_rx.rx.eq(core.tx)]
    got = []

    async def host(ctx):
        await stream_put_all(ctx, host_tx.i, request)

    async def reader(ctx):
        while len(got) < len(want):
            got.append(await stream_get(ctx, host_rx.o))

    sim = Simulator(top)
    sim.add_clock(1 / clk)
    sim.add_testbench(host)
    sim.add_testbench(reader)
    sim.run()
    assert_replies_equal(bytes(got), want)


@pytest.mark.parametrize("clk, divisor, baud", [
    (27_000_000, 9, 3_000_000),  # the iCEBreaker's default: 3 Mbaud exactly
    (27_750_000, 9, 3_083_333),  # its old clock: 9.25 cycles a bit rounded to 9, 2.8 % fast
])
def test_uart_core_pings_its_achieved_rate_at_3_mbaud(clk, divisor, baud):
    """PING through the pins at 9 cycles a bit reports round(clk / divisor)."""
    core = UARTCore(clk, 3_000_000, **SMALL)
    assert (core.divisor, core.achieved_baud, core.core.info.baud) == (divisor, baud, baud)
    top = Module()
    top.submodules.core = core
    top.submodules.host_tx = host_tx = UARTTransmitter(divisor)
    top.submodules.host_rx = host_rx = UARTReceiver(divisor)
    top.d.comb += [core.rx.eq(host_tx.tx), host_rx.rx.eq(core.tx)]
    reply_size = P.OVERHEAD + P.PING_REPLY
    got = []

    async def host(ctx):
        await stream_put_all(ctx, host_tx.i, frame(P.Cmd.PING))

    async def reader(ctx):
        while len(got) < reply_size:
            got.append(await stream_get(ctx, host_rx.o))

    sim = Simulator(top)
    sim.add_clock(1 / clk)
    sim.add_testbench(host)
    sim.add_testbench(reader)
    sim.run()
    (reply,) = P.FrameDecoder().feed(bytes(got))
    assert reply.code == P.Status.OK
    assert P.decode_ping_reply(reply.payload) == P.CoreInfo(P.PROTOCOL_VERSION, **SMALL, baud=baud)


# --------------------------------------------------------------------------- host driver

def test_driver_matmul_on_the_simulated_core():
    """sw.driver.CoreClient, unchanged, against the gateware: PING, then a
    GEMM larger than the core (tiled into 2 x 2 matrix loads, multi-frame
    loads and RUNs), equal to signed_matmul."""
    rng = np.random.default_rng(14)
    vectors, matrix = codes(rng, 3, (5, 20)), codes(rng, 2, (9, 20))
    client = CoreClient(AmaranthCoreTransport(TrainingCore(**SMALL, idle_timeout=TIMEOUT)))
    assert client.ping() == P.CoreInfo(P.PROTOCOL_VERSION, **SMALL)
    out = client.matmul(vectors, 3, True, matrix, 2, False)
    np.testing.assert_array_equal(out, signed_matmul(vectors, 7, 3, matrix, None, 2))
    assert client.stats["requests"] > 8 and client.stats["bad_frames"] == 0
    # The last tile loaded is 3 x 8 of 2-bit codes; against 3-bit vectors 4 + 2 + 3 + 1 bits,
    # 2-byte accumulators: 10 vectors fit a 1 + 60-byte reply, 11 need 67 bytes.
    reply = client.request(P.Cmd.RUN, P.encode_run(3, False, codes(rng, 3, (10, 8))))
    assert len(reply) == 61 and reply[0] == 2
    with pytest.raises(P.CoreError, match="BAD_PARAMS to RUN .REPLY_TOO_BIG"):
        client.request(P.Cmd.RUN, P.encode_run(3, False, codes(rng, 3, (11, 8))))
    assert client.ping().max_payload == SMALL["max_payload"]


def test_driver_activations_on_the_simulated_core():
    """CoreClient.activations (LOAD_MATRIX, LOAD_THRESHOLDS over several
    frames, activated RUNs) on the gateware, equal to apply_thresholds of
    signed_matmul."""
    rng = np.random.default_rng(15)
    vectors, matrix = codes(rng, 2, (7, 10)), codes(rng, 3, (6, 10))
    acc = signed_matmul(vectors, 3, 2, matrix, None, 3)
    thresholds = np.sort(rng.integers(acc.min() - 1, acc.max() + 2, size=(6, 7)), axis=1)
    direction = np.where(rng.random(6) < 0.5, -1, 1)
    thresholds[direction < 0] = thresholds[direction < 0, ::-1]
    client = CoreClient(AmaranthCoreTransport(TrainingCore(**SMALL, idle_timeout=TIMEOUT)))
    out = client.activations(vectors, 2, True, matrix, 3, False, thresholds, direction, 3)
    want = apply_thresholds(torch.from_numpy(acc), torch.from_numpy(thresholds), torch.from_numpy(direction))
    np.testing.assert_array_equal(out, want.numpy())
    assert len(np.unique(out)) > 2


# --------------------------------------------------------------------------- parameters

def ebr_blocks(depth: int, width: int) -> int:
    """iCE40 EBRs (4 kbit: 256 x 16, 512 x 8, 1024 x 4 or 2048 x 2) of a depth x width memory."""
    return min(-(-width // w) * -(-depth // (4096 // w)) for w in (16, 8, 4, 2))


def test_defaults_fit_the_up5k_ebr():
    with unelaborated():
        core = TrainingCore()
        assert core.info == P.CoreInfo(P.PROTOCOL_VERSION, **CORE_DEFAULTS)
        assert core.info.problems() == []
        # Worked out by hand for 32 x 256 codes of 8 bits, pe 4, simd 8, one
        # vector per tile: each matrix bank holds its row of each of 8 groups
        # x 32 folds x 8 planes (8 bits each); the vector bank 32 folds x 8
        # planes; a row's code sum (up to 256 * 255) needs 16 bits, a
        # vector's signed value sum 17; 32 results.
        assert core.memories == {
            "request": (1, 1024, 8),
            "matrix": (4, 2048, 8),
            "vector": (1, 256, 8),
            "row_sums": (1, 32, 16),
            "vector_sums": (1, 1, 17),
            "results": (1, 32, 32),
            "thresholds": (1, 32 * 16, 32),
            "directions": (1, 32, 1),
        }
        # A one-word memory (the vector sums of a one-vector tile) becomes flip-flops.
        blocks = {name: count * ebr_blocks(depth, width)
                  for name, (count, depth, width) in core.memories.items() if depth > 1}
        assert blocks == {"request": 2, "matrix": 16, "vector": 1, "row_sums": 1, "results": 2, "thresholds": 4,
                          "directions": 1}
        # Plus one for the UART FIFO: 28 of the UP5K's 30.
        assert sum(blocks.values()) + 1 == 28 <= 30
        del core


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_rows=0), "max_rows"),
    (dict(max_cols=70000), "max_cols"),
    (dict(max_bits=9), "max_bits"),
    (dict(pe=0), "pe"),
    (dict(pe=33), "pe"),
    (dict(simd=257), "simd"),
    (dict(max_payload=12), "max_payload"),
    (dict(max_payload=5000), "max_payload"),
    (dict(max_payload=200), "one vector"),  # 4 + 256 bytes do not fit
    (dict(max_rows=300, max_payload=1024), "one reply"),
    (dict(idle_timeout=0), "idle_timeout"),
    (dict(max_bits=True), "max_bits"),
    (dict(max_act_bits=9), "max_act_bits"),
    (dict(max_act_bits=-1), "max_act_bits"),
    (dict(max_act_bits=True), "max_act_bits"),
    (dict(max_act_bits=4, max_payload=64, max_cols=64), "thresholds of one row"),  # 6 + 61 > 64
    (dict(baud=-1), r"baud must be in 0..4294967295 \(0: not a UART core\)"),
    (dict(baud=1 << 32), "baud must be in 0..4294967295"),
    (dict(baud=3e6), "baud must be an integer"),
])
def test_bad_parameters(kwargs, match):
    with unelaborated(), pytest.raises(ValueError, match=match):
        TrainingCore(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(clk_freq=0), "clk_freq"),
    (dict(clk_freq=12e6, baud=4_000_000), "too slow"),
    (dict(clk_freq=12e6, baud=0), "baud"),
    (dict(clk_freq=12e6, idle_timeout_s=1.0), "idle_timeout_s"),
    (dict(clk_freq=12e6, fifo_depth=0), "fifo_depth"),
    (dict(clk_freq=12e6, max_bits=0), "max_bits"),
])
def test_bad_uart_core_parameters(kwargs, match):
    with unelaborated(), pytest.raises(ValueError, match=match):
        UARTCore(**kwargs)


# --------------------------------------------------------------------------- batch sums

SUM_RUNS = [  # m_bits, m_signed, v_bits, v_signed, rows, cols, batch, vectors
    (2, True, 1, False, 3, 5, 3, 4),
    (6, True, 2, False, 6, 12, 2, 6),   # every row, every column: the widest partial sums
    (1, False, 8, True, 5, 7, 4, 3),
]


@pytest.mark.parametrize("m_bits, m_signed, v_bits, v_signed, rows, cols, batch, vectors", SUM_RUNS)
def test_batch_sums_match_model(m_bits, m_signed, v_bits, v_signed, rows, cols, batch, vectors):
    """ACCUMULATE over a batch (scales at the extremes of mantissa and shift) and READ_SUMS
    at two widths and as binary32 (width 0, hw.sum_float): the core's bytes are the model's
    (aligned_term's sums)."""
    rng = np.random.default_rng(rows * 100 + cols)
    script = sums_script(rng, rows, cols, m_bits, m_signed, v_bits, v_signed, batch=batch, vectors=vectors,
                         slot=SUMS["sum_slots"] - vectors * rows, params=SUMS)
    check(script, SUMS, seed=rows)


@pytest.mark.parametrize("params", [
    dict(SUMS, vectors=3, popcount_stages=1, fetch_stages=1),  # tiles of several vectors, a deeper array
    dict(SUMS, vectors=2, drains=2),                           # two drain chains
], ids=["vectors3-staged", "vectors2-drains2"])
def test_batch_sums_over_multi_vector_tiles(params):
    """ACCUMULATE over tiles of several vectors (the sums' order across tiles and drain
    chains, as the ULX3S's array has them): the model's bytes."""
    rng = np.random.default_rng(params["vectors"])
    script = sums_script(rng, 5, 11, 3, True, 2, False, batch=3, vectors=7, slot=2, params=params)
    check(script, params, seed=params["vectors"])


@pytest.mark.parametrize("core", TIMED)
@pytest.mark.parametrize("rows, count", [(6, 4), (5, 3)])
def test_full_rate_accumulate_cycles(rows, count, core):
    """No gaps, no stalls: an ACCUMULATE exchange takes its request bytes, the unpacking
    (as a RUN's), the compute (``run_cycles``), its values into the batch sums at **one a
    cycle** (a tile's drain out of the result memory, its first read and ``result_stages``
    first, while the next tile loads), :attr:`hw.batch_sum.BatchSum.latency` and the empty
    reply, plus a few cycles per tile and of handshakes."""
    from hw.batch_sum import BatchSum

    params = timed(SUMS, core)
    rng = np.random.default_rng(rows)
    cols, m_bits, v_bits = 12, 3, 2
    load = load_frames(codes(rng, m_bits, (rows, cols)), m_bits, True, max_payload=SUMS["max_payload"])
    (acc,) = accumulate_frames(codes(rng, v_bits, (count, cols)), v_bits, False, slot=1, mantissa=12345,
                               shift=40, first=True, rows=rows)
    _, load_cycles = check(load, params, gap=0, stall=0)
    _, cycles = check(load + [acc], params, gap=0, stall=0)
    with unelaborated():
        dut = TrainingCore(**params)
        compute = dut.run_cycles(count, rows, cols, m_bits, v_bits)
        stages, request = dut.result_stages, dut.request_stages
        del dut
    assert stages == request == params.get("fetch_stages", 0)
    unpack_tile = cols * (1 + v_bits / 8) + ceil(cols / SUMS["simd"]) * v_bits
    drain = 1 + stages + rows
    drains = drain * count - hidden(count, drain, unpack_tile)
    tiles = 3 * count  # TILE, VECTOR's first, START, per one-vector tile
    rest = (cycles - load_cycles - len(acc) - request - count * unpack_tile - compute - drains - tiles
            - BatchSum.latency - P.OVERHEAD)
    ahead = count * ceil(cols / SUMS["simd"]) * 2 * (1 + v_bits / 8)
    assert -ahead <= rest <= 5, rest


@pytest.mark.parametrize("width", [P.SUM_FLOAT32, 1, P.sum_width(SUMS["sum_bits"])])
def test_full_rate_read_sums(width):
    """No stalls: a READ_SUMS reply's sums leave a byte a cycle (:class:`hw.sum_reader.SumReader`),
    so four sums more take four sums' bytes more cycles (one frame each; the sums zeroed
    after the reset)."""
    def cycles(count):
        (request,) = read_sums_frames(2, count, width, params=SUMS)
        return check([request], SUMS, gap=0, stall=0)[1]

    assert cycles(5) - cycles(1) == 4 * P.sum_bytes(width)


def test_every_sums_error_matches_model():
    requests = bad_sums_requests(SUMS)
    model = CoreModel(**SUMS)
    for name, data in requests:
        assert len(P.FrameDecoder().feed(model.feed(data))) == 1, name
    check([data for _, data in requests], SUMS, seed=13)


def test_every_sums_error_is_exercised():
    """The list above covers every (status, detail) of ACCUMULATE and READ_SUMS; without
    sums both are unknown commands."""
    def seen(params):
        model, out = CoreModel(**params), set()
        for _, data in bad_sums_requests(params):
            for reply in P.FrameDecoder().feed(model.feed(data)):
                out.add((data[1], reply.code, reply.payload[1] if reply.code else 0))
        return out

    A, R, S, D = P.Cmd.ACCUMULATE, P.Cmd.READ_SUMS, P.Status, P.Detail
    want = {(A, S.OK, 0), (A, S.BAD_LENGTH, 0), (A, S.BAD_STATE, D.NO_MATRIX), (R, S.OK, 0), (R, S.BAD_LENGTH, 0)}
    want |= {(A, S.BAD_PARAMS, d) for d in (D.BITS, D.FLAGS, D.SCALE, D.COUNT)}
    want |= {(R, S.BAD_PARAMS, d) for d in (D.WIDTH, D.COUNT, D.REPLY_TOO_BIG)}
    assert want <= seen(SUMS), want - seen(SUMS)
    assert {(cmd, status) for cmd, status, _ in seen(SMALL) if cmd in (A, R)} == {(A, S.BAD_COMMAND),
                                                                                    (R, S.BAD_COMMAND)}


def test_fuzz_against_model_with_sums():
    check(fuzz_script(14, 40, SUMS, timeout=TIMEOUT), SUMS, seed=14)


def test_sums_memory():
    with unelaborated():
        assert TrainingCore(**SUMS).memories["sums"] == (1, SUMS["sum_slots"], SUMS["sum_bits"])
        assert "sums" not in TrainingCore(**SMALL).memories


# --------------------------------------------------------------------------- feature maps and windows

@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_windows_match_model(seed):
    """LOAD_FMAP, then RUNs (plain and activated) and ACCUMULATEs whose vectors the core
    makes from the map (both orders, strides, pads, channel/row/column starts, requests
    split where a reply fits): the core's bytes are the model's."""
    check(window_script(np.random.default_rng(seed), params=WINDOWS), WINDOWS, seed=seed)


@pytest.mark.parametrize("params", [
    dict(WINDOWS, vectors=3, popcount_stages=1, fetch_stages=1),  # tiles of several vectors, a deeper array
    dict(WINDOWS, pe=2, simd=4, vectors=2, drains=2),            # two drain chains, several folds
], ids=["vectors3-staged", "vectors2-drains2"])
def test_windows_over_multi_vector_tiles(params):
    """The generator's codes run on across tiles (it is started once per request)."""
    check(window_script(np.random.default_rng(7), params=params), params, seed=params["vectors"])


def test_every_window_error_matches_model():
    requests = bad_window_requests(WINDOWS)
    model = CoreModel(**{k: v for k, v in WINDOWS.items()})
    for name, data in requests:
        assert len(P.FrameDecoder().feed(model.feed(data))) == 1, name
    check([data for _, data in requests], WINDOWS, seed=17)


def test_window_requests_without_a_map_match_model():
    """A core without a feature map: LOAD_FMAP is an unknown command, the window flag a bad flag."""
    check([data for _, data in bad_window_requests(SUMS)], SUMS, seed=18)


def test_fuzz_against_model_with_windows():
    check(fuzz_script(19, 40, WINDOWS, timeout=TIMEOUT), WINDOWS, seed=19)


def test_fmap_memory():
    with unelaborated():
        assert TrainingCore(**WINDOWS).memories["fmap"] == (1, WINDOWS["fmap_codes"], WINDOWS["max_bits"])
        assert "fmap" not in TrainingCore(**SUMS).memories


# --------------------------------------------------------------------------- packed accumulators

@pytest.mark.parametrize("params", [
    WINDOWS,                                             # with sums: the values leave through HOLD
    dict(SMALL, packed_accumulators=1),                  # without: straight from the results
    dict(SMALL, packed_accumulators=1, vectors=3, pe=3),  # tiles of several vectors, one stream
], ids=["sums", "no-sums", "vectors3"])
def test_packed_accumulators_match_model(params):
    """RUNs with FLAG_PACKED at every width pair's exact bound (2 to 22 bits here), replies
    split where their packed size fits, partial last bytes: the core's bytes are the model's."""
    check(packed_script(np.random.default_rng(params.get("vectors", 1)), params=params), params,
          seed=params.get("vectors", 1), max_cycles=1_500_000)


def test_packed_requests_match_model():
    """The packed flag's refusals (with activate; on a core that does not pack) and a packed
    RUN's ok, in the protocol's check order, on cores with and without packing."""
    for params, seed in ((dict(SMALL, packed_accumulators=1), 21), (SMALL, 22)):
        check([data for _, data in bad_requests(params)], params, seed=seed)


def test_fuzz_against_model_packed():
    check(fuzz_script(23, 40, dict(SMALL, packed_accumulators=1), timeout=TIMEOUT),
          dict(SMALL, packed_accumulators=1), seed=23)


@pytest.mark.parametrize("vectors", [2, 3])
def test_one_column_tiles_after_full_ones(vectors):
    """RUNs and ACCUMULATEs of one-column vectors, ``vectors + 1`` and ``2 * vectors + 1`` of
    them: the last tile's only code may already wait in the unpacker (left in the byte the
    tile before ended in) and ends its vector at once; it is taken only once the tile's
    vector count is registered (before, the core took a second code into that tile and
    replied a wrong last value)."""
    params = dict(SUMS, vectors=vectors)
    rng = np.random.default_rng(vectors)
    script = []
    for count in (vectors + 1, 2 * vectors + 1):
        for v_bits in (1, 5):  # eight codes a byte, or 1.6
            script += gemm_script(rng, 3, 1, 4, True, v_bits, False, count, params=params)
            script += sums_script(rng, 2, 1, 3, False, v_bits, True, batch=2, vectors=count, params=params)
    check(script, params, seed=vectors)
