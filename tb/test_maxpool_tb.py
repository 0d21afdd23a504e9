"""pytest entry for the cocotb max-pool testbench (``tb/maxpool``), on Icarus
and Verilator."""

from hw.maxpool import MaxPool
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (act_bits, channels, height, width, kernel, stride, frames): per simulator,
# 10,408 input codes (4,120 pooled codes) in the random-stream test, plus two
# frames per config in each of the full-rate and reset tests.
CONFIGS = [
    (2, 4, 16, 16, 2, 2, 4),     # 4,096 codes: the usual 2x2/2
    (4, 3, 13, 11, 3, 2, 8),     # 3,432 codes: overlapping windows, edges dropped
    (8, 1, 24, 20, 3, 1, 6),     # 2,880 codes: one lane, stride 1
]
SLOW_CONFIGS = [
    (1, 2, 9, 9, 1, 2, 10),      # subsampling only
    (3, 5, 12, 7, 2, 3, 10),     # stride > kernel: inputs skipped
    (5, 16, 8, 8, 4, 4, 6),
    (6, 7, 6, 30, 5, 1, 4),
]


def run(simulator, act_bits, channels, height, width, kernel, stride, frames, seed):
    dut = MaxPool(act_bits, channels, height, width, kernel, stride)
    run_cocotb(dut, toplevel=f"maxpool_a{act_bits}_c{channels}_{height}x{width}_k{kernel}s{stride}",
               test_module="tb.maxpool.cocotb_maxpool", simulator=simulator,
               config={"act_bits": act_bits, "channels": channels, "height": height, "width": width,
                       "kernel": kernel, "stride": stride, "latency": dut.latency,
                       "frames": frames, "seed": seed})


@on_each_simulator("act_bits, channels, height, width, kernel, stride, frames", CONFIGS)
def test_maxpool(simulator, act_bits, channels, height, width, kernel, stride, frames):
    run(simulator, act_bits, channels, height, width, kernel, stride, frames, seed=act_bits * 100 + channels)


@on_each_simulator("act_bits, channels, height, width, kernel, stride, frames", SLOW_CONFIGS, slow=True)
def test_maxpool_sweep(simulator, act_bits, channels, height, width, kernel, stride, frames):
    run(simulator, act_bits, channels, height, width, kernel, stride, frames,
        seed=act_bits * 100 + channels + 1)
