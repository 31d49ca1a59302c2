"""The hand-written recurrence backward against autograd's, by finite differences and by value."""

import pytest
import torch

from sbrnn.child.recurrence import block_recurrence


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
    grads = torch.autograd.grad((block_recurrence(projected, weight_s, 5, activation) * weights).sum(),
                                (projected, weight_s))
    expected = torch.autograd.grad((loop(projected, weight_s, 5, activation) * weights).sum(),
                                   (projected, weight_s))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_stack_of_maps_runs_each_map_alone():
    g = torch.Generator().manual_seed(1)
    projected = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight_s = (0.5 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, w: block_recurrence(p, w, 4, "relu"), (projected, weight_s))
    out = block_recurrence(projected, weight_s, 4, "tanh")
    for k in range(3):
        torch.testing.assert_close(out[k], block_recurrence(projected[k], weight_s[k], 4, "tanh"))
