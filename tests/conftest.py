"""Fixtures shared by the test modules; the suite's own sbrnn cache."""

import os
import shutil
import tempfile

import pytest
import torch


def pytest_configure(config):
    """Everything the suite caches (task data, compiled kernels) goes to a temporary folder, never
    to the user's ``$SBRNN_CACHE``; tests that need their own set it again."""
    config.sbrnn_cache = tempfile.mkdtemp(prefix="sbrnn-test-cache-")
    os.environ["SBRNN_CACHE"] = config.sbrnn_cache


def pytest_unconfigure(config):
    shutil.rmtree(config.sbrnn_cache, ignore_errors=True)


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster and immune to a busy machine's oversubscription.
    Torch's thread count is process-wide (``--threads`` and in-process runs set it), so it is
    restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def offline_minari(tmp_path_factory):
    """A private Minari path and sbrnn cache, and no Hugging Face network, for a whole module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        mp.setenv("SBRNN_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield
