"""Sweep plan files: a whole meta-sweep (tasks, options, budgets, draws, epochs) in one TOML file.

``sbrnn child sweep --plan sweeps/zoo-v1.toml --records DIR`` plans from the file instead of
``--task/--budget/--runs``; everything else about a sweep (workers, population, resume, dry run)
is unchanged. The file::

    name = "zoo-v1"            # recorded nowhere; names the plan in messages
    seed = 0                   # the sweep seed (draws, data, masks, init, data order)
    space = "paper"            # sampling space of the random draws
    runs = 48                  # random draws per task and budget
    include_baselines = true   # dense, uniform-0.2 and LSTM per task and budget
    lstm_lrs = [3e-4, 1.5e-3]  # the LSTM also at these learning rates ("lstm lr 0.0003")
    balanced = true            # the a-priori balanced configuration per task and budget
    batch_size = 16
    budget_factors = [1.2, 3.8, 12]  # budgets = factor x the task's reference budget
    min_budget = 1000          # the reference budget is at least this
    patience = 5               # early stopping (epochs without a new best validation loss)
    stratify_hp = 30           # 30 more draws per hidden-proportion bin ("30:.2-.4,.4-.6": some bins)

    [[task]]
    name = "rad"
    epochs = 20
    options = { n_train = 2000 }   # builder options (--task-option)
    # runs, budgets (explicit list), budget_factors, patience, batch_size, stratify_hp and
    # lstm_lrs (lstm_lrs = [] for none) may be set per task

Budgets: a task's *reference budget* is ``max(min_budget, n_y (n_x + n_y))``, the weights of a
dense y row (``W_yx`` and ``W_yy``: what every child of the task must hold before its hidden layer
gets any), and its budgets are that times each of ``budget_factors``, rounded to two significant
digits (:func:`task_budgets`). Stratified draws (``stratify_hp``,
:func:`sbrnn.child.sampling.draw_stratified`) are labelled ``stratified <bin> <i>``. Unknown keys,
tasks and options are errors naming the value.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbrnn.child.sampling import Stratify, as_stratify
from sbrnn.child.sweep.plan import PlannedRun, plan_sweep
from sbrnn.child.weight_space import reference_budget
from sbrnn.datasets.registry import get_info
from sbrnn.errors import SbrnnError

_TOP_KEYS = {
    "name": str,
    "seed": int,
    "space": str,
    "runs": int,
    "include_baselines": bool,
    "balanced": bool,
    "batch_size": int,
    "budget_factors": list,
    "min_budget": (int, float),
    "patience": int,
    "epochs": int,
    "stratify_hp": (int, str),
    "lstm_lrs": list,
    "task": list,
    "rule": dict,
}
_TASK_KEYS = {
    "name": str,
    "epochs": int,
    "options": dict,
    "runs": int,
    "budgets": list,
    "budget_factors": list,
    "patience": int,
    "batch_size": int,
    "stratify_hp": (int, str),
    "lstm_lrs": list,
    "why": str,
}


def round_significant(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant digits (31,234 -> 31,000)."""
    if value <= 0:
        raise SbrnnError(f"budget {value:g} is out of range; allowed: > 0")
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return round(value * scale) / scale


def task_budgets(n_x: int, n_y: int, factors, min_budget: float = 1000) -> list[float]:
    """The budgets of a task: the reference budget times each factor, 2 significant digits."""
    reference = reference_budget(n_x, n_y, min_budget)
    return [round_significant(reference * f) for f in factors]


@dataclass(frozen=True)
class TaskEntry:
    """One ``[[task]]`` of a plan: the task, its options, budgets, draws, epochs, patience,
    stratified draws (None: none) and the LSTM's extra learning rates."""

    name: str
    options: dict
    budgets: tuple[float, ...]
    runs: int
    epochs: int
    patience: int | None
    batch_size: int
    why: str = ""
    stratify: Stratify | None = None
    lstm_lrs: tuple[float, ...] = ()


@dataclass(frozen=True)
class PlanFile:
    """A parsed plan file."""

    path: str
    name: str
    seed: int
    space: str
    include_baselines: bool
    balanced: bool
    tasks: tuple[TaskEntry, ...]
    rule: dict = field(default_factory=dict)

    def task(self, name: str) -> TaskEntry:
        """The entry of task ``name``; :class:`SbrnnError` naming the plan's tasks where it has none."""
        for entry in self.tasks:
            if entry.name == name:
                return entry
        known = ", ".join(entry.name for entry in self.tasks)
        raise SbrnnError(f"task {name!r} is not in the plan {self.path}; it has: {known}")

    def planned_runs(self) -> list[PlannedRun]:
        """Every run of the plan, in file order (per task: per budget, baselines, balanced, draws,
        stratified draws); a config planned twice runs once."""
        planned: dict[str, PlannedRun] = {}
        for entry in self.tasks:
            for run in plan_sweep(
                [entry.name],
                list(entry.budgets),
                entry.runs,
                epochs=entry.epochs,
                seed=self.seed,
                space=self.space,
                include_baselines=self.include_baselines,
                balanced=self.balanced,
                batch_size=entry.batch_size,
                task_options=entry.options,
                patience=entry.patience,
                stratify=entry.stratify,
                lstm_lrs=entry.lstm_lrs,
            ):
                planned.setdefault(run.run_id, run)
        return list(planned.values())


def _typed(where: str, table: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise SbrnnError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        kind = allowed[key]
        if isinstance(value, bool) and kind is not bool:
            raise SbrnnError(f"{where}: {key} = {value!r} has the wrong type; allowed: {_kind_name(kind)}")
        if not isinstance(value, kind):
            raise SbrnnError(f"{where}: {key} = {value!r} has the wrong type; allowed: {_kind_name(kind)}")


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names[k] for k in kinds)


def _numbers(where: str, key: str, values: list) -> tuple[float, ...]:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)
    if not values or not numbers:
        raise SbrnnError(f"{where}: {key} = {values!r} is out of range; allowed: a list of numbers > 0")
    return tuple(float(v) for v in values)


def _stratify(where: str, value: int | str) -> Stratify:
    try:
        return as_stratify(value)
    except SbrnnError as exc:
        raise SbrnnError(f"{where}: stratify_hp: {exc}") from None


def load_plan(path: str | Path) -> PlanFile:
    """Parse and check the plan file ``path``; :class:`SbrnnError` with one line for anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise SbrnnError(f"plan file {str(path)!r} is not a readable file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SbrnnError(f"plan file {str(path)!r} is not valid TOML: {exc}") from None
    _typed(f"plan file {path}", data, _TOP_KEYS)
    tasks = data.get("task") or []
    if not tasks:
        raise SbrnnError(f"plan file {path} lists no [[task]]; allowed: one [[task]] table per task")
    factors = _numbers(str(path), "budget_factors", data.get("budget_factors", [1.2, 3.8, 12]))
    min_budget = float(data.get("min_budget", 1000))
    entries = []
    for i, task in enumerate(tasks):
        where = f"plan file {path}, task {i + 1}"
        if not isinstance(task, dict):
            raise SbrnnError(f"{where}: not a table; allowed: [[task]] tables")
        _typed(where, task, _TASK_KEYS)
        if "name" not in task:
            raise SbrnnError(f"{where}: no name; allowed: a registered task name (sbrnn datasets list)")
        info = get_info(task["name"])
        if "budgets" in task:
            budgets = _numbers(where, "budgets", task["budgets"])
        else:
            own = _numbers(where, "budget_factors", task.get("budget_factors", list(factors)))
            budgets = tuple(task_budgets(info.n_x, info.n_y, own, min_budget))
        epochs = task.get("epochs", data.get("epochs"))
        stratify = task.get("stratify_hp", data.get("stratify_hp"))
        lstm_lrs = task.get("lstm_lrs", data.get("lstm_lrs", []))
        if lstm_lrs:
            lstm_lrs = _numbers(where, "lstm_lrs", lstm_lrs)
        if epochs is None:
            raise SbrnnError(f"{where}: no epochs; allowed: epochs = N here or at the top of the file")
        entries.append(
            TaskEntry(
                name=task["name"],
                options=dict(task.get("options", {})),
                budgets=budgets,
                runs=task.get("runs", data.get("runs", 0)),
                epochs=epochs,
                patience=task.get("patience", data.get("patience")),
                batch_size=task.get("batch_size", data.get("batch_size", 16)),
                why=task.get("why", ""),
                stratify=None if stratify is None else _stratify(where, stratify),
                lstm_lrs=tuple(lstm_lrs),
            )
        )
    return PlanFile(
        path=str(path),
        name=data.get("name", path.stem),
        seed=data.get("seed", 0),
        space=data.get("space", "paper"),
        include_baselines=data.get("include_baselines", False),
        balanced=data.get("balanced", False),
        tasks=tuple(entries),
        rule=dict(data.get("rule", {})),
    )
