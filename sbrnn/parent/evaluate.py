"""Honest numbers for a parent: k-fold and leave-one-task-out metrics on held-out runs, Fig. 10.

Every metric is computed on runs the model did not see in training, over converged runs (the
ones with a curve target, see :mod:`sbrnn.parent.features`):

``r2_min``           R^2 of the log minimum validation loss;
``spearman_min``     Spearman's rho of the minimum (None when either side is constant);
``rmse_log_curve``   RMSE of the natural-log curve over all ``E`` epochs;
``top10_precision``  of the truly best 10% of runs (at least one), the share the model places
                     in its own best 10% (ties in a prediction are broken by record order).

The "converges" classifier is scored on every run with features: Brier score and accuracy of
its probability, beside the Brier score of the constant training rate.

Two baselines sit in the same table: ``hidden_proportion`` (a random forest on the hidden
proportion alone, same trees and depth as ``rf``) and ``constant`` (the training mean curve).
Folds are shuffled k-fold over all runs, from the seed; leave-one-task-out trains on every other
task and predicts the held-out one (only with two or more tasks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold

from sbrnn.errors import SbrnnError
from sbrnn.parent.features import (
    FEATURE_NAMES,
    TrainingData,
    records_sha256,
    task_traits,
    training_data,
)
from sbrnn.parent.models import ConvergenceClassifier, CurveRegressor, Parent, check_kind, fit_parent
from sbrnn.records import RunRecord

BASELINES = ("hidden_proportion", "constant")
TOP_SHARE = 0.1


def _float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def top_share_precision(actual: np.ndarray, predicted: np.ndarray, share: float = TOP_SHARE) -> float:
    """Of the ``share`` of runs with the lowest ``actual``, the fraction also lowest in ``predicted``."""
    k = max(1, math.ceil(share * len(actual)))
    truly = set(np.argsort(actual, kind="stable")[:k].tolist())
    picked = set(np.argsort(predicted, kind="stable")[:k].tolist())
    return len(truly & picked) / k


def regression_metrics(Y_true: np.ndarray, Y_pred: np.ndarray) -> dict:
    """Metrics of ``[N, E + 1]`` log targets (last column: log minimum) against predictions."""
    n = len(Y_true)
    out: dict = {"n": int(n), "r2_min": None, "spearman_min": None, "rmse_log_curve": None,
                 "top10_precision": None}
    if n == 0:
        return out
    curve_err = Y_pred[:, :-1] - Y_true[:, :-1]
    out["rmse_log_curve"] = _float(np.sqrt(np.mean(curve_err**2)))
    out["top10_precision"] = top_share_precision(Y_true[:, -1], Y_pred[:, -1])
    if n >= 2:
        y, p = Y_true[:, -1], Y_pred[:, -1]
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        if ss_tot > 0:
            out["r2_min"] = _float(1.0 - np.sum((y - p) ** 2) / ss_tot)
        if np.ptp(y) > 0 and np.ptp(p) > 0:
            out["spearman_min"] = _float(spearmanr(y, p).statistic)
    return out


def metric_table(Y_true: np.ndarray, Y_pred: np.ndarray, tasks: np.ndarray) -> dict:
    """``{"pooled": metrics, "per_task": {task: metrics}}`` over the given converged rows."""
    return {
        "pooled": regression_metrics(Y_true, Y_pred),
        "per_task": {
            str(t): regression_metrics(Y_true[tasks == t], Y_pred[tasks == t]) for t in sorted(set(tasks))
        },
    }


def convergence_metrics(converged: np.ndarray, p: np.ndarray, rate: np.ndarray) -> dict:
    """Brier score and accuracy of ``p`` for the label ``converged``, and the Brier of ``rate``."""
    y = converged.astype(np.float64)
    if len(y) == 0:
        return {"n": 0, "converged": 0, "brier": None, "accuracy": None, "brier_constant": None}
    return {
        "n": int(len(y)),
        "converged": int(y.sum()),
        "brier": _float(np.mean((p - y) ** 2)),
        "accuracy": _float(np.mean((p >= 0.5) == converged)),
        "brier_constant": _float(np.mean((rate - y) ** 2)),
    }


class _Columns:
    """An estimator that sees only some columns of ``X`` (the one-feature baseline)."""

    def __init__(self, estimator, columns: Sequence[int]):
        self.estimator, self.columns = estimator, list(columns)

    def fit(self, X, Y):
        self.estimator.fit(X[:, self.columns], Y)
        return self

    def predict(self, X):
        return self.estimator.predict(X[:, self.columns])


def _regressor(name: str, trees: int | None, members: int | None, seed: int, n_jobs: int):
    if name == "constant":
        return DummyRegressor(strategy="mean")
    if name == "hidden_proportion":
        rf = CurveRegressor("rf", n_estimators=trees, seed=seed, n_jobs=n_jobs)
        return _Columns(rf, [FEATURE_NAMES.index("hidden_proportion")])
    return CurveRegressor(name, n_estimators=trees, n_members=members, seed=seed, n_jobs=n_jobs)


def _evaluations(data: TrainingData, folds: int, seed: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``(evaluation, label, train rows, test rows)`` for k-fold and leave-one-task-out."""
    n = len(data)
    splits = [("cv", f"fold {i + 1}", tr, te)
              for i, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)))]
    tasks = sorted(set(data.task))
    if len(tasks) >= 2:
        for t in tasks:
            held = data.task == t
            splits.append(("leave_one_task_out", f"task {t}", np.flatnonzero(~held), np.flatnonzero(held)))
    return splits


def check_folds(folds: int) -> int:
    if isinstance(folds, bool) or not (isinstance(folds, int) and folds >= 2):
        raise SbrnnError(f"folds = {folds!r} is out of range; allowed: integers >= 2")
    return folds


def check_fit_input(data: TrainingData, folds: int) -> None:
    """Raise :class:`SbrnnError` when the records cannot support ``folds``-fold evaluation."""
    check_folds(folds)
    n_conv = int(data.converged.sum())
    if n_conv < max(folds, 4):
        raise SbrnnError(
            f"the records hold {n_conv} converged runs with features; --folds {folds} needs at "
            f"least {max(folds, 4)} (counts: {data.counts()})"
        )


def cross_validate(
    data: TrainingData, kinds: Sequence[str], *, folds: int = 5, trees: int | None = None,
    members: int | None = None, seed: int = 0, n_jobs: int = 1,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """k-fold (and, with 2+ tasks, leave-one-task-out) metrics of ``kinds`` and the baselines.

    Returns ``{"cv": {model: table}, "leave_one_task_out": {model: table} or None,
    "converges": {"cv": {kind: metrics}, "leave_one_task_out": ...}}``; a table is
    :func:`metric_table` of the out-of-fold predictions.
    """
    check_fit_input(data, folds)
    names = [*kinds, *BASELINES]
    evaluations = _evaluations(data, folds, seed)
    K = data.Y.shape[1]
    oof = {(ev, m): np.full((len(data), K), np.nan) for ev in ("cv", "leave_one_task_out") for m in names}
    p_oof = {(ev, k): np.full(len(data), np.nan) for ev in ("cv", "leave_one_task_out") for k in kinds}
    rate_oof = {ev: np.full(len(data), np.nan) for ev in ("cv", "leave_one_task_out")}
    for name in names:
        for ev, label, train, test in evaluations:
            conv_train = train[data.converged[train]]
            if len(conv_train) >= 2:  # else a held-out task whose peers have under two converged runs
                model = _regressor(name, trees, members, seed, n_jobs)
                model.fit(data.X[conv_train], data.Y[conv_train])
                oof[ev, name][test] = model.predict(data.X[test])
            if name in kinds:
                clf = ConvergenceClassifier(name, n_estimators=trees, seed=seed, n_jobs=n_jobs)
                p_oof[ev, name][test] = clf.fit(data.X[train], data.converged[train]).predict_proba(
                    data.X[test])[:, 1]
                rate_oof[ev][test] = data.converged[train].mean()
            if on_step is not None:
                on_step(f"{name}: {ev.replace('_', ' ')}, {label}")
    out: dict = {"cv": {}, "leave_one_task_out": None, "converges": {"cv": {}, "leave_one_task_out": None}}
    has_loto = any(ev == "leave_one_task_out" for ev, *_ in evaluations)
    for ev in ("cv", "leave_one_task_out") if has_loto else ("cv",):
        out[ev] = {}
        out["converges"][ev] = {}
        for name in names:
            rows = data.converged & ~np.isnan(oof[ev, name][:, -1])
            out[ev][name] = metric_table(data.Y[rows], oof[ev, name][rows], data.task[rows])
        for kind in kinds:
            rows = ~np.isnan(p_oof[ev, kind])
            out["converges"][ev][kind] = convergence_metrics(
                data.converged[rows], p_oof[ev, kind][rows], rate_oof[ev][rows])
    return out


def fit_steps(kinds: Sequence[str], folds: int, n_tasks: int) -> int:
    """How many model fits :func:`fit_and_evaluate` reports through ``on_step``."""
    per_model = folds + (n_tasks if n_tasks >= 2 else 0)
    return per_model * (len(kinds) + len(BASELINES)) + len(kinds)


def _best(cv: dict, kinds: Sequence[str]) -> str:
    def score(kind: str) -> float:
        r2 = cv[kind]["pooled"]["r2_min"]
        return -math.inf if r2 is None else r2

    return max(kinds, key=score)


def fit_and_evaluate(
    records: Sequence[RunRecord], kinds: Sequence[str], *, folds: int = 5, trees: int | None = None,
    members: int | None = None, seed: int = 0, n_jobs: int = 1,
    on_step: Callable[[str, int], None] | None = None,
) -> tuple[Parent, dict]:
    """Cross-validate ``kinds`` against the baselines, then fit each kind on every record.

    ``on_step(description, total)`` is called after each of the ``total`` model fits.
    Returns the fitted :class:`Parent` (its default kind is the one with the best pooled k-fold
    ``r2_min``) and the report: counts, settings, the metric tables and the records' SHA-256.
    """
    kinds = [check_kind(k) for k in kinds]
    data = training_data(records)
    check_fit_input(data, folds)
    total = fit_steps(kinds, folds, len(set(data.task)))

    def step(description: str) -> None:
        if on_step is not None:
            on_step(description, total)

    metrics = cross_validate(data, kinds, folds=folds, trees=trees, members=members, seed=seed,
                             n_jobs=n_jobs, on_step=step)
    default = _best(metrics["cv"], kinds)
    parent = fit_parent(
        data.X, data.Y, data.converged, kinds, epochs=data.epochs, n_estimators=trees, n_members=members,
        seed=seed, n_jobs=n_jobs, default_kind=default, tasks=task_traits(records),
        training_runs=[str(r) for r in data.run_id],
        on_fit=lambda k: step(f"{k}: final fit on all runs"),
    )
    report = {
        "counts": data.counts(),
        "epochs": data.epochs,
        "folds": folds,
        "seed": seed,
        "models": {k: parent.regressors[k].params() for k in kinds},
        "default_model": default,
        "tasks": parent.tasks,
        "records_sha256": records_sha256(records),
        **metrics,
    }
    return parent, report


def report_rows(report: dict) -> list[dict]:
    """The metric tables as flat rows: evaluation, model, scope, n and the four metrics."""
    rows = []
    for ev in ("cv", "leave_one_task_out", "unseen"):
        for model, table in (report.get(ev) or {}).items():
            scopes = [("pooled", table["pooled"]), *((f"task {t}", m) for t, m in table["per_task"].items())]
            if ev == "leave_one_task_out":  # per task = the held-out task
                scopes = [("pooled", table["pooled"]),
                          *((f"held out {t}", m) for t, m in table["per_task"].items())]
            for scope, m in scopes:
                rows.append({"evaluation": ev, "model": model, "scope": scope, **m})
    return rows


def evaluate_parent(
    parent: Parent, records: Sequence[RunRecord], kind: str | None = None
) -> tuple[dict, dict]:
    """Metrics of ``parent`` on the ``records`` it did not see in training.

    Records whose run id is among the parent's training runs are left out and counted. Curves are
    compared over the parent's ``E`` epochs (padded with the running minimum or cut, as in
    training). Returns the report and the arrays for :func:`plot_predicted_vs_actual`.
    """
    kind = parent.kind(kind)
    data = training_data(records, epochs=parent.epochs)
    seen = np.isin(data.run_id.astype(str), np.array(parent.training_runs, dtype=str))
    data = data.subset(~seen)
    if not data.converged.any():
        counts = data.counts()
        excluded = "".join(f", {n} {why}" for why, n in counts["excluded"].items())
        raise SbrnnError(
            f"the records hold no converged runs the parent did not see: {int(seen.sum())} were in its "
            f"training set; of the other {counts['runs']}: {counts['not_converged']} not converged{excluded}"
        )
    pred = parent.predict(data.X, kind)
    Y_pred = np.column_stack([pred.log_curve, pred.log_min])
    c = data.converged
    rate = np.full(len(data), float(parent.classifiers[kind].constant_))
    report = {
        "model": kind,
        "counts": {**data.counts(), "seen_in_training": int(seen.sum())},
        "epochs": parent.epochs,
        "unseen": {kind: metric_table(data.Y[c], Y_pred[c], data.task[c])},
        "converges": {"unseen": {kind: convergence_metrics(c, pred.p_converge, rate)}},
    }
    arrays = {
        "actual": np.exp(data.Y[c, -1]),
        "predicted": np.exp(pred.log_min[c]),
        "low": np.exp(pred.log_min[c] - pred.log_min_std[c]),
        "high": np.exp(pred.log_min[c] + pred.log_min_std[c]),
        "task": data.task[c],
    }
    return report, arrays


def plot_predicted_vs_actual(arrays: dict, path: str | Path, title: str) -> Path:
    """The paper's Fig. 10: predicted vs actual minimum validation loss, one colour per task.

    ``arrays`` holds ``actual``, ``predicted``, ``low``, ``high`` ``[N]`` (loss units) and
    ``task`` ``[N]``; bars span the one-spread band. Axes are logarithmic when the losses span
    more than a factor of 10. Writes a PNG and returns its path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actual, predicted = arrays["actual"], arrays["predicted"]
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    for t in sorted(set(arrays["task"])):
        m = arrays["task"] == t
        err = np.vstack([predicted[m] - arrays["low"][m], arrays["high"][m] - predicted[m]])
        ax.errorbar(actual[m], predicted[m], yerr=err, fmt="o", ms=3, alpha=0.6, elinewidth=0.6, label=t)
    both = np.concatenate([actual, arrays["low"], arrays["high"]])
    lo, hi = float(both.min()), float(both.max())
    ends = [lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)]
    if hi / max(lo, 1e-300) > 10:
        ends = [lo / 1.1, hi * 1.1]
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
    ax.plot(ends, ends, color="black", lw=1, ls="--", label="predicted = actual")
    ax.set_xlabel("actual minimum validation loss")
    ax.set_ylabel("predicted minimum validation loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

