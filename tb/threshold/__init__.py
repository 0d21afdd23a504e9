"""cocotb testbench of :mod:`hw.threshold` (run by ``tb/test_threshold_tb.py``)."""
