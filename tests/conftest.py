"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster and immune to a busy machine's oversubscription.
    Torch's thread count is process-wide (``--threads`` and in-process runs set it), so it is
    restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
