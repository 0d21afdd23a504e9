# amaranth: UnusedElaboratable=no
"""The board build says what runs and how long it took: each tool step of the build
script, with a stubbed tool runner (no tool runs here).  ``dorefa build``'s side of it
is in tests/cli/test_build.py."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from boards.build import NEXTPNR_REPORT, STEPS, StepTimeout, build, build_plan, build_steps, run_tool
from boards.top import BOARDS

DATA = Path(__file__).parent / "data"


def _fake_tools(calls, fail_at=None):
    """A runner that records each step and, for nextpnr, writes the committed raw report."""
    def run(command, *, cwd, env, timeout=None):
        assert command[:2] == ["sh", "-c"]
        line = command[2].splitlines()[-1]
        calls.append((line, Path(cwd)))
        if fail_at is not None and fail_at in line:
            raise subprocess.CalledProcessError(1, command)
        if "NEXTPNR_ICE40" in line:
            (Path(cwd) / NEXTPNR_REPORT).write_text((DATA / "icebreaker_nextpnr_report.json").read_text())
    return run


@pytest.mark.parametrize("board, tools", [("icebreaker", ["YOSYS", "NEXTPNR_ICE40", "ICEPACK"]),
                                          ("ulx3s", ["YOSYS", "NEXTPNR_ECP5", "ECPPACK"])])
def test_build_steps_are_the_scripts_tool_lines(board, tools):
    _, plan = build_plan(board, core_params={"max_rows": 8, "max_cols": 32, "pe": 2, "simd": 4, "popcount_stages": 1,
                                             "drains": 1})
    preamble, steps = build_steps(plan.files["build_top.sh"])
    assert [variable for variable, _ in steps] == tools
    assert "set -e" in preamble and not any(line.startswith('"$') for line in preamble.splitlines())
    assert all(line.startswith(f'"${variable}" ') for variable, line in steps)


@pytest.mark.parametrize("script, message", [
    ('set -e\n"$YOSYS" -q top.ys\nrm -rf /\n', "unexpected line"),
    ('set -e\n"$VIVADO" top.tcl\n', "unknown tool VIVADO"),
    ("set -e\n", "runs no tool"),
])
def test_build_steps_refuse_a_script_they_do_not_know(script, message):
    with pytest.raises(ValueError, match=message):
        build_steps(script)


@pytest.mark.parametrize("seed, want", [(None, 7), (0, 0), (17, 17)])  # None: the iCEBreaker's seed, 7
def test_the_seed_reaches_nextpnr_and_the_report(seed, want, tmp_path):
    """nextpnr runs with ``--seed`` the build's seed (the board's by default), which the report
    records, and with the board's own options (the iCEBreaker's router and timing weight)."""
    calls = []
    report = build("icebreaker", tmp_path / "out", seed=seed, runner=_fake_tools(calls), log=lambda line: None)
    (nextpnr,) = [line for line, _ in calls if "NEXTPNR" in line]
    assert f" --seed {want} " in nextpnr and nextpnr.count("--seed") == 1
    assert " --router router2 --placer-heap-timingweight 30 " in nextpnr
    assert report.seed == want and report.to_json()["seed"] == want
    assert report.to_text().splitlines()[-1] == f"nextpnr seed: {want}"


def test_a_step_past_the_timeout_is_named(tmp_path):
    """Every step runs under the build's step timeout; one past it stops the build, named."""
    timeouts = []

    def runner(command, *, cwd, env, timeout=None):
        timeouts.append(timeout)
        if "NEXTPNR" in command[2].splitlines()[-1]:
            raise subprocess.TimeoutExpired(command, timeout)

    with pytest.raises(StepTimeout, match=r"^place and route \(nextpnr\) ran past 90 s and was stopped$"):
        build("icebreaker", tmp_path / "out", step_timeout=90, runner=runner, log=lambda line: None)
    assert timeouts == [90, 90]


@pytest.mark.parametrize("step_timeout", [0, -5, "60", float("nan")])
def test_a_bad_step_timeout_runs_no_tool(step_timeout, tmp_path):
    with pytest.raises(ValueError, match="a step timeout must be a number of seconds > 0"):
        build("icebreaker", tmp_path / "out", step_timeout=step_timeout, runner=_fake_tools([]), log=print)


def test_run_tool_kills_the_whole_step_past_its_timeout(tmp_path):
    """The tool under the step's shell goes too (its own process group), not only the shell."""
    command = ["sh", "-c", "sleep 60 & echo $! > child; wait"]
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool(command, cwd=str(tmp_path), env=dict(os.environ), timeout=1)
    assert time.monotonic() - started < 30
    child = Path(f"/proc/{int((tmp_path / 'child').read_text())}/stat")
    for _ in range(50):  # killed: gone, or a zombie until its new parent reaps it
        if not child.exists() or child.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the step's child process survived its timeout: {child.read_text()}")
    with pytest.raises(subprocess.CalledProcessError):
        run_tool(["sh", "-c", "exit 3"], cwd=str(tmp_path), env=dict(os.environ))
    run_tool(["sh", "-c", "true"], cwd=str(tmp_path), env=dict(os.environ), timeout=30)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "2"])
def test_a_bad_seed_runs_no_tool(seed, tmp_path):
    calls = []
    with pytest.raises(ValueError, match="the nextpnr seed must be an integer >= 0"):
        build("icebreaker", tmp_path / "out", seed=seed, runner=_fake_tools(calls), log=lambda line: None)
    assert calls == [] and not (tmp_path / "out").exists()


def test_build_reports_each_step(tmp_path):
    calls, lines = [], []
    report = build("icebreaker", tmp_path / "out", runner=_fake_tools(calls), log=lines.append)
    assert report.board == "icebreaker" and (tmp_path / "out" / "report.txt").exists()
    assert [Path(cwd) for _, cwd in calls] == [tmp_path / "out"] * 3
    assert [line.split()[0] for line, _ in calls] == ['"$YOSYS"', '"$NEXTPNR_ICE40"', '"$ICEPACK"']
    patterns = [r"\[1/3\] synthesis \(yosys\)\.\.\. \(usually about 1 minute\)",
                r"\[1/3\] synthesis \(yosys\) done in \d+ s",
                r"\[2/3\] place and route \(nextpnr\)\.\.\. \(usually .+\)",
                r"\[2/3\] place and route \(nextpnr\) done in \d+ s",
                r"\[3/3\] packing \(icepack\)\.\.\. \(usually .+\)",
                r"\[3/3\] packing \(icepack\) done in \d+ s",
                r"toolchain finished in \d+ s"]
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), line


def test_every_step_has_a_label_and_a_typical_time():
    families = {board.family for board in BOARDS.values()}
    assert families == {"ice40", "ecp5"}
    for label, typical in STEPS.values():
        assert label.endswith(")") and typical
