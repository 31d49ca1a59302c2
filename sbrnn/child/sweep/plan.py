"""Planning a sweep (pure): per task and budget the baselines, the balanced configuration, then draws.

Draw ``i`` at (task, budget) takes its generator from ``(seed, task, budget, i)``
(:func:`sbrnn.child.sampling.run_rng`), and stratified draws theirs from ``(seed, task, budget,
"stratified", bin, i)`` (:func:`sbrnn.child.sampling.draw_stratified`), so the same command plans
the same configurations, seeds and run ids on any machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sbrnn.child import sampling
from sbrnn.child.config import RunConfig
from sbrnn.child.model import resolve
from sbrnn.child.weight_space import Grid
from sbrnn.datasets import registry
from sbrnn.datasets.registry import get_info
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import BASELINE_ARCHS


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: a label (``random 3``, ``stratified .6-.8 2``, ``dense``, ``balanced``,
    ...) and its config."""

    label: str
    config: RunConfig

    @property
    def run_id(self) -> str:
        return self.config.run_id()


def plan_sweep(
    tasks: Sequence[str],
    budgets: Sequence[float],
    runs: int,
    *,
    epochs: int = 25,
    seed: int = 0,
    space: str = "paper",
    pins: sampling.Pins | None = None,
    include_baselines: bool = False,
    balanced: bool = False,
    batch_size: int = 16,
    task_options: Mapping[str, object] | None = None,
    patience: int | None = None,
    stratify: sampling.Stratify | int | str | None = None,
    lstm_lrs: Sequence[float] = (),
) -> list[PlannedRun]:
    """The runs of a sweep, in a fixed order: per task, per budget, baselines, the LSTM at
    ``lstm_lrs``, balanced, draws, stratified draws.

    Draw ``i`` at (task, budget) takes densities, init means and stds and the learning rate
    from ``space`` (``pins`` fix any of them for every draw) with the generator
    :func:`sbrnn.child.sampling.run_rng` of ``(seed, task, budget, i)``. Every run trains with the
    sweep seed, which builds the task's data (one data set per task for the whole sweep) and
    draws masks, init and data order; baselines and the balanced configuration use the pinned
    learning rate (or the default 1e-3). Identical configs (everything pinned) collapse to one
    run. ``task_options`` (builder options such as ``n_train``) apply to every task; ``patience``
    (early stopping) to every run. ``stratify`` (a :class:`sbrnn.child.sampling.Stratify`, a
    count per bin or its text, :func:`sbrnn.child.sampling.as_stratify`) adds that many draws per
    hidden-proportion bin at the task's dims and each budget, labelled ``stratified <bin> <i>``.
    ``lstm_lrs`` trains the LSTM also at each of these learning rates, labelled ``lstm lr <lr>``
    (``lstm lr 0.0015``): its only hyperparameter at a budget, which the baselines fix.
    Raises :class:`SbrnnError` for an unknown task or option, a budget too small for a task's dims,
    a bin the space does not reach, or an empty sweep.
    """
    if not tasks:
        raise SbrnnError("give at least one task")
    if not budgets:
        raise SbrnnError("give at least one budget")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 0:
        raise SbrnnError(f"runs = {runs!r} is out of range; allowed: integers >= 0")
    sampling.check_space(space)
    for rate in lstm_lrs:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise SbrnnError(f"LSTM learning rate {rate!r} is out of range; allowed: a number > 0")
    strata = None if stratify is None else sampling.as_stratify(stratify)
    pins = pins or sampling.Pins()
    lr = pins.lr if pins.lr is not None else RunConfig.lr
    planned: dict[str, PlannedRun] = {}

    def add(label: str, config: RunConfig, n_x: int, n_y: int) -> None:
        resolve(config, n_x, n_y)  # a budget the task cannot hold fails here, before any run
        planned.setdefault(config.run_id(), PlannedRun(label, config))

    options = dict(task_options or {})
    for task in dict.fromkeys(tasks):
        info = get_info(task)
        allowed = registry.task_options(info)
        unknown = sorted(set(options) - set(allowed)) if allowed is not None else []
        if allowed is not None and unknown:
            listed = ", ".join(allowed) or "none"
            raise SbrnnError(f"unknown option {unknown[0]!r} for task {task}; allowed: {listed}")
        for budget in dict.fromkeys(float(b) for b in budgets):
            if not (math.isfinite(budget) and budget > 0):
                raise SbrnnError(f"budget = {budget:g} is out of range; allowed: a number > 0")
            common: dict[str, Any] = {  # RunConfig fields
                "task": task,
                "task_options": options,
                "budget": budget,
                "epochs": epochs,
                "batch_size": batch_size,
                "patience": patience,
            }
            if include_baselines:
                for arch in BASELINE_ARCHS:
                    add(arch, RunConfig(**common, arch=arch, lr=lr, seed=seed), info.n_x, info.n_y)
            for rate in lstm_lrs:
                config = RunConfig(**common, arch="lstm", lr=float(rate), seed=seed)
                add(f"lstm lr {float(rate):g}", config, info.n_x, info.n_y)
            if balanced:
                add("balanced", RunConfig(**common, lr=lr, seed=seed), info.n_x, info.n_y)
            for i in range(runs):
                hp = sampling.draw(sampling.run_rng(seed, task, budget, i), space, pins)
                add(f"random {i}", _drawn(common, hp, seed), info.n_x, info.n_y)
            if strata is not None:
                for drawn in sampling.draw_stratified(
                    seed, task, budget, info.n_x, info.n_y, strata, space, pins
                ):
                    add(drawn.label, _drawn(common, drawn.hyperparameters, seed), info.n_x, info.n_y)
    if not planned:
        raise SbrnnError(
            "the sweep plans no runs; give runs >= 1, stratified draws, the baselines or the balanced "
            "configuration"
        )
    return list(planned.values())


def _drawn(common: Mapping[str, Any], hp: sampling.Hyperparameters, seed: int) -> RunConfig:
    """The config of a drawn run: the sweep's common fields, the draw's hyperparameters, the seed."""
    return RunConfig(**common, densities=hp.densities, means=hp.means, stds=hp.stds, lr=hp.lr, seed=seed)


@dataclass(frozen=True)
class PlanRow:
    """A planned run as a dry run lists it: label, run id, its config's summary, the hidden size and
    densities it resolves to (None for the LSTM), and its recorded status (None: not recorded)."""

    label: str
    run_id: str
    task: str
    budget: float | None
    arch: str
    h: int
    densities: Grid | None
    hidden_proportion: float | None
    lr: float
    epochs: int
    seed: int
    recorded: str | None

    def to_dict(self) -> dict:
        """JSON-ready; the densities as nested lists."""
        return {**asdict(self), "densities": [list(r) for r in self.densities] if self.densities else None}


def describe_plan(plan: Sequence[PlannedRun], records: str | os.PathLike) -> list[PlanRow]:
    """One :class:`PlanRow` per planned run, with its status in the records directory ``records``."""
    from sbrnn.child.sweep.coordinator import recorded_statuses

    done = recorded_statuses(records)
    rows = []
    for p in plan:
        config = p.config
        info = get_info(config.task)
        spec, h = resolve(config, info.n_x, info.n_y)
        rows.append(
            PlanRow(
                label=p.label,
                run_id=p.run_id,
                task=config.task,
                budget=config.budget,
                arch=config.arch,
                h=h,
                densities=spec.densities if spec else None,
                hidden_proportion=spec.hidden_proportion if spec else None,
                lr=config.lr,
                epochs=config.epochs,
                seed=config.seed,
                recorded=done.get(p.run_id),
            )
        )
    return rows
