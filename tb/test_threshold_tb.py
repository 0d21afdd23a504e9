"""pytest entry for the cocotb threshold-unit testbench (``tb/threshold``), on
Icarus and Verilator."""

from hw.threshold import ThresholdUnit
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (act_bits, channels, acc_range, variant, random vectors): per simulator, 10,012
# accumulators in the random-stream test (vectors rounded up to whole pixels of
# two layers), plus ~760 per config in the full-rate and reset tests.
CONFIGS = [
    (1, 3, range(-64, 64), "parallel", 2000),
    (3, 8, range(-2048, 2048), "parallel", 3000),
    (5, 5, range(-1000, 1501), "search", 3000),
    (8, 4, range(-8192, 8192), "search", 2000),
]
SLOW_CONFIGS = [
    (2, 1, range(0, 40), "search", 1000),
    (4, 7, range(-300, 200), "parallel", 2000),
    (6, 16, range(-5000, 5000), "search", 3000),
    (8, 2, range(-700, 700), "parallel", 1000),
]


def run(simulator, act_bits, channels, acc_range, variant, vectors, seed):
    dut = ThresholdUnit(act_bits, channels, acc_range, variant=variant)
    run_cocotb(dut, toplevel=f"threshold_{variant}_a{act_bits}_c{channels}_r{len(acc_range)}",
               test_module="tb.threshold.cocotb_threshold", simulator=simulator,
               config={"act_bits": act_bits, "channels": channels, "variant": variant,
                       "acc_min": acc_range.start, "acc_max": acc_range.stop - 1,
                       "latency": dut.latency,
                       "channel_bits": len(dut.i.payload.channel),
                       "acc_bits": len(dut.i.payload.acc),
                       "threshold_bits": dut.threshold_shape.width,
                       "vectors": vectors, "seed": seed})


@on_each_simulator("act_bits, channels, acc_range, variant, vectors", CONFIGS)
def test_threshold(simulator, act_bits, channels, acc_range, variant, vectors):
    run(simulator, act_bits, channels, acc_range, variant, vectors, seed=act_bits * 100 + channels)


@on_each_simulator("act_bits, channels, acc_range, variant, vectors", SLOW_CONFIGS, slow=True)
def test_threshold_sweep(simulator, act_bits, channels, acc_range, variant, vectors):
    run(simulator, act_bits, channels, acc_range, variant, vectors, seed=act_bits * 100 + channels + 1)
