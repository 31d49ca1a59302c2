"""The configuration of one child training run, and its run id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from sbrnn.child.spec import Grid, as_grid
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import ACTIVATIONS, ARCHS, PRECISIONS


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result (given the machine).

    Attributes:
        task: registry name of the task (``rad``, ``toy-anomaly``, ``minari:...``).
        task_options: keyword options for the task builder (sizes, image side, ...).
        arch: ``sbrnn`` (block densities as given, or balanced when ``densities`` is None),
            ``dense`` (all 1), ``uniform`` (all ``uniform_density``) or ``lstm``.
        budget: trainable-weight budget (biases excluded) that sets ``h``; or give ``hidden``.
        hidden: hidden size, instead of ``budget``.
        densities, means, stds: 2x3 grids (rows h, y; columns x, h, y); None = defaults.
        lr: Adam learning rate. epochs: passes over the training split. batch_size: sequences.
        seed: drives masks, init and data order. patience: early-stopping epochs, or None.
    """

    task: str = "rad"
    task_options: dict = field(default_factory=dict)
    arch: str = "sbrnn"
    budget: float | None = 100_000
    hidden: int | None = None
    densities: Grid | None = None
    means: Grid | None = None
    stds: Grid | None = None
    uniform_density: float = 0.2
    activation: str = "relu"
    lr: float = 1e-3
    epochs: int = 25
    batch_size: int = 16
    seed: int = 0
    patience: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # Normalise types so equal configs hash equally (100000 and 100000.0 are one budget).
        for name in ("densities", "means", "stds"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_grid(getattr(self, name), name))
        for name in ("budget", "lr", "uniform_density"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        checks = [
            (self.arch in ARCHS, f"arch {self.arch!r} is unknown; allowed: {', '.join(ARCHS)}"),
            (self.activation in ACTIVATIONS,
             f"activation {self.activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}"),
            (self.precision in PRECISIONS,
             f"precision {self.precision!r} is unknown; allowed: {', '.join(PRECISIONS)}"),
            (self.lr > 0, f"lr = {self.lr:g} is out of range; allowed: > 0"),
            (self.epochs >= 1, f"epochs = {self.epochs} is out of range; allowed: integers >= 1"),
            (self.batch_size >= 1,
             f"batch size = {self.batch_size} is out of range; allowed: integers >= 1"),
            (self.patience is None or self.patience >= 1,
             f"patience = {self.patience} is out of range; allowed: integers >= 1"),
            ((self.budget is None) != (self.hidden is None),
             "give exactly one of budget and hidden"),
            (self.arch == "sbrnn" or self.densities is None,
             f"densities apply to arch sbrnn only, not {self.arch!r}"),
            (self.arch != "lstm" or (self.means is None and self.stds is None),
             "init means and stds apply to block archs only, not lstm"),
        ]
        for ok, message in checks:
            if not ok:
                raise SbrnnError(message)

    def to_dict(self) -> dict:
        """JSON-ready; grids become nested lists."""
        return json.loads(json.dumps(asdict(self)))

    def run_id(self) -> str:
        """A 16-hex-digit hash of everything that decides the run: same config, same id anywhere."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
