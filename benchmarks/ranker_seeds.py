"""Does the ranker's pick for an unseen task depend on its subsample seed? Picks among trained runs.

For each zoo task held out in turn, the within-task ranker is fitted on every record of
``--records`` but that task's (as ``benchmarks/meta_loto.py``'s closed loop fits it) and ranks
every seed-0 run recorded at the task's middle budget, in ``--records`` and in ``--runs`` (the
task's random draws, the a-priori configuration and the baselines, the closed loop's earlier
recommendations and cold TPE's trials: all trained alike, data seed 0, the task's epochs and
patience; the trials of warm-started studies, which ``tune_compare.py`` writes beside them, are not
candidates).
Its top-1 is a run with a known loss, so no training is needed: a cheap stand-in for the closed
loop, with more candidates of known quality than a recommendation's fresh draws have.

Per ranker (``shipped``: :class:`~sbrnn.parent.models.ConfigRanker`; ``single``: the trees it had
until 2026-12-01, 300 rounds of one tree of depth 4, learning rate 0.05, the same targets) and
subsample seed: on how many tasks the top-1 beats TPE's best of its first 10 trials on a majority
of TPE's sampler seeds (studies ``loto-<task>-<budget>-tpe-<space tag>-<seed>`` in ``--runs``,
written by meta_loto's closed loop), on how many task-seed pairs, the RAD-family tasks apart, and
the mean normalised regret of the top-1 among the task's candidates, ``(loss - best) / (worst -
best)``. Tasks without TPE studies in ``--runs`` are left out and named.

    python benchmarks/ranker_seeds.py --runs runs/closed-loop --seeds 0,1,2 --workers 2

With ``--train DIR`` the rankers are fitted on ``DIR``'s records instead (every task of them) and
pick for the tasks of ``--records``: the tasks held out of the zoo, whose runs and TPE studies the
held-out closed loop wrote (``benchmarks/meta_loto.py --test-plan``):

    python benchmarks/ranker_seeds.py --train data/zoo-v1 --records data/zoo-test --runs RUNS

Each task's own records are always left out of the fit, so ``--train data/zoo-v1,data/zoo-test``
fits on the zoo and the other held-out tasks: what more tasks would give.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sbrnn.parent import loto
from sbrnn.parent.features import record_features, training_data
from sbrnn.parent.models import ConfigRanker, group_keys
from sbrnn.records import read_records

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 10
RANKERS = ("shipped", "single")


def ranker(name: str, seed: int) -> ConfigRanker:
    """``shipped``: the :class:`~sbrnn.parent.models.ConfigRanker` as the parent fits it;
    ``single``: its trees until 2026-12-01 (300 rounds of one tree of depth 4, learning rate 0.05)."""
    if name == "single":
        return ConfigRanker(seed=seed, n_estimators=300, max_depth=4, parallel_trees=1, learning_rate=0.05)
    return ConfigRanker(seed=seed)


@functools.cache
def _records(directory: str) -> list:
    """The records of ``directory``, read once per worker process (every task reads the same two)."""
    return read_records(directory)


def _loss(record) -> float:
    value = record.min_val_loss
    return float(value) if record.status == "ok" and value is not None and math.isfinite(value) else math.inf


def middle_budget(records, task: str) -> float:
    budgets = sorted({float(r.budget) for r in records if r.task == task and r.budget})
    return budgets[len(budgets) // 2]


def tpe_best(runs, task: str, budget: float, tpe_seeds: int) -> list[float] | None:
    """TPE's best minimum validation loss over its first :data:`TRIALS` trials, per sampler seed."""
    out = []
    for seed in range(tpe_seeds):
        study = loto.tpe_study(task, budget, "tpe", seed)
        trials = [r for r in runs if r.study == study and r.trial is not None and r.trial < TRIALS]
        if len(trials) < TRIALS:
            return None
        out.append(min(_loss(r) for r in trials))
    return out


def pick(args: tuple) -> dict:
    records_dir, runs_dir, task, rankers, seeds, tpe_seeds, train_dir = args
    records, runs = _records(records_dir), _records(runs_dir)
    train = [r for directory in train_dir.split(",") for r in _records(directory)]
    budget = middle_budget(records, task)
    tpe = tpe_best(runs, task, budget, tpe_seeds)
    if tpe is None:
        return {"task": task, "budget": budget, "tpe": None}
    cold = {loto.tpe_study(task, budget, "tpe", seed) for seed in range(tpe_seeds)}
    candidates, seen = [], set()
    for r in (*records, *runs):
        if r.study is not None and r.study not in cold:
            continue
        if r.task == task and r.budget == budget and r.seed == 0 and r.run_id not in seen:
            seen.add(r.run_id)
            candidates.append(r)
    losses = np.array([_loss(r) for r in candidates])
    finite = losses[np.isfinite(losses)]
    best, worst = finite.min(), finite.max()
    data = training_data([r for r in train if r.task != task])
    groups = group_keys(data.task, data.budget)
    X = np.stack([record_features(r) for r in candidates])
    rows = []
    for name in rankers:
        for seed in seeds:
            model = ranker(name, seed).fit(data.X, data.Y[:, -1], data.converged, groups)
            top = int(np.argmin(model.predict(X)))
            loss = losses[top]
            rows.append(
                {
                    "ranker": name,
                    "seed": seed,
                    "top1": candidates[top].label,
                    "loss": float(loss),
                    "regret": float((min(loss, worst) - best) / (worst - best)) if worst > best else 0.0,
                    "beats_tpe": [bool(loss < t) for t in tpe],
                }
            )
    return {"task": task, "budget": budget, "candidates": len(candidates), "tpe": tpe, "rows": rows}


def summarise(results: list[dict], rankers, seeds) -> list[dict]:
    rows = [(res["task"], r) for res in results if res["tpe"] for r in res["rows"]]
    out = []
    for name in rankers:
        for seed in seeds:
            mine = [(t, r) for t, r in rows if r["ranker"] == name and r["seed"] == seed]
            majority = [t for t, r in mine if 2 * sum(r["beats_tpe"]) > len(r["beats_tpe"])]
            out.append(
                {
                    "ranker": name,
                    "seed": seed,
                    "tasks": len(mine),
                    "beats_tpe_tasks": len(majority),
                    "beats_tpe_pairs": sum(sum(r["beats_tpe"]) for _, r in mine),
                    "pairs": sum(len(r["beats_tpe"]) for _, r in mine),
                    "rad_tasks": sum(t.startswith("rad") for t, _ in mine),
                    "rad_beats_tpe": sum(t.startswith("rad") for t in majority),
                    "mean_regret": statistics.mean(r["regret"] for _, r in mine),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=str(ROOT / "data" / "zoo-v1"))
    parser.add_argument("--runs", required=True, help="the closed loop's --runs directory")
    parser.add_argument("--tasks", default=None, help="comma-separated; default: every task of --records")
    parser.add_argument("--seeds", default="0,1,2", help="ranker subsample seeds, comma-separated")
    parser.add_argument("--tpe-seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--train", default=None, help="fit the rankers on these records, comma-separated (default: --records)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",") if args.tasks else sorted({r.task for r in read_records(args.records)})
    train = args.train or args.records
    jobs = [(args.records, args.runs, t, RANKERS, seeds, args.tpe_seeds, train) for t in tasks]
    # spawn, not fork: the parent has read records (Arrow's threads), which a forked child can hang on
    with ProcessPoolExecutor(max(1, args.workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(pick, jobs))
    summary = summarise(results, RANKERS, seeds)
    skipped = [r["task"] for r in results if not r["tpe"]]
    if args.json:
        json.dump({"summary": summary, "tasks": results, "without_tpe": skipped}, sys.stdout, indent=1)
        print()
        return 0
    print("| ranker | seed | top-1 beats TPE@10, tasks | pairs | RAD family | mean regret |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in summary:
        print(
            f"| {s['ranker']} | {s['seed']} | {s['beats_tpe_tasks']} of {s['tasks']} | "
            f"{s['beats_tpe_pairs']} of {s['pairs']} | {s['rad_beats_tpe']} of {s['rad_tasks']} | "
            f"{s['mean_regret']:.3f} |"
        )
    if skipped:
        print(f"without TPE studies in {args.runs}: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
