"""The within-task ranker: targets standardised per task and budget, an order it learns across tasks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from sbrnn.parent.models import ConfigRanker, standardised_targets


def test_targets_are_z_scores_within_each_group_and_nan_where_undefined():
    groups = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 2)
    y = np.array([1.0, 2.0, 3.0, np.nan, 10.0, 10.0, 10.0, 5.0, 6.0])
    converged = np.array([True, True, True, False, True, True, True, True, True])
    z = standardised_targets(y, converged, groups)
    np.testing.assert_allclose(z[:3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert np.isnan(z[3])  # did not converge
    assert np.isnan(z[4:7]).all()  # no spread
    assert np.isnan(z[7:]).all()  # fewer than 3 converged runs


def test_ranker_learns_an_order_shared_by_tasks_of_different_loss_levels():
    rng = np.random.default_rng(0)
    n, tasks = 40, 6
    X = rng.uniform(size=(n * tasks, 3))
    level = np.repeat(rng.uniform(-3, 3, tasks), n)  # each task's own loss level
    y = level + 2.0 * X[:, 0] + 0.1 * rng.normal(size=n * tasks)  # the order: lower x0 is better
    groups = np.repeat([f"t{i}" for i in range(tasks)], n)
    train = groups != "t0"
    ranker = ConfigRanker(kind="xgb", seed=0).fit(
        X[train], y[train], np.ones(train.sum(), bool), groups[train]
    )
    held = ~train
    assert spearmanr(ranker.predict(X[held]), y[held]).statistic > 0.9


def test_ranker_of_a_sweep_too_small_to_rank_gives_equal_scores():
    X = np.arange(6.0).reshape(3, 2)
    ranker = ConfigRanker(kind="xgb", seed=0).fit(
        X, np.array([1.0, 2.0, 3.0]), np.ones(3, bool), np.array(["a", "b", "c"])
    )
    scores = ranker.predict(X)
    assert scores == pytest.approx(np.full(3, scores[0]))
