"""cocotb testbench of :mod:`hw.dot_product` (run by ``tb/test_dot_product_tb.py``)."""
