"""Would another ranker order a new task's configurations better? Leave one held-out batch out.

The shipped parent orders a task's configurations by its ranker (:class:`sbrnn.parent.models.
ConfigRanker`). This fits that ranker and variants of it on the zoo (``data/zoo-v1``) and every
held-out batch but one, and scores each on the batch left out, one group per task and budget
(:func:`sbrnn.parent.loto.score_group`): normalised regret@1, the top-1's percentile among the
task's random draws, within-task Spearman, and the chance that the top-1 beats the best of 10 of
the task's other random draws (exact, :func:`replicate_ceiling.beats_best_of`: the closed loop's
comparison with TPE's 10 trials, whose first 10 are random draws of the same box), and the same
chance for warm starts among the recorded runs (:data:`WARM_STARTS`: the top 5 and 5 random draws,
the top 10, the top 5 alone; :func:`warm_start_chance`). The batch
measured last (``data/zoo-test5``) is kept out of every fit, so that a variant chosen here can be
confirmed on it (``--batches data/zoo-test5`` scores it, fitted on the zoo and the other three).

Variants (:data:`VARIANTS`):

``shipped``       the ranker as shipped (``shipped@S``: subsample seed ``S``; ``--seeds 0,1,2,3``
                  gives the band the ranker's seed alone moves the figures)
``rank-normal``   targets the normal scores of within-group ranks, not z-scores of the log minimum
``top-weighted``  the shipped z-scores; runs in a group's best fifth (z < -0.84) weigh 3
``lambdamart``    XGBoost's ``rank:ndcg`` on within-group fifths (best 4, worst 0)
``deeper``        300 rounds of depth 7 (shipped: 100 of depth 5)
``shallower``     100 rounds of depth 3
``with-minimum``  per task, the rank of the ranker's score plus half the rank of an xgb parent's
                  expected minimum (:meth:`sbrnn.parent.models.Parent.scores` without a ranker)
``family``        the training groups of the held-out task's family weigh 4 (the family read
                  from the name: ``rad``, ``digits``, ``cloning``, ...; a trait no user gives)
``landmarks``     two more features: the task's balanced configuration's and LSTM's (lr 1e-3)
                  relative minimum at the group's budget, as if a user trained those two first

    python benchmarks/ranker_variants.py [--variants shipped,rank-normal,...] [--seeds 0,1,2,3] \\
        [--batches data/zoo-test,data/zoo-test3,data/zoo-test4] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_loto import xgb_group_ranker  # noqa: E402
from replicate_ceiling import beats_best_of  # noqa: E402

from sbrnn.parent import loto  # noqa: E402
from sbrnn.parent.evaluate import fit_kind, is_random_draw  # noqa: E402
from sbrnn.parent.features import TrainingData, records_in, training_data  # noqa: E402
from sbrnn.parent.models import (  # noqa: E402
    RANKER_DEPTH,
    RANKER_LEARNING_RATE,
    RANKER_PARALLEL_TREES,
    RANKER_ROUNDS,
    ConfigRanker,
    group_keys,
    standardised_targets,
)
from sbrnn.records import RunRecord  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ZOO = "data/zoo-v1"
BATCHES = ("data/zoo-test", "data/zoo-test3", "data/zoo-test4")
KEPT_OUT = ("data/zoo-test5",)
"""Batches no fit here sees unless ``--batches`` scores them (each then fitted without it)."""
PROBES = ("balanced", "lstm")
"""The labels of the runs whose relative minima are the ``landmarks`` features."""
FAMILY_PREFIXES = ("rad", "recall", "adding", "parity")
FAMILY_SUFFIXES = ("digits", "cloning", "dynamics", "local")

Scorer = Callable[[TrainingData, TrainingData, int], np.ndarray]
"""``scorer(train, test, seed) -> [len(test)]`` scores, lower = better."""


def family(task: str) -> str:
    """The family a task name reads as (``other`` where none)."""
    prefix = next((p for p in FAMILY_PREFIXES if task.startswith(p)), None)
    return prefix or next((s for s in FAMILY_SUFFIXES if task.endswith(s)), "other")


def _regressor(seed: int, rounds: int = RANKER_ROUNDS, depth: int = RANKER_DEPTH):
    """The shipped ranker's XGBoost regression (:class:`ConfigRanker`), its rounds and depth given."""
    import xgboost

    return xgboost.XGBRegressor(
        n_estimators=rounds,
        num_parallel_tree=RANKER_PARALLEL_TREES,
        max_depth=depth,
        learning_rate=RANKER_LEARNING_RATE,
        subsample=0.8,
        colsample_bytree=0.8,
        tree_method="hist",
        random_state=seed,
        n_jobs=1,
    )


def _groups(data: TrainingData) -> np.ndarray:
    return np.asarray(group_keys(data.task, data.budget)).astype(str)


def rank_normal_targets(y: np.ndarray, converged: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Within each group, each converged run's normal score ``Phi^-1((rank + 1/2) / n)`` (rank 0 the
    lowest ``y``); NaN where not converged or the group has fewer than 3 converged runs or no spread."""
    from scipy.stats import norm

    z = np.full(len(y), np.nan)
    for key in np.unique(groups):
        rows = np.flatnonzero((groups == key) & converged)
        if len(rows) >= 3 and np.ptp(y[rows]) > 0:
            rank = np.argsort(np.argsort(y[rows], kind="stable"), kind="stable")
            z[rows] = norm.ppf((rank + 0.5) / len(rows))
    return z


def _target_regression(
    targets: str, weigh_top: bool = False, rounds: int = RANKER_ROUNDS, depth: int = RANKER_DEPTH
) -> Scorer:
    """The shipped ranker's regression on ``targets`` (``z``: its z-scores; ``rank``:
    :func:`rank_normal_targets`), a group's best fifth weighing 3 where ``weigh_top``."""

    def scorer(train: TrainingData, test: TrainingData, seed: int) -> np.ndarray:
        y, ok, groups = train.Y[:, -1], np.asarray(train.converged, bool), _groups(train)
        z = rank_normal_targets(y, ok, groups) if targets == "rank" else standardised_targets(y, ok, groups)
        keep = np.isfinite(z)
        weight = np.where(z[keep] < -0.84, 3.0, 1.0) if weigh_top else None
        model = _regressor(seed, rounds, depth).fit(train.X[keep], z[keep], sample_weight=weight)
        return model.predict(test.X)

    return scorer


def shipped(train: TrainingData, test: TrainingData, seed: int) -> np.ndarray:
    ranker = ConfigRanker(seed=seed).fit(train.X, train.Y[:, -1], train.converged, _groups(train))
    return ranker.predict(test.X)


def lambdamart(train: TrainingData, test: TrainingData, seed: int) -> np.ndarray:
    def fifths(value: np.ndarray) -> np.ndarray:  # best fifth 4, worst 0
        quantile = np.argsort(np.argsort(value, kind="stable"), kind="stable") / max(len(value) - 1, 1)
        return np.clip(np.floor((1.0 - quantile) * 5), 0, 4)

    return xgb_group_ranker(train, test, seed, "rank:ndcg", fifths)


def with_minimum(train: TrainingData, test: TrainingData, seed: int) -> np.ndarray:
    from scipy.stats import rankdata

    ranker = shipped(train, test, seed)
    minimum = fit_kind(train, "xgb", None, None, seed, 1)
    out = np.zeros(len(test.task))
    for task in np.unique(test.task):
        rows = test.task == task
        out[rows] = rankdata(ranker[rows]) + 0.5 * rankdata(minimum.scores(test.X[rows], "xgb"))
    return out


def family_weighted(train: TrainingData, test: TrainingData, seed: int) -> np.ndarray:
    y, ok = train.Y[:, -1], np.asarray(train.converged, bool)
    z = standardised_targets(y, ok, _groups(train))
    keep = np.isfinite(z)
    families = np.array([family(t) for t in train.task])[keep]
    out = np.zeros(len(test.task))
    for task in np.unique(test.task):
        rows = test.task == task
        weight = np.where(families == family(str(task)), 4.0, 1.0)
        out[rows] = _regressor(seed).fit(train.X[keep], z[keep], sample_weight=weight).predict(test.X[rows])
    return out


def with_landmarks(data: TrainingData, labels: dict[str, str]) -> TrainingData:
    """``data`` with one more feature column per :data:`PROBES` label: the relative minimum (``Y[:, -1]``)
    of the group's run of that label (1.0 where it did not converge, NaN where the group has none)."""
    label = np.array([labels.get(str(i), "") for i in data.run_id])
    groups = _groups(data)
    extra = np.full((len(groups), len(PROBES)), np.nan)
    for j, probe in enumerate(PROBES):
        for key in np.unique(groups):
            rows = np.flatnonzero((groups == key) & (label == probe))
            if len(rows):
                extra[groups == key, j] = data.Y[rows[0], -1] if data.converged[rows[0]] else 1.0
    return dataclasses.replace(data, X=np.hstack([data.X, extra]))


VARIANTS: dict[str, Scorer] = {
    "shipped": shipped,
    "rank-normal": _target_regression("rank"),
    "top-weighted": _target_regression("z", weigh_top=True),
    "lambdamart": lambdamart,
    "deeper": _target_regression("z", rounds=300, depth=7),
    "shallower": _target_regression("z", depth=3),
    "with-minimum": with_minimum,
    "family": family_weighted,
    "landmarks": shipped,  # the shipped ranker on the data with_landmarks gives it
}


WARM_STARTS = {"warm_5_5": (5, 5), "warm_10": (10, 0), "top_5": (5, 0)}
"""Offline warm starts: name -> (the ranker's top k, random draws added), set against 10 random draws."""


def warm_start_chance(
    value: np.ndarray, order: np.ndarray, is_random: np.ndarray, top: int, extra: int
) -> float:
    """The exact chance that the best of the ranker's ``top`` runs (``order[:top]``, any label) and
    ``extra`` random draws among the other random draws beats (is strictly below) the best of 10 random
    draws, the two drawn independently without replacement: summed over the rank ``i`` of the cold
    draws' best among the ``n`` random values (probability ``C(n - i, 9) / C(n, 10)``)."""
    drawn = np.sort(value[is_random])
    picks = order[:top]
    rest = np.sort(value[np.setdiff1d(np.flatnonzero(is_random), picks)])
    n, best_pick = len(drawn), float(value[picks].min())
    chance = 0.0
    for i, x in enumerate(drawn, start=1):
        p_cold = math.comb(n - i, 9) / math.comb(n, 10)
        if p_cold == 0.0:
            break
        above = int(np.sum(rest >= x))
        p_warm = 1.0 if best_pick < x else 1.0 - math.comb(above, extra) / math.comb(len(rest), extra)
        chance += p_cold * p_warm
    return chance


def score_batch(scores: np.ndarray, test: TrainingData, is_random: np.ndarray) -> list[dict]:
    """Per group of ``test`` (a task at a budget): the offline metrics of :mod:`sbrnn.parent.loto`,
    ``beats_best_of_10``, the exact chance the top-1 beats the best of 10 of the other random draws, and
    for each of :data:`WARM_STARTS` the chance of :func:`warm_start_chance`."""
    out = []
    for task, budget in sorted(set(zip(test.task, test.budget))):
        rows = (test.task == task) & (test.budget == budget)
        loss, ok = test.min_loss[rows], test.converged[rows]
        group = loto.score_group(task, budget, loss, ok, scores[rows], is_random[rows])
        if group is None:
            continue
        value = np.where(ok, loss, np.max(loss[ok]))
        order = np.argsort(scores[rows], kind="stable")
        top = int(order[0])
        others = [float(v) for i, v in enumerate(value) if is_random[rows][i] and i != top]
        out.append(
            {
                "task": str(task),
                "budget": float(budget),
                "regret1": group.regret[1],
                "percentile": group.percentile,
                "spearman": group.spearman,
                "beats_best_of_10": beats_best_of(float(value[top]), others),
                **{
                    name: warm_start_chance(value, order, is_random[rows], top_k, extra)
                    for name, (top_k, extra) in WARM_STARTS.items()
                },
            }
        )
    return out


def summary(rows: Sequence[dict]) -> dict:
    """Pooled over groups: mean regret@1, median percentile and Spearman, mean chance of beating the
    best of 10 random draws and the share of groups where that chance is above one half, the same
    for each of :data:`WARM_STARTS`."""

    def given(key):
        return [r[key] for r in rows if r[key] is not None]

    chances = given("beats_best_of_10")
    return {
        "groups": len(rows),
        "mean_regret1": float(np.mean(given("regret1"))),
        "median_percentile": float(np.median(given("percentile"))),
        "median_spearman": float(np.median(given("spearman"))),
        "mean_beats_best_of_10": float(np.mean(chances)),
        "share_beats_best_of_10": float(np.mean(np.array(chances) > 0.5)),
        **{f"mean_{name}": float(np.mean(given(name))) for name in WARM_STARTS},
        **{f"share_{name}": float(np.mean(np.array(given(name)) > 0.5)) for name in WARM_STARTS},
    }


def leave_one_batch_out(
    zoo: Sequence[RunRecord],
    batches: dict[str, Sequence[RunRecord]],
    scored: Sequence[str],
    variants: Sequence[str],
    seeds: Sequence[int] = (0,),
    kept_out: Sequence[str] = (),
) -> dict[str, dict[str, list[dict]]]:
    """``{variant@seed: {batch: score_batch rows}}``: each batch of ``scored`` ranked by each variant
    fitted on ``zoo`` and every other batch (never one of ``kept_out`` that is not being scored)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"variant {unknown[0]!r} is unknown; allowed: {', '.join(VARIANTS)}")
    labels = {r.run_id: r.label or "" for rs in (zoo, *batches.values()) for r in rs}
    out: dict[str, dict[str, list[dict]]] = {}
    for name in scored:
        train = training_data(
            [*zoo, *(r for b, rs in batches.items() if b != name and b not in kept_out for r in rs)]
        )
        test = training_data(list(batches[name]))
        is_random = is_random_draw(list(batches[name]), test)
        for variant in variants:
            fit_on, score_on = (
                (with_landmarks(train, labels), with_landmarks(test, labels))
                if variant == "landmarks"
                else (train, test)
            )
            for seed in seeds:
                key = variant if seed == 0 else f"{variant}@{seed}"
                scores = VARIANTS[variant](fit_on, score_on, seed)
                out.setdefault(key, {})[name] = score_batch(scores, test, is_random)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0", help="ranker seeds, e.g. 0,1,2,3")
    parser.add_argument("--batches", default=",".join(BATCHES), help="the batches to score, one at a time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    scored = [b for b in args.batches.split(",") if b]
    every = list(dict.fromkeys([*BATCHES, *KEPT_OUT, *scored]))
    batches = {b: records_in(ROOT / b if not Path(b).is_absolute() else b) for b in every}
    seeds = [int(s) for s in args.seeds.split(",")]
    out = leave_one_batch_out(
        records_in(ROOT / ZOO), batches, scored, args.variants.split(","), seeds, kept_out=KEPT_OUT
    )
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    warm = " | ".join(f"{name} | > 1/2" for name in WARM_STARTS)
    head = "| variant | batch | groups | mean regret@1 | median pct | median Spearman | P(beats 10) | > 1/2"
    print(f"{head} | {warm} |")
    print("|---|---|" + "---:|" * (6 + 2 * len(WARM_STARTS)))
    for key, by_batch in out.items():
        pooled = [row for rows in by_batch.values() for row in rows]
        for batch, rows in [*by_batch.items(), ("all", pooled)]:
            s = summary(rows)
            cells = (
                s["groups"],
                f"{s['mean_regret1']:.3f}",
                f"{s['median_percentile']:.2f}",
                f"{s['median_spearman']:.2f}",
                f"{s['mean_beats_best_of_10']:.2f}",
                f"{s['share_beats_best_of_10']:.2f}",
                *(f"{s[f'{which}_{name}']:.2f}" for name in WARM_STARTS for which in ("mean", "share")),
            )
            print(f"| {key} | {batch} | " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
