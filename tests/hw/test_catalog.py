# amaranth: UnusedElaboratable=no
"""Every catalogued unit generates Verilog that Verilator lints clean; bad requests explain themselves."""

import ast
import inspect
from pathlib import Path

import pytest

from hw.catalog import UNITS, build_unit, generate_verilog, parse_assignments, widest_bits
from hw.core import TrainingCore
from sim.lint import LintError, lint_verilog
from sw import core_model
from sw.contract.core import CORE_DEFAULTS, CoreInfo
from sw.contract.link import PROTOCOL_VERSION


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
    ("threshold", "3", {"act_bits": 3}),
    ("gradient_quantizer", "4", {"gbits": 4}),
    ("dot_product", "2,5", {"m_bits": 2, "v_bits": 5}),
    ("mac_array", "3", {"m_bits": 3, "v_bits": 3}),
])
def test_bits_shorthand(unit, bits, expected):
    values = parse_assignments(UNITS[unit], [], bits=bits)
    assert {k: values[k] for k in expected} == expected


@pytest.mark.parametrize("unit", ["core", "uart_core"])
def test_catalog_core_defaults_are_the_contracts(unit):
    defaults = UNITS[unit].defaults()
    assert {k: defaults[k] for k in CORE_DEFAULTS} == dict(CORE_DEFAULTS)
    built = build_unit(unit)
    info = (built.core if unit == "uart_core" else built).info  # UARTCore passes its parameters to its core
    assert info == CoreInfo(PROTOCOL_VERSION, **CORE_DEFAULTS)
    assert core_model.CoreModel().info == info


@pytest.mark.parametrize("cls", [TrainingCore, core_model.CoreModel])
def test_constructor_defaults_are_the_contracts(cls):
    """Each default of the core's constructors is the contract's value of the same name (not another's)."""
    params = inspect.signature(cls).parameters
    assert {k: params[k].default for k in CORE_DEFAULTS} == dict(CORE_DEFAULTS)


def test_core_defaults_are_assigned_once():
    """``CORE_DEFAULTS = ...`` appears in one module of the tree, the contract's; the others import it."""
    root = Path(__file__).resolve().parents[2]
    where = []
    for folder in ("sw", "hw", "sim", "tb", "boards", "bench"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
                if any(isinstance(t, ast.Name) and t.id == "CORE_DEFAULTS" for t in targets):
                    where.append(path.relative_to(root).as_posix())
    assert where == ["sw/contract/core.py"]


@pytest.mark.parametrize("text, widest, widths", [("4", 4, (4,)), ("1,2,6", 6, (1, 2, 6)), (" 8, 1 ,1", 8, (8, 1, 1))])
def test_widest_bits(text, widest, widths):
    assert widest_bits(text) == (widest, widths)


@pytest.mark.parametrize("text", ["", "0", "9", "1,2", "1,2,3,4", "1,2,32", "1,x,2"])
def test_widest_bits_rejects(text):
    with pytest.raises(ValueError, match="--bits takes one width N or W,A,G, each an integer in 1..8"):
        widest_bits(text)


@pytest.mark.parametrize("unit, flags, expected", [
    ("core", {"bits": "1,2,4"}, {"max_bits": 4}),
    ("core", {"bits": "3"}, {"max_bits": 3}),
    ("core", {"bits": "1,2,4", "max_bits": "4", "pe": "2", "simd": "16"}, {"max_bits": 4, "pe": 2, "simd": 16}),
    ("uart_core", {"max_bits": "6"}, {"max_bits": 6}),
    ("mac_array", {"pe": "2", "simd": "8"}, {"pe": 2, "simd": 8}),
])
def test_core_shorthand_flags(unit, flags, expected):
    values = parse_assignments(UNITS[unit], [], **flags)
    assert {k: values[k] for k in expected} == expected


@pytest.mark.parametrize("unit, assignments, flags, message", [
    ("core", [], {"bits": "1,2,4", "max_bits": "8"},
     "--bits 1,2,4 and --max-bits 8 disagree on max_bits (4 against 8); give one of them"),
    ("core", ["pe=8"], {"pe": "2"}, "--pe 2 and --set pe=8 disagree on pe"),
    ("dot_product", ["m_bits=3"], {"bits": "1,2"}, "disagree on m_bits"),
    ("core", [], {"pe": "two"}, "--pe must be an integer, got 'two'"),
    ("core", [], {"max_bits": "x"}, "--max-bits must be an integer"),
    ("threshold", [], {"pe": "2"}, "--pe does not apply to threshold"),
    ("mac_array", [], {"max_bits": "2"}, "--max-bits does not apply to mac_array"),
])
def test_conflicting_or_misplaced_flags(unit, assignments, flags, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_assignments(UNITS[unit], assignments, **flags)


def test_later_set_overrides_earlier_set():
    assert parse_assignments(UNITS["core"], ["pe=8", "pe=2"])["pe"] == 2


def test_assignments_are_typed():
    values = parse_assignments(UNITS["dot_product"], ["mode=serial", "m_signed=false", "length=0x10"])
    assert (values["mode"], values["m_signed"], values["length"]) == ("serial", False, 16)


@pytest.mark.parametrize("unit, assignments, kwargs, message", [
    ("threshold", ["nope=1"], {}, "no parameter 'nope'; allowed: act_bits"),
    ("threshold", ["act_bits"], {}, "NAME=VALUE"),
    ("threshold", ["act_bits=x"], {}, "must be an integer"),
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
        build_unit("threshold", act_bits=9)
