# amaranth: UnusedElaboratable=no
"""The board build says what runs and how long it took: each tool step of the build
script, with a stubbed tool runner (no tool runs here).  ``dorefa build``'s side of it
is in tests/cli/test_build.py."""

import re
import subprocess
from pathlib import Path

import pytest

import boards.build
from boards.build import NEXTPNR_REPORT, STEPS, build, build_plan, build_steps
from boards.top import BOARDS

DATA = Path(__file__).parent / "data"


def _fake_tools(calls, fail_at=None):
    """A runner that records each step and, for nextpnr, writes the committed raw report."""
    def run(command, *, cwd, env):
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


@pytest.mark.parametrize("seed, want", [(None, 2), (0, 0), (17, 17)])
def test_the_seed_reaches_nextpnr_and_the_report(seed, want, tmp_path):
    """nextpnr runs with ``--seed`` the build's seed (the board's by default), which the report records."""
    calls = []
    report = build("icebreaker", tmp_path / "out", seed=seed, runner=_fake_tools(calls), log=lambda line: None)
    (nextpnr,) = [line for line, _ in calls if "NEXTPNR" in line]
    assert f" --seed {want} " in nextpnr and nextpnr.count("--seed") == 1
    assert report.seed == want and report.to_json()["seed"] == want
    assert report.to_text().splitlines()[-1] == f"nextpnr seed: {want}"


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
