# amaranth: UnusedElaboratable=no
"""``dorefa generate core --board BOARD``: the Verilog of the board top ``dorefa build`` synthesises."""

import re
import subprocess

import pytest

from boards.build import board_verilog, build_plan, toolchain_env
from boards.top import CORE_PRESETS
from sw.cli import main

# Yosys libraries with the FPGA family's primitives (SB_IO, ...), for an elaboration check.
_CELLS = {"icebreaker": "+/ice40/cells_sim.v", "ulx3s": "+/ecp5/cells_sim.v +/ecp5/cells_bb.v"}
_PINS = {"icebreaker": ("uart_0__rx__io", "uart_0__tx__io", "led_0__io", "clk12_0__io"),
         "ulx3s": ("uart_0__rx__io", "uart_0__tx__io", "led_0__io", "clk25_0__io")}


def _ports(text: str, module: str) -> set[str]:
    match = re.search(rf"^module {module}\(([^)]*)\);", text, re.MULTILINE)
    assert match, f"no 'module {module}(...)' in the Verilog"
    return {p.strip() for p in match.group(1).split(",")}


def _elaborate(path, top: str, board: str) -> None:
    """Yosys reads the file and elaborates ``top`` against the family's primitive library."""
    yosys = toolchain_env()["YOSYS"]
    # relative to the working directory: YoWASP's sandbox sees only that tree
    script = f"read_verilog -lib {_CELLS[board]}; read_verilog {path.name}; hierarchy -check -top {top}"
    result = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_generate_board_top(board, tmp_path, capsys):
    out = tmp_path / "rtl" / f"{board}.v"
    # (The ULX3S's 16,384 batch sums, 96 memories of one bit, would be 1.6 M lines of zero
    # initialisation in the Verilog: more than YoWASP's Yosys reads; 512 take 49 k.)
    sums = ["--set", "sum_slots=512"] if CORE_PRESETS[board]["sum_slots"] else []
    # (drains divide pe: the ULX3S preset's 8 chains need 8 rows)
    assert main(["generate", "core", "--board", board, "--bits", "1,2,4", "--pe", "2", "--simd", "8",
                 "--vectors", "2", "--set", "popcount_stages=2", "--set", "drains=1", *sums, "-o", str(out)]) == 0
    assert f"(core on {board}: " in capsys.readouterr().out
    text = out.read_text()
    assert set(_PINS[board]) <= _ports(text, "top")
    assert "Pin constraints" in text and "uart_0__rx__io" in text.split("*/")[0]
    _elaborate(out, "top", board)
    # the same design as dorefa build's plan: the board's preset with these overrides (max_bits = max(1, 2, 4))
    params = {**CORE_PRESETS[board], "max_bits": 4, "pe": 2, "simd": 8, "vectors": 2, "popcount_stages": 2,
              "drains": 1, **({"sum_slots": 512} if sums else {})}
    assert text == board_verilog(board, core_params=params)


def test_generate_board_top_name_and_defaults(tmp_path, capsys):
    out = tmp_path / "ice.v"
    assert main(["generate", "core", "--board", "icebreaker", "--top", "ice_top", "-o", str(out)]) == 0
    assert "max_bits=6, pe=8, simd=32" in capsys.readouterr().out  # the iCEBreaker's preset
    text = out.read_text()
    assert "uart_0__tx__io" in _ports(text, "ice_top")
    assert "SB_IO" in text
    _elaborate(out, "ice_top", "icebreaker")
    # the module dorefa build synthesises (its plan's RTLIL) is the one written out
    plan = build_plan("icebreaker", name="ice_top", debug_verilog=True)[1]
    assert text.endswith(plan.files["ice_top.debug.v"])


@pytest.mark.parametrize("argv, message", [
    (["generate", "core", "--board", "de0", "-o", "x.v"], "unknown board 'de0'; allowed: icebreaker, ulx3s"),
    (["generate", "threshold", "--board", "icebreaker", "-o", "x.v"],
     "--board applies only to the training core: dorefa generate core --board icebreaker (got unit 'threshold')"),
    (["generate", "uart_core", "--board", "icebreaker", "-o", "x.v"], "--board applies only to the training core"),
    (["generate", "core", "--board", "icebreaker", "-o", "x.v", "--lint"], "--lint does not apply to --board"),
    (["generate", "core", "--board", "icebreaker"], "-o FILE.v"),
    (["generate", "core", "--board", "icebreaker", "--pe", "0", "-o", "x.v"], "pe must be in"),
    (["generate", "core", "--board", "icebreaker", "--bits", "1,2,9", "-o", "x.v"], "each an integer in 1..8"),
    (["generate", "core", "--board", "icebreaker", "--bits", "1,2,4", "--max-bits", "8", "-o", "x.v"],
     "disagree on max_bits"),
    (["generate", "core", "--board", "icebreaker", "--top", "my-top", "-o", "x.v"],
     "--top 'my-top' is not a Verilog module name: letters, digits and '_'"),
])
def test_board_errors_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.v").exists()
