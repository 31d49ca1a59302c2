"""benchmarks/ranker_seeds.py: TPE's best of its first 10 trials and the tallies against it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import imported_benchmark

from sbrnn.child import tune


@pytest.fixture(scope="module")
def bench():
    yield from imported_benchmark("ranker_seeds")


def _trial(study: str, trial: int, loss: float, status: str = "ok"):
    return SimpleNamespace(study=study, trial=trial, min_val_loss=loss, status=status)


def test_tpe_best_takes_the_first_ten_trials_of_each_sampler_seed(bench):
    name = f"loto-parity-7600-tpe-{tune.space_tag('paper')}"
    runs = [_trial(f"{name}-0", i, 10.0 - i) for i in range(12)]  # trials 10, 11 come too late
    runs += [_trial(f"{name}-1", i, 5.0) for i in range(10)] + [_trial(f"{name}-1", 3, 0.1, "diverged")]
    runs += [_trial("loto-parity-7600-tpe-0", i, 0.01) for i in range(10)]  # another space: not counted
    assert bench.tpe_best(runs, "parity", 7600.0, 2) == [1.0, 5.0]
    assert bench.tpe_best(runs, "parity", 7600.0, 3) is None  # seed 2 has no study
    assert bench.tpe_best(runs[:9], "parity", 7600.0, 1) is None  # fewer than 10 trials


def test_summary_counts_tasks_won_on_a_majority_of_tpe_seeds(bench):
    def row(beats, regret, ranker="shipped"):
        return {"ranker": ranker, "seed": 0, "beats_tpe": beats, "regret": regret}

    results = [
        {"task": "rad20", "tpe": [1.0] * 3, "rows": [row([True, True, False], 0.0)]},
        {"task": "parity", "tpe": [1.0] * 3, "rows": [row([True, False, False], 0.5)]},
        {"task": "hopper-dynamics", "tpe": None},
    ]
    (s,) = bench.summarise(results, ["shipped"], [0])
    assert (s["tasks"], s["beats_tpe_tasks"], s["beats_tpe_pairs"], s["pairs"]) == (2, 1, 3, 6)
    assert (s["rad_tasks"], s["rad_beats_tpe"], s["mean_regret"]) == (1, 1, 0.25)


def test_rankers_fitted_on_the_zoo_pick_among_a_held_out_tasks_runs(bench):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    test, loop, zoo = (str(root / "data" / d) for d in ("zoo-test", "zoo-test-loop", "zoo-v1"))
    result = bench.pick((test, loop, "rad40-n6-none", ("shipped",), [0], 3, zoo))
    # 50 swept (the LSTM at five rates), 6 picks (the closed loops of the parents fitted on 4,002 and
    # 4,290 runs), 30 TPE trials
    assert result["budget"] == 43_000 and result["candidates"] == 86
    assert [round(t, 4) for t in result["tpe"]] == [1.1342, 1.1102, 0.9659]  # docs/parent.md's studies
    (row,) = result["rows"]
    assert row["top1"] == "loto rad40-n6-none seed 2 rank 1" and row["loss"] == pytest.approx(
        1.0764, abs=1e-4
    )
    assert row["beats_tpe"] == [True, True, False]  # the second closed loop's top-1, as docs/parent.md says
    more = bench.pick((test, loop, "rad40-n6-none", ("shipped",), [0], 3, f"{zoo},{test}"))
    assert more["candidates"] == 86 and more["tpe"] == result["tpe"]  # fitted on 40 tasks, not its own
