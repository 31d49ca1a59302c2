"""Parent features and targets; also the synthetic records the other parent tests build on.

Synthetic records have a known relation: the log minimum validation loss is
``offset(task) + 6 (hidden proportion - 0.5)^2 + (1 - model density)``, curves decay towards it,
about a third stop early, and configurations with a hidden proportion above 0.9 mostly diverge.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from sbrnn.child.space import draw
from sbrnn.child.spec import SparseBlockSpec, grid_blocks
from sbrnn.errors import SbrnnError
from sbrnn.parent.features import (
    FEATURE_NAMES,
    LOSS_KINDS,
    PAPER_FEATURES,
    pad_curve,
    record_features,
    records_sha256,
    spec_features,
    training_data,
)
from sbrnn.records import RunRecord
from sbrnn.vocabulary import BLOCKS

TASKS = {  # name: n_x, n_y, steps, loss kind, offset of the log minimum
    "toy-a": (8, 6, 6, "cross_entropy", 0.0),
    "toy-b": (3, 2, 8, "mse", -2.0),
}
EPOCHS = 12
DECAY = 1.5  # epochs; curves approach their minimum as exp(-epoch / DECAY)


def true_log_min(task: str, spec: SparseBlockSpec) -> float:
    return TASKS[task][4] + 6.0 * (spec.hidden_proportion - 0.5) ** 2 + (1.0 - spec.model_density)


def make_record(task: str, spec: SparseBlockSpec, lr: float, budget: float, run_id: str, status: str = "ok",
                curve: list[float] | None = None) -> RunRecord:
    n_x, n_y, steps, loss, _ = TASKS[task]
    counts = [round(t) for row in spec.expected_trainable for t in row]
    if curve is None:
        target = true_log_min(task, spec)
        curve = [math.exp(target + math.exp(-e / DECAY)) for e in range(EPOCHS)]
    return RunRecord(
        run_id=run_id, task=task, n_x=n_x, n_y=n_y, steps=steps, loss_kind=loss, arch="sbrnn", h=spec.h,
        lr=lr, batch_size=16, epochs=EPOCHS, seed=0, status=status, budget=budget,
        **{f"d_{b}": v for b, v in grid_blocks(spec.densities).items()},
        **{f"mu_{b}": v for b, v in grid_blocks(spec.means).items()},
        **{f"sigma_{b}": v for b, v in grid_blocks(spec.stds).items()},
        **{f"trainable_{b}": c for b, c in zip(BLOCKS, counts)},
        trainable_total=sum(counts), hidden_proportion=spec.hidden_proportion,
        model_density=spec.model_density, val_loss=curve, error="boom" if status == "failed" else None,
    )


def make_records(n: int, seed: int = 0, tasks: tuple[str, ...] = ("toy-a",), noise: float = 0.01,
                 short: float = 0.3, diverge: bool = True) -> list[RunRecord]:
    """``n`` records from the paper's sweep space, cycling through ``tasks``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        n_x, n_y = TASKS[task][:2]
        hp = draw(rng)
        budget = float(rng.choice([1500, 3000]))
        spec = SparseBlockSpec.from_budget(n_x, n_y, budget, hp.densities, hp.means, hp.stds)
        target = true_log_min(task, spec)
        curve = [math.exp(target + math.exp(-e / DECAY) + noise * rng.normal()) for e in range(EPOCHS)]
        status = "ok"
        if rng.random() < short:
            curve = curve[: int(rng.integers(9, EPOCHS))]
        if diverge and spec.hidden_proportion > 0.9 and rng.random() < 0.7:
            status, curve = "diverged", curve[:2] + [float("nan")]
        elif rng.random() < 0.02:
            status, curve = "failed", []
        out.append(make_record(task, spec, hp.lr, budget, f"s{seed}-{i:05d}", status, curve))
    return out


@functools.cache
def fitted(kinds: tuple[str, ...] = ("rf",), tasks: tuple[str, ...] = ("toy-a",), n: int = 320):
    """A parent and its report, fitted once per process on synthetic records (few trees, 3 folds)."""
    from sbrnn.parent.evaluate import fit_and_evaluate

    return fit_and_evaluate(make_records(n, tasks=tasks), list(kinds), folds=3, trees=60, members=3)


def test_feature_names_paper_first():
    assert len(PAPER_FEATURES) == 20 and FEATURE_NAMES[:20] == PAPER_FEATURES
    assert len(FEATURE_NAMES) == 28 and len(set(FEATURE_NAMES)) == 28
    assert {"log_n_x", "log_n_y", "steps", "loss_cross_entropy", "log_budget", "log_h", "model_density",
            "log_total_trainable"} <= set(FEATURE_NAMES)


def test_loss_kinds_match_tasks():
    from sbrnn.datasets.task import LOSS_KINDS as TASK_LOSS_KINDS

    assert LOSS_KINDS == TASK_LOSS_KINDS


def test_record_and_spec_features_agree():
    """One builder: a record of a spec (expected counts) has the spec's features."""
    spec = SparseBlockSpec.from_budget(2500, 10, 50_000, ((0.08, 1, 1), (1, 1, 1)),
                                       stds=((0.04, 0.05, 0.06), (0.05, 0.05, 0.05)))
    record = make_record("toy-a", spec, 2e-3, 50_000, "x")
    record.n_x, record.n_y, record.trainable_total = 2500, 10, spec.total_trainable
    got = record_features(record)
    want = spec_features(spec, steps=6, loss_kind="cross_entropy", budget=50_000, lr=2e-3)
    np.testing.assert_allclose(got, want)
    named = dict(zip(FEATURE_NAMES, want))
    assert named["d_hx"] == 0.08 and named["sigma_hx"] == 0.04 and named["log_lr"] == math.log(2e-3)
    assert named["hidden_proportion"] == pytest.approx(spec.hidden_proportion)
    assert named["log_h"] == pytest.approx(math.log(spec.h)) and named["loss_cross_entropy"] == 1.0
    mse = spec_features(spec, steps=6, loss_kind="mse", budget=50_000, lr=2e-3)
    assert dict(zip(FEATURE_NAMES, mse))["loss_cross_entropy"] == 0.0


@pytest.mark.parametrize("kwargs, needle", [
    ({"loss_kind": "hinge"}, "hinge"), ({"steps": 0}, "steps = 0"), ({"lr": -1.0}, "lr = -1"),
])
def test_spec_features_bad_input(kwargs, needle):
    spec = SparseBlockSpec(8, 6, 20)
    args = {"steps": 6, "loss_kind": "mse", "budget": 1000.0, "lr": 1e-3, **kwargs}
    with pytest.raises(SbrnnError, match=needle):
        spec_features(spec, **args)


def test_pad_curve_running_minimum():
    curve = [3.0, 2.0, 2.5]
    out = pad_curve(curve, 5)
    np.testing.assert_allclose(np.exp(out), [3.0, 2.0, 2.5, 2.0, 2.0])
    np.testing.assert_allclose(np.exp(pad_curve([4.0, 3.0, 2.0], 2)), [4.0, 3.0])  # cut at E


def test_mixed_lengths_and_non_converged_runs():
    spec = SparseBlockSpec.from_budget(8, 6, 1500, ((0.5, 0.5, 0.5), (1, 1, 1)))
    records = [
        make_record("toy-a", spec, 1e-3, 1500, "full"),
        make_record("toy-a", spec, 1e-3, 1500, "short", curve=[3.0, 2.0, 2.2, 2.4]),
        make_record("toy-a", spec, 1e-3, 1500, "div", status="diverged", curve=[3.0, float("inf")]),
        make_record("toy-a", spec, 1e-3, 1500, "fail", status="failed", curve=[]),
        make_record("toy-a", spec, 1e-3, 1500, "nan-ok", curve=[3.0, float("nan")]),
    ]
    lstm = make_record("toy-a", spec, 1e-3, 1500, "lstm")
    lstm.arch = "lstm"
    for b in BLOCKS:
        setattr(lstm, f"d_{b}", None)
    data = training_data([*records, lstm])
    assert data.epochs == EPOCHS and data.Y.shape == (5, EPOCHS + 1)
    assert data.converged.tolist() == [True, True, False, False, False]
    short = data.Y[1]
    np.testing.assert_allclose(np.exp(short[:6]), [3.0, 2.0, 2.2, 2.4, 2.0, 2.0])
    assert short[-1] == pytest.approx(math.log(2.0)) and np.isnan(data.Y[2:]).all()
    counts = data.counts()
    assert counts["status"] == {"ok": 3, "diverged": 1, "failed": 1, "pruned": 0}
    assert counts["converged"] == 2 and counts["not_converged"] == 3 and counts["curves_padded"] == 1
    assert counts["excluded"] == {"lstm (no block grid)": 1} and counts["runs"] == 6


def test_synthetic_relation_and_hash():
    records = make_records(40)
    data = training_data(records)
    hp = data.X[:, FEATURE_NAMES.index("hidden_proportion")]
    md = data.X[:, FEATURE_NAMES.index("model_density")]
    c = data.converged & (data.lengths == EPOCHS)
    want = 6.0 * (hp[c] - 0.5) ** 2 + (1.0 - md[c])
    np.testing.assert_allclose(data.Y[c, -1], np.array(want) + math.exp(-(EPOCHS - 1) / DECAY), atol=0.05)
    assert records_sha256(records) == records_sha256(list(reversed(records)))
    assert records_sha256(records) != records_sha256(records[1:])
