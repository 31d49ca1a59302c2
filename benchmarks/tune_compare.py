"""Does the parent make Optuna studies converge faster on tasks it never saw?

For each held-out task (at its middle budget of ``sweeps/zoo-v1.toml``, the children trained as the
sweep's draws were: seed 0, the task's epochs and patience) and each of ``--seeds`` sampler seeds,
four searches of the same space (the paper's ranges, ``sbrnn child tune --space paper``):

``random``        the task's own recorded random draws: the exact expected best of ``k`` draws
                  (order statistics over the recorded runs; no new training);
``tpe``           a cold TPE study of ``--trials`` trials;
``tpe+parent``    TPE with the top 5 recommendations of a parent fitted WITHOUT the task enqueued first;
``tpe+parent+median``  the same with the median pruner.

Reported: the best minimum validation loss after k = 1, 5, 10, 20, 30 trials (the median over
seeds), the epochs spent to get there (pruning saves epochs, not trials), and per task whether
warm-started TPE reached cold TPE's best of ``--trials`` within 10 trials, and with pruning the
same best loss for at most half of cold TPE's epochs (per sampler seed: the epochs each study had
spent when its best-so-far first matched the cold study's best of ``--trials``). Every trial is an
sbrnn record in ``--runs`` with the study in ``--runs/studies.journal`` (rerunning resumes).

    python benchmarks/tune_compare.py --tasks rad20,seq-digits,hopper-dynamics --seeds 3 --trials 30
    python benchmarks/tune_compare.py --quick            # one small task, 1 seed, 8 trials
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from sbrnn.parent.features import records_in
from sbrnn.parent.loto import expected_best_of_random

PLAN = Path(__file__).resolve().parent.parent / "sweeps" / "zoo-v1.toml"
KS = (1, 5, 10, 20, 30)
VARIANTS = {"tpe": (0, "none"), "tpe+parent": (5, "none"), "tpe+parent+median": (5, "median")}


def _entry(task: str):
    from sbrnn.child.sweep.plan_file import load_plan
    from sbrnn.errors import SbrnnError

    try:
        return load_plan(PLAN).task(task)
    except SbrnnError as exc:
        raise SystemExit(str(exc)) from exc


def best_so_far(values: list[float]) -> list[float]:
    out, best = [], float("inf")
    for v in values:
        best = min(best, v)
        out.append(best)
    return out


def study(task, entry, budget, trials, variant, seed, runs, parent):
    """One study's per-trial minimum validation losses (pruned and failed runs count as inf) and
    the epochs each trial ran, in trial order."""
    from sbrnn.child import tune
    from sbrnn.datasets.summary import build_checked
    from sbrnn.records import read_records

    warm, pruner = VARIANTS[variant]
    settings = tune.TuneSettings(
        task=task,
        budget=budget,
        trials=trials,
        records=runs,
        task_options=entry.options,
        epochs=entry.epochs,
        patience=entry.patience,
        batch_size=entry.batch_size,
        seed=0,
        sampler_seed=seed,
        storage=str(runs / "studies.journal"),
        study=f"{task}-{budget:g}-{variant}-{tune.space_tag('paper')}-{seed}",
        warm_start=warm,
        pruner=pruner,
        space="paper",
    )
    tune.tune(
        settings,
        build_checked(task, 0, entry.options),
        parent=parent if warm else None,
        parent_note=None if parent is not None or not warm else "no parent",
    )
    mine = sorted((r for r in read_records(runs) if r.study == settings.study_name), key=lambda r: r.trial)
    losses = [
        r.min_val_loss if r.status == "ok" and r.min_val_loss is not None else float("inf") for r in mine
    ]
    return losses, [len(r.val_loss) for r in mine]


def compare(records, task: str, seeds: int, trials: int, runs: Path) -> dict:
    from sbrnn.parent.evaluate import fit_held_out

    entry = _entry(task)
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
        "random_draws": len(drawn),
        "random": {
            str(k): expected_best_of_random([min(d, worst) for d in drawn], k) for k in KS if k <= len(drawn)
        },
    }
    parent = fit_held_out(records, task)
    per_seed = {}
    for variant in VARIANTS:
        curves, epochs = [], []
        for seed in range(seeds):
            losses, ran = study(task, entry, budget, trials, variant, seed, runs, parent)
            curves.append(best_so_far(losses))
            epochs.append(best_so_far_epochs(ran))
        per_seed[variant] = (curves, epochs)
        out[variant + " curve"] = [statistics.median(c[i] for c in curves) for i in range(trials)]
        out[variant] = {str(k): statistics.median(c[k - 1] for c in curves) for k in KS if k <= trials}
        out[variant + " epochs"] = {
            str(k): statistics.median(e[k - 1] for e in epochs) for k in KS if k <= trials
        }
    cold_best = out["tpe"][str(min(trials, 30))] if str(min(trials, 30)) in out["tpe"] else None
    warm10 = out["tpe+parent"].get("10")
    out["warm_reaches_cold_best_in_10"] = None if cold_best is None or warm10 is None else warm10 <= cold_best
    # Compute to reach cold TPE's best: per seed, the epochs a study had spent when its best-so-far
    # first matched the cold study of the same sampler seed (None where it never did).
    reach = {
        variant: [
            epochs_to_reach(curve, spent, cold[-1])
            for curve, spent, cold in zip(*per_seed[variant], per_seed["tpe"][0])
        ]
        for variant in VARIANTS
    }
    out["epochs_to_cold_best"] = reach
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

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        ks = [int(k) for k in row["random"]]
        ax.plot(ks, list(row["random"].values()), "k--", label="random (expected)")
        for name in VARIANTS:
            curve = row[name + " curve"]
            ax.plot(range(1, len(curve) + 1), curve, label=name)
        ax.set_title(f"{row['task']} at {row['budget']:,.0f}")
        ax.set_xlabel("trials")
        ax.set_ylabel("best min. validation loss")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("data/zoo-v1"))
    parser.add_argument("--tasks", default="seq-digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--runs", type=Path, default=Path("runs/tune-compare"))
    parser.add_argument("--quick", action="store_true", help="one small task, one seed, 8 trials")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path, default=None, help="write the best-so-far curves to this PNG")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.trials = "toy-regression", 1, 8
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    records = records_in(args.records)
    rows = [compare(records, task, args.seeds, args.trials, args.runs) for task in args.tasks.split(",")]
    if args.plot is not None:
        plot(rows, args.plot)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        print(
            f"{row['task']} at budget {row['budget']:,.0f} ({row['random_draws']} recorded random draws); "
            f"best minimum validation loss after k trials, median over seeds (epochs spent):"
        )
        for name in ("random", *VARIANTS):
            cells = []
            for k in KS:
                value = row[name].get(str(k))
                if value is None:
                    continue
                spent = row.get(name + " epochs", {}).get(str(k))
                cells.append(f"k={k}: {value:.4g}" + (f" ({spent:.0f} ep)" if spent is not None else ""))
            print(f"  {name:18s} " + "  ".join(cells))
        print(f"  warm start reaches cold TPE's best within 10 trials: {row['warm_reaches_cold_best_in_10']}")
        print(
            "  epochs to reach cold TPE's best, per seed: "
            + "; ".join(f"{name} {row['epochs_to_cold_best'][name]}" for name in VARIANTS)
            + f"; pruned study within half of cold's epochs: {row['pruned_half_epochs']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
