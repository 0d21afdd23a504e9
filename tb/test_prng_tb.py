"""pytest entry for the cocotb xorshift32 testbench (``tb/prng``), on Icarus and Verilator."""

import pytest

from hw.prng import DEFAULT_SEED, XorShift32
from sim.cocotb_runner import SIMULATORS, run_cocotb


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_prng(simulator):
    # 20,000 draws with back-pressure, plus 1,800 across seed loads and a reset.
    run_cocotb(XorShift32(DEFAULT_SEED), toplevel="xorshift32", test_module="tb.prng.test_prng",
               simulator=simulator, config={"seed": DEFAULT_SEED, "draws": 20_000, "tb_seed": 1})
