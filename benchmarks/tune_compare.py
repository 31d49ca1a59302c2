"""Does the parent make Optuna studies converge faster on tasks it never saw?

For each held-out task (at its middle budget of ``sweeps/zoo-v1.toml``, the children trained as the
sweep's draws were: seed 0, the task's epochs and patience) and each of ``--seeds`` sampler seeds,
four searches of the same space (the paper's ranges, ``sbrnn child tune --space paper``):

``random``        the task's own recorded random draws: the exact expected best of ``k`` draws
                  (order statistics over the recorded runs; no new training);
``tpe``           a cold TPE study of ``--trials`` trials;
``tpe+parent``    TPE with the top 5 recommendations of a parent fitted WITHOUT the task enqueued first;
``tpe+parent+median``  the same with the median pruner;
``tpe+parent10``  the top 10 enqueued: with ``--trials 10`` every trial a recommendation (but for a
                  rank outside the study's architectures, which TPE's start-up draw replaces).

Reported: the best minimum validation loss after k = 1, 5, 10, 20, 30 trials (the median over
seeds), the epochs spent to get there (pruning saves epochs, not trials), and per task whether
warm-started TPE reached cold TPE's best of ``--trials`` within 10 trials, and with pruning the
same best loss for at most half of cold TPE's epochs (per sampler seed: the epochs each study had
spent when its best-so-far first matched the cold study's best of ``--trials``). Every trial is an
sbrnn record in ``--runs`` with the study in ``--runs/tpe.journal`` (rerunning resumes).

    python benchmarks/tune_compare.py --tasks rad20,seq-digits,hopper-dynamics --seeds 3 --trials 30
    python benchmarks/tune_compare.py --quick            # one small task, 1 seed, 8 trials

**Held-out tasks** (``--test-plan``): the tasks of a plan that were never in the zoo
(``sweeps/zoo-test.toml``), their random draws from ``--test-records``, and the parent that ships
with sbrnn (fitted on the whole zoo) in place of one fitted without the task: what a user who runs
``sbrnn child tune --warm-start 5`` (``tpe+parent``) or, by default, ``--warm-start 10``
(``tpe+parent10``) on a new task gets. Each task is compared at the plan's budget,
trial by trial and by the tally of tasks where warm-started TPE's best of 5 and of 10 trials beat
cold TPE's best of 10 on a majority of sampler seeds, with the task-seed pairs where they tie (TPE's
first 10 trials are random start-up draws seeded by the sampler seed and the trial number, so a warm
study's trials 6-10 are the cold study's trials 6-10).

    python benchmarks/tune_compare.py --test-plan sweeps/zoo-test.toml --test-records data/zoo-test \
        --variants tpe,tpe+parent --trials 10 --runs RUNS

With ``--archs sbrnn,lstm`` every study also chooses the architecture (``sbrnn child tune --archs``):
cold and warm-started TPE search the same space with the equal-budget LSTM in it (an LSTM trial
draws only its learning rate), so a parent that ranks the LSTM first warm-starts with it. Those
studies are named ``tpe+lstm`` and ``tpe+parent+lstm``. Warm-started studies are also named after
the parent's training records (``tpe+parent@1a2b3c4d``), so a refitted parent trains its own.

Study names and the journal (``RUNS/tpe.journal``) are those of ``meta_loto.py``'s closed loop
(:func:`sbrnn.parent.loto.tpe_study`), whose cold TPE studies have the same settings: with a copy
of ``data/zoo-test-loop`` as ``RUNS``, only the warm-started studies are trained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from sbrnn.parent.features import records_in
from sbrnn.parent.loto import expected_best_of_random, tpe_study

PLAN = Path(__file__).resolve().parent.parent / "sweeps" / "zoo-v1.toml"
KS = (1, 5, 10, 20, 30)
VARIANTS = {
    "tpe": (0, "none"),
    "tpe+parent": (5, "none"),
    "tpe+parent+median": (5, "median"),
    "tpe+parent10": (10, "none"),
}
"""Search name: (parent recommendations enqueued first, pruner)."""


def _entry(task: str, plan: Path):
    from sbrnn.child.sweep.plan_file import load_plan
    from sbrnn.errors import SbrnnError

    try:
        return load_plan(plan).task(task)
    except SbrnnError as exc:
        raise SystemExit(str(exc)) from exc


def best_so_far(values: list[float]) -> list[float]:
    out, best = [], float("inf")
    for v in values:
        best = min(best, v)
        out.append(best)
    return out


def study(built, entry, budget, trials, variant, seed, runs, parent, archs=("sbrnn",)) -> str:
    """Run (or resume) one study of the ``built`` task and return its name. A rank of the parent's
    outside the study's architectures ``archs``, such as an LSTM by default, is skipped; a study of
    more architectures than sbrnn is named after them too (``tpe+parent+lstm``), and a warm-started
    study after the parent's training records (``tpe+parent@1a2b3c4d``: the first 8 hex digits of
    their SHA-256), so a refitted parent starts studies of its own instead of reading another's."""
    from sbrnn.child import tune

    warm, pruner = VARIANTS[variant]
    search = "+".join((variant, *(a for a in archs if a != "sbrnn")))
    if warm:
        search += "@" + parent.records_sha256[:8]
    settings = tune.TuneSettings(
        task=built.name,
        budget=budget,
        trials=trials,
        records=runs,
        task_options=entry.options,
        epochs=entry.epochs,
        patience=entry.patience,
        batch_size=entry.batch_size,
        seed=0,
        sampler_seed=seed,
        storage=str(runs / "tpe.journal"),
        study=tpe_study(built.name, budget, search, seed),
        warm_start=warm,
        pruner=pruner,
        space="paper",
        archs=archs,
    )
    tune.tune(
        settings,
        built,
        parent=parent if warm else None,
        parent_note=None if parent is not None or not warm else "no parent",
    )
    return settings.study_name


def study_trials(runs_records, name: str) -> tuple[list[float], list[int], list[int]]:
    """Study ``name``'s per-trial minimum validation losses (pruned and failed runs count as inf) and
    the epochs each trial ran, in trial order, and the parent's ranks its warm start trained."""
    mine = sorted((r for r in runs_records if r.study == name), key=lambda r: r.trial)
    losses = [
        r.min_val_loss if r.status == "ok" and r.min_val_loss is not None else float("inf") for r in mine
    ]
    warm_ranks = sorted(int(r.label.split()[-1]) for r in mine if (r.label or "").startswith("warm start"))
    return losses, [len(r.val_loss) for r in mine], warm_ranks


def compare(
    records, task: str, seeds: int, trials: int, runs: Path, parent, plan: Path, variants, archs=("sbrnn",)
) -> dict:
    """The searches ``variants`` of the architectures ``archs`` for ``task`` at its middle budget of
    ``plan``; ``parent`` warm-starts them (None: one fitted on ``records`` without the task)."""
    from sbrnn.datasets.summary import build_checked
    from sbrnn.parent.evaluate import fit_held_out
    from sbrnn.records import read_records

    entry = _entry(task, plan)
    budget = sorted(entry.budgets)[len(entry.budgets) // 2]
    drawn = [
        r.min_val_loss if r.status == "ok" else float("inf")
        for r in records
        if r.task == task and r.budget == budget and (r.label or "").startswith("random")
    ]
    finite = [d for d in drawn if d != float("inf")]
    worst = max(finite) if finite else float("inf")
    out = {
        "task": task,
        "budget": budget,
        "archs": list(archs),
        "random_draws": len(drawn),
        "random": {
            str(k): expected_best_of_random([min(d, worst) for d in drawn], k) for k in KS if k <= len(drawn)
        },
    }
    parent = fit_held_out(records, task) if parent is None else parent
    built = build_checked(task, 0, entry.options)
    names = {
        (variant, seed): study(built, entry, budget, trials, variant, seed, runs, parent, archs)
        for variant in variants
        for seed in range(seeds)
    }
    trained = read_records(runs)  # once, after every study of the task has run
    per_seed = {}
    for variant in variants:
        warm = VARIANTS[variant][0]
        curves, epochs = [], []
        for seed in range(seeds):
            losses, ran, warm_ranks = study_trials(trained, names[variant, seed])
            curves.append(best_so_far(losses))
            epochs.append(best_so_far_epochs(ran))
            if warm:
                out.setdefault(variant + " warm ranks", []).append(warm_ranks)
        per_seed[variant] = (curves, epochs)
        out[variant + " seeds"] = [c[-1] for c in curves]
        out[variant + " seeds@5"] = [c[min(5, trials) - 1] for c in curves]
        out[variant + " curve"] = [statistics.median(c[i] for c in curves) for i in range(trials)]
        out[variant] = {str(k): statistics.median(c[k - 1] for c in curves) for k in KS if k <= trials}
        out[variant + " epochs"] = {
            str(k): statistics.median(e[k - 1] for e in epochs) for k in KS if k <= trials
        }
    cold_best = out["tpe"][str(min(trials, 30))] if str(min(trials, 30)) in out["tpe"] else None
    warm10 = out["tpe+parent"].get("10")
    out["warm_reaches_cold_best_in_10"] = None if cold_best is None or warm10 is None else warm10 <= cold_best
    # Per warm-started search and sampler seed: its best of k trials against cold TPE's best of 10
    # (1: lower, 0: equal, -1: higher). Equal is common at k = 10 with five enqueued: both studies'
    # trials 6-10 are TPE's random start-up draws, seeded by the sampler seed and the trial number,
    # so the same configurations.
    cold10 = [c[min(10, trials) - 1] for c in per_seed["tpe"][0]]
    out["vs_cold_at_10"] = {
        variant: {
            str(k): [int(np.sign(cold - c[k - 1])) for c, cold in zip(per_seed[variant][0], cold10)]
            for k in (1, 5, 10)
            if k <= trials
        }
        for variant in variants
        if VARIANTS[variant][0]
    }
    # Compute to reach cold TPE's best: per seed, the epochs a study had spent when its best-so-far
    # first matched the cold study of the same sampler seed (None where it never did).
    reach = {
        variant: [
            epochs_to_reach(curve, spent, cold[-1])
            for curve, spent, cold in zip(*per_seed[variant], per_seed["tpe"][0])
        ]
        for variant in variants
    }
    out["epochs_to_cold_best"] = reach
    if "tpe+parent+median" in reach:
        out["pruned_half_epochs"] = [
            p is not None and c is not None and p <= c / 2
            for p, c in zip(reach["tpe+parent+median"], reach["tpe"])
        ]
    return out


def epochs_to_reach(curve: list[float], spent: list[int], target: float) -> int | None:
    """Epochs spent (cumulative) when the best-so-far ``curve`` first reached ``target``."""
    for best, epochs in zip(curve, spent):
        if best <= target:
            return epochs
    return None


def best_so_far_epochs(ran: list[int]) -> list[int]:
    """Epochs spent after each trial (cumulative)."""
    total, out = 0, []
    for e in ran:
        total += e
        out.append(total)
    return out


def plot(rows: list[dict], path: Path) -> Path:
    """One panel per task: the median best-so-far minimum validation loss against trials, per search,
    random search as its exact expectation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(rows), 4)
    lines = -(-len(rows) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, rows):
        ks = [int(k) for k in row["random"]]
        ax.plot(ks, list(row["random"].values()), "k--", label="random (expected)")
        for name in VARIANTS:
            if name + " curve" in row:
                curve = row[name + " curve"]
                ax.plot(range(1, len(curve) + 1), curve, label=name)
        values = [v for line in ax.get_lines() for v in line.get_ydata() if 0 < v < float("inf")]
        if values and max(values) > 100 * min(values):  # losses near zero (a solved task): decades
            ax.set_yscale("log")
        ax.set_title(f"{row['task']} at {row['budget']:,.0f}")
        ax.set_xlabel("trials")
        ax.set_ylabel("best min. validation loss")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tally(rows: list[dict], variant: str = "tpe+parent") -> dict:
    """Per k: on how many tasks the warm-started search ``variant``'s best of k trials beat cold TPE's
    best of 10 on a majority of sampler seeds (``tasks``), on how many it was no worse on a majority
    (``tasks_no_worse``), and on how many task-seed pairs it was lower (``pairs``) and equal (``ties``)."""
    out = {}
    for k in ("1", "5", "10"):
        signs = [row["vs_cold_at_10"][variant][k] for row in rows if k in row["vs_cold_at_10"][variant]]
        out[k] = {
            "tasks": sum(sum(v > 0 for v in s) > len(s) / 2 for s in signs),
            "tasks_no_worse": sum(sum(v >= 0 for v in s) > len(s) / 2 for s in signs),
            "pairs": sum(v > 0 for s in signs for v in s),
            "ties": sum(v == 0 for s in signs for v in s),
            "of_tasks": len(signs),
            "of_pairs": sum(map(len, signs)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("data/zoo-v1"))
    parser.add_argument(
        "--tasks", default=None, help="comma-separated tasks (default seq-digits; all with --test-plan)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="searches to run, of " + ", ".join(VARIANTS)
    )
    parser.add_argument(
        "--archs",
        default="sbrnn",
        help="architectures every study chooses between (sbrnn child tune --archs): sbrnn, or sbrnn,lstm",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/tune-compare"))
    parser.add_argument("--quick", action="store_true", help="one small task, one seed, 8 trials")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path, default=None, help="write the best-so-far curves to this PNG")
    parser.add_argument(
        "--test-plan",
        type=Path,
        default=None,
        help="tasks never in the zoo (a plan file): the shipped parent warm-starts TPE on them",
    )
    parser.add_argument("--test-records", type=Path, default=Path("data/zoo-test"))
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if any(v not in VARIANTS for v in variants) or not {"tpe", "tpe+parent"} <= set(variants):
        parser.error(
            f"--variants {args.variants!r}: allowed are {', '.join(VARIANTS)}, with tpe and tpe+parent"
        )
    if args.quick:
        if args.test_plan is not None:
            parser.error("--quick chooses a zoo task; --test-plan takes the plan's tasks")
        args.tasks, args.seeds, args.trials = "toy-regression", 1, 8
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.test_plan is not None:
        from sbrnn.child.sweep.plan_file import load_plan
        from sbrnn.parent.store import load_shipped

        plan, records, parent = args.test_plan, records_in(args.test_records), load_shipped()[0]
        tasks = args.tasks.split(",") if args.tasks else [t.name for t in load_plan(plan).tasks]
    else:
        plan, records, parent = PLAN, records_in(args.records), None
        tasks = (args.tasks or "seq-digits").split(",")
    archs = tuple(args.archs.split(","))
    warm_searches = [v for v in variants if VARIANTS[v][0]]
    rows = [
        compare(records, task, args.seeds, args.trials, args.runs, parent, plan, variants, archs)
        for task in tasks
    ]
    if args.plot is not None:
        plot(rows, args.plot)
    if args.json:
        print(json.dumps({"tasks": rows, "tally": {v: tally(rows, v) for v in warm_searches}}, indent=1))
        return 0
    for row in rows:
        print(
            f"{row['task']} at budget {row['budget']:,.0f} ({row['random_draws']} recorded random draws; "
            f"studies of {', '.join(row['archs'])}); "
            f"best minimum validation loss after k trials, median over seeds (epochs spent):"
        )
        for name in ("random", *variants):
            cells = []
            for k in KS:
                value = row[name].get(str(k))
                if value is None:
                    continue
                spent = row.get(name + " epochs", {}).get(str(k))
                cells.append(f"k={k}: {value:.4g}" + (f" ({spent:.0f} ep)" if spent is not None else ""))
            print(f"  {name:18s} " + "  ".join(cells))
        for variant in warm_searches:
            for ranks in map(list, {tuple(r) for r in row[variant + " warm ranks"]}):
                print(f"  {variant} trained the parent's ranks {ranks} of its top {VARIANTS[variant][0]}")
        print(f"  warm start reaches cold TPE's best within 10 trials: {row['warm_reaches_cold_best_in_10']}")
        print(
            "  epochs to reach cold TPE's best, per seed: "
            + "; ".join(f"{name} {row['epochs_to_cold_best'][name]}" for name in variants)
            + (
                f"; pruned study within half of cold's epochs: {row['pruned_half_epochs']}"
                if "pruned_half_epochs" in row
                else ""
            )
        )
    for variant in warm_searches:
        for k, t in tally(rows, variant).items():
            print(
                f"{variant}: best of {k} beats cold TPE's best of {min(10, args.trials)} on "
                f"{t['tasks']} of {t['of_tasks']} tasks (a majority of seeds; no worse on "
                f"{t['tasks_no_worse']}), {t['pairs']} of {t['of_pairs']} task-seed pairs ({t['ties']} ties)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
