"""cocotb testbench of :mod:`hw.core` (run by ``tb/test_core_tb.py``), and the request
scripts it shares with ``tests/hw/test_core.py``."""
