"""pytest entry for the cocotb xorshift32 testbench (``tb/prng``), on Icarus and Verilator."""

from hw.prng import DEFAULT_SEED, XorShift32
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator


@on_each_simulator()
def test_prng(simulator):
    # 20,000 draws with back-pressure, plus 1,800 across seed loads and a reset.
    run_cocotb(XorShift32(DEFAULT_SEED), toplevel="xorshift32", test_module="tb.prng.cocotb_prng",
               simulator=simulator, config={"seed": DEFAULT_SEED, "draws": 20_000, "tb_seed": 1})
