"""Write the datasheet of a meta-dataset from its records and its plan file.

    python sweeps/datasheet.py data/zoo-v1 sweeps/zoo-v1.toml \
        --notes sweeps/zoo-v1-notes.md > data/zoo-v1/DATASHEET.md

The tables (tasks and why, runs by status, budgets and epochs, wall time) come from the records and
the plan; ``--notes`` appends a hand-written part (how the sweep was run, what it cost, what changed
while it ran, how to extend it), so every number in the datasheet is read, not typed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import polars as pl

from sbrnn.child.sweep.plan_file import load_plan
from sbrnn.datasets.registry import get_info
from sbrnn.records import read_frame, record_files


def _lstm_rates(plan) -> str:
    """Which tasks' LSTM also trains at other learning rates (``lstm_lrs``), in words."""
    by_rates = Counter(entry.lstm_lrs for entry in plan.tasks if entry.lstm_lrs)
    return "".join(
        f", the LSTM also at learning rates {', '.join(f'{r:g}' for r in rates)} on {n} of "
        f"{len(plan.tasks)} tasks"
        for rates, n in by_rates.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--notes", type=Path, default=None)
    parser.add_argument(
        "--what",
        default="The meta-dataset the shipped parent learns from",
        help="the first sentence's subject: what these records are for",
    )
    args = parser.parse_args(argv)
    plan = load_plan(args.plan)
    planned = plan.planned_runs()
    frame = read_frame(args.records)
    files = record_files(args.records)
    size = sum(p.stat().st_size for p in files)
    counts = frame.group_by("task", "status").len().pivot("status", index="task", values="len").fill_null(0)
    statuses = [s for s in ("ok", "diverged", "failed", "pruned") if s in counts.columns]
    planned_by_task: dict[str, int] = {}
    for run in planned:
        planned_by_task[run.config.task] = planned_by_task.get(run.config.task, 0) + 1
    total = frame.height
    started, ended = frame["created_at"].min(), frame["created_at"].max()
    out = [
        f"# Datasheet: {plan.name}",
        "",
        f"{args.what}: {total:,} run records of {plan.name}'s "
        f"{len(planned):,} planned runs over {frame['task'].n_unique()} tasks, one Parquet file per task "
        f"({len(files)} files, {size / 1e6:.1f} MB). Read it with `sbrnn records summary {args.records}`, "
        f'`sbrnn.read_frame("{args.records}")` or `polars.read_parquet("{args.records}/*.parquet")`.',
        "",
        f"Plan: `{args.plan}` (seed {plan.seed}, space `{plan.space}`; per task and budget the balanced "
        f"configuration, the dense, uniform-0.2 and LSTM baselines{_lstm_rates(plan)} and the random "
        "draws of the plan). "
        f"Records written from {started} to {ended} (UTC).",
        "",
        "## Runs by task",
        "",
        "| task | family | n_x | n_y | T | loss | budgets | epochs | planned | recorded | "
        + " | ".join(statuses)
        + " |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|" + "---:|" * len(statuses),
    ]
    for entry in plan.tasks:
        info = get_info(entry.name)
        row = counts.filter(pl.col("task") == entry.name)
        got = {s: int(row[s][0]) if row.height else 0 for s in statuses}
        budgets = ", ".join(f"{b / 1000:g}k" for b in entry.budgets)
        out.append(
            f"| {entry.name} | {info.family} | {info.n_x} | {info.n_y} | {info.steps} | {info.loss} | "
            f"{budgets} | "
            f"{entry.epochs} | {planned_by_task.get(entry.name, 0)} | {sum(got.values())} | "
            + " | ".join(str(got[s]) for s in statuses)
            + " |"
        )
    by_status = frame.group_by("status").len().sort("status")
    out += [
        "",
        "Runs by status: " + ", ".join(f"{n:,} {s}" for s, n in by_status.iter_rows()) + ".",
        f"Training time recorded in the runs (`wall_seconds`, shared out by populations): "
        f"{frame['wall_seconds'].sum() / 3600:.1f} worker-hours.",
        "",
        "## Why each task is in",
        "",
    ]
    out += [f"- `{entry.name}`: {entry.why}" for entry in plan.tasks if entry.why]
    if args.notes is not None:
        out += ["", args.notes.read_text().rstrip()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
