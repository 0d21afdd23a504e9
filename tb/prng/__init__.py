"""cocotb testbench of :mod:`hw.prng` (run by ``tb/test_prng_tb.py``)."""
