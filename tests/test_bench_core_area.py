"""``bench/core_area.py``'s attribution of a netlist's cells to the core's units, on a
hand-made yosys netlist (expected counts by hand), and its command line's errors."""

import json

import pytest

from bench import core_area as ca


def cell(kind):
    return {"type": kind, "connections": {}}


NETLIST = {"modules": {"top": {"cells": {
    # Two dot-product units of the array: 2 LUT4 + 1 CCU2C (2 LUT4-eq) + 1 FF, and 1 LUT4.
    "\\core.core.gemm.array.unit0_0.popcount.level0[3]_LUT4_Z": cell("LUT4"),
    "\\core.core.gemm.array.unit0_0.popcount.level0[4]_LUT4_Z": cell("LUT4"),
    "\\core.core.gemm.array.unit0_0.acc[0]_CCU2C_A0": cell("CCU2C"),
    "\\core.core.gemm.array.unit0_0.acc[0]_TRELLIS_FF_Q": cell("TRELLIS_FF"),
    "\\core.core.gemm.array.unit1_3.acc[2]_LUT4_Z": cell("LUT4"),
    # The array's own drain chain (a net of the array, not of a unit): 1 FF.
    "\\core.core.gemm.array.chain0_1[5]_TRELLIS_FF_Q": cell("TRELLIS_FF"),
    # Two corrections, one unnumbered and one numbered, de-duplicated by Amaranth ($7).
    "\\core.core.gemm.correction.value[1]_LUT4_Z": cell("LUT4"),
    "\\core.core.gemm.correction3$7.value[1]_LUT4_Z": cell("LUT4"),
    # Deeper than --depth 2: counted to gemm.writer.
    "\\core.core.gemm.writer.fifo.level[0]_LUT4_Z": cell("LUT4"),
    # The core's own logic, a memory port's index level, LUT RAM, the board, yosys's own name.
    "\\core.core.k_buf[36]_TRELLIS_FF_Q_DI_LUT4_Z": cell("LUT4"),
    "\\core.core.thresholds.0.data[0]_TRELLIS_FF_Q": cell("TRELLIS_FF"),
    "\\core.core.gemm.matrix.bank0_TRELLIS_DPR16X4": cell("TRELLIS_DPR16X4"),
    "\\core.uart_rx.shreg[1]_LUT4_Z": cell("LUT4"),
    "$abc$123$auto$456": cell("LUT4"),
    # Not counted: the muxes that join LUT4s, block RAM.
    "\\core.core.gemm.array.unit0_0.x_PFUMX_Z": cell("PFUMX"),
    "\\core.core.sums.mem_DP16KD": cell("DP16KD"),
}}}}


def test_cells_count_to_the_unit_of_the_net_they_drive():
    units = ca.attribute(NETLIST, "ecp5", depth=2)
    assert units == {
        "gemm.array.unit": {"lut4_eq": 5, "ff": 1, "lutram": 0, "instances": 2},
        "gemm.array": {"lut4_eq": 0, "ff": 1, "lutram": 0, "instances": 1},
        "gemm.correction": {"lut4_eq": 2, "ff": 0, "lutram": 0, "instances": 2},
        "gemm.writer": {"lut4_eq": 1, "ff": 0, "lutram": 0, "instances": 1},
        "(core)": {"lut4_eq": 1, "ff": 0, "lutram": 0, "instances": 1},
        "thresholds": {"lut4_eq": 0, "ff": 1, "lutram": 0, "instances": 1},
        "gemm.matrix": {"lut4_eq": 0, "ff": 0, "lutram": 1, "instances": 1},
        "(board: core.uart_rx)": {"lut4_eq": 1, "ff": 0, "lutram": 0, "instances": 1},
        "(unnamed)": {"lut4_eq": 1, "ff": 0, "lutram": 0, "instances": 1},
    }


def test_depth_splits_deeper_levels():
    units = ca.attribute(NETLIST, "ecp5", depth=3)
    assert units["gemm.writer.fifo"]["lut4_eq"] == 1
    assert "gemm.writer" not in units


def test_ice40_counts_luts_and_every_flip_flop_kind():
    netlist = {"modules": {"top": {"cells": {
        "\\core.core.receiver.crc.reg[0]_SB_LUT4_O": cell("SB_LUT4"),
        "\\core.core.receiver.crc.reg[0]_SB_DFFESR_Q": cell("SB_DFFESR"),
        "\\core.core.receiver.state_SB_DFF_Q": cell("SB_DFF"),
        "\\core.core.receiver.sum_SB_CARRY_CO": cell("SB_CARRY"),
    }}}}
    assert ca.attribute(netlist, "ice40") == {
        "receiver.crc": {"lut4_eq": 1, "ff": 1, "lutram": 0, "instances": 1},
        "receiver": {"lut4_eq": 0, "ff": 1, "lutram": 0, "instances": 1},
    }


def test_unknown_family_and_missing_module_are_errors():
    with pytest.raises(ValueError, match="family must be one of ecp5, ice40, got 'gowin'"):
        ca.attribute(NETLIST, "gowin")
    with pytest.raises(ValueError, match="the netlist has no module 'core'"):
        ca.attribute(NETLIST, "ecp5", top="core")


def test_command_line_writes_the_report_and_rejects_bad_input(tmp_path, capsys):
    build = tmp_path / "build"
    build.mkdir()
    (build / "top.json").write_text(json.dumps(NETLIST))
    (build / "report.json").write_text(json.dumps({"family": "ecp5", "core_params": {"pe": 2}}))
    ca.main([f"ulx3s={build}", "--out", str(tmp_path / "area")])
    report = json.loads((tmp_path / "area.json").read_text())
    assert report["boards"]["ulx3s"]["units"]["gemm.array.unit"]["lut4_eq"] == 5
    assert "| gemm.array.unit | 5 | 45.5 % | 1 | 0 | 2.5 (2) |" in (tmp_path / "area.md").read_text()
    (build / "report.json").unlink()  # a build stopped after synthesis: the netlist alone
    ca.main([f"ulx3s={build}", "--out", str(tmp_path / "area")])
    assert "not recorded (no report.json" in (tmp_path / "area.md").read_text()
    for argv, message in [(["ulx3s"], "expected BOARD=DIR"),
                          ([f"nosuch={build}"], "unknown board 'nosuch'"),
                          ([f"ulx3s={tmp_path / 'none'}"], "top.json not found"),
                          ([f"ulx3s={build}", "--depth", "0"], "--depth must be >= 1")]:
        with pytest.raises(SystemExit) as exit_info:
            ca.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
