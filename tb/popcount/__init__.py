"""cocotb testbench of :mod:`hw.popcount` (run by ``tb/test_popcount_tb.py``)."""
