# amaranth: UnusedElaboratable=no
"""Every catalogued unit generates Verilog that Verilator lints clean; bad requests explain themselves."""

import ast
import inspect
import re
from pathlib import Path

import pytest

from hw.catalog import UNITS, Param, build_unit, generate_verilog, parse_assignments, standalone, widest_bits
from hw.core import TrainingCore
from hw.dot_product import DotProduct
from hw.gemm import GemmEngine
from hw.mac_array import MacArray
from sim.lint import LintError, lint_verilog
from sw import core_model
from sw.contract.core import CORE_DEFAULTS, CoreInfo
from sw.contract.link import PROTOCOL_VERSION
from tests.hw.helpers import unelaborated


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
    ("serial_threshold", "4", {"max_act_bits": 4}),
    ("gradient_quantizer", "4", {"gbits": 4}),
    # the run-time-precision units: --bits names the widths to serve, max_bits is the widest
    ("dot_product", "2,5,1", {"max_bits": 5}),
    ("mac_array", "3", {"max_bits": 3}),
    ("gemm", "1,8,2", {"max_bits": 8}),
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
    # and its rate: 12 MHz / 115200 = 104.17 -> 104 cycles a bit, 115385 baud; a byte-stream core has none
    baud = 115_385 if unit == "uart_core" else 0
    assert info == CoreInfo(PROTOCOL_VERSION, **CORE_DEFAULTS, baud=baud)
    assert core_model.CoreModel(baud=baud).info == info


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
    ("mac_array", {"bits": "1,2,4", "max_bits": "4"}, {"max_bits": 4}),
    ("gemm", {"pe": "3", "simd": "5", "max_bits": "6"}, {"pe": 3, "simd": 5, "max_bits": 6}),
    ("dot_product", {"width": "16", "max_bits": "2"}, {"length": 16, "max_bits": 2}),
])
def test_core_shorthand_flags(unit, flags, expected):
    values = parse_assignments(UNITS[unit], [], **flags)
    assert {k: values[k] for k in expected} == expected


@pytest.mark.parametrize("unit, assignments, flags, message", [
    ("core", [], {"bits": "1,2,4", "max_bits": "8"},
     "--bits 1,2,4 and --max-bits 8 disagree on max_bits (4 against 8); give one of them"),
    ("core", ["pe=8"], {"pe": "2"}, "--pe 2 and --set pe=8 disagree on pe"),
    ("dot_product", ["max_bits=3"], {"bits": "1,2,4"},
     "--bits 1,2,4 and --set max_bits=3 disagree on max_bits (4 against 3)"),
    ("gemm", [], {"bits": "2", "max_bits": "3"}, "--bits 2 and --max-bits 3 disagree on max_bits"),
    ("core", [], {"pe": "two"}, "--pe must be an integer, got 'two'"),
    ("core", [], {"max_bits": "x"}, "--max-bits must be an integer"),
    ("threshold", [], {"pe": "2"}, "--pe does not apply to threshold"),
    ("mac_array", [], {"width": "8"}, "--width does not apply to mac_array; set its parameters with --set "
                                      "(pe, vectors, simd, max_bits, max_rows, max_cols, popcount_stages, "
                                      "popcount_arch, fetch_stages, drains)"),
    ("gemm", [], {"width": "8"}, "--width does not apply to gemm"),
])
def test_conflicting_or_misplaced_flags(unit, assignments, flags, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_assignments(UNITS[unit], assignments, **flags)


def test_later_set_overrides_earlier_set():
    assert parse_assignments(UNITS["core"], ["pe=8", "pe=2"])["pe"] == 2


def test_assignments_are_typed():
    values = parse_assignments(UNITS["dot_product"], ["popcount_arch=dadda", "max_lanes=none", "length=0x10"])
    assert (values["popcount_arch"], values["max_lanes"], values["length"]) == ("dadda", None, 16)
    assert parse_assignments(UNITS["dot_product"], ["max_lanes=96"])["max_lanes"] == 96


@pytest.mark.parametrize("text, value", [("true", True), ("ON", True), ("1", True), ("no", False), ("0", False)])
def test_bool_parameters_parse(text, value):
    assert Param(bool, True, "a switch").parse("flag", text) is value


def test_bool_parameter_rejects_other_text():
    with pytest.raises(ValueError, match="flag must be true or false, got 'maybe'"):
        Param(bool, True, "a switch").parse("flag", "maybe")


@pytest.mark.parametrize("unit, assignments, kwargs, message", [
    ("threshold", ["nope=1"], {}, "no parameter 'nope'; allowed: act_bits"),
    ("threshold", ["act_bits"], {}, "NAME=VALUE"),
    ("threshold", ["act_bits=x"], {}, "must be an integer"),
    ("dot_product", ["popcount_arch=fast"], {}, "popcount_arch must be one of chain, dadda, packed, got 'fast'"),
    ("dot_product", ["m_bits=2"], {}, "dot_product has no parameter 'm_bits'; allowed: length, max_bits"),
    ("mac_array", ["mode=serial"], {}, "mac_array has no parameter 'mode'"),
    ("dot_product", [], {"bits": "1,2"}, "--bits takes one width N or W,A,G"),
    ("gemm", [], {"bits": "9"}, "--bits takes one width N or W,A,G, each an integer in 1..8"),
    ("prng", [], {"bits": "2"}, "--bits does not apply to prng"),
])
def test_bad_requests_name_what_is_allowed(unit, assignments, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_assignments(UNITS[unit], assignments, **kwargs)


def test_unknown_unit_lists_units():
    with pytest.raises(ValueError, match="allowed: popcount, dot_product, mac_array, gemm, threshold"):
        build_unit("adder")


# ---------------------------------------------------------------- the run-time-precision units

# The catalogue's parameters of each unit are its constructor's, bar those it leaves at their defaults.
CONSTRUCTORS = {"dot_product": (DotProduct, set()), "mac_array": (MacArray, set()), "gemm": (GemmEngine, set())}


@pytest.mark.parametrize("unit", sorted(CONSTRUCTORS))
def test_catalog_parameters_are_the_constructors(unit):
    cls, left_out = CONSTRUCTORS[unit]
    params = inspect.signature(cls).parameters
    assert set(UNITS[unit].params) == set(params) - left_out
    for name, param in UNITS[unit].params.items():  # a default the constructor has is the constructor's
        if params[name].default is not inspect.Parameter.empty:
            assert param.default == params[name].default, name


@pytest.mark.parametrize("unit, params, expected", [
    ("dot_product", dict(length=12, max_bits=3, max_lanes=48, popcount_stages=2, popcount_arch="dadda"),
     dict(length=12, max_bits=3, max_lanes=48, popcount_stages=2, latency=4, sum_bits=12)),  # 48 * 49 < 2**12
    ("dot_product", dict(length=12), dict(max_lanes=12, max_bits=8)),
    ("mac_array", dict(pe=3, vectors=2, simd=5, max_bits=4, max_rows=7, max_cols=11, popcount_stages=1),
     dict(pe=3, vectors=2, simd=5, max_bits=4, drain=6, ops_per_cycle=30, latency=5)),
    ("gemm", dict(pe=2, vectors=3, simd=4, max_bits=2, max_rows=5, max_cols=9),
     dict(pe=2, vectors=3, simd=4, ops_per_cycle=24)),
])
def test_build_unit_passes_every_parameter(unit, params, expected):
    with unelaborated():
        built = build_unit(unit, **params)
        assert {name: getattr(built, name) for name in expected} == expected


def test_run_time_units_serve_the_widest_bits():
    with unelaborated():
        for unit in ("dot_product", "mac_array", "gemm"):
            values = parse_assignments(UNITS[unit], [], bits="1,2,6")
            assert values["max_bits"] == 6
            built = build_unit(unit, **values)
            assert (built.array if unit == "gemm" else built).max_bits == 6


@pytest.mark.parametrize("unit, params, ports", [
    # always-ready streams: their constant ready is no port of the standalone module
    ("dot_product", dict(length=5, max_bits=3), {"i__valid", "i__payload", "o__valid", "o__payload"}),
    ("mac_array", dict(pe=2, vectors=2, simd=3, max_bits=2, max_rows=4, max_cols=6),
     {"start", "groups", "folds", "m_bits", "v_bits", "m_addr", "m_en", "m_data", "v_addr", "v_en", "v_data",
      "o__0__valid", "o__0__payload", "busy"}),
    # one stream per drain chain
    ("mac_array", dict(pe=2, vectors=1, simd=3, max_bits=2, max_rows=4, max_cols=6, drains=2),
     {"start", "groups", "folds", "m_bits", "v_bits", "m_addr", "m_en", "m_data", "v_addr", "v_en", "v_data",
      "o__0__valid", "o__0__payload", "o__1__valid", "o__1__payload", "busy"}),
    # an ordinary stream keeps its ready
    ("gemm", dict(pe=2, vectors=2, simd=3, max_bits=2, max_rows=4, max_cols=6),
     {"codes__valid", "codes__ready", "codes__payload", "clear", "to_vectors", "cols", "rows", "m_bits",
      "m_signed", "v_bits", "v_signed", "writing", "start", "done", "result_addr", "result_en",
      "result"}),
])
def test_standalone_ports(unit, params, ports):
    text = generate_verilog(unit, **params)
    match = re.search(rf"^module dorefa_{unit}\(([^)]*)\);", text, re.MULTILINE)
    assert {p.strip() for p in match.group(1).split(",")} == ports | {"clk", "rst"}


def test_standalone_keeps_other_components():
    with unelaborated():
        unit = build_unit("threshold")
        assert standalone(unit) is unit
        wrapped = standalone(build_unit("dot_product", length=4, max_bits=2))
        assert wrapped is not None and "i__payload" in wrapped.signature.members


def test_out_of_range_parameter_gets_the_units_own_message():
    with pytest.raises(ValueError, match="1..8"):
        build_unit("threshold", act_bits=9)
