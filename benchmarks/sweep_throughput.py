"""Sweep throughput end to end: runs per hour of the same planned runs on the same 2 workers, by executor.

Every variant runs the same planned sweep (random draws from the paper's space on the embedded
RAD task, budget 50k) through the sweep's own machinery into a fresh records directory, so the
wall time is what a user waits for: worker start, task data read from the cache, training,
records written by the coordinator. The task's data is built (and cached) once before timing.

Variants (2 one-thread workers each):
``local``             ``--workers 2``: two local processes (joblib's loky), one run per job
``local population``  ``--workers 2 --population 8``: up to 8 compatible runs per job, trained together
``local-cluster``     ``--local-cluster 2``: a Dask LocalCluster of two one-thread worker processes

    python benchmarks/sweep_throughput.py                      # 16 runs of 2 epochs per variant
    python benchmarks/sweep_throughput.py --paper-slice        # 64 runs of the paper-scale sweep, projected

Columns: wall seconds of the sweep; runs per hour over that wall time and its ratio against
``local``; the same between the first and the last record ("steady": worker start excluded, as
in a long sweep); mean seconds of training per run as the records state.

``--paper-slice`` times the first 64 runs of ``child sweep --task rad --runs 3254 --budget 50000
--epochs 25 --workers 2`` (the paper's 3,254 RAD runs at the task's registered size, 6,000
training sequences; the first 64 draws of that plan are the plan of ``--runs 64``) with the
``local`` variant, and projects the whole sweep's wall time as ``wall x 3254 / 64`` (start-up
included once per 64 runs, so slightly pessimistic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from sbrnn.child.sweep.coordinator import run_sweep
from sbrnn.child.sweep.executors import DaskCluster, LocalProcesses, run_job, run_population_job
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.records import read_records

WORKERS = 2
PAPER_RUNS = 3254
"""RAD runs of the paper's sweep (Section IV)."""
VARIANTS = {  # name -> (executor factory, population)
    "local": (lambda: LocalProcesses(WORKERS, 1, runner=run_job), 1),
    "local population": (lambda: LocalProcesses(WORKERS, 1, runner=run_population_job), 8),
    "local-cluster": (lambda: DaskCluster(local_workers=WORKERS, threads=1, runner=run_job), 1),
}


def measure(plan, variant: str) -> dict:
    """One timed sweep of ``plan`` by ``variant`` (:data:`VARIANTS`)."""
    make_executor, population = VARIANTS[variant]
    arrivals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sbrnn-bench-") as records:
        start = time.perf_counter()
        report = run_sweep(
            plan,
            records,
            make_executor(),
            population=population,
            on_record=lambda record: arrivals.append(time.perf_counter()),
        )
        wall = time.perf_counter() - start
        runs = read_records(records)
    if report.interrupted or report.finished != len(plan):
        raise SystemExit(f"the sweep did not finish: {report.as_dict()}")
    return {
        "wall_s": wall,
        "runs": len(runs),
        "statuses": report.statuses,
        "runs_per_hour": 3600 * len(runs) / wall,
        "steady_runs_per_hour": 3600 * (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]),
        "mean_run_s": statistics.mean(r.wall_seconds for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="rad")
    parser.add_argument("--budget", type=float, default=50_000)
    parser.add_argument("--runs", type=int, default=16, help="runs per variant (one planned sweep)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=3000, help="training sequences of the task")
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--repeats", type=int, default=1, help="alternating repeats; the median is shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--task-defaults",
        action="store_true",
        help="the task's registered sizes instead of --n-train/--n-val",
    )
    parser.add_argument("--project-runs", type=int, default=None, help="project the wall time of N such runs")
    parser.add_argument(
        "--paper-slice",
        action="store_true",
        help="= --runs 64 --epochs 25 --variants local --task-defaults --project-runs 3254 (see above)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.paper_slice:
        args.runs, args.epochs, args.variants = 64, 25, "local"
        args.task_defaults, args.project_runs = True, PAPER_RUNS
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"variant {unknown[0]!r} is unknown; allowed: {', '.join(VARIANTS)}")

    get_info(args.task)  # a clear error when the task is not registered
    options = (
        {} if args.task_defaults else {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_val}
    )
    console = Console(stderr=True)
    console.print(f"building {args.task} {options} (cached for the workers) ...")
    build_task(args.task, seed=args.seed, **options)
    plan = plan_sweep(
        [args.task], [args.budget], args.runs, epochs=args.epochs, seed=args.seed, task_options=options
    )

    samples: dict[str, list[dict]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        order = variants if repeat % 2 == 0 else list(reversed(variants))
        for name in order:
            console.print(f"repeat {repeat + 1}/{args.repeats}: {name} ...")
            samples[name].append(measure(plan, name))

    def median(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    base, steady_base = median(variants[0], "runs_per_hour"), median(variants[0], "steady_runs_per_hour")
    rows = [
        {
            "name": name,
            "workers": WORKERS,
            "population": VARIANTS[name][1],
            "runs": args.runs,
            "wall_s": median(name, "wall_s"),
            "runs_per_hour": median(name, "runs_per_hour"),
            "ratio": median(name, "runs_per_hour") / base,
            "steady_runs_per_hour": median(name, "steady_runs_per_hour"),
            "steady_ratio": median(name, "steady_runs_per_hour") / steady_base,
            "mean_run_s": median(name, "mean_run_s"),
            **(
                {
                    "projected_runs": args.project_runs,
                    "projected_h": median(name, "wall_s") * args.project_runs / args.runs / 3600,
                }
                if args.project_runs
                else {}
            ),
        }
        for name in variants
    ]
    setup = {
        "task": args.task,
        "budget": args.budget,
        "epochs": args.epochs,
        **options,
        "repeats": args.repeats,
        "baseline": variants[0],
    }
    if args.json:
        sys.stdout.write(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
        return 0
    table = Table(
        title=f"Sweep throughput: {args.runs} runs of {args.task} at budget {args.budget:,.0f}, "
        f"{args.epochs} epoch(s), n_train {'default' if args.task_defaults else args.n_train}, "
        f"{WORKERS} one-thread workers",
        title_justify="left",
    )
    columns = ["variant", "wall s", "runs/h", "ratio", "steady runs/h", "steady ratio", "mean s/run"]
    if args.project_runs:
        columns.append(f"h for {args.project_runs:,} runs")
    for col in columns:
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for r in rows:
        cells = [
            r["name"],
            f"{r['wall_s']:.1f}",
            f"{r['runs_per_hour']:,.0f}",
            f"{r['ratio']:.2f}x",
            f"{r['steady_runs_per_hour']:,.0f}",
            f"{r['steady_ratio']:.2f}x",
            f"{r['mean_run_s']:.1f}",
        ]
        if args.project_runs:
            cells.append(f"{r['projected_h']:.1f}")
        table.add_row(*cells)
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
