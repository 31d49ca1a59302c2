"""benchmarks/replicate_ceiling.py: the plan it replicates and its seed-vs-seed agreement."""

from __future__ import annotations

import math

import pytest
from conftest import imported_benchmark

from sbrnn.child.sweep.plan_file import load_plan
from sbrnn.errors import SbrnnError


@pytest.fixture(scope="module")
def bench():
    yield from imported_benchmark("replicate_ceiling")


def test_replicate_plan_is_the_zoo_plan_of_one_task_and_budget_with_another_seed(bench):
    plan = load_plan(bench.PLAN)
    budget, runs = bench.replicate_plan(plan, "parity", 1, seed=3)
    assert budget == sorted(plan.task("parity").budgets)[1]
    original = [r for r in plan.planned_runs() if r.config.task == "parity" and r.config.budget == budget]
    assert [r.label for r in runs] == [r.label for r in original]
    assert all(r.config.seed == 3 for r in runs)
    assert all(r.run_id != o.run_id for r, o in zip(runs, original))  # new runs, not the recorded ones
    assert {r.config.lr for r in runs} == {o.config.lr for o in original}
    with pytest.raises(SbrnnError, match="budget index 3 is out of range; allowed: 0..2"):
        bench.replicate_plan(plan, "parity", 3, seed=1)


def test_identical_seeds_agree_fully_and_a_reversed_order_fully_disagrees(bench):
    original = {f"random {i}": float(i) for i in range(10)} | {"dense": 20.0, "random 10": None}
    same = bench.compare(original, dict(original), {f"random {i}" for i in range(11)})
    assert same["runs"] == 11 and same["random_draws"] == 10  # random 10 did not converge
    assert same["spearman"] == pytest.approx(1.0) and same["ceiling"] == pytest.approx(1.0)
    assert same["top1_percentile"] == 0.9 and same["top1_regret"] == 0.0  # beats 9 of 10 draws
    reversed_ = {k: (None if v is None else -v) for k, v in original.items()}
    flipped = bench.compare(original, reversed_, {f"random {i}" for i in range(11)})
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["ceiling"] is None
    assert flipped["top1_percentile"] == 0.0 and flipped["top1_regret"] == 1.0
    noisy = bench.compare(original, {**original, "random 0": 5.5}, set(original))
    assert 0 < noisy["spearman"] < 1 and math.isclose(noisy["ceiling"], math.sqrt(noisy["spearman"]))


def test_the_chance_of_beating_the_best_of_ten_random_draws_is_exact(bench):
    others = [float(v) for v in range(1, 13)]  # 12 draws, losses 1..12
    assert bench.beats_best_of(0.5, others) == 1.0 and bench.beats_best_of(12.5, others) == 0.0
    assert bench.beats_best_of(1.5, others) == pytest.approx(math.comb(11, 10) / math.comb(12, 10))
    assert bench.beats_best_of(0.5, others[:9]) is None  # fewer than 10 to draw from
    labels = {f"random {i}" for i in range(12)}
    original = {f"random {i}": float(i) for i in range(12)}
    assert bench.compare(original, dict(original), labels)["top1_beats_best_of_10"] == 1.0
    moved = bench.compare(original, {**original, "random 0": 1.5}, labels)  # now beats 10 of the 11
    assert moved["top1_beats_best_of_10"] == pytest.approx(1 / 11)


def test_parent_agreement_against_each_seed_and_their_mean_rank(bench):
    labels = [f"random {i}" for i in range(6)]
    seed0 = dict(zip(labels, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    seed1 = dict(zip(labels, [2.0, 1.0, 3.0, 4.0, 6.0, 5.0]))
    score = dict(zip(labels, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))  # seed 0's order exactly
    out = bench.parent_agreement(score, seed0, seed1, set(labels))
    assert out["spearman_seed0"] == pytest.approx(1.0)
    assert 0.8 < out["spearman_replicate"] < 1.0 and 0.8 < out["spearman_mean_rank"] < 1.0
    assert out["top1_percentile_replicate"] == pytest.approx(4 / 6)  # random 0 is second at seed 1
    assert out["top1_beats_best_of_10_replicate"] is None  # 5 other draws: too few for 10
    unconverged = {f"random {i}": None for i in range(4)}  # two runs left: no correlation
    assert bench.parent_agreement(score, {**seed0, **unconverged}, seed1, set(labels)) == {}


def test_the_parent_scores_only_the_runs_of_the_replicated_budget(bench, synthetic_records):
    from sbrnn.parent.features import training_data

    records = synthetic_records(240, seed=2)  # every task at two budgets, labels repeated across them
    data = training_data(records)
    task = records[0].task
    budget_of = {r.run_id: r.budget for r in records}
    scores = bench.held_out_scores(data, task, 1500.0)
    kept = set(data.run_id)
    mine = [r.run_id for r in records if r.task == task and r.budget == 1500.0 and r.run_id in kept]
    assert sorted(scores) == sorted(mine) and {budget_of[k] for k in scores} == {1500.0}
    labels = [r.label for r in records if r.run_id in scores]
    assert len(labels) == len(set(labels))  # one score per label: none overwritten by another budget
