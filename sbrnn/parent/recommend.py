"""Recommendations: child configurations for a task, from its dims and a budget."""

from __future__ import annotations

from sbrnn.child.spec import balance, baselines


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
