# amaranth: UnusedElaboratable=no
"""The simulated core's one-time build is announced (what runs, how long it usually takes,
how long it took) and a cached build is silent: with a stubbed build, no simulator runs."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

import cocotb_tools.runner
from hw.prng import XorShift32
from sim import cocotb_runner
from sim.verilator_bridge import PROGRESS_FILE, CocotbBridge, Progress, build_messages, report_progress


class FakeRunner:
    """Stands in for a cocotb runner: ``build`` makes the simulator's product, ``test`` passes."""

    def __init__(self):
        self.builds = 0

    def build(self, *, build_dir, **kwargs):
        self.builds += 1
        (Path(build_dir) / "sim.vvp").write_text("built")

    def test(self, *, results_xml, **kwargs):
        Path(results_xml).write_text('<testsuites><testsuite><testcase classname="tb" name="t"/>'
                                     '</testsuite></testsuites>')


def test_run_cocotb_reports_a_build_that_is_not_cached(tmp_path, monkeypatch):
    fake = FakeRunner()
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda simulator: fake)
    events = []

    def run():
        cocotb_runner.run_cocotb(XorShift32(), toplevel="prng_progress", test_module="tb.none",
                                 simulator="icarus", build_dir=tmp_path, waves=False, on_build=events.append)

    run()
    assert fake.builds == 1 and len(events) == 2
    assert events[0] is None and isinstance(events[1], float) and events[1] >= 0
    events.clear()
    run()  # cached: the runner is still asked (it checks for itself), nothing is announced
    assert fake.builds == 2 and events == []
    time.sleep(0.01)
    (tmp_path / "prng_progress.v").touch()  # a newer source: a real build again
    run()
    assert len(events) == 2 and events[0] is None


def test_is_built_per_simulator(tmp_path):
    source = tmp_path / "top.v"
    source.write_text("module top; endmodule")
    assert not cocotb_runner._is_built(tmp_path, "verilator", "top", [source])
    (tmp_path / "top").write_text("executable")
    assert cocotb_runner._is_built(tmp_path, "verilator", "top", [source])
    assert not cocotb_runner._is_built(tmp_path, "icarus", "top", [source])


def test_build_messages():
    message = build_messages("verilator")
    assert message(None) == ("building the simulated core with Verilator (one time, usually about "
                             "1-2 minutes)...")
    assert message(95.4) == "built in 95 s"
    with pytest.raises(KeyError):
        build_messages("xsim")


def test_progress_relays_whole_lines_once(tmp_path):
    lines = []
    progress = Progress(tmp_path / PROGRESS_FILE, lines.append)
    progress.relay()  # no file yet
    on_build = report_progress(tmp_path / PROGRESS_FILE, "verilator")
    on_build(None)
    with open(tmp_path / PROGRESS_FILE, "a") as file:
        file.write("half a li")
    progress.relay()
    progress.relay()
    assert lines == [build_messages("verilator")(None)]
    with open(tmp_path / PROGRESS_FILE, "a") as file:
        file.write("ne\n")
    progress.relay()
    assert lines[1:] == ["half a line"]


def test_bridge_passes_on_the_build_messages_while_it_waits(tmp_path):
    """The bridge's waiting loop, on a stand-in bridge process that 'builds' and opens its pty."""
    lines = []
    child = (f"import time, pathlib; from sim.verilator_bridge import report_progress\n"
             f"on_build = report_progress(pathlib.Path({str(tmp_path / PROGRESS_FILE)!r}), 'verilator')\n"
             f"on_build(None); time.sleep(0.3); on_build(81.0)\n"
             f"pathlib.Path({str(tmp_path / 'device')!r}).write_text('/dev/pts/99')\n"
             f"time.sleep(30)\n")
    bridge = CocotbBridge.__new__(CocotbBridge)
    bridge.workdir, bridge.log, bridge._control = tmp_path, tmp_path / "bridge.log", None
    bridge._progress = Progress(tmp_path / PROGRESS_FILE, lines.append)
    bridge.process = subprocess.Popen([sys.executable, "-c", child], cwd=Path(cocotb_runner.__file__).parent.parent)
    try:
        assert bridge._wait_for_device(60) == "/dev/pts/99"
    finally:
        bridge.process.kill()
        bridge.process.wait()
    assert lines == ["building the simulated core with Verilator (one time, usually about 1-2 minutes)...",
                     "built in 81 s"]


def test_the_simulated_board_build_is_announced_once_then_cached(tmp_path, monkeypatch):
    """:func:`sim.verilator_harness.build_harness` with Verilator stood in for: the first call
    builds (and says so, before and after), the second finds the executable."""
    from sim import verilator_harness

    calls = []

    def fake_verilator(command, cwd, **kwargs):
        calls.append(command)
        # Verilator puts -o relative to its -Mdir
        output = Path(cwd) / command[command.index("-Mdir") + 1] / command[command.index("-o") + 1]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("#!/bin/sh\n")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(verilator_harness.subprocess, "run", fake_verilator)
    core = dict(max_rows=4, max_cols=8, max_bits=2, pe=1, simd=4, max_payload=64, max_act_bits=0)
    events = []
    first = verilator_harness.build_harness(core, build_root=tmp_path, on_build=events.append)
    assert first.name == "harness" and first.exists() and len(calls) == 1
    assert calls[0][0] == "verilator" and str(verilator_harness.HARNESS_SOURCE) in calls[0]
    assert events[0] is None and isinstance(events[1], float) and len(events) == 2
    assert verilator_harness.build_harness(core, build_root=tmp_path, on_build=events.append) == first
    assert len(calls) == 1 and len(events) == 2
    # Other parameters, another build.
    verilator_harness.build_harness({**core, "pe": 2}, build_root=tmp_path, on_build=events.append)
    assert len(calls) == 2 and len(events) == 4
    # The bare core (the benchmark's baseline): another build, of TrainingCore itself, with
    # BARE_TOP defined for the loop; the top's build is not touched.
    bare = verilator_harness.build_harness(core, build_root=tmp_path, bare=True)
    assert len(calls) == 3 and bare != first
    assert any("-DBARE_TOP" in arg for arg in calls[2]) and not any("-DBARE_TOP" in arg for arg in calls[0])
    assert "module dorefa_core(" in (bare.parent / "dorefa_core.v").read_text()
    assert "idle" not in (bare.parent / "dorefa_core.v").read_text().split(");")[0]
    assert "idle" in (first.parent / "dorefa_core.v").read_text().split(");")[0]
    assert verilator_harness.build_harness(core, build_root=tmp_path) == first and len(calls) == 3
