"""Parent files: round trip without pickle; tampered, foreign, other-version and untrusted files refused."""

from __future__ import annotations

import functools
import json
import pickle
import shutil

import numpy as np
import pytest
from test_parent_data import make_records

from sbrnn.errors import SbrnnError
from sbrnn.parent.features import training_data
from sbrnn.parent.models import KINDS, fit_parent
from sbrnn.parent.store import MANIFEST, load_parent, save_parent, sha256_file


@functools.cache
def small_parent():
    records = make_records(80, seed=4)
    data = training_data(records)
    task = {"toy-a": {"n_x": 8, "n_y": 6, "steps": 6, "loss_kind": "cross_entropy"}}
    parent = fit_parent(data.X, data.Y, data.converged, list(KINDS), epochs=data.epochs, n_estimators=10,
                        n_members=2, tasks=task, training_runs=[str(r) for r in data.run_id])
    return parent, data.X[:7]


@pytest.fixture
def saved(tmp_path):
    parent, _ = small_parent()
    save_parent(parent, tmp_path / "parent", {"counts": {"runs": 80}, "records_sha256": "abc"})
    return tmp_path / "parent"


def _no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used to load a parent")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", functools.partial(np.load, allow_pickle=False))


def test_round_trip_without_pickle(saved, monkeypatch):
    parent, X = small_parent()
    _no_pickle(monkeypatch)
    loaded, manifest = load_parent(saved)
    assert manifest["metrics"]["counts"] == {"runs": 80} and manifest["records_sha256"] == "abc"
    assert set(manifest["files"]) == {p.name for p in saved.iterdir() if p.name != MANIFEST}
    assert loaded.epochs == parent.epochs and loaded.training_runs == parent.training_runs
    for kind in KINDS:
        want, got = parent.predict(X, kind), loaded.predict(X, kind)
        for field in ("log_curve", "log_curve_std", "log_min", "log_min_std", "p_converge"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-6)
    names = sorted(p.name for p in saved.iterdir())
    assert any(n.endswith(".ubj") for n in names) and any(n.endswith(".skops") for n in names)
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)


def test_resave_replaces_old_files(saved):
    parent, _ = small_parent()
    rf_only = type(parent)(parent.feature_names, parent.epochs, {"rf": parent.regressors["rf"]},
                           {"rf": parent.classifiers["rf"]}, "rf")
    save_parent(rf_only, saved)
    names = sorted(p.name for p in saved.iterdir())
    assert names == sorted([MANIFEST, "rf_curve.skops", "rf_converges.skops"])
    assert set(load_parent(saved)[0].regressors) == {"rf"}


@pytest.mark.parametrize("name", ["rf_curve.skops", "xgb_curve_0.ubj", "mlp_converges.skops"])
def test_modified_file_is_refused(saved, name):
    path = saved / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SbrnnError, match=f"{name} was modified"):
        load_parent(saved)


def _edit_manifest(directory, **changes):
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("changes, needle", [
    ({"format": "something-else"}, "not an sbrnn parent manifest"),
    ({"schema_version": 99}, "schema version 99"),
    ({"feature_names": ["d_hx"]}, "other features"),
    ({"files": {"../escape.skops": "0" * 64}}, "outside the parent directory"),
])
def test_foreign_or_other_version_is_refused(saved, changes, needle):
    _edit_manifest(saved, **changes)
    with pytest.raises(SbrnnError, match=needle):
        load_parent(saved)


def test_missing_or_unreadable_manifest(tmp_path, saved):
    with pytest.raises(SbrnnError, match="no manifest.json"):
        load_parent(tmp_path / "nowhere")
    (saved / MANIFEST).write_text("{not json")
    with pytest.raises(SbrnnError, match="not readable JSON"):
        load_parent(saved)


def test_untrusted_type_is_refused_even_with_a_matching_hash(saved, monkeypatch):
    """A skops file holding a type outside the allow-list is never loaded, whatever the manifest says."""
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = saved / "rf_curve.skops"
    skops.io.dump(FunctionTransformer(func=shutil.rmtree), path)  # a callable would be untrusted
    manifest = json.loads((saved / MANIFEST).read_text())
    manifest["files"]["rf_curve.skops"] = sha256_file(path)
    (saved / MANIFEST).write_text(json.dumps(manifest))
    _no_pickle(monkeypatch)
    with pytest.raises(SbrnnError, match="does not trust .*shutil.rmtree"):
        load_parent(saved)
