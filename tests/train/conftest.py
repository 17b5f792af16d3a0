"""Trainer tests run torch on one thread: the subprocess runs they are compared against do
too (same kernels, same bits), and tiny ops on 2 OpenMP threads crawl on a shared CPU."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
