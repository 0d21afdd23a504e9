"""hw.request_checker.RequestChecker against sw.core_model.CoreModel, request by request.

Each script's frames go through the host's frame decoder and the model,
one event at a time; before the model executes an event, what it holds
(its matrix's shape and codes loaded, its thresholds', its map's) is set on
the checker's ``held``, a cycle later the event on its ``event``, and
``latency`` cycles later the verdict must be the model's reply status and detail, and,
where the model accepts the request, the plan the sizes of its reply and
what it keeps.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, Value
from amaranth.sim import Simulator

from hw.request_checker import RequestChecker, bit_length
from sw import protocol as P
from sw.contract.core import CoreConfig, config_params
from sw.contract.link import LOAD_FIELDS, LOAD_FMAP_FIELDS, READ_SUMS_FIELDS, RUN_FIELDS
from sw.core_model import CoreModel
from sw.core_scripts import (SMALL, SUMS, WINDOWS, Idle, Reset, act_script, bad_requests, bad_sums_requests,
                             bad_thresholds_requests, bad_window_requests, fuzz_script,
                             gemm_script, packed_script, sums_script, window_script)


TIMEOUT = 300  # the idle timeout the scripts' gaps are measured against (fuzz_script)


def held_of(model: CoreModel, config: CoreConfig) -> dict:
    """What ``model`` holds, as the checker's ``held`` fields (zero where it holds nothing)."""
    rows, cols, bits, flags = model._shape or (0, 0, 0, 0)
    held = {"matrix": {"has": model._shape is not None, "rows": rows, "cols": cols, "bits": bits, "flags": flags,
                       "total": rows * cols, "loaded": model._loaded}}
    if config.max_act_bits:
        held["thresholds"] = {"bits": model._t_bits, "loaded": model._t_loaded}
    if config.fmap_codes:
        channels, height, width, f_bits = model._f_head or (0, 0, 0, 0)
        held["fmap"] = {"has": model._f_head is not None, "bits": f_bits, "total": channels * height * width,
                        "loaded": model._f_loaded,
                        "dims": {"channels": channels, "height": height, "width": width}}
    return held


def flatten(view, values: dict):
    """``(field value, value)`` pairs of a nested dict over a view's fields."""
    for name, value in values.items():
        if isinstance(value, dict):
            yield from flatten(getattr(view, name), value)
        else:
            yield getattr(view, name), int(value)


def verdicts(script, params: dict) -> int:
    """Check every event of ``script`` (frames, :class:`Idle`, :class:`Reset`); return how many."""
    params = config_params(params)
    config = CoreConfig(**params)
    dut = RequestChecker(config)
    checked = 0

    async def testbench(ctx):
        nonlocal checked
        model, decoder = CoreModel(**params), P.FrameDecoder(config.max_payload, backtrack=False)
        for step in script:
            if isinstance(step, Reset):
                model, decoder = CoreModel(**params), P.FrameDecoder(config.max_payload, backtrack=False)
                continue
            if isinstance(step, Idle):  # a gap past the timeout drops a partial frame
                if step.cycles >= TIMEOUT:
                    decoder.reset()
                continue
            for event in decoder.feed(bytes(step[1] if isinstance(step, tuple) else step)):
                # `held` one cycle before the event (the core changes it while executing a
                # request, long before the next event), then `latency` cycles of both.
                for field, value in flatten(dut.held, held_of(model, config)):
                    ctx.set(Value.cast(field), value)
                await ctx.tick()
                head = event.payload if isinstance(event, P.Frame) else b""
                head = head[:dut.head_bytes].ljust(dut.head_bytes, b"\0")
                ctx.set(dut.event.status, event.status if isinstance(event, P.FrameError) else P.Status.OK)
                ctx.set(dut.event.cmd, event.code)
                ctx.set(dut.event.length, event.length if isinstance(event, P.FrameError) else len(event.payload))
                ctx.set(dut.event.head.as_value(), int.from_bytes(head, "little"))
                await ctx.tick().repeat(dut.latency)
                got = (ctx.get(dut.verdict.status), ctx.get(dut.verdict.detail), ctx.get(dut.verdict.ok))
                if isinstance(event, P.FrameError):
                    want = (event.status, 0, 0)
                    status = event.status
                else:
                    status, payload = model._execute(event.code, event.payload)
                    detail = P.ERROR_FIELDS.unpack(payload)[1] if status != P.Status.OK else 0
                    want = (status, detail, int(status == P.Status.OK))
                assert got == want, (event, got, want)
                if status == P.Status.OK:
                    flags = {name: ctx.get(getattr(dut.command, name)) for name in dut.command.shape().members}
                    assert flags == {cmd.name.lower(): int(cmd == event.code) for cmd in P.Cmd}, (event, flags)
                    check_plan(ctx, dut, config, model, event, payload)
                checked += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return checked


def check_plan(ctx, dut, config: CoreConfig, model: CoreModel, event: P.Frame, reply: bytes):
    """The plan of an accepted request against what the model replied and now holds."""
    plan = dut.plan
    if event.code == P.Cmd.RUN:
        _, _, flags = RUN_FIELDS.unpack(event.payload[:RUN_FIELDS.size])
        assert ctx.get(plan.reply_size) == len(reply), event
        if not flags & P.FLAG_ACTIVATE:  # the width byte: bytes an accumulator or, packed, bits
            width = plan.packed_bits if flags & P.FLAG_PACKED else plan.width
            assert ctx.get(width) == reply[0], event
    elif event.code == P.Cmd.LOAD_MATRIX and LOAD_FIELDS.unpack(event.payload[:LOAD_FIELDS.size])[4] == 0:
        assert ctx.get(plan.total) == model._shape[0] * model._shape[1], event
    elif event.code == P.Cmd.READ_SUMS:
        _, count, width = READ_SUMS_FIELDS.unpack(event.payload[:READ_SUMS_FIELDS.size])
        assert P.SUMS_REPLY_HEADER + ctx.get(plan.sums_bytes) == len(reply), event
        assert ctx.get(plan.sum_bytes) * count == len(reply) - P.SUMS_REPLY_HEADER, event
        assert ctx.get(plan.sum_float) == (width == P.SUM_FLOAT32), event
    elif event.code == P.Cmd.LOAD_FMAP and LOAD_FMAP_FIELDS.unpack(event.payload[:LOAD_FMAP_FIELDS.size])[4] == 0:
        assert ctx.get(plan.fmap_total) == model._fmap.size, event


def test_errors_and_their_order():
    """Every error of the protocol, in check order (sw.core_scripts' lists), on SMALL."""
    assert verdicts(bad_requests() + bad_thresholds_requests(), SMALL) > 60


def test_sums_and_window_errors():
    assert verdicts(bad_sums_requests(SUMS), SUMS) > 20
    assert verdicts(bad_window_requests(WINDOWS), WINDOWS) > 20


@pytest.mark.parametrize("packed", [0, 1])
def test_without_an_activation_stage(packed):
    """No stage: LOAD_THRESHOLDS unknown, the activate flag a bad flag; packed accumulators or not."""
    params = dict(SMALL, max_act_bits=0, packed_accumulators=packed)
    assert verdicts(bad_requests(params) + bad_thresholds_requests(params), params) > 60


def test_accepted_requests_and_their_plans():
    """Good requests of every kind: the verdict OK and the plan the model's reply sizes."""
    rng = np.random.default_rng(3)
    script = gemm_script(rng, 5, 11, 3, True, 4, False, 3) + act_script(rng, 4, 9, 2, False, 3, True, 2, 5)
    script += packed_script(rng, params=SMALL | {"packed_accumulators": 1})
    assert verdicts(script, SMALL | {"packed_accumulators": 1}) > 10
    script = sums_script(rng, 3, 7, 2, True, 5, False, batch=3, vectors=2, params=SUMS)
    assert verdicts(script, SUMS) > 5
    assert verdicts(window_script(rng, params=WINDOWS), WINDOWS) > 10


@pytest.mark.parametrize("params", [SMALL, WINDOWS])
def test_fuzz(params):
    assert verdicts(fuzz_script(31, 40, params, timeout=TIMEOUT), params) > 20


@pytest.mark.parametrize("width, group", [(1, 4), (4, 4), (5, 4), (27, 4), (13, 3), (9, 1)])
def test_bit_length(width, group):
    """The balanced bit length the packed accumulators' width is made with, against
    Python's ``int.bit_length`` on zero, every power of two, all ones and random values."""
    value = Signal(width)
    length = Signal(range(width + 1))
    m = Module()
    m.d.comb += length.eq(bit_length(value, group=group))
    rng = random.Random(width * 10 + group)
    values = [0, (1 << width) - 1, *(1 << i for i in range(width)),
              *(rng.getrandbits(rng.randrange(1, width + 1)) for _ in range(300))]
    got = []

    async def testbench(ctx):
        for v in values:
            ctx.set(value, v)
            got.append(ctx.get(length))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [v.bit_length() for v in values]


def test_bad_config():
    with pytest.raises(ValueError, match="config must be a CoreConfig"):
        RequestChecker(dict(SMALL))
