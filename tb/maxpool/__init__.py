"""cocotb testbench of :mod:`hw.maxpool` (run by ``tb/test_maxpool_tb.py``)."""
