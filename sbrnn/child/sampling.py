"""The sampling space of a sweep: random child hyperparameters, as pure numpy functions.

A draw is the 19 hyperparameters of method.md §6 — six block densities, six init means, six
init stds (each a 2x3 grid, rows h, y; columns x, h, y) and the learning rate; ``h`` follows
from the budget when the run is built. Two spaces:

``paper`` (the default), the paper's distributions:
    densities ``|N(0.5, 0.25)|`` clipped to [0.02, 1], 2 decimals;
    init means ``N(0, 0.0025)``, 3 decimals;
    init stds ``N(0.05, 0.015)`` clipped at >= 1e-4, 3 decimals (and never below 1e-4 after
    rounding, so a std is never 0);
    learning rate ``N(1e-3, 4e-4)`` clipped at >= 1e-6, 6 decimals (never 0; the authors'
    rounding to 5 decimals could give 0).
``uniform``, the same ranges covered evenly:
    densities ``U[0.02, 1]``, 2 decimals; means ``U[-0.0075, 0.0075]`` (3 sigma of the paper's),
    3 decimals; stds ``U[0.005, 0.095]`` (3 sigma), 3 decimals; learning rate
    ``U[1e-4, 2.2e-3]``, 6 decimals.

Every draw consumes the generator in the same order whatever is pinned, so pinning one
hyperparameter (:class:`Pins`) leaves the others' values unchanged.

Stratified draws (:func:`draw_stratified`) fill the bins of the hidden proportion that the space
rarely reaches (at 2,500 inputs and 50k weights 96% of the paper's draws fall below 0.2): draw
``i`` of bin ``b`` takes the generator ``run_rng(seed, task, budget, "stratified", b, i)`` and
draws from the space until the configuration's hidden proportion (expected counts at the task's
dims and budget) lands in ``b``, a bounded number of times.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass

import numpy as np

from sbrnn.child.weight_space import Grid, SparseBlockSpec, as_grid, grid_blocks
from sbrnn.errors import SbrnnError

SPACES = ("paper", "uniform")

DENSITY_RANGE = (0.02, 1.0)
MIN_STD = 1e-4
MIN_LR = 1e-6

HP_BIN_EDGES = (0.2, 0.4, 0.6, 0.8)
HP_BINS = ("<.2", ".2-.4", ".4-.6", ".6-.8", ">=.8")
"""The hidden-proportion bins of Table IV (the same as :data:`sbrnn.records_report.BIN_LABELS`)."""
MAX_TRIES = 100_000
"""Draws a stratified run may take before its bin counts as unreachable (about 10 s)."""


@dataclass(frozen=True)
class Hyperparameters:
    """One draw: 2x3 grids of densities, init means and init stds, and the learning rate."""

    densities: Grid
    means: Grid
    stds: Grid
    lr: float


@dataclass(frozen=True)
class Pins:
    """Values fixed for every draw; ``None`` leaves a hyperparameter to the space."""

    densities: Grid | None = None
    means: Grid | None = None
    stds: Grid | None = None
    lr: float | None = None

    def __post_init__(self) -> None:
        for name in ("densities", "means", "stds"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_grid(getattr(self, name), name))
        if self.densities is not None:
            for block, d in grid_blocks(self.densities).items():
                if not 0.0 < d <= 1.0:
                    raise SbrnnError(
                        f"pinned density of block {block} = {d:g} is out of range; allowed: (0, 1]"
                    )
        if self.stds is not None:
            for block, s in grid_blocks(self.stds).items():
                if not s >= 0.0:
                    raise SbrnnError(
                        f"pinned init std of block {block} = {s:g} is out of range; allowed: >= 0"
                    )
        if self.lr is not None:
            if not self.lr > 0:
                raise SbrnnError(f"pinned lr = {self.lr:g} is out of range; allowed: > 0")
            object.__setattr__(self, "lr", float(self.lr))


def _grid(values: np.ndarray) -> Grid:
    """Six values in block order (hx, hh, hy, yx, yh, yy) -> a 2x3 grid of Python floats."""
    v = [float(x) for x in values]
    return ((v[0], v[1], v[2]), (v[3], v[4], v[5]))


def _paper(rng: np.random.Generator) -> Hyperparameters:
    densities = np.clip(np.abs(rng.normal(0.5, 0.25, 6)), *DENSITY_RANGE).round(2)
    means = rng.normal(0.0, 0.0025, 6).round(3)
    stds = np.maximum(np.maximum(rng.normal(0.05, 0.015, 6), MIN_STD).round(3), MIN_STD)
    lr = max(round(max(float(rng.normal(1e-3, 4e-4)), MIN_LR), 6), MIN_LR)
    return Hyperparameters(_grid(densities), _grid(means), _grid(stds), lr)


def _uniform(rng: np.random.Generator) -> Hyperparameters:
    densities = np.clip(rng.uniform(*DENSITY_RANGE, 6).round(2), *DENSITY_RANGE)
    means = rng.uniform(-0.0075, 0.0075, 6).round(3)
    stds = rng.uniform(0.005, 0.095, 6).round(3)
    lr = round(float(rng.uniform(1e-4, 2.2e-3)), 6)
    return Hyperparameters(_grid(densities), _grid(means), _grid(stds), lr)


_DRAWS = {"paper": _paper, "uniform": _uniform}


def check_space(space: str) -> str:
    if space not in SPACES:
        raise SbrnnError(f"space {space!r} is unknown; allowed: {', '.join(SPACES)}")
    return space


def draw(rng: np.random.Generator, space: str = "paper", pins: Pins | None = None) -> Hyperparameters:
    """One set of hyperparameters from ``space``, with ``pins`` replacing drawn values."""
    drawn = _DRAWS[check_space(space)](rng)
    pins = pins or Pins()
    return Hyperparameters(
        densities=pins.densities or drawn.densities,
        means=pins.means or drawn.means,
        stds=pins.stds or drawn.stds,
        lr=pins.lr if pins.lr is not None else drawn.lr,
    )


def _words(text: str) -> list[int]:
    """A string as four 32-bit words of its SHA-256 (stable across machines and Python runs)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def run_rng(seed: int, *key: object) -> np.random.Generator:
    """The generator of one run, from the sweep seed and a key such as ``(task, budget, i)``.

    Built from a :class:`numpy.random.SeedSequence` of the seed and a hash of the key, so the
    same seed and key give the same stream on any machine, and different keys independent ones.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SbrnnError(f"seed = {seed!r} is out of range; allowed: integers >= 0")
    return np.random.default_rng(np.random.SeedSequence([int(seed), *_words(repr(key))]))


def hp_bin(proportion: float) -> str:
    """The bin of :data:`HP_BINS` holding a hidden proportion (a value on an edge opens the next)."""
    return HP_BINS[bisect.bisect_right(HP_BIN_EDGES, proportion)]


@dataclass(frozen=True)
class Stratify:
    """``per_bin`` stratified draws for each of ``bins`` (every bin of :data:`HP_BINS` by default),
    each taking at most ``max_tries`` draws from the space to land in its bin."""

    per_bin: int
    bins: tuple[str, ...] = HP_BINS
    max_tries: int = MAX_TRIES

    def __post_init__(self) -> None:
        for name in ("per_bin", "max_tries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SbrnnError(f"stratified {name} = {value!r} is out of range; allowed: integers >= 1")
        unknown = [b for b in self.bins if b not in HP_BINS]
        if unknown or not self.bins:
            what = repr(unknown[0]) if unknown else "none"
            raise SbrnnError(f"hidden-proportion bin {what} is unknown; allowed: {', '.join(HP_BINS)}")
        object.__setattr__(self, "bins", tuple(b for b in HP_BINS if b in self.bins))


def as_stratify(value: Stratify | int | str) -> Stratify:
    """A :class:`Stratify` from itself, a count per bin (``30``) or text: ``"30"`` for every bin,
    ``"30:.2-.4,.4-.6"`` for the bins listed."""
    if isinstance(value, Stratify):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Stratify(value)
    if not isinstance(value, str):
        raise SbrnnError(f"stratify = {value!r} has the wrong type; allowed: a count, or 'K:BIN,BIN'")
    count, _, bins = value.partition(":")
    try:
        per_bin = int(count.strip())
    except ValueError:
        raise SbrnnError(
            f"stratify = {value!r} is malformed; allowed: K runs per bin, or 'K:BIN,BIN' with bins "
            f"among {', '.join(HP_BINS)}"
        ) from None
    if not bins.strip():
        return Stratify(per_bin)
    return Stratify(per_bin, tuple(b.strip() for b in bins.split(",")))


@dataclass(frozen=True)
class StratifiedDraw:
    """Draw ``index`` of hidden-proportion bin ``bin``: its hyperparameters, the hidden proportion
    they give (expected counts) and the draws it took."""

    bin: str
    index: int
    hyperparameters: Hyperparameters
    hidden_proportion: float
    tries: int

    @property
    def label(self) -> str:
        """Its label in a sweep, e.g. ``stratified .6-.8 3``."""
        return f"stratified {self.bin} {self.index}"


def draw_stratified(
    seed: int,
    task: str,
    budget: float,
    n_x: int,
    n_y: int,
    stratify: Stratify,
    space: str = "paper",
    pins: Pins | None = None,
) -> list[StratifiedDraw]:
    """``stratify.per_bin`` draws from ``space`` for each bin of ``stratify.bins``, bin by bin.

    Draw ``i`` of bin ``b`` draws with the generator ``run_rng(seed, task, budget, "stratified",
    b, i)`` until the hidden proportion of the configuration at ``n_x`` inputs, ``n_y`` outputs and
    ``budget`` (:meth:`SparseBlockSpec.from_budget`, expected counts) lies in ``b``: the same seed
    gives the same draws anywhere, and each run's draws are independent of the other runs'. Raises
    :class:`SbrnnError` when the densities are pinned (nothing to stratify), when a bin gets no draw
    in ``stratify.max_tries`` tries (unreachable at these dims and budget), or when a draw cannot
    hold the budget.
    """
    check_space(space)
    pins = pins or Pins()
    if pins.densities is not None:
        raise SbrnnError("stratifying by hidden proportion draws the densities; they are pinned here")
    draws = []
    for b in stratify.bins:
        for i in range(stratify.per_bin):
            rng = run_rng(seed, task, float(budget), "stratified", b, i)
            for tries in range(1, stratify.max_tries + 1):
                hp = draw(rng, space, pins)
                proportion = SparseBlockSpec.from_budget(n_x, n_y, budget, hp.densities).hidden_proportion
                if hp_bin(proportion) == b:
                    draws.append(StratifiedDraw(b, i, hp, proportion, tries))
                    break
            else:
                raise SbrnnError(
                    f"hidden-proportion bin {b} got no draw of the {space} space in "
                    f"{stratify.max_tries} tries at {n_x} inputs, {n_y} outputs and budget {budget:g}; "
                    "allowed: bins the space reaches at these dims and budget"
                )
    return draws
