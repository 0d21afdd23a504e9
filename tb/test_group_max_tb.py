"""pytest entry for the cocotb group-max testbench (``tb/group_max``), on Icarus and
Verilator."""

from hw.group_max import GroupMax
from sim.cocotb_runner import run_cocotb
from tb.entry import on_each_simulator

# (act_bits, max_rows, max_group_log, rows, group_log, groups): the pools the core uses
# (1 x 1, 2 x 2, 4 x 4: group_log 0, 2, 4) at the activation widths it serves.
CONFIGS = [
    (2, 64, 4, 64, 2, 40),    # the digits net's 2 x 2 pool at 2 bits, 64 rows: 10,240 codes
    (4, 8, 4, 5, 4, 30),      # 4 x 4 pools, fewer rows than the memory holds: 2,400 codes
    (1, 3, 2, 3, 0, 200),     # no pooling: every code passes
]
SLOW_CONFIGS = [
    (3, 17, 4, 17, 2, 60),
    (8, 1, 2, 1, 2, 300),
]


def run(simulator, act_bits, max_rows, max_group_log, rows, group_log, groups, seed):
    dut = GroupMax(act_bits=act_bits, max_rows=max_rows, max_group_log=max_group_log)
    run_cocotb(dut, toplevel=f"group_max_a{act_bits}_r{max_rows}_g{max_group_log}",
               test_module="tb.group_max.cocotb_group_max", simulator=simulator,
               config={"act_bits": act_bits, "rows": rows, "group_log": group_log, "groups": groups,
                       "seed": seed})


@on_each_simulator("act_bits, max_rows, max_group_log, rows, group_log, groups", CONFIGS)
def test_group_max(simulator, act_bits, max_rows, max_group_log, rows, group_log, groups):
    run(simulator, act_bits, max_rows, max_group_log, rows, group_log, groups, seed=act_bits * 100 + rows)


@on_each_simulator("act_bits, max_rows, max_group_log, rows, group_log, groups", SLOW_CONFIGS, slow=True)
def test_group_max_sweep(simulator, act_bits, max_rows, max_group_log, rows, group_log, groups):
    run(simulator, act_bits, max_rows, max_group_log, rows, group_log, groups, seed=act_bits * 100 + rows + 1)
