"""cocotb testbench of :mod:`hw.request_checker` (run by ``tb/test_request_checker_tb.py``)."""
