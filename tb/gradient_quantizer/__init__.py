"""cocotb testbench of :mod:`hw.gradient_quantizer` (run by ``tb/test_gradient_quantizer_tb.py``)."""
