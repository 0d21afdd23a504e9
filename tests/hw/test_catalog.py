# amaranth: UnusedElaboratable=no
"""Every catalogued unit generates Verilog that Verilator lints clean; bad requests explain themselves."""

import pytest

from hw.catalog import UNITS, build_unit, generate_verilog, parse_assignments
from sim.lint import LintError, lint_verilog


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_generated_verilog_passes_verilator_lint(unit, tmp_path):
    path = tmp_path / f"{unit}.v"
    path.write_text(generate_verilog(unit))
    lint_verilog(path, f"dorefa_{unit}")


def test_lint_catches_broken_verilog(tmp_path):
    path = tmp_path / "broken.v"
    path.write_text("module broken(input a, output b); assign b = c; endmodule\n")
    with pytest.raises(LintError, match="broken"):
        lint_verilog(path, "broken")


@pytest.mark.parametrize("unit, bits, expected", [
    ("threshold", "3", {"abits": 3}),
    ("gradient_quantizer", "4", {"gbits": 4}),
    ("dot_product", "2,5", {"x_bits": 2, "y_bits": 5}),
    ("mac_array", "3", {"mem_bits": 3, "in_bits": 3}),
])
def test_bits_shorthand(unit, bits, expected):
    values = parse_assignments(UNITS[unit], [], bits=bits)
    assert {k: values[k] for k in expected} == expected


def test_assignments_are_typed():
    values = parse_assignments(UNITS["dot_product"], ["mode=serial", "x_signed=false", "length=0x10"])
    assert (values["mode"], values["x_signed"], values["length"]) == ("serial", False, 16)


@pytest.mark.parametrize("unit, assignments, kwargs, message", [
    ("threshold", ["nope=1"], {}, "no parameter 'nope'; allowed: abits"),
    ("threshold", ["abits"], {}, "NAME=VALUE"),
    ("threshold", ["abits=x"], {}, "must be an integer"),
    ("dot_product", ["mode=fast"], {}, "parallel, serial"),
    ("dot_product", [], {"bits": "1,2,3"}, "takes 2 values"),
    ("prng", [], {"bits": "2"}, "--bits does not apply to prng"),
])
def test_bad_requests_name_what_is_allowed(unit, assignments, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_assignments(UNITS[unit], assignments, **kwargs)


def test_unknown_unit_lists_units():
    with pytest.raises(ValueError, match="allowed: popcount, dot_product"):
        build_unit("adder")


def test_out_of_range_parameter_gets_the_units_own_message():
    with pytest.raises(ValueError, match="1..8"):
        build_unit("threshold", abits=9)
