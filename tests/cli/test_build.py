# amaranth: UnusedElaboratable=no
"""``dorefa build``: the build's progress goes to stderr, its report to stdout, and a
failed tool step is named (exit 1), with a stubbed tool runner (no tool runs here);
``--freq`` / ``--baud`` / ``--pe`` / ``--simd``: their errors, and what they hand the build."""

from fractions import Fraction

import pytest

import boards.build
from boards.build import parse_nextpnr_report
from boards.top import BOARDS, CORE_PRESETS, BoardTop
from sw.cli import main
from sw.contract.core import CORE_DEFAULTS
from tests.boards.test_build_progress import _fake_tools
from tests.checks import fails


def test_cli_progress_goes_to_stderr(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(boards.build, "run_tool", _fake_tools(calls))
    assert main(["build", "--board", "icebreaker", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "synthesis (yosys)..." in captured.err and "packing (icepack) done in" in captured.err
    assert "synthesis" not in captured.out and "fits: yes" in captured.out


def test_cli_failed_step_is_named(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(boards.build, "run_tool", _fake_tools(calls, fail_at="NEXTPNR"))
    assert main(["build", "--board", "icebreaker", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "[2/3] place and route (nextpnr)..." in err and "place and route (nextpnr) done" not in err
    assert "the toolchain failed (exit 1)" in err.splitlines()[-1]
    assert len(calls) == 2


# --freq, --pe, --simd: one-line errors (exit 2, nothing built), and what reaches boards.build.build.

@pytest.mark.parametrize("board, argv, patterns", [
    ("icebreaker", ["--freq", "300"], ["dorefa build: error: --freq 300: the iCE40 PLL cannot make 300 MHz from the "
                                       "12 MHz clock; allowed: 16.125..275 MHz"]),
    ("icebreaker", ["--freq", "16"], ["--freq 16:", "allowed: 16.125..275 MHz"]),
    ("ulx3s", ["--freq", "9.5"], ["--freq 9.5: the ECP5 PLL cannot make 9.5 MHz from the 25 MHz clock; "
                                  "allowed: 10..400 MHz"]),
    ("ulx3s", ["--freq", "401"], ["allowed: 10..400 MHz"]),
    ("icebreaker", ["--freq", "fast"], ["--freq fast: the core clock must be a number of MHz, got 'fast'"]),
    ("icebreaker", ["--freq", "0"], ["--freq 0: the core clock must be a positive number of MHz"]),
    ("icebreaker", ["--freq", "-20"], ["must be a positive number of MHz"]),
    ("ulx3s", ["--freq", "nan"], ["--freq nan: the core clock must be a number of MHz"]),
    ("icebreaker", ["--freq"], ["argument --freq: expected one argument"]),
    ("icebreaker", ["--pe", "0"], ["--pe: pe must be in 1..64, got 0"]),
    ("icebreaker", ["--pe", "four"], ["--pe must be an integer, got 'four'"]),
    ("ulx3s", ["--simd", "1025"], ["--simd: simd must be in 1..1024, got 1025"]),
    # --set NAME=VALUE: any core parameter, checked as generate's
    ("ulx3s", ["--set", "drains=0"], ["dorefa build: error: ", "drains must be in 1..64, got 0"]),
    ("ulx3s", ["--set", "speed=9"], ["dorefa build: error: ", "speed"]),
    ("ulx3s", ["--set", "drains"], ["dorefa build: error: ", "NAME=VALUE"]),
    ("ulx3s", ["--simd", "x"], ["--simd must be an integer, got 'x'"]),
    # --seed: nextpnr's placement seed, an integer >= 0
    ("icebreaker", ["--seed", "two"], ["dorefa build: error: --seed takes an integer >= 0, got 'two'"]),
    ("ulx3s", ["--seed", "-1"], ["--seed takes an integer >= 0, got '-1'"]),
    ("ulx3s", ["--seed", "²"], ["--seed takes an integer >= 0, got '²'"]),
    # --step-timeout: minutes > 0
    ("icebreaker", ["--step-timeout", "0"], ["dorefa build: error: --step-timeout takes a number of minutes > 0, "
                                             "got '0'"]),
    ("ulx3s", ["--step-timeout", "soon"], ["--step-timeout takes a number of minutes > 0, got 'soon'"]),
    ("ulx3s", ["--step-timeout", "inf"], ["--step-timeout takes a number of minutes > 0, got 'inf'"]),
    # --baud: a rate, in range, that the achieved clock divides into within 2.5 %
    ("icebreaker", ["--baud", "3M"], ["dorefa build: error: --baud 3M: the UART's baud rate must be a whole number "
                                      "of bits per second in 300..12000000 (e.g. 3000000, or 115200 the fallback), "
                                      "got '3M'"]),
    ("icebreaker", ["--baud", "0"], ["--baud 0:", "in 300..12000000", "got '0'"]),
    ("ulx3s", ["--baud", "12500000"], ["--baud 12500000:", "in 300..12000000"]),
    ("icebreaker", ["--baud", "-115200"], ["--baud -115200:", "got '-115200'"]),
    ("icebreaker", ["--baud", "115200.0"], ["--baud 115200.0:", "whole number"]),
    # 30 MHz / 4 cycles = 7.5 Mbaud at most
    ("icebreaker", ["--baud", "12000000"], ["--baud 12000000: 12000000 baud is too fast for a 30 MHz core clock: "
                                            "the UART needs at least 4 clock cycles a bit, so at most 7500000 baud"]),
    # 30 MHz / 2.2 Mbaud = 13.6 -> 14 cycles: 2,142,857 baud, 2.6 % slow
    ("icebreaker", ["--baud", "2200000"], ["--baud 2200000: 2200000 baud is 2.60 % off on a 30 MHz core clock "
                                           "(divisor 14 makes 2142857 baud; at most 2.5 % is allowed)"]),
    # the iCEBreaker's old clock, 27.75 MHz: 9.25 cycles a bit at the default rate
    ("icebreaker", ["--freq", "28"], ["dorefa build: error: the default --baud 3000000: 3000000 baud is 2.78 % off "
                                      "on a 27.75 MHz core clock"]),
    ("icebreaker", ["--freq", "20", "--baud", "3000000"], ["--baud 3000000: 3000000 baud is 5.36 % off on a "
                                                           "19.875 MHz core clock"]),
])
def test_freq_pe_simd_errors(board, argv, patterns, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fails(capsys, ["build", "--board", board, "--out", str(tmp_path / "out"), *argv], *patterns)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def recorded(monkeypatch):
    """boards.build.build replaced by a recorder (no tool runs); returns the calls."""
    calls = []

    def build(board, out_dir, *, core_params=None, freq_mhz=None, baud=None, bits=None, seed=None, step_timeout=None,
              report_stem=None):
        calls.append(dict(board=board, core_params=core_params, freq_mhz=freq_mhz, baud=baud, seed=seed,
                          step_timeout=step_timeout))
        top = BoardTop(board, freq_mhz=freq_mhz, baud=baud, **core_params)
        return parse_nextpnr_report(RAW, board=board, family=BOARDS[board].family, core_params=top.core_params,
                                    pll=top.pll, uart=top.uart)

    monkeypatch.setattr(boards.build, "build", build)
    return calls


#: A nextpnr report excerpt, typed by hand.
RAW = {"utilization": {"ICESTORM_LC": {"used": 100, "available": 5280}},
       "fmax": {"pll_clk": {"achieved": 52.5, "constraint": 50.0}}}


@pytest.mark.parametrize("board, argv, freq, line", [
    # the default: 12 * 80 / 32
    ("icebreaker", [], None, "core clock: 30 MHz from the PLL (asked 30 MHz); SB_PLL40_PAD from 12 MHz: "
                             "DIVR=0 DIVF=79 DIVQ=5 FILTER_RANGE=1, VCO 960 MHz"),
    # 12 * 64 / 16
    ("icebreaker", ["--freq", "48"], 48, "core clock: 48 MHz from the PLL (asked 48 MHz); SB_PLL40_PAD from 12 MHz: "
                                         "DIVR=0 DIVF=63 DIVQ=4 FILTER_RANGE=1, VCO 768 MHz"),
    # 25 / 7 * 9 = 32.142857: the highest at or below 33.3 (33.33 would be above); 10.7 cycles a bit at
    # 3 Mbaud would be 2.6 % off, so at the fallback rate
    ("ulx3s", ["--freq", "33.3", "--baud", "115200"], Fraction(333, 10),
     "core clock: 32.142857 MHz from the PLL (asked 33.3 MHz); EHXPLLL from 25 MHz: CLKI_DIV=7 CLKFB_DIV=9 "
     "CLKOP_DIV=19"),
    ("ulx3s", ["--freq", "50"], 50, "core clock: 50 MHz from the PLL (asked 50 MHz); EHXPLLL from 25 MHz: "
                                    "CLKI_DIV=1 CLKFB_DIV=2 CLKOP_DIV=12 CLKOP_CPHASE=5, VCO 600 MHz"),
])
def test_freq_reaches_the_build_and_the_report(board, argv, freq, line, recorded, tmp_path, capsys):
    assert main(["build", "--board", board, "--out", str(tmp_path / "out"), *argv]) == 0
    (call,) = recorded
    assert call["freq_mhz"] == freq
    assert line in capsys.readouterr().out


@pytest.mark.parametrize("board, argv, baud, line", [
    # the default rate: 30 MHz / 10; 71.875 MHz / 24 = 2994791.7, 0.174 % slow
    ("icebreaker", [], 3_000_000, "UART: 3000000 baud (asked 3000000, error 0.000 %; divisor 10 cycles a bit)"),
    ("ulx3s", [], 3_000_000, "UART: 2994792 baud (asked 3000000, error 0.174 %; divisor 24 cycles a bit)"),
    # the fallback: 30 MHz / 260 = 115384.6, 0.160 % fast
    ("icebreaker", ["--baud", "115200"], 115_200,
     "UART: 115385 baud (asked 115200, error 0.160 %; divisor 260 cycles a bit)"),
    # 50 MHz / 17 = 2941176.5, 1.961 % slow: within the tolerance
    ("ulx3s", ["--freq", "50"], 3_000_000,
     "UART: 2941176 baud (asked 3000000, error 1.961 %; divisor 17 cycles a bit)"),
    # 48 MHz / 4 = 12 Mbaud: the fastest rate
    ("icebreaker", ["--freq", "48", "--baud", "12000000"], 12_000_000,
     "UART: 12000000 baud (asked 12000000, error 0.000 %; divisor 4 cycles a bit)"),
])
def test_baud_reaches_the_build_and_the_report(board, argv, baud, line, recorded, tmp_path, capsys):
    assert main(["build", "--board", board, "--out", str(tmp_path / "out"), *argv]) == 0
    (call,) = recorded
    assert call["baud"] == baud
    assert line in capsys.readouterr().out


def test_pe_simd_override_the_boards_preset(recorded, tmp_path, monkeypatch, capsys):
    """The board's preset is what a build gets; each flag overrides its one key."""
    monkeypatch.setitem(CORE_PRESETS, "icebreaker", {**CORE_DEFAULTS, "pe": 2, "simd": 4})
    out = ["--out", str(tmp_path / "out")]
    assert main(["build", "--board", "icebreaker", *out]) == 0
    assert main(["build", "--board", "icebreaker", "--pe", "8", *out]) == 0
    assert main(["build", "--board", "icebreaker", "--simd", "16", "--pe", "1", *out]) == 0
    assert main(["build", "--board", "ulx3s", *out]) == 0
    assert [(c["core_params"]["pe"], c["core_params"]["simd"]) for c in recorded] == [(2, 4), (8, 4), (1, 16), (8, 32)]
    assert all(c["core_params"]["max_bits"] == CORE_DEFAULTS["max_bits"] for c in recorded)
    assert "pe=2 simd=4" in capsys.readouterr().out


def test_set_overrides_any_core_parameter(recorded, tmp_path, capsys):
    """``--set`` reaches the core's parameters over the preset, as ``dorefa generate``'s."""
    out = ["--out", str(tmp_path / "out")]
    assert main(["build", "--board", "ulx3s", "--set", "drains=4", "--set", "fmap_codes=0", "--set", "max_pool=1", "--vectors", "4",
                 *out]) == 0
    (call,) = recorded
    assert (call["core_params"]["drains"], call["core_params"]["fmap_codes"], call["core_params"]["vectors"]) == (4, 0, 4)
    assert call["core_params"]["simd"] == CORE_PRESETS["ulx3s"]["simd"]
    assert "drains=4" in capsys.readouterr().out


def test_seed_reaches_the_build(recorded, tmp_path):
    """``--seed N`` is handed to the build; without it the build takes the board's."""
    out = ["--out", str(tmp_path / "out")]
    assert main(["build", "--board", "ulx3s", "--seed", "7", *out]) == 0
    assert main(["build", "--board", "icebreaker", *out]) == 0
    assert [call["seed"] for call in recorded] == [7, None]


def test_step_timeout_reaches_the_build_in_seconds(recorded, tmp_path):
    out = ["--out", str(tmp_path / "out")]
    assert main(["build", "--board", "icebreaker", "--step-timeout", "2.5", *out]) == 0
    assert main(["build", "--board", "ulx3s", *out]) == 0
    assert [call["step_timeout"] for call in recorded] == [150.0, None]


def test_a_step_past_its_timeout_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    """Exit 1 (a tool failed), the step named and the way out: another seed."""

    def runner(command, *, cwd, env, timeout=None):
        if "NEXTPNR" in command[2].splitlines()[-1]:
            raise boards.build.subprocess.TimeoutExpired(command, timeout)

    monkeypatch.setattr(boards.build, "run_tool", runner)
    assert main(["build", "--board", "icebreaker", "--step-timeout", "1", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("dorefa build: error: place and route (nextpnr) ran past 60 s and was stopped "
                              "(nextpnr's router can loop forever on an unlucky placement: try another --seed)")
