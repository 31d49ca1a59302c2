"""The sparse x path: same forward and gradients as the masked-dense form, masks kept through Adam."""

import pytest
import torch

from sbrnn.child import kernels, sparse_ops
from sbrnn.child import model as model_module
from sbrnn.child.model import SparseBlockRNN
from sbrnn.child.weight_space import SparseBlockSpec
from sbrnn.errors import SbrnnError

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error())),
]

SPEC = SparseBlockSpec(
    n_x=70,
    n_y=3,
    h=11,
    densities=((0.08, 0.6, 1.0), (0.1, 1.0, 0.5)),
    means=((0.01, 0.0, 0.0), (0.0, -0.01, 0.0)),
    stds=((0.3, 0.2, 0.2), (0.3, 0.2, 0.2)),
)


def pair(spec=SPEC, seed=3):
    """The same model (same masks and weights) with the sparse and the masked-dense x path."""
    sparse = SparseBlockRNN(spec, generator=torch.Generator().manual_seed(seed), path="sparse")
    dense = SparseBlockRNN(spec, generator=torch.Generator().manual_seed(seed), path="dense")
    with torch.no_grad():
        for m in (sparse, dense):
            m.bias.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(seed + 1))
    return sparse, dense


def run(model, x, weights):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("batch,steps,threads", [(5, 7, 1), (32, 3, 1), (128, 9, 2)])
def test_sparse_path_equals_masked_dense_in_float64_and_fp32(batch, steps, threads):
    torch.set_num_threads(threads)  # two threads: tiles split, gradient partials summed across threads
    sparse, dense = pair()
    assert sparse.sparse_x() and sparse.sparse_s() and not (dense.sparse_x() or dense.sparse_s())
    g = torch.Generator().manual_seed(7)
    x = torch.randn(batch, steps, SPEC.n_x, generator=g)
    weights = torch.randn(batch, steps, SPEC.n_y, generator=g)

    out_s, grads_s = run(sparse, x, weights)
    out_d, grads_d = run(dense, x, weights)
    out_64, grads_64 = run(dense.double(), x.double(), weights.double())  # exact reference

    assert rel(out_s, out_64) < 1e-5 and rel(out_d, out_64) < 1e-5
    for name in grads_64:
        assert rel(grads_s[name], grads_64[name]) < 1e-5, name
        assert rel(grads_s[name], grads_d[name]) < 1e-5, name
    assert grads_s["values_x"].shape == (int(sparse.mask_x.sum()),)  # kept entries only


@pytest.mark.parametrize("h,n_y,d_hx,threads", [(11, 3, 0.05, 1), (40, 5, 0.3, 2), (40, 4, 0.3, 1)])
def test_a_dense_block_inside_the_sparse_column_is_exact_too(h, n_y, d_hx, threads):
    # dense rows go in pairs (an odd one alone); the gradient takes a column's entries 8 and 4 at a
    # time: h = 40 at 0.3 with 4-5 dense rows gives about 17 entries per column
    torch.set_num_threads(threads)
    spec = SparseBlockSpec(n_x=70, n_y=n_y, h=h, densities=((d_hx, 1, 1), (1, 1, 1)))
    sparse, dense = pair(spec)
    assert sparse.sparse_x()
    g = torch.Generator().manual_seed(8)
    x, weights = torch.randn(37, 4, 70, generator=g), torch.randn(37, 4, n_y, generator=g)
    out_s, grads_s = run(sparse, x, weights)
    out_d, grads_d = run(dense, x, weights)
    assert rel(out_s, out_d) < 1e-5 and rel(grads_s["values_x"], grads_d["values_x"]) < 1e-5


def test_masked_entries_stay_zero_through_adam_steps():
    sparse, _ = pair()
    optimizer = torch.optim.Adam(sparse.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(9)
    for _ in range(5):
        x = torch.randn(16, 5, SPEC.n_x, generator=g)
        target = torch.randint(0, SPEC.n_y, (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(sparse(x)[:, -1], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.all(sparse.weight_x[sparse.mask_x == 0] == 0)
    assert torch.all(sparse.weight_s[sparse.mask_s == 0] == 0)
    kept = sparse.mask_x != 0
    assert optimizer.state[sparse.values_x]["exp_avg"].shape == (int(kept.sum()),)  # no moments off the mask
    assert torch.count_nonzero(sparse.weight_x[kept]) == int(kept.sum())


def test_auto_rule_by_density_size_dtype_and_input_gradient(monkeypatch):
    low = SparseBlockRNN(SparseBlockSpec(n_x=30, n_y=2, h=5, densities=((0.05, 1, 1), (0.05, 1, 1))))
    high = SparseBlockRNN(SparseBlockSpec(n_x=30, n_y=2, h=5, densities=((0.5, 1, 1), (1, 1, 1))))
    assert not low.sparse_x()  # 210 entries: too small to pay
    monkeypatch.setattr(model_module, "SPARSE_X_MIN_ENTRIES", 100)
    assert low.sparse_x() and not high.sparse_x()  # column densities 0.05 and 0.64
    assert not low.sparse_x(torch.zeros(1, 1, 30, requires_grad=True))
    monkeypatch.setattr(model_module, "SPARSE_X_MAX_DENSITY", 0.7)
    assert high.sparse_x()
    assert not SparseBlockRNN(low.spec).double().sparse_x()
    assert not SparseBlockRNN(low.spec, path="dense").sparse_x()
    rad = SparseBlockRNN(SparseBlockSpec(n_x=2500, n_y=10, h=185, densities=((0.08, 1, 1), (1, 1, 1))))
    monkeypatch.undo()
    assert rad.sparse_x() and abs(rad.x_density - (185 * 0.08 + 10) / 195) < 1e-12  # balanced RAD


def test_auto_rule_for_the_state_map_by_density_and_size():
    low_s = ((1, 0.1, 0.1), (1, 0.1, 0.1))
    dense_s = SparseBlockRNN(SparseBlockSpec(n_x=30, n_y=10, h=190, densities=((0.05, 1, 1), (1, 1, 1))))
    sparse_s = SparseBlockRNN(SparseBlockSpec(n_x=30, n_y=10, h=190, densities=low_s))
    small = SparseBlockRNN(SparseBlockSpec(n_x=30, n_y=10, h=100, densities=low_s))
    assert not dense_s.sparse_s() and sparse_s.sparse_s() and abs(sparse_s.s_density - 0.1) < 1e-12
    assert not small.sparse_s()  # 110^2 = 12,100 entries: below SPARSE_S_MIN_ENTRIES
    assert SparseBlockRNN(small.spec, path="sparse").sparse_s()
    assert not SparseBlockRNN(sparse_s.spec, path="dense").sparse_s()


def test_patterns_follow_masks_loaded_from_a_state_dict():
    sparse, dense = pair()
    other, _ = pair(seed=11)
    x = torch.randn(4, 3, SPEC.n_x)
    sparse(x)  # builds and caches the patterns of seed 3's masks
    sparse.load_state_dict(other.state_dict())
    dense.load_state_dict(other.state_dict())
    assert rel(sparse(x).detach(), dense(x).detach()) < 1e-5


def test_bf16_autocast_runs_the_sparse_product_in_fp32():
    sparse, dense = pair()
    x = torch.randn(8, 4, SPEC.n_x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        projected = sparse.project(x)
        out = sparse(x)
    assert projected.dtype == torch.float32
    assert rel(out.float().detach(), dense(x).detach()) < 5e-2


def test_product_refuses_inputs_that_need_a_gradient():
    pattern = sparse_ops.SparsePattern.from_mask(torch.ones(2, 3))
    with pytest.raises(ValueError, match="no gradient for its input"):
        sparse_ops.sparse_x_product(torch.zeros(4, 3, requires_grad=True), torch.zeros(6), pattern)


def test_a_training_run_on_the_sparse_path_equals_the_masked_dense_run(tmp_path, monkeypatch):
    from sbrnn.child.checkpoint import load_model
    from sbrnn.child.config import RunConfig
    from sbrnn.child.train import train_run

    options = {"n_x": 600, "n_train": 128, "n_val": 64, "n_test": 64}
    config = RunConfig(
        task="toy-anomaly",
        task_options=options,
        hidden=120,
        budget=None,
        densities=((0.05, 1, 1), (1, 1, 1)),
        epochs=2,
        batch_size=32,
        lr=1e-2,
    )
    model = SparseBlockRNN(SparseBlockSpec(n_x=600, n_y=6, h=120, densities=config.densities))
    assert model.sparse_x()  # 75,600 entries at column density 0.095
    calls = []
    product = sparse_ops.sparse_x_product
    monkeypatch.setattr(sparse_ops, "sparse_x_product", lambda *a: calls.append(1) or product(*a))
    sparse = train_run(config, device="cpu", save=tmp_path / "model")  # the sparse path is CPU-only
    assert len(calls) >= 8  # 4 training batches a epoch, and evaluation
    monkeypatch.setattr(model_module, "SPARSE_X_MAX_DENSITY", 0.0)
    dense = train_run(config, device="cpu")
    assert sparse.status == dense.status == "ok"
    for a, b in zip(sparse.val_loss + [sparse.test_loss], dense.val_loss + [dense.test_loss]):
        assert abs(a - b) < 1e-4 * max(1.0, abs(b))
    loaded, _ = load_model(tmp_path / "model")
    assert torch.all(loaded.weight_x[loaded.mask_x == 0] == 0)


def test_patterns_follow_masks_changed_through_set_masks_and_in_place_ops():
    """The pattern cache is keyed on each mask's storage and version counter: ``set_masks``,
    in-place ops and ``load_state_dict`` advance it (a write through ``.data`` would not: the
    documented contract of :meth:`SparseBlockRNN.set_masks`)."""
    sparse, dense = pair()
    x = torch.randn(4, 3, SPEC.n_x)
    sparse(x)  # caches the patterns of the first masks
    g = torch.Generator().manual_seed(12)
    new_x = (torch.rand(sparse.mask_x.shape, generator=g) < 0.1).float()
    new_s = (torch.rand(sparse.mask_s.shape, generator=g) < 0.3).float()
    for model in (sparse, dense):
        model.set_masks(new_x, new_s)
    assert torch.all(sparse.weight_x[new_x == 0] == 0)
    assert rel(sparse(x).detach(), dense(x).detach()) < 1e-5
    for model in (sparse, dense):
        model.mask_x[:, :5].zero_()  # an in-place op on the buffer itself
    assert rel(sparse(x).detach(), dense(x).detach()) < 1e-5
    with pytest.raises(SbrnnError, match="does not fit"):
        sparse.set_masks(new_x[:, :3], new_s)


def test_the_x_column_is_stored_compactly_and_older_dense_state_dicts_load():
    """``values_x`` holds the kept entries only; a state dict with a dense ``weight_x`` (written
    before the compact x column, or a population's child) loads into the same model."""
    sparse, _ = pair()
    assert dict(sparse.named_parameters())["values_x"].shape == (int(sparse.mask_x.sum()),)
    assert "weight_x" not in sparse.state_dict()
    older = {k: v for k, v in sparse.state_dict().items() if k != "values_x"}
    older["weight_x"] = sparse.weight_x.detach().clone()
    other, _ = pair(seed=11)
    other.load_state_dict(older)
    x = torch.randn(4, 3, SPEC.n_x)
    assert torch.equal(other(x), sparse(x))


def test_a_resumed_checkpoint_with_dense_x_moments_gets_them_cut_to_the_kept_entries():
    from sbrnn.child.train import _compact_moments

    sparse, _ = pair()
    dense = torch.randn(sparse.mask_x.shape)
    saved = {0: {"step": torch.tensor(3.0), "exp_avg": dense, "exp_avg_sq": dense.abs()}, 1: {}}
    moments = _compact_moments(sparse, saved)
    kept = sparse.mask_x.reshape(-1) != 0
    assert torch.equal(moments[0]["exp_avg"], dense.reshape(-1)[kept])
    assert torch.equal(moments[0]["step"], saved[0]["step"]) and moments[1] == {}
    assert _compact_moments(sparse, moments)[0]["exp_avg"] is moments[0]["exp_avg"]  # already compact


def test_a_pattern_copies_its_entries_to_another_device_once():
    pattern = sparse_ops.SparsePattern.from_mask(torch.eye(4))
    assert pattern.flat_on("cpu") is pattern.flat
    on_meta = pattern.flat_on("meta")  # any non-CPU device (a GPU where there is one)
    assert on_meta.device.type == "meta" and on_meta.shape == pattern.flat.shape
    assert pattern.flat_on(torch.device("meta")) is on_meta
