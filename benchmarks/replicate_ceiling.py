"""How well can any parent rank a task's configurations? The same runs again with another seed.

The parent's offline measure (``benchmarks/meta_loto.py``) is the within-task Spearman of its
scores against the recorded minimum validation losses, and the percentile of its top-1 among the
task's random draws. Both are bounded by the runs' own noise: a configuration's loss moves with
its seed (masks, initial weights, data order and, for generated tasks, the data). This script
retrains every planned run of a zoo task at one budget (the random draws, the a-priori balanced
configuration and the baselines) with another seed, and reports per task:

``seed vs seed``    Spearman's rho of the two seeds' minimum validation losses over the runs that
                    converged in both (JSON ``spearman``).
``ceiling``         its square root: if a run's loss is its configuration's expected loss plus
                    independent seed noise, the correlation of the expected loss (a perfect
                    parent) with one seed's losses is the square root of the seed-vs-seed one.
``oracle top-1``    the share of the replicate's random draws beaten (on the replicate seed) by
                    the run that was best at seed 0: what knowing seed 0's results gives on a
                    fresh seed (JSON ``top1_percentile``).
``oracle regret``   the same run's normalised regret on the replicate seed,
                    ``(its loss - best) / (worst - best)`` (JSON ``top1_regret``).
``oracle > rand@10`` the probability that the same run, on the replicate seed, beats the best of
                    10 of the other random draws picked at random (exact; JSON
                    ``top1_beats_best_of_10``): the closed loop's comparison with TPE's 10 trials
                    (TPE's first 10 are random), for a picker that knew seed 0's results.

Beside them, the parent as ``benchmarks/meta_loto.py`` measures it (the ranker the
shipped parent orders by, fitted on ``--records`` without the task): its Spearman against seed 0's
losses (what meta_loto reports), against the replicate's, and against both seeds' mean rank (a
less noisy target), and its top-1's percentile among the replicate's random draws (a fresh seed
the parent never saw, as in a closed loop) and its probability of beating the best of 10 of them.

Runs go into ``--runs DIR/<task>`` as sbrnn records (rerunning resumes: the sweep skips what is
recorded).

    python benchmarks/replicate_ceiling.py --tasks toy-regression,parity,hopper-dynamics
    python benchmarks/replicate_ceiling.py --tasks seq-digits --seed 2 --workers 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

from sbrnn.child.sweep.coordinator import run_sweep
from sbrnn.child.sweep.executors import LocalProcesses, run_job
from sbrnn.child.sweep.plan import PlannedRun
from sbrnn.child.sweep.plan_file import PlanFile, load_plan
from sbrnn.errors import SbrnnError
from sbrnn.parent.evaluate import config_ranker
from sbrnn.parent.features import TrainingData, training_data
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


TRIALS = 10
"""Random trials the top-1 is set against (the closed loop's TPE@10: its first 10 trials are random)."""


def beats_best_of(value: float, others: list[float], k: int = TRIALS) -> float | None:
    """The probability that ``value`` is lower than the best of ``k`` of ``others`` drawn without
    replacement (exact: ``C(worse, k) / C(n, k)``, ``worse`` the count of others above ``value``);
    None when fewer than ``k`` others."""
    if len(others) < k:
        return None
    worse = sum(v > value for v in others)
    return math.comb(worse, k) / math.comb(len(others), k)


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
        others = [replicate[k] for k in drawn if k != best_at_seed0]
        out["top1_beats_best_of_10"] = beats_best_of(value, others)
    return out


def losses(records, seed: int, task: str, budget: float) -> dict[str, float | None]:
    """``label -> min_val_loss`` (None unless ok) of the records of ``task`` at ``budget`` and ``seed``."""
    return {
        r.label: (r.min_val_loss if r.status == "ok" else None)
        for r in records
        if r.task == task and r.budget == budget and r.seed == seed and r.label
    }


def held_out_scores(data: TrainingData, task: str, budget: float) -> dict[str, float]:
    """``run_id -> score`` (lower ranks first) of ``task``'s runs at ``budget``, by the ranker
    fitted without ``task``."""
    held = data.task == task
    rows = held & (data.budget == budget)
    scores = config_ranker(0, 1)(data.subset(~held), data.subset(rows))
    return dict(zip(data.run_id[rows], scores))


def parent_agreement(
    score: dict[str, float],
    original: dict[str, float | None],
    replicate: dict[str, float | None],
    random: set[str],
) -> dict:
    """The parent's ``score`` (by label) against seed 0, the replicate, and their mean rank."""
    both = sorted(k for k in score if original.get(k) is not None and replicate.get(k) is not None)
    if len(both) < 3:
        return {}
    s = np.array([score[k] for k in both])
    a = np.array([original[k] for k in both])
    b = np.array([replicate[k] for k in both])
    out = {
        "spearman_seed0": float(spearmanr(s, a).statistic),
        "spearman_replicate": float(spearmanr(s, b).statistic),
        "spearman_mean_rank": float(spearmanr(s, rankdata(a) + rankdata(b)).statistic),
    }
    drawn = [k for k in both if k in random]
    if drawn:
        top = both[int(np.argmin(s))]
        out["top1_percentile_replicate"] = float(np.mean([replicate[top] < replicate[k] for k in drawn]))
        others = [replicate[k] for k in drawn if k != top]
        out["top1_beats_best_of_10_replicate"] = beats_best_of(replicate[top], others)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True, help="comma-separated zoo tasks")
    parser.add_argument("--plan", type=Path, default=PLAN)
    parser.add_argument("--records", type=Path, default=ROOT / "data" / "zoo-v1", help="the seed-0 records")
    parser.add_argument("--budget-index", type=int, default=1, help="which of the task's budgets (sorted)")
    parser.add_argument("--seed", type=int, default=1, help="the replicate's seed")
    parser.add_argument("--runs", type=Path, default=Path("runs/replicate"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-parent", action="store_true", help="skip the parent's scores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    try:
        plan_file = load_plan(args.plan)
        original_records = read_records(args.records)
        data = None if args.no_parent else training_data(original_records)
        label_of = {r.run_id: r.label for r in original_records}
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
            if data is not None:
                scored = held_out_scores(data, task, budget).items()  # labels repeat across budgets
                score = {label_of[k]: v for k, v in scored if label_of.get(k)}
                row["parent"] = parent_agreement(score, original, replicate, random)
            rows.append(row)
    except SbrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def majority(values):
        """The share of tasks where the probability is above one half."""
        values = [v for v in values if v is not None]
        return sum(v > 0.5 for v in values) / len(values) if values else None

    summary = {
        "median_spearman": median(r["spearman"] for r in rows),
        "median_ceiling": median(r["ceiling"] for r in rows),
        "median_top1_percentile": median(r.get("top1_percentile") for r in rows),
        "median_parent_spearman_seed0": median(r.get("parent", {}).get("spearman_seed0") for r in rows),
        "median_parent_spearman_mean_rank": median(
            r.get("parent", {}).get("spearman_mean_rank") for r in rows
        ),
        "median_parent_top1_percentile_replicate": median(
            r.get("parent", {}).get("top1_percentile_replicate") for r in rows
        ),
        "oracle_beats_best_of_10_tasks": majority(r.get("top1_beats_best_of_10") for r in rows),
        "parent_beats_best_of_10_tasks": majority(
            r.get("parent", {}).get("top1_beats_best_of_10_replicate") for r in rows
        ),
    }
    if args.json:
        print(json.dumps({"seed": args.seed, "tasks": rows, **summary}, indent=2))
        return 0

    def cell(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(
        "| task | budget | runs | seed vs seed | ceiling | parent vs seed 0 | parent vs replicate "
        "| parent vs mean rank | oracle top-1 pct | parent top-1 pct | oracle top-1 regret "
        "| oracle > rand@10 | parent > rand@10 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p = r.get("parent", {})
        cells = [r["task"], f"{r['budget']:,.0f}", str(r["runs"]), cell(r["spearman"]), cell(r["ceiling"])]
        cells += [cell(p.get(k)) for k in ("spearman_seed0", "spearman_replicate", "spearman_mean_rank")]
        cells += [cell(r.get("top1_percentile"), 2), cell(p.get("top1_percentile_replicate"), 2)]
        cells += [cell(r.get("top1_regret"))]
        cells += [cell(r.get("top1_beats_best_of_10"), 2), cell(p.get("top1_beats_best_of_10_replicate"), 2)]
        print("| " + " | ".join(cells) + " |")
    print("; ".join(f"{k.replace('_', ' ')} {cell(v)}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
