"""The compiled kernels' fallback: without a C compiler every model runs in torch ops."""

import os
import subprocess
import sys

import pytest
import torch

from sbrnn.child import kernels
from sbrnn.child.model import SparseBlockRNN
from sbrnn.child.weight_space import SparseBlockSpec


def test_without_a_compiler_models_fall_back_to_torch_ops(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.delenv("SBRNN_REQUIRE_KERNELS", raising=False)  # CI requires the kernels elsewhere
    kernels.library.cache_clear()
    try:
        assert kernels.library() is None
        assert "no-such-cc" in kernels.library_error()
        spec = SparseBlockSpec(n_x=300, n_y=4, h=60, densities=((0.05, 0.2, 0.2), (1, 0.2, 0.2)))
        model = SparseBlockRNN(spec, path="sparse", generator=torch.Generator().manual_seed(1))
        assert not model.sparse_x() and not model.sparse_s()  # asked for, but no kernels
        x = torch.randn(6, 5, 300, generator=torch.Generator().manual_seed(2))
        out = model(x)
        out.sum().backward()
        exact = SparseBlockRNN(spec, path="dense", generator=torch.Generator().manual_seed(1)).double()
        exact(x.double()).sum().backward()
        assert torch.allclose(out.double(), exact(x.double()), rtol=1e-5, atol=1e-6)
        assert torch.allclose(model.values_x.grad.double(), exact.values_x.grad, rtol=1e-4, atol=1e-6)
    finally:
        monkeypatch.undo()
        kernels.library.cache_clear()  # the next caller loads the real library again


_GRANTED_FEWER_THREADS = r"""
import torch
from sbrnn.child import sparse_ops
from sbrnn.child.kernels import library
from sbrnn.child.model import SparseBlockRNN
from sbrnn.child.weight_space import SparseBlockSpec

assert library() is not None
torch.set_num_threads(2)
g = torch.Generator().manual_seed(4)
n, rows, cols = 200, 40, 300
mask = (torch.rand(rows, cols, generator=g) < 0.1).float()
pattern = sparse_ops.SparsePattern.from_mask(mask)
x, grad_out = torch.randn(n, cols, generator=g), torch.randn(n, rows, generator=g)
x_tiles = sparse_ops.tiles(x)
worst = 0.0
for _ in range(20):  # the allocator hands back memory just freed: make it hold garbage first
    torch.full((4 * pattern.nnz,), 1e30).sum()
    grad = sparse_ops.kept_gradient(grad_out, x_tiles, n, pattern)
    exact = (grad_out.double().T @ x.double()).reshape(-1)[pattern.flat]  # kept entries, CSR order
    worst = max(worst, float((grad.double() - exact).abs().max() / exact.abs().max()))
spec = SparseBlockSpec(n_x=300, n_y=4, h=60, densities=((0.05, 0.2, 0.2), (1, 0.2, 0.2)))
model = SparseBlockRNN(spec, path="sparse", generator=torch.Generator().manual_seed(1))
assert model.sparse_x() and model.sparse_s()
exact = SparseBlockRNN(spec, path="dense", generator=torch.Generator().manual_seed(1)).double()
xs = torch.randn(16, 11, 300, generator=g)
out = model(xs)
torch.full((1 << 16,), 1e30).sum()
out.sum().backward()
exact(xs.double()).sum().backward()
for name, p in exact.named_parameters():
    q = dict(model.named_parameters())[name].grad.double()
    worst = max(worst, float((q - p.grad).abs().max() / p.grad.abs().max()))
print(worst)
"""


@pytest.mark.slow
@pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error()))
@pytest.mark.parametrize("env", [{"OMP_THREAD_LIMIT": "1"}, {"OMP_DYNAMIC": "true"}])
def test_kernels_are_exact_whatever_number_of_threads_openmp_grants(env):
    """Two torch threads ask the kernels for two OpenMP threads; OpenMP may start fewer (thread
    limit, dynamic adjustment, nesting). The weight gradients, of the x path and of the sparse
    recurrence, still equal float64's."""
    done = subprocess.run(
        [sys.executable, "-c", _GRANTED_FEWER_THREADS],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5
