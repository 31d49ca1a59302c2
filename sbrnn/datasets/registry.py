"""Task name -> builder, dims, loss kind, source and offline availability."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sbrnn.datasets import synthetic
from sbrnn.datasets.task import Task
from sbrnn.errors import SbrnnError


@dataclass(frozen=True)
class TaskInfo:
    """What the registry knows of a task before building it.

    ``builder(seed=..., **options)`` returns the :class:`Task`; ``offline()`` says whether it can
    be built on this machine without a network.
    """

    name: str
    description: str
    n_in: int
    n_out: int
    steps: int
    loss: str
    source: str
    builder: Callable[..., Task]
    offline: Callable[[], bool] = lambda: True

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "steps": self.steps,
            "loss": self.loss,
            "source": self.source,
            "offline": self.offline(),
        }


_REGISTRY: dict[str, TaskInfo] = {}


def register(info: TaskInfo) -> TaskInfo:
    _REGISTRY[info.name] = info
    return info


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_info(name: str) -> TaskInfo:
    """The registered task ``name``; an :class:`SbrnnError` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SbrnnError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


def build_task(name: str, seed: int = 0, **options) -> Task:
    """Build task ``name`` from ``seed``; the same name, options and seed give the same tensors."""
    return get_info(name).builder(seed=seed, **options)


register(TaskInfo(
    "toy-anomaly", "synthetic: find the shifted step among noisy copies", 8, 6, 6,
    "cross_entropy", "synthetic", synthetic.toy_anomaly,
))
register(TaskInfo(
    "toy-regression", "synthetic: lagged product and running mean, every step", 3, 2, 8,
    "mse", "synthetic", synthetic.toy_regression,
))
