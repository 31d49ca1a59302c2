"""Run records and unseen configurations -> one feature matrix; records -> curve targets.

Features (:data:`FEATURE_NAMES`, 28 columns): the paper's 20 — six block densities, six init
means, six init stds, the learning rate (as its log: the sweep's rates reach down to 1e-6 in
the tail, and trees are indifferent to the transform) and the hidden proportion — then the task
and size traits: ``log n_x``, ``log n_y``, ``T`` (steps), ``loss_cross_entropy`` (1 for cross-entropy,
0 for MSE), ``log budget``, ``log h``, the model density and ``log`` total trainable weights.
A record supplies its realised mask counts (hidden proportion, model density, total trainable);
a configuration not yet trained (:func:`spec_features`) supplies the expected counts of its
:class:`SparseBlockSpec`. Both go through :func:`_vector`, so fit and predict share one builder.

Targets (:func:`training_data`): the natural log of the per-epoch validation loss, ``[N, E]``
with ``E`` the longest curve among converged runs, plus the log of its minimum as one more
column (``[N, E + 1]``). A curve shorter than ``E`` (early stopping, or a run configured for
fewer epochs) is padded with its running minimum: the loss of the best checkpoint so far,
which is what a user keeps; a longer one is cut at ``E``. So the last column equals the
minimum of the padded curve.

Runs that did not converge — status ``diverged`` or ``failed``, or an ``ok`` run whose curve is
empty or not finite and positive — have no curve target. They are kept as the negative class
of the "converges" label (:attr:`TrainingData.converged`), never dropped silently;
:meth:`TrainingData.counts` reports them. Runs without a block grid (the LSTM baseline) or with
a missing feature or an unknown loss kind cannot be placed in feature space: they are left out
and counted by reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sbrnn.child.spec import SparseBlockSpec, grid_blocks
from sbrnn.errors import SbrnnError
from sbrnn.records import RunRecord, read_records
from sbrnn.vocabulary import BLOCKS, LOSS_KINDS, STATUSES

PAPER_FEATURES = (
    *(f"d_{b}" for b in BLOCKS),
    *(f"mu_{b}" for b in BLOCKS),
    *(f"sigma_{b}" for b in BLOCKS),
    "log_lr",
    "hidden_proportion",
)
TRAIT_FEATURES = (
    "log_n_x",
    "log_n_y",
    "steps",
    "loss_cross_entropy",
    "log_budget",
    "log_h",
    "model_density",
    "log_total_trainable",
)
FEATURE_NAMES = (*PAPER_FEATURES, *TRAIT_FEATURES)
LOG_FLOOR = 1e-12
"""Losses are floored here before the log (an exact 0 would give -inf)."""


def _vector(
    densities: dict[str, float],
    means: dict[str, float],
    stds: dict[str, float],
    lr: float,
    hidden_proportion: float,
    n_x: int,
    n_y: int,
    steps: int,
    loss_kind: str,
    budget: float,
    h: int,
    model_density: float,
    total_trainable: float,
) -> np.ndarray:
    """One feature row ``[len(FEATURE_NAMES)]`` in the order of :data:`FEATURE_NAMES`."""
    return np.array(
        [
            *(densities[b] for b in BLOCKS),
            *(means[b] for b in BLOCKS),
            *(stds[b] for b in BLOCKS),
            math.log(lr),
            hidden_proportion,
            math.log(n_x),
            math.log(n_y),
            steps,
            1.0 if loss_kind == "cross_entropy" else 0.0,
            math.log(budget),
            math.log(h),
            model_density,
            math.log(max(total_trainable, 1.0)),
        ],
        dtype=np.float64,
    )


def check_loss_kind(loss_kind: str) -> str:
    if loss_kind not in LOSS_KINDS:
        raise SbrnnError(f"loss kind {loss_kind!r} is unknown; allowed: {', '.join(LOSS_KINDS)}")
    return loss_kind


def spec_features(
    spec: SparseBlockSpec, *, steps: int, loss_kind: str, budget: float, lr: float
) -> np.ndarray:
    """Features ``[len(FEATURE_NAMES)]`` of a configuration not yet trained (expected counts)."""
    if not (isinstance(steps, int) and steps >= 1):
        raise SbrnnError(f"steps = {steps!r} is out of range; allowed: integers >= 1")
    if not (math.isfinite(lr) and lr > 0):
        raise SbrnnError(f"lr = {lr:g} is out of range; allowed: > 0")
    return _vector(
        grid_blocks(spec.densities), grid_blocks(spec.means), grid_blocks(spec.stds), lr,
        spec.hidden_proportion, spec.n_x, spec.n_y, steps, check_loss_kind(loss_kind), budget,
        spec.h, spec.model_density, spec.total_trainable,
    )


def _exclusion(record: RunRecord) -> str | None:
    """Why a record cannot be placed in feature space, or None."""
    if record.arch == "lstm":
        return "lstm (no block grid)"
    if record.loss_kind not in LOSS_KINDS:
        return "unknown loss kind"
    needed = [getattr(record, f"{p}_{b}") for p in ("d", "mu", "sigma") for b in BLOCKS]
    needed += [record.hidden_proportion, record.model_density, record.lr]
    if any(v is None or not math.isfinite(v) for v in needed) or record.h < 1 or record.n_x < 1:
        return "missing features"
    return None


def record_features(record: RunRecord) -> np.ndarray:
    """Features ``[len(FEATURE_NAMES)]`` of a trained run (realised mask counts)."""
    reason = _exclusion(record)
    if reason is not None:
        raise SbrnnError(f"record {record.run_id} has no features: {reason}")
    blocks = {p: {b: float(getattr(record, f"{p}_{b}")) for b in BLOCKS} for p in ("d", "mu", "sigma")}
    budget = record.budget if record.budget else record.trainable_total
    return _vector(
        blocks["d"], blocks["mu"], blocks["sigma"], record.lr, record.hidden_proportion,
        record.n_x, record.n_y, record.steps, record.loss_kind, max(float(budget), 1.0), record.h,
        record.model_density, float(record.trainable_total),
    )


def usable_curve(record: RunRecord) -> bool:
    """A converged run: status ``ok`` and a non-empty, finite, positive validation curve."""
    curve = record.val_loss or []
    return (
        record.status == "ok"
        and len(curve) > 0
        and all(v is not None and math.isfinite(v) and v >= 0 for v in curve)
    )


def pad_curve(curve: Sequence[float], epochs: int) -> np.ndarray:
    """Log of ``curve`` over ``epochs`` epochs, padded with the running minimum, ``[epochs]``."""
    values = np.log(np.maximum(np.asarray(curve, dtype=np.float64)[:epochs], LOG_FLOOR))
    out = np.empty(epochs)
    out[: len(values)] = values
    out[len(values):] = values.min()
    return out


@dataclass
class TrainingData:
    """Records as arrays for the parent.

    Attributes:
        X: features ``[N, F]`` of every run that has features (converged or not).
        Y: log curve targets ``[N, E + 1]`` (last column: log minimum); NaN rows where not converged.
        converged: ``[N]`` bool, the "converges" label.
        task, status, run_id: ``[N]`` object arrays.
        lengths: ``[N]`` epochs the record's curve holds.
        epochs: ``E``.
        excluded: reason -> count of records without features.
    """

    X: np.ndarray
    Y: np.ndarray
    converged: np.ndarray
    task: np.ndarray
    status: np.ndarray
    run_id: np.ndarray
    lengths: np.ndarray
    epochs: int
    excluded: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)

    def counts(self) -> dict:
        """JSON-ready counts: by status, converged, with curves cut short, excluded by reason."""
        status = Counter(self.status.tolist())
        return {
            "runs": int(len(self) + sum(self.excluded.values())),
            "with_features": int(len(self)),
            "status": {s: int(status.get(s, 0)) for s in STATUSES},
            "converged": int(self.converged.sum()),
            "not_converged": int((~self.converged).sum()),
            "curves_padded": int(((self.lengths < self.epochs) & self.converged).sum()),
            "excluded": dict(sorted(self.excluded.items())),
        }

    def subset(self, rows: np.ndarray) -> TrainingData:
        return TrainingData(
            self.X[rows], self.Y[rows], self.converged[rows], self.task[rows], self.status[rows],
            self.run_id[rows], self.lengths[rows], self.epochs, dict(self.excluded),
        )


def training_data(records: Sequence[RunRecord], epochs: int | None = None) -> TrainingData:
    """Features, curve targets and the "converges" label of ``records`` (see the module doc).

    ``epochs`` fixes ``E``; by default it is the longest converged curve.
    """
    excluded: Counter = Counter()
    kept = []
    for record in records:
        reason = _exclusion(record)
        if reason is None:
            kept.append(record)
        else:
            excluded[reason] += 1
    ok = [usable_curve(r) for r in kept]
    if epochs is None:
        epochs = max((len(r.val_loss) for r, c in zip(kept, ok) if c), default=0)
    n_features = len(FEATURE_NAMES)
    X = np.array([record_features(r) for r in kept]).reshape(len(kept), n_features)
    Y = np.full((len(kept), epochs + 1), np.nan)
    for i, (record, c) in enumerate(zip(kept, ok)):
        if c and epochs > 0:
            Y[i, :epochs] = pad_curve(record.val_loss, epochs)
            Y[i, epochs] = Y[i, :epochs].min()
    return TrainingData(
        X=X,
        Y=Y,
        converged=np.array(ok, dtype=bool),
        task=np.array([r.task for r in kept], dtype=object),
        status=np.array([r.status for r in kept], dtype=object),
        run_id=np.array([r.run_id for r in kept], dtype=object),
        lengths=np.array([len(r.val_loss or []) for r in kept], dtype=np.int64),
        epochs=int(epochs),
        excluded=dict(excluded),
    )


def task_traits(records: Sequence[RunRecord]) -> dict[str, dict]:
    """Task name -> ``{"n_x", "n_y", "steps", "loss_kind"}`` as the records give them."""
    traits: dict[str, dict] = {}
    for r in records:
        traits.setdefault(r.task, {"n_x": r.n_x, "n_y": r.n_y, "steps": r.steps, "loss_kind": r.loss_kind})
    return dict(sorted(traits.items()))


def records_sha256(records: Sequence[RunRecord]) -> str:
    """A SHA-256 of the records' content, independent of file layout and order."""
    rows = sorted((r.to_dict() for r in records), key=lambda d: (d["run_id"], d["created_at"]))
    blob = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def records_in(directory: str | Path) -> list[RunRecord]:
    """The readable records of a directory; an :class:`SbrnnError` when there are none."""
    path = Path(directory)
    if not path.is_dir():
        raise SbrnnError(f"records directory {directory} does not exist")
    records = read_records(path)
    if not records:
        raise SbrnnError(f"records directory {directory} holds no readable records (*.parquet)")
    return records
