"""cocotb testbench of :mod:`hw.gemm` (run by ``tb/test_gemm_tb.py``)."""
