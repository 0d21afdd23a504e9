"""pytest entry for the cocotb batch-sum testbench (``tb/batch_sum``), on Icarus and
Verilator."""

from hw.batch_sum import BatchSum
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (slots, partial_bits, sum_bits, beats): one slot (every beat a hazard), the core's
# accumulator widths and sums, wide partials.
CONFIGS = [
    (1, 8, 64, 300),
    (24, 16, 96, 1500),
    (5, 33, 89, 600),
]
SLOW_CONFIGS = [
    (3, 2, 58, 2000),
    (64, 20, 128, 4000),
]


def run(simulator, slots, partial_bits, sum_bits, beats, seed):
    dut = BatchSum(slots=slots, partial_bits=partial_bits, sum_bits=sum_bits)
    run_cocotb(dut, toplevel=f"batch_sum_s{slots}_p{partial_bits}_b{sum_bits}",
               test_module="tb.batch_sum.cocotb_batch_sum", simulator=simulator,
               config={"slots": slots, "partial_bits": partial_bits, "sum_bits": sum_bits,
                       "slot_bits": len(dut.i.payload.slot), "beats": beats, "seed": seed})


@on_each_simulator("slots, partial_bits, sum_bits, beats", CONFIGS)
def test_batch_sum(simulator, slots, partial_bits, sum_bits, beats):
    run(simulator, slots, partial_bits, sum_bits, beats, seed=slots * 100 + partial_bits)


@on_each_simulator("slots, partial_bits, sum_bits, beats", SLOW_CONFIGS, slow=True)
def test_batch_sum_sweep(simulator, slots, partial_bits, sum_bits, beats):
    run(simulator, slots, partial_bits, sum_bits, beats, seed=slots * 100 + partial_bits + 1)
