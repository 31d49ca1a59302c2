"""Task traits: cheap, deterministic descriptors of a task's data, for comparing losses across tasks.

All but ``baseline_loss`` are computed from the training split; ``baseline_loss`` scores the best
constant predictor fitted on the training split against the validation split. A split of more than
:data:`MAX_SEQUENCES` sequences is subsampled at evenly spaced indices (no random draw), so a trait
costs well under a second even for ``rad`` (6,000 x 11 x 2,500 float16). Sums run in float64.

- ``n_train``: training sequences (all of them, not the subsample), as a float.
- ``input_std``: mean over input features of the feature's standard deviation (``ddof=0``) over
  every training step.
- ``input_zero_frac``: share of training input entries that are exactly 0.
- ``input_autocorr``: mean over input features of the lag-1 autocorrelation across steps
  ``sum (x_t - m)(x_{t+1} - m) / (P var)`` (``P`` pairs of neighbouring steps within a sequence;
  ``m``, ``var`` over every step); 0 for a constant feature or one-step sequences.
- ``target_std``, ``target_autocorr``: the same two of the targets (``mse``); None for
  ``cross_entropy``.
- ``class_entropy``: entropy of the training label distribution over ``log(n_y)``, in [0, 1]
  (``cross_entropy``); None for ``mse``.
- ``baseline_loss``: ``cross_entropy``: the validation cross-entropy (nats) of predicting the
  training class prior, add-one smoothed so a class absent from training costs a finite loss;
  ``mse``: the validation mean squared error of predicting each output's training mean at every step.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch

from sbrnn.datasets.task import Task

TRAIT_NAMES = (
    "n_train",
    "input_std",
    "input_zero_frac",
    "input_autocorr",
    "target_std",
    "target_autocorr",
    "class_entropy",
    "baseline_loss",
)
VERSION = 1
"""Bumped whenever a trait's definition changes, so cached traits are recomputed."""
MAX_SEQUENCES = 2_000
CHUNK = 128
"""Sequences summed at once (bounds the float64 copy: 128 x 11 x 2,500 doubles = 28 MB)."""


def subsample(t: torch.Tensor, limit: int = MAX_SEQUENCES) -> torch.Tensor:
    """``t`` itself when it has at most ``limit`` rows, else ``limit`` evenly spaced rows."""
    if t.shape[0] <= limit:
        return t
    return t[torch.linspace(0, t.shape[0] - 1, limit, dtype=torch.float64).round().long()]


class Moments(TypedDict):
    """What :func:`feature_moments` returns."""

    mean: torch.Tensor
    std: torch.Tensor
    autocorr: torch.Tensor
    zero_frac: float


def feature_moments(x: torch.Tensor) -> Moments:
    """Per-feature statistics of ``x`` ``[N, T, D]`` over every step of every sequence.

    Returns ``mean`` and ``std`` ``[D]`` (float64, ``ddof=0``), ``autocorr`` ``[D]`` (lag-1 across
    steps, 0 where undefined) and ``zero_frac`` (share of entries exactly 0, a float).
    """
    n, steps, d = x.shape
    total, square, cross, head, tail = (torch.zeros(d, dtype=torch.float64) for _ in range(5))
    zeros = 0
    for i in range(0, n, CHUNK):
        part = x[i : i + CHUNK]
        zeros += int((part == 0).sum())
        part = part.to(torch.float64)
        total += part.sum((0, 1))
        square += part.square().sum((0, 1))
        cross += (part[:, :-1] * part[:, 1:]).sum((0, 1))
        head += part[:, :-1].sum((0, 1))
        tail += part[:, 1:].sum((0, 1))
    count, pairs = n * steps, n * (steps - 1)
    mean = total / count
    var = (square / count - mean.square()).clamp_min(0.0)
    defined = var > 1e-12 * (1.0 + mean.square())
    if pairs > 0:
        covariance = (cross - mean * (head + tail)) / pairs + mean.square()
        autocorr = torch.where(defined, covariance / var.where(defined, torch.ones_like(var)), 0.0)
    else:
        autocorr = torch.zeros(d, dtype=torch.float64)
    return {
        "mean": mean,
        "std": var.sqrt(),
        "autocorr": autocorr.clamp(-1.0, 1.0),
        "zero_frac": zeros / max(x.numel(), 1),
    }


def _mse_to(y: torch.Tensor, mean: torch.Tensor) -> float:
    """Mean over every scalar of ``(y - mean)^2``; ``y`` ``[N, T, D]``, ``mean`` ``[D]``."""
    total = 0.0
    for i in range(0, y.shape[0], CHUNK):
        total += float((y[i : i + CHUNK].to(torch.float64) - mean).square().sum())
    return total / max(y.numel(), 1)


def task_traits(task: Task) -> dict[str, float | None]:
    """The :data:`TRAIT_NAMES` of ``task`` (see the module doc), each a float or None."""
    inputs = feature_moments(subsample(task.train.x))
    out: dict[str, float | None] = {
        "n_train": float(len(task.train)),
        "input_std": float(inputs["std"].mean()),
        "input_zero_frac": float(inputs["zero_frac"]),
        "input_autocorr": float(inputs["autocorr"].mean()),
        "target_std": None,
        "target_autocorr": None,
        "class_entropy": None,
    }
    if task.is_classification:
        counts = torch.bincount(task.train.y, minlength=task.n_y).to(torch.float64)
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        out["class_entropy"] = entropy / math.log(task.n_y) if task.n_y > 1 else None
        prior = (counts + 1.0) / (counts.sum() + task.n_y)
        out["baseline_loss"] = float(-prior.log()[task.val.y].mean())
    else:
        targets = feature_moments(subsample(task.train.y))
        out["target_std"] = float(targets["std"].mean())
        out["target_autocorr"] = float(targets["autocorr"].mean())
        out["baseline_loss"] = _mse_to(subsample(task.val.y), targets["mean"])
    return out
