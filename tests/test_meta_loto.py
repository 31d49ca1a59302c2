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


def test_the_parent_is_compared_with_tpe_by_validation_and_by_the_chosen_runs_test_loss(bench):
    from types import SimpleNamespace

    def run(test_loss, status="ok"):
        return SimpleNamespace(status=status, test_loss=test_loss)

    rows = [{"top1": 0.50, "top1_test": 0.52}, {"top1": 0.40, "top1_test": 0.60}]
    tpe = [(0.45, "a"), (0.42, "b")]  # TPE's best of 10 by validation loss, and its run
    trained = {"a": run(0.55), "b": run(0.58)}
    out = bench.compare_with_tpe(rows, tpe, trained, [0.3, 0.6, math.inf])
    assert out["top1_beats_tpe"] == [False, True]
    assert out["top1_beats_tpe_on_test"] == [True, False]  # the selection bonus read off
    assert out["tpe_best_test"] == [0.55, 0.58] and out["tpe_percentile"] == [2 / 3, 2 / 3]
    lost = bench.compare_with_tpe(rows, [(0.45, "gone")], {"gone": run(None, "diverged")}, [])
    assert lost["tpe_best_test"] == [math.inf] and lost["top1_beats_tpe_on_test"] == [True]
    assert bench.compare_with_tpe(rows, None, {}, [])["top1_beats_tpe"] is None


def test_closed_loops_keep_the_task_order_and_report_each_task(bench, monkeypatch, capsys):
    calls = []

    def fake(records, task, *settings):
        calls.append((task, settings))
        return {"task": task}

    monkeypatch.setattr(bench, "closed_loop", fake)
    rows = bench.closed_loops([], ["rad20", "parity"], (3, "runs", None, 3, 10), workers=1)
    assert [r["task"] for r in rows] == ["rad20", "parity"]
    assert calls == [("rad20", (3, "runs", None, 3, 10)), ("parity", (3, "runs", None, 3, 10))]
    err = capsys.readouterr().err
    assert "rad20 done (1/2" in err and "parity done (2/2" in err


def test_a_worker_count_below_one_is_refused_before_any_work(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--workers", "0", "--records", "no-such-directory"])
    assert exc.value.code == 2
    assert "--workers 0 is out of range; allowed: integers >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["shipped", "given"])
def test_tasks_held_out_of_the_zoo_are_ranked_by_the_shipped_or_a_given_parent(
    bench, synthetic_records, synthetic_parent, tmp_path, which
):
    import numpy as np
    from scipy.stats import spearmanr

    from sbrnn.parent.features import training_data
    from sbrnn.parent.store import load_shipped, save_parent, shipped_directory

    records = synthetic_records(120, seed=3)
    if which == "shipped":
        directory, parent = shipped_directory(), load_shipped()[0]
    else:
        parent = synthetic_parent[0]
        directory = tmp_path / "parent"
        save_parent(parent, directory, synthetic_parent[1])
    result = bench.parent_offline(records, directory)["ranker"]
    groups = {(g["task"], g["budget"]): g for g in result["by_group"]}
    assert len(groups) == result["groups"] >= 8
    data = training_data(records)
    scores = parent.scores(data.X)
    for (task, budget), group in groups.items():
        rows = (data.task == task) & (data.budget == budget) & data.converged
        expected = spearmanr(scores[rows], data.min_loss[rows]).statistic
        assert group["spearman"] == pytest.approx(expected)
        assert group["runs"] == int(((data.task == task) & (data.budget == budget)).sum())
    assert np.isfinite(result["median_spearman"])


def test_a_test_plan_refuses_the_options_that_choose_a_parents_fit(bench, capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--test-plan", "sweeps/zoo-test.toml", "--tasks", "rad20"])
    assert info.value.code == 2 and "--test-plan fits none" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        bench.main(["--parent", "sbrnn/parent/zoo"])
    assert info.value.code == 2 and "--parent is the parent --test-plan measures" in capsys.readouterr().err


def test_a_pick_shared_by_candidate_seeds_is_trained_once(bench, monkeypatch, tmp_path):
    """The closed loop's candidate seeds often agree on a pick: it is one run, trained once."""
    import dataclasses

    import sbrnn.child.train as train
    import sbrnn.parent.recommend as rec
    from sbrnn.parent.store import shipped_directory

    real_train, real_recommend, trained = train.train_run, rec.recommend, []

    def one_epoch(config, built, threads):
        trained.append(config.run_id())
        record = real_train(dataclasses.replace(config, epochs=1), built, threads=threads)
        record.run_id = config.run_id()
        return record

    monkeypatch.setattr(train, "train_run", one_epoch)
    monkeypatch.setattr(rec, "recommend", lambda *a, **k: real_recommend(*a, **{**k, "seed": 0}))
    monkeypatch.setattr(bench, "_tpe", lambda *a: None)
    runs = tmp_path / "runs"
    row = bench.closed_loop([], "toy-regression", 3, runs, None, 3, 10, given=shipped_directory())
    assert len(row["seeds"]) == 3 and len({s["top1"] for s in row["seeds"]}) == 1
    assert len(trained) == len(set(trained)) == 3
