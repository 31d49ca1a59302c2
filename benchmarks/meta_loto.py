"""Does the parent's recommendation beat random search and Optuna on tasks it never saw?

Two parts, both leave-one-task-out over a meta-dataset (default ``data/zoo-v1``):

**Offline.** For each held-out task the parent is fitted on every other task and ranks that task's
own recorded runs, per budget (:mod:`sbrnn.parent.loto`): normalised regret@k (k = 1, 3, 10) beside
the exact expectation for k random picks, the top-1's percentile among the task's random draws,
within-task Spearman and random-equivalent trials; for each model kind and the hidden proportion
alone.

**Closed loop** (``--closed-loop TASK,...``). For each of those held-out tasks, at its middle
budget: the parent fitted without it recommends, for each of ``--seeds`` candidate seeds, its
top 3, which are trained for real (the task's sweep settings: task options, epochs, patience, and
training seed 0, so the data are those of the recorded random draws); and Optuna's TPE sampler
(``sbrnn child tune``'s objective, same space as the sweep's draws, with the sampler seed) gets 10
trials. Every run is an sbrnn record in ``--runs`` (rerunning resumes). Reported: the percentile of
the top-1 and of the best of the top 3 among the task's random draws, beside the a-priori balanced
configuration and the dense, uniform-0.2 and LSTM baselines of the sweep, and whether the top-1
beat TPE's best of 10 trials.

    python benchmarks/meta_loto.py --quick                      # offline, xgb, a few minutes
    python benchmarks/meta_loto.py --kinds xgb,rf,mlp --json > loto.json
    python benchmarks/meta_loto.py --closed-loop rad20,seq-digits --runs runs/closed-loop
    python benchmarks/meta_loto.py --closed-loop rad20 --no-offline --json   # the closed loop alone
    python benchmarks/meta_loto.py --closed-loop rad20,parity --no-offline --workers 2   # two tasks at once

With ``--workers N`` the closed loop's tasks run in ``N`` processes (one thread each), in the order
given; the runs and the TPE studies share ``--runs`` (Optuna's journal file locks).

**Held-out tasks** (``--test-plan``). Leave-one-task-out on the zoo measures a parent fitted
without the task, but every choice made for the shipped parent was compared on those same tasks.
``--test-plan sweeps/zoo-test.toml`` takes tasks that were never in the zoo instead (their random
draws and baselines in ``--test-records``, swept with that plan): the shipped parent, as a user
gets it, ranks their recorded runs (the offline metrics) and recommends for each in the closed
loop, against TPE as above.

    python benchmarks/meta_loto.py --test-plan sweeps/zoo-test.toml --test-records data/zoo-test \
        --runs runs/closed-loop-test --workers 2 --json > test.json

``--parent DIR`` puts another parent in the shipped one's place (one fitted on fewer tasks, to
compare the two on the same held-out tasks; both parents' picks can share ``--runs``, a run being
found by its configuration).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sbrnn.parent import loto
from sbrnn.parent.evaluate import (
    config_ranker,
    fit_held_out,
    fit_kind,
    hidden_proportion_ranker,
    is_random_draw,
)
from sbrnn.parent.features import TaskContext, records_in, training_data
from sbrnn.parent.models import group_keys

PLAN = Path(__file__).resolve().parent.parent / "sweeps" / "zoo-v1.toml"


def xgb_group_ranker(train, test, seed: int, objective: str, relevance) -> np.ndarray:
    """Scores of ``test`` (lower = better) from XGBoost's learning-to-rank ``objective`` fitted on
    ``train``'s groups (a task at a budget), 300 rounds of one tree of depth 5: ``relevance(value)``
    gives a group's labels (higher = better) from its runs' relative log minima ``value``, a run that
    did not converge counting as the group's worst plus 1."""
    import xgboost

    groups = np.asarray(group_keys(train.task, train.budget)).astype(str)
    order = np.argsort(groups, kind="stable")
    _, qid = np.unique(groups[order], return_inverse=True)
    y, ok = train.Y[:, -1], train.converged
    rel = np.zeros(len(y))
    for key in np.unique(groups):
        rows = np.flatnonzero(groups == key)
        value = np.where(ok[rows], y[rows], np.nanmax(y[rows][ok[rows]]) + 1.0 if ok[rows].any() else 0.0)
        rel[rows] = relevance(value)
    model = xgboost.XGBRanker(
        objective=objective,
        n_estimators=300,
        max_depth=5,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=0.8,
        tree_method="hist",
        random_state=seed,
        n_jobs=1,
    )
    model.fit(np.asarray(train.X, dtype=np.float64)[order], rel[order], qid=qid)
    return -model.predict(np.asarray(test.X, dtype=np.float64))


def pairwise_ranker(seed: int) -> loto.FitPredict:
    """The ranker the shipped parent used until 2026-11-30, kept here as a baseline: XGBoost's
    ``rank:pairwise`` on each run's rank within its task and budget (worst 0; a run that did not
    converge ranks with the worst), with the trees it had then (300 rounds of one tree, depth 5)."""

    def fit_predict(train, test) -> np.ndarray:
        def rank(value):
            return np.argsort(np.argsort(-value, kind="stable"), kind="stable")

        return xgb_group_ranker(train, test, seed, "rank:pairwise", rank)

    return fit_predict


def offline(records, kinds, trees, members, tasks=None) -> dict:
    """Leave-one-task-out ranking of the recorded runs: per kind (its predicted minima), the
    ranker, the pairwise ranker it replaced, and the hidden proportion alone."""
    data = training_data(records)
    random = is_random_draw(records, data)
    out = {}
    for kind in kinds:
        started = time.perf_counter()

        def fit_predict(train, test, kind=kind):
            return fit_kind(train, kind, trees, members, 0, 1).scores(test.X, kind)

        groups = loto.leave_one_task_out(data, fit_predict, random, tasks=tasks)
        out[kind] = {
            **loto.summarise(groups),
            "seconds": round(time.perf_counter() - started, 1),
            "by_group": [g.to_dict() for g in groups],
        }
    for name, fit_predict in (
        ("ranker", config_ranker(0, 1)),
        ("pairwise_ranker", pairwise_ranker(0)),
        ("hidden_proportion", hidden_proportion_ranker(trees, 0, 1)),
    ):
        groups = loto.leave_one_task_out(data, fit_predict, random, tasks=tasks)
        out[name] = {**loto.summarise(groups), "by_group": [g.to_dict() for g in groups]}
    return out


def _plan_entry(task: str, plan: Path = PLAN):
    from sbrnn.child.sweep.plan_file import load_plan
    from sbrnn.errors import SbrnnError

    try:
        return load_plan(plan).task(task)
    except SbrnnError as exc:
        raise SystemExit(str(exc)) from exc


def given_parent(directory: Path):
    """The parent in ``directory`` (the shipped one's is :func:`sbrnn.parent.store.shipped_directory`)."""
    from sbrnn.parent.store import load_parent

    return load_parent(directory)[0]


def parent_offline(records, directory: Path) -> dict:
    """The parent in ``directory`` (by default the shipped one) ranks each task's recorded runs
    (tasks it never saw): the offline metrics of :func:`offline`'s ``ranker`` row, with that
    parent's ranker in place of one fitted without the task."""
    parent = given_parent(directory)
    data = training_data(records)
    groups = loto.leave_one_task_out(
        data, lambda _, test: parent.scores(test.X), is_random_draw(records, data)
    )
    return {"ranker": {**loto.summarise(groups), "by_group": [g.to_dict() for g in groups]}}


def _percentile(value: float, drawn: list[float]) -> float:
    return float(np.mean([value < d for d in drawn])) if drawn else float("nan")


def closed_loop(
    records,
    task: str,
    seeds: int,
    runs_dir: Path,
    trees,
    members,
    tpe_trials: int,
    plan: Path = PLAN,
    given: Path | None = None,
) -> dict:
    """Train the parent's top-3 (per candidate seed) and TPE's trials for ``task`` at its middle budget
    (of ``plan``). The parent is fitted on ``records`` without ``task``; where ``given`` names a
    parent's directory (the shipped one, or another) it is that parent, and ``records`` holds only
    the held-out tasks' runs (their random draws)."""
    from sbrnn.child.config import RunConfig
    from sbrnn.child.train import train_run
    from sbrnn.datasets.summary import build_checked
    from sbrnn.parent.recommend import recommend
    from sbrnn.records import read_records, write_record

    entry = _plan_entry(task, plan)
    budget = sorted(entry.budgets)[len(entry.budgets) // 2]
    mine = [r for r in records if r.task == task and r.budget == budget]
    drawn = [
        r.min_val_loss if r.status == "ok" else float("inf")
        for r in mine
        if (r.label or "").startswith("random")
    ]
    by_label = {r.label: r.min_val_loss for r in mine if r.status == "ok"}
    if given is not None:
        parent = given_parent(given)
    else:
        parent = fit_held_out(records, task, "xgb", trees=trees, members=members)
    built = build_checked(task, 0, entry.options)
    context = TaskContext.of_task(built)
    done = {r.run_id: r for r in read_records(runs_dir)} if runs_dir.is_dir() else {}
    rows = []
    for seed in range(seeds):
        result = recommend(parent, context, budget, top=3, seed=seed, task_name=task)
        losses, tests = [], []
        for scored in result.top:
            fields = dict(arch=scored.arch, budget=budget, lr=scored.lr)
            if scored.arch == "sbrnn":
                fields.update(densities=scored.densities, means=scored.means, stds=scored.stds)
            config = RunConfig(
                task=task,
                task_options=entry.options,
                epochs=entry.epochs,
                patience=entry.patience,
                batch_size=entry.batch_size,
                seed=0,
                **fields,
            )
            record = done.get(config.run_id())
            if record is None:
                record = train_run(config, built, threads=1)
                record.origin, record.label = "config", f"loto {task} seed {seed} rank {scored.rank}"
                write_record(record, runs_dir)
                done[record.run_id] = record  # another candidate seed's same pick is this run
            losses.append(record.min_val_loss if record.status == "ok" else float("inf"))
            tests.append(_test_loss(record))
        rows.append(
            {
                "seed": seed,
                "mode": result.mode,
                "top1": losses[0],
                "top1_test": tests[0],
                "best_of_3": min(losses),
                "top1_percentile": _percentile(losses[0], drawn),
                "top3_percentile": _percentile(min(losses), drawn),
            }
        )
    tpe = _tpe(built, entry, budget, seeds, tpe_trials, runs_dir)
    trained = {r.run_id: r for r in read_records(runs_dir)} if tpe else {}
    reference = {
        name: _percentile(by_label[name], drawn)
        for name in ("balanced", "dense", "uniform", "lstm")
        if by_label.get(name) is not None
    }
    return {
        "task": task,
        "budget": budget,
        "random_draws": len(drawn),
        "seeds": rows,
        "reference": reference,
        **compare_with_tpe(rows, tpe, trained, drawn),
    }


def closed_loops(records, tasks: list[str], settings: tuple, workers: int) -> list[dict]:
    """:func:`closed_loop` for each of ``tasks`` (``settings``: its arguments after the task), in
    ``workers`` processes; the rows in the order of ``tasks``, each reported on stderr when done."""
    started = time.perf_counter()

    def done(k: int, task: str) -> None:
        seconds = time.perf_counter() - started
        print(f"closed loop: {task} done ({k}/{len(tasks)}, {seconds:.0f} s)", file=sys.stderr)

    if workers == 1:
        rows = []
        for task in tasks:
            rows.append(closed_loop(records, task, *settings))
            done(len(rows), task)
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(closed_loop, records, task, *settings): task for task in tasks}
        by_task = {}
        for k, future in enumerate(as_completed(futures), 1):
            by_task[futures[future]] = future.result()
            done(k, futures[future])
    return [by_task[task] for task in tasks]


def _test_loss(record) -> float:
    """A run's test loss (at its best epoch's weights); inf where it did not end ok."""
    ok = record is not None and record.status == "ok" and record.test_loss is not None
    return float(record.test_loss) if ok else float("inf")


def compare_with_tpe(
    rows: list[dict], tpe: list[tuple[float, str | None]] | None, trained: dict, drawn: list[float]
) -> dict:
    """The parent's top-1 (``rows``, one per candidate seed) against TPE's best trial (``tpe``: its
    minimum validation loss and run id, one per sampler seed; ``trained``: run records by id;
    ``drawn``: the random draws' minimum validation losses, for TPE's percentile).

    Two readings: by minimum validation loss (the number TPE selects on, so its best of 10 carries
    the luck of 10 draws of seed noise) and by the test loss of each chosen run (held out from both
    choices: no selection bonus)."""
    if not tpe:
        return {"tpe_best_of_10": None, "tpe_percentile": None, "top1_beats_tpe": None}
    values = [value for value, _ in tpe]
    tests = [_test_loss(trained.get(run_id)) for _, run_id in tpe]
    return {
        "tpe_best_of_10": values,
        "tpe_percentile": [_percentile(v, drawn) for v in values],
        "tpe_best_test": tests,
        "top1_beats_tpe": [r["top1"] < v for r, v in zip(rows, values)],
        "top1_beats_tpe_on_test": [r["top1_test"] < t for r, t in zip(rows, tests)],
    }


def _tpe(built, entry, budget, seeds, trials, runs_dir) -> list[tuple[float, str | None]] | None:
    """TPE's best minimum validation loss after ``trials`` trials and that trial's run id, per
    sampler seed (None without optuna), on the ``built`` task (data seed 0); the children train as
    the sweep's draws did (seed 0, the task's epochs and patience)."""
    try:
        from sbrnn.child import tune

        tune.require_optuna()
    except Exception:  # noqa: BLE001 - the optional extra is missing: no TPE rows
        return None
    task = built.name
    best = []
    for seed in range(seeds):
        settings = tune.TuneSettings(
            task=task,
            budget=budget,
            trials=trials,
            records=runs_dir,
            task_options=entry.options,
            epochs=entry.epochs,
            patience=entry.patience,
            batch_size=entry.batch_size,
            seed=0,
            sampler_seed=seed,
            storage=str(runs_dir / "tpe.journal"),
            study=loto.tpe_study(task, budget, "tpe", seed),
            warm_start=0,
            pruner="none",
            space="paper",
        )
        summary = tune.tune(settings, built)
        row = summary.best
        best.append((row.value, row.run_id) if row is not None else (float("inf"), None))
    return best


def plot_closed_loop(rows: list[dict], path: Path) -> Path:
    """Per held-out task: the percentile among the task's random draws of the parent's top-1 (each
    candidate seed), of the best of its top 3, of TPE's best of 10 (each sampler seed), and of the
    a-priori balanced configuration and the baselines recorded in the sweep; ten tasks to a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = {
        "parent top-1": ("o", "C0"),
        "parent best of 3": ("^", "C1"),
        "TPE best of 10": ("s", "C2"),
        "balanced": ("D", "k"),
        "dense": ("x", "C3"),
        "uniform": ("+", "C4"),
        "lstm": ("v", "C5"),
    }
    per_row = 10
    chunks = [rows[i : i + per_row] for i in range(0, len(rows), per_row)]
    width = 1.1 * min(len(rows), per_row) + 3
    fig, axes = plt.subplots(len(chunks), 1, figsize=(width, 3.8 * len(chunks)), squeeze=False)
    labelled: set[str] = set()
    for ax, chunk in zip(axes[:, 0], chunks):
        for i, row in enumerate(chunk):
            points = {
                "parent top-1": [r["top1_percentile"] for r in row["seeds"]],
                "parent best of 3": [r["top3_percentile"] for r in row["seeds"]],
                "TPE best of 10": row.get("tpe_percentile") or [],
                **{name: [value] for name, value in row["reference"].items()},
            }
            for j, (name, values) in enumerate(points.items()):
                marker, color = marks[name]
                x = [i + (j - 3) * 0.1] * len(values)
                ax.scatter(x, values, marker=marker, color=color, label=None if name in labelled else name)
                labelled.add(name)
        ax.set_xticks(range(len(chunk)), [r["task"] for r in chunk], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, per_row - 0.5 if len(chunks) > 1 else len(chunk) - 0.5)
        ax.set_ylabel("percentile among random draws")
        ax.set_ylim(-0.05, 1.05)
        ax.axhline(0.95, color="grey", lw=0.5, ls=":")
    axes[0, 0].legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_offline(result: dict, records: Path, kind: str, shipped: bool = False) -> None:
    """The offline part of ``result`` as text: a row per ranking, then ``kind``'s per held-out task."""
    how = "the shipped parent ranks" if shipped else "leave one task out over"
    print(f"{how} {result['runs']} runs of {records} ({result['seconds']} s)")
    print(
        f"{'model':18s} {'groups':>6s} {'regret@1':>9s} {'random':>7s} {'regret@3':>9s} {'random':>7s} "
        f"{'regret@10':>9s} {'top-1 pct':>9s} {'rho':>6s} {'rand-eq':>7s}"
    )
    for name, s in result["offline"].items():
        print(
            f"{name:18s} {s['groups']:6d} {s['median_regret']['1']:9.3f} "
            f"{s['median_random_regret']['1']:7.3f} "
            f"{s['median_regret']['3']:9.3f} {s['median_random_regret']['3']:7.3f} "
            f"{s['median_regret']['10']:9.3f} {s['median_percentile']:9.2f} {s['median_spearman']:6.3f} "
            f"{s['median_random_equivalent']:7.1f}"
        )
    print(f"per held-out task ({kind}): regret@1, top-1 percentile, Spearman")
    for task, s in result["offline"][kind]["per_task"].items():
        print(
            f"  {task:36s} {s['regret@1']:.3f}  {s['percentile'] or float('nan'):.2f}  "
            f"{s['spearman'] if s['spearman'] is not None else float('nan'):.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("data/zoo-v1"))
    parser.add_argument("--kinds", default="xgb", help="comma-separated parent kinds (rf, xgb, mlp)")
    parser.add_argument("--tasks", default=None, help="held-out tasks of the offline part (default all)")
    parser.add_argument("--trees", type=int, default=None)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--closed-loop", default="", help="comma-separated held-out tasks to train for real")
    parser.add_argument("--no-offline", action="store_true", help="the closed loop only (no offline ranking)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tpe-trials", type=int, default=10)
    parser.add_argument("--runs", type=Path, default=Path("runs/closed-loop"))
    parser.add_argument("--workers", type=int, default=1, help="closed-loop tasks trained at once")
    parser.add_argument("--quick", action="store_true", help="xgb with 100 rounds, offline only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path, default=None, help="closed-loop percentiles to this PNG")
    parser.add_argument(
        "--test-plan",
        type=Path,
        default=None,
        help="tasks never in the zoo (a plan file): the shipped parent ranks and recommends for them",
    )
    parser.add_argument("--test-records", type=Path, default=Path("data/zoo-test"))
    parser.add_argument(
        "--parent", type=Path, default=None, help="with --test-plan: this parent instead of the shipped one"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers} is out of range; allowed: integers >= 1")
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    kinds = ["xgb"] if args.quick else args.kinds.split(",")
    trees = 100 if args.quick and args.trees is None else args.trees
    tasks = args.tasks.split(",") if args.tasks else None
    started = time.perf_counter()
    test = args.test_plan is not None
    if test and (tasks is not None or args.quick):
        parser.error("--tasks and --quick choose what the parent is fitted on; --test-plan fits none")
    if args.parent is not None and not test:
        parser.error("--parent is the parent --test-plan measures; without it each parent is fitted")
    if test:
        from sbrnn.parent.store import shipped_directory

        given = args.parent if args.parent is not None else shipped_directory()
    source = args.test_records if test else args.records
    records = records_in(source)
    if args.no_offline:
        ranked = {}
    elif test:
        ranked = parent_offline(records, given)
    else:
        ranked = offline(records, kinds, trees, args.members, tasks)
    result = {"records": str(source), "runs": len(records), "offline": ranked}
    settings: tuple = (args.seeds, args.runs, trees, args.members, args.tpe_trials)
    closed = args.closed_loop.split(",") if args.closed_loop else []
    if test:
        from sbrnn.child.sweep.plan_file import load_plan

        closed = closed or [t.name for t in load_plan(args.test_plan).tasks]
        settings, kinds = (*settings, args.test_plan, given), ["ranker"]
    if closed:
        result["closed_loop"] = closed_loops(records, closed, settings, args.workers)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.plot is not None and result.get("closed_loop"):
        plot_closed_loop(result["closed_loop"], args.plot)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
        return 0
    if result["offline"]:
        print_offline(result, source, kinds[0], shipped=test)
    for row in result.get("closed_loop", []):
        pct = statistics.median(r["top1_percentile"] for r in row["seeds"])
        pct3 = statistics.median(r["top3_percentile"] for r in row["seeds"])
        print(
            f"closed loop {row['task']} at {row['budget']:,.0f}: top-1 percentile {pct:.2f}, best of top 3 "
            f"{pct3:.2f} among {row['random_draws']} random draws; a-priori and baselines "
            f"{ {k: round(v, 2) for k, v in row['reference'].items()} }; top-1 beats TPE@{args.tpe_trials}: "
            f"{row['top1_beats_tpe']} (on the chosen runs' test loss: {row.get('top1_beats_tpe_on_test')})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
