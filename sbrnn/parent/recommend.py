"""Recommendations: child configurations for a task, from its dims (and traits, when known) and a budget.

:func:`a_priori` uses the dims and the budget alone (the paper's balancing rule). :func:`recommend`
ranks many candidates by a fitted parent — the a-priori family, draws from the paper's sweep space,
and the dense, uniform-0.2 and LSTM baselines (a baseline may be the recommendation where the
parent predicts it wins) — and says how far the task lies from the parent's training tasks
(:func:`extrapolation`). Where it lies outside them the parent's ranking is not trusted: the
recommendation falls back to the a-priori family, the paper's balanced configuration first, and
says so (``mode = "a-priori fallback"``).

The candidates stay where the sweep's records are. Until 2026-12-01 the parent also searched for
its own optimum by perturbing its best candidates; that drifted to corners of the space no record
covers (``W_hh`` near 0.02 with ``W_hy`` and ``W_yx`` dense), and those top-1s trained worse on
held-out RAD tasks (docs/parent.md, closed loop).
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sbrnn.child.sampling import Hyperparameters, draw
from sbrnn.child.weight_space import (
    H_ROW,
    Grid,
    SparseBlockSpec,
    balance,
    baselines,
    format_grid,
    lstm_hidden,
    reference_budget,
)
from sbrnn.errors import SbrnnError
from sbrnn.parent.features import Configuration, TaskContext
from sbrnn.parent.models import ConfigPrediction, Parent

TUNE_TRIALS = 10
"""Trials of the tuning line a recommendation prints: those of the warm-start measurements
(``benchmarks/tune_compare.py --trials 10``; docs/parent.md, "Tuning with the parent")."""

DEFAULT_LR = 1e-3
"""Learning rate of the paper's rule and the baselines: the mean of the sweep's distribution."""

BALANCED_TARGETS = tuple(round(0.3 + 0.05 * i, 2) for i in range(9))
"""Target hidden proportions of the a-priori family: 0.3, 0.35, ..., 0.7."""

FAMILY_LRS = (6e-4, 1e-3, 1.4e-3, 1.8e-3)
"""Learning rates of the a-priori family. The sweep draws them from N(1e-3, 4e-4): these are its
mean, one sigma either side and two sigma above, all where the zoo has draws. Until 2026-12-01 the
family had 1e-3 only, and the parent could not pick the higher rate that wins on the Adroit and
digit tasks without also taking a random draw's densities (docs/parent.md, closed loop)."""


LSTM_LRS = (3e-4, 6e-4, 1e-3, 1.5e-3, 2.2e-3)
"""Learning rates the parent ranks the LSTM at: the rates the zoo trains it at (``lstm_lrs`` of
sweeps/zoo-v1.toml beside the baselines' 1e-3), up to the top of ``child tune``'s box. Until
2026-12-01 the zoo trained the LSTM at 1e-3 only and the parent recommended it there."""


def a_priori(n_x: int, n_y: int, budget: float, target: float = 0.5) -> dict:
    """The paper's a-priori recommendation, with the equal-budget baselines beside it.

    Returns ``{"recommended": plan, "baselines": {"dense": plan, "uniform": plan, "lstm": {...}}}``
    where a plan is :meth:`SparseBlockSpec.plan` plus ``sparsified_block`` and ``target`` for the
    recommendation. Uses no records and no validation runs: only ``n_x``, ``n_y`` and ``budget``.
    """
    balanced = balance(n_x, n_y, budget, target)
    base = baselines(n_x, n_y, budget)
    recommended = {**balanced.spec.plan(budget), "sparsified_block": balanced.block, "target": target}
    return {
        "recommended": recommended,
        "baselines": {
            "dense": base["dense"].plan(budget),
            "uniform": base["uniform"].plan(budget),
            "lstm": {**base["lstm"], "budget": budget},
        },
    }


@dataclass(frozen=True)
class Candidate:
    """A configuration to score and where it came from (``balanced hx 0.5``, ``draw``, ``dense``, ...)."""

    config: Configuration
    source: str

    @property
    def key(self) -> tuple:
        """Candidates with the same architecture and densities are one recommendation."""
        spec = self.config.spec
        return (self.config.arch, None if spec is None else spec.densities)


def _block(arch: str, spec: SparseBlockSpec, budget: float, lr: float, source: str) -> Candidate:
    return Candidate(Configuration(arch, budget, lr, spec), source)


def balanced_family(n_x: int, n_y: int, budget: float) -> list[Candidate]:
    """The a-priori family: each h-row block sparsified in turn to each of :data:`BALANCED_TARGETS`
    (the paper's rule is the largest block at 0.5, :func:`a_priori`), at each of :data:`FAMILY_LRS`;
    a block that cannot bring the hidden proportion within 0.1 of a target (a small block of a wide
    row) leaves it out."""
    out = []
    for block in H_ROW:
        for target in BALANCED_TARGETS:
            balanced = balance(n_x, n_y, budget, target, block=block)
            if abs(balanced.achieved - target) <= 0.1:
                out += [
                    _block("sbrnn", balanced.spec, budget, lr, f"balanced {block} {target:g} lr {lr:g}")
                    for lr in FAMILY_LRS
                ]
    return out


def baseline_candidates(n_x: int, n_y: int, budget: float) -> dict[str, Candidate]:
    """The dense, uniform-0.2 and LSTM children at ``budget`` (learning rate :data:`DEFAULT_LR`)."""
    base = baselines(n_x, n_y, budget)
    return {
        "dense": _block("dense", base["dense"], budget, DEFAULT_LR, "dense"),
        "uniform": _block("uniform", base["uniform"], budget, DEFAULT_LR, "uniform"),
        "lstm": Candidate(
            Configuration("lstm", budget, DEFAULT_LR, hidden=lstm_hidden(n_x, n_y, budget)), "lstm"
        ),
    }


def lstm_rates(n_x: int, n_y: int, budget: float) -> list[Candidate]:
    """The LSTM at ``budget`` at each of :data:`LSTM_LRS` but :data:`DEFAULT_LR`, the LSTM
    baseline's own (:func:`baseline_candidates`)."""
    return [
        Candidate(configuration("lstm", n_x, n_y, budget, lr), f"lstm lr {lr:g}")
        for lr in LSTM_LRS
        if lr != DEFAULT_LR
    ]


def configuration(
    arch: str,
    n_x: int,
    n_y: int,
    budget: float,
    lr: float = DEFAULT_LR,
    densities=None,
    means=None,
    stds=None,
) -> Configuration:
    """The configuration of ``arch`` at ``budget`` (``h`` from it): ``sbrnn`` with ``densities``
    (and init ``means``/``stds``), or a baseline (``dense``, ``uniform`` at 0.2, ``lstm``)."""
    if arch == "lstm":
        return Configuration("lstm", budget, lr, hidden=lstm_hidden(n_x, n_y, budget))
    if arch in ("dense", "uniform"):
        spec = baselines(n_x, n_y, budget)[arch]
        init = {k: v for k, v in (("means", means), ("stds", stds)) if v is not None}
        return Configuration(arch, budget, lr, SparseBlockSpec(n_x, n_y, spec.h, spec.densities, **init))
    if arch != "sbrnn":
        raise SbrnnError(f"arch {arch!r} is unknown; allowed: sbrnn, dense, uniform, lstm")
    return Configuration(
        arch, budget, lr, SparseBlockSpec.from_budget(n_x, n_y, budget, densities, means, stds)
    )


def _spec(n_x: int, n_y: int, budget: float, hp: Hyperparameters) -> SparseBlockSpec | None:
    """The configuration of ``hp`` with ``h`` from the budget; None when its y row alone exceeds it."""
    try:
        return SparseBlockSpec.from_budget(n_x, n_y, budget, hp.densities, hp.means, hp.stds)
    except SbrnnError:
        return None


def sweep_draws(n_x: int, n_y: int, budget: float, rng: np.random.Generator, n: int) -> list[Candidate]:
    """``n`` draws from the paper's sweep space (method.md §6); draws that cannot fit are skipped."""
    out = []
    for _ in range(n):
        hp = draw(rng, "paper")
        spec = _spec(n_x, n_y, budget, hp)
        if spec is not None:
            out.append(_block("sbrnn", spec, budget, hp.lr, "draw"))
    return out


@dataclass(frozen=True)
class Scored:
    """One scored configuration: what to train and what the parent predicts for it.

    ``score`` ranks the candidates (lower is better, :meth:`sbrnn.parent.models.Parent.scores`):
    the parent's ranker where it has one, else the expected relative minimum when a run
    that does not converge counts as the worst candidate's.
    """

    rank: int
    source: str
    arch: str
    budget: float
    h: int
    lr: float
    densities: Grid | None
    means: Grid | None
    stds: Grid | None
    hidden_proportion: float | None
    model_density: float | None
    total_trainable: int
    prediction: ConfigPrediction
    score: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["prediction"] = self.prediction.to_dict()
        return out

    def train_args(self) -> list[str]:
        """The ``sbrnn child train`` options that train this configuration (task options apart)."""
        args = ["--arch", self.arch, "--budget", f"{self.budget:g}", "--lr", f"{self.lr:g}"]
        if (
            self.arch == "sbrnn"
            and self.densities is not None
            and self.means is not None
            and self.stds is not None
        ):
            args += [
                "--densities",
                format_grid(self.densities),
                "--means",
                format_grid(self.means),
                "--stds",
                format_grid(self.stds),
            ]
        return args


def _scored(rank: int, candidate: Candidate, prediction: ConfigPrediction, score: float) -> Scored:
    config, spec = candidate.config, candidate.config.spec
    return Scored(
        rank=rank,
        source=candidate.source,
        arch=config.arch,
        budget=config.budget,
        h=config.h,
        lr=config.lr,
        densities=None if spec is None else spec.densities,
        means=None if spec is None else spec.means,
        stds=None if spec is None else spec.stds,
        hidden_proportion=None if spec is None else spec.hidden_proportion,
        model_density=None if spec is None else spec.model_density,
        total_trainable=round(spec.total_trainable) if spec is not None else 0,
        prediction=prediction,
        score=score,
    )


def _score(parent: Parent, kind: str, candidates: Sequence[Candidate], task: TaskContext) -> list[tuple]:
    """``(candidate, prediction, score)`` for every candidate (:meth:`Parent.scores`)."""
    predictions, scores = parent.rank_configs([c.config for c in candidates], task, kind)
    return [(c, p, float(score)) for c, p, score in zip(candidates, predictions, scores)]


def _distinct_best(rows: list[tuple], k: int) -> list[tuple]:
    """The ``k`` best-scoring rows with distinct architecture and densities."""
    out, seen = [], set()
    for row in sorted(rows, key=lambda r: r[2]):
        if row[0].key not in seen:
            seen.add(row[0].key)
            out.append(row)
            if len(out) == k:
                break
    return out


@dataclass(frozen=True)
class Extrapolation:
    """How far a task lies from a parent's training tasks.

    ``distance`` is the Euclidean distance, in units of the training tasks' spread, from the task's
    descriptor (``log n_x``, ``log n_y``, ``log T``, loss kind, ``log`` budget over the reference
    budget) to the nearest training (task, budget); ``limit`` is the largest such distance between
    a training task and its nearest other one (how far apart the parent's own tasks are).
    ``outside`` says which dims lie outside the training range; ``inside`` is True when the
    distance is within the limit and nothing lies outside.
    """

    nearest_task: str
    distance: float
    limit: float
    outside: tuple[str, ...]
    inside: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _descriptor(n_x: int, n_y: int, steps: int, loss_kind: str, budget: float) -> np.ndarray:
    ratio = budget / reference_budget(n_x, n_y, min_budget=1)
    return np.array(
        [
            math.log(n_x),
            math.log(n_y),
            math.log(steps),
            1.0 if loss_kind == "cross_entropy" else 0.0,
            math.log(ratio),
        ]
    )


def extrapolation(parent: Parent, task: TaskContext, budget: float) -> Extrapolation:
    """See :class:`Extrapolation`. The training points are each task at its recorded budgets."""
    rows, names = [], []
    for name, context in parent.tasks.items():
        for b in parent.budgets.get(name, ()) or (budget,):
            rows.append(_descriptor(context.n_x, context.n_y, context.steps, context.loss_kind, b))
            names.append(name)
    points = np.array(rows)
    scale = points.std(axis=0)
    scale[scale == 0] = 1.0
    query = _descriptor(task.n_x, task.n_y, task.steps, task.loss_kind, budget)
    distances = np.sqrt((((points - query) / scale) ** 2).sum(axis=1))
    nearest = int(np.argmin(distances))
    limit = 0.0
    for name in set(names):
        own = np.array([n == name for n in names])
        if own.all():
            continue
        gaps = np.sqrt((((points[own][:, None, :] - points[~own][None, :, :]) / scale) ** 2).sum(-1))
        limit = max(limit, float(gaps.min(axis=1).max()))
    outside = []
    for label, value, column in (("inputs", task.n_x, 0), ("outputs", task.n_y, 1), ("steps", task.steps, 2)):
        low, high = np.exp(points[:, column].min()), np.exp(points[:, column].max())
        if not low * 0.999 <= value <= high * 1.001:
            outside.append(f"{label} {value} outside {low:.0f}-{high:.0f}")
    if task.loss_kind not in {c.loss_kind for c in parent.tasks.values()}:
        outside.append(f"loss {task.loss_kind} unseen")
    inside = distances[nearest] <= limit and not outside
    return Extrapolation(names[nearest], float(distances[nearest]), limit, tuple(outside), bool(inside))


def infer_context(
    parent: Parent, n_x: int, n_y: int, steps: int | None = None, loss_kind: str | None = None
) -> tuple[TaskContext, str | None]:
    """The context of a task known by its dims: ``steps`` and ``loss_kind`` as given, else those of
    the parent's training task with these dims, else of the nearest one by ``log`` dims. Returns the
    context and a note saying where what was not given came from (None when nothing was taken)."""
    if steps is not None and loss_kind is not None:
        return TaskContext(n_x, n_y, steps, loss_kind), None
    if not parent.tasks:
        raise SbrnnError("this parent knows no tasks; give the sequence length and the loss kind")

    def gap(context: TaskContext) -> float:
        return math.hypot(math.log(context.n_x / n_x), math.log(context.n_y / n_y))

    name, nearest = min(parent.tasks.items(), key=lambda item: (gap(item[1]), item[0]))
    context = TaskContext(n_x, n_y, steps or nearest.steps, loss_kind or nearest.loss_kind)
    taken = [
        f"{what} {value}"
        for what, value, given in (("steps", context.steps, steps), ("loss", context.loss_kind, loss_kind))
        if given is None
    ]
    same = nearest.n_x == n_x and nearest.n_y == n_y
    return context, (
        f"{' and '.join(taken)} taken from the parent's task {name}"
        + ("" if same else f" ({nearest.n_x} in, {nearest.n_y} out), the nearest by dims")
    )


@dataclass(frozen=True)
class Recommendation:
    """A parent's recommendation for a task and budget.

    ``mode`` is ``learned`` (ranked by the parent) or ``a-priori fallback`` (the task lies outside
    the parent's tasks: the a-priori family only, the paper's balanced configuration first);
    ``top`` the configurations in order, ``a_priori`` the paper's balanced configuration and
    ``baselines`` the dense, uniform-0.2 and LSTM children, each with the parent's prediction.
    """

    parent: dict
    task: TaskContext
    task_name: str | None
    budget: float
    mode: str
    extrapolation: Extrapolation
    top: tuple[Scored, ...]
    a_priori: Scored
    baselines: dict[str, Scored]
    candidates: dict[str, int]

    def to_dict(self) -> dict:
        return {
            "parent": self.parent,
            "task": {**asdict(self.task), "name": self.task_name},
            "budget": self.budget,
            "mode": self.mode,
            "extrapolation": self.extrapolation.to_dict(),
            "top": [s.to_dict() for s in self.top],
            "a_priori": self.a_priori.to_dict(),
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
            "candidates": self.candidates,
            "train_command": self.train_command(),
        }

    def tune_command(self, model: str | None = None) -> str:
        """A copy-paste ``sbrnn child tune`` line: :data:`TUNE_TRIALS` trials of Optuna's TPE on the
        task at this budget, warm-started with the parent's top recommendations (``child tune``'s
        default count); ``model`` the parent's directory where it is not the shipped one."""
        task = ["--task", self.task_name or "TASK", "--budget", f"{self.budget:g}"]
        args = [*task, "--trials", str(TUNE_TRIALS), "--records", "RUNS"]
        return shlex.join(["sbrnn", "child", "tune", *args, *(["--model", model] if model else [])])

    def train_command(self, rank: int = 1) -> str:
        """A copy-paste ``sbrnn child train`` line for the configuration at ``rank``."""
        chosen = self.top[rank - 1]
        task = ["--task", self.task_name] if self.task_name else ["--task", "TASK"]
        return shlex.join(["sbrnn", "child", "train", *task, *chosen.train_args()])


def recommend(
    parent: Parent,
    task: TaskContext,
    budget: float,
    *,
    top: int = 5,
    seed: int = 0,
    kind: str | None = None,
    task_name: str | None = None,
    draws: int = 256,
) -> Recommendation:
    """Rank candidates for ``task`` at ``budget`` by ``parent`` (see the module doc).

    Candidates: the a-priori :func:`balanced_family`, ``draws`` :func:`sweep_draws`, the three
    baselines and the LSTM at the other :data:`LSTM_LRS` (:func:`lstm_rates`), all with ``h`` from
    ``budget``; the top holds one learning rate per configuration (the LSTM once, at its best
    rate). Outside the parent's tasks only the a-priori family is ranked, with the paper's rule
    (the largest h-row block at 0.5) first.
    """
    if not (isinstance(top, int) and top >= 1):
        raise SbrnnError(f"top = {top!r} is out of range; allowed: integers >= 1")
    if not (math.isfinite(budget) and budget > 0):
        raise SbrnnError(f"budget = {budget:g} is out of range; allowed: a number > 0")
    kind = parent.kind(kind)
    n_x, n_y = task.n_x, task.n_y
    rng = np.random.default_rng(seed)
    where = extrapolation(parent, task, budget)
    rule = a_priori(n_x, n_y, budget)["recommended"]
    paper = _block(
        "sbrnn",
        balance(n_x, n_y, budget, 0.5).spec,
        budget,
        DEFAULT_LR,
        f"a-priori {rule['sparsified_block']} 0.5",
    )
    base = baseline_candidates(n_x, n_y, budget)
    family = balanced_family(n_x, n_y, budget)
    if where.inside:
        mode = "learned"
        candidates = [
            paper,
            *family,
            *base.values(),
            *lstm_rates(n_x, n_y, budget),
            *sweep_draws(n_x, n_y, budget, rng, draws),
        ]
        rows = _score(parent, kind, candidates, task)
        chosen = _distinct_best(rows, top)
    else:
        mode = "a-priori fallback"
        candidates = [paper, *family, *base.values()]
        rows = _score(parent, kind, candidates, task)
        ranked = _distinct_best([r for r in rows[1:] if r[0].config.arch == "sbrnn"], top)
        chosen = [rows[0], *[r for r in ranked if r[0].key != paper.key]][:top]
    scored = {id(r[0]): r for r in rows}
    sources = Counter(r[0].source.split(" ")[0] for r in rows)
    return Recommendation(
        parent={
            "name": parent.name,
            "fitted_at": parent.fitted_at,
            "records_sha256": parent.records_sha256,
            "model": kind,
        },
        task=parent.context(task),
        task_name=task_name,
        budget=float(budget),
        mode=mode,
        extrapolation=where,
        top=tuple(_scored(i + 1, *r) for i, r in enumerate(chosen)),
        a_priori=_scored(0, *scored[id(paper)]),
        baselines={name: _scored(0, *scored[id(c)]) for name, c in base.items()},
        candidates=dict(sorted(sources.items())),
    )


def recommend_for(
    n_x: int,
    n_y: int,
    budget: float,
    *,
    steps: int | None = None,
    loss: str | None = None,
    parent: Parent | None = None,
    top: int = 5,
    seed: int = 0,
) -> Recommendation:
    """:func:`recommend` for a task known by its sizes (sequence length and loss kind as given, or
    from the parent's nearest task), by ``parent`` (None = the shipped parent)."""
    if parent is None:
        from sbrnn.parent.store import open_parent

        parent = open_parent()
    task, _ = infer_context(parent, n_x, n_y, steps, loss)
    return recommend(parent, task, budget, top=top, seed=seed)
