# amaranth: UnusedElaboratable=no
"""hw.request_checker.RequestChecker against sw.core_model.CoreModel, request by request.

Each script's frames go through the host's frame decoder and the model, one
event at a time (:func:`sw.core_scripts.checked_requests`): what the model
holds before it executes an event (:meth:`~sw.core_model.CoreModel.held`: its
matrix's shape and codes loaded, its thresholds', its map's) is set on the
checker's ``held``, a cycle later the event on its ``event``, and ``latency``
cycles later the verdict must be the model's reply status and detail, and,
where the model accepts the request, the plan the sizes of its reply and what
it keeps (``tb/request_checker`` runs the same on Icarus and Verilator).
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
from sw.core_scripts import (SMALL, SUMS, WINDOWS, act_script, bad_requests, bad_sums_requests,
                             bad_thresholds_requests, bad_window_requests, fuzz_script,
                             checked_requests, gemm_script, packed_script, sums_script, window_script)


TIMEOUT = 300  # the idle timeout the scripts' gaps are measured against (fuzz_script)


def flatten(view, values: dict):
    """``(field value, value)`` pairs of a nested dict over a view's fields."""
    for name, value in values.items():
        if isinstance(value, dict):
            yield from flatten(getattr(view, name), value)
        else:
            yield getattr(view, name), int(value)


def verdicts(script, params: dict) -> int:
    """Check every request of ``script`` (:func:`sw.core_scripts.checked_requests`); return how many."""
    dut = RequestChecker(CoreConfig(**config_params(params)))
    checked = 0

    async def testbench(ctx):
        nonlocal checked
        for request in checked_requests(script, params, TIMEOUT):
            # `held` one cycle before the event (the core changes it while executing a
            # request, long before the next event), then `latency` cycles of both.
            for field, value in flatten(dut.held, request.held):
                ctx.set(Value.cast(field), value)
            await ctx.tick()
            head = request.payload[:dut.head_bytes].ljust(dut.head_bytes, b"\0")
            ctx.set(dut.request.status, request.status)
            ctx.set(dut.request.cmd, request.cmd)
            ctx.set(dut.request.tag, request.tag)
            ctx.set(dut.request.length, request.length)
            ctx.set(dut.request.head.as_value(), int.from_bytes(head, "little"))
            await ctx.tick().repeat(dut.latency)
            got = (ctx.get(dut.verdict.status), ctx.get(dut.verdict.detail), ctx.get(dut.verdict.ok))
            assert got == (*request.verdict, int(request.ok)), (request, got)
            if request.ok:
                flags = {name: ctx.get(getattr(dut.command, name)) for name in dut.command.shape().members}
                assert flags == {cmd.name.lower(): int(cmd == request.cmd) for cmd in P.Cmd}, (request, flags)
                sizes = {name: ctx.get(getattr(dut.plan, name)) for name in request.sizes}
                assert sizes == request.sizes, (request, sizes)
            checked += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return checked


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
