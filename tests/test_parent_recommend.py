"""Model-ranked recommendations: within the budget, distinct, and in the truly better region."""

from __future__ import annotations

import numpy as np
import pytest
from test_parent_data import fitted, true_log_min

from sbrnn.child.space import draw
from sbrnn.child.spec import SparseBlockSpec, grid_blocks, hidden_from_budget
from sbrnn.errors import SbrnnError
from sbrnn.parent.recommend import BALANCED_TARGETS, a_priori, balanced_family, model_ranked

N_X, N_Y, BUDGET = 8, 6, 3000.0


def _spec(row: dict) -> SparseBlockSpec:
    return SparseBlockSpec(N_X, N_Y, row["h"], row["densities"], row["means"], row["stds"])


def test_balanced_family_spans_targets_and_blocks():
    family = balanced_family(N_X, N_Y, BUDGET)
    assert len(family) == 3 * len(BALANCED_TARGETS)
    assert BALANCED_TARGETS[0] == 0.3 and BALANCED_TARGETS[-1] == 0.7
    assert {c.source.split()[1] for c in family} == {"hx", "hh", "hy"}
    for c in family:
        assert c.spec.h == hidden_from_budget(N_X, N_Y, BUDGET, c.spec.densities)
        assert grid_blocks(c.spec.densities)["yx"] == 1.0  # every other block dense


def test_top_k_distinct_within_budget_and_truly_better():
    parent, _ = fitted()
    result = model_ranked(parent, N_X, N_Y, BUDGET, top=5, seed=0)
    top = result["top"]
    assert [r["rank"] for r in top] == [1, 2, 3, 4, 5]
    assert len({str(r["densities"]) for r in top}) == 5
    assert result["candidates"]["balanced"] == 27 and result["candidates"]["draw"] > 200
    assert result["seen_task"] and result["steps"] == 6 and result["loss_kind"] == "cross_entropy"
    assert [r["score"] for r in top] == sorted(r["score"] for r in top)
    for r in top:
        spec = _spec(r)
        assert r["h"] == hidden_from_budget(N_X, N_Y, BUDGET, spec.densities)
        d = grid_blocks(spec.densities)
        per_unit = 2 * d["hh"] * spec.h + d["hx"] * N_X + (d["hy"] + d["yh"]) * N_Y
        assert abs(spec.total_trainable - BUDGET) <= per_unit  # h is the budget's rounded root
        assert r["min_low"] <= r["predicted_min"] <= r["min_high"] and 0 <= r["p_converge"] <= 1
        assert r["score"] >= r["predicted_min"] - 1e-12
    # The truth (test_parent_data.true_log_min): every recommendation beats three in four random
    # draws of the sweep space, the best beats nineteen in twenty and the a-priori balanced one.
    rng = np.random.default_rng(123)
    draws = []
    for _ in range(300):
        hp = draw(rng)
        draws.append(true_log_min("toy-a", SparseBlockSpec.from_budget(N_X, N_Y, BUDGET, hp.densities)))
    truth = [true_log_min("toy-a", _spec(r)) for r in top]
    assert max(truth) < np.quantile(draws, 0.25) and min(truth) < np.quantile(draws, 0.05)
    balanced = a_priori(N_X, N_Y, BUDGET)["recommended"]["densities"]
    assert min(truth) < true_log_min("toy-a", SparseBlockSpec.from_budget(N_X, N_Y, BUDGET, balanced))


def test_seeded_and_errors():
    parent, _ = fitted()
    first = model_ranked(parent, N_X, N_Y, BUDGET, top=2, seed=5, draws=40, rounds=1, per_round=16)
    again = model_ranked(parent, N_X, N_Y, BUDGET, top=2, seed=5, draws=40, rounds=1, per_round=16)
    assert first == again
    with pytest.raises(SbrnnError, match="top = 0"):
        model_ranked(parent, N_X, N_Y, BUDGET, top=0)
    with pytest.raises(SbrnnError, match="budget = 50 is too small"):
        model_ranked(parent, N_X, N_Y, 50)
    with pytest.raises(SbrnnError, match="no 'xgb' model"):
        model_ranked(parent, N_X, N_Y, BUDGET, kind="xgb")
    unseen = model_ranked(parent, 30, 4, BUDGET, top=1, draws=20, rounds=0)
    assert not unseen["seen_task"] and unseen["steps"] == 6  # the parent's only task settles T and loss


def test_convergence_probability_weights_the_ranking():
    """Equal predicted minima everywhere: the ranking must follow the probability of converging."""
    from test_parent_data import make_records

    from sbrnn.parent.features import FEATURE_NAMES, training_data
    from sbrnn.parent.models import fit_parent

    data = training_data(make_records(200, seed=2, diverge=False))
    hp = data.X[:, FEATURE_NAMES.index("hidden_proportion")]
    Y = np.zeros_like(data.Y) + 0.01 * np.random.default_rng(0).normal(size=(len(data), 1))
    cut = float(np.median(hp))  # runs below the median hidden proportion converge, the rest fail
    parent = fit_parent(data.X, Y, hp < cut, ["rf"], epochs=data.epochs, n_estimators=30,
                        tasks={"toy-a": {"n_x": N_X, "n_y": N_Y, "steps": 6, "loss_kind": "cross_entropy"}})
    top = model_ranked(parent, N_X, N_Y, BUDGET, top=3, draws=100, rounds=1)["top"]
    assert all(r["hidden_proportion"] < cut and r["p_converge"] > 0.8 for r in top)
