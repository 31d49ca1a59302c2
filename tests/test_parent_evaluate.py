"""Held-out metrics: k-fold and leave-one-task-out against the baselines; unseen records and Fig. 10."""

from __future__ import annotations

import numpy as np
import pytest
from test_parent_data import EPOCHS, fitted, make_records

from sbrnn.errors import SbrnnError
from sbrnn.parent.evaluate import (
    evaluate_parent,
    fit_steps,
    plot_predicted_vs_actual,
    regression_metrics,
    report_rows,
    top_share_precision,
)

TWO_TASKS = ("toy-a", "toy-b")


def test_top_share_precision():
    actual = np.arange(20.0)
    assert top_share_precision(actual, actual) == 1.0  # best 2 of 20 found
    assert top_share_precision(actual, -actual) == 0.0
    assert top_share_precision(actual, np.r_[actual[1:], -1.0]) == 0.5  # picks run 19 and run 1


def test_regression_metrics_perfect_and_constant():
    Y = np.random.default_rng(0).normal(size=(30, EPOCHS + 1))
    perfect = regression_metrics(Y, Y)
    assert perfect["r2_min"] == 1.0 and perfect["spearman_min"] == pytest.approx(1.0)
    assert perfect["rmse_log_curve"] == 0.0 and perfect["n"] == 30
    constant = regression_metrics(Y, np.tile(Y.mean(axis=0), (30, 1)))
    assert constant["r2_min"] == pytest.approx(0.0, abs=1e-12) and constant["spearman_min"] is None
    assert regression_metrics(Y[:0], Y[:0])["r2_min"] is None


def test_kfold_and_leave_one_task_out_with_baselines():
    parent, report = fitted(("rf",), TWO_TASKS, 240)
    cv, loto = report["cv"], report["leave_one_task_out"]
    assert set(cv) == {"rf", "hidden_proportion", "constant"} and set(loto) == set(cv)
    assert set(cv["rf"]["per_task"]) == set(TWO_TASKS) and set(loto["rf"]["per_task"]) == set(TWO_TASKS)
    counts = report["counts"]
    assert cv["rf"]["pooled"]["n"] == counts["converged"] == loto["rf"]["pooled"]["n"]
    assert counts["status"]["diverged"] > 0 and counts["runs"] == 240
    assert cv["rf"]["pooled"]["r2_min"] > 0.9 > cv["hidden_proportion"]["pooled"]["r2_min"]
    assert cv["rf"]["pooled"]["spearman_min"] > cv["hidden_proportion"]["pooled"]["spearman_min"]
    assert cv["constant"]["pooled"]["r2_min"] < 0.05 < cv["rf"]["pooled"]["top10_precision"]
    assert report["converges"]["cv"]["rf"]["brier"] < report["converges"]["cv"]["rf"]["brier_constant"]
    assert report["converges"]["leave_one_task_out"]["rf"]["n"] == 240
    assert report["default_model"] == "rf" and parent.tasks["toy-b"]["loss_kind"] == "mse"
    rows = report_rows(report)
    assert {r["evaluation"] for r in rows} == {"cv", "leave_one_task_out"}
    assert len(rows) == 3 * 2 * (1 + len(TWO_TASKS))
    assert fit_steps(["rf"], 3, 2) == (3 + 2) * 3 + 1


def test_one_task_has_no_leave_one_task_out():
    _, report = fitted()
    assert report["leave_one_task_out"] is None and report["converges"]["leave_one_task_out"] is None


def test_fit_reports_progress_and_checks_folds():
    from sbrnn.parent.evaluate import fit_and_evaluate

    seen = []
    records = make_records(30)
    fit_and_evaluate(records, ["rf"], folds=2, trees=5, on_step=lambda d, total: seen.append((d, total)))
    assert len(seen) == fit_steps(["rf"], 2, 1) and seen[-1] == ("rf: final fit on all runs", len(seen))
    with pytest.raises(SbrnnError, match="folds = 1"):
        fit_and_evaluate(records, ["rf"], folds=1)
    with pytest.raises(SbrnnError, match="--folds 40 needs at least 40"):
        fit_and_evaluate(records, ["rf"], folds=40)


def test_unseen_records_and_fig10(tmp_path):
    parent, _ = fitted()
    training = make_records(320)  # the same records the parent was fitted on
    report, arrays = evaluate_parent(parent, [*make_records(60, seed=7), *training[:10]])
    assert report["counts"]["seen_in_training"] == 10 and report["counts"]["runs"] == 60
    pooled = report["unseen"]["rf"]["pooled"]
    assert pooled["n"] == report["counts"]["converged"] == len(arrays["actual"])
    assert pooled["r2_min"] > 0.8 and pooled["spearman_min"] > 0.9
    path = plot_predicted_vs_actual(arrays, tmp_path / "fig10.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SbrnnError, match="no converged runs the parent did not see"):
        evaluate_parent(parent, training[:20])
