"""``bench/seed_sweep.py``: the seeds' command lines (from a real build plan, nothing run),
a sweep over a fake nextpnr (each seed's report written by hand), its summary and resume,
and its command line's errors."""

import json
import os
import shlex
import subprocess

import pytest

from bench import seed_sweep as ss
from boards.build import build_plan, build_steps, nextpnr_options
from boards.top import BOARDS, CORE_PRESETS

#: A small iCEBreaker core: its build plan elaborates in seconds.
SMALL = {**CORE_PRESETS["icebreaker"], "pe": 1, "simd": 8, "max_bits": 2, "max_act_bits": 0}


@pytest.mark.parametrize("text, seeds", [("3", [3]), ("1-4,7", [1, 2, 3, 4, 7]), ("0, 5-6", [0, 5, 6])])
def test_parse_seeds(text, seeds):
    assert ss.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("x", "integers or ranges"), ("4-2", "ascending"),
                                           ("-1", "integers or ranges"), ("1-3,2", "repeat")])
def test_parse_seeds_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        ss.parse_seeds(text)


def nextpnr_line(board, core_params=None):
    _, plan = build_plan(board, core_params=core_params, nextpnr_opts=nextpnr_options(board, BOARDS[board].seed))
    _, steps = build_steps(plan.files[f"{plan.script}.sh"])
    return plan, next(line for variable, line in steps if variable.startswith("NEXTPNR"))


@pytest.mark.parametrize("board, device, output", [("icebreaker", "--up5k", "--asc"), ("ulx3s", "--85k", "--textcfg")])
def test_seed_command_places_the_builds_netlist_under_another_seed(board, device, output):
    _, line = nextpnr_line(board, SMALL)
    assert f"--seed {BOARDS[board].seed} " in line and output in line and "--report nextpnr_report.json" in line
    command = ss.seed_command(line, 17)
    text = " ".join(command)
    assert command[0] == "$" + line[2:].split('"')[0]
    assert "--seed 17" in text and "--report seed_17.json" in text and "--log seed_17.log" in text
    assert text.count("--seed") == text.count("--report") == text.count("--log") == 1
    assert output not in command  # no bitstream: the build's own stays as it was
    assert "--timing-allow-fail" in command and device in command and "--json top.json" in text


def test_seed_command_adds_options_and_names_its_outputs_after_them():
    _, line = nextpnr_line("icebreaker", SMALL)
    options = ss.parse_options("--placer-heap-timingweight 60 --tmg-ripup")
    command = ss.seed_command(line, 5, options)
    assert command[-3:] == ["--placer-heap-timingweight", "60", "--tmg-ripup"]
    stem = "seed_5+placer-heap-timingweight_60_tmg-ripup"
    assert ss.run_name(5, options) == stem and ss.run_name(5) == "seed_5"
    text = " ".join(command)
    assert f"--report {stem}.json" in text and f"--log {stem}.log" in text and "--seed 5" in text


@pytest.mark.parametrize("text", ["--seed 3", "--report=x.json", "--asc top.asc", "-r"])
def test_parse_options_refuses_what_the_sweep_sets(text):
    with pytest.raises(ValueError, match="--nextpnr-opts may not set"):
        ss.parse_options(text)


def test_seed_command_refuses_a_line_without_a_seed():
    with pytest.raises(ValueError, match="no --seed or --report"):
        ss.seed_command('"$NEXTPNR_ICE40" --up5k --json top.json', 1)


def fake_report(fmax, constraint=30.0):
    step = {"type": "logic", "delay": fmax / 10, "from": {"cell": "a"}, "to": {"cell": "b"}}
    return {"fmax": {"clk": {"achieved": fmax, "constraint": constraint}},
            "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [step, step]}]}


@pytest.fixture
def build_dir(tmp_path):
    plan, _ = nextpnr_line("icebreaker", SMALL)
    (tmp_path / f"{plan.script}.sh").write_text(plan.files[f"{plan.script}.sh"])
    netlist = tmp_path / "top.json"
    netlist.write_text("{}")
    os.utime(netlist, (0, 0))  # older than any report a sweep writes
    return tmp_path


def test_sweep_reads_each_seeds_report_and_summarises(build_dir):
    fmax = {1: 31.5, 2: 28.0, 3: 35.0, 4: None, 5: 33.0}
    calls = []

    def runner(command, *, cwd, env, timeout):
        seed = int(command[command.index("--seed") + 1])
        calls.append((seed, timeout))
        assert cwd == build_dir and command[0] == env["NEXTPNR_ICE40"]
        if fmax[seed] is None:
            raise subprocess.TimeoutExpired(command, timeout)
        (build_dir / f"seed_{seed}.json").write_text(json.dumps(fake_report(fmax[seed])))

    rows = ss.sweep(build_dir, [1, 2, 3, 4, 5], step_timeout_s=60, runner=runner, log=lambda text: None)
    assert calls == [(1, 60), (2, 60), (3, 60), (4, 60), (5, 60)]
    assert [row["fmax_mhz"] for row in rows] == [31.5, 28.0, 35.0, None, 33.0]
    assert [row["routed"] for row in rows] == [True, True, True, False, True]
    assert rows[2]["critical_path"] == {"from": "a", "to": "b", "delay_ns": 7.0}
    summary = ss.summarise(rows, board_seed=1)
    assert summary == {"seeds": 5, "routed": 4, "min_mhz": 28.0, "median_mhz": 32.25, "mean_mhz": 31.88,
                       "max_mhz": 35.0, "best_seed": 3, "board_seed": 1, "board_seed_mhz": 31.5,
                       "board_seed_rank": 3}
    assert "board_seed" not in ss.summarise(rows, board_seed=4)  # not routed: no rank

    # --resume: the reports already there (newer than the netlist) are read, the rest placed
    def second(command, *, cwd, env, timeout):
        seed = int(command[command.index("--seed") + 1])
        calls.append((seed, timeout))
        (build_dir / f"seed_{seed}.json").write_text(json.dumps(fake_report(30.0)))

    calls.clear()
    again = ss.sweep(build_dir, [1, 2, 3, 4, 5], resume=True, runner=second, log=lambda text: None)
    assert calls == [(4, None)]
    assert [row["fmax_mhz"] for row in again] == [31.5, 28.0, 35.0, 30.0, 33.0]


def test_sweep_with_options_runs_and_reads_its_own_reports(build_dir):
    (build_dir / "seed_1.json").write_text(json.dumps(fake_report(31.0)))  # a plain run's, not read
    seen = []

    def runner(command, *, cwd, env, timeout):
        seen.append(command[-2:])
        (build_dir / "seed_1+placer-heap-timingweight_60.json").write_text(json.dumps(fake_report(36.5)))

    options = ["--placer-heap-timingweight", "60"]
    rows = ss.sweep(build_dir, [1], options=options, resume=True, runner=runner, log=lambda text: None)
    assert seen == [options] and rows[0]["fmax_mhz"] == 36.5
    # resumed with the same options: read, not placed again; the plain report stays the plain run's
    assert ss.sweep(build_dir, [1], options=options, resume=True, runner=None, log=lambda text: None) == rows
    assert ss.sweep(build_dir, [1], resume=True, runner=None, log=lambda text: None)[0]["fmax_mhz"] == 31.0


def test_summary_of_no_routed_seed():
    assert ss.summarise([{"seed": 1, "fmax_mhz": None, "routed": False}], board_seed=1) == {"routed": 0, "seeds": 1}


@pytest.mark.parametrize("argv, message", [
    (["{tmp}", "--seeds", "2-1"], "ascending"),
    (["{tmp}", "--step-timeout", "0"], "--step-timeout must be minutes > 0"),
    (["{tmp}/missing"], "holds no report.json"),
    (["{tmp}", "--nextpnr-opts", "--seed 3"], "--nextpnr-opts may not set --seed"),
])
def test_bad_command_lines_are_one_line_errors(tmp_path, capsys, argv, message):
    assert ss.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_options_may_be_one_word_that_starts_with_a_dash(tmp_path, monkeypatch):
    """``--nextpnr-opts --opt-timing``: argparse alone would take the value for an option."""
    (tmp_path / "report.json").write_text(json.dumps({"board": "icebreaker", "core_params": SMALL, "freq_mhz": 30.0}))
    calls = []
    monkeypatch.setattr(ss, "sweep", lambda build_dir, seeds, *, options, **kwargs: calls.append(options) or [])
    assert ss.main([str(tmp_path), "--seeds", "3", "--nextpnr-opts", "--opt-timing",
                    "--out", str(tmp_path / "out")]) == 0
    assert calls == [["--opt-timing"]]


def test_report_names_the_options_and_a_command_that_runs_again(tmp_path, monkeypatch):
    build = {"board": "icebreaker", "core_params": SMALL, "freq_mhz": 30.0}
    (tmp_path / "report.json").write_text(json.dumps(build))
    calls = []

    def fake_sweep(build_dir, seeds, *, options, **kwargs):
        calls.append((seeds, options))
        return [{"seed": 3, "fmax_mhz": 35.0, "routed": True, "constraint_mhz": 30.0, "critical_path": {}}]

    monkeypatch.setattr(ss, "sweep", fake_sweep)
    argv = [str(tmp_path), "--seeds", "3", "--nextpnr-opts", "--placer-heap-timingweight 30",
            "--out", str(tmp_path / "out")]
    assert ss.main(argv) == 0
    assert calls == [([3], ["--placer-heap-timingweight", "30"])]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["nextpnr_opts"] == "--placer-heap-timingweight 30"
    assert shlex.split(result["command"])[2:] == argv  # quoted: the same arguments again
    assert "with nextpnr's options `--placer-heap-timingweight 30` added" in (tmp_path / "out.md").read_text()
