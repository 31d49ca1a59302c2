"""The hand-written recurrence backward against autograd's, by finite differences and by value."""

import pytest
import torch

from sbrnn.child import kernels
from sbrnn.child.recurrence import block_recurrence, sparse_block_recurrence
from sbrnn.child.sparse_ops import SparsePattern

pytestmark = pytest.mark.usefixtures("one_thread")  # some tests set torch's (process-wide) thread count


def loop(projected, weight_s, h, activation):
    """The recurrence as plain autograd ops."""
    act = torch.relu if activation == "relu" else torch.tanh
    state = projected.new_zeros(projected.shape[0], projected.shape[2])
    outputs = []
    for t in range(projected.shape[1]):
        a = projected[:, t] + state @ weight_s.t()
        state = torch.cat((act(a[:, :h]), a[:, h:]), dim=1)
        outputs.append(a[:, h:])
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("activation,steps", [("relu", 4), ("tanh", 4), ("relu", 1)])
def test_gradcheck_and_equality_with_autograd(activation, steps):
    g = torch.Generator().manual_seed(0)
    projected = torch.randn(3, steps, 7, generator=g, dtype=torch.float64, requires_grad=True)
    weight_s = (0.5 * torch.randn(7, 7, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, w: block_recurrence(p, w, 5, activation), (projected, weight_s))
    weights = torch.randn(3, steps, 2, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(
        (block_recurrence(projected, weight_s, 5, activation)[0] * weights).sum(), (projected, weight_s)
    )
    expected = torch.autograd.grad(
        (loop(projected, weight_s, 5, activation) * weights).sum(), (projected, weight_s)
    )
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_stack_of_maps_runs_each_map_alone():
    g = torch.Generator().manual_seed(1)
    projected = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight_s = (0.5 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, w: block_recurrence(p, w, 4, "relu"), (projected, weight_s))
    out, final = block_recurrence(projected, weight_s, 4, "tanh")
    for k in range(3):
        alone, alone_final = block_recurrence(projected[k], weight_s[k], 4, "tanh")
        torch.testing.assert_close(out[k], alone)
        torch.testing.assert_close(final[k], alone_final)


@pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error()))
@pytest.mark.parametrize("activation,steps,threads", [("relu", 6, 1), ("tanh", 3, 2), ("relu", 1, 1)])
def test_the_sparse_recurrence_equals_the_masked_dense_one(activation, steps, threads):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(2)
    size, h = 45, 40  # batch 37: a partial tile of the kernels' 32 rows
    mask = (torch.rand(size, size, generator=g) < 0.2).float()
    weight = 0.3 * torch.randn(size, size, generator=g) * mask
    projected = torch.randn(37, steps, size, generator=g)
    weights = torch.randn(37, steps, size - h, generator=g)

    def grads(fn, dtype):
        p = projected.to(dtype).detach().requires_grad_()
        w = weight.to(dtype).detach().requires_grad_()
        out = fn(p, w)
        (out * weights.to(dtype)).sum().backward()
        return out.detach().double(), p.grad.double(), w.grad.double()

    patterns = SparsePattern.from_mask(mask), SparsePattern.from_mask(mask.t())
    sparse = grads(lambda p, w: sparse_block_recurrence(p, w, *patterns, h, activation)[0], torch.float32)
    exact = grads(lambda p, w: block_recurrence(p, w * mask.double(), h, activation)[0], torch.float64)
    for a, b in zip(sparse, exact):
        assert float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) < 1e-5
    assert torch.all(sparse[2][mask == 0] == 0)  # no gradient off the pattern


@pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error()))
@pytest.mark.parametrize(
    "activation,batch,steps,size,threads",
    [
        ("relu", 37, 5, 30, 2),
        ("tanh", 6, 3, 49, 1),
        ("relu", 1, 1, 7, 1),
        ("relu", 16, 11, 203, 2),
    ],
)
def test_the_compiled_recurrence_equals_autograd_in_float64(activation, batch, steps, size, threads):
    # fp32 on the CPU takes the compiled loops: batch rows in blocks of 4, columns in blocks of 24
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(3)
    h = size - 3
    projected = torch.randn(batch, steps, size, generator=g)
    weight_s = torch.randn(size, size, generator=g) / size**0.5
    weights = torch.randn(batch, steps, size - h, generator=g)

    def run(fn, dtype):
        p = projected.to(dtype).detach().requires_grad_()
        w = weight_s.to(dtype).detach().requires_grad_()
        out = fn(p, w, h, activation)
        (out * weights.to(dtype)).sum().backward()
        return out.detach().double(), p.grad.double(), w.grad.double()

    def outputs(p, w, h, activation):
        return block_recurrence(p, w, h, activation)[0]

    for a, b in zip(run(outputs, torch.float32), run(loop, torch.float64)):
        assert float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) < 1e-5


@pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error()))
def test_the_compiled_recurrence_runs_a_stack_of_maps_like_float64():
    g = torch.Generator().manual_seed(4)
    projected = torch.randn(3, 5, 4, 27, generator=g)  # K = 3 maps, batch 5, 4 steps, R = 27
    weight_s = torch.randn(3, 27, 27, generator=g) / 27**0.5
    weights = torch.randn(3, 5, 4, 2, generator=g)

    def run(dtype):
        p = projected.to(dtype).detach().requires_grad_()
        w = weight_s.to(dtype).detach().requires_grad_()
        out = block_recurrence(p, w, 25, "relu")[0]
        (out * weights.to(dtype)).sum().backward()
        return out.detach().double(), p.grad.double(), w.grad.double()

    for a, b in zip(run(torch.float32), run(torch.float64)):  # compiled loops against torch's, in float64
        assert float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) < 1e-5


@pytest.mark.parametrize("path", ["compiled", "sparse", "torch"])
def test_the_final_state_and_an_initial_state_carry_exact_gradients(path, monkeypatch):
    """``forward_with_state``: outputs and final state from a given state, gradients through both
    into the state and the weights, equal to the step-by-step reference in float64."""
    from sbrnn.child.model import SparseBlockRNN
    from sbrnn.child.weight_space import SparseBlockSpec

    if path != "torch" and kernels.library() is None:
        pytest.skip(str(kernels.library_error()))
    spec = SparseBlockSpec(n_x=9, n_y=3, h=20, densities=((0.5, 0.15, 0.5), (1, 0.15, 0.5)))
    model = SparseBlockRNN(
        spec, path="sparse" if path == "sparse" else "dense", generator=torch.Generator().manual_seed(5)
    )
    if path == "torch":
        monkeypatch.setattr(kernels, "available", lambda: False)
    assert model.sparse_s() == (path == "sparse")
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, 6, 9, generator=g)
    start = torch.randn(4, 23, generator=g, requires_grad=True)
    wy, ws = torch.randn(4, 6, 3, generator=g), torch.randn(4, 23, generator=g)

    def loss(y, final):
        return (y * wy).sum() + (final * ws).sum()

    y, final = model.forward_with_state(x, start)
    loss(y, final).backward()
    got = (
        y.detach(),
        final.detach(),
        start.grad.clone(),
        model.weight_s.grad.clone(),
        model.values_x.grad.clone(),
    )
    exact = model.double()
    s64 = start.detach().double().requires_grad_()
    exact.zero_grad()
    outputs, state = [], s64
    for t in range(6):
        out, state = exact.step(x[:, t].double(), state)
        outputs.append(out)
    loss(torch.stack(outputs, 1), state).backward()
    want = (
        torch.stack(outputs, 1).detach(),
        state.detach(),
        s64.grad,
        exact.weight_s.grad,
        exact.values_x.grad,
    )
    for a, b in zip(got, want):
        assert float((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)) < 1e-5
