"""benchmarks/parent_order.py: a given parent ranks unseen tasks' runs by its ranker and by its
predicted minimum."""

from __future__ import annotations

import pytest
from conftest import imported_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from imported_benchmark("parent_order")


def test_each_order_is_scored_by_its_own_scores_on_every_held_out_group(
    bench, synthetic_records, synthetic_parent, tmp_path
):
    import dataclasses

    import numpy as np
    from scipy.stats import spearmanr

    from sbrnn.parent.features import training_data
    from sbrnn.parent.store import save_parent
    from sbrnn.records import write_record

    parent, report = synthetic_parent
    assert parent.ranker is not None
    save_parent(parent, tmp_path / "parent", report)
    records = synthetic_records(120, seed=3)
    for r in records:
        write_record(r, tmp_path / "runs")
    out = bench.orders(tmp_path / "parent", tmp_path / "runs")
    data = training_data(records)
    for name, scorer in (("ranker", parent), ("minimum", dataclasses.replace(parent, ranker=None))):
        assert out[name]["groups"] == len(set(zip(data.task, data.budget))) >= 8
        for task, row in out[name]["per_task"].items():
            held = data.task == task  # scored one task at a time, as a user's candidates are
            scores, rhos = scorer.scores(data.X[held]), []
            for budget in set(data.budget[held]):
                rows = (data.budget[held] == budget) & data.converged[held]
                rhos.append(spearmanr(scores[rows], data.min_loss[held][rows]).statistic)
            assert row["spearman"] == pytest.approx(np.mean(rhos))
    assert out["ranker"]["per_task"] != out["minimum"]["per_task"]  # two orders, not one


def test_a_pair_without_its_colon_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["sbrnn/parent/zoo"])
    assert info.value.code == 2 and "is not PARENT_DIR:RECORDS_DIR" in capsys.readouterr().err
