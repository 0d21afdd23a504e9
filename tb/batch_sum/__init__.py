"""cocotb testbench of :mod:`hw.batch_sum` (run by ``tb/test_batch_sum_tb.py``)."""
