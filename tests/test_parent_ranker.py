"""The within-task ranker: targets standardised per task and budget, an order it learns across tasks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from sbrnn.parent.models import (
    RANKER_DEPTH,
    RANKER_PARALLEL_TREES,
    RANKER_ROUNDS,
    ConfigRanker,
    standardised_targets,
)


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


def test_ranker_grows_a_forest_per_round_of_the_documented_depth():
    X = np.random.default_rng(1).uniform(size=(60, 3))
    groups = np.repeat(["a", "b", "c"], 20)
    fitted = ConfigRanker(kind="xgb", seed=0).fit(X, X[:, 0], np.ones(60, bool), groups)
    params = fitted.estimator_.get_params()
    assert (params["num_parallel_tree"], params["max_depth"]) == (RANKER_PARALLEL_TREES, RANKER_DEPTH)
    assert fitted.estimator_.get_booster().num_boosted_rounds() == RANKER_ROUNDS
    deeper = ConfigRanker(kind="xgb", seed=0, max_depth=7).fit(X, X[:, 0], np.ones(60, bool), groups)
    assert deeper.estimator_.get_params()["max_depth"] == 7
    single = ConfigRanker(seed=0, n_estimators=30, parallel_trees=1, learning_rate=0.05)
    fitted = single.fit(X, X[:, 0], np.ones(60, bool), groups).estimator_
    assert (fitted.get_params()["num_parallel_tree"], fitted.get_params()["learning_rate"]) == (1, 0.05)
    assert fitted.get_booster().num_boosted_rounds() == 30


def test_ranker_order_of_held_out_configurations_barely_depends_on_the_seed():
    rng = np.random.default_rng(2)
    n, tasks = 40, 6
    X = rng.uniform(size=(n * tasks, 4))
    y = np.repeat(rng.uniform(-3, 3, tasks), n) + X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n * tasks)
    groups = np.repeat([f"t{i}" for i in range(tasks)], n)
    train, held = groups != "t0", groups == "t0"
    scores = [
        ConfigRanker(kind="xgb", seed=seed)
        .fit(X[train], y[train], np.ones(train.sum(), bool), groups[train])
        .predict(X[held])
        for seed in (0, 1)
    ]
    assert spearmanr(*scores).statistic > 0.985  # 300 single trees of depth 4: 0.977


def test_the_parent_orders_by_the_ranker_where_its_mean_regret_is_lower_not_its_median():
    from sbrnn.parent.evaluate import _ranker_wins

    def scores(median: float, mean: float, rho: float) -> dict:
        return {"median_regret": {"1": median}, "mean_regret": {"1": mean}, "median_spearman": rho}

    # the 77-task fit's leave-one-task-out: medians near 0 for both, means apart
    metrics = {
        "leave_one_task_out": {"xgb": scores(0.002, 0.079, 0.61), "ranker": scores(0.005, 0.058, 0.70)}
    }
    assert _ranker_wins(metrics, "xgb")
    metrics["leave_one_task_out"]["ranker"] = scores(0.0, 0.090, 0.70)
    assert not _ranker_wins(metrics, "xgb")
    metrics["leave_one_task_out"]["ranker"] = scores(0.0, 0.079, 0.70)  # a tie: the higher Spearman
    assert _ranker_wins(metrics, "xgb")
    assert not _ranker_wins({"leave_one_task_out": {"xgb": scores(0.0, 0.1, 0.5)}}, "xgb")
