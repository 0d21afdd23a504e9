"""``WAVES=1``: every simulation writes its own waveform file under the build folder.

Under pytest each test's file is named after its node id, so one test's
waveform never overwrites another's; outside pytest, after the first
testbench (Amaranth) or the toplevel and simulator (cocotb).
"""

from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.popcount import PopcountTree
from sim import amaranth_sim
from sim.amaranth_sim import simulate
from sim.cocotb_runner import run_cocotb, with_clock

ROOT = Path(__file__).resolve().parents[2]


class Counter(wiring.Component):
    count: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        return m


async def bench(ctx):
    await ctx.tick().repeat(3)


def run_tiny():
    simulate(Counter(), bench)


@pytest.fixture
def waves(tmp_path, monkeypatch):
    """``WAVES=1``, waveforms under ``tmp_path/waves``, cwd ``tmp_path/cwd``."""
    monkeypatch.setenv("WAVES", "1")
    monkeypatch.setattr(amaranth_sim, "WAVES_DIR", tmp_path / "waves", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def written(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_the_build_folder_is_the_default():
    assert amaranth_sim.WAVES_DIR == ROOT / "build" / "waves"


def test_two_tests_write_two_files(waves, monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/hw/test_a.py::test_one[4-x] (call)")
    run_tiny()
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/hw/test_b.py::test_two (call)")
    run_tiny()
    assert written(waves) == {"waves/tests_hw_test_a.py_test_one_4-x.vcd",
                              "waves/tests_hw_test_b.py_test_two.vcd"}
    for name in written(waves):
        text = (waves / name).read_text()
        assert "$enddefinitions" in text and "count" in text


def test_this_test_is_named_after_its_node_id(waves):
    run_tiny()
    run_tiny()  # a second simulation in one test keeps the first's file
    assert written(waves) == {"waves/tests_sim_test_waves.py_test_this_test_is_named_after_its_node_id.vcd",
                              "waves/tests_sim_test_waves.py_test_this_test_is_named_after_its_node_id-2.vcd"}


def test_outside_pytest_the_first_testbench_names_the_file(waves, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    run_tiny()
    assert written(waves) == {"waves/bench.vcd"}


def test_no_waves_without_the_variable(waves, monkeypatch):
    monkeypatch.setenv("WAVES", "0")
    run_tiny()
    assert written(waves) == set()


def test_an_explicit_vcd_path_is_kept(waves):
    simulate(Counter(), bench, vcd=waves / "mine.vcd")
    assert written(waves) == {"mine.vcd"}


@pytest.mark.cocotb
def test_icarus_waves_per_test(waves, monkeypatch):
    dut = with_clock(PopcountTree(3, stages=0, arch="chain"))
    for test_id in ("tb/t.py::test_x[icarus] (call)", "tb/t.py::test_y[icarus] (call)"):
        monkeypatch.setenv("PYTEST_CURRENT_TEST", test_id)
        run_cocotb(dut, toplevel="popcount_waves_w3", test_module="tb.popcount.cocotb_popcount",
                   simulator="icarus", testcase="random_stream",
                   config={"width": 3, "stages": 0, "vectors": 20, "seed": 1})
    files = written(waves)
    assert files == {"waves/tb_t.py_test_x_icarus.fst", "waves/tb_t.py_test_y_icarus.fst"}
    for name in files:
        assert (waves / name).stat().st_size > 0
