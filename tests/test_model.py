"""SparseBlockRNN and the baselines: the fused form against a per-block reference, masks, budgets."""

import math

import pytest
import torch

from sbrnn.child.config import RunConfig
from sbrnn.child.model import LSTMBaseline, SparseBlockRNN, build_model, resolve
from sbrnn.child.weight_space import SparseBlockSpec, grid_blocks, lstm_weights
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import BLOCKS

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = SparseBlockSpec(
    n_x=5,
    n_y=3,
    h=7,
    densities=((0.5, 0.7, 1.0), (0.3, 0.6, 0.8)),
    means=((0.01, -0.02, 0.0), (0.03, 0.0, -0.01)),
    stds=((0.4, 0.3, 0.2), (0.3, 0.25, 0.2)),
)


def reference(blocks: dict, b_h, b_y, x, act):
    """The map written plainly: block by block, step by step."""
    batch, steps, _ = x.shape
    h = x.new_zeros(batch, b_h.numel())
    y = x.new_zeros(batch, b_y.numel())
    outputs = []
    for t in range(steps):
        x_t = x[:, t]
        h_next = act(x_t @ blocks["hx"].T + h @ blocks["hh"].T + y @ blocks["hy"].T + b_h)
        y = x_t @ blocks["yx"].T + h @ blocks["yh"].T + y @ blocks["yy"].T + b_y
        h = h_next
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def rel_err(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_and_gradients_match_float64_reference(activation):
    model = SparseBlockRNN(SPEC, activation, generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        model.bias.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, SPEC.n_x, generator=g, dtype=torch.float64)
    weights = torch.randn(4, 6, SPEC.n_y, generator=g, dtype=torch.float64)

    out = model(x)
    (out * weights).sum().backward()

    blocks = {b: model.block(b).detach().clone().requires_grad_() for b in BLOCKS}
    b_h = model.bias[: SPEC.h].detach().clone().requires_grad_()
    b_y = model.bias[SPEC.h :].detach().clone().requires_grad_()
    act = torch.relu if activation == "relu" else torch.tanh
    ref = reference(blocks, b_h, b_y, x, act)
    (ref * weights).sum().backward()

    assert rel_err(out.detach(), ref.detach()) < 1e-6
    assert ref.abs().max() > 0.1  # the check is not vacuous
    kept_x = model.mask_x.reshape(-1).nonzero().squeeze(1)  # values_x's entries, row-major
    grad_x = torch.zeros_like(model.mask_x).reshape(-1).index_put_((kept_x,), model.values_x.grad)
    grad_x = grad_x.view_as(model.mask_x)
    for b in BLOCKS:
        rows, cols = model._slices(b)
        grad = (grad_x if b[1] == "x" else model.weight_s.grad)[rows, cols]
        mask = model.block_mask(b)
        assert rel_err(grad, blocks[b].grad * mask) < 1e-6, b
        assert torch.all(grad[mask == 0] == 0.0), b
    assert rel_err(model.bias.grad, torch.cat([b_h.grad, b_y.grad])) < 1e-6


@pytest.mark.parametrize("implementation", [{"foreach": True}, {"fused": True}])
def test_masked_entries_stay_exactly_zero_through_adam(implementation):
    model = SparseBlockRNN(SPEC, generator=torch.Generator().manual_seed(0))
    before = {"weight_x": model.weight_x.detach().clone(), "weight_s": model.weight_s.detach().clone()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, **implementation)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 5, SPEC.n_x, generator=g)
    target = torch.randn(32, 5, SPEC.n_y, generator=g)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()
    for weight, mask, name in (
        (model.weight_x, model.mask_x, "weight_x"),
        (model.weight_s, model.mask_s, "weight_s"),
    ):
        assert torch.all(weight[mask == 0] == 0.0)
        assert (mask == 0).any()
        assert torch.all(weight[mask == 1] != before[name][mask == 1])  # kept entries trained


def test_mask_counts_and_init_follow_the_spec():
    spec = SparseBlockSpec(
        n_x=600,
        n_y=12,
        h=80,
        densities=((0.08, 0.5, 1.0), (0.3, 0.2, 0.9)),
        means=((0.0, 0.01, -0.02), (0.05, 0.0, 0.0)),
        stds=((0.05, 0.1, 0.02), (0.2, 0.05, 0.05)),
    )
    model = SparseBlockRNN(spec, generator=torch.Generator().manual_seed(0))
    counts = model.trainable_counts()
    expected = grid_blocks(spec.expected_trainable)
    dens, means, stds = grid_blocks(spec.densities), grid_blocks(spec.means), grid_blocks(spec.stds)
    for b in BLOCKS:
        n = expected[b] / dens[b]
        sd = math.sqrt(n * dens[b] * (1 - dens[b]))
        assert abs(counts[b] - expected[b]) <= 5 * sd + 1e-9, (b, counts[b], expected[b])
        kept = model.block(b)[model.block_mask(b) == 1].detach()
        assert abs(float(kept.mean()) - means[b]) < 5 * stds[b] / math.sqrt(kept.numel()) + 1e-6, b
        assert float(kept.std()) == pytest.approx(stds[b], rel=0.15), b
    assert counts["hh"] != expected["hh"]  # independent draws, not an exact count
    assert model.trainable_total == sum(counts.values())
    assert model.bias_count == 80 + 12
    assert torch.all(model.bias == 0)


def test_same_generator_seed_same_model_and_other_seed_differs():
    a = SparseBlockRNN(SPEC, generator=torch.Generator().manual_seed(7))
    b = SparseBlockRNN(SPEC, generator=torch.Generator().manual_seed(7))
    c = SparseBlockRNN(SPEC, generator=torch.Generator().manual_seed(8))
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
    assert not torch.equal(a.mask_x, c.mask_x)


@pytest.mark.parametrize("arch", ["sbrnn", "lstm"])
def test_step_rollout_equals_forward(arch):
    config = RunConfig(
        task="toy-anomaly",
        arch=arch,
        budget=None,
        hidden=9,
        densities=((0.5, 1, 1), (1, 1, 1)) if arch == "sbrnn" else None,
    )
    model, _ = build_model(config, 4, 3)
    x = torch.randn(5, 7, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(x)
        state = model.init_state(5)
        steps = []
        for t in range(7):
            y_t, state = model.step(x[:, t], state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=1e-5, atol=1e-6)


def test_lstm_equals_torch_lstm_with_projection():
    model = LSTMBaseline(7, 3, 9, generator=torch.Generator().manual_seed(0)).double()
    ref = torch.nn.LSTM(7, 9, batch_first=True, proj_size=3).double()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(4, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert rel_err(model.stepwise(x), ref(x)[0]) < 1e-12
    assert rel_err(model(x), ref(x)[0]) < 1e-12
    assert model.trainable_total == sum(p.numel() for p in model.parameters()) == lstm_weights(7, 3, 9)
    assert model.bias_count == 8 * 9


@pytest.mark.parametrize("hidden", [9, 3, 2])
def test_lstm_forward_and_gradients_equal_the_stepwise_cell(hidden):
    """torch's LSTM op where ``n_y < hidden``, the step-by-step cell elsewhere: same outputs and
    gradients (float64)."""
    model = LSTMBaseline(5, 3, hidden, generator=torch.Generator().manual_seed(2)).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 5, dtype=torch.float64, generator=g)
    weights = torch.randn(4, 6, 3, dtype=torch.float64, generator=g)
    fast = torch.autograd.grad((model(x) * weights).sum(), list(model.parameters()))
    slow = torch.autograd.grad((model.stepwise(x) * weights).sum(), list(model.parameters()))
    torch.testing.assert_close(model(x), model.stepwise(x), rtol=1e-12, atol=1e-12)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dims", [(2500, 10), (46, 26)])
@pytest.mark.parametrize("arch", ["sbrnn", "dense", "uniform", "lstm"])
def test_every_arch_within_two_percent_of_budget(arch, dims):
    budget = 100_000
    model, spec = build_model(RunConfig(arch=arch, budget=budget), *dims)
    assert abs(model.trainable_total - budget) / budget < 0.02, (model.trainable_total, spec)
    assert (spec is None) == (arch == "lstm")
    x = torch.zeros(2, 3, dims[0])
    assert model(x).shape == (2, 3, dims[1])


def test_resolve_uses_the_balanced_configuration_and_rejects_bad_budgets():
    spec, hidden = resolve(RunConfig(), 2500, 10)
    assert spec.density("hx") < 0.1 and spec.density("hh") == 1.0 and hidden == spec.h
    assert spec.hidden_proportion == pytest.approx(0.5, abs=0.05)
    with pytest.raises(SbrnnError, match="budget"):
        resolve(RunConfig(budget=500), 2500, 10)
    with pytest.raises(SbrnnError, match="budget"):
        resolve(RunConfig(arch="lstm", budget=500), 2500, 10)
    with pytest.raises(SbrnnError, match="balanced from a budget"):
        resolve(RunConfig(budget=None, hidden=10), 2500, 10)
    spec, hidden = resolve(RunConfig(arch="uniform", uniform_density=0.3, budget=None, hidden=12), 20, 4)
    assert hidden == 12 and spec.densities == ((0.3,) * 3, (0.3,) * 3)
