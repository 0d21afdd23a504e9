"""cocotb testbench of :mod:`hw.core` (run by ``tb/test_core_tb.py``); its request
scripts are :mod:`sw.core_scripts`, shared with ``tests/hw/test_core.py``."""
