"""Parent features and relative targets: one builder for records and configurations, honest counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SYNTHETIC_TASKS, synthetic_relative_min

from sbrnn.child.weight_space import SparseBlockSpec, grid_blocks
from sbrnn.errors import SbrnnError
from sbrnn.parent.features import (
    CURVE_POINTS,
    FEATURE_NAMES,
    Configuration,
    TaskContext,
    config_features,
    record_features,
    records_sha256,
    relative_curve,
    task_contexts,
    training_data,
    typical_traits,
)
from sbrnn.records import RunRecord
from sbrnn.vocabulary import BLOCKS


def block_record(spec: SparseBlockSpec, lr: float, budget: float, task: TaskContext, **extra) -> RunRecord:
    counts = [round(t) for row in spec.expected_trainable for t in row]
    return RunRecord(
        run_id="x",
        task="t",
        n_x=task.n_x,
        n_y=task.n_y,
        steps=task.steps,
        loss_kind=task.loss_kind,
        arch="sbrnn",
        h=spec.h,
        lr=lr,
        batch_size=16,
        epochs=10,
        seed=0,
        budget=budget,
        **{f"d_{b}": v for b, v in grid_blocks(spec.densities).items()},
        **{f"mu_{b}": v for b, v in grid_blocks(spec.means).items()},
        **{f"sigma_{b}": v for b, v in grid_blocks(spec.stds).items()},
        **{f"trainable_{b}": c for b, c in zip(BLOCKS, counts)},
        trainable_total=spec.total_trainable,
        hidden_proportion=spec.hidden_proportion,
        model_density=spec.model_density,
        **{f"trait_{k}": v for k, v in (task.traits or {}).items()},
        **extra,
    )


def test_record_and_configuration_features_agree():
    """One builder: a record of a configuration (expected counts) has the configuration's features."""
    task = TaskContext(
        2500, 10, 11, "cross_entropy", {"baseline_loss": 2.3, "n_train": 3000.0, "input_std": 0.9}
    )
    spec = SparseBlockSpec.from_budget(
        2500, 10, 50_000, ((0.08, 1, 1), (1, 1, 1)), stds=((0.04, 0.05, 0.06), (0.05, 0.05, 0.05))
    )
    got = record_features(block_record(spec, 2e-3, 50_000, task))
    want = config_features(Configuration("sbrnn", 50_000, 2e-3, spec), task)
    np.testing.assert_allclose(got, want)
    named = dict(zip(FEATURE_NAMES, want))
    assert named["arch_sbrnn"] == 1 and named["arch_lstm"] == 0 and named["d_hx"] == 0.08
    assert named["log_lr"] == math.log(2e-3) and named["hidden_proportion"] == pytest.approx(
        spec.hidden_proportion
    )
    assert named["log_baseline_loss"] == pytest.approx(math.log(2.3)) and named[
        "log_n_train"
    ] == pytest.approx(math.log(3000))
    assert named["log_budget_over_reference"] == pytest.approx(math.log(50_000 / 25_100))
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))


def test_lstm_has_features_and_the_dims_only_baseline_is_the_constant_predictor():
    task = TaskContext(46, 26, 200, "mse")
    named = dict(zip(FEATURE_NAMES, config_features(Configuration("lstm", 20_000, 1e-3, hidden=30), task)))
    assert (
        named["arch_lstm"] == 1
        and named["d_hh"] == 1
        and named["hidden_proportion"] == pytest.approx(26 / 72)
    )
    assert task.baseline_loss == 1.0 and TaskContext(2500, 10, 11, "cross_entropy").baseline_loss == math.log(
        10
    )
    with pytest.raises(SbrnnError, match="needs its weight space"):
        Configuration("sbrnn", 1000, 1e-3)
    with pytest.raises(SbrnnError, match="steps = 0"):
        TaskContext(3, 2, 0, "mse")
    with pytest.raises(SbrnnError, match="'hinge' is unknown"):
        TaskContext(3, 2, 4, "hinge")


def test_relative_curve_is_the_best_so_far_at_fractions_of_the_planned_epochs():
    curve = [4.0, 2.0, 3.0, 1.0]  # planned 8 epochs, stopped after 4
    got = np.exp(relative_curve(curve, 8, baseline=2.0, points=4))
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5, 0.5])  # epochs 2, 4, 6, 8 (the plateau held)
    np.testing.assert_allclose(np.exp(relative_curve([3.0, 2.0, 2.5, 1.5], 4, 1.0, 4)), [3.0, 2.0, 2.0, 1.5])


def test_statuses_and_censored_runs_are_counted(synthetic_records):
    records = synthetic_records(30, seed=3)
    records[0].status, records[0].val_loss = "failed", []
    records[1].status = "pruned"
    records[2].loss_kind = "hinge"
    data = training_data(records)
    counts = data.counts()
    assert counts["runs"] == 30 and counts["with_features"] == 28
    assert counts["excluded"] == {"pruned (censored curve)": 1, "unknown loss kind": 1}
    assert counts["status"]["failed"] == 1 and counts["status"]["pruned"] == 0
    assert not data.converged[0] and np.isnan(data.Y[0]).all()
    assert data.Y.shape == (28, CURVE_POINTS) and set(data.arch) >= {"dense", "lstm", "sbrnn"}


def test_targets_follow_the_synthetic_relation(synthetic_records):
    records = synthetic_records(60, seed=4, noise=0.0)
    data = training_data(records)
    for i, record in enumerate(r for r in records if r.status != "pruned"):
        if data.converged[i] and len(record.val_loss) == record.epochs:
            want = synthetic_relative_min(
                record.task, record.hidden_proportion or 0.0, record.model_density or 1.0, record.arch
            )
            assert data.Y[i, -1] == pytest.approx(want + math.exp(-(record.epochs - 1) / 1.5), abs=1e-9)
    assert records_sha256(records) == records_sha256(list(reversed(records)))
    assert records_sha256(records) != records_sha256(records[1:])


def test_task_contexts_and_typical_traits(synthetic_records):
    contexts = task_contexts(synthetic_records(20))
    assert set(contexts) == set(SYNTHETIC_TASKS) and contexts["syn-b"].loss_kind == "mse"
    typical = typical_traits(contexts)
    assert typical["cross_entropy"]["n_train"] == 500.0 and "class_entropy" not in typical["mse"]
    filled = TaskContext(5, 4, 3, "mse").with_traits(typical)
    assert filled.traits["n_train"] == 500.0 and filled.baseline_loss == 1.0  # the dims' own baseline
