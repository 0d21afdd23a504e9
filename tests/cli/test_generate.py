# amaranth: UnusedElaboratable=no
"""``dorefa generate``: Verilog files from the command line, with clear errors."""

import re

import pytest

from sw.cli import main


def test_generate_writes_linted_verilog(tmp_path, capsys):
    out = tmp_path / "rtl" / "threshold.v"
    status = main(["generate", "threshold", "--bits", "3", "--set", "channels=4", "--set", "variant=search",
                   "-o", str(out), "--lint"])
    assert status == 0
    text = out.read_text()
    assert "module dorefa_threshold" in text
    assert "act_bits=3" in capsys.readouterr().out


def test_generate_top_name(tmp_path):
    out = tmp_path / "pc.v"
    assert main(["generate", "popcount", "--width", "100", "--top", "my_popcount", "-o", str(out)]) == 0
    assert "module my_popcount" in out.read_text()


@pytest.mark.parametrize("unit, shape", [
    ("dot_product", ["--set", "length=4"]),
    ("mac_array", ["--set", "max_rows=4", "--set", "max_cols=4", "--pe", "2", "--simd", "2"]),
    ("gemm", ["--set", "max_rows=4", "--set", "max_cols=4", "--set", "vectors=2", "--pe", "2", "--simd", "2"]),
])
def test_run_time_precision_units_take_the_widest_bits(unit, shape, tmp_path, capsys):
    """The compute units serve every width up to ``max_bits`` at run time, as the core does:
    ``--bits W,A,G`` (or ``N``) sets ``max_bits`` to the widest; the precision of each
    side is no parameter of the gateware."""
    out = tmp_path / f"{unit}.v"
    assert main(["generate", unit, *shape, "--bits", "1,2,5", "-o", str(out), "--lint"]) == 0
    assert "max_bits=5" in capsys.readouterr().out
    assert f"module dorefa_{unit}" in out.read_text()
    assert main(["generate", unit, *shape, "--max-bits", "3", "-o", str(out)]) == 0
    assert "max_bits=3" in capsys.readouterr().out
    for gone in ("m_bits=3", "v_signed=true", "mode=serial"):
        assert main(["generate", unit, *shape, "--set", gone, "-o", str(out)]) == 2
        assert f"{unit} has no parameter {gone.split('=')[0]!r}" in capsys.readouterr().err


def test_generate_core_bits_means_widest(tmp_path, capsys):
    out = tmp_path / "core.v"
    assert main(["generate", "core", "--bits", "1,2,4", "--pe", "2", "--simd", "4", "-o", str(out)]) == 0
    assert "max_bits=4, pe=2, simd=4" in capsys.readouterr().out
    assert "module dorefa_core" in out.read_text()


def test_list_names_every_unit(capsys):
    assert main(["generate", "--list"]) == 0
    listing = capsys.readouterr().out
    for unit in ("popcount", "dot_product", "mac_array", "gemm", "threshold", "maxpool", "gradient_quantizer",
                 "prng", "uart_rx", "uart_tx", "core", "uart_core"):
        assert f"{unit}:" in listing
    assert "--bits -> max_bits (widest of N or W,A,G)" in listing
    # the compute units as the core: --bits is the widths served
    for unit in ("dot_product", "mac_array", "gemm"):
        section = re.split(r"\n(?=\S)", listing.split(f"\n{unit}:")[1])[0]  # up to the next unit
        assert "--bits -> max_bits (widest of N or W,A,G)" in section, unit
    assert "--board BOARD" in listing


@pytest.mark.parametrize("argv, message", [
    (["generate", "adder", "-o", "x.v"], "unknown unit 'adder'; allowed: popcount"),
    (["generate", "threshold"], "-o FILE.v"),
    (["generate"], "name a unit"),
    (["generate", "threshold", "--bits", "9", "-o", "x.v"], "1..8"),
    (["generate", "maxpool", "--set", "kernel=0", "-o", "x.v"], "kernel"),
    (["generate", "prng", "--set", "seed=0", "-o", "x.v"], "seed"),
    (["generate", "threshold", "--set", "colour=red", "-o", "x.v"], "no parameter 'colour'"),
    (["generate", "threshold", "--pe", "2", "-o", "x.v"], "--pe does not apply to threshold"),
    (["generate", "core", "--bits", "1,2,4", "--max-bits", "8", "-o", "x.v"], "disagree on max_bits"),
    # --board is for the core only; refused before the boards package is looked at
    (["generate", "popcount", "--board", "icebreaker", "-o", "x.v"],
     "--board applies only to the training core: dorefa generate core --board icebreaker (got unit 'popcount')"),
])
def test_bad_requests_exit_2_with_a_clear_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.v").exists()


# ---------------------------------------------------------------- bounded parameters, tool failures, -o

def _out_of_range():
    """(unit, parameter, text, expected words) for every catalogue parameter: values just
    outside its range (integers), or not among its choices (bool, str)."""
    from hw.catalog import UNITS
    cases = []
    for unit, spec in UNITS.items():
        for name, param in spec.params.items():
            if param.kind is int:
                cases += [(unit, name, str(param.minimum - 1), f"{name} must be in {param.minimum}..{param.maximum}"),
                          (unit, name, str(param.maximum + 1), f"{name} must be in {param.minimum}..{param.maximum}")]
            elif param.kind is bool:
                cases.append((unit, name, "maybe", f"{name} must be true or false"))
            else:
                cases.append((unit, name, "bogus", f"{name} must be one of {', '.join(param.choices)}"))
    return cases


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dorefa generate: error: "), err
    assert lines[0].count(": error:") == 1, err
    return lines[0]


@pytest.mark.parametrize("unit, name, text, message", _out_of_range(), ids=lambda v: str(v))
def test_every_parameter_is_bounded(unit, name, text, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", unit, "--set", f"{name}={text}", "-o", "x.v"]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_parameter_bounds_are_allowed_values():
    from hw.catalog import UNITS, parse_assignments
    for unit, spec in UNITS.items():
        for name, param in spec.params.items():
            if param.kind is int:
                for value in (param.minimum, param.maximum):
                    assert parse_assignments(spec, [f"{name}={value}"])[name] == value


def test_list_shows_the_allowed_ranges(capsys):
    assert main(["generate", "--list"]) == 0
    listing = capsys.readouterr().out
    for line in ("width=64 (1..4096)  input word width", "arch=chain (chain|dadda|packed)",
                 "max_lanes=None (1..65536|none)", "stride=None (1..16|none)", "seed=2463534242 (1..4294967295)",
                 "max_bits=8 (1..8)", "vectors=1 (1..64)"):
        assert line in listing


@pytest.mark.parametrize("argv, message", [
    # the two commands of the report: an Amaranth AssertionError and a YosysError, exit 1, before
    (["generate", "popcount", "--width", "100000", "-o", "x.v"], "--width: width must be in 1..4096, got 100000"),
    (["generate", "threshold", "--top", "bad name", "--lint", "-o", "x.v"],
     "--top 'bad name' is not a Verilog module name"),
    (["generate", "threshold", "--top", "9lives", "-o", "x.v"], "not a Verilog module name"),
])
def test_reported_commands_are_one_line_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_yosys_failure_is_one_line(tmp_path, monkeypatch, capsys):
    from amaranth._toolchain.yosys import YosysError

    from sw.cli import generate as generate_cli

    def fail(*args, **kwargs):
        raise YosysError("Warning: something\nERROR: Parser error in line 4: syntax error\nmore")

    monkeypatch.setattr(generate_cli, "generate_verilog", fail)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "threshold", "-o", "x.v"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "Yosys could not convert threshold to Verilog: ERROR: Parser error in line 4: syntax error" in line
    assert list(tmp_path.iterdir()) == []


def test_lint_failure_is_one_line(tmp_path, monkeypatch, capsys):
    import sim.lint

    def fail(path, top):
        raise sim.lint.LintError(f"verilator --lint-only failed on {path}:\n%Warning-X: a.v:1: hm\n"
                                 f"%Error: a.v:3: bad thing\n%Error: Exiting due to 1 error(s)")

    monkeypatch.setattr(sim.lint, "lint_verilog", fail)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "prng", "--lint", "-o", "x.v"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "verilator --lint-only rejected x.v (kept): %Error: a.v:3: bad thing" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.v"]


def test_output_that_is_a_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rtl").mkdir()
    assert main(["generate", "prng", "-o", "rtl"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "-o rtl is a directory; give a file to write, e.g. -o rtl/prng.v" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtl"]
    assert list((tmp_path / "rtl").iterdir()) == []


def test_write_failure_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    def full(self, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", full)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "prng", "-o", "out/x.v"]) == 2
    assert "cannot write out/x.v: No space left on device" in _one_error_line(capsys.readouterr().err)
    assert list((tmp_path / "out").iterdir()) == []


def test_output_under_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("keep")
    assert main(["generate", "prng", "-o", "f/x.v"]) == 2
    assert "cannot write f/x.v" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "f").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]
