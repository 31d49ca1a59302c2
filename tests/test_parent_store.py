"""A parent on disk: the same predictions after a round trip, tampering refused, versions named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sbrnn.errors import SbrnnError
from sbrnn.parent import store
from sbrnn.parent.features import TaskContext
from sbrnn.parent.recommend import configuration


def test_round_trip_gives_the_same_predictions(synthetic_parent, tmp_path):
    parent, report = synthetic_parent
    store.save_parent(parent, tmp_path, report)
    loaded, manifest = store.load_parent(tmp_path)
    task = TaskContext(12, 3, 6, "cross_entropy")
    configs = [configuration("dense", 12, 3, 2000), configuration("lstm", 12, 3, 2000)]
    a = parent.predict_configs(configs, task)
    b = loaded.predict_configs(configs, task)
    assert [x.to_dict() for x in a] == [y.to_dict() for y in b]
    assert (
        loaded.tasks == parent.tasks
        and loaded.budgets == parent.budgets
        and loaded.band_floor == parent.band_floor
    )
    assert manifest["name"] == "synthetic" and manifest["records_sha256"] == report["records_sha256"]
    assert not list(tmp_path.glob(".*.tmp*"))


def test_tampered_foreign_and_other_version_parents(synthetic_parent, tmp_path):
    parent, report = synthetic_parent
    store.save_parent(parent, tmp_path / "p", report)
    bad = shutil.copytree(tmp_path / "p", tmp_path / "tampered")
    victim = next(p for p in bad.iterdir() if p.suffix == ".ubj")
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(SbrnnError, match="was modified"):
        store.load_parent(bad)
    other = shutil.copytree(tmp_path / "p", tmp_path / "other")
    manifest = json.loads((other / store.MANIFEST).read_text())
    manifest["sbrnn_version"] = "0.0.1"
    (other / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="written by sbrnn 0.0.1"):
        store.load_parent(other)
    manifest["schema_version"] = 1
    (other / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SbrnnError, match="schema version 1"):
        store.load_parent(other)
    with pytest.raises(SbrnnError, match="no manifest.json"):
        store.load_parent(tmp_path)


def test_the_shipped_parent_loads_or_says_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(store, "shipped_directory", lambda: tmp_path)
    with pytest.raises(SbrnnError, match="ships no parent"):
        store.load_shipped()


def test_a_parent_fits_reproducibly(synthetic_records):
    from sbrnn.parent.evaluate import fit_and_evaluate

    records = synthetic_records(80, seed=5, tasks=("syn-a", "syn-b"))
    first, _ = fit_and_evaluate(records, ["xgb"], folds=2, trees=20, members=2)
    second, _ = fit_and_evaluate(records, ["xgb"], folds=2, trees=20, members=2)
    X = np.zeros((3, len(first.feature_names)))
    np.testing.assert_array_equal(first.predict(X).log_curve, second.predict(X).log_curve)


def test_a_parent_with_a_ranker_round_trips(synthetic_records, tmp_path):
    from sbrnn.parent.features import training_data
    from sbrnn.parent.models import fit_parent, group_keys

    data = training_data(synthetic_records(60, seed=6, tasks=("syn-a", "syn-c")))
    parent = fit_parent(
        data.X,
        data.Y,
        data.converged,
        ["xgb"],
        n_estimators=10,
        n_members=1,
        groups=group_keys(data.task, data.budget),
    )
    store.save_parent(parent, tmp_path)
    loaded, manifest = store.load_parent(tmp_path)
    assert manifest["ranker"] == "ranker.ubj" and loaded.ranker is not None
    np.testing.assert_allclose(loaded.scores(data.X), parent.scores(data.X))
    assert not np.allclose(parent.scores(data.X), parent.scores(data.X[::-1]))
