"""Task name -> builder, dims, loss kind, source and offline availability."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sbrnn.datasets import minari_tasks, rad, seqdigits, sources, synthetic
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


_PREFIXES: dict[str, tuple[Callable[[str], TaskInfo], Callable[[], list[str]]]] = {}


def register_prefix(prefix: str, resolve: Callable[[str], TaskInfo], names: Callable[[], list[str]]) -> None:
    """Names starting with ``prefix`` (``minari:<dataset_id>``) resolve through ``resolve(name)``,
    which raises :class:`SbrnnError` for one it cannot serve; ``names()`` lists those ready now."""
    _PREFIXES[prefix] = (resolve, names)


def task_names() -> list[str]:
    """Registered names and, for each prefix, the names ready on this machine."""
    return sorted(set(_REGISTRY).union(n for _, names in _PREFIXES.values() for n in names()))


def get_info(name: str) -> TaskInfo:
    """The task ``name``; an :class:`SbrnnError` listing the known names otherwise."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, (resolve, _) in _PREFIXES.items():
        if name.startswith(prefix):
            return resolve(name)
    patterns = "".join(f"; or {prefix}<id>" for prefix in _PREFIXES)
    raise SbrnnError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}{patterns}")


def task_options(info: TaskInfo) -> dict[str, Any] | None:
    """The options ``info.builder`` takes besides ``seed``, with their defaults (``None`` if it takes
    any keyword)."""
    params = inspect.signature(info.builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name: p.default for p in params if p.name != "seed" and p.kind is not p.VAR_POSITIONAL}


def build_task(name: str, seed: int = 0, **options) -> Task:
    """Build task ``name`` from ``seed``; the same name, options and seed give the same tensors."""
    info = get_info(name)
    allowed = task_options(info)
    unknown = sorted(set(options) - set(allowed)) if allowed is not None else []
    if unknown:
        listed = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
        raise SbrnnError(f"unknown option {unknown[0]!r} for task {name}; allowed: {listed}")
    return info.builder(seed=seed, **options)


register(TaskInfo(
    "toy-anomaly", "synthetic: find the shifted step among noisy copies", 8, 6, 6,
    "cross_entropy", "synthetic", synthetic.toy_anomaly,
))
register(TaskInfo(
    "toy-regression", "synthetic: lagged product and running mean, every step", 3, 2, 8,
    "mse", "synthetic", synthetic.toy_regression,
))
register(TaskInfo(
    "rad", "random anomaly detection on the embedded digits, 50x50: which of 10 images is transformed "
    "differently (then a blank query step)", 2500, 10, 11, "cross_entropy", "digits", rad.build_rad,
))
register(TaskInfo(
    "rad28", "random anomaly detection on the embedded digits at 28x28", 784, 10, 11, "cross_entropy",
    "digits", rad.build_rad28,
))
register(TaskInfo(
    "rad-mnist", "random anomaly detection on MNIST (data_root/MNIST/raw), 50x50, 30k/1k/1k as in the paper",
    2500, 10, 11, "cross_entropy", "mnist", rad.build_rad_mnist, sources.mnist_available,
))
register(TaskInfo(
    "seq-digits", "8x8 digits read one 8-pixel row per step", 8, 10, 8, "cross_entropy", "digits",
    seqdigits.build_seq_digits,
))


def _minari_info(name: str) -> TaskInfo:
    """``minari:<dataset_id>``: behaviour cloning on a Minari dataset, offline when it is local."""
    dataset_id = name.removeprefix("minari:")
    shape = minari_tasks.describe(dataset_id)
    return TaskInfo(
        name, f"behaviour cloning on Minari {dataset_id} ({shape.episodes} episodes of {shape.env_id}): "
        "obs_t -> action_t", shape.n_obs, shape.n_act, shape.steps, "mse", "minari",
        minari_tasks.minari_builder(dataset_id),
        lambda: minari_tasks.is_local(dataset_id),
    )


register(_minari_info(f"minari:{minari_tasks.DEFAULT_DATASET}"))
register_prefix(
    "minari:", _minari_info,
    lambda: [f"minari:{d}" for d in minari_tasks.local_dataset_ids() if not d.startswith("sbrnn/")],
)
register(TaskInfo(
    "hammer-local", "behaviour cloning: smooth random actions in AdroitHandHammer-v1, collected here",
    46, 26, 200, "mse", "rollouts", minari_tasks.hammer_local,
    lambda: minari_tasks.can_collect("AdroitHandHammer-v1"),
))
register(TaskInfo(
    "hopper-dynamics", "forward dynamics: [obs_t; a_t] -> obs_t+1 - obs_t, Hopper-v5 random rollouts",
    14, 11, 10, "mse", "rollouts", minari_tasks.hopper_dynamics,
    lambda: minari_tasks.can_collect("Hopper-v5"),
))
register(TaskInfo(
    "halfcheetah-dynamics",
    "forward dynamics: [obs_t; a_t] -> obs_t+1 - obs_t, HalfCheetah-v5 random rollouts",
    23, 17, 25, "mse", "rollouts", minari_tasks.halfcheetah_dynamics,
    lambda: minari_tasks.can_collect("HalfCheetah-v5"),
))
