"""Fixtures shared by the test packages."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small tensors: one torch thread is fastest (and what every dorefa command uses), and
    no oversubscription under xdist; the previous count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def restore_threads():
    """Restore torch's thread count after a test that lets the code under test choose it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
