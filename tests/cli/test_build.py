# amaranth: UnusedElaboratable=no
"""``dorefa build``: the build's progress goes to stderr, its report to stdout, and a
failed tool step is named (exit 1), with a stubbed tool runner (no tool runs here)."""

import boards.build
from sw.cli import main
from tests.boards.test_build_progress import _fake_tools


def test_cli_progress_goes_to_stderr(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(boards.build.subprocess, "check_call", _fake_tools(calls))
    assert main(["build", "--board", "icebreaker", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "synthesis (yosys)..." in captured.err and "packing (icepack) done in" in captured.err
    assert "synthesis" not in captured.out and "fits: yes" in captured.out


def test_cli_failed_step_is_named(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(boards.build.subprocess, "check_call", _fake_tools(calls, fail_at="NEXTPNR"))
    assert main(["build", "--board", "icebreaker", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "[2/3] place and route (nextpnr)..." in err and "place and route (nextpnr) done" not in err
    assert "the toolchain failed (exit 1)" in err.splitlines()[-1]
    assert len(calls) == 2
