"""cocotb tests of :class:`hw.request_checker.RequestChecker` against :class:`sw.core_model.CoreModel`.

Run through ``tb/test_request_checker_tb.py``;
:func:`sim.cocotb_runner.tb_config` gives the core's ``params``, the
checker's ``latency`` and ``head_bytes``, ``seed``, ``steps`` (of the fuzzed
script) and ``timeout``.

The bench plays the core around the checker: for each request of a script
(:func:`sw.core_scripts.checked_requests`: the host's frame decoder and the
model, one event at a time) it sets ``held`` to what the model holds
(:meth:`~sw.core_model.CoreModel.held`), a cycle later the receiver's event
on ``request`` (status, command, LEN, the payload's first ``head_bytes``
bytes), and ``latency`` cycles later reads the verdict, which must be the
model's reply status and error detail, and, where the model accepts the
request, the command flags (the request's alone) and the plan (the sizes of
the model's reply and of what it holds after).  The ports are packed and
unpacked here from their documented layouts.  The module is not named
``test_*.py``, so pytest never imports it.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.frame_rx import event_layout
from hw.request_checker import COMMAND_LAYOUT, VERDICT_LAYOUT, RequestChecker
from sim.cocotb_runner import tb_config
from sw import protocol as P
from sw.contract.core import CoreConfig, config_params
from sw.core_scripts import (act_script, bad_requests, bad_sums_requests, bad_thresholds_requests,
                             bad_window_requests, checked_requests, fuzz_script, gemm_script, packed_script,
                             sums_script, window_script)
from tb.common import Scoreboard, reset, start_clock


def pack(layout, values: dict) -> int:
    """``values`` (a nested dict over ``layout``'s fields) as the port's flat vector."""
    word = 0
    for name, field in layout:
        value = values[name]
        if isinstance(value, dict):
            value = pack(field.shape, value)
        value = int(value)
        assert 0 <= value < 1 << field.width, (name, value)
        word |= value << field.offset
    return word


def unpack(layout, word: int) -> dict:
    """The top-level fields of ``layout`` in the flat vector ``word``."""
    return {name: word >> field.offset & ((1 << field.width) - 1) for name, field in layout}


def script(params: dict, seed: int, steps: int, timeout: int) -> list:
    """Every error request of the core's commands in check order, good requests of every kind
    the core takes (plain, activated, packed, batch sums, windows) and ``steps`` fuzzed ones."""
    rng = np.random.default_rng(seed)
    requests = bad_requests(params) + bad_thresholds_requests(params)
    requests += gemm_script(rng, min(5, params["max_rows"]), min(11, params["max_cols"]), 3, True, 4, False, 3,
                          params=params)
    if params.get("max_act_bits"):
        requests += act_script(rng, min(4, params["max_rows"]), min(9, params["max_cols"]), 2, False, 3, True,
                             min(2, params["max_act_bits"]), 5, params=params)
    if params.get("packed_accumulators"):
        requests += packed_script(rng, params=params)
    if params.get("sum_slots"):
        requests += bad_sums_requests(params)
        requests += sums_script(rng, 3, 7, 2, True, 5, False, batch=3, vectors=2, params=params)
    if params.get("fmap_codes"):
        requests += bad_window_requests(params) + window_script(rng, params=params)
    return requests + fuzz_script(seed, steps, params, timeout=timeout)


@cocotb.test()
async def requests_against_the_model(dut):
    """Each request's verdict, command and plan, ``held`` and the event as the core sets them."""
    config = tb_config()
    params = config["params"]
    core = CoreConfig(**config_params(params))
    held_layout = RequestChecker.held_layout(core)
    plan_layout = RequestChecker.plan_layout(core)
    request_layout = event_layout(config["head_bytes"])
    start_clock(dut)
    dut.held.value = 0
    dut.request.value = 0
    await reset(dut)
    requests, wanted, got = [], [], []
    accepted = 0
    for request in checked_requests(script(params, config["seed"], config["steps"], config["timeout"]), params,
                                    config["timeout"]):
        dut.held.value = pack(held_layout, request.held)
        await RisingEdge(dut.clk)
        head = request.payload[:config["head_bytes"]].ljust(config["head_bytes"], b"\0")
        dut.request.value = pack(request_layout, {"status": request.status, "cmd": request.cmd,
                                                  "tag": request.tag, "length": request.length,
                                                  "head": int.from_bytes(head, "little")})
        await ClockCycles(dut.clk, config["latency"])
        await ReadOnly()
        verdict = unpack(VERDICT_LAYOUT, int(dut.verdict.value))
        seen = (verdict["status"], verdict["detail"], verdict["ok"])
        want = (*request.verdict, int(request.ok))
        if request.ok:
            accepted += 1
            flags = unpack(COMMAND_LAYOUT, int(dut.command.value))
            plan = unpack(plan_layout, int(dut.plan.value))
            seen += (flags, {name: plan[name] for name in request.sizes})
            want += ({cmd.name.lower(): int(cmd == request.cmd) for cmd in P.Cmd}, request.sizes)
        requests.append(request)
        got.append(seen)
        wanted.append(want)
        await RisingEdge(dut.clk)
    Scoreboard("request_checker", dut._log).check(wanted, got, describe=lambda i: repr(requests[i]))
    assert accepted > 10 and len(got) - accepted > 40, (accepted, len(got))
    dut._log.info("request_checker: %d requests (%d accepted) checked", len(got), accepted)

