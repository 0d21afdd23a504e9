"""Shared pytest options: long sweeps are marked ``slow`` and run only with ``--run-slow``."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (long sweeps); `make test-all`")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="long sweep: run with --run-slow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def pytest_configure(config):
    # Tests run one per core (pytest-xdist); torch's own thread pool would only
    # oversubscribe the cores and make small ops far slower.
    import torch

    torch.set_num_threads(1)
