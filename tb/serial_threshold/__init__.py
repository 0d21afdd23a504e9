"""cocotb testbench of :mod:`hw.serial_threshold` (run by ``tb/test_serial_threshold_tb.py``)."""
