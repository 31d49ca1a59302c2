"""Sweep throughput: runs per hour for 1 process x 2 threads against 2 processes x 1 thread.

Both variants run the same planned sweep (random draws from the paper's space on the embedded
RAD task at a 50k budget) through the sweep's own machinery — :class:`LocalProcesses` workers,
the coordinator writing one shard per run — into fresh records directories, so the wall time
includes what a user waits for: worker start, task data read from the cache, training, records.
The task's data is built (and cached) once before timing.

    python benchmarks/sweep_throughput.py              # 8 runs of 1 epoch per variant
    python benchmarks/sweep_throughput.py --repeats 2 --json

Columns: wall seconds of the sweep; runs per hour over that wall time and its ratio against
1 process x 2 threads; the same between the first and the last record ("steady": worker start
excluded, as in a long sweep); mean seconds per run as the records state (training only).
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

from sbrnn.child.sweep import LocalProcesses, plan_sweep, run_sweep
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.records import read_records

VARIANTS = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def measure(plan, processes: int, threads: int) -> dict:
    """One timed sweep of ``plan`` on ``processes`` local workers with ``threads`` torch threads."""
    arrivals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sbrnn-bench-") as records:
        start = time.perf_counter()
        report = run_sweep(plan, records, LocalProcesses(processes, threads),
                           on_record=lambda record: arrivals.append(time.perf_counter()))
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
    parser.add_argument("--runs", type=int, default=8, help="runs per variant (one planned sweep)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=3000, help="training sequences of the task")
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="alternating repeats; the median is shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    get_info(args.task)  # a clear error when the task is not registered
    options = {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_val}
    console = Console(stderr=True)
    console.print(f"building {args.task} {options} (cached for the workers) ...")
    build_task(args.task, seed=args.seed, **options)
    plan = plan_sweep([args.task], [args.budget], args.runs, epochs=args.epochs, seed=args.seed,
                      task_options=options)

    samples: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for repeat in range(args.repeats):
        order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            console.print(f"repeat {repeat + 1}/{args.repeats}: {name} ...")
            samples[name].append(measure(plan, *VARIANTS[name]))

    base = statistics.median(s["runs_per_hour"] for s in samples["1 process x 2 threads"])
    steady_base = statistics.median(s["steady_runs_per_hour"] for s in samples["1 process x 2 threads"])
    rows = []
    for name, (processes, threads) in VARIANTS.items():
        rate = statistics.median(s["runs_per_hour"] for s in samples[name])
        steady = statistics.median(s["steady_runs_per_hour"] for s in samples[name])
        rows.append({
            "name": name, "processes": processes, "threads": threads, "runs": args.runs,
            "wall_s": statistics.median(s["wall_s"] for s in samples[name]),
            "runs_per_hour": rate,
            "mean_run_s": statistics.median(s["mean_run_s"] for s in samples[name]),
            "ratio": rate / base,
            "steady_runs_per_hour": steady,
            "steady_ratio": steady / steady_base,
        })
    setup = {"task": args.task, "budget": args.budget, "epochs": args.epochs, **options,
             "repeats": args.repeats}
    if args.json:
        sys.stdout.write(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
        return 0
    table = Table(title=f"Sweep throughput: {args.runs} runs of {args.task} at budget {args.budget:,.0f}, "
                        f"{args.epochs} epoch(s), n_train {args.n_train}", title_justify="left")
    for col in ("variant", "wall s", "runs/h", "ratio", "steady runs/h", "steady ratio", "mean s/run"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], f"{r['wall_s']:.1f}", f"{r['runs_per_hour']:,.0f}", f"{r['ratio']:.2f}x",
                      f"{r['steady_runs_per_hour']:,.0f}", f"{r['steady_ratio']:.2f}x",
                      f"{r['mean_run_s']:.1f}")
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
