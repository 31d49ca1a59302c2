"""Reproduce the paper's claims with seeds and error bars: Fig. 1, Table IV, Adroit Hammer.

Every training, evaluation and summary step is a ``python -m sbrnn.cli ...`` command, printed
(``$ ...`` on stderr) before it runs, so a reader can copy any of them. Runs go into ``--runs DIR``
(default ``runs/reproduce/<part>``, ``runs/reproduce/<part>-quick`` with ``--quick``, so the
two never mix in one table) as records; rerunning the same command skips what is recorded
(the sweep resumes by itself; single ``child train`` runs are looked up in the records first).

``--part fig1``
    The balanced child against the dense, uniform-0.2 and LSTM baselines and the Fig. 4
    configuration (``.2,1,1/.2,.2,1``) on ``rad`` at 100k weights, at the paper's size (30,000 /
    1,000 / 1,000 sequences) and at the default size (6,000 / 500 / 500), 5 seeds, 25 epochs;
    the same on ``rad-mnist`` when its MNIST files are here (``sbrnn datasets list --json``).
    Tables: mean and std over seeds of the minimum validation loss and the test accuracy; paired
    differences (balanced minus each other, same seeds) with a 95% t interval; curves with bands.
``--part table4``
    A ``rad`` sweep of the paper's space at 50k (300 draws and the baselines) plus 30 stratified
    draws in each of the bins ``.2-.4``, ``.4-.6``, ``.6-.8`` of the hidden proportion (the paper's
    space reaches ``>=.8`` nowhere at 2,500 inputs and 50k: its density floor 0.02 caps the
    proportion at about 0.799), 25 epochs. Tables: mean minimum validation loss by hidden-proportion
    bin (every run: ``sbrnn records summary``) and by model-density bin (the paper's draws only:
    stratified draws oversample high hidden proportions, which skews density bins), 95% intervals,
    counts, the paper's values beside them; Fig. 8 (``sbrnn records plot``).
``--part adroit``
    Behaviour cloning on ``hammer-local`` (Adroit Hammer under a smooth random policy collected on
    this machine, not the paper's expert data): the balanced child, the baselines and the paper's
    Adroit optimum (eq. 7, ``1,.2,.2/1,1,.2``) at 50k and 100k, 3 seeds, 25 epochs, each saved and
    rolled out in ``AdroitHandHammer-v1`` (10 episodes) for its normalised score.

``--quick`` shrinks every part to minutes: fig1 2 seeds, 1,000 / 200 / 200 sequences, 3 epochs,
budget 40k (RAD's dense y row alone holds 25,100 weights, so 20k fits neither the dense nor the
balanced child); table4 20 draws and 3 stratified per bin, 1,000 / 200 / 200 sequences, 2 epochs;
adroit 1 seed, 2 epochs, 2 episodes, budget 5k. Tables go to stdout (``--json``: one JSON object)
and to ``DIR/tables.md`` and ``DIR/tables.json``; figures into ``DIR``. Single runs train with one
torch thread each; ``--workers N`` runs the table4 sweep on N processes and fig1's single runs N at
a time; ``--studies rad-default-size`` runs only the named fig1 studies.

    python benchmarks/reproduce.py --part table4 --quick
    python benchmarks/reproduce.py --part table4 --workers 2
    python benchmarks/reproduce.py --part fig1 --runs runs/fig1 --json
    python benchmarks/reproduce.py --part fig1 --studies rad-default-size --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sbrnn.child.weight_space import balance, parse_grid
from sbrnn.datasets.registry import get_info
from sbrnn.errors import SbrnnError
from sbrnn.records_report import BIN_EDGES, BIN_LABELS, binned_min_loss, load_frame, mean_interval

PARTS = ("fig1", "table4", "adroit")
PAPER_HP = dict(zip(BIN_LABELS, (1.791, 1.351, 1.352, 1.373, 1.431)))
PAPER_DENSITY = dict(zip(BIN_LABELS, (1.381, 1.511, 1.810, 2.026, 2.091)))
QUICK_SIZE = {"n_train": 1000, "n_val": 200, "n_test": 200}
PAPER_SIZE = {"n_train": 30000, "n_val": 1000, "n_test": 1000}


@dataclass(frozen=True)
class Config:
    """One configuration compared across seeds: its name and the ``child train`` flags it takes."""

    name: str
    arch: str
    densities: str | None = None  # None for sbrnn: the a-priori balanced densities

    def flags(self) -> list[str]:
        """The ``child train`` flags that select it."""
        if self.arch == "sbrnn":
            return ["--densities", self.densities] if self.densities else ["--balanced"]
        if self.arch == "uniform":
            return ["--arch", "uniform", "--uniform-density", "0.2"]
        return ["--arch", self.arch]

    def grid(self, task: str, budget: float) -> tuple | None:
        """The density grid its records carry (None for the baselines, matched by arch alone)."""
        if self.arch != "sbrnn":
            return None
        if self.densities:
            return parse_grid(self.densities, "densities")
        info = get_info(task)
        return balance(info.n_x, info.n_y, budget).spec.densities


BALANCED = Config("balanced", "sbrnn")
BASELINES = (Config("dense", "dense"), Config("uniform-0.2", "uniform"), Config("lstm", "lstm"))
FIG4 = Config("fig4 .2,1,1/.2,.2,1", "sbrnn", ".2,1,1/.2,.2,1")
EQ7 = Config("eq7 1,.2,.2/1,1,.2", "sbrnn", "1,.2,.2/1,1,.2")


@dataclass(frozen=True)
class Study:
    """One task at one size: its records go into their own directory ``name``."""

    name: str
    task: str
    options: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fig1Settings:
    """Sizes of the Fig. 1 study; ``rad-mnist`` joins at ``mnist_options`` when its files are here
    (None: never)."""

    studies: tuple[Study, ...]
    budget: float
    seeds: tuple[int, ...]
    epochs: int
    mnist_options: Mapping[str, int] | None
    configs: tuple[Config, ...] = (BALANCED, *BASELINES, FIG4)


@dataclass(frozen=True)
class Table4Settings:
    """Sizes of the Table IV sweep."""

    task: str
    budget: float
    draws: int
    stratify: str
    epochs: int
    options: Mapping[str, int]
    seed: int = 0
    workers: int = 1


@dataclass(frozen=True)
class AdroitSettings:
    """Sizes of the Adroit Hammer study."""

    task: str
    env: str
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int
    episodes: int
    configs: tuple[Config, ...] = (BALANCED, *BASELINES, EQ7)


FIG1 = Fig1Settings(
    studies=(Study("rad-paper-size", "rad", PAPER_SIZE), Study("rad-default-size", "rad")),
    budget=100_000,
    seeds=(0, 1, 2, 3, 4),
    epochs=25,
    mnist_options={},
)
FIG1_QUICK = Fig1Settings(
    studies=(Study("rad-quick-size", "rad", QUICK_SIZE),),
    budget=40_000,
    seeds=(0, 1),
    epochs=3,
    mnist_options=QUICK_SIZE,
)
TABLE4 = Table4Settings("rad", 50_000, 300, "30:.2-.4,.4-.6,.6-.8", 25, {})
TABLE4_QUICK = Table4Settings("rad", 50_000, 20, "3:.2-.4,.4-.6,.6-.8", 2, QUICK_SIZE)
ADROIT = AdroitSettings("hammer-local", "AdroitHandHammer-v1", (50_000, 100_000), (0, 1, 2), 25, 10)
ADROIT_QUICK = AdroitSettings("hammer-local", "AdroitHandHammer-v1", (5_000,), (0,), 2, 2)


class Log:
    """The commands a part ran (as a reader types them) and the wall time of each."""

    def __init__(self) -> None:
        self.commands: list[dict] = []

    def cli(self, args: Sequence[str], *, allowed: tuple[int, ...] = (0,)) -> str:
        """Print and run ``python -m sbrnn.cli ARGS``; its stdout. Exit statuses outside
        ``allowed`` raise :class:`SbrnnError` (the command's own message is on stderr above)."""
        shown = shlex.join(["python", "-m", "sbrnn.cli", *args])
        print(f"$ {shown}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sbrnn.cli", *args], stdout=subprocess.PIPE, text=True)
        self.commands.append({"command": shown, "seconds": round(time.perf_counter() - start, 1)})
        if done.returncode not in allowed:
            raise SbrnnError(f"command ended with exit status {done.returncode}: {shown}")
        return done.stdout


def _option_flags(options: Mapping[str, object]) -> list[str]:
    return [flag for key, value in options.items() for flag in ("--task-option", f"{key}={value}")]


def _frame(directory: Path) -> pd.DataFrame | None:
    """The records of ``directory``, None where it holds none yet."""
    if not directory.is_dir() or not any(directory.glob("*.parquet")):
        return None
    return load_frame(directory)


def _matches(frame: pd.DataFrame | None, config: Config, task: str, budget: float, seed: int, epochs: int):
    """The records of ``config`` at this budget, seed and epochs (an empty frame: none)."""
    if frame is None:
        return pd.DataFrame()
    rows = frame[
        (frame["arch"] == config.arch)
        & (frame["seed"] == seed)
        & (frame["epochs"] == epochs)
        & np.isclose(frame["budget"].astype(float), budget)
    ]
    grid = config.grid(task, budget)
    if grid is not None:
        wanted = dict(zip(("d_hx", "d_hh", "d_hy", "d_yx", "d_yh", "d_yy"), (d for row in grid for d in row)))
        for column, value in wanted.items():
            rows = rows[np.isclose(rows[column].astype(float), value)]
    return rows


def train_once(
    log: Log,
    records: Path,
    study: Study,
    config: Config,
    budget: float,
    seed: int,
    epochs: int,
    save: Path | None = None,
) -> pd.Series:
    """The record of ``config`` at this seed, training it with ``child train`` unless recorded
    (and, with ``save``, unless its saved model is there too)."""
    found = _matches(_frame(records), config, study.task, budget, seed, epochs)
    saved = (
        save is None or (save / "config.json").is_file() or (len(found) and found.iloc[0]["status"] != "ok")
    )
    if len(found) and saved:
        return found.iloc[0]
    args = ["child", "train", "--task", study.task, *_option_flags(study.options), *config.flags()]
    args += ["--budget", f"{budget:g}", "--epochs", str(epochs), "--seed", str(seed), "--threads", "1"]
    args += ["--records", str(records), "--json"]
    if save is not None:
        args += ["--save", str(save)]
    log.cli(args, allowed=(0, 1))  # 1: the run diverged or failed, and is recorded so
    found = _matches(_frame(records), config, study.task, budget, seed, epochs)
    if not len(found):
        raise SbrnnError(f"no record of {config.name} (seed {seed}) in {records} after training it")
    return found.iloc[0]


def _interval(values: Sequence[float]) -> dict:
    """Mean, std and the 95% t interval of the mean of ``values`` (None where undefined)."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    mean, low, high = mean_interval(array)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else None
    return {"n": int(len(array)), "mean": mean, "std": std, "ci_low": low, "ci_high": high}


def compare(runs: Mapping[str, Mapping[int, pd.Series]], reference: str, metrics: Sequence[str]) -> dict:
    """Per configuration, mean and std over seeds of ``metrics`` (ok runs); and per other
    configuration, the paired difference ``reference - other`` over the seeds where both ended ok."""
    by_config = {}
    for name, seeds in runs.items():
        ok = {s: r for s, r in seeds.items() if r["status"] == "ok"}
        by_config[name] = {
            "seeds": len(seeds),
            "ok": len(ok),
            **{m: _interval([float(r[m]) for r in ok.values() if pd.notna(r[m])]) for m in metrics},
        }
    paired = {}
    for name, seeds in runs.items():
        if name == reference:
            continue
        both = [
            s
            for s in seeds
            if s in runs[reference] and seeds[s]["status"] == "ok" and runs[reference][s]["status"] == "ok"
        ]
        paired[name] = {
            "seeds": both,
            **{
                m: _interval([float(runs[reference][s][m]) - float(seeds[s][m]) for s in both])
                for m in metrics
            },
        }
    return {"configs": by_config, "paired": paired}


def _curves_png(study: str, budget: float, runs: Mapping[str, Mapping[int, pd.Series]], out: Path) -> Path:
    """Validation loss and accuracy per epoch: mean over seeds and a band of +-1 std."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, seeds in runs.items():
        for ax, column in zip(axes, ("val_loss", "val_acc")):
            curves = [np.asarray(r[column], dtype=float) for r in seeds.values() if len(r[column])]
            if not curves:
                continue
            width = min(len(c) for c in curves)
            matrix = np.stack([c[:width] for c in curves])
            mean, std = matrix.mean(axis=0), matrix.std(axis=0)
            epochs = np.arange(1, width + 1)
            (line,) = ax.plot(epochs, mean, label=f"{name} ({len(curves)} seeds)")
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    for ax, label in zip(axes, ("validation loss", "validation accuracy")):
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{study}, {budget:,.0f} weights: mean over seeds, band +-1 std")
    path = out / f"fig1-{study}.png"
    fig.savefig(path, dpi=110)
    return path


def mnist_offline(log: Log) -> bool:
    """Whether ``rad-mnist``'s files are here (``sbrnn datasets list --json``)."""
    tasks = json.loads(log.cli(["datasets", "list", "--json"]))
    return any(t["name"] == "rad-mnist" and t["offline"] for t in tasks)


def fig1(settings: Fig1Settings, out: Path, log: Log, workers: int = 1, only: Sequence[str] = ()) -> dict:
    """The Fig. 1 comparison: per study, stats over seeds, paired differences, a curves PNG. The
    single runs of a study go ``workers`` at a time; ``only`` names the studies to run (all: empty)."""
    studies = list(settings.studies)
    if settings.mnist_options is not None:
        if mnist_offline(log):
            studies.append(Study("rad-mnist", "rad-mnist", settings.mnist_options))
        else:
            print("rad-mnist: MNIST files not here; skipped", file=sys.stderr)
    unknown = sorted(set(only) - {study.name for study in studies})
    if unknown:
        names = ", ".join(study.name for study in studies)
        raise SbrnnError(f"unknown fig1 study {unknown[0]!r}; this run has: {names}")
    studies = [study for study in studies if not only or study.name in only]
    tables: dict = {"budget": settings.budget, "epochs": settings.epochs, "seeds": list(settings.seeds)}
    tables["studies"] = {}
    for study in studies:
        records = out / study.name
        jobs = [(c, s) for c in settings.configs for s in settings.seeds]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # each job is a subprocess
            futures = [
                pool.submit(train_once, log, records, study, c, settings.budget, s, settings.epochs)
                for c, s in jobs
            ]
            done = [future.result() for future in futures]
        runs: dict = {c.name: {} for c in settings.configs}
        for (config, seed), record in zip(jobs, done):
            runs[config.name][seed] = record
        result = compare(runs, BALANCED.name, ("min_val_loss", "test_acc"))
        result["task"], result["options"] = study.task, dict(study.options)
        result["figure"] = str(_curves_png(study.name, settings.budget, runs, out))
        tables["studies"][study.name] = result
    return tables


def table4(settings: Table4Settings, out: Path, log: Log) -> dict:
    """The Table IV sweep, its summary by bin beside the paper's values, and Fig. 8."""
    records = out / "records"
    args = ["child", "sweep", "--task", settings.task, "--budget", f"{settings.budget:g}"]
    args += ["--runs", str(settings.draws), "--include-baselines", "--stratify-hp", settings.stratify]
    args += ["--epochs", str(settings.epochs), "--seed", str(settings.seed), *_option_flags(settings.options)]
    args += ["--workers", str(settings.workers), "--records", str(records), "--json"]
    sweep = json.loads(log.cli(args, allowed=(0, 1)))
    summary = json.loads(log.cli(["records", "summary", str(records), "--json"]))
    log.cli(["records", "plot", str(records), "--out", str(out / "figs")])
    frame = load_frame(records)
    frame = frame[frame["task"] == settings.task]
    labels = frame["label"].fillna("")
    stratified = labels.str.startswith("stratified ")
    drawn = frame[labels.str.startswith("random ")]
    views = summary["tasks"][settings.task]
    bins = _hp_bins(frame)
    hp_rows = []
    for row in views["hidden_proportion"]:
        in_bin = bins == row["bin"]
        hp_rows.append({**row, "stratified": int((in_bin & stratified).sum()), "paper": PAPER_HP[row["bin"]]})
    density_rows = [
        {**b.to_dict(), "paper": PAPER_DENSITY[b.bin]} for b in binned_min_loss(drawn, "model_density")
    ]
    return {
        "task": settings.task,
        "budget": settings.budget,
        "epochs": settings.epochs,
        "draws": settings.draws,
        "stratify": settings.stratify,
        "options": dict(settings.options),
        "sweep": {k: sweep.get(k) for k in ("planned", "already_done", "finished", "statuses", "seconds")},
        "counts": summary["counts"],
        "hidden_proportion": hp_rows,
        "model_density_draws_only": density_rows,
        "model_density_all_runs": [{**b, "paper": PAPER_DENSITY[b["bin"]]} for b in views["model_density"]],
        "figure": str(out / "figs" / f"fig8_{settings.task}.png"),
    }


def _hp_bins(frame: pd.DataFrame) -> pd.Series:
    """Each run's hidden-proportion bin (``records_report``'s bins; None without a block grid)."""
    values = frame["hidden_proportion"].astype(float)
    index = np.digitize(values.fillna(-1.0), BIN_EDGES)
    return pd.Series(
        [BIN_LABELS[i] if pd.notna(v) else None for i, v in zip(index, values)], index=frame.index
    )


def adroit(settings: AdroitSettings, out: Path, log: Log) -> dict:
    """Behaviour cloning on ``settings.task``, then each saved child rolled out in ``settings.env``."""
    records = out / "records"
    study = Study(settings.task, settings.task)
    tables: dict = {
        "task": settings.task,
        "env": settings.env,
        "epochs": settings.epochs,
        "episodes": settings.episodes,
        "seeds": list(settings.seeds),
        "budgets": {},
    }
    for budget in settings.budgets:
        runs: dict[str, dict[int, pd.Series]] = {}
        for config in settings.configs:
            runs[config.name] = {}
            for seed in settings.seeds:
                slug = f"{config.name.split()[0]}-{budget:g}-s{seed}"
                model = out / "models" / slug
                record = train_once(log, records, study, config, budget, seed, settings.epochs, save=model)
                record = record.copy()
                record["normalised_score"] = record["mean_return"] = None
                if record["status"] == "ok":
                    result = _rollout(log, model, out / "eval" / f"{slug}.json", settings)
                    record["normalised_score"] = result["mean_normalised_score"]
                    record["mean_return"] = result["mean_return"]
                runs[config.name][seed] = record
        metrics = ("min_val_loss", "normalised_score", "mean_return")
        tables["budgets"][f"{budget:g}"] = compare(runs, BALANCED.name, metrics)
    return tables


def _rollout(log: Log, model: Path, result: Path, settings: AdroitSettings) -> dict:
    """The rollout of ``model`` (``child evaluate --env``), kept in ``result`` and read from there
    on a rerun."""
    if result.is_file():
        return json.loads(result.read_text())
    args = ["child", "evaluate", "--model", str(model), "--env", settings.env]
    args += ["--episodes", str(settings.episodes), "--json"]
    text = log.cli(args)
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(text)
    return json.loads(text)


def _f(value, spec: str = ".3f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and not math.isfinite(value))
        else format(value, spec)
    )


def _ci(stats: Mapping) -> str:
    if stats["ci_low"] is None:
        return "-"
    return f"[{_f(stats['ci_low'])}, {_f(stats['ci_high'])}]"


def _comparison_md(result: Mapping, metrics: Sequence[tuple[str, str]]) -> list[str]:
    head = "| config | ok / seeds | " + " | ".join(f"{label} mean +- std" for _, label in metrics) + " |"
    lines = [head, "|" + "---|" * (2 + len(metrics))]
    for name, row in result["configs"].items():
        cells = [f"{_f(row[m]['mean'])} +- {_f(row[m]['std'])}" for m, _ in metrics]
        lines.append(f"| {name} | {row['ok']} / {row['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Paired, balanced minus each (same seeds), mean difference and 95% t interval:", ""]
    lines.append("| balanced minus | seeds | " + " | ".join(label for _, label in metrics) + " |")
    lines.append("|" + "---|" * (2 + len(metrics)))
    for name, row in result["paired"].items():
        cells = [f"{_f(row[m]['mean'], '+.3f')} {_ci(row[m])}" for m, _ in metrics]
        lines.append(f"| {name} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    return lines


def _bins_md(rows: Sequence[Mapping], extra: str | None = None) -> list[str]:
    head = "| bin | paper | runs | mean min val loss | 95% interval | diverged |"
    lines = [head + (f" {extra} |" if extra else ""), "|---|---|---|---|---|---|" + ("---|" if extra else "")]
    for row in rows:
        interval = _ci({"ci_low": row["ci_low"], "ci_high": row["ci_high"]})
        line = f"| {row['bin']} | {row['paper']:.3f} | {row['runs']} | {_f(row['mean_min_val_loss'])} | "
        line += f"{interval} | {row['diverged']} |"
        lines.append(line + (f" {row[extra]} |" if extra else ""))
    return lines


def markdown(part: str, tables: Mapping) -> str:
    """The part's tables as Markdown."""
    lines: list[str] = []
    if part == "fig1":
        for name, study in tables["studies"].items():
            lines += [f"### {name} ({study['task']}, options {study['options'] or 'default'})", ""]
            lines += _comparison_md(study, (("min_val_loss", "min val loss"), ("test_acc", "test acc")))
            lines += ["", f"Curves: `{study['figure']}`", ""]
    elif part == "table4":
        for row in tables["counts"]:
            statuses = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("task", "total"))
            lines += [f"Runs of {row['task']}: {row['total']} ({statuses})", ""]
        lines += ["Mean minimum validation loss by hidden-proportion bin (every run):", ""]
        lines += _bins_md(tables["hidden_proportion"], "stratified")
        lines += ["", "By model-density bin (the paper's draws only, no stratified or baseline runs):", ""]
        lines += _bins_md(tables["model_density_draws_only"])
        lines += ["", f"Fig. 8: `{tables['figure']}`", ""]
    else:
        metrics = (
            ("min_val_loss", "min val loss"),
            ("normalised_score", "normalised score (0 random, 100 expert)"),
            ("mean_return", "return"),
        )
        for budget, result in tables["budgets"].items():
            lines += [f"### {tables['task']} at {float(budget):,.0f} weights", ""]
            lines += [*_comparison_md(result, metrics), ""]
    return "\n".join(lines)


def run_part(part: str, quick: bool, out: Path, workers: int = 1, studies: Sequence[str] = ()) -> dict:
    """Run one part at its full or quick sizes into ``out`` (the Table IV sweep, or Fig. 1's single
    runs, on ``workers`` processes; Fig. 1's ``studies`` only, where given); its tables, commands and
    wall time."""
    out.mkdir(parents=True, exist_ok=True)
    log = Log()
    start = time.perf_counter()
    if part == "fig1":
        tables = fig1(FIG1_QUICK if quick else FIG1, out, log, workers, studies)
    elif part == "table4":
        tables = table4(replace(TABLE4_QUICK if quick else TABLE4, workers=workers), out, log)
    else:
        tables = adroit(ADROIT_QUICK if quick else ADROIT, out, log)
    return finish(part, quick, out, log, tables, time.perf_counter() - start)


def finish(part: str, quick: bool, out: Path, log: Log, tables: dict, seconds: float) -> dict:
    """Write ``tables.json`` and ``tables.md`` into ``out``; the whole result."""
    result = {
        "part": part,
        "quick": quick,
        "runs": str(out),
        "wall_seconds": round(seconds, 1),
        "commands": log.commands,
        "tables": tables,
    }
    (out / "tables.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    (out / "tables.md").write_text(markdown(part, tables) + "\n")
    return result


def _json_default(value):
    """numpy scalars (record fields) as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--quick", action="store_true", help="minutes instead of hours (see the module doc)")
    parser.add_argument("--runs", type=Path, help="records and results (default runs/reproduce/PART[-quick])")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--workers", type=int, default=1, help="processes: table4's sweep, fig1's runs")
    parser.add_argument("--studies", default="", help="fig1: comma-separated studies to run (default all)")
    args = parser.parse_args(argv)
    default = Path("runs/reproduce") / (args.part + ("-quick" if args.quick else ""))
    out = args.runs if args.runs is not None else default
    studies = [name for name in args.studies.split(",") if name]
    try:
        result = run_part(args.part, args.quick, out, args.workers, studies)
    except SbrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, default=_json_default))
    else:
        print(markdown(args.part, result["tables"]))
        print(f"\n{len(result['commands'])} commands, {result['wall_seconds']:.0f} s wall; tables in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
