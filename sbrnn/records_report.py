"""Views of a records directory: the paper's summary tables, a one-file export, and its figures.

- :func:`summary`: run counts by task and status, and the paper's Table III/IV views — mean
  minimum validation loss by hidden-proportion bin and by model-density bin (bins ``<.2``,
  ``.2-.4``, ``.4-.6``, ``.6-.8``, ``>=.8``) per task, with the run count and the 95% t interval
  of the mean of every bin.
- :func:`export`: the whole directory as one CSV or one Parquet file.
- :data:`FIGURES`: per task, the paper's Fig. 6 (validation curves coloured by hidden
  proportion), Fig. 8 (minimum validation loss vs hidden proportion and vs model density) and
  Fig. 7b/9b (vs the density of the largest block of the h row), each one matplotlib figure with
  the baselines and the balanced run marked (:data:`MARKS`); :func:`plot` writes them as PNG
  files, :func:`png` renders one in memory (the HTML report, :mod:`sbrnn.records_html`).

Binned means use ``ok`` runs only; ``diverged`` runs are counted per bin beside them (the
paper's "unstable convergence"), and ``failed`` runs, which have no curve, appear in the counts
by status only. The LSTM baseline has no block grid, so no hidden proportion: it is in the
counts, not in the bins or the scatter plots.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sbrnn.errors import SbrnnError
from sbrnn.io import atomic_write
from sbrnn.records import read_table, write_atomic
from sbrnn.vocabulary import BASELINE_ARCHS, STATUSES

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

BIN_EDGES = (0.2, 0.4, 0.6, 0.8)
BIN_LABELS = ("<.2", ".2-.4", ".4-.6", ".6-.8", ">=.8")
BINNED = {"hidden_proportion": "hidden proportion", "model_density": "model density"}
CURVES = ("train_loss", "val_loss", "val_acc")
CONFIDENCE = 0.95
"""The coverage of the interval around every bin's mean (Student's t, n - 1 degrees of freedom)."""


def load_frame(directory: str | os.PathLike) -> pd.DataFrame:
    """Every readable record of ``directory`` as a DataFrame (one row per run; curves as lists).

    Raises :class:`SbrnnError` when ``directory`` is not a directory or holds no readable record.
    Unreadable shards are skipped with a warning naming each (:func:`sbrnn.records.read_table`).
    """
    if not Path(directory).is_dir():
        raise SbrnnError(f"records directory {str(directory)!r} does not exist")
    table = read_table(directory)
    if table.num_rows == 0:
        raise _no_records(directory)
    return table.to_pandas()


def _no_records(directory: str | os.PathLike) -> SbrnnError:
    return SbrnnError(
        f"records directory {str(directory)!r} holds no readable records; allowed: a directory of "
        "run records (*.parquet shards or compacted files)"
    )


def _bins(values: pd.Series) -> np.ndarray:
    """Bin index 0..4 of each value: ``<.2``, ``[.2, .4)``, ``[.4, .6)``, ``[.6, .8)``, ``>=.8``."""
    return np.digitize(values.to_numpy(dtype=float), BIN_EDGES)


@dataclass(frozen=True)
class Bin:
    """One bin of a Table III/IV row: its ok runs, their mean minimum validation loss (None
    without ok runs), the :data:`CONFIDENCE` t interval of that mean (``ci_low``, ``ci_high``;
    None with fewer than two ok runs) and the diverged runs in it."""

    bin: str
    runs: int
    mean_min_val_loss: float | None
    ci_low: float | None
    ci_high: float | None
    diverged: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TaskCounts:
    """A task's runs: how many ended in each status (:data:`sbrnn.vocabulary.STATUSES`), and in all."""

    task: str
    statuses: dict[str, int]
    total: int

    def to_dict(self) -> dict:
        return {"task": self.task, **self.statuses, "total": self.total}


@dataclass(frozen=True)
class RecordsSummary:
    """What :func:`summary` finds in a records directory: ``runs`` in all, ``counts`` by task, and
    ``bins[task][column]``, the task's Table III/IV row for each column of :data:`BINNED`."""

    runs: int
    counts: tuple[TaskCounts, ...]
    bins: dict[str, dict[str, tuple[Bin, ...]]]

    def to_dict(self) -> dict:
        """JSON-ready: ``{"runs", "counts": [{"task", <status>..., "total"}], "tasks": {task:
        {column: [bins]}}}``."""
        return {
            "runs": self.runs,
            "counts": [c.to_dict() for c in self.counts],
            "tasks": {
                task: {column: [b.to_dict() for b in bins] for column, bins in views.items()}
                for task, views in self.bins.items()
            },
        }


_T975 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.13145,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.04523,
    2.042272,
)
"""Student's t quantile 0.975 for 1..30 degrees of freedom (a 95% two-sided interval)."""
_T975_TAIL = ((30, 2.042272), (40, 2.021075), (60, 2.000298), (120, 1.97993), (float("inf"), 1.959964))


def t975(df: int) -> float:
    """Student's t quantile 0.975 for ``df`` degrees of freedom: the table to 30, then linear in
    ``1 / df`` between 30, 40, 60, 120 and infinity (within 0.0005 of the exact value; scipy's
    import would cost a second of every ``records`` command)."""
    if df <= 30:
        return _T975[df - 1]
    for (lo, t_lo), (hi, t_hi) in zip(_T975_TAIL, _T975_TAIL[1:]):
        if df <= hi:
            w = (1 / lo - 1 / df) / (1 / lo - (0 if hi == float("inf") else 1 / hi))
            return t_lo + w * (t_hi - t_lo)
    return 1.96


def mean_interval(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """The mean of ``values`` and its :data:`CONFIDENCE` Student-t interval, ``mean +- t * std /
    sqrt(n)``; the interval is ``(None, None)`` below two values, the mean None without any."""
    n = len(values)
    if n == 0:
        return None, None, None
    mean = float(np.mean(values))
    if n < 2:
        return mean, None, None
    half = float(t975(n - 1) * np.std(values, ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def binned_min_loss(frame: pd.DataFrame, column: str) -> tuple[Bin, ...]:
    """Table III/IV row for ``column``: per bin, ok runs, their mean minimum validation loss with
    its interval (:func:`mean_interval`), and the diverged runs in that bin."""
    has_value = frame[column].notna()
    rows = []
    index = _bins(frame.loc[has_value, column])
    binned = frame.loc[has_value].assign(_bin=index)
    for i, label in enumerate(BIN_LABELS):
        in_bin = binned[binned["_bin"] == i]
        ok = in_bin[(in_bin["status"] == "ok") & in_bin["min_val_loss"].notna()]
        mean, low, high = mean_interval(ok["min_val_loss"].to_numpy(dtype=float))
        rows.append(
            Bin(
                bin=label,
                runs=int(len(ok)),
                mean_min_val_loss=mean,
                ci_low=low,
                ci_high=high,
                diverged=int((in_bin["status"] == "diverged").sum()),
            )
        )
    return tuple(rows)


def summary(frame: pd.DataFrame) -> RecordsSummary:
    """Counts by task and status, and per task the binned views of :data:`BINNED`."""
    counts = []
    bins = {}
    for task, rows in frame.groupby("task", sort=True):
        by_status = rows["status"].value_counts()
        counts.append(TaskCounts(task, {s: int(by_status.get(s, 0)) for s in STATUSES}, len(rows)))
        bins[task] = {column: binned_min_loss(rows, column) for column in BINNED}
    return RecordsSummary(int(len(frame)), tuple(counts), bins)


def export(directory: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write every readable record of ``directory`` to ``out`` (``.csv`` or ``.parquet``).

    Parquet keeps the record schema (curves as lists); CSV writes curves as JSON lists. Returns
    the number of records. Refuses a Parquet file inside the records directory, where readers
    would take it for a shard and see every run twice.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise SbrnnError(f"export file {str(out)!r} has an unknown type; allowed: .csv, .parquet")
    if suffix == ".parquet" and out.resolve().parent == Path(directory).resolve():
        raise SbrnnError(f"export file {str(out)!r} is inside the records directory; write it elsewhere")
    if not Path(directory).is_dir():
        raise SbrnnError(f"records directory {str(directory)!r} does not exist")
    table = read_table(directory)
    if table.num_rows == 0:
        raise _no_records(directory)
    if suffix == ".parquet":
        write_atomic(table, out)
        return table.num_rows
    frame = table.to_pandas()
    for column in CURVES:
        frame[column] = [json.dumps([float(v) for v in values]) for values in frame[column]]
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    return len(frame)


def _largest_h_row_density(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per run, the density of the largest h-row block (``W_hx``: n_x wide, ``W_hh``: h, ``W_hy``:
    n_y) and that block's name."""
    widths = np.stack([frame["n_x"], frame["h"], frame["n_y"]], axis=1)
    names = np.array(["hx", "hh", "hy"])[widths.argmax(axis=1)]
    densities = [frame.at[i, f"d_{b}"] for i, b in zip(frame.index, names)]
    return pd.Series(densities, index=frame.index, dtype=float), pd.Series(names, index=frame.index)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


DPI = 110
"""The resolution of every PNG the figures are rendered to."""
X_LIMITS = (-0.03, 1.03)
"""The x range of plots over proportions and densities: a margin on both sides, so that runs at 0 or 1
(the dense baseline's model density) are never cut in half."""
MARKS = {
    "dense": ("black", "s", "--"),
    "uniform": ("tab:orange", "^", "-."),
    "lstm": ("tab:purple", None, ":"),
    "balanced": ("tab:red", "*", "-"),
}
"""How the figures mark the baselines and the balanced run: colour, scatter marker (None: a
horizontal line at the run's minimum, for the LSTM, which has no block grid) and curve line style."""


def mark_of(frame: pd.DataFrame) -> pd.Series:
    """Per run, which :data:`MARKS` entry the figures draw it with: ``balanced`` (its label), its
    arch for a baseline arch (:data:`sbrnn.vocabulary.BASELINE_ARCHS`), or None (a sampled run)."""
    kind = frame["arch"].where(frame["arch"].isin(BASELINE_ARCHS), None).astype(object)
    return kind.mask(frame["label"].eq("balanced").fillna(False).astype(bool), "balanced")


def is_ok(frame: pd.DataFrame) -> pd.Series:
    """Per run, whether it ended ``ok`` with a minimum validation loss."""
    return frame["status"].eq("ok") & frame["min_val_loss"].notna()


def _legend(ax, **kwargs) -> None:
    """A legend where the axes hold labelled artists (none: no legend, and no warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", **kwargs)


def fig6(task: str, rows: pd.DataFrame) -> Figure:
    """The paper's Fig. 6 for one task's runs: sampled runs' validation curves (and accuracy for a
    classification task) coloured by hidden proportion, the baselines and the balanced run drawn
    over them in their :data:`MARKS` style; whole-epoch ticks."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cmap = colormaps["viridis"]
    kind = mark_of(rows)
    sampled = rows[kind.isna() & rows["hidden_proportion"].notna()]
    marked = rows[kind.notna()]
    norm = Normalize(0.0, max(0.5, float(rows["hidden_proportion"].max()) if len(sampled) else 0.5))
    with_acc = any(len(v) for v in rows["val_acc"])
    fig = Figure(figsize=(11 if with_acc else 6.5, 4.5), layout="constrained")
    axes = fig.subplots(1, 2 if with_acc else 1, squeeze=False)[0]
    panels = (("val_loss", "validation loss"), ("val_acc", "validation accuracy"))
    for ax, (column, label) in zip(axes, panels):
        for _, run in sampled.sort_values("hidden_proportion").iterrows():
            _curve(ax, run[column], color=cmap(norm(run["hidden_proportion"])), lw=0.9, alpha=0.8)
        for name, (color, _, style) in MARKS.items():
            for j, (_, run) in enumerate(marked[kind[marked.index] == name].iterrows()):
                _curve(ax, run[column], color=color, ls=style, lw=1.8, label=None if j else name)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(axes[0], loc="best")
    fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes), label="hidden proportion")
    fig.suptitle(
        f"{task}: validation curves by hidden proportion\n({len(sampled)} sampled runs; "
        f"{len(marked)} baseline or balanced runs marked)"
    )
    return fig


def _curve(ax, values, **style) -> None:
    curve = np.asarray(values, dtype=float)
    if len(curve):
        ax.plot(np.arange(1, len(curve) + 1), curve, **style)


def fig8(task: str, rows: pd.DataFrame) -> Figure:
    """The paper's Fig. 8 for one task's runs: minimum validation loss vs hidden proportion and vs
    model density (sampled ok and diverged runs), the baselines and the balanced run marked
    (:data:`MARKS`; the LSTM, without a block grid, as a horizontal line)."""
    from matplotlib.figure import Figure

    kind = mark_of(rows)
    sampled = rows[kind.isna() & rows["hidden_proportion"].notna()]
    ok = sampled[is_ok(sampled)]
    diverged = sampled[sampled["status"].eq("diverged") & sampled["min_val_loss"].notna()]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    for ax, column in zip(fig.subplots(1, 2), BINNED):
        _scatter(ax, ok[column], ok["min_val_loss"], diverged[column], diverged["min_val_loss"])
        for name, (color, marker, _) in MARKS.items():
            runs = rows[(kind == name) & is_ok(rows)]
            placed = runs[runs[column].notna()] if marker is not None else runs.iloc[:0]
            if len(placed):
                ax.scatter(
                    placed[column],
                    placed["min_val_loss"],
                    marker=marker,
                    s=80,
                    color=color,
                    edgecolor="white",
                    zorder=3,
                    label=f"{name} ({len(placed)})",
                )
            lines = runs.loc[runs.index.difference(placed.index), "min_val_loss"]
            for j, loss in enumerate(lines):
                ax.axhline(loss, color=color, ls=":", lw=1.2, label=None if j else f"{name} ({len(lines)})")
        for edge in BIN_EDGES:
            ax.axvline(edge, color="0.85", lw=0.8, zorder=0)
        ax.set(xlabel=BINNED[column], ylabel="minimum validation loss", xlim=X_LIMITS)
        _legend(ax, loc="best")
    fig.suptitle(f"{task}: minimum validation loss ({len(ok)} ok, {len(diverged)} diverged sampled runs)")
    return fig


def fig7b9b(task: str, rows: pd.DataFrame) -> Figure:
    """The paper's Fig. 7b / 9b for one task's runs: minimum validation loss vs the density of the
    largest block of the h row (ok and diverged runs with a block grid)."""
    from matplotlib.figure import Figure

    block = rows[rows["hidden_proportion"].notna()]
    ok = block[is_ok(block)]
    diverged = block[block["status"].eq("diverged") & block["min_val_loss"].notna()]
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    d_ok, names = _largest_h_row_density(ok) if len(ok) else (ok["d_hx"], ok["task"])
    d_div = _largest_h_row_density(diverged)[0] if len(diverged) else diverged["d_hx"]
    _scatter(ax, d_ok, ok["min_val_loss"], d_div, diverged["min_val_loss"])
    _legend(ax, loc="best")
    which = ", ".join(f"W_{b} in {n}" for b, n in pd.Series(names).value_counts().items()) or "none"
    ax.set(
        xlabel=f"density of the largest h-row block ({which})",
        ylabel="minimum validation loss",
        xlim=X_LIMITS,
    )
    fig.suptitle(f"{task}: minimum validation loss vs the largest block's density")
    return fig


FIGURES = {"fig6": fig6, "fig8": fig8, "fig7b9b": fig7b9b}
"""Each figure of a task: name -> ``draw(task, rows)`` returning a matplotlib figure (Agg canvas)."""


def task_figures(frame: pd.DataFrame) -> Iterator[tuple[str, str, Figure]]:
    """``(figure name, task, figure)`` for every task of ``frame`` and every figure of :data:`FIGURES`."""
    for task, rows in frame.groupby("task", sort=True):
        for name, draw in FIGURES.items():
            yield name, task, draw(task, rows)


def plot(frame: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Write ``fig6_<task>.png``, ``fig8_<task>.png`` and ``fig7b9b_<task>.png`` per task into
    ``out``; returns the paths written. Uses matplotlib's Agg canvas (no display needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, task, fig in task_figures(frame):
        written.append(out / f"{name}_{_safe(task)}.png")
        fig.savefig(written[-1], dpi=DPI)
    return written


def png(fig: Figure) -> bytes:
    """``fig`` rendered as PNG bytes, at the resolution :func:`plot` writes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _scatter(ax, x_ok, y_ok, x_div, y_div) -> None:
    ax.scatter(x_ok, y_ok, s=14, alpha=0.7, label=f"ok ({len(x_ok)})")
    if len(x_div):
        ax.scatter(x_div, y_div, s=18, marker="x", color="tab:red", label=f"diverged ({len(x_div)})")
