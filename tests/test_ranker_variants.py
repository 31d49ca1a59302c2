"""benchmarks/ranker_variants.py: rankers fitted without a batch score it, one group per task and budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import imported_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from imported_benchmark("ranker_variants")


@pytest.fixture(scope="module")
def split():
    """Synthetic records as a zoo (syn-a, syn-b) and three batches of one task each."""
    from conftest import make_synthetic_records

    records = make_synthetic_records(300, seed=5)
    by_task = {t: [r for r in records if r.task == t] for t in sorted({r.task for r in records})}
    zoo = by_task["syn-a"] + by_task["syn-b"]
    return zoo, {"b-c": by_task["syn-c"], "b-d": by_task["syn-d"], "b-e": by_task["syn-e"]}


def test_a_batch_is_ranked_by_a_ranker_fitted_without_it_nor_the_batch_kept_out(bench, split, monkeypatch):
    from sbrnn.parent.evaluate import is_random_draw
    from sbrnn.parent.features import training_data
    from sbrnn.parent.loto import score_group

    zoo, batches = split
    seen = {}

    def spy(train, test, seed):
        seen[tuple(sorted(set(test.task)))] = set(train.task)
        return bench.shipped(train, test, seed)

    monkeypatch.setitem(bench.VARIANTS, "spy", spy)
    out = bench.leave_one_batch_out(zoo, batches, ["b-c", "b-d"], ["spy", "shipped"], kept_out=["b-e"])
    assert seen == {("syn-c",): {"syn-a", "syn-b", "syn-d"}, ("syn-d",): {"syn-a", "syn-b", "syn-c"}}
    assert out["spy"] == out["shipped"] and set(out["shipped"]) == {"b-c", "b-d"}

    train, test = training_data(zoo + batches["b-d"]), training_data(batches["b-c"])
    scores, is_random = bench.shipped(train, test, 0), is_random_draw(batches["b-c"], test)
    rows = out["shipped"]["b-c"]
    assert [(r["task"], r["budget"]) for r in rows] == sorted(set(zip(test.task, test.budget)))
    assert len(rows) == 2
    for row in rows:
        group = (test.task == row["task"]) & (test.budget == row["budget"])
        loss, ok = test.min_loss[group], test.converged[group]
        expected = score_group(row["task"], row["budget"], loss, ok, scores[group], is_random[group])
        assert row["regret1"] == expected.regret[1] and row["spearman"] == expected.spearman
        value = np.where(ok, loss, np.max(loss[ok]))
        top = int(np.argsort(scores[group], kind="stable")[0])
        others = sorted(v for i, v in enumerate(value) if is_random[group][i] and i != top)
        worse = sum(v > value[top] for v in others)  # the best of 10 of them is above the top-1
        assert row["beats_best_of_10"] == pytest.approx(math.comb(worse, 10) / math.comb(len(others), 10))


def test_every_variant_scores_every_group_and_a_seed_names_its_row(bench, split):
    zoo, batches = split
    out = bench.leave_one_batch_out(zoo, batches, ["b-e"], list(bench.VARIANTS))
    assert set(out) == set(bench.VARIANTS)
    for key, by_batch in out.items():
        summary = bench.summary(by_batch["b-e"])
        assert summary["groups"] == 2 and 0 <= summary["mean_beats_best_of_10"] <= 1, key
    seeds = bench.leave_one_batch_out(zoo, batches, ["b-e"], ["shipped"], seeds=(0, 1))
    assert set(seeds) == {"shipped", "shipped@1"} and seeds["shipped"] == out["shipped"]


def test_landmarks_are_each_groups_probe_minima(bench, split):
    from sbrnn.parent.features import training_data

    zoo, _ = split
    data = training_data(zoo)
    labels = {r.run_id: r.label or "" for r in zoo}
    extra = bench.with_landmarks(data, labels).X[:, data.X.shape[1] :]
    assert np.isnan(extra[:, 0]).all()  # no balanced run among the synthetic records
    for task, budget in set(zip(data.task, data.budget)):
        group = (data.task == task) & (data.budget == budget)
        lstm = [i for i in np.flatnonzero(group) if labels[str(data.run_id[i])] == "lstm"]
        assert len(lstm) == 1 and (extra[group, 1] == data.Y[lstm[0], -1]).all()


def test_rank_normal_targets_keep_each_groups_order_and_skip_failed_runs(bench):
    y = np.array([0.3, -1.0, 2.0, 0.5, 9.0, 1.0])
    ok = np.array([True, True, True, True, False, True])
    z = bench.rank_normal_targets(y, ok, np.array(["a", "a", "a", "b", "b", "b"]))
    assert list(np.argsort(z[:3])) == [1, 0, 2] and z[1] == pytest.approx(-z[2]) and z[0] == 0
    assert np.isnan(z[3:]).all()  # group b has two converged runs: no order to learn


def test_family_reads_the_name_and_an_unknown_variant_is_refused(bench, split):
    assert [bench.family(t) for t in ("rad24-n6", "colsnake-digits", "pen-dynamics", "recall-21", "toy")] == [
        "rad",
        "digits",
        "dynamics",
        "recall",
        "other",
    ]
    zoo, batches = split
    with pytest.raises(SystemExit, match="variant 'ridge' is unknown; allowed: shipped, rank-normal"):
        bench.leave_one_batch_out(zoo, batches, ["b-e"], ["ridge"])


@pytest.mark.parametrize(("top", "extra"), [(5, 5), (10, 0), (5, 0), (3, 2)])
def test_warm_start_chance_is_exact(bench, top, extra):
    """Against every pair of draws: 10 of the 12 random draws for the cold side, ``extra`` of the
    random draws outside the ranker's top for the warm side (ties count as no win)."""
    from itertools import combinations

    rng = np.random.default_rng(top + extra)
    value = np.round(rng.normal(size=14), 1)  # coarse: some ties
    is_random = np.array([True] * 12 + [False] * 2)
    order = rng.permutation(14)
    picks = set(order[:top].tolist())
    rest = [i for i in range(14) if is_random[i] and i not in picks]
    wins = total = 0
    for cold in combinations(np.flatnonzero(is_random), 10):
        for added in combinations(rest, extra):
            warm = min(value[list(picks) + list(added)])
            wins += warm < value[list(cold)].min()
            total += 1
    assert bench.warm_start_chance(value, order, is_random, top, extra) == pytest.approx(wins / total)
