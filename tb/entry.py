"""The pytest side of the cocotb testbenches: what every entry point is marked with.

Each ``tb/test_<unit>_tb.py`` runs its cocotb module on every simulator of
:data:`sim.cocotb_runner.SIMULATORS`, once per configuration, marked
``cocotb`` (and ``slow`` for the long sweeps that only ``--run-slow``
runs)::

    @on_each_simulator("width, stages", CONFIGS)
    def test_popcount(simulator, width, stages):
        run(simulator, width, stages, seed=width)

(Not named ``test_*.py``, so pytest does not collect it.)
"""

import pytest

from sim.cocotb_runner import SIMULATORS

__all__ = ["on_each_simulator"]


def on_each_simulator(params: "str | None" = None, configs=(), *, slow: bool = False, simulators=SIMULATORS):
    """Decorator: the marks and parametrisation of a cocotb entry point.

    The same as stacking, innermost first, ``pytest.mark.parametrize(params,
    configs)`` (when ``params`` is given), ``pytest.mark.parametrize(
    "simulator", simulators)``, ``pytest.mark.cocotb`` and, with ``slow``,
    ``pytest.mark.slow``, so test IDs read ``test_x[<config>-<simulator>]``.
    ``simulators`` is every simulator by default; a design too large for
    Icarus names Verilator alone.
    """
    unknown = set(simulators) - set(SIMULATORS)
    if not simulators or unknown:
        raise ValueError(f"simulators must be some of {', '.join(SIMULATORS)}, got {list(simulators)}")

    def decorate(test):
        if params is not None:
            test = pytest.mark.parametrize(params, configs)(test)
        test = pytest.mark.parametrize("simulator", simulators)(test)
        test = pytest.mark.cocotb(test)
        if slow:
            test = pytest.mark.slow(test)
        return test
    return decorate
