"""rf, xgb and mlp recover a known relation on held-out runs, with a spread and a converges model."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.metrics import r2_score
from test_parent_data import EPOCHS, make_records

from sbrnn.errors import SbrnnError
from sbrnn.parent.features import FEATURE_NAMES, training_data
from sbrnn.parent.models import KINDS, ConvergenceClassifier, CurveRegressor

SMALL = {"rf": {"n_estimators": 80}, "xgb": {"n_estimators": 100, "n_members": 2}, "mlp": {"n_members": 3}}


@functools.cache
def split():
    data = training_data(make_records(500, seed=1))
    c = data.converged
    X, Y = data.X[c], data.Y[c]
    n_train = int(0.75 * len(X))
    return data, X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


@pytest.mark.parametrize("kind", KINDS)
def test_recovers_relation_on_held_out_runs(kind):
    _, X_train, Y_train, X_test, Y_test = split()
    model = CurveRegressor(kind, seed=0, **SMALL[kind]).fit(X_train, Y_train)
    mean, std = model.predict(X_test, return_std=True)
    assert mean.shape == std.shape == (len(X_test), EPOCHS + 1)
    r2_min = r2_score(Y_test[:, -1], mean[:, -1])
    r2_curve = r2_score(Y_test[:, :-1].ravel(), mean[:, :-1].ravel())
    print(f"{kind}: held-out R^2 of the log minimum {r2_min:.3f}, of the log curve {r2_curve:.3f}")
    assert r2_min > 0.9 and r2_curve > 0.9
    assert (std >= 0).all() and std[:, -1].mean() > 0
    np.testing.assert_allclose(model.predict(X_test), mean)


@pytest.mark.parametrize("kind", KINDS)
def test_seeded(kind):
    _, X_train, Y_train, X_test, _ = split()
    rows = slice(0, 60)
    fit = functools.partial(CurveRegressor, kind, seed=3, n_estimators=10, n_members=2)
    first = fit().fit(X_train[rows], Y_train[rows]).predict(X_test)
    np.testing.assert_allclose(fit().fit(X_train[rows], Y_train[rows]).predict(X_test), first)


def test_rf_defaults_are_the_papers():
    assert CurveRegressor("rf").params() == {"n_estimators": 1000, "max_depth": 10, "n_members": 1}
    assert CurveRegressor("rf", n_estimators=30).params()["n_estimators"] == 30


def test_converges_classifier_learns_the_divergent_region():
    data = split()[0]
    assert 0 < data.converged.sum() < len(data)
    clf = ConvergenceClassifier("rf", n_estimators=80).fit(data.X, data.converged)
    hp = data.X[:, FEATURE_NAMES.index("hidden_proportion")]
    p = clf.predict_proba(data.X)[:, 1]
    assert p[hp > 0.95].mean() < 0.6 < 0.9 < p[hp < 0.8].mean()


def test_converges_classifier_with_one_class_is_the_rate():
    X = np.random.default_rng(0).random((10, len(FEATURE_NAMES)))
    clf = ConvergenceClassifier("xgb").fit(X, np.ones(10, dtype=bool))
    assert clf.estimator_ is None
    np.testing.assert_allclose(clf.predict_proba(X[:3]), [[0.0, 1.0]] * 3)


def test_bad_kind_and_sizes():
    with pytest.raises(SbrnnError, match="'svm' is unknown"):
        CurveRegressor("svm").fit(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(SbrnnError, match="trees = 0"):
        CurveRegressor("rf", n_estimators=0).fit(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(SbrnnError, match="at least 2 converged runs"):
        CurveRegressor("rf").fit(np.zeros((1, 2)), np.zeros((1, 2)))
