"""The parent's estimators: rf, xgb and mlp behind one scikit-learn interface, with a spread.

:class:`CurveRegressor` maps features ``X [N, F]`` to targets ``Y [N, K]`` (the log validation
curve and its log minimum, see :mod:`sbrnn.parent.features`); ``predict(X, return_std=True)``
also returns a spread ``[N, K]`` in the same (log) units:

``rf``   one RandomForestRegressor (the paper's max depth 10); spread = the
         standard deviation of the trees' predictions.
``xgb``  a bagged ensemble of XGBoost regressors with vector leaves (one tree predicts every
         curve point; each member on a bootstrap resample of the rows, its own seed); spread = the
         members' standard deviation.
``mlp``  a deep ensemble of scikit-learn MLPRegressors on standardised inputs and targets (each
         its own initialisation and shuffling seed, all rows); spread = the members' std.

:class:`ConvergenceClassifier` is the same family as a classifier of the "converges" label; its
probability weights the ranking in :mod:`sbrnn.parent.recommend`. When every training run
converged (or none did) it is the constant observed rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sbrnn.errors import SbrnnError
from sbrnn.parent.features import FEATURE_NAMES, Configuration, TaskContext, config_features

KINDS = ("rf", "xgb", "mlp")

DEFAULTS: dict[str, dict[str, int | None]] = {
    "rf": {"n_estimators": 1000, "max_depth": 10, "n_members": 1},
    "xgb": {"n_estimators": 300, "max_depth": 4, "n_members": 5},
    "mlp": {"n_estimators": None, "max_depth": None, "n_members": 5},
}
"""Per kind: ``n_estimators`` is trees (rf) or boosting rounds (xgb); the MLP has neither."""

MLP_HIDDEN = (64, 64)
MLP_MAX_EPOCHS = 2000


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise SbrnnError(f"model {kind!r} is unknown; allowed: {', '.join(KINDS)}")
    return kind


def _resolved(kind: str, n_estimators: int | None, max_depth: int | None, n_members: int | None) -> dict:
    params: dict[str, int | None] = dict(DEFAULTS[check_kind(kind)])
    if n_estimators is not None and kind != "mlp":
        if n_estimators < 1:
            raise SbrnnError(f"trees = {n_estimators} is out of range; allowed: integers >= 1")
        params["n_estimators"] = int(n_estimators)
    if max_depth is not None and kind != "mlp":
        params["max_depth"] = int(max_depth)
    if n_members is not None and kind != "rf":
        if n_members < 1:
            raise SbrnnError(f"members = {n_members} is out of range; allowed: integers >= 1")
        params["n_members"] = int(n_members)
    return params


def _xgb_regressor(params: dict, seed: int, n_jobs: int | None):
    import xgboost

    return xgboost.XGBRegressor(
        n_estimators=params["n_estimators"],
        max_depth=params["max_depth"],
        learning_rate=0.05,
        subsample=0.9,
        colsample_bytree=0.9,
        tree_method="hist",
        multi_strategy="multi_output_tree",  # one tree for all curve points: a quarter of the size
        random_state=seed,
        n_jobs=n_jobs,
    )


def _xgb_classifier(params: dict, seed: int, n_jobs: int | None):
    import xgboost

    return xgboost.XGBClassifier(
        n_estimators=params["n_estimators"],
        max_depth=params["max_depth"],
        learning_rate=0.05,
        tree_method="hist",
        random_state=seed,
        n_jobs=n_jobs,
    )


def _mlp_regressor(params: dict, seed: int) -> TransformedTargetRegressor:
    mlp = MLPRegressor(
        hidden_layer_sizes=MLP_HIDDEN,
        alpha=1e-2,
        learning_rate_init=1e-2,
        max_iter=MLP_MAX_EPOCHS,
        n_iter_no_change=20,
        tol=1e-5,
        random_state=seed,
    )
    return TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp), transformer=StandardScaler())


class _ParentEstimator(BaseEstimator):
    """The parameters shared by the parent's regressor and its convergence classifier."""

    def __init__(
        self,
        kind: str = "rf",
        n_estimators: int | None = None,
        max_depth: int | None = None,
        n_members: int | None = None,
        seed: int = 0,
        n_jobs: int = 1,
    ):
        self.kind = kind
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.n_members = n_members
        self.seed = seed
        self.n_jobs = n_jobs

    def params(self) -> dict:
        """The resolved parameters (defaults filled in)."""
        return _resolved(self.kind, self.n_estimators, self.max_depth, self.n_members)


class CurveRegressor(RegressorMixin, _ParentEstimator):
    """Multi-output regressor of log curves with an uncertainty estimate.

    Parameters:
        kind: ``rf``, ``xgb`` or ``mlp``.
        n_estimators: trees (rf) or boosting rounds (xgb); None = default; unused by mlp.
        max_depth: tree depth (rf, xgb); None = default.
        n_members: ensemble size for xgb and mlp (rf's spread comes from its trees).
        seed: every random choice (bootstrap rows, tree and network seeds) flows from it.
        n_jobs: threads for rf and xgb (1 by default: a busy machine slows threaded boosting a
            lot; -1 uses every core). The small MLPs always run on one BLAS thread.

    Fitted attributes: ``members_`` (list of fitted estimators), ``n_outputs_``.
    """

    def fit(self, X: np.ndarray, Y: np.ndarray) -> CurveRegressor:
        """``X [N, F]``, ``Y [N, K]`` -> self."""
        X = np.asarray(X, dtype=np.float64)
        Y2 = np.asarray(Y, dtype=np.float64)
        if Y2.ndim != 2 or len(Y2) != len(X):
            raise ValueError(f"Y must be [N, K] with N = {len(X)}, got shape {Y2.shape}")
        if len(X) < 2:
            raise SbrnnError(f"a parent needs at least 2 converged runs to fit; got {len(X)}")
        params = self.params()
        rng = np.random.default_rng(self.seed)
        self.members_ = []
        if self.kind == "rf":
            rf = RandomForestRegressor(
                n_estimators=params["n_estimators"],
                max_depth=params["max_depth"],
                random_state=self.seed,
                n_jobs=self.n_jobs,
            )
            self.members_.append(rf.fit(X, Y2))
        for _ in range(params["n_members"] if self.kind != "rf" else 0):
            seed = int(rng.integers(2**31 - 1))
            if self.kind == "xgb":
                rows = rng.integers(0, len(X), len(X))
                self.members_.append(_xgb_regressor(params, seed, self.n_jobs).fit(X[rows], Y2[rows]))
            else:
                with threadpool_limits(1, user_api="blas"):
                    self.members_.append(_mlp_regressor(params, seed).fit(X, Y2))
        self.n_outputs_ = Y2.shape[1]
        return self

    def _member_predictions(self, X: np.ndarray) -> np.ndarray:
        """``[M, N, K]``: one prediction per tree (rf) or ensemble member."""
        if self.kind == "rf":
            trees = self.members_[0].estimators_
            preds = [t.predict(X) for t in trees]
        else:
            with threadpool_limits(1, user_api="blas"):
                preds = [m.predict(X) for m in self.members_]
        return np.stack([np.asarray(p, dtype=np.float64).reshape(len(X), self.n_outputs_) for p in preds])

    def predict(self, X: np.ndarray, return_std: bool = False):
        """``X [N, F]`` -> mean ``[N, K]`` (and the spread ``[N, K]`` with ``return_std``)."""
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            empty = np.zeros((0, self.n_outputs_))
            return (empty, empty.copy()) if return_std else empty
        preds = self._member_predictions(X)
        mean, std = preds.mean(axis=0), preds.std(axis=0)
        return (mean, std) if return_std else mean


class ConvergenceClassifier(ClassifierMixin, _ParentEstimator):
    """The probability that a configuration converges (status ``ok`` with a finite curve).

    Same parameters as :class:`CurveRegressor`; one estimator (no ensemble). Fitted attributes:
    ``estimator_`` (None when the label had one class) and ``constant_`` (the training rate).
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> ConvergenceClassifier:
        """``X [N, F]``, ``y [N]`` bool -> self."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=bool)
        params = _resolved(self.kind, self.n_estimators, self.max_depth, self.n_members)
        self.classes_ = np.array([False, True])
        self.constant_ = float(y.mean()) if len(y) else 1.0
        self.estimator_ = None
        if 0 < y.sum() < len(y):
            if self.kind == "rf":
                est = RandomForestClassifier(
                    n_estimators=params["n_estimators"],
                    max_depth=params["max_depth"],
                    random_state=self.seed,
                    n_jobs=self.n_jobs,
                )
            elif self.kind == "xgb":
                est = _xgb_classifier(params, self.seed, self.n_jobs)
            else:
                est = make_pipeline(
                    StandardScaler(),
                    MLPClassifier(
                        hidden_layer_sizes=MLP_HIDDEN,
                        alpha=1e-2,
                        learning_rate_init=1e-2,
                        max_iter=MLP_MAX_EPOCHS,
                        n_iter_no_change=20,
                        tol=1e-5,
                        random_state=self.seed,
                    ),
                )
            with threadpool_limits(1, user_api="blas"):
                self.estimator_ = est.fit(X, y.astype(np.int64))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``X [N, F]`` -> ``[N, 2]``: probabilities of not converging and converging."""
        X = np.asarray(X, dtype=np.float64)
        if self.estimator_ is None:
            p = np.full(len(X), self.constant_)
        else:
            with threadpool_limits(1, user_api="blas"):
                p = np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)[:, 1]
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X)[:, 1] >= 0.5


RANKER_ROUNDS = 100
"""Boosting rounds of the :class:`ConfigRanker`; each round grows :data:`RANKER_PARALLEL_TREES` trees."""
RANKER_DEPTH = 5
RANKER_PARALLEL_TREES = 10
"""Trees per boosting round, each on its own row and column subsample, averaged: a bagged forest
per round, so the order of near-tied candidates depends less on the seed of the subsamples."""
RANKER_LEARNING_RATE = 0.15


def standardised_targets(y: np.ndarray, converged: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Within each group (a task at a budget), each converged run's relative log minimum ``y`` as a
    z-score over the group's converged runs; NaN where the run did not converge, or where its group
    has fewer than 3 converged runs or no spread."""
    z = np.full(len(y), np.nan)
    for key in np.unique(groups):
        rows = np.flatnonzero((groups == key) & converged)
        spread = y[rows].std() if len(rows) >= 3 else 0.0
        if spread > 0:
            z[rows] = (y[rows] - y[rows].mean()) / spread
    return z


class ConfigRanker(_ParentEstimator):
    """Orders the configurations of one task: an XGBoost regression of each run's log minimum
    standardised within its group (one task at one budget, :func:`standardised_targets`), so it
    learns how configurations compare inside a task, every task weighing alike whatever its loss
    level, rather than the loss level of a task (zero-shot AutoML's within-task normalisation).
    ``predict`` gives a score where lower is better.

    Chosen over XGBoost's pairwise ranking objective (``rank:pairwise`` on within-group ranks) by
    leave-one-task-out on ``data/zoo-v1`` (``python benchmarks/meta_loto.py``, 2,444 runs, rows
    ``ranker`` and ``pairwise_ranker``): median regret@1 0.005 against 0.034, top-1 percentile
    0.91 against 0.87, Spearman 0.56 against 0.51 (docs/parent.md). Runs that did not converge are
    left out of its targets; the parent's convergence classifier speaks for them.

    Its trees: :data:`RANKER_ROUNDS` rounds (``n_estimators``) of :data:`RANKER_PARALLEL_TREES`
    trees (``parallel_trees``) of depth :data:`RANKER_DEPTH` (``max_depth``), learning rate
    :data:`RANKER_LEARNING_RATE` (``learning_rate``); a parameter left None takes the constant.
    Until 2026-12-01 it grew 300 single trees of depth 4, and which near-tied configuration came
    first depended on the subsample seed: fitted without each zoo task in turn and asked to pick
    among every run trained at the task's middle budget (``python benchmarks/ranker_seeds.py``),
    subsample seeds 0, 1 and 2 put the top-1 ahead of TPE's best of 10 trials on 19, 22 and 22 of
    29 tasks (mean regret 0.114, 0.104, 0.062); the forest per round on 24, 23 and 24 (0.059,
    0.064, 0.049; docs/parent.md). That comparison chose it; on twelve tasks held out of the zoo
    (``--train data/zoo-v1 --records data/zoo-test``) the two tie: 6, 6, 7 against 7, 7, 6 of 12.
    """

    def __init__(
        self,
        kind: str = "xgb",
        n_estimators: int | None = None,
        max_depth: int | None = None,
        n_members: int | None = None,
        seed: int = 0,
        n_jobs: int = 1,
        parallel_trees: int | None = None,
        learning_rate: float | None = None,
    ):
        super().__init__(kind, n_estimators, max_depth, n_members, seed, n_jobs)
        self.parallel_trees = parallel_trees
        self.learning_rate = learning_rate

    def fit(self, X: np.ndarray, y: np.ndarray, converged: np.ndarray, groups: np.ndarray) -> ConfigRanker:
        """``X [N, F]``, ``y [N]`` relative log minima (NaN where not converged), ``converged [N]``,
        ``groups [N]`` group keys."""
        import xgboost

        y, converged = np.asarray(y, dtype=np.float64), np.asarray(converged, bool)
        z = standardised_targets(y, converged, np.asarray(groups))
        keep = np.isfinite(z)
        if not keep.any():  # no group to learn an order from (a tiny sweep): every score equal, so
            keep, z = np.ones(len(z), bool), np.zeros(len(z))  # it never beats the predicted minima
        self.estimator_ = xgboost.XGBRegressor(
            n_estimators=self.n_estimators or RANKER_ROUNDS,
            num_parallel_tree=self.parallel_trees or RANKER_PARALLEL_TREES,
            max_depth=self.max_depth or RANKER_DEPTH,
            learning_rate=self.learning_rate or RANKER_LEARNING_RATE,
            subsample=0.8,
            colsample_bytree=0.8,
            tree_method="hist",
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        self.estimator_.fit(np.asarray(X, dtype=np.float64)[keep], z[keep])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X [N, F]`` -> ``[N]`` scores, lower = better (the predicted within-task z-score)."""
        return np.asarray(self.estimator_.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)


@dataclass(frozen=True)
class Prediction:
    """A parent's prediction for ``N`` configurations, in relative log units (see
    :mod:`sbrnn.parent.features`: ``log(best-so-far loss / baseline loss)``).

    Attributes:
        log_curve, log_curve_std: ``[N, CURVE_POINTS]`` predicted relative log best-so-far loss at
            the curve's fractions of the planned epochs, and its one-sigma band (calibrated).
        p_converge: ``[N]`` probability that the run converges.
    """

    log_curve: np.ndarray
    log_curve_std: np.ndarray
    p_converge: np.ndarray

    @property
    def log_min(self) -> np.ndarray:
        """``[N]`` the predicted relative log minimum (the curve's last point)."""
        return self.log_curve[:, -1]

    @property
    def log_min_std(self) -> np.ndarray:
        return self.log_curve_std[:, -1]


@dataclass(frozen=True)
class ConfigPrediction:
    """One configuration's prediction in loss units on a task whose constant-predictor loss is
    ``baseline``: the best-so-far curve at the fractions ``1/8 .. 8/8`` of the planned epochs with
    its one-sigma band, the minimum with its band, and the probability that it converges."""

    curve: tuple[float, ...]
    curve_low: tuple[float, ...]
    curve_high: tuple[float, ...]
    min_val_loss: float
    min_low: float
    min_high: float
    relative_min: float
    p_converge: float
    baseline: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Parent:
    """Fitted parent models of one or more kinds over :data:`FEATURE_NAMES`.

    Attributes:
        regressors, classifiers: kind -> fitted :class:`CurveRegressor` (relative log curves,
            ``CURVE_POINTS`` outputs) / :class:`ConvergenceClassifier`.
        default_kind: the kind used when none is named (the best by leave-one-task-out ranking).
        tasks: task name -> :class:`TaskContext` of the training tasks; budgets: the budgets each was
            recorded at.
        typical: per loss kind, the median traits of the training tasks (for dims-only queries).
        band_floor: added in quadrature to the models' spread (relative log units) so that the
            one-sigma band holds about 68% of held-out runs of unseen tasks (calibrated leave one
            task out; 0 when not calibrated).
        training_runs: run ids of the training records; name, fitted_at, records_sha256: provenance.
        ranker: when set, recommendations are ordered by this ranker (chosen where it ranked
            unseen tasks better than the regressors' predicted minima, leave one task out).
    """

    regressors: dict[str, CurveRegressor]
    classifiers: dict[str, ConvergenceClassifier]
    default_kind: str
    tasks: dict[str, TaskContext] = field(default_factory=dict)
    budgets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    typical: dict[str, dict[str, float]] = field(default_factory=dict)
    band_floor: float = 0.0
    training_runs: tuple[str, ...] = ()
    name: str = "custom"
    fitted_at: str = ""
    records_sha256: str = ""
    feature_names: tuple[str, ...] = FEATURE_NAMES
    ranker: ConfigRanker | None = None

    def kind(self, kind: str | None = None) -> str:
        """``kind``, or the default; an :class:`SbrnnError` if this parent has no such model."""
        kind = self.default_kind if kind is None else kind
        if kind not in self.regressors:
            raise SbrnnError(f"this parent has no {kind!r} model; it has: {', '.join(self.regressors)}")
        return kind

    def predict(self, X: np.ndarray, kind: str | None = None) -> Prediction:
        """Features ``[N, F]`` -> :class:`Prediction` (relative log units)."""
        kind = self.kind(kind)
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(self.feature_names))
        mean, std = self.regressors[kind].predict(X, return_std=True)
        p = self.classifiers[kind].predict_proba(X)[:, 1]
        return Prediction(mean, np.sqrt(std**2 + self.band_floor**2), p)

    def scores(self, X: np.ndarray, kind: str | None = None) -> np.ndarray:
        """``[N]`` ranking scores of configurations of one task (lower = better): the
        :attr:`ranker`'s where the parent has one, else the expected relative minimum when a run that
        does not converge counts as the worst of them, ``p * min + (1 - p) * worst``."""
        if self.ranker is not None:
            return self.ranker.predict(X)
        pred = self.predict(X, kind)
        minimum = np.exp(pred.log_min)
        return pred.p_converge * minimum + (1.0 - pred.p_converge) * minimum.max()

    def context(self, task: TaskContext) -> TaskContext:
        """``task`` with the traits it lacks filled from :attr:`typical` (see
        :meth:`TaskContext.with_traits`)."""
        return task.with_traits(self.typical)

    def predict_configs(
        self, configs: Sequence[Configuration], task: TaskContext, kind: str | None = None
    ) -> list[ConfigPrediction]:
        """Predictions in loss units for ``configs`` on ``task`` (its traits filled where missing)."""
        return self.rank_configs(configs, task, kind)[0]

    def rank_configs(
        self, configs: Sequence[Configuration], task: TaskContext, kind: str | None = None
    ) -> tuple[list[ConfigPrediction], np.ndarray]:
        """:meth:`predict_configs` and the :meth:`scores` of ``configs`` (``[N]``, lower = better)."""
        task = self.context(task)
        if not configs:
            return [], np.zeros(0)
        X = np.stack([config_features(c, task) for c in configs])
        pred = self.predict(X, kind)
        base = task.baseline_loss
        out = []
        for i in range(len(configs)):
            mean, std = pred.log_curve[i], pred.log_curve_std[i]
            out.append(
                ConfigPrediction(
                    curve=tuple(float(v) for v in base * np.exp(mean)),
                    curve_low=tuple(float(v) for v in base * np.exp(mean - std)),
                    curve_high=tuple(float(v) for v in base * np.exp(mean + std)),
                    min_val_loss=float(base * np.exp(mean[-1])),
                    min_low=float(base * np.exp(mean[-1] - std[-1])),
                    min_high=float(base * np.exp(mean[-1] + std[-1])),
                    relative_min=float(np.exp(mean[-1])),
                    p_converge=float(pred.p_converge[i]),
                    baseline=float(base),
                )
            )
        return out, self.scores(X, kind)


def group_keys(task: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """The ranking groups: one per task and budget."""
    return np.array([f"{t}|{b:g}" for t, b in zip(task, budget)])


def fit_parent(
    X: np.ndarray,
    Y: np.ndarray,
    converged: np.ndarray,
    kinds: Sequence[str],
    *,
    n_estimators: int | None = None,
    n_members: int | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    default_kind: str | None = None,
    groups: np.ndarray | None = None,
    on_fit: Callable[[str], None] | None = None,
    **provenance,
) -> Parent:
    """Fit one regressor (on converged rows) and one classifier (on all rows) per kind, and with
    ``groups`` (``[N]`` keys of :func:`group_keys`) the :class:`ConfigRanker`.

    ``X [N, F]``, ``Y [N, CURVE_POINTS]`` (NaN rows where not converged), ``converged [N]`` bool;
    ``provenance`` fills the :class:`Parent`'s other fields (tasks, typical, band_floor, ...).
    ``on_fit(kind)`` is called after each model is fitted (for progress bars).
    """
    regressors, classifiers = {}, {}
    for kind in kinds:
        regressors[kind] = CurveRegressor(
            kind, n_estimators=n_estimators, n_members=n_members, seed=seed, n_jobs=n_jobs
        ).fit(X[converged], Y[converged])
        classifiers[kind] = ConvergenceClassifier(
            kind, n_estimators=n_estimators, n_members=n_members, seed=seed, n_jobs=n_jobs
        ).fit(X, converged)
        if on_fit is not None:
            on_fit(kind)
    ranker = None
    if groups is not None:
        ranker = ConfigRanker(kind="xgb", seed=seed, n_jobs=n_jobs).fit(X, Y[:, -1], converged, groups)
        if on_fit is not None:
            on_fit("ranker")
    return Parent(regressors, classifiers, default_kind or kinds[0], ranker=ranker, **provenance)
