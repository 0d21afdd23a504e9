"""pytest entry for the cocotb dot-product testbench (``tb/dot_product``), on
Icarus and Verilator."""

from hw.dot_product import DotProduct
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (length, m_bits, v_bits, m_signed, v_signed, mode, max_beats, popcount_stages,
# random dot products): the three training products and the binary XNOR PE.
# Per simulator, 10,500 random dot products plus ~360 per config in the
# full-rate and reset tests.
CONFIGS = [
    (16, 2, 3, True, False, "parallel", 4, 2, 4000),   # weights x activations
    (8, 4, 6, True, True, "serial", 2, 1, 1500),       # weights x gradients, bit-serial
    (32, 1, 1, True, True, "parallel", 3, 3, 3000),    # binary (XNOR)
    (12, 8, 2, True, False, "parallel", 2, 0, 2000),   # gradients x activations
]
SLOW_CONFIGS = [
    (1, 1, 8, False, False, "serial", 5, 1, 1500),
    (64, 5, 7, False, True, "parallel", 2, 6, 2000),
    (5, 3, 3, True, True, "serial", 1, 0, 2000),
    (9, 7, 4, False, False, "parallel", 6, 2, 2000),
]
PARAMS = "length, m_bits, v_bits, m_signed, v_signed, mode, max_beats, stages, vectors"


def run(simulator, length, m_bits, v_bits, m_signed, v_signed, mode, max_beats, stages, vectors,
        seed):
    dut = DotProduct(length, m_bits=m_bits, v_bits=v_bits, m_signed=m_signed, v_signed=v_signed,
                     mode=mode, max_beats=max_beats, popcount_stages=stages)
    signs = "".join("s" if s else "u" for s in (m_signed, v_signed))
    run_cocotb(dut, toplevel=f"dot_product_l{length}_m{m_bits}_v{v_bits}_{signs}_{mode}"
                             f"_b{max_beats}_s{stages}",
               test_module="tb.dot_product.cocotb_dot_product", simulator=simulator,
               config={"length": length, "m_bits": m_bits, "v_bits": v_bits, "m_signed": m_signed,
                       "v_signed": v_signed, "mode": mode, "max_beats": max_beats,
                       "popcount_stages": stages, "vectors": vectors, "seed": seed})


@on_each_simulator(PARAMS, CONFIGS)
def test_dot_product(simulator, length, m_bits, v_bits, m_signed, v_signed, mode, max_beats, stages,
                     vectors):
    run(simulator, length, m_bits, v_bits, m_signed, v_signed, mode, max_beats, stages, vectors,
        seed=length * 100 + m_bits * 10 + v_bits)


@on_each_simulator(PARAMS, SLOW_CONFIGS, slow=True)
def test_dot_product_sweep(simulator, length, m_bits, v_bits, m_signed, v_signed, mode, max_beats,
                           stages, vectors):
    run(simulator, length, m_bits, v_bits, m_signed, v_signed, mode, max_beats, stages, vectors,
        seed=length * 100 + m_bits * 10 + v_bits + 1)
