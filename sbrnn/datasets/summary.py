"""Building a task as a user asks for it, and the facts about it that ``datasets build`` and ``info`` show."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sbrnn.datasets.cache import cache_root
from sbrnn.datasets.progress import Progress
from sbrnn.datasets.rad import write_preview
from sbrnn.datasets.registry import build_task, get_info, task_options
from sbrnn.datasets.task import Task
from sbrnn.errors import SbrnnError

SPLITS = ("train", "val", "test")


def build_checked(
    name: str, seed: int = 0, options: dict | None = None, progress: Progress | None = None
) -> Task:
    """The registered task ``name`` built with ``options`` (:func:`sbrnn.datasets.registry.build_task`).

    A builder's own refusal of an option value (a ``TypeError``, ``ValueError`` or ``RuntimeError``)
    becomes one :class:`SbrnnError` naming the task and its options. ``progress`` is not an
    option: an option of that name is rejected as unknown.
    """
    options = dict(options or {})
    try:
        return build_task(name, seed=seed, **{"progress": progress, **options})
    except SbrnnError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SbrnnError(f"task {name!r} cannot be built with options {options}: {exc}") from None


@dataclass(frozen=True)
class TaskSummary:
    """Shapes, sizes, and class balance (``cross_entropy``) or target statistics (``mse``) of a task.

    ``sizes[split]`` counts its sequences, ``shapes[split]`` holds the shapes of ``x`` and ``y`` and
    ``x``'s dtype; ``classes[split]`` counts the sequences of each class ``0..n_y-1`` and
    ``targets[split]`` holds the mean and standard deviation over every target scalar of the split
    (the other one is None).
    """

    name: str
    n_x: int
    n_y: int
    steps: int
    loss: str
    sizes: dict[str, int]
    shapes: dict[str, dict]
    classes: dict[str, list[int]] | None = None
    targets: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict:
        """JSON-ready; holds ``classes`` or ``targets``, whichever the task has."""
        out = {
            "name": self.name,
            "n_x": self.n_x,
            "n_y": self.n_y,
            "steps": self.steps,
            "loss": self.loss,
            "sizes": self.sizes,
            "shapes": self.shapes,
        }
        if self.classes is not None:
            out["classes"] = self.classes
        if self.targets is not None:
            out["targets"] = self.targets
        return out


def task_summary(task: Task) -> TaskSummary:
    """The :class:`TaskSummary` of a built task."""
    splits = {name: getattr(task, name) for name in SPLITS}
    shapes = {
        name: {
            "x": list(split.x.shape),
            "x_dtype": str(split.x.dtype).removeprefix("torch."),
            "y": list(split.y.shape),
        }
        for name, split in splits.items()
    }
    classes = targets = None
    if task.is_classification:
        classes = {name: s.y.bincount(minlength=task.n_y).tolist() for name, s in splits.items()}
    else:
        targets = {
            name: {"mean": float(s.y.float().mean()), "std": float(s.y.float().std())}
            for name, s in splits.items()
        }
    return TaskSummary(
        task.name,
        task.n_x,
        task.n_y,
        task.steps,
        task.loss,
        {name: len(split) for name, split in splits.items()},
        shapes,
        classes,
        targets,
    )


@dataclass(frozen=True)
class Build:
    """What building a task did (``datasets build``): its summary, traits, time and cache use.

    ``cache`` is the task's cache entry (``path``, ``key``, ``hit``: loaded rather than generated),
    None for a task that is not cached.
    """

    summary: TaskSummary
    traits: dict[str, float | None]
    seconds: float
    cache: dict | None

    def to_dict(self) -> dict:
        return {**self.summary.to_dict(), "seconds": self.seconds, "cache": self.cache, "traits": self.traits}


def build_summary(
    name: str, seed: int = 0, options: dict | None = None, progress: Progress | None = None
) -> Build:
    """Build task ``name`` (into the cache, or from it: :func:`build_checked`) and summarise it."""
    start = time.perf_counter()
    task = build_checked(name, seed, options, progress)
    seconds = round(time.perf_counter() - start, 2)
    return Build(task_summary(task), task.traits, seconds, task.meta.get("cache"))


@dataclass(frozen=True)
class TaskDetails:
    """Everything ``datasets info`` tells of a task: its summary, the registry's description, family
    and source, its options as built (those given, the others at their defaults; ``given`` names
    the given ones), traits, generation details (``meta``) and, for RAD, the path of a PNG
    preview of a few sequences."""

    summary: TaskSummary
    family: str
    description: str
    source: str
    options: dict | None
    traits: dict[str, float | None]
    meta: dict
    preview: str | None = None
    given: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready; ``preview`` only when there is one."""
        out = {
            **self.summary.to_dict(),
            "family": self.family,
            "description": self.description,
            "source": self.source,
            "options": self.options,
            "options_given": list(self.given),
            "traits": self.traits,
            "meta": self.meta,
        }
        if self.preview is not None:
            out["preview"] = self.preview
        return out


def describe_task(
    name: str,
    seed: int = 0,
    options: dict | None = None,
    progress: Progress | None = None,
    preview: str | Path | None = None,
) -> TaskDetails:
    """Build task ``name`` (:func:`build_checked`) and describe it; a RAD task's preview is written
    to ``preview``, by default into the cache's ``previews`` folder."""
    info = get_info(name)
    options = dict(options or {})
    task = build_checked(name, seed, options, progress)
    defaults = task_options(info)
    written = None
    if task.meta.get("generator") == "rad":
        path = preview or cache_root() / "previews" / f"{name}-{task.meta['cache']['key']}.png"
        written = str(write_preview(task, path))
    return TaskDetails(
        task_summary(task),
        info.family,
        info.description,
        info.source,
        None if defaults is None else {**defaults, **options},
        task.traits,
        task.meta,
        written,
        tuple(options),
    )
