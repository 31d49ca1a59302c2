"""Leave-one-task-out: how well a parent ranks configurations of a task it never saw.

The protocol of transfer-HPO benchmarks (HPO-B; method.md §9): split by task, never by run; fit
on every other task; score inside the held-out one. Within a *group* (one task and budget: the
runs a recommendation for that task and budget chooses among), with ``loss`` each run's minimum
validation loss (a run that diverged or failed counts as the group's worst) and ``score`` the
parent's ranking (lower = better):

``regret@k``       normalised regret of the best of the parent's top ``k``:
                   ``(best picked - best) / (worst - best)``; 0 = it picked the group's best.
``random regret``  the expectation of the same for ``k`` runs drawn at random (exact, from the
                   order statistics of the group).
``random-equivalent trials``  how many random draws give the parent's regret@1 in expectation
                   (linear between whole draws; the group size when even all of them do not).
``percentile``     the share of the group's random draws (``label`` ``random i``) that the
                   parent's top-1 beats.
``spearman``       Spearman's rho of score and loss over the group's converged runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from sbrnn.parent.features import TrainingData

KS = (1, 3, 10)

FitPredict = Callable[[TrainingData, TrainingData], np.ndarray]
"""``fit_predict(train, test) -> scores [len(test)]`` (lower = better): fit on ``train``, score ``test``."""


def tpe_study(task: str, budget: float, search: str, seed: int) -> str:
    """The Optuna study of one search of the closed-loop benchmarks (``benchmarks/meta_loto.py``,
    ``tune_compare.py``, ``ranker_seeds.py``): ``search`` (``tpe``, ``tpe+parent``, ...) for ``task``
    at ``budget`` with sampler ``seed`` in the paper's space, ``loto-<task>-<budget>-<search>-<space
    tag>-<seed>``. One name for all three, so a cold TPE study one of them trained serves the others."""
    from sbrnn.child.tune import space_tag

    return f"loto-{task}-{budget:g}-{search}-{space_tag('paper')}-{seed}"


def expected_best_of_random(values: np.ndarray, k: int) -> float:
    """``E[min]`` of ``k`` values drawn without replacement from ``values`` (exact)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    k = min(k, n)
    # P(min is the i-th smallest, 1-based) = C(n - i, k - 1) / C(n, k)
    weights = np.array([math.comb(n - i, k - 1) for i in range(1, n + 1)], dtype=np.float64)
    return float(np.dot(v, weights) / math.comb(n, k))


@dataclass(frozen=True)
class GroupScore:
    """The ranking metrics of one (task, budget) group (see the module doc)."""

    task: str
    budget: float
    runs: int
    regret: dict[int, float]
    random_regret: dict[int, float]
    random_equivalent: float
    percentile: float | None
    spearman: float | None
    top1_loss: float
    best_loss: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["regret"] = {str(k): v for k, v in self.regret.items()}
        out["random_regret"] = {str(k): v for k, v in self.random_regret.items()}
        return out


def score_group(
    task: str,
    budget: float,
    loss: np.ndarray,
    converged: np.ndarray,
    score: np.ndarray,
    is_random: np.ndarray,
    ks: Sequence[int] = KS,
) -> GroupScore | None:
    """The metrics of one group; None when it has fewer than two converged runs or no spread."""
    if converged.sum() < 2:
        return None
    worst_finite = float(np.max(loss[converged]))
    value = np.where(converged, loss, worst_finite)
    best, worst = float(value.min()), float(value.max())
    if not worst > best:
        return None
    span = worst - best
    order = np.argsort(score, kind="stable")
    regret = {k: (float(value[order[:k]].min()) - best) / span for k in ks}
    random_regret = {k: (expected_best_of_random(value, k) - best) / span for k in ks}
    curve = [(expected_best_of_random(value, k) - best) / span for k in range(1, len(value) + 1)]
    equivalent = float(len(value))
    for k in range(1, len(curve)):
        if curve[k] <= regret[1] <= curve[k - 1]:
            gap = curve[k - 1] - curve[k]
            equivalent = k + (curve[k - 1] - regret[1]) / gap if gap > 0 else float(k + 1)
            break
    else:
        if regret[1] >= curve[0]:
            equivalent = 1.0
    top = order[0]
    drawn = value[is_random]
    percentile = float(np.mean(value[top] < drawn)) if len(drawn) else None
    rho = None
    if converged.sum() >= 3 and np.ptp(loss[converged]) > 0 and np.ptp(score[converged]) > 0:
        rho = float(spearmanr(score[converged], loss[converged]).statistic)
    return GroupScore(
        task,
        float(budget),
        int(len(value)),
        regret,
        random_regret,
        equivalent,
        percentile,
        rho,
        float(value[top]),
        best,
    )


def leave_one_task_out(
    data: TrainingData,
    fit_predict: FitPredict,
    is_random: np.ndarray,
    tasks: Sequence[str] | None = None,
    on_task: Callable[[str], None] | None = None,
) -> list[GroupScore]:
    """Fit without each task in turn (``tasks``, default all) and score its groups."""
    out = []
    for task in tasks if tasks is not None else sorted(set(data.task)):
        held = data.task == task
        scores = fit_predict(data.subset(~held), data.subset(held))
        test = data.subset(held)
        for budget in sorted(set(test.budget)):
            rows = test.budget == budget
            group = score_group(
                task, budget, test.min_loss[rows], test.converged[rows], scores[rows], is_random[held][rows]
            )
            if group is not None:
                out.append(group)
        if on_task is not None:
            on_task(task)
    return out


def summarise(groups: Sequence[GroupScore], ks: Sequence[int] = KS) -> dict:
    """Medians (and means) over groups, and per task the mean over its budgets."""

    def med(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    by_task: dict[str, list[GroupScore]] = {}
    for g in groups:
        by_task.setdefault(g.task, []).append(g)
    return {
        "groups": len(groups),
        "tasks": len(by_task),
        "median_regret": {str(k): med([g.regret[k] for g in groups]) for k in ks},
        "median_random_regret": {str(k): med([g.random_regret[k] for g in groups]) for k in ks},
        "mean_regret": {str(k): mean([g.regret[k] for g in groups]) for k in ks},
        "mean_random_regret": {str(k): mean([g.random_regret[k] for g in groups]) for k in ks},
        "median_random_equivalent": med([g.random_equivalent for g in groups]),
        "median_percentile": med([g.percentile for g in groups]),
        "median_spearman": med([g.spearman for g in groups]),
        "per_task": {
            t: {
                "regret@1": mean([g.regret[1] for g in gs]),
                "percentile": mean([g.percentile for g in gs]),
                "spearman": mean([g.spearman for g in gs]),
                "random_equivalent": mean([g.random_equivalent for g in gs]),
            }
            for t, gs in sorted(by_task.items())
        },
    }
