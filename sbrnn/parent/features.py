"""Run records and untrained configurations -> one feature matrix; records -> relative curve targets.

Features (:data:`FEATURE_NAMES`, one builder :func:`_vector` for records and configurations alike):

- the architecture, one-hot (``arch_sbrnn``, ``arch_dense``, ``arch_uniform``, ``arch_lstm``): the
  parent predicts every architecture a sweep compares, the baselines included;
- the paper's 20: six block densities, six init means, six init stds, ``log lr`` and the hidden
  proportion (an LSTM has no block grid: its densities read 1, means and stds 0, and its hidden
  proportion is the share of its gate weights that read the recurrent output, ``p / (n_x + p)``);
- size traits: ``log n_x``, ``log n_y``, ``log T``, the loss kind, ``log budget``, ``log h``, the
  model density, ``log`` total trainable weights, and ``log`` of the budget over the task's
  reference budget (its dense y row, :func:`sbrnn.child.weight_space.reference_budget`);
- task traits (:data:`sbrnn.records.TRAITS`): ``log n_train``, input std, share of zero inputs,
  input and target autocorrelation over steps, class entropy and ``log`` baseline loss (0 where
  a trait does not apply to the loss kind). A query that knows only dims gets the median traits
  of the training tasks of its loss kind (:meth:`TaskContext.with_traits`).

Targets (:func:`training_data`): the *relative* best-so-far validation loss, ``log(best / baseline)``,
at :data:`CURVE_POINTS` evenly spaced fractions of the run's planned epochs (the last point is the
log of the minimum); ``baseline`` is the loss of the best constant predictor on the task's
validation split (the trait ``baseline_loss``; for a task without traits ``log n_y`` nats for
cross-entropy and 1 for MSE on standardised targets). A relative loss is comparable across tasks:
0 means no better than a constant, -1 a loss ``e`` times smaller. A run stopped early by patience
holds its best loss to the end (the plateau it reached); the same fractions place runs of any
length on one axis.

Runs without a curve target: ``diverged`` and ``failed`` runs (and ``ok`` runs whose curve is not
finite and positive) are the negative class of the "converges" label (:attr:`TrainingData.converged`);
``pruned`` runs (stopped by a tuner after a few epochs) are *censored*: their minimum is only an
upper bound, so they train neither target and are counted apart, never padded as if they had
converged. Runs with a missing feature or an unknown loss kind are left out and counted by reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sbrnn.child.weight_space import SparseBlockSpec, grid_blocks, lstm_weights, reference_budget
from sbrnn.errors import SbrnnError
from sbrnn.records import TRAITS, RunRecord, read_records
from sbrnn.vocabulary import ARCHS, BLOCKS, LOSS_KINDS, STATUSES

CURVE_POINTS = 8
"""Points of a predicted curve: the best-so-far loss after 1/8, 2/8, ..., 8/8 of the planned epochs."""

ARCH_FEATURES = tuple(f"arch_{a}" for a in ARCHS)
PAPER_FEATURES = (
    *(f"d_{b}" for b in BLOCKS),
    *(f"mu_{b}" for b in BLOCKS),
    *(f"sigma_{b}" for b in BLOCKS),
    "log_lr",
    "hidden_proportion",
)
SIZE_FEATURES = (
    "log_n_x",
    "log_n_y",
    "log_steps",
    "loss_cross_entropy",
    "log_budget",
    "log_h",
    "model_density",
    "log_total_trainable",
    "log_budget_over_reference",
)
TRAIT_FEATURES = (
    "log_n_train",
    "input_std",
    "input_zero_frac",
    "input_autocorr",
    "target_autocorr",
    "class_entropy",
    "log_baseline_loss",
)
FEATURE_NAMES = (*ARCH_FEATURES, *PAPER_FEATURES, *SIZE_FEATURES, *TRAIT_FEATURES)
TASK_FEATURES = (*SIZE_FEATURES[:4], *TRAIT_FEATURES)
"""The features that describe the task rather than the configuration (for extrapolation checks)."""
LOG_FLOOR = 1e-12
"""Losses are floored here before the log (an exact 0 would give -inf)."""


def check_loss_kind(loss_kind: str) -> str:
    if loss_kind not in LOSS_KINDS:
        raise SbrnnError(f"loss kind {loss_kind!r} is unknown; allowed: {', '.join(LOSS_KINDS)}")
    return loss_kind


def default_baseline(n_y: int, loss_kind: str) -> float:
    """The constant predictor's loss where a task's traits are unknown: ``log n_y`` nats (uniform
    classes) for cross-entropy, 1 for MSE (targets standardised on the training split)."""
    return math.log(max(n_y, 2)) if loss_kind == "cross_entropy" else 1.0


@dataclass(frozen=True)
class TaskContext:
    """What a parent knows of a task: dims, sequence length, loss kind and (when known) its traits.

    ``traits`` maps names of :data:`sbrnn.records.TRAITS` to values (None where one does not apply).
    """

    n_x: int
    n_y: int
    steps: int
    loss_kind: str
    traits: Mapping[str, float | None] | None = None

    def __post_init__(self) -> None:
        for name in ("n_x", "n_y", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SbrnnError(f"{name} = {value!r} is out of range; allowed: integers >= 1")
        check_loss_kind(self.loss_kind)

    @property
    def baseline_loss(self) -> float:
        """The constant predictor's validation loss (the trait, else :func:`default_baseline`)."""
        value = (self.traits or {}).get("baseline_loss")
        return float(value) if value else default_baseline(self.n_y, self.loss_kind)

    def with_traits(self, typical: Mapping[str, Mapping[str, float]]) -> TaskContext:
        """This context with missing traits filled from ``typical[loss_kind]`` (what a parent stores:
        the median traits of its training tasks of each loss kind); the baseline loss is the default
        of the dims, not a median of other tasks."""
        filled = dict(typical.get(self.loss_kind, {}))
        filled.pop("baseline_loss", None)
        filled.update({k: v for k, v in (self.traits or {}).items() if v is not None})
        return replace(self, traits=filled)

    @classmethod
    def of_task(cls, task) -> TaskContext:
        """The context of a built :class:`sbrnn.datasets.task.Task` (its dims, loss and traits)."""
        return cls(task.n_x, task.n_y, task.steps, task.loss, dict(task.traits) or None)

    @classmethod
    def of_record(cls, record: RunRecord) -> TaskContext:
        traits = {name: getattr(record, f"trait_{name}") for name in TRAITS}
        return cls(
            record.n_x,
            record.n_y,
            record.steps,
            record.loss_kind,
            traits if any(v is not None for v in traits.values()) else None,
        )


@dataclass(frozen=True)
class Configuration:
    """A child configuration a parent can score: the architecture, its weight space (``h`` set) and
    learning rate, at a budget. ``spec`` is None for the LSTM, whose size is ``hidden``."""

    arch: str
    budget: float
    lr: float
    spec: SparseBlockSpec | None = None
    hidden: int | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SbrnnError(f"arch {self.arch!r} is unknown; allowed: {', '.join(ARCHS)}")
        if (self.spec is None) != (self.arch == "lstm"):
            raise SbrnnError("a block architecture needs its weight space; the LSTM needs its hidden size")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SbrnnError(f"lr = {self.lr:g} is out of range; allowed: > 0")

    @property
    def h(self) -> int:
        if self.spec is not None:
            return self.spec.h
        assert self.hidden is not None  # __post_init__: the LSTM has its hidden size
        return int(self.hidden)


def _trait(traits: Mapping[str, float | None], name: str) -> float:
    value = traits.get(name)
    return 0.0 if value is None or not math.isfinite(value) else float(value)


def _vector(
    arch: str,
    densities: Mapping[str, float],
    means: Mapping[str, float],
    stds: Mapping[str, float],
    lr: float,
    hidden_proportion: float,
    task: TaskContext,
    budget: float,
    h: int,
    model_density: float,
    total_trainable: float,
) -> np.ndarray:
    """One feature row ``[len(FEATURE_NAMES)]`` in the order of :data:`FEATURE_NAMES`."""
    traits = task.traits or {}
    return np.array(
        [
            *(1.0 if arch == a else 0.0 for a in ARCHS),
            *(densities[b] for b in BLOCKS),
            *(means[b] for b in BLOCKS),
            *(stds[b] for b in BLOCKS),
            math.log(lr),
            hidden_proportion,
            math.log(task.n_x),
            math.log(task.n_y),
            math.log(task.steps),
            1.0 if task.loss_kind == "cross_entropy" else 0.0,
            math.log(budget),
            math.log(max(h, 1)),
            model_density,
            math.log(max(total_trainable, 1.0)),
            math.log(budget / reference_budget(task.n_x, task.n_y, min_budget=1)),
            math.log(max(_trait(traits, "n_train"), 1.0)),
            _trait(traits, "input_std"),
            _trait(traits, "input_zero_frac"),
            _trait(traits, "input_autocorr"),
            _trait(traits, "target_autocorr"),
            _trait(traits, "class_entropy"),
            math.log(task.baseline_loss),
        ],
        dtype=np.float64,
    )


_LSTM_GRID = {b: 1.0 for b in BLOCKS}, {b: 0.0 for b in BLOCKS}


def config_features(config: Configuration, task: TaskContext) -> np.ndarray:
    """Features of a configuration not yet trained (expected mask counts)."""
    if config.spec is None:
        total = lstm_weights(task.n_x, task.n_y, config.h)
        return _vector(
            "lstm",
            _LSTM_GRID[0],
            _LSTM_GRID[1],
            _LSTM_GRID[1],
            config.lr,
            task.n_y / (task.n_x + task.n_y),
            task,
            config.budget,
            config.h,
            1.0,
            total,
        )
    spec = config.spec
    return _vector(
        config.arch,
        grid_blocks(spec.densities),
        grid_blocks(spec.means),
        grid_blocks(spec.stds),
        config.lr,
        spec.hidden_proportion,
        task,
        config.budget,
        spec.h,
        spec.model_density,
        spec.total_trainable,
    )


def _exclusion(record: RunRecord) -> str | None:
    """Why a record cannot be placed in feature space, or None."""
    if record.loss_kind not in LOSS_KINDS:
        return "unknown loss kind"
    if record.arch not in ARCHS:
        return "unknown arch"
    if record.h < 1 or record.n_x < 1 or record.n_y < 1 or record.steps < 1 or not record.lr > 0:
        return "missing features"
    if record.arch != "lstm":
        needed = [getattr(record, f"{p}_{b}") for p in ("d", "mu", "sigma") for b in BLOCKS]
        needed += [record.hidden_proportion, record.model_density]
        if any(v is None or not math.isfinite(v) for v in needed):
            return "missing features"
    return None


def record_features(record: RunRecord) -> np.ndarray:
    """Features of a trained run (realised mask counts)."""
    reason = _exclusion(record)
    if reason is not None:
        raise SbrnnError(f"record {record.run_id} has no features: {reason}")
    task = TaskContext.of_record(record)
    budget = max(float(record.budget or record.trainable_total), 1.0)
    if record.arch == "lstm":
        return _vector(
            "lstm",
            _LSTM_GRID[0],
            _LSTM_GRID[1],
            _LSTM_GRID[1],
            record.lr,
            record.n_y / (record.n_x + record.n_y),
            task,
            budget,
            record.h,
            1.0,
            float(record.trainable_total),
        )
    blocks = {p: {b: float(getattr(record, f"{p}_{b}")) for b in BLOCKS} for p in ("d", "mu", "sigma")}
    return _vector(
        record.arch,
        blocks["d"],
        blocks["mu"],
        blocks["sigma"],
        record.lr,
        float(record.hidden_proportion or 0.0),  # present: _exclusion checked it
        task,
        budget,
        record.h,
        float(record.model_density or 0.0),
        float(record.trainable_total),
    )


def usable_curve(record: RunRecord) -> bool:
    """A converged run: status ``ok`` and a non-empty, finite, positive validation curve."""
    curve = record.val_loss or []
    return (
        record.status == "ok"
        and len(curve) > 0
        and all(v is not None and math.isfinite(v) and v > 0 for v in curve)
    )


def relative_curve(
    curve: Sequence[float], planned_epochs: int, baseline: float, points: int = CURVE_POINTS
) -> np.ndarray:
    """``log(best-so-far / baseline)`` after ``1/points .. points/points`` of ``planned_epochs``
    (``[points]``); a curve that stopped early holds its best to the end."""
    values = np.minimum.accumulate(np.maximum(np.asarray(curve, dtype=np.float64), LOG_FLOOR))
    ends = np.ceil(np.arange(1, points + 1) * planned_epochs / points).astype(int)
    picked = values[np.minimum(ends, len(values)) - 1]
    return np.log(picked / baseline)


@dataclass
class TrainingData:
    """Records as arrays for the parent.

    Attributes:
        X: features ``[N, F]`` of every uncensored run with features (converged or not).
        Y: relative log curve targets ``[N, CURVE_POINTS]`` (last column: the log relative
            minimum); NaN rows where not converged.
        converged: ``[N]`` bool, the "converges" label.
        task, budget, status, run_id, arch, label: ``[N]`` arrays.
        min_loss: ``[N]`` the minimum validation loss (NaN where not converged).
        baseline: ``[N]`` the baseline loss the targets are relative to.
        excluded: reason -> count of records left out (missing features, censored by pruning).
    """

    X: np.ndarray
    Y: np.ndarray
    converged: np.ndarray
    task: np.ndarray
    budget: np.ndarray
    status: np.ndarray
    run_id: np.ndarray
    arch: np.ndarray
    min_loss: np.ndarray
    baseline: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)

    def counts(self) -> dict:
        """JSON-ready counts: by status, converged, left out by reason."""
        status = Counter(self.status.tolist())
        return {
            "runs": int(len(self) + sum(self.excluded.values())),
            "with_features": int(len(self)),
            "tasks": int(len(set(self.task.tolist()))),
            "status": {s: int(status.get(s, 0)) for s in STATUSES},
            "converged": int(self.converged.sum()),
            "not_converged": int((~self.converged).sum()),
            "excluded": dict(sorted(self.excluded.items())),
        }

    def subset(self, rows: np.ndarray) -> TrainingData:
        return TrainingData(
            self.X[rows],
            self.Y[rows],
            self.converged[rows],
            self.task[rows],
            self.budget[rows],
            self.status[rows],
            self.run_id[rows],
            self.arch[rows],
            self.min_loss[rows],
            self.baseline[rows],
            dict(self.excluded),
        )


def training_data(records: Sequence[RunRecord]) -> TrainingData:
    """Features, relative curve targets and the "converges" label of ``records`` (module doc)."""
    excluded: Counter = Counter()
    kept = []
    for record in records:
        reason = "pruned (censored curve)" if record.status == "pruned" else _exclusion(record)
        if reason is None:
            kept.append(record)
        else:
            excluded[reason] += 1
    ok = np.array([usable_curve(r) for r in kept], dtype=bool)
    X = np.array([record_features(r) for r in kept]).reshape(len(kept), len(FEATURE_NAMES))
    baseline = np.array([TaskContext.of_record(r).baseline_loss for r in kept], dtype=np.float64)
    Y = np.full((len(kept), CURVE_POINTS), np.nan)
    min_loss = np.full(len(kept), np.nan)
    for i, record in enumerate(kept):
        if ok[i]:
            Y[i] = relative_curve(record.val_loss, max(record.epochs, len(record.val_loss)), baseline[i])
            min_loss[i] = min(record.val_loss)
    return TrainingData(
        X=X,
        Y=Y,
        converged=ok,
        task=np.array([r.task for r in kept], dtype=object),
        budget=np.array([float(r.budget or 0.0) for r in kept], dtype=np.float64),
        status=np.array([r.status for r in kept], dtype=object),
        run_id=np.array([r.run_id for r in kept], dtype=object),
        arch=np.array([r.arch for r in kept], dtype=object),
        min_loss=min_loss,
        baseline=baseline,
        excluded=dict(excluded),
    )


def task_contexts(records: Sequence[RunRecord]) -> dict[str, TaskContext]:
    """Task name -> its :class:`TaskContext` as the records give it (the first record of each)."""
    out: dict[str, TaskContext] = {}
    for r in records:
        if r.task not in out and r.loss_kind in LOSS_KINDS and min(r.n_x, r.n_y, r.steps) >= 1:
            out[r.task] = TaskContext.of_record(r)
    return dict(sorted(out.items()))


def typical_traits(tasks: Mapping[str, TaskContext]) -> dict[str, dict[str, float]]:
    """Per loss kind, the median of each trait over ``tasks`` (what a dims-only query is given)."""
    out: dict[str, dict[str, float]] = {}
    for kind in LOSS_KINDS:
        known = [dict(t.traits) for t in tasks.values() if t.loss_kind == kind and t.traits]
        out[kind] = {}
        for name in TRAITS:
            values = [float(v) for traits in known if (v := traits.get(name)) is not None]
            if values:
                out[kind][name] = float(np.median(values))
    return out


def records_sha256(records: Sequence[RunRecord]) -> str:
    """A SHA-256 of the records' content, independent of file layout and order."""
    rows = sorted((r.to_dict() for r in records), key=lambda d: (d["run_id"], d["created_at"]))
    blob = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def records_in(*directories: str | Path) -> list[RunRecord]:
    """The readable records of one or more directories, in the order given; an
    :class:`SbrnnError` when one holds none or when a run id is in two of them."""
    records: list[RunRecord] = []
    seen: dict[str, Path] = {}
    for directory in directories:
        path = Path(directory)
        if not path.is_dir():
            raise SbrnnError(f"records directory {directory} does not exist")
        found = read_records(path)
        if not found:
            raise SbrnnError(f"records directory {directory} holds no readable records (*.parquet)")
        for record in found:
            if record.run_id in seen:
                raise SbrnnError(
                    f"run {record.run_id!r} is in both {seen[record.run_id]} and {path}; allowed: "
                    "directories that share no run"
                )
        seen.update((record.run_id, path) for record in found)
        records.extend(found)
    return records
