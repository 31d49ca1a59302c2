"""The weight space of a sparse block RNN, as pure arithmetic (no torch).

A child maps ``z_t = [x_t; h_{t-1}; y_{t-1}]`` to ``[h_t; y_t]`` through a 2x3 grid of blocks::

              x (n_x)   h (h)    y (n_y)
    h row   [  W_hx      W_hh     W_hy  ]      h_t = act(W_hx x_t + W_hh h_{t-1} + W_hy y_{t-1} + b_h)
    y row   [  W_yx      W_yh     W_yy  ]      y_t =     W_yx x_t + W_yh h_{t-1} + W_yy y_{t-1} + b_y

Each block has a *density* ``d`` in (0, 1]: the fraction of its entries that are trainable (the
paper calls a block with d = 0.2 "20% sparse"). Its expected trainable count is
``rows * cols * d`` (paper eq. 10). Biases are dense and are not counted in a budget.

The *hidden proportion* (eq. 12) is the share of the h row's trainable weights that read the
previous hidden state: ``T_hh / (T_hx + T_hh + T_hy)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import BLOCKS

ROWS = ("h", "y")
COLS = ("x", "h", "y")
H_ROW = ("hx", "hh", "hy")

Grid = tuple[tuple[float, float, float], tuple[float, float, float]]

DEFAULT_INIT_STD = 0.05
DENSITY_DECIMALS = 2
DENSITY_GRID = tuple(round(0.01 * k, DENSITY_DECIMALS) for k in range(1, 101))


def _index(block: str) -> tuple[int, int]:
    if block not in BLOCKS:
        raise SbrnnError(f"unknown block {block!r}; allowed: {', '.join(BLOCKS)}")
    return ROWS.index(block[0]), COLS.index(block[1])


def uniform_grid(value: float) -> Grid:
    """A 2x3 grid holding ``value`` in every block."""
    v = float(value)
    return ((v, v, v), (v, v, v))


def grid_from_blocks(values: Mapping[str, float], fill: float) -> Grid:
    """A grid from ``{"hx": 0.08, ...}``; blocks not named take ``fill``."""
    rows = [[float(fill)] * 3 for _ in ROWS]
    for block, value in values.items():
        i, j = _index(block)
        rows[i][j] = float(value)
    return (tuple(rows[0]), tuple(rows[1]))  # type: ignore[return-value]


def grid_blocks(grid: Grid) -> dict[str, float]:
    """``{"hx": ..., "hh": ..., ..., "yy": ...}`` in the order of :data:`BLOCKS`."""
    return {b: grid[ROWS.index(b[0])][COLS.index(b[1])] for b in BLOCKS}


def parse_grid(text: str, name: str) -> Grid:
    """Parse ``"hx,hh,hy/yx,yh,yy"`` (e.g. ``".2,1,1/.2,.2,1"``) or one number for all blocks.

    Raises :class:`SbrnnError` naming ``name`` and the malformed text.
    """
    form = 'expected one number or six as "hx,hh,hy/yx,yh,yy" (e.g. ".2,1,1/.2,.2,1")'
    rows = [r for r in text.strip().split("/")]
    try:
        if len(rows) == 1 and "," not in rows[0]:
            return uniform_grid(float(rows[0]))
        parsed = [[float(v) for v in r.split(",")] for r in rows]
    except ValueError:
        raise SbrnnError(f"--{name} {text!r} is malformed; {form}") from None
    if len(parsed) != 2 or any(len(r) != 3 for r in parsed):
        raise SbrnnError(f"--{name} {text!r} is malformed; {form}")
    return (tuple(parsed[0]), tuple(parsed[1]))  # type: ignore[return-value]


def format_grid(grid: Grid) -> str:
    """The inverse of :func:`parse_grid`: ``"0.08,1,1/1,1,1"``."""
    return "/".join(",".join(f"{v:g}" for v in row) for row in grid)


def as_grid(value: Iterable, name: str) -> Grid:
    try:
        rows = [tuple(float(v) for v in row) for row in value]
    except (TypeError, ValueError):
        raise SbrnnError(f"{name} must be a 2x3 grid of numbers, got {value!r}") from None
    if len(rows) != 2 or any(len(r) != 3 for r in rows):
        raise SbrnnError(f"{name} must be a 2x3 grid (rows h, y; columns x, h, y), got {value!r}")
    return (rows[0], rows[1])  # type: ignore[return-value]


def check_densities(grid: Grid, name: str = "density") -> Grid:
    """``grid`` if every block's density is in (0, 1], else an :class:`SbrnnError` naming the block
    (``name`` says what the grid is, e.g. ``pinned density``)."""
    for block, d in grid_blocks(grid).items():
        if not 0.0 < d <= 1.0:  # NaN fails too
            raise SbrnnError(f"{name} of block {block} = {d:g} is out of range; allowed: (0, 1]")
    return grid


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise SbrnnError(f"{name} = {value!r} is not a whole number; allowed: integers >= 1")
    if value < 1:
        raise SbrnnError(f"{name} = {int(value)} is out of range; allowed: integers >= 1")
    return int(value)


@dataclass(frozen=True)
class SparseBlockSpec:
    """One configuration of a sparse block RNN's weight space.

    Attributes:
        n_x: input size ``|x|``.
        n_y: output size ``|y|``.
        h: hidden size ``|h|``.
        densities: 2x3 grid, rows (h, y), columns (x, h, y); each in (0, 1].
        means: 2x3 grid of init means of kept entries.
        stds: 2x3 grid of init stds of kept entries; each >= 0.
    """

    n_x: int
    n_y: int
    h: int
    densities: Grid = field(default_factory=lambda: uniform_grid(1.0))
    means: Grid = field(default_factory=lambda: uniform_grid(0.0))
    stds: Grid = field(default_factory=lambda: uniform_grid(DEFAULT_INIT_STD))

    def __post_init__(self) -> None:
        for name in ("n_x", "n_y", "h"):
            object.__setattr__(self, name, _check_size(getattr(self, name), name))
        for name in ("densities", "means", "stds"):
            object.__setattr__(self, name, as_grid(getattr(self, name), name))
        check_densities(self.densities)
        for block, m in grid_blocks(self.means).items():
            if not math.isfinite(m):
                raise SbrnnError(f"init mean of block {block} = {m} is not finite")
        for block, s in grid_blocks(self.stds).items():
            if not (s >= 0.0) or not math.isfinite(s):
                raise SbrnnError(f"init std of block {block} = {s:g} is out of range; allowed: >= 0")

    @classmethod
    def from_budget(
        cls,
        n_x: int,
        n_y: int,
        budget: float,
        densities: Grid | None = None,
        means: Grid | None = None,
        stds: Grid | None = None,
    ) -> SparseBlockSpec:
        """The configuration whose hidden size makes the expected trainable total ~ ``budget``."""
        densities = as_grid(densities or uniform_grid(1.0), "densities")
        h = hidden_from_budget(n_x, n_y, budget, densities)
        kwargs = {k: v for k, v in (("means", means), ("stds", stds)) if v is not None}
        return cls(n_x, n_y, h, densities, **kwargs)

    def density(self, block: str) -> float:
        """Density of one block, named as in :data:`BLOCKS`."""
        i, j = _index(block)
        return self.densities[i][j]

    @property
    def block_shapes(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """2x3 grid of ``(rows, cols)``: ``W_hx`` is ``(h, n_x)``, ``W_yy`` is ``(n_y, n_y)``."""
        out_sizes = (self.h, self.n_y)
        in_sizes = (self.n_x, self.h, self.n_y)
        return tuple(tuple((r, c) for c in in_sizes) for r in out_sizes)

    @property
    def expected_trainable(self) -> Grid:
        """2x3 grid of expected trainable weights per block, ``rows * cols * d`` (eq. 10)."""
        return tuple(
            tuple(r * c * d for (r, c), d in zip(shapes, dens))
            for shapes, dens in zip(self.block_shapes, self.densities)
        )  # type: ignore[return-value]

    @property
    def total_trainable(self) -> float:
        """Expected trainable weights of the whole map (biases excluded)."""
        return sum(sum(row) for row in self.expected_trainable)

    @property
    def dense_total(self) -> int:
        """Weights of the same map with every block dense."""
        return (self.h + self.n_y) * (self.n_x + self.h + self.n_y)

    @property
    def model_density(self) -> float:
        """Trainable weights over dense weights, in (0, 1]."""
        return self.total_trainable / self.dense_total

    @property
    def hidden_proportion(self) -> float:
        """``T_hh / (T_hx + T_hh + T_hy)`` from expected counts (eq. 12)."""
        return hidden_proportion(self.expected_trainable[0])

    def plan(self, budget: float | None = None) -> dict:
        """A JSON-ready description of the weight space (what ``sbrnn child plan --json`` prints)."""
        return {
            "n_x": self.n_x,
            "n_y": self.n_y,
            "hidden": self.h,
            "budget": budget,
            "densities": [list(r) for r in self.densities],
            "means": [list(r) for r in self.means],
            "stds": [list(r) for r in self.stds],
            "shapes": [[list(s) for s in row] for row in self.block_shapes],
            "trainable": [[round(t) for t in row] for row in self.expected_trainable],
            "total_trainable": round(self.total_trainable),
            "dense_total": self.dense_total,
            "model_density": self.model_density,
            "hidden_proportion": self.hidden_proportion,
        }


def hidden_proportion(h_row_counts: Iterable[float]) -> float:
    """``T_hh / (T_hx + T_hh + T_hy)`` for the h row's trainable counts ``(T_hx, T_hh, T_hy)``."""
    t_hx, t_hh, t_hy = (float(t) for t in h_row_counts)
    total = t_hx + t_hh + t_hy
    return t_hh / total if total > 0 else 0.0


def reference_budget(n_x: int, n_y: int, min_budget: float = 1000) -> float:
    """A task's reference budget, ``max(min_budget, n_y (n_x + n_y))``: the weights of a dense y row
    (``W_yx`` and ``W_yy``, what a child must hold before its hidden layer gets any), or the floor."""
    return max(float(min_budget), float(n_y * (n_x + n_y)))


def hidden_from_budget(n_x: int, n_y: int, budget: float, densities: Grid) -> int:
    """The hidden size whose expected trainable total is closest to ``budget``.

    Solves ``d_hh h^2 + (d_hx n_x + d_hy n_y + d_yh n_y) h + (d_yx n_x n_y + d_yy n_y^2 - P) = 0``
    for its positive root and rounds it. Raises :class:`SbrnnError` when the budget cannot hold
    the y row's fixed blocks plus at least one hidden unit.
    """
    n_x = _check_size(n_x, "n_x")
    n_y = _check_size(n_y, "n_y")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise SbrnnError(f"budget = {budget!r} is out of range; allowed: a number > 0")
    d = grid_blocks(check_densities(as_grid(densities, "densities")))  # a 0 would divide by zero
    a = d["hh"]
    b = d["hx"] * n_x + d["hy"] * n_y + d["yh"] * n_y
    fixed = d["yx"] * n_x * n_y + d["yy"] * n_y * n_y
    c = fixed - budget
    h = round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)) if c < 0 else 0
    if h < 1:
        need = math.ceil(fixed + a + b)
        raise SbrnnError(
            f"budget = {budget:g} is too small for {n_x} inputs and {n_y} outputs at these "
            f"densities; allowed: at least {need} (the y row plus one hidden unit)"
        )
    return h


@dataclass(frozen=True)
class Balanced:
    """The result of :func:`balance`: the configuration, the block sparsified, the target."""

    spec: SparseBlockSpec
    block: str
    target: float

    @property
    def achieved(self) -> float:
        return self.spec.hidden_proportion


def _solve_block(
    n_x: int, n_y: int, budget: float, target: float, fixed: dict[str, float], block: str
) -> SparseBlockSpec:
    """Grid search over 2-decimal densities of ``block``: the one whose proportion is closest."""
    best: SparseBlockSpec | None = None
    for d in DENSITY_GRID:
        spec = SparseBlockSpec.from_budget(n_x, n_y, budget, grid_from_blocks({**fixed, block: d}, 1.0))
        if best is None or abs(spec.hidden_proportion - target) <= abs(best.hidden_proportion - target):
            best = spec  # ties go to the larger density
    assert best is not None
    return best


def balance(
    n_x: int,
    n_y: int,
    budget: float,
    target: float = 0.5,
    pinned: Mapping[str, float] | None = None,
    block: str | None = None,
) -> Balanced:
    """Balance the hidden proportion a priori, from the task's dims and a budget alone.

    Every block is dense except ``pinned`` ones (kept at the given densities) and one h-row
    block whose density (2 decimals) is chosen so the hidden proportion is as close to
    ``target`` as the 2-decimal grid allows; ``h`` follows from the budget for each candidate.
    By default the sparsified block is the largest unpinned h-row block at the solution (the
    paper's rule: ``W_hx`` for RAD's 2,500 inputs, ``W_hh`` for Adroit Hammer's 46).
    """
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise SbrnnError(f"target = {target!r} is out of range; allowed: (0, 1)")
    fixed = {b: float(v) for b, v in (pinned or {}).items()}
    for b, v in fixed.items():
        _index(b)
        if not 0.0 < v <= 1.0:
            raise SbrnnError(f"pinned density of block {b} = {v:g} is out of range; allowed: (0, 1]")
    free = [b for b in H_ROW if b not in fixed]
    if block is not None:
        if block not in H_ROW:
            raise SbrnnError(f"block {block!r} cannot be balanced; allowed: {', '.join(H_ROW)}")
        if block in fixed:
            raise SbrnnError(f"block {block} is pinned; pin other blocks or choose another one")
        return Balanced(_solve_block(n_x, n_y, budget, target, fixed, block), block, target)
    if not free:
        raise SbrnnError("every h-row block is pinned; leave at least one of hx, hh, hy free")

    def largest(spec: SparseBlockSpec) -> str:
        sizes = {b: r * c for b, (r, c) in zip(H_ROW, spec.block_shapes[0])}
        return max(free, key=lambda b: sizes[b])

    dense_spec = SparseBlockSpec.from_budget(n_x, n_y, budget, grid_from_blocks(fixed, 1.0))
    choice = largest(dense_spec)
    tried: dict[str, SparseBlockSpec] = {}
    while choice not in tried:
        tried[choice] = _solve_block(n_x, n_y, budget, target, fixed, choice)
        choice = largest(tried[choice])
    # The rule is consistent when the solved block is still the largest at its own h; where the
    # rule cycles (n_x close to h), take the candidate that lands closer to the target.
    if largest(tried[choice]) != choice:
        choice = min(tried, key=lambda b: abs(tried[b].hidden_proportion - target))
    return Balanced(tried[choice], choice, target)


def lstm_weights(n_x: int, n_y: int, hidden: int) -> int:
    """Weights of ``torch.nn.LSTM(n_x, hidden, proj_size=n_y)``: ``4h(n_x+p) + 8h + p*h``."""
    return 4 * hidden * (n_x + n_y) + 8 * hidden + n_y * hidden


def lstm_hidden(n_x: int, n_y: int, budget: float) -> int:
    """The LSTM hidden size (projection ``p = n_y``) whose weight count is closest to ``budget``."""
    n_x = _check_size(n_x, "n_x")
    n_y = _check_size(n_y, "n_y")
    per_unit = 4 * (n_x + n_y) + 8 + n_y
    hidden = round(budget / per_unit)
    if hidden < 1:
        raise SbrnnError(
            f"budget = {budget:g} is too small for an LSTM with {n_x} inputs and {n_y} "
            f"outputs; allowed: at least {per_unit}"
        )
    return hidden


def baselines(n_x: int, n_y: int, budget: float, uniform_density: float = 0.2) -> dict:
    """The equal-budget baselines: dense, uniformly sparse and LSTM (sizes only)."""
    if not 0.0 < uniform_density <= 1.0:
        raise SbrnnError(f"uniform density = {uniform_density:g} is out of range; allowed: (0, 1]")
    lstm_h = lstm_hidden(n_x, n_y, budget)
    return {
        "dense": SparseBlockSpec.from_budget(n_x, n_y, budget, uniform_grid(1.0)),
        "uniform": SparseBlockSpec.from_budget(n_x, n_y, budget, uniform_grid(uniform_density)),
        "lstm": {"hidden": lstm_h, "total_trainable": lstm_weights(n_x, n_y, lstm_h)},
    }
