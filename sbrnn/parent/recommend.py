"""Recommendations: child configurations for a task, from its dims and a budget.

:func:`a_priori` uses the dims and the budget alone (the paper's balancing rule);
:func:`model_ranked` ranks many candidates by a fitted parent's predictions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from sbrnn.child.space import DENSITY_RANGE, MIN_LR, MIN_STD, Hyperparameters, draw
from sbrnn.child.spec import H_ROW, Grid, SparseBlockSpec, balance, baselines
from sbrnn.errors import SbrnnError
from sbrnn.parent.features import spec_features
from sbrnn.parent.models import Parent

DEFAULT_LR = 1e-3
"""Learning rate of the a-priori family: the mean of the sweep's distribution."""


def a_priori(n_in: int, n_out: int, budget: float, target: float = 0.5) -> dict:
    """The paper's a-priori recommendation, with the equal-budget baselines beside it.

    Returns ``{"recommended": plan, "baselines": {"dense": plan, "uniform": plan, "lstm": {...}}}``
    where a plan is :meth:`SparseBlockSpec.plan` plus ``sparsified_block`` and ``target`` for the
    recommendation. Uses no records and no validation runs: only ``n_in``, ``n_out`` and ``budget``.
    """
    balanced = balance(n_in, n_out, budget, target)
    base = baselines(n_in, n_out, budget)
    recommended = {
        **balanced.spec.plan(budget),
        "sparsified_block": balanced.block,
        "target": target,
    }
    return {
        "recommended": recommended,
        "baselines": {
            "dense": base["dense"].plan(budget),
            "uniform": base["uniform"].plan(budget),
            "lstm": {**base["lstm"], "budget": budget},
        },
    }


BALANCED_TARGETS = tuple(round(0.3 + 0.05 * i, 2) for i in range(9))
"""Target hidden proportions of the a-priori family: 0.3, 0.35, ..., 0.7."""


@dataclass(frozen=True)
class Candidate:
    """A configuration to score: the weight space (``h`` from the budget), learning rate, origin."""

    spec: SparseBlockSpec
    lr: float
    source: str

    @property
    def key(self) -> Grid:
        """Candidates with the same densities are the same recommendation (``h`` follows from them)."""
        return self.spec.densities


def balanced_family(n_in: int, n_out: int, budget: float) -> list[Candidate]:
    """The a-priori family: each h-row block sparsified in turn to each of :data:`BALANCED_TARGETS`."""
    out = []
    for block in H_ROW:
        for target in BALANCED_TARGETS:
            spec = balance(n_in, n_out, budget, target, block=block).spec
            out.append(Candidate(spec, DEFAULT_LR, f"balanced {block} {target:g}"))
    return out


def _spec(n_in: int, n_out: int, budget: float, hp: Hyperparameters) -> SparseBlockSpec | None:
    """The configuration of ``hp`` with ``h`` from the budget; None when its y row alone exceeds it."""
    try:
        return SparseBlockSpec.from_budget(n_in, n_out, budget, hp.densities, hp.means, hp.stds)
    except SbrnnError:
        return None


def sweep_draws(n_in: int, n_out: int, budget: float, rng: np.random.Generator, n: int) -> list[Candidate]:
    """``n`` draws from the paper's sweep space (method.md §6); draws that cannot fit are skipped."""
    out = []
    for _ in range(n):
        hp = draw(rng, "paper")
        spec = _spec(n_in, n_out, budget, hp)
        if spec is not None:
            out.append(Candidate(spec, hp.lr, "draw"))
    return out


def perturb(candidate: Candidate, budget: float, rng: np.random.Generator) -> Candidate | None:
    """A nearby configuration: densities and init stds scaled by ``exp(N(0, .3))`` and
    ``exp(N(0, .2))``, means shifted by ``N(0, .001)``, the learning rate scaled by ``exp(N(0, .2))``;
    rounded as in the sweep space; ``h`` from the budget."""
    spec = candidate.spec
    d = np.clip((np.ravel(spec.densities) * np.exp(rng.normal(0, 0.3, 6))).round(2), *DENSITY_RANGE)
    m = (np.ravel(spec.means) + rng.normal(0, 0.001, 6)).round(3)
    s = np.maximum((np.ravel(spec.stds) * np.exp(rng.normal(0, 0.2, 6))).round(3), MIN_STD)
    lr = max(round(candidate.lr * float(np.exp(rng.normal(0, 0.2))), 6), MIN_LR)
    grids = [tuple(tuple(float(x) for x in row) for row in v.reshape(2, 3)) for v in (d, m, s)]
    new = _spec(spec.n_x, spec.n_y, budget, Hyperparameters(*grids, lr))
    return None if new is None else Candidate(new, lr, "perturbed")


def _score(parent: Parent, kind: str, candidates: list[Candidate], budget: float, steps: int,
           loss_kind: str) -> list[dict]:
    """Predictions for ``candidates``; ``score`` is the expected minimum validation loss when a run
    that does not converge counts as the worst candidate's predicted minimum:
    ``p * min + (1 - p) * worst``."""
    X = np.stack([spec_features(c.spec, steps=steps, loss_kind=loss_kind, budget=budget, lr=c.lr)
                  for c in candidates])
    pred = parent.predict(X, kind)
    minimum = np.exp(pred.log_min)
    worst = float(minimum.max())
    score = pred.p_converge * minimum + (1.0 - pred.p_converge) * worst
    rows = []
    for i, c in enumerate(candidates):
        s = pred.summary(i)
        rows.append({
            "source": c.source,
            "h": c.spec.h,
            "densities": [list(r) for r in c.spec.densities],
            "means": [list(r) for r in c.spec.means],
            "stds": [list(r) for r in c.spec.stds],
            "lr": c.lr,
            "hidden_proportion": c.spec.hidden_proportion,
            "model_density": c.spec.model_density,
            "total_trainable": round(c.spec.total_trainable),
            "predicted_min": s["min_val_loss"],
            "min_low": s["min_low"],
            "min_high": s["min_high"],
            "log_min_std": s["log_min_std"],
            "p_converge": s["p_converge"],
            "score": float(score[i]),
            "_candidate": c,
        })
    return rows


def _distinct_best(rows: list[dict], k: int) -> list[dict]:
    """The ``k`` best-scoring rows with distinct densities."""
    out, seen = [], set()
    for row in sorted(rows, key=lambda r: r["score"]):
        key = row["_candidate"].key
        if key not in seen:
            seen.add(key)
            out.append(row)
            if len(out) == k:
                break
    return out


def model_ranked(
    parent: Parent, n_in: int, n_out: int, budget: float, *, top: int = 5, seed: int = 0,
    kind: str | None = None, steps: int | None = None, loss_kind: str | None = None,
    draws: int = 256, rounds: int = 2, per_round: int = 64,
) -> dict:
    """Recommendations ranked by a fitted parent.

    Candidates: the a-priori :func:`balanced_family`, ``draws`` :func:`sweep_draws`, then
    ``rounds`` rounds of ``per_round`` :func:`perturb` ations of the current best eight. All take
    ``h`` from ``budget``. They are ranked by ``score`` (see :func:`_score`); the ``top`` best with
    distinct densities are returned, each with its predicted minimum, one-spread band and
    convergence probability.
    """
    if not (isinstance(top, int) and top >= 1):
        raise SbrnnError(f"top = {top!r} is out of range; allowed: integers >= 1")
    kind = parent.kind(kind)
    steps, loss_kind = parent.context(n_in, n_out, steps, loss_kind)
    rng = np.random.default_rng(seed)
    candidates = balanced_family(n_in, n_out, budget) + sweep_draws(n_in, n_out, budget, rng, draws)
    rows = _score(parent, kind, candidates, budget, steps, loss_kind)
    for _ in range(rounds):
        best = _distinct_best(rows, 8)
        nearby = [perturb(best[i % len(best)]["_candidate"], budget, rng) for i in range(per_round)]
        nearby = [c for c in nearby if c is not None]
        if nearby:
            candidates = [r["_candidate"] for r in rows] + nearby
            rows = _score(parent, kind, candidates, budget, steps, loss_kind)
    chosen = _distinct_best(rows, top)
    sources = Counter(r["source"].split(" ")[0] for r in rows)
    return {
        "model": kind,
        "n_in": n_in,
        "n_out": n_out,
        "budget": budget,
        "steps": steps,
        "loss_kind": loss_kind,
        "seen_task": any(t["n_x"] == n_in and t["n_y"] == n_out for t in parent.tasks.values()),
        "candidates": dict(sorted(sources.items())),
        "top": [{"rank": i + 1, **{k: v for k, v in r.items() if k != "_candidate"}}
                for i, r in enumerate(chosen)],
    }
