"""The HTML report of a records directory: one self-contained page to judge a sweep by.

:func:`write_report` reads a records directory (and optionally a parent) and writes the page of
:func:`render_report` atomically. The page loads nothing: plots are PNGs embedded as ``data:``
URIs, the CSS and one small script are inline, and its Content-Security-Policy forbids any other
load. It holds:

- the runs by task and status; hyperparameter importance per task (:func:`importance`); the
  optimisation history of every Optuna study (records with a ``study``); with a parent, its
  predicted-vs-actual plots on these runs (:func:`sbrnn.parent.evaluate.evaluate_parent`);
- per task: the best runs per budget, each with the ``sbrnn child train`` line that trains it
  again (:func:`train_command`); the curves of the best run and of each baseline, with bands over
  seeds (:func:`curves_figure`); the Table IV bins with their 95% intervals; Fig. 6 and Fig. 8
  (:mod:`sbrnn.records_report`, the figures ``sbrnn records plot`` writes).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sbrnn import __version__, records_report
from sbrnn.child.weight_space import format_grid
from sbrnn.errors import SbrnnError
from sbrnn.io import atomic_write_text
from sbrnn.records import BLOCK_COLUMNS, RunRecord, read_records, records_table
from sbrnn.records_report import is_ok
from sbrnn.vocabulary import STATUSES

BEST_PER_BUDGET = 3
"""How many of the best configurations the page lists per task and budget."""
CONFIG_COLUMNS = (
    "task",
    "task_options",
    "arch",
    "budget",
    "h",
    "lr",
    "activation",
    "precision",
    "batch_size",
    "epochs",
    *BLOCK_COLUMNS["d"],
    *BLOCK_COLUMNS["mu"],
    *BLOCK_COLUMNS["sigma"],
)
"""What makes runs one configuration: everything that decides a run but its seed."""
FEATURES = (
    *BLOCK_COLUMNS["d"],
    *BLOCK_COLUMNS["mu"],
    *BLOCK_COLUMNS["sigma"],
    "log10_lr",
    "hidden_proportion",
)
"""The hyperparameters whose importance the page estimates."""
MIN_IMPORTANCE_RUNS = 12
"""A task needs this many ok runs with a block grid for an importance estimate."""
TREES = 100
"""Trees of the importance forest."""
REPEATS = 10
"""Shuffles of each hyperparameter in the permutation importance."""
PREDICT_ROWS = 200_000
"""At most this many rows of shuffled copies go to the forest in one call."""
BEST_COLOUR = "tab:blue"
"""The colour of the best configuration's curve (the baselines take theirs from ``MARKS``)."""

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1300px; padding: 0 1.5em 4em;
       color: #222; }
h1 { margin-top: 1em; } h2 { border-bottom: 2px solid #ddd; margin-top: 2.2em; }
h3 { margin-top: 1.6em; } nav { columns: 3; font-size: 13px; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top;
         white-space: nowrap; }
div.wide { overflow-x: auto; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
tr.command td { text-align: left; background: #fafafa; border-top: none; white-space: normal; }
code.command { user-select: all; font-size: 12px; white-space: pre-wrap; word-break: break-all; }
.interval { color: #666; font-size: 11px; } .note { color: #555; max-width: 60em; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
"""
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", images.length + "/" + decoded);
  document.body.setAttribute("data-loaded", decoded === images.length ? "all" : "broken");
});
"""
"""The page's only script: after loading, the body says how many of its images decoded."""
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""The page's Content-Security-Policy: nothing but its own inline style, script and data images."""


def _given(value) -> bool:
    """Not missing (None, or NaN as pandas shows a null number)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _grid(run: Mapping, prefix: str) -> str | None:
    """A run's block values of ``prefix`` (``d``, ``mu``, ``sigma``) as ``"hx,hh,hy/yx,yh,yy"``."""
    values: list[Any] = [run.get(c) for c in BLOCK_COLUMNS[prefix]]  # numbers once all are given
    if not all(_given(v) for v in values):
        return None
    hx, hh, hy, yx, yh, yy = values
    return format_grid(((hx, hh, hy), (yx, yh, yy)))


def _task_options(text) -> dict:
    """A record's ``task_options`` JSON as a dict (empty when missing)."""
    return json.loads(text) if _given(text) and text else {}


def _option_text(value) -> str:
    """A task option's value as ``--task-option key=VALUE`` reads it back (JSON, else text)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, separators=(",", ":"))


def _number(value: float) -> str:
    value = float(value)
    return f"{value:.0f}" if value.is_integer() else repr(value)


def train_command(run: Mapping) -> str:
    """The ``sbrnn child train`` line that trains ``run`` (a record as a mapping) again: its task and
    task options, arch, budget (or hidden size), learning rate, block densities (``--uniform-density``
    for the uniform baseline), init means and stds, epochs, batch size and seed, shell-quoted."""
    args = ["sbrnn", "child", "train", "--task", str(run["task"])]
    for key, value in _task_options(run.get("task_options")).items():
        args += ["--task-option", f"{key}={_option_text(value)}"]
    args += ["--arch", run["arch"]]
    args += (
        ["--budget", _number(run["budget"])]
        if _given(run.get("budget"))
        else ["--hidden", str(int(run["h"]))]
    )
    args += ["--lr", repr(float(run["lr"]))]
    densities = _grid(run, "d")
    if run["arch"] == "sbrnn" and densities is not None:
        args += ["--densities", densities]
    if run["arch"] == "uniform" and _given(run.get("d_hh")):
        args += ["--uniform-density", f"{run['d_hh']:g}"]
    for flag, prefix in (("--means", "mu"), ("--stds", "sigma")):
        grid = _grid(run, prefix) if run["arch"] != "lstm" else None
        if grid is not None:
            args += [flag, grid]
    args += ["--epochs", str(int(run["epochs"])), "--batch-size", str(int(run["batch_size"]))]
    args += ["--seed", str(int(run["seed"]))]
    for flag, default in (("activation", "relu"), ("precision", "fp32")):
        if _given(run.get(flag)) and run[flag] != default:
            args += [f"--{flag}", run[flag]]
    return shlex.join(args)


def config_key(frame: pd.DataFrame) -> pd.Series:
    """Per run, a hash of its configuration (:data:`CONFIG_COLUMNS`): runs differing only in seed share it."""
    return pd.util.hash_pandas_object(frame[list(CONFIG_COLUMNS)].astype(str), index=False)


def _budgets(frame: pd.DataFrame) -> list:
    """The budgets of ``frame``, ascending; None for runs sized by their hidden size."""
    given = sorted(float(b) for b in frame["budget"].dropna().unique())
    return given + ([None] if frame["budget"].isna().any() else [])


def _of_budget(frame: pd.DataFrame, budget) -> pd.DataFrame:
    return frame[frame["budget"].isna()] if budget is None else frame[frame["budget"] == budget]


def _budget_name(budget) -> str:
    return "hidden size given" if budget is None else f"budget {budget:,.0f}"


def best_runs(rows: pd.DataFrame, k: int = BEST_PER_BUDGET) -> list[tuple[object, pd.DataFrame]]:
    """Per budget of one task's ``rows``: its ``k`` best configurations, each as its ok run of lowest
    minimum validation loss, with ``seeds`` (the configuration's ok runs) and ``seed_mean`` (their
    mean minimum validation loss), best first."""
    ok = rows[is_ok(rows)]
    keys = config_key(ok)
    grouped = ok["min_val_loss"].groupby(keys)
    ranked = (
        ok.assign(seeds=keys.map(grouped.size()), seed_mean=keys.map(grouped.mean()), _key=keys)
        .sort_values("min_val_loss", kind="stable")
        .drop_duplicates("_key")
    )
    return [(budget, _of_budget(ranked, budget).head(k)) for budget in _budgets(rows)]


def _pick(runs: pd.DataFrame):
    """The index of the best of ``runs``: the ok run of lowest minimum, else the first."""
    order = runs.assign(_bad=~is_ok(runs)).sort_values(["_bad", "min_val_loss"], na_position="last")
    return order.index[0]


def _band(curves: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, lowest and highest of ``curves`` (of any lengths) at each epoch, over the curves that
    reach it (NaN where none has a finite value)."""
    width = max(len(c) for c in curves)
    matrix = np.full((len(curves), width), np.nan)
    for i, curve in enumerate(curves):
        matrix[i, : len(curve)] = curve
    finite = np.isfinite(matrix)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, matrix, 0.0).sum(axis=0) / count
    low = np.where(count > 0, np.where(finite, matrix, np.inf).min(axis=0), np.nan)
    high = np.where(count > 0, np.where(finite, matrix, -np.inf).max(axis=0), np.nan)
    return mean, low, high


def curves_figure(task: str, rows: pd.DataFrame):
    """One task's validation curves, a panel per budget: the configuration of the best run and of
    each baseline and the balanced run (:data:`sbrnn.records_report.MARKS`; for each, the
    configuration of its best run), as the mean over the configuration's seeds with their range as a
    band where several seeds ran. Whole-epoch ticks; a log axis where the losses span a factor of 10.
    ``rows`` must hold at least one run with a curve."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

    runs = rows[rows["val_loss"].map(len) > 0]
    keys = config_key(runs)
    kinds = records_report.mark_of(runs)
    budgets = _budgets(runs)
    cols = min(3, len(budgets))
    lines = -(-len(budgets) // cols)
    fig = Figure(figsize=(max(7.0, 5.4 * cols), 4.0 * lines + 0.4), layout="constrained")
    axes = fig.subplots(lines, cols, squeeze=False).ravel()
    for ax, budget in zip(axes, budgets):
        panel = _of_budget(runs, budget)
        picked = {"best": _pick(panel)}
        for name in records_report.MARKS:
            of_kind = panel[kinds[panel.index] == name]
            if len(of_kind) and _pick(of_kind) != picked["best"]:
                picked[name] = _pick(of_kind)
        drawn = []
        for name, index in picked.items():
            members = panel[keys[panel.index] == keys[index]]
            mean, low, high = _band([np.asarray(c, dtype=float) for c in members["val_loss"]])
            epochs = np.arange(1, len(mean) + 1)
            colour, _, style = records_report.MARKS.get(name, (BEST_COLOUR, None, "-"))
            run = runs.loc[index]
            title = (
                f"best ({run['label'] if _given(run['label']) else run['arch']})" if name == "best" else name
            )
            seeds = f"{len(members)} seed{'s' * (len(members) > 1)}"
            ax.plot(
                epochs,
                mean,
                color=colour,
                ls=style,
                lw=2 if name == "best" else 1.4,
                label=f"{title}: {seeds}, min {_f(run['min_val_loss'])}",
            )
            if len(members) > 1:
                ax.fill_between(epochs, low, high, color=colour, alpha=0.18, lw=0)
            drawn.append(np.concatenate([low, high]))
        values = np.concatenate(drawn)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) and values.max() > 10 * values.min():
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set(title=_budget_name(budget), xlabel="epoch", ylabel="validation loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small", loc="best")
    for ax in axes[len(budgets) :]:
        ax.set_visible(False)
    fig.suptitle(f"{task}: the best configuration and the baselines\n(mean over seeds; band: their range)")
    return fig


@dataclass(frozen=True)
class Importance:
    """One task's hyperparameter importance: the ok runs used, the forest's out-of-bag R^2 (None
    when too few runs), and per feature of :data:`FEATURES` the mean drop of R^2 when it is shuffled
    (empty when too few runs)."""

    task: str
    runs: int
    oob_r2: float | None
    values: dict[str, float]


def importance(frame: pd.DataFrame, seed: int = 0) -> list[Importance]:
    """Per task, the permutation importance of a random forest (:data:`TREES` trees, leaves of at
    least 2 runs) fitted on the ok runs' hyperparameters (:data:`FEATURES`: block densities, init
    means and stds, log10 learning rate, hidden proportion) to their log minimum validation loss:
    how much the forest's R^2 on those runs drops when one feature is shuffled (mean of
    :data:`REPEATS` shuffles). Tasks with fewer than :data:`MIN_IMPORTANCE_RUNS` such runs, or
    with one loss for all, get none."""
    from sklearn.ensemble import RandomForestRegressor

    out = []
    for task, rows in frame.groupby("task", sort=True):
        usable = rows[is_ok(rows) & rows["hidden_proportion"].notna() & (rows["min_val_loss"] > 0)]
        usable = usable.dropna(subset=[f for f in FEATURES if f != "log10_lr"])
        y = np.log(usable["min_val_loss"].to_numpy(dtype=float))
        if len(usable) < MIN_IMPORTANCE_RUNS or np.ptp(y) == 0:
            out.append(Importance(task, len(usable), None, {}))
            continue
        X = usable.assign(log10_lr=np.log10(usable["lr"]))[list(FEATURES)].to_numpy(dtype=float)
        forest = RandomForestRegressor(TREES, min_samples_leaf=2, oob_score=True, random_state=seed, n_jobs=1)
        forest.fit(X, y)
        values = dict(zip(FEATURES, _permutation_drops(forest, X, y, np.random.default_rng(seed))))
        out.append(Importance(task, len(usable), float(forest.oob_score_), values))
    return out


def _permutation_drops(model, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> list[float]:
    """Per column of ``X``, the mean drop of ``model``'s R^2 on ``(X, y)`` over :data:`REPEATS`
    shuffles of that column. The shuffled copies are predicted in as few calls as
    :data:`PREDICT_ROWS` allows: a forest's cost is mostly per call."""
    n, width = X.shape
    total = np.sum((y - y.mean()) ** 2)
    base = 1 - np.sum((y - model.predict(X)) ** 2) / total
    columns = np.repeat(np.arange(width), REPEATS)
    r2 = []
    for start in range(0, len(columns), max(1, PREDICT_ROWS // n)):
        chunk = columns[start : start + max(1, PREDICT_ROWS // n)]
        copies = np.repeat(X[None], len(chunk), axis=0)
        for copy, column in zip(copies, chunk):
            copy[:, column] = rng.permutation(X[:, column])
        predicted = model.predict(copies.reshape(-1, width)).reshape(len(chunk), n)
        r2.append(1 - np.sum((y - predicted) ** 2, axis=1) / total)
    return [float(v) for v in (base - np.concatenate(r2)).reshape(width, REPEATS).mean(axis=1)]


def study_figure(study: str, rows: pd.DataFrame):
    """An Optuna study's optimisation history: each trial's minimum validation loss against its
    number (pruned trials marked, at the loss they had when pruned) and the best so far over the
    completed (ok) trials."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = rows.sort_values("trial")
    loss = rows["min_val_loss"].where(rows["min_val_loss"].notna(), rows["val_loss"].map(_lowest))
    ok, pruned = rows["status"].eq("ok") & loss.notna(), rows["status"].eq("pruned") & loss.notna()
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.scatter(rows.loc[ok, "trial"], loss[ok], s=22, color=BEST_COLOUR, label=f"complete ({int(ok.sum())})")
    if pruned.any():
        ax.scatter(
            rows.loc[pruned, "trial"],
            loss[pruned],
            s=30,
            marker="x",
            color="0.45",
            label=f"pruned ({int(pruned.sum())}), loss when pruned",
        )
    if ok.any():
        ax.step(rows.loc[ok, "trial"], loss[ok].cummin(), where="post", color="tab:red", label="best so far")
    ax.set(xlabel="trial", ylabel="minimum validation loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    tasks = ", ".join(sorted(rows["task"].unique()))
    fig.suptitle(f"study {study} ({tasks}): optimisation history, {len(rows)} trials")
    return fig


def _lowest(curve) -> float:
    values = np.asarray(curve, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.min()) if len(values) else math.nan


# --- HTML ---------------------------------------------------------------------------------------


def _e(value) -> str:
    """``value`` as escaped HTML text; missing as ``-``."""
    return "-" if not _given(value) else html.escape(str(value))


def _f(value, fmt: str = ".4g") -> str:
    return "-" if not _given(value) else format(float(value), fmt)


def _anchor(name: str) -> str:
    return "task-" + "".join(c if c.isalnum() else "-" for c in name)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    text: Sequence[int] = (0,),
    notes: Sequence[str] | None = None,
) -> str:
    """An HTML table of already-escaped cells; the columns ``text`` align left. ``notes[i]``, when
    given, is a full-width row below row ``i`` (a command line)."""

    def cell(tag, i, content):
        return f"<{tag}{' class=text' if i in text else ''}>{content}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        body.append("<tr>" + "".join(cell("td", j, c) for j, c in enumerate(row)) + "</tr>")
        if notes is not None:
            body.append(f'<tr class=command><td colspan="{len(headers)}">{notes[i]}</td></tr>')
    return (
        f"<div class=wide><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _int(value) -> str:
    return "-" if not _given(value) else str(int(value))


def _png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _figure(fig, alt: str) -> str:
    return _png(records_report.png(fig), alt)


def _counts_section(summary: records_report.RecordsSummary) -> str:
    rows = [[_e(c.task), *(str(c.statuses[s]) for s in STATUSES), str(c.total)] for c in summary.counts]
    totals = [sum(c.statuses[s] for c in summary.counts) for s in STATUSES]
    rows.append(["<b>all</b>", *(f"<b>{t}</b>" for t in totals), f"<b>{summary.runs}</b>"])
    return '<h2 id="counts">Runs by task and status</h2>' + _table(["task", *STATUSES, "total"], rows)


def _importance_section(results: list[Importance]) -> str:
    method = (
        f"<p class=note>Method: permutation importance of a random forest ({TREES} trees, leaves of at least "
        f"2 runs) fitted per task on the ok runs' hyperparameters (block densities <code>d_*</code>, init "
        f"means <code>mu_*</code> and stds <code>sigma_*</code>, log10 learning rate, hidden proportion) to "
        f"their log minimum validation loss. A value is the mean drop of the forest's R&sup2; on those runs "
        f"when that hyperparameter is shuffled ({REPEATS} shuffles); the out-of-bag R&sup2; says how much of "
        f"the loss the forest explains at all (near 0 or below: the importances mean little). Tasks with "
        f"fewer than {MIN_IMPORTANCE_RUNS} such runs are not estimated. Shading: relative to the task's "
        "largest value.</p>"
    )
    rows = []
    for r in results:
        top = max(r.values.values(), default=0.0) or 1.0
        cells = []
        for feature in FEATURES:
            value = r.values.get(feature)
            if value is None:
                cells.append("-")
                continue
            shade = max(0.0, min(1.0, value / top))
            cells.append(
                f'<span style="background: rgba(31,119,180,{shade:.2f}); padding: 0 3px">{value:.3f}</span>'
            )
        rows.append([_e(r.task), str(r.runs), _f(r.oob_r2, ".2f"), *cells])
    table = _table(["task", "runs", "OOB R&sup2;", *FEATURES], rows)
    return f'<h2 id="importance">Hyperparameter importance</h2>{method}{table}'


def _studies_section(frame: pd.DataFrame) -> str:
    studies = frame[frame["study"].notna()]
    if studies.empty:
        return ""
    rows, figures = [], []
    for study, trials in studies.groupby("study", sort=True):
        ok = trials[is_ok(trials)]
        best = ok.loc[ok["min_val_loss"].idxmin()] if len(ok) else None
        rows.append(
            [
                _e(study),
                _e(", ".join(sorted(trials["task"].unique()))),
                str(len(trials)),
                str(len(ok)),
                str(int(trials["status"].eq("pruned").sum())),
                str(int((~trials["status"].isin(["ok", "pruned"])).sum())),
                "-" if best is None else str(int(best["trial"])),
                "-" if best is None else _f(best["min_val_loss"]),
                "-" if best is None else f"<code>{_e(best['run_id'])}</code>",
            ]
        )
        figures.append(_figure(study_figure(study, trials), f"optimisation history of study {study}"))
        if best is not None:
            figures.append(
                f"<p>Best trial of {_e(study)}:</p><code class=command>{_e(train_command(best))}</code>"
            )
    table = _table(
        [
            "study",
            "tasks",
            "trials",
            "ok",
            "pruned",
            "failed or diverged",
            "best trial",
            "best min val loss",
            "best run",
        ],
        rows,
        text=(0, 1),
    )
    return (
        '<h2 id="studies">Tuning studies</h2><p class=note>Records with a <code>study</code> '
        "(Optuna tuning, origin <code>tune</code>): best minimum validation loss so far against the "
        "trial number; pruned trials are marked at the loss they had when pruned.</p>"
        + table
        + "".join(figures)
    )


def _parent_section(parent, records: Sequence[RunRecord]) -> str:
    from sbrnn.parent.evaluate import evaluate_parent
    from sbrnn.parent.plots import plot_curve_overlays, plot_predicted_vs_actual

    head = f'<h2 id="parent">Parent {_e(parent.name)}: predicted vs actual</h2>'
    try:
        report, arrays = evaluate_parent(parent, records)
    except SbrnnError as exc:
        return f"{head}<p class=note>No evaluation: {_e(exc)}</p>"
    table = report["unseen"][report["model"]]
    metric_rows = [["pooled", *_metrics(table["pooled"])]]
    metric_rows += [[_e(task), *_metrics(m)] for task, m in table["per_task"].items()]
    counts = report["counts"]
    note = (
        f"<p class=note>Model {_e(report['model'])} on the {counts['converged']} converged runs it did not "
        f"see ({counts['seen_in_training']} runs it trained on left out); {report['band_coverage']:.0%} of "
        "the runs lie inside the one-sigma band.</p>"
    )
    metrics = _table(
        ["scope", "runs", "R&sup2; (log min)", "Spearman (min)", "RMSE (log curve)", "top-10% precision"],
        metric_rows,
    )
    with tempfile.TemporaryDirectory(prefix="sbrnn-report-") as tmp:
        fig10 = plot_predicted_vs_actual(
            arrays, Path(tmp) / "fig10.png", f"Fig. 10: {parent.name} on these runs"
        )
        curves = plot_curve_overlays(
            arrays, Path(tmp) / "curves.png", f"{parent.name}: predicted vs actual curves"
        )
        images = _png(fig10.read_bytes(), "predicted vs actual minimum") + _png(
            curves.read_bytes(), "predicted vs actual curves"
        )
    return head + note + metrics + images


def _metrics(m: dict) -> list[str]:
    return [
        str(m["n"]),
        _f(m["r2_min"], ".3f"),
        _f(m["spearman_min"], ".3f"),
        _f(m["rmse_log_curve"], ".3f"),
        _f(m["top10_precision"], ".2f"),
    ]


def _best_runs_html(rows: pd.DataFrame) -> str:
    headers = [
        "#",
        "run",
        "arch",
        "label",
        "seeds",
        "mean over seeds",
        "h",
        "hidden prop.",
        "model density",
        "lr",
        "densities",
        "min val loss",
        "best epoch",
    ]
    parts = []
    for budget, best in best_runs(rows):
        parts.append(f"<p><b>{_e(_budget_name(budget))}</b>{'' if len(best) else ': no ok runs'}</p>")
        if best.empty:
            continue
        cells = [
            [
                str(rank),
                f"<code>{_e(run['run_id'])}</code>",
                _e(run["arch"]),
                _e(run["label"]),
                _int(run["seeds"]),
                _f(run["seed_mean"]),
                _int(run["h"]),
                _f(run["hidden_proportion"], ".3f"),
                _f(run["model_density"], ".3f"),
                _f(run["lr"], ".3g"),
                _e(_grid(run, "d")),
                _f(run["min_val_loss"]),
                f"{_int(run['best_epoch'])} / {_int(run['epochs'])}",
            ]
            for rank, (_, run) in enumerate(best.iterrows(), 1)
        ]
        commands = [f"<code class=command>{_e(train_command(run))}</code>" for _, run in best.iterrows()]
        parts.append(_table(headers, cells, text=(1, 2, 3, 10), notes=commands))
    return "".join(parts)


def _bins_html(views: dict[str, tuple[records_report.Bin, ...]]) -> str:
    rows = []
    for column, name in records_report.BINNED.items():
        cells = []
        for b in views[column]:
            interval = (
                ""
                if b.ci_low is None
                else f"<br><span class=interval>[{b.ci_low:.4g}, {b.ci_high:.4g}]</span>"
            )
            cells.append(
                f"{_f(b.mean_min_val_loss)}{interval}<br><span class=interval>{b.runs} runs, "
                f"{b.diverged} diverged</span>"
            )
        rows.append([name, *cells])
    return _table(["by", *records_report.BIN_LABELS], rows)


def _task_section(task: str, rows: pd.DataFrame, bins: dict) -> str:
    return "".join(
        [
            f'<h2 id="{_anchor(task)}">{_e(task)}</h2>',
            f"<p>{len(rows)} runs: "
            + ", ".join(f"{n} {s}" for s, n in rows["status"].value_counts().items())
            + ".</p>",
            "<h3>Best runs per budget</h3><p class=note>The configurations of lowest minimum validation "
            "loss (ok runs), each shown by its best run; <i>seeds</i> counts the configuration's ok runs "
            "(alike but for the seed). Click a command to select it; records do not keep "
            "<code>--patience</code>: add the sweep's.</p>",
            _best_runs_html(rows),
            "<h3>Curves: best configuration and baselines</h3>",
            _figure(curves_figure(task, rows), f"{task}: curves of the best run and the baselines")
            if rows["val_loss"].map(len).any()
            else "<p>No run of this task has a curve.</p>",
            "<h3>Table IV: mean minimum validation loss by bin</h3><p class=note>Ok runs; the 95% Student-t "
            "interval of each mean below it (two or more runs), then the bin's ok and diverged runs.</p>",
            _bins_html(bins),
            "<h3>Fig. 6 and Fig. 8</h3>",
            _figure(records_report.fig6(task, rows), f"{task}: Fig. 6"),
            _figure(records_report.fig8(task, rows), f"{task}: Fig. 8"),
        ]
    )


def render_report(records: Sequence[RunRecord], *, title: str, parent=None) -> str:
    """The report page of ``records`` (see the module doc), with the predicted-vs-actual plots of
    ``parent`` (a :class:`sbrnn.parent.models.Parent`) when given; an HTML document as a string."""
    frame = records_table(records).to_pandas()
    summary = records_report.summary(frame)
    tasks = sorted(frame["task"].unique())
    studies = _studies_section(frame)
    links = [("counts", "Runs by task and status"), ("importance", "Hyperparameter importance")]
    if studies:
        links.append(("studies", "Tuning studies"))
    if parent is not None:
        links.append(("parent", "Parent"))
    links += [(_anchor(t), t) for t in tasks]
    nav = "<nav>" + "<br>".join(f'<a href="#{a}">{_e(name)}</a>' for a, name in links) + "</nav>"
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{summary.runs} runs over {len(tasks)} tasks; written {made} by sbrnn {_e(__version__)}. "
        "Everything is in this file: it loads nothing.</p>",
        nav,
        _counts_section(summary),
        _importance_section(importance(frame)),
        studies,
        "" if parent is None else _parent_section(parent, records),
        *(_task_section(t, frame[frame["task"] == t], summary.bins[t]) for t in tasks),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f'<meta name=viewport content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{CSS}</style><script>{SCRIPT}</script></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise SbrnnError(f"report file {str(out)!r} is a directory")
    folder = out.parent
    if not folder.is_dir():
        raise SbrnnError(f"the directory of report file {str(out)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SbrnnError(f"the directory of report file {str(out)!r} is not writable")


def write_report(
    directory: str | os.PathLike, out: str | os.PathLike, parent_directory: str | os.PathLike | None = None
) -> Path:
    """Write the report page of the records in ``directory`` to ``out`` atomically, with the
    predicted-vs-actual plots of the parent in ``parent_directory`` when given; returns ``out``.

    Raises :class:`SbrnnError` when ``directory`` is not a directory or holds no readable records,
    when ``out``'s directory is missing or not writable, or when the parent cannot be loaded.
    Unreadable records files are skipped with a warning naming each.
    """
    from sbrnn.parent.store import load_parent

    out = Path(out)
    _check_out(out)
    if not Path(directory).is_dir():
        raise SbrnnError(f"records directory {str(directory)!r} does not exist")
    parent = None if parent_directory is None else load_parent(parent_directory)[0]
    records = read_records(directory)
    if not records:
        raise SbrnnError(f"records directory {str(directory)!r} holds no readable records")
    page = render_report(records, title=f"sbrnn records report: {directory}", parent=parent)
    try:
        return atomic_write_text(out, page)
    except OSError as exc:
        raise SbrnnError(f"report file {str(out)!r} cannot be written: {exc.strerror or exc}") from None
