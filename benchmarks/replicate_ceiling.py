"""How well can any parent rank a task's configurations? The same runs again with another seed.

The parent's offline measure (``benchmarks/meta_loto.py``) is the within-task Spearman of its
scores against the recorded minimum validation losses, and the percentile of its top-1 among the
task's random draws. Both are bounded by the runs' own noise: a configuration's loss moves with
its seed (masks, initial weights, data order and, for generated tasks, the data). This script
retrains every planned run of a zoo task at one budget (the random draws, the a-priori balanced
configuration and the baselines) with another seed, and reports per task:

``spearman``        Spearman's rho of the two seeds' minimum validation losses over the runs that
                    converged in both: the correlation a perfect predictor of the expected loss
                    would reach against one seed's losses is at most about ``sqrt`` of this
                    (attenuation), and a predictor of seed 0's own losses reaches this.
``top1 percentile`` the share of the replicate's random draws beaten (on the replicate seed) by
                    the run that was best at seed 0: the best an oracle of seed-0 results does on a
                    fresh seed, the ceiling of the parent's top-1 percentile.
``top1 regret``     the same run's normalised regret on the replicate seed,
                    ``(its loss - best) / (worst - best)``.
``ceiling``         ``sqrt(spearman)``: if a run's loss is its configuration's expected loss plus
                    independent seed noise, the correlation of the expected loss (a perfect
                    parent) with one seed's losses is the square root of the seed-vs-seed one.

With ``--loto FILE`` (the JSON of ``benchmarks/meta_loto.py --json``) the parent's own
leave-one-task-out Spearman and top-1 percentile for the same task and budget stand beside them.

Runs go into ``--runs DIR/<task>`` as sbrnn records (rerunning resumes: the sweep skips what is
recorded).

    python benchmarks/replicate_ceiling.py --tasks toy-regression,parity,hopper-dynamics
    python benchmarks/replicate_ceiling.py --tasks seq-digits --seed 2 --workers 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from sbrnn.child.sweep.coordinator import run_sweep
from sbrnn.child.sweep.executors import LocalProcesses, run_job
from sbrnn.child.sweep.plan import PlannedRun
from sbrnn.child.sweep.plan_file import PlanFile, load_plan
from sbrnn.errors import SbrnnError
from sbrnn.records import read_records

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "sweeps" / "zoo-v1.toml"


def replicate_plan(plan: PlanFile, task: str, budget_index: int, seed: int) -> tuple[float, list[PlannedRun]]:
    """The plan's runs of ``task`` at its ``budget_index``-th budget (sorted), with ``seed``."""
    entry = plan.task(task)
    budgets = sorted(entry.budgets)
    if not -len(budgets) <= budget_index < len(budgets):
        raise SbrnnError(f"budget index {budget_index} is out of range; allowed: 0..{len(budgets) - 1}")
    budget = budgets[budget_index]
    runs = [
        PlannedRun(run.label, dataclasses.replace(run.config, seed=seed))
        for run in plan.planned_runs()
        if run.config.task == task and run.config.budget == budget
    ]
    return budget, runs


def compare(original: dict[str, float | None], replicate: dict[str, float | None], random: set[str]) -> dict:
    """Seed-vs-seed agreement of the minimum validation losses of the same labels (None = did not
    converge)."""
    both = sorted(k for k in original if original[k] is not None and replicate.get(k) is not None)
    a = np.array([original[k] for k in both])
    b = np.array([replicate[k] for k in both])
    rho = float(spearmanr(a, b).statistic) if len(both) >= 3 else None
    drawn = sorted(k for k in both if k in random)
    ceiling = float(np.sqrt(rho)) if rho is not None and rho > 0 else None
    out: dict = {"runs": len(both), "random_draws": len(drawn), "spearman": rho, "ceiling": ceiling}
    if drawn:
        best_at_seed0 = min(drawn, key=lambda k: original[k])
        values = np.array([replicate[k] for k in drawn])
        value = replicate[best_at_seed0]
        span = float(values.max() - values.min()) or 1.0
        out["top1_percentile"] = float(np.mean(value < values))
        out["top1_regret"] = float((value - values.min()) / span)
    return out


def losses(records, seed: int, task: str, budget: float) -> dict[str, float | None]:
    """``label -> min_val_loss`` (None unless ok) of the records of ``task`` at ``budget`` and ``seed``."""
    return {
        r.label: (r.min_val_loss if r.status == "ok" else None)
        for r in records
        if r.task == task and r.budget == budget and r.seed == seed and r.label
    }


def parent_scores(path: Path | None, model: str = "ranker") -> dict[tuple[str, float], dict]:
    """``(task, budget) -> {"spearman", "percentile"}`` of ``model`` in a meta_loto JSON (or none)."""
    if path is None:
        return {}
    groups = json.loads(path.read_text())["offline"][model]["by_group"]
    return {(g["task"], float(g["budget"])): {k: g[k] for k in ("spearman", "percentile")} for g in groups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True, help="comma-separated zoo tasks")
    parser.add_argument("--plan", type=Path, default=PLAN)
    parser.add_argument("--records", type=Path, default=ROOT / "data" / "zoo-v1", help="the seed-0 records")
    parser.add_argument("--budget-index", type=int, default=1, help="which of the task's budgets (sorted)")
    parser.add_argument("--seed", type=int, default=1, help="the replicate's seed")
    parser.add_argument("--runs", type=Path, default=Path("runs/replicate"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loto", type=Path, help="a meta_loto.py --json result: the parent's scores beside")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    parent = parent_scores(args.loto)
    try:
        plan_file = load_plan(args.plan)
        original_records = read_records(args.records)
        for task in [t for t in args.tasks.split(",") if t]:
            budget, plan = replicate_plan(plan_file, task, args.budget_index, args.seed)
            original = losses(original_records, plan_file.seed, task, budget)
            plan = [run for run in plan if run.label in original]  # replicate what seed 0 recorded
            out = args.runs / task
            report = run_sweep(plan, out, LocalProcesses(args.workers, 1, runner=run_job))
            replicate = losses(read_records(out), args.seed, task, budget)
            random = {run.label for run in plan if run.label.startswith("random")}
            row = {"task": task, "budget": budget, "finished": report.finished}
            row.update(compare(original, replicate, random))
            if (task, budget) in parent:
                row["parent"] = parent[(task, budget)]
            rows.append(row)
    except SbrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    summary = {
        "median_spearman": median(r["spearman"] for r in rows),
        "median_ceiling": median(r["ceiling"] for r in rows),
        "median_top1_percentile": median(r.get("top1_percentile") for r in rows),
        "median_parent_spearman": median(r["parent"]["spearman"] for r in rows if "parent" in r),
        "median_parent_percentile": median(r["parent"]["percentile"] for r in rows if "parent" in r),
    }
    if args.json:
        print(json.dumps({"seed": args.seed, "tasks": rows, **summary}, indent=2))
        return 0

    def cell(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(
        "| task | budget | runs | seed-vs-seed Spearman | ceiling | parent Spearman | top-1 pct (replicate) "
        "| parent top-1 pct | top-1 regret (replicate) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p = r.get("parent", {})
        cells = [r["task"], f"{r['budget']:,.0f}", str(r["runs"]), cell(r["spearman"]), cell(r["ceiling"])]
        cells += [cell(p.get("spearman")), cell(r.get("top1_percentile"), 2), cell(p.get("percentile"), 2)]
        cells += [cell(r.get("top1_regret"))]
        print("| " + " | ".join(cells) + " |")
    names = ("median_spearman", "median_ceiling", "median_parent_spearman")
    names += ("median_top1_percentile", "median_parent_percentile")
    print("; ".join(f"{k.replace('_', ' ')} {cell(summary[k])}" for k in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
