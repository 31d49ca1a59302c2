"""The compiled kernels' fallback: without a C compiler every model runs in torch ops."""

import torch

from sbrnn.child import kernels
from sbrnn.child.model import SparseBlockRNN
from sbrnn.child.spec import SparseBlockSpec


def test_without_a_compiler_models_fall_back_to_torch_ops(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
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
        assert torch.allclose(model.weight_x.grad.double(), exact.weight_x.grad, rtol=1e-4, atol=1e-6)
    finally:
        monkeypatch.undo()
        kernels.library.cache_clear()  # the next caller loads the real library again
