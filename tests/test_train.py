"""The trainer: learning, divergence, failure, early stopping, determinism, records, checkpoints."""

import math

import polars as pl
import pytest
import torch

from sbrnn.child import train as train_module
from sbrnn.child.checkpoint import load_model, save_model
from sbrnn.child.config import RunConfig
from sbrnn.child.model import build_model
from sbrnn.child.train import evaluate_split, train_run
from sbrnn.datasets.registry import build_task
from sbrnn.records import read_records, write_record

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(task="toy-anomaly", budget=2000, epochs=8, batch_size=32, lr=1e-2)


def initial_val_loss(config):
    task = build_task(config.task, seed=config.seed, **config.task_options)
    model, _ = build_model(config, task.n_x, task.n_y)
    return evaluate_split(model, task.val, task.loss)[0]


@pytest.mark.parametrize("arch", ["sbrnn", "dense", "uniform", "lstm"])
def test_each_arch_learns_the_toy_classification_task(arch):
    config = RunConfig(arch=arch, **FAST)
    record = train_run(config)
    assert record.status == "ok", record.error
    assert len(record.train_loss) == len(record.val_loss) == len(record.val_acc) == 8
    assert record.min_val_loss < 0.6 * initial_val_loss(config)
    assert max(record.val_acc) > 0.6  # chance is 1/6
    assert abs(record.trainable_total - 2000) / 2000 < 0.05


def test_regression_task_uses_mse_at_every_step():
    config = RunConfig(task="toy-regression", budget=2000, epochs=6, batch_size=32, lr=3e-3)
    record = train_run(config)
    assert record.status == "ok", record.error
    assert record.loss_kind == "mse" and record.val_acc == [] and record.test_acc is None
    assert (record.n_x, record.n_y, record.steps) == (3, 2, 8)
    assert record.min_val_loss < 0.9 * initial_val_loss(config)


def test_record_fields_are_filled_from_the_run():
    config = RunConfig(densities=((0.5, 1, 1), (1, 0.5, 1)), means=((0.01, 0, 0), (0, 0, 0.02)), **FAST)
    record = train_run(config)
    assert record.status == "ok" and record.error is None
    assert record.run_id == config.run_id() and record.task == "toy-anomaly" and record.arch == "sbrnn"
    assert (record.n_x, record.n_y, record.steps, record.loss_kind) == (8, 6, 6, "cross_entropy")
    blocks = (record.d_hx, record.d_yh, record.mu_hx, record.mu_yy, record.sigma_hh)
    assert blocks == (0.5, 0.5, 0.01, 0.02, 0.05)
    counts = [getattr(record, f"trainable_{b}") for b in ("hx", "hh", "hy", "yx", "yh", "yy")]
    assert sum(counts) == record.trainable_total and record.bias_count == record.h + 6
    assert record.trainable_hx < 8 * record.h and record.trainable_hh == record.h**2
    assert record.hidden_proportion == pytest.approx(counts[1] / sum(counts[:3]))
    dense_total = (record.h + 6) * (8 + record.h + 6)
    assert record.model_density == pytest.approx(record.trainable_total / dense_total)
    assert record.min_val_loss == min(record.val_loss)
    assert record.best_epoch == record.val_loss.index(record.min_val_loss) + 1  # 1-based
    assert 0 < record.test_loss < 2 and 0 <= record.test_acc <= 1
    assert record.device == "cpu" and record.torch_version == torch.__version__
    assert record.wall_seconds > 0 and record.sbrnn_version


def test_huge_learning_rate_diverges_and_keeps_only_finite_epochs():
    record = train_run(RunConfig(task="toy-regression", budget=2000, epochs=6, batch_size=32, lr=1e6))
    assert record.status == "diverged"
    assert "non-finite loss" in record.error
    assert len(record.train_loss) < 6 and all(math.isfinite(v) for v in record.train_loss + record.val_loss)
    assert record.test_loss is None


def test_divergence_keeps_the_curve_so_far(monkeypatch):
    calls = []

    real_evaluate = train_module.evaluate

    def nan_from_third_epoch(outputs, split, *args, **kwargs):
        calls.append(1)
        losses, accs = real_evaluate(outputs, split, *args, **kwargs)
        return ([float("nan")] if len(calls) >= 3 else losses), accs

    monkeypatch.setattr(train_module, "evaluate", nan_from_third_epoch)
    record = train_run(RunConfig(**FAST))
    assert record.status == "diverged" and "epoch 3" in record.error
    assert len(record.train_loss) == len(record.val_loss) == len(record.val_acc) == 2
    assert record.min_val_loss == min(record.val_loss) and record.test_loss is None


def test_an_exception_in_the_run_becomes_status_failed():
    def boom(epoch, metrics):
        if epoch == 2:
            raise RuntimeError("injected failure")

    record = train_run(RunConfig(**FAST), progress=boom)
    assert record.status == "failed"
    assert "RuntimeError: injected failure" in record.error
    assert len(record.val_loss) == 2  # the curve so far is kept


def test_bad_task_and_task_mismatch_fail_without_raising():
    record = train_run(RunConfig(task="no-such-task", budget=2000))
    assert record.status == "failed" and "unknown task" in record.error
    toy = build_task("toy-regression")
    record = train_run(RunConfig(**FAST), task=toy)
    assert record.status == "failed" and "toy-regression" in record.error


def test_early_stopping_leaves_later_epochs_missing():
    config = RunConfig(
        task="toy-anomaly",
        task_options={"n_train": 48},
        budget=4000,
        epochs=40,
        batch_size=8,
        lr=1e-2,
        patience=2,
    )
    record = train_run(config)
    assert record.status == "ok"
    assert len(record.val_loss) < 40
    assert len(record.val_loss) == record.best_epoch + 2
    assert min(record.val_loss[record.best_epoch :]) >= record.min_val_loss


def test_same_seed_same_curves_other_seed_differs():
    a = train_run(RunConfig(**{**FAST, "epochs": 3}))
    b = train_run(RunConfig(**{**FAST, "epochs": 3}))
    c = train_run(RunConfig(**{**FAST, "epochs": 3, "seed": 1}))
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss and a.test_loss == b.test_loss
    assert a.trainable_total == b.trainable_total
    assert a.train_loss != c.train_loss


def test_bf16_precision_trains():
    record = train_run(RunConfig(precision="bf16", **FAST))
    assert record.status == "ok" and record.precision == "bf16"
    assert record.min_val_loss < 1.5


def test_record_parquet_round_trip(tmp_path):
    ok = train_run(RunConfig(**{**FAST, "epochs": 2}))
    lstm = train_run(RunConfig(**{**FAST, "epochs": 2, "arch": "lstm"}))
    failed = train_run(RunConfig(task="no-such-task", budget=2000))
    for record in (ok, lstm, failed):
        write_record(record, tmp_path)
    back = {r.run_id: r for r in read_records(tmp_path)}
    for record in (ok, lstm, failed):
        assert back[record.run_id].to_dict() == record.to_dict()
    frame = pl.read_parquet(str(tmp_path) + "/*.parquet")
    assert frame.height == 3 and set(frame["status"]) == {"ok", "failed"}
    assert frame.filter(pl.col("arch") == "lstm")["d_hx"].to_list() == [None]


@pytest.mark.parametrize("arch", ["sbrnn", "lstm"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, arch):
    config = RunConfig(arch=arch, **{**FAST, "epochs": 3})
    record = train_run(config, save=tmp_path / "model")
    model, info = load_model(tmp_path / "model")
    assert info["run_id"] == record.run_id and info["config"] == config.to_dict()
    assert info["task"]["n_x"] == 8 and info["metrics"]["best_epoch"] == record.best_epoch
    task = build_task("toy-anomaly")
    if arch == "sbrnn":  # masked entries are still exactly 0.0 after training
        masked = torch.cat([model.weight_x[model.mask_x == 0], model.weight_s[model.mask_s == 0]])
        assert masked.numel() > 0 and torch.all(masked == 0.0)
    # The saved model is the best epoch's: it reproduces the record's test metrics exactly.
    assert evaluate_split(model, task.test, task.loss) == (record.test_loss, record.test_acc)

    fresh, spec = build_model(config, 8, 6)
    save_model(tmp_path / "fresh", fresh, spec, config, task)
    loaded, _ = load_model(tmp_path / "fresh")
    x = task.test.x[:5].float()
    assert torch.equal(loaded(x), fresh(x))
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
