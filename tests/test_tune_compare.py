"""benchmarks/tune_compare.py's arithmetic: best-so-far curves, epochs spent, and the epochs a study
needed to reach the cold study's best; and that its figure is written."""

from __future__ import annotations

import math

import pytest
from conftest import imported_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from imported_benchmark("tune_compare")


def test_best_so_far_and_cumulative_epochs(bench):
    assert bench.best_so_far([0.5, math.inf, 0.4, 0.6]) == [0.5, 0.5, 0.4, 0.4]
    assert bench.best_so_far_epochs([10, 3, 10]) == [10, 13, 23]


def test_epochs_to_reach_counts_until_the_first_trial_at_or_below_the_target(bench):
    curve, spent = [0.9, 0.5, 0.5, 0.3], [10, 12, 22, 32]
    assert bench.epochs_to_reach(curve, spent, 0.5) == 12
    assert bench.epochs_to_reach(curve, spent, 0.3) == 32
    assert bench.epochs_to_reach(curve, spent, 0.2) is None


def test_plot_writes_one_panel_per_task(bench, tmp_path):
    row = {
        "task": "toy-regression",
        "budget": 7600.0,
        "random": {"1": 0.6, "5": 0.5},
        **{f"{name} curve": [0.7, 0.55, 0.5, 0.5, 0.45] for name in bench.VARIANTS},
    }
    path = bench.plot([row, {**row, "task": "seq-digits"}], tmp_path / "tune.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tally_counts_tasks_won_on_a_majority_of_seeds_and_ties(bench):
    parent = (
        {"1": [1, -1, -1], "5": [1, 1, -1], "10": [1, 1, 1]},
        {"1": [-1] * 3, "5": [-1, 0, 1], "10": [1, 0, 0]},
    )
    ten = ({"1": [1, 1, 0], "5": [1, 1, 0], "10": [1, 1, 0]}, {"1": [-1] * 3, "5": [-1] * 3, "10": [-1] * 3})
    rows = [{"vs_cold_at_10": {"tpe+parent": p, "tpe+parent10": t}} for p, t in zip(parent, ten)]
    assert bench.tally(rows) == {
        "1": {"tasks": 0, "tasks_no_worse": 0, "pairs": 1, "ties": 0, "of_tasks": 2, "of_pairs": 6},
        "5": {"tasks": 1, "tasks_no_worse": 2, "pairs": 3, "ties": 1, "of_tasks": 2, "of_pairs": 6},
        "10": {"tasks": 1, "tasks_no_worse": 2, "pairs": 4, "ties": 2, "of_tasks": 2, "of_pairs": 6},
    }
    each = {"tasks": 1, "tasks_no_worse": 1, "pairs": 2, "ties": 1, "of_tasks": 2, "of_pairs": 6}
    assert bench.tally(rows, "tpe+parent10") == {"1": each, "5": each, "10": each}


def test_cold_studies_are_the_closed_loops_so_one_trains_them_for_both(bench, tmp_path, monkeypatch):
    """tune_compare's cold TPE study and meta_loto's closed-loop TPE study of a task have the same
    name, journal and settings: with the closed loop's runs as ``--runs`` they are read, not retrained."""
    from types import SimpleNamespace

    from sbrnn.child import tune
    from sbrnn.child.sweep.plan_file import load_plan
    from sbrnn.datasets.summary import build_checked

    seen = []

    def fake_tune(settings, task, **_):
        seen.append(settings)
        return SimpleNamespace(best=None, warm_start=SimpleNamespace(notes=()))

    monkeypatch.setattr(tune, "tune", fake_tune)
    entry = load_plan(bench.PLAN.parent / "zoo-test.toml").task("recall-12")
    built = build_checked("recall-12", 0, entry.options)
    assert bench.study(built, entry, 7600.0, 10, "tpe", 1, tmp_path, None) == seen[0].study_name
    meta = imported_benchmark("meta_loto")
    meta_loto = next(meta)
    try:
        meta_loto._tpe(built, entry, 7600.0, 2, 10, tmp_path)
    finally:
        next(meta, None)
    ours, theirs = seen[0], seen[2]  # sampler seed 1 of each
    assert ours.study_name == theirs.study_name == f"loto-recall-12-7600-tpe-{tune.space_tag('paper')}-1"
    assert ours.storage == theirs.storage == str(tmp_path / "tpe.journal")
    assert ours.identity() == theirs.identity() and ours.trials == theirs.trials == 10
    assert (ours.warm_start, ours.pruner, ours.sampler_seed) == (theirs.warm_start, theirs.pruner, 1)
    shipped = SimpleNamespace(records_sha256="1a2b3c4d" + "0" * 56)
    warm = bench.study(built, entry, 7600.0, 10, "tpe+parent", 0, tmp_path, shipped, ("sbrnn", "lstm"))
    assert warm == f"loto-recall-12-7600-tpe+parent+lstm@1a2b3c4d-{tune.space_tag('paper')}-0"
    assert seen[-1].study_name == warm and seen[-1].warm_start == 5  # a refitted parent: a study of its own


def test_child_tunes_default_warm_start_is_the_one_measured_here(bench):
    """``sbrnn child tune`` enqueues by default as many recommendations as this benchmark's
    ``tpe+parent10`` studies, so the figures in docs/parent.md are what the default gets."""
    from sbrnn.child.tune import DEFAULT_WARM_START

    assert bench.VARIANTS["tpe+parent10"][0] == DEFAULT_WARM_START == 10
