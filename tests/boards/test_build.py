# amaranth: UnusedElaboratable=no
"""``dorefa build`` / :mod:`boards.build`: the nextpnr report parser, CLI errors, a real iCEBreaker build.

``data/icebreaker_nextpnr_report.json`` is nextpnr-ice40's ``--report`` of the
default iCEBreaker build (``dorefa build --board icebreaker``), kept as
nextpnr wrote it (``utilization``, ``fmax``, ``critical_paths``);
``data/ulx3s_nextpnr_report.json`` the same for the ULX3S (nextpnr-ecp5).
"""

import json
from pathlib import Path

import pytest

from boards.build import ClockReport, Report, parse_nextpnr_report
from boards.top import BOARDS, BoardTop
from sw.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture
def ice40_report():
    return json.loads((DATA / "icebreaker_nextpnr_report.json").read_text())


def test_parse_ice40_report(ice40_report):
    report = parse_nextpnr_report(ice40_report, board="icebreaker", family="ice40", device="iCE40UP5K",
                                  core_params={"pe": 4}, ffs=123)
    util = ice40_report["utilization"]
    assert report.luts == (util["ICESTORM_LC"]["used"], util["ICESTORM_LC"]["available"]) == (report.luts[0], 5280)
    assert report.bram[1] == 30 and 0 < report.bram[0] <= 30
    assert report.dsp[1] == 8
    assert report.ffs == 123
    assert report.fits
    (clock,) = report.clocks
    assert clock.constraint_mhz == pytest.approx(12.0, rel=1e-4)
    assert clock.fmax_mhz == pytest.approx(ice40_report["fmax"][clock.name]["achieved"])
    assert report.timing_met == (clock.fmax_mhz >= 12.0)


def test_report_round_trip_text_and_json(ice40_report):
    report = parse_nextpnr_report(ice40_report, board="icebreaker", family="ice40")
    text = report.to_text()
    assert "logic cells" in text and "block RAMs" in text and "Fmax" in text and "12.00 MHz" in text
    data = report.to_json()
    assert data["fits"] is True and data["timing_met"] == report.timing_met
    assert json.loads(json.dumps(data))["clocks"][0]["constraint_mhz"] == pytest.approx(12.0, rel=1e-4)


def test_parse_ecp5_report():
    raw = json.loads((DATA / "ulx3s_nextpnr_report.json").read_text())
    report = parse_nextpnr_report(raw, board="ulx3s", family="ecp5")
    util = raw["utilization"]
    assert report.luts == (util["TRELLIS_COMB"]["used"], 83640)
    assert report.ffs == util["TRELLIS_FF"]["used"] > 0
    assert report.bram == (util["DP16KD"]["used"], 208)
    assert report.dsp == (util["MULT18X18D"]["used"], 156)
    (clock,) = report.clocks
    assert clock.constraint_mhz == pytest.approx(25.0)
    assert report.fits and report.timing_met
    assert "LUT4s:" in report.to_text()


def test_ecp5_names_and_failed_timing():
    raw = {"utilization": {"TRELLIS_COMB": {"used": 100, "available": 83640},
                           "TRELLIS_FF": {"used": 40, "available": 83640},
                           "DP16KD": {"used": 3, "available": 208},
                           "MULT18X18D": {"used": 0, "available": 156}},
           "fmax": {"$glbnet$clk": {"achieved": 20.0, "constraint": 25.0}}}
    report = parse_nextpnr_report(raw, board="ulx3s", family="ecp5")
    assert report.luts == (100, 83640) and report.ffs == 40 and report.bram == (3, 208) and report.dsp == (0, 156)
    assert report.fits and not report.timing_met
    assert "FAILED" in report.to_text()


def test_overfull_does_not_fit():
    raw = {"utilization": {"ICESTORM_LC": {"used": 6000, "available": 5280}}, "fmax": {}}
    report = parse_nextpnr_report(raw, board="icebreaker", family="ice40")
    assert not report.fits and not report.timing_met  # no clock reported: not met


@pytest.mark.parametrize("raw, message", [({}, "not a nextpnr JSON report"), ([], "not a nextpnr JSON report")])
def test_parser_rejects_garbage(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_nextpnr_report(raw, board="icebreaker", family="ice40")


def test_board_top_checks_parameters():
    assert set(BOARDS) == {"icebreaker", "ulx3s"}
    assert BoardTop("icebreaker").clk_freq == 12_000_000
    assert BoardTop("ulx3s", pe=2).clk_freq == 25_000_000
    with pytest.raises(ValueError, match="unknown board 'de0'"):
        BoardTop("de0")
    with pytest.raises(ValueError, match="pe"):
        BoardTop("icebreaker", pe=0)


@pytest.mark.parametrize("argv, message", [
    (["build"], "name the board with --board icebreaker | ulx3s"),
    (["build", "--board", "de0"], "unknown board 'de0'; allowed: icebreaker, ulx3s"),
    (["build", "--board", "icebreaker", "--pe", "x"], "--pe must be an integer"),
    (["build", "--board", "icebreaker", "--pe", "0"], "pe must be in"),
    (["build", "--board", "icebreaker", "--max-bits", "9"], "max_bits must be in 1..8"),
    (["build", "--board", "icebreaker", "--bits", "1,2,4"], "use --max-bits N"),
    (["build", "--board", "icebreaker", "--colour", "red"], "unrecognized arguments"),
])
def test_cli_errors_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_icebreaker_default_fits_and_meets_timing(tmp_path, capsys):
    assert main(["build", "--board", "icebreaker", "--out", str(tmp_path)]) == 0
    assert "timing: met" in capsys.readouterr().out
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["fits"] and data["timing_met"]
    assert data["luts"][0] <= data["luts"][1] == 5280
    assert data["clocks"][0]["constraint_mhz"] == pytest.approx(12.0, rel=1e-4)
    assert (tmp_path / "top.bin").exists()
