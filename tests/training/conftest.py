"""Fixtures of the training tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()  # training sets the process's thread count
    yield
    torch.set_num_threads(threads)
