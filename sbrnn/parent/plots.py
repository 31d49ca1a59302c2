"""The parent's figures: Fig. 10 (predicted vs actual minimum), predicted-vs-actual curve overlays
of held-out runs, and a recommendation's predicted curves with their bands. PNG files (Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sbrnn.parent.features import CURVE_POINTS
from sbrnn.parent.models import ConfigPrediction


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


FRACTIONS = np.arange(1, CURVE_POINTS + 1) / CURVE_POINTS
"""The x axis of every predicted curve: the fraction of the run's planned epochs."""


def plot_predicted_vs_actual(arrays: dict, path: str | Path, title: str) -> Path:
    """The paper's Fig. 10: predicted vs actual minimum validation loss, one colour per task.

    ``arrays`` holds ``actual``, ``predicted``, ``low``, ``high`` ``[N]`` (loss units) and
    ``task`` ``[N]``; bars span the one-spread band. Axes are logarithmic when the losses span
    more than a factor of 10. Writes a PNG and returns its path.
    """
    plt = _pyplot()
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
    return _save(fig, path)


def plot_curve_overlays(arrays: dict, path: str | Path, title: str, panels: int = 12) -> Path:
    """Predicted (with its one-sigma band) and actual best-so-far curves of up to ``panels`` held-out
    runs, spread over the range of actual minima; ``arrays`` as :func:`sbrnn.parent.evaluate.evaluate_parent`
    returns them (``curve_actual``, ``curve_predicted``, ``curve_low``, ``curve_high`` ``[N, points]``)."""
    plt = _pyplot()
    n = len(arrays["actual"])
    order = np.argsort(arrays["actual"], kind="stable")
    picked = order[np.unique(np.linspace(0, n - 1, min(panels, n)).round().astype(int))]
    cols = 4
    rows = -(-len(picked) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=110, squeeze=False)
    for ax, i in zip(axes.ravel(), picked):
        ax.fill_between(FRACTIONS, arrays["curve_low"][i], arrays["curve_high"][i], alpha=0.25, label="band")
        ax.plot(FRACTIONS, arrays["curve_predicted"][i], lw=1.5, label="predicted")
        ax.plot(FRACTIONS, arrays["curve_actual"][i], "k.-", lw=1, ms=3, label="actual")
        ax.set_title(str(arrays["task"][i]), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(picked) :]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("fraction of the planned epochs", fontsize=9)
    fig.supylabel("best validation loss so far", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_predictions(curves: Sequence[tuple[str, ConfigPrediction]], path: str | Path, title: str) -> Path:
    """Predicted best-so-far curves with their bands: ``curves`` are ``(label, ConfigPrediction)``
    pairs (a recommendation's top configurations, the a-priori one, the baselines)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, pred in curves:
        line = ax.plot(FRACTIONS, pred.curve, marker="o", ms=3, lw=1.5, label=label)[0]
        ax.fill_between(FRACTIONS, pred.curve_low, pred.curve_high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("fraction of the planned epochs")
    ax.set_ylabel("predicted best validation loss so far")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
