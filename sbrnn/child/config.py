"""The configuration of one child training run, and its run id."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbrnn.child.weight_space import Grid, as_grid
from sbrnn.errors import SbrnnError
from sbrnn.vocabulary import ACTIVATIONS, ARCHS, PRECISIONS

DEFAULT_BUDGET = 100_000
"""The trainable-weight budget of a run that gives neither a budget nor a hidden size."""
DEFAULT_UNIFORM_DENSITY = 0.2
"""The density of every block of the ``uniform`` baseline when none is given."""


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
    budget: float | None = DEFAULT_BUDGET
    hidden: int | None = None
    densities: Grid | None = None
    means: Grid | None = None
    stds: Grid | None = None
    uniform_density: float = DEFAULT_UNIFORM_DENSITY
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
            (
                self.activation in ACTIVATIONS,
                f"activation {self.activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}",
            ),
            (
                self.precision in PRECISIONS,
                f"precision {self.precision!r} is unknown; allowed: {', '.join(PRECISIONS)}",
            ),
            (self.lr > 0, f"lr = {self.lr:g} is out of range; allowed: > 0"),
            (self.epochs >= 1, f"epochs = {self.epochs} is out of range; allowed: integers >= 1"),
            (self.batch_size >= 1, f"batch size = {self.batch_size} is out of range; allowed: integers >= 1"),
            (
                self.patience is None or self.patience >= 1,
                f"patience = {self.patience} is out of range; allowed: integers >= 1",
            ),
            ((self.budget is None) != (self.hidden is None), "give exactly one of budget and hidden"),
            (
                self.arch == "sbrnn" or self.densities is None,
                f"densities apply to arch sbrnn only, not {self.arch!r}",
            ),
            (
                self.arch != "lstm" or (self.means is None and self.stds is None),
                "init means and stds apply to block archs only, not lstm",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SbrnnError(message)

    @classmethod
    def from_options(
        cls,
        *,
        budget: float | None = None,
        hidden: int | None = None,
        balanced: bool = False,
        uniform_density: float | None = None,
        **fields: Any,
    ) -> RunConfig:
        """A config from options as a user gives them, where leaving one out means its default.

        ``budget`` defaults to :data:`DEFAULT_BUDGET` unless ``hidden`` is given (give at most one);
        ``balanced`` asks for the a-priori balanced densities of arch ``sbrnn`` (its default, so it
        only excludes ``densities``); ``uniform_density`` applies to arch ``uniform`` only
        (default :data:`DEFAULT_UNIFORM_DENSITY`). ``fields`` are the other fields of the config.
        Raises :class:`SbrnnError` for options that do not go together, or a bad value.
        """
        arch = fields.get("arch", cls.arch)
        checks = [
            (budget is None or hidden is None, "give only one of budget and hidden"),
            (not balanced or fields.get("densities") is None, "give only one of densities and balanced"),
            (not balanced or arch == "sbrnn", f"balanced densities apply to arch sbrnn only, not {arch!r}"),
            (
                uniform_density is None or arch == "uniform",
                f"uniform density applies to arch uniform only, not {arch!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SbrnnError(message)
        return cls(
            budget=None if hidden is not None else (DEFAULT_BUDGET if budget is None else budget),
            hidden=hidden,
            uniform_density=DEFAULT_UNIFORM_DENSITY if uniform_density is None else uniform_density,
            **fields,
        )

    def to_dict(self) -> dict:
        """JSON-ready; grids become nested lists."""
        return json.loads(json.dumps(asdict(self)))

    def run_id(self) -> str:
        """A 16-hex-digit hash of everything that decides the run: same config, same id anywhere."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SavedConfiguration:
    """A configuration read from a recommendation file (``sbrnn parent recommend --json``, or the same
    form by hand: ``{"top": [{"arch", "budget", "lr", "densities", "means", "stds"}, ...]}``).

    ``fields`` are :class:`RunConfig` fields; ``task`` the file's task name (None when it names
    none); ``label`` says where the configuration came from, as the record's ``label`` keeps it.
    """

    fields: dict
    task: str | None
    label: str


def read_saved_configuration(path: str | os.PathLike, rank: int = 1) -> SavedConfiguration:
    """The configuration at ``rank`` (1-based) of the recommendation file ``path``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SbrnnError(f"configuration file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SbrnnError(f"configuration file {str(path)!r} cannot be read: {exc}") from None
    except ValueError as exc:
        raise SbrnnError(f"configuration file {str(path)!r} is not JSON: {exc}") from None
    top = data.get("top") if isinstance(data, dict) else None
    if not isinstance(top, list) or not top:
        raise SbrnnError(f"configuration file {str(path)!r} has no list of configurations under 'top'")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(top):
        raise SbrnnError(f"rank = {rank!r} is out of range; allowed: 1 to {len(top)}")
    chosen = top[rank - 1]
    if not isinstance(chosen, dict) or "arch" not in chosen or "budget" not in chosen:
        raise SbrnnError(f"configuration {rank} of {str(path)!r} lacks its arch or budget")
    fields = {"arch": chosen["arch"], "budget": chosen["budget"]}
    for key in ("lr", "densities", "means", "stds", "activation"):
        if chosen.get(key) is not None and not (
            key in ("densities", "means", "stds") and chosen["arch"] != "sbrnn"
        ):
            fields[key] = chosen[key]
    task = (data.get("task") or {}).get("name") if isinstance(data.get("task"), dict) else None
    parent = (data.get("parent") or {}).get("name") if isinstance(data.get("parent"), dict) else None
    return SavedConfiguration(fields, task, f"{parent or path.name} rank {rank}")
