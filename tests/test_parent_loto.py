"""Leave-one-task-out metrics: exact random expectations, regret, percentile, equivalent trials."""

import itertools

import numpy as np
import pytest

from sbrnn.parent.loto import expected_best_of_random, score_group


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_expected_best_of_random_is_exact(k):
    values = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    brute = np.mean([min(c) for c in itertools.combinations(values, k)])
    assert expected_best_of_random(values, k) == pytest.approx(brute)


def test_a_perfect_ranking_has_no_regret_and_beats_every_draw():
    loss = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ok = np.ones(6, bool)
    random = np.array([False, True, True, True, True, True])
    perfect = score_group("t", 100.0, loss, ok, loss.copy(), random)
    assert (
        perfect.regret == {1: 0.0, 3: 0.0, 10: 0.0} and perfect.percentile == 1.0 and perfect.spearman == 1.0
    )
    assert perfect.random_regret[1] == pytest.approx((3.5 - 1.0) / 5.0) and perfect.random_equivalent == 6.0
    worst = score_group("t", 100.0, loss, ok, -loss, random)
    assert worst.regret[1] == 1.0 and worst.percentile == 0.0 and worst.random_equivalent == 1.0


def test_failed_runs_count_as_the_worst_and_random_equivalent_interpolates():
    loss = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    ok = np.array([True, True, True, True, False])
    second = score_group("t", 1.0, loss, ok, np.array([1.0, 0.0, 2.0, 3.0, 4.0]), np.ones(5, bool))
    assert second.regret[1] == pytest.approx(1 / 3) and second.best_loss == 1.0
    assert 1.0 < second.random_equivalent < 3.0  # about as good as the best of two random draws
    assert score_group("t", 1.0, loss, np.array([True] + [False] * 4), loss, np.ones(5, bool)) is None
