"""pytest entry for the cocotb serial-threshold testbench (``tb/serial_threshold``), on
Icarus and Verilator."""

from hw.serial_threshold import SerialThresholdUnit
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (max_act_bits, channels, read_stages, random vectors): the core's presets (2 bits, no
# register after the read: iCEBreaker; 4 bits and one: the ULX3S), each layer at every
# width up to max_act_bits.
CONFIGS = [
    (2, 6, 0, 1200),
    (4, 5, 1, 1600),
]
SLOW_CONFIGS = [
    (1, 1, 0, 500),
    (6, 3, 1, 1500),
    (8, 2, 0, 600),
]


def run(simulator, max_act_bits, channels, read_stages, vectors, seed):
    dut = SerialThresholdUnit(max_act_bits, channels, read_stages=read_stages)
    run_cocotb(dut, toplevel=f"serial_threshold_a{max_act_bits}_c{channels}_r{read_stages}",
               test_module="tb.serial_threshold.cocotb_serial_threshold", simulator=simulator,
               config={"max_act_bits": max_act_bits, "channels": channels, "acc_width": dut.acc_width,
                       "latency": dut.latency, "channel_bits": len(dut.i.payload.channel),
                       "vectors": vectors, "seed": seed})


@on_each_simulator("max_act_bits, channels, read_stages, vectors", CONFIGS)
def test_serial_threshold(simulator, max_act_bits, channels, read_stages, vectors):
    run(simulator, max_act_bits, channels, read_stages, vectors, seed=max_act_bits * 100 + channels)


@on_each_simulator("max_act_bits, channels, read_stages, vectors", SLOW_CONFIGS, slow=True)
def test_serial_threshold_sweep(simulator, max_act_bits, channels, read_stages, vectors):
    run(simulator, max_act_bits, channels, read_stages, vectors, seed=max_act_bits * 100 + channels + 1)
