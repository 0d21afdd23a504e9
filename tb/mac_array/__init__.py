"""cocotb testbench of :mod:`hw.mac_array` (run by ``tb/test_mac_array_tb.py``)."""
