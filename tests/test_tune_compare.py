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
