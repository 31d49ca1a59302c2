"""Honest numbers for a parent: k-fold and leave-one-task-out metrics on held-out runs, Fig. 10.

Every metric is computed on runs the model did not see in training, over converged runs (the
ones with a curve target, see :mod:`sbrnn.parent.features`):

``r2_min``           R^2 of the log minimum validation loss;
``spearman_min``     Spearman's rho of the minimum (None when either side is constant);
``rmse_log_curve``   RMSE of the relative log best-so-far curve over its points;
``top10_precision``  of the truly best 10% of runs (at least one), the share the model places
                     in its own best 10% (ties in a prediction are broken by record order).

The "converges" classifier is scored on every run with features: Brier score and accuracy of
its probability, beside the Brier score of the constant training rate.

Two baselines sit in the same table: ``hidden_proportion`` (a random forest on the hidden
proportion alone, same trees and depth as ``rf``) and ``constant`` (the training mean curve).
Folds are shuffled k-fold over all runs, from the seed.

Leave-one-task-out (two or more tasks) measures what a recommendation needs, the order of
configurations inside a task the parent never saw (:mod:`sbrnn.parent.loto`: regret@k, percentile,
Spearman, random-equivalent trials), beside the hidden proportion alone; and how honest the band
is: the share of held-out runs whose minimum lies inside the models' one-sigma spread, and the
floor added to it in quadrature that makes it 68% (the fitted parent's ``band_floor``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
from scipy.stats import spearmanr
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold

from sbrnn.errors import SbrnnError
from sbrnn.parent import loto
from sbrnn.parent.features import (
    FEATURE_NAMES,
    TrainingData,
    records_sha256,
    task_contexts,
    training_data,
    typical_traits,
)
from sbrnn.parent.models import (
    ConfigRanker,
    ConvergenceClassifier,
    CurveRegressor,
    Parent,
    check_kind,
    fit_parent,
    group_keys,
)
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
    out: dict = {
        "n": int(n),
        "r2_min": None,
        "spearman_min": None,
        "rmse_log_curve": None,
        "top10_precision": None,
    }
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
        "brier": _float(float(np.mean((p - y) ** 2))),
        "accuracy": _float(float(np.mean((p >= 0.5) == converged))),
        "brier_constant": _float(float(np.mean((rate - y) ** 2))),
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


def _folds(data: TrainingData, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(data))))


def check_folds(folds: int) -> int:
    if isinstance(folds, bool) or not (isinstance(folds, int) and folds >= 2):
        raise SbrnnError(f"folds = {folds!r} is out of range; allowed: integers >= 2")
    return folds


def check_fit_input(data: TrainingData, folds: int) -> None:
    """Raise :class:`SbrnnError` when the records cannot support ``folds``-fold evaluation."""
    check_folds(folds)
    n_conv = int(data.converged.sum())
    if n_conv < max(folds, 4):
        counts = data.counts()
        left_out = ", ".join(f"{n} {why}" for why, n in counts["excluded"].items())
        raise SbrnnError(
            f"the records hold {n_conv} converged runs with features ({counts['runs']} runs: "
            f"{counts['converged']} converged, {counts['not_converged']} not converged, "
            f"{sum(counts['excluded'].values())} left out{f': {left_out}' if left_out else ''}); "
            f"allowed: at least {max(folds, 4)} for {folds}-fold evaluation (or fewer folds)"
        )


def fit_warnings(data: TrainingData, folds: int) -> list[str]:
    """What the metrics cannot say with these records: too few runs for a top-10% precision, too
    few tasks for leave-one-task-out."""
    out = []
    n_conv, tasks = int(data.converged.sum()), len(set(data.task))
    if n_conv < 10 * folds * 2:
        out.append(
            f"only {n_conv} converged runs: each of the {folds} folds tests about {n_conv // folds}, so "
            "its top-10% precision rests on one or two runs"
        )
    if tasks < 2:
        out.append("one task only: leave-one-task-out (ranking on unseen tasks) cannot be measured")
    elif tasks < 5:
        out.append(f"only {tasks} tasks: leave-one-task-out medians rest on {tasks} held-out tasks")
    return out


def fit_kind(data: TrainingData, kind: str, trees, members, seed, n_jobs) -> Parent:
    """A parent of one ``kind`` fitted on ``data`` (no evaluation, no provenance)."""
    return fit_parent(
        data.X,
        data.Y,
        data.converged,
        [kind],
        n_estimators=trees,
        n_members=members,
        seed=seed,
        n_jobs=n_jobs,
    )


def cross_validate(
    data: TrainingData,
    kinds: Sequence[str],
    is_random: np.ndarray,
    *,
    folds: int = 5,
    trees: int | None = None,
    members: int | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """k-fold regression metrics of ``kinds`` and the baselines, and with two or more tasks their
    leave-one-task-out ranking (:mod:`sbrnn.parent.loto`) and band calibration.

    Returns ``{"cv": {model: table}, "converges": {kind: metrics}, "leave_one_task_out":
    {model: summary} or None, "band": {kind: band_calibration(...)} or None}``.
    """
    check_fit_input(data, folds)
    names = [*kinds, *BASELINES]
    K = data.Y.shape[1]
    oof = {m: np.full((len(data), K), np.nan) for m in names}
    p_oof = {k: np.full(len(data), np.nan) for k in kinds}
    rate_oof = np.full(len(data), np.nan)
    for i, (train, test) in enumerate(_folds(data, folds, seed)):
        conv_train = train[data.converged[train]]
        for name in names:
            if len(conv_train) >= 2:
                model = _regressor(name, trees, members, seed, n_jobs).fit(
                    data.X[conv_train], data.Y[conv_train]
                )
                oof[name][test] = model.predict(data.X[test])
            if name in kinds:
                clf = ConvergenceClassifier(name, n_estimators=trees, seed=seed, n_jobs=n_jobs)
                p_oof[name][test] = clf.fit(data.X[train], data.converged[train]).predict_proba(data.X[test])[
                    :, 1
                ]
            if on_step is not None:
                on_step(f"{name}: fold {i + 1}")
        rate_oof[test] = data.converged[train].mean()
    out: dict = {"cv": {}, "converges": {}, "leave_one_task_out": None, "band": None}
    for name in names:
        rows = data.converged & ~np.isnan(oof[name][:, -1])
        out["cv"][name] = metric_table(data.Y[rows], oof[name][rows], data.task[rows])
    for kind in kinds:
        rows = ~np.isnan(p_oof[kind])
        out["converges"][kind] = convergence_metrics(data.converged[rows], p_oof[kind][rows], rate_oof[rows])
    if len(set(data.task)) < 2:
        return out
    out["leave_one_task_out"], out["band"] = {}, {}
    for kind in kinds:
        residuals: list[tuple[np.ndarray, np.ndarray]] = []
        groups = loto.leave_one_task_out(
            data,
            _ranker(kind, residuals, trees, members, seed, n_jobs),
            is_random,
            on_task=_announce(on_step, kind),
        )
        out["leave_one_task_out"][kind] = {
            **loto.summarise(groups),
            "by_group": [g.to_dict() for g in groups],
        }
        out["band"][kind] = band_calibration(residuals)
    groups = loto.leave_one_task_out(
        data,
        config_ranker(seed, n_jobs),
        is_random,
        on_task=_announce(on_step, "ranker"),
    )
    out["leave_one_task_out"]["ranker"] = {
        **loto.summarise(groups),
        "by_group": [g.to_dict() for g in groups],
    }
    hp = hidden_proportion_ranker(trees, seed, n_jobs)
    groups = loto.leave_one_task_out(data, hp, is_random)
    out["leave_one_task_out"]["hidden_proportion"] = {
        **loto.summarise(groups),
        "by_group": [g.to_dict() for g in groups],
    }
    return out


BAND_COVERAGE = 0.6827
"""The share of held-out runs a one-sigma band should hold."""


def _announce(on_step: Callable[[str], None] | None, what: str) -> Callable[[str], None] | None:
    """``on_task`` for :func:`sbrnn.parent.loto.leave_one_task_out`: reports ``what: without TASK``."""
    if on_step is None:
        return None
    return lambda task: on_step(f"{what}: without {task}")


def band_calibration(residuals: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
    """How honest the models' spread is on held-out tasks, and the floor that makes it so.

    ``residuals`` are ``(|actual - predicted| log minimum, predicted spread)`` pairs of held-out runs.
    ``coverage`` is the share inside the spread alone; ``floor`` the constant ``f`` (log units) for
    which ``sqrt(spread^2 + f^2)`` holds :data:`BAND_COVERAGE` of them (0 when the spread already
    does): the part of an unseen task's error the models' own disagreement does not show.
    """
    if not residuals:
        return {"coverage": None, "floor": 0.0, "coverage_with_floor": None}
    error = np.concatenate([r[0] for r in residuals])
    spread = np.concatenate([r[1] for r in residuals])
    if len(error) == 0:
        return {"coverage": None, "floor": 0.0, "coverage_with_floor": None}

    def coverage(floor: float) -> float:
        return float(np.mean(error <= np.sqrt(spread**2 + floor**2)))

    low, high = 0.0, float(error.max()) + 1e-9
    if coverage(0.0) < BAND_COVERAGE:
        for _ in range(60):  # bisection: coverage grows with the floor
            mid = (low + high) / 2
            low, high = (mid, high) if coverage(mid) < BAND_COVERAGE else (low, mid)
    floor = high if coverage(0.0) < BAND_COVERAGE else 0.0
    return {"coverage": coverage(0.0), "floor": floor, "coverage_with_floor": coverage(floor)}


def _ranker(
    kind: str, residuals: list[tuple[np.ndarray, np.ndarray]], trees, members, seed, n_jobs
) -> loto.FitPredict:
    """Leave-one-task-out ``fit_predict`` of ``kind``; appends the held-out runs' ``(|residual|,
    spread)`` of the log minimum to ``residuals`` (for :func:`band_calibration`)."""

    def fit_predict(train: TrainingData, test: TrainingData) -> np.ndarray:
        parent = fit_kind(train, kind, trees, members, seed, n_jobs)
        pred = parent.predict(test.X, kind)
        ok = test.converged
        residuals.append((np.abs(test.Y[ok, -1] - pred.log_min[ok]), pred.log_min_std[ok]))
        return parent.scores(test.X, kind)

    return fit_predict


def config_ranker(seed: int, n_jobs: int) -> loto.FitPredict:
    """Leave-one-task-out ``fit_predict`` of the :class:`~sbrnn.parent.models.ConfigRanker`."""

    def fit_predict(train: TrainingData, test: TrainingData) -> np.ndarray:
        ranker = ConfigRanker(kind="xgb", seed=seed, n_jobs=n_jobs)
        ranker.fit(train.X, train.Y[:, -1], train.converged, group_keys(train.task, train.budget))
        return ranker.predict(test.X)

    return fit_predict


def hidden_proportion_ranker(trees, seed, n_jobs):
    """The one-feature baseline as a ranker: a forest on the hidden proportion alone."""

    def fit_predict(train: TrainingData, test: TrainingData) -> np.ndarray:
        model = _regressor("hidden_proportion", trees, None, seed, n_jobs)
        ok = train.converged
        model.fit(train.X[ok], train.Y[ok])
        return model.predict(test.X)[:, -1]

    return fit_predict


def fit_steps(kinds: Sequence[str], folds: int, n_tasks: int) -> int:
    """How many steps :func:`fit_and_evaluate` reports through ``on_step``."""
    return (
        folds * (len(kinds) + len(BASELINES))
        + ((len(kinds) + 1) * n_tasks if n_tasks >= 2 else 0)
        + len(kinds)
        + 1
    )


def _best(metrics: dict, kinds: Sequence[str]) -> str:
    """The kind with the lowest median leave-one-task-out regret@1 (then the highest Spearman);
    without other tasks, the best pooled k-fold R^2 of the minimum."""
    loto_metrics = metrics.get("leave_one_task_out")
    if loto_metrics:

        def key(kind: str) -> tuple:
            s = loto_metrics[kind]
            regret = s["median_regret"]["1"]
            rho = s["median_spearman"]
            return (math.inf if regret is None else regret, -(rho if rho is not None else -1.0))

        return min(kinds, key=key)

    def score(kind: str) -> float:
        r2 = metrics["cv"][kind]["pooled"]["r2_min"]
        return -math.inf if r2 is None else r2

    return max(kinds, key=score)


def _ranker_wins(metrics: dict, default: str) -> bool:
    """Whether the ranker ranked unseen tasks better than ``default``'s predicted minima, leave one
    task out: lower mean regret@1, then higher median Spearman. The mean, not the median: the top-1
    is a group's best run in about half the groups, so the median regret@1 sits near 0 for both
    orders and flips on noise (docs/parent.md, "The shipped parent")."""
    loto_metrics = metrics.get("leave_one_task_out") or {}
    if "ranker" not in loto_metrics:
        return False

    def key(name: str) -> tuple:
        s = loto_metrics[name]
        regret, rho = s["mean_regret"]["1"], s["median_spearman"]
        return (math.inf if regret is None else regret, -(rho if rho is not None else -1.0))

    return key("ranker") < key(default)


def fit_held_out(
    records: Sequence[RunRecord],
    task: str,
    kind: str = "xgb",
    *,
    trees: int | None = None,
    members: int | None = 3,
    seed: int = 0,
    ranker: bool = True,
) -> Parent:
    """A parent fitted on every record but ``task``'s (and its ranker with ``ranker``), with
    the training tasks, budgets and typical traits it needs to recommend: what a recommendation for
    an unseen task gets, for closed-loop benchmarks."""
    held = [r for r in records if r.task != task]
    if len(held) == len(records):
        raise SbrnnError(f"no record of task {task!r}; nothing is held out")
    data = training_data(held)
    parent = fit_kind(data, kind, trees, members, seed, 1)
    if ranker:
        parent.ranker = ConfigRanker(kind="xgb", seed=seed, n_jobs=1).fit(
            data.X, data.Y[:, -1], data.converged, group_keys(data.task, data.budget)
        )
    contexts = task_contexts(held)
    budgets: dict[str, set] = {}
    for r in held:
        if r.budget:
            budgets.setdefault(r.task, set()).add(float(r.budget))
    parent.tasks, parent.typical = contexts, typical_traits(contexts)
    parent.budgets = {t: tuple(sorted(b)) for t, b in budgets.items()}
    parent.name, parent.records_sha256 = f"without {task}", records_sha256(held)
    return parent


def is_random_draw(records: Sequence[RunRecord], data: TrainingData) -> np.ndarray:
    """``[N]``: whether each run of ``data`` is a random draw of a sweep (label ``random i``)."""
    labels = {r.run_id: r.label or "" for r in records}
    return np.array([labels.get(str(i), "").startswith("random") for i in data.run_id], dtype=bool)


def fit_and_evaluate(
    records: Sequence[RunRecord],
    kinds: Sequence[str],
    *,
    folds: int = 5,
    trees: int | None = None,
    members: int | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    name: str = "custom",
    on_step: Callable[[str, int], None] | None = None,
) -> tuple[Parent, dict]:
    """Evaluate ``kinds`` against the baselines (k-fold; leave-one-task-out with two or more tasks),
    then fit each kind on every record.

    ``on_step(description, total)`` is called after each step. Returns the fitted :class:`Parent`
    (its default kind the best by leave-one-task-out ranking, its band widened so one sigma holds
    about 68% of held-out runs) and the report: counts, warnings, settings, the metric tables and
    the records' SHA-256.
    """
    kinds = [check_kind(k) for k in kinds]
    data = training_data(records)
    check_fit_input(data, folds)
    total = fit_steps(kinds, folds, len(set(data.task)))

    def step(description: str) -> None:
        if on_step is not None:
            on_step(description, total)

    metrics = cross_validate(
        data,
        kinds,
        is_random_draw(records, data),
        folds=folds,
        trees=trees,
        members=members,
        seed=seed,
        n_jobs=n_jobs,
        on_step=step,
    )
    default = _best(metrics, kinds)
    use_ranker = _ranker_wins(metrics, default)
    band = (metrics.get("band") or {}).get(default) or {}
    contexts = task_contexts(records)
    budgets: dict[str, set] = {}
    for r in records:
        if r.budget:
            budgets.setdefault(r.task, set()).add(float(r.budget))
    digest = records_sha256(records)
    parent = fit_parent(
        data.X,
        data.Y,
        data.converged,
        kinds,
        n_estimators=trees,
        n_members=members,
        seed=seed,
        n_jobs=n_jobs,
        default_kind=default,
        groups=group_keys(data.task, data.budget) if use_ranker else None,
        on_fit=lambda k: step(f"{k}: final fit on all runs"),
        tasks=contexts,
        budgets={t: tuple(sorted(b)) for t, b in budgets.items()},
        typical=typical_traits(contexts),
        band_floor=float(band.get("floor", 0.0)),
        training_runs=tuple(str(r) for r in data.run_id),
        name=name,
        fitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        records_sha256=digest,
    )
    report = {
        "counts": data.counts(),
        "warnings": fit_warnings(data, folds),
        "folds": folds,
        "seed": seed,
        "models": {k: parent.regressors[k].params() for k in kinds},
        "default_model": default,
        "ranked_by": "within-task ranker" if use_ranker else f"{default} predicted minimum",
        "band_floor": parent.band_floor,
        "tasks": {t: asdict(c) for t, c in parent.tasks.items()},
        "records_sha256": digest,
        **metrics,
    }
    return parent, report


def report_rows(report: dict) -> list[dict]:
    """The k-fold metric tables as flat rows: evaluation, model, scope, n and the four metrics."""
    rows = []
    for ev in ("cv", "unseen"):
        for model, table in (report.get(ev) or {}).items():
            scopes = [("pooled", table["pooled"]), *((f"task {t}", m) for t, m in table["per_task"].items())]
            for scope, m in scopes:
                rows.append({"evaluation": ev, "model": model, "scope": scope, **m})
    return rows


def evaluate_parent(
    parent: Parent, records: Sequence[RunRecord], kind: str | None = None
) -> tuple[dict, dict]:
    """Metrics of ``parent`` on the ``records`` it did not see in training.

    Records whose run id is among the parent's training runs are left out and counted. Returns the
    report and the arrays for :func:`plot_predicted_vs_actual` and :func:`plot_curves` (loss units).
    """
    kind = parent.kind(kind)
    data = training_data(records)
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
    c = data.converged
    rate = np.full(len(data), float(parent.classifiers[kind].constant_))
    inside = np.abs(data.Y[c, -1] - pred.log_min[c]) <= pred.log_min_std[c]
    report = {
        "model": kind,
        "counts": {**data.counts(), "seen_in_training": int(seen.sum())},
        "unseen": {kind: metric_table(data.Y[c], pred.log_curve[c], data.task[c])},
        "converges": {"unseen": {kind: convergence_metrics(c, pred.p_converge, rate)}},
        "band_coverage": float(inside.mean()),
    }
    base = data.baseline[c][:, None]
    arrays = {
        "actual": data.min_loss[c],
        "predicted": data.baseline[c] * np.exp(pred.log_min[c]),
        "low": data.baseline[c] * np.exp(pred.log_min[c] - pred.log_min_std[c]),
        "high": data.baseline[c] * np.exp(pred.log_min[c] + pred.log_min_std[c]),
        "task": data.task[c],
        "curve_actual": base * np.exp(data.Y[c]),
        "curve_predicted": base * np.exp(pred.log_curve[c]),
        "curve_low": base * np.exp(pred.log_curve[c] - pred.log_curve_std[c]),
        "curve_high": base * np.exp(pred.log_curve[c] + pred.log_curve_std[c]),
    }
    return report, arrays
