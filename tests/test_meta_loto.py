"""benchmarks/meta_loto.py's closed-loop helpers: percentiles among random draws, and its figure."""

from __future__ import annotations

import math

import pytest
from conftest import imported_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from imported_benchmark("meta_loto")


def test_percentile_is_the_share_of_draws_beaten_strictly(bench):
    drawn = [0.1, 0.2, 0.3, math.inf]
    assert bench._percentile(0.2, drawn) == 0.5  # beats 0.3 and the diverged draw, ties 0.2
    assert bench._percentile(0.05, drawn) == 1.0
    assert math.isnan(bench._percentile(0.2, []))


def test_closed_loop_figure_is_written(bench, tmp_path):
    row = {
        "task": "seq-digits",
        "seeds": [{"top1_percentile": 0.9, "top3_percentile": 0.97}] * 3,
        "tpe_percentile": [0.8, 0.95, 0.9],
        "reference": {"balanced": 0.5, "dense": 0.1, "uniform": 0.4, "lstm": 0.2},
    }
    path = bench.plot_closed_loop([row, {**row, "task": "rad20", "tpe_percentile": None}], tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
