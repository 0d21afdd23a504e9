"""cocotb testbench of :mod:`hw.group_max` (run by ``tb/test_group_max_tb.py``)."""
