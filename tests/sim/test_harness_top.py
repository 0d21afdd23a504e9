# amaranth: UnusedElaboratable=no
"""The simulated board's top (:class:`sim.harness_top.HarnessTop`): the core behind it
answers as the bare core does, ``idle`` says when nothing but its idle timer can happen,
and no top-level input reaches any logic but registers, which is what makes Verilator's
input-combinational region small."""

import os
import re
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.core import TrainingCore
from sim.cocotb_runner import verilator_env
from sim.core_transport import AmaranthCoreTransport
from sim.harness_top import HarnessTop
from sim.verilator_harness import VERILATOR_FLAGS
from sw import protocol as P
from sw.bitplanes import signed_matmul
from sw.driver import CoreClient

#: Small cores: the default's limits cut down, at two array shapes.
CORES = [dict(max_rows=6, max_cols=12, pe=2, simd=4, max_payload=64, max_act_bits=3),
         dict(max_rows=8, max_cols=40, pe=4, simd=8, max_payload=128, max_act_bits=2, vectors=2)]


@pytest.mark.parametrize("params", CORES, ids=["2x4", "4x8x2"])
@pytest.mark.parametrize("v_bits, v_signed, m_bits, m_signed", [(2, False, 1, True), (3, True, 2, False)])
def test_matmul_through_the_top(params, v_bits, v_signed, m_bits, m_signed):
    """The host driver's GEMM through the top equals the integer reference."""
    rng = np.random.default_rng(v_bits * 10 + m_bits)
    vectors = rng.integers(0, 1 << v_bits, (5, params["max_cols"] + 3))  # two column tiles
    matrix = rng.integers(0, 1 << m_bits, (params["max_rows"] + 1, params["max_cols"] + 3))
    client = CoreClient(AmaranthCoreTransport(HarnessTop(params)))
    out = client.matmul(vectors, v_bits, v_signed, matrix, m_bits, m_signed)
    v_max = (1 << v_bits) - 1 if v_signed else None
    m_max = (1 << m_bits) - 1 if m_signed else None
    np.testing.assert_array_equal(out, signed_matmul(vectors, v_max, v_bits, matrix, m_max, m_bits))


#: The cycle a request's first byte is offered.
START = 4


def _serve(dut, request: bytes, cycles: int):
    """The bytes ``dut`` sends, by cycle, for ``request`` offered from cycle :data:`START`
    (the top's core leaves its reset a cycle late), and ``idle`` by cycle where ``dut`` has one."""
    sent, idle = {}, []

    async def bench(ctx):
        pending = []
        rx, tx = dut.rx, dut.tx
        ctx.set(tx.ready, 1)
        for cycle in range(cycles):
            if cycle == START:
                pending = list(request)
            ctx.set(rx.valid, bool(pending))
            if pending:
                ctx.set(rx.payload, pending[0])
            if hasattr(dut, "idle"):
                idle.append(ctx.get(dut.idle))
            if ctx.get(tx.valid):
                sent[cycle] = ctx.get(tx.payload)
            if pending and ctx.get(rx.ready):
                pending.pop(0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return sent, idle


def test_the_top_answers_as_the_bare_core():
    """A PING and a frame with a bad CRC: the same reply bytes, each two cycles later
    (one slice each way), and ``idle`` low from a request's first byte to its reply's last."""
    params = CORES[0]
    ping = P.encode_frame(P.Cmd.PING, b"", 7)
    bad = bytearray(P.encode_frame(P.Cmd.PING, b"", 8))
    bad[-1] ^= 0xFF
    for request in (ping, bytes(bad)):
        bare, _ = _serve(TrainingCore(**params), request, 200)
        top, idle = _serve(HarnessTop(params), request, 200)
        assert bare, "the bare core sent nothing"
        assert top == {cycle + 2: byte for cycle, byte in bare.items()}
        last = max(top)
        assert all(idle[:START + 1]), "not idle before the request"
        assert not any(idle[START + 1:last + 1]), "idle while the request was taken or answered"
        assert all(idle[last + 2:]), "not idle after the reply"


def _ico_lines(top, workdir) -> int:
    """Lines of C++ in Verilator's input-combinational region (``ico``) of ``top``'s model,
    made with the simulated board's flags."""
    (workdir / "top.v").write_text(verilog.convert(top, name="top"))
    env = {**os.environ, **verilator_env()}
    subprocess.run(["verilator", "--cc", *VERILATOR_FLAGS, "--top-module", "top", "-Mdir", "obj", "top.v"],
                   cwd=workdir, env=env, check=True, capture_output=True)
    lines = 0
    for path in (workdir / "obj").glob("*.cpp"):
        for body in re.findall(r"\n\S[^\n]*_ico_sequent[^\n]*\{\n(.*?)\n\}", path.read_text(), re.S):
            lines += body.count("\n") + 1
    return lines


def test_no_input_reaches_logic(tmp_path):
    """Verilator's ``ico`` region, evaluated on every ``eval()``, holds the bare core's
    next-state logic (the reset is an input) but only the slices' behind the top."""
    (tmp_path / "bare").mkdir()
    (tmp_path / "top").mkdir()
    bare = _ico_lines(TrainingCore(**CORES[1]), tmp_path / "bare")
    top = _ico_lines(HarnessTop(CORES[1]), tmp_path / "top")
    assert bare > 1000, f"the bare core's ico region has {bare} lines; has Verilator's scheduling changed?"
    assert top < 200, f"{top} lines of logic reached by a top-level input"
