"""Task name -> builder, family, dims, loss kind, source, offline availability and size on disk.

:func:`build_task` also attaches the task's :mod:`~sbrnn.datasets.traits`, computed once per task
name, seed and options and kept in a JSON record under ``$SBRNN_CACHE/traits`` beside the list
of the data files the build read or wrote (which :func:`size_on_disk` sums).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sbrnn.datasets import (
    cache,
    classic,
    minari_io,
    minari_tasks,
    rad,
    rollout_tasks,
    seqdigits,
    sources,
    synthetic,
)
from sbrnn.datasets.progress import Progress
from sbrnn.datasets.task import Task
from sbrnn.datasets.traits import TRAIT_NAMES, task_traits
from sbrnn.datasets.traits import VERSION as TRAITS_VERSION
from sbrnn.errors import SbrnnError

FAMILIES = ("synthetic", "rad", "sequential-digits", "classic", "behaviour-cloning", "dynamics")


@dataclass(frozen=True)
class TaskInfo:
    """What the registry knows of a task before building it.

    ``builder(seed=..., **options)`` returns the :class:`Task`; builders that do long work also take
    ``progress`` (:mod:`sbrnn.datasets.progress`), which is not an option. ``offline()`` says whether
    it can be built on this machine without a network; ``family`` groups tasks of one kind
    (:data:`FAMILIES`). ``n_x``, ``n_y`` and ``steps`` are the dims at the default options.
    """

    name: str
    description: str
    n_x: int
    n_y: int
    steps: int
    loss: str
    source: str
    builder: Callable[..., Task]
    offline: Callable[[], bool] = lambda: True
    family: str = "other"

    def as_dict(self) -> dict:
        """JSON-ready: the fields but ``builder``, ``offline()`` evaluated, and :func:`size_on_disk`."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "n_x": self.n_x,
            "n_y": self.n_y,
            "steps": self.steps,
            "loss": self.loss,
            "source": self.source,
            "offline": self.offline(),
            "size_on_disk": size_on_disk(self),
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
    """The options ``info.builder`` takes besides ``seed`` and ``progress``, with their defaults
    (``None`` if it takes any keyword)."""
    params = inspect.signature(info.builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name: p.default
        for p in params
        if p.name not in ("seed", "progress") and p.kind is not p.VAR_POSITIONAL
    }


def _reports_progress(info: TaskInfo) -> bool:
    """Whether ``info.builder`` takes a ``progress`` callback by name."""
    return "progress" in inspect.signature(info.builder).parameters


def _record_params(info: TaskInfo, seed: int, options: dict) -> dict:
    """The key of a build's traits record: task name, seed and every option (defaults filled in)."""
    return {
        "task": info.name,
        "seed": seed,
        "options": {**(task_options(info) or {}), **options},
        "traits_version": TRAITS_VERSION,
    }


def _data_files(task: Task) -> list[str]:
    """The files a build reads from or writes to the cache: its tensors and its Minari dataset."""
    files = [task.meta["cache"]["path"]] if "cache" in task.meta else []
    if "dataset_id" in task.meta:
        files.append(str(minari_io.dataset_path(task.meta["dataset_id"])))
    return files


def _with_traits(info: TaskInfo, task: Task, seed: int, options: dict) -> Task:
    """``task`` with its traits, from the record of this build or computed and recorded now. A
    record made from other data (a Minari dataset recollected under its id) is recomputed."""
    params = _record_params(info, seed, options)
    data_key = (task.meta.get("cache") or {}).get("key")
    record = cache.read_json("traits", params)
    if record is None or record.get("data_key") != data_key:
        record = {"traits": task_traits(task), "data_key": data_key, "files": _data_files(task)}
        cache.write_json("traits", params, record)
    return dataclasses.replace(task, traits={name: record["traits"][name] for name in TRAIT_NAMES})


def size_on_disk(info: TaskInfo) -> int | None:
    """Bytes of the cache files of ``info``'s task at seed 0 and its default options (its tensors,
    Minari dataset and traits record), or None when it has not been built there."""
    params = _record_params(info, 0, {})
    record = cache.read_json("traits", params)
    if record is None:
        return None
    sizes = [cache.disk_size(path) for path in [*record["files"], cache.json_path("traits", params)]]
    known = [size for size in sizes if size is not None]
    return None if len(known) < len(sizes) else sum(known)


def build_task(name: str, seed: int = 0, progress: Progress | None = None, **options) -> Task:
    """Build task ``name`` from ``seed``, with its traits; the same name, options and seed give
    the same tensors.

    ``progress`` (:mod:`sbrnn.datasets.progress`) is told of the long work of a build (generating,
    collecting) when the builder does any; it is not a task option, so it enters no cache key or
    record. A ``progress`` that is not callable came from a task's options (a config's
    ``task_options``, ``--task-option progress=...``) and is rejected as an unknown option.
    """
    if progress is not None and not callable(progress):
        options, progress = {**options, "progress": progress}, None
    info = get_info(name)
    allowed = task_options(info)
    unknown = sorted(set(options) - set(allowed)) if allowed is not None else []
    if allowed is not None and unknown:
        listed = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
        raise SbrnnError(f"unknown option {unknown[0]!r} for task {name}; allowed: {listed}")
    reporting = {"progress": progress} if progress is not None and _reports_progress(info) else {}
    return _with_traits(info, info.builder(seed=seed, **options, **reporting), seed, options)


def _add(
    name: str,
    family: str,
    shape: tuple[int, int, int, str],
    source: str,
    builder: Callable[..., Task],
    description: str,
    offline: Callable[[], bool] = lambda: True,
) -> None:
    n_x, n_y, steps, loss = shape
    register(TaskInfo(name, description, n_x, n_y, steps, loss, source, builder, offline, family))


CE, MSE = "cross_entropy", "mse"


def _adding(name: str, steps: int, description: str) -> None:
    """The adding problem over ``steps`` steps: 2 in, 1 out (``mse``)."""
    builder = functools.partial(classic.adding, name, steps=steps)
    _add(name, "classic", (2, 1, steps, MSE), "synthetic", builder, description)


def _parity(name: str, steps: int, description: str) -> None:
    """Parity of ``steps`` bits, one per step: 1 in, 2 out (``cross_entropy``)."""
    builder = functools.partial(classic.parity, name, steps=steps)
    _add(name, "classic", (1, 2, steps, CE), "synthetic", builder, description)


def _recall(name: str, steps: int, symbols: int, description: str) -> None:
    """Delayed recall of 1 of ``symbols`` over ``steps`` steps: ``symbols + 2`` in, ``symbols`` out."""
    builder = functools.partial(classic.recall, name, steps=steps, symbols=symbols)
    _add(name, "classic", (symbols + 2, symbols, steps, CE), "synthetic", builder, description)


# synthetic: for tests and smoke runs -------------------------------------------------------------
_add(
    "toy-anomaly",
    "synthetic",
    (8, 6, 6, CE),
    "synthetic",
    synthetic.toy_anomaly,
    "synthetic: find the shifted step among noisy copies; made in milliseconds, for tests and smoke runs",
)
_add(
    "toy-regression",
    "synthetic",
    (3, 2, 8, MSE),
    "synthetic",
    synthetic.toy_regression,
    "synthetic: lagged product and running mean, every step; made in milliseconds, for tests and smoke runs",
)

# RAD ---------------------------------------------------------------------------------------------
_add(
    "rad",
    "rad",
    (2500, 10, 11, CE),
    "digits",
    rad.build_rad,
    "random anomaly detection on the embedded digits, 50x50: which of 10 images is transformed "
    "differently (then a blank query step); the paper's task, 6,000 training sequences",
)
_add(
    "rad28",
    "rad",
    (784, 10, 11, CE),
    "digits",
    rad.build_rad28,
    "random anomaly detection on the embedded digits at 28x28: the paper's task at MNIST's own width",
)
_add(
    "rad-mnist",
    "rad",
    (2500, 10, 11, CE),
    "mnist",
    rad.build_rad_mnist,
    "random anomaly detection on MNIST (data_root/MNIST/raw), 50x50, 30k/1k/1k as in the paper",
    sources.mnist_available,
)
RAD_WHY = {
    "rad16-n5": "RAD at 16x16 with 5 images then the query step: a narrow input, so the recurrent blocks "
    "hold a larger share of a budget than in rad",
    "rad16-n5-noquery": "RAD at 16x16 with 5 images and no query step: the answer is read on the last "
    "image's own step, so the comparison with it cannot wait a step",
    "rad20": "RAD at 20x20 with rad's 10 images and query step: rad's memory length at a sixth of its width",
    "rad28-n5-none": "RAD at 28x28 with 5 images and a 'no anomaly' class in 20 % of sequences: the "
    "paper's n + 1 outputs, where absence is known only after the whole sequence",
    "rad50-n5": "RAD at rad's 50x50 with 5 images then the query step: the widest input with a short memory",
    "rad24-n8": "RAD at 24x24 with 8 images then the query step (held out of the zoo): between rad20 and "
    "rad28 in width, between them and the 5-image tasks in memory",
    "rad40-n6-none": "RAD at 40x40 with 6 images and a 'no anomaly' class in 20 % of sequences (held out "
    "of the zoo): rad28-n5-none's question at twice its width",
    "rad32-n4": "RAD at 32x32 with 4 images then the query step (held out of the zoo): the shortest RAD "
    "memory, at a width between rad28's and rad40's",
    "rad20-n6": "RAD at 20x20 with 6 images then the query step (held out of the zoo): rad20's width "
    "with a memory between the 5-image tasks' and rad20's",
    "rad36-n5": "RAD at 36x36 with 5 images then the query step (held out of the zoo): the 5-image "
    "question at a width between rad28's and rad50's",
    "rad28-n8-none": "RAD at 28x28 with 8 images and a 'no anomaly' class in 20 % of sequences (held out "
    "of the zoo): rad28-n5-none's question with a longer memory",
    "rad44-n5-noquery": "RAD at 44x44 with 5 images and no query step (held out of the zoo): "
    "rad16-n5-noquery's answer on the last image's own step, at a wide input",
    "rad40-n8": "RAD at 40x40 with 8 images then the query step (held out of the zoo, third batch): "
    "rad24-n8's memory at nearly three times its width",
    "rad32-n6-noquery": "RAD at 32x32 with 6 images and no query step (held out of the zoo, third "
    "batch): the no-query question with a memory longer than the zoo's and the second batch's",
    "rad24-n5-none": "RAD at 24x24 with 5 images and a 'no anomaly' class in 20 % of sequences (held "
    "out of the zoo, third batch): rad28-n5-none's question at a narrower input",
    "rad48-n6": "RAD at 48x48 with 6 images then the query step (held out of the zoo, third batch): "
    "nearly rad's width with a memory between the 5-image tasks' and rad's",
    "rad16-n8": "RAD at 16x16 with 8 images then the query step (held out of the zoo, third batch): "
    "the narrowest RAD input with a long memory, where the recurrent blocks hold most of a budget",
    "rad36-n6-none": "RAD at 36x36 with 6 images and a 'no anomaly' class in 20 % of sequences (held "
    "out of the zoo, fourth batch): the 'none' question between rad28-n5-none's and rad40-n6-none's widths",
    "rad20-n8-noquery": "RAD at 20x20 with 8 images and no query step (held out of the zoo, fourth "
    "batch): the no-query question with the longest memory yet, at a narrow input",
    "rad44-n4": "RAD at 44x44 with 4 images then the query step (held out of the zoo, fourth batch): "
    "the shortest memory at a wide input",
    "rad28-n6": "RAD at 28x28 with 6 images then the query step (held out of the zoo, fourth batch): "
    "rad28's width with a memory between the 5-image tasks' and rad28's",
    "rad32-n8-none": "RAD at 32x32 with 8 images and a 'no anomaly' class in 20 % of sequences (held "
    "out of the zoo, fourth batch): rad28-n8-none's question at a wider input",
    "rad24-n6": "RAD at 24x24 with 6 images then the query step (held out of the zoo, fifth batch): "
    "rad24-n8's width with a shorter memory",
    "rad40-n5-noquery": "RAD at 40x40 with 5 images and no query step (held out of the zoo, fifth "
    "batch): the no-query question between rad32-n6-noquery's and rad44-n5-noquery's widths",
    "rad48-n4-none": "RAD at 48x48 with 4 images and a 'no anomaly' class in 20 % of sequences (held "
    "out of the zoo, fifth batch): the 'none' question at the widest input with the shortest memory",
    "rad20-n6-none": "RAD at 20x20 with 6 images and a 'no anomaly' class in 20 % of sequences (held "
    "out of the zoo, fifth batch): the 'none' question at a narrow input",
    "rad36-n8-noquery": "RAD at 36x36 with 8 images and no query step (held out of the zoo, fifth "
    "batch): rad20-n8-noquery's question at a wider input",
}
for _name, _preset in rad.PRESETS.items():
    _spec = rad.RadSpec(**_preset)
    _add(
        _name,
        "rad",
        (_spec.n_x, _spec.n_y, _spec.steps, CE),
        "digits",
        functools.partial(rad.build_preset, _name, **_preset),
        f"{RAD_WHY[_name]}; 3,000 training sequences",
    )

# sequential digits -------------------------------------------------------------------------------
_add(
    "seq-digits",
    "sequential-digits",
    (8, 10, 8, CE),
    "digits",
    seqdigits.build_seq_digits,
    "8x8 digits read one 8-pixel row per step: short, easy sequence classification (1,258 training)",
)
_add(
    "column-digits",
    "sequential-digits",
    (8, 10, 8, CE),
    "digits",
    seqdigits.build_column_digits,
    "8x8 digits read one 8-pixel column per step (held out of the zoo): seq-digits' shape, the strokes "
    "met in another order",
)
_add(
    "snake-digits",
    "sequential-digits",
    (8, 10, 8, CE),
    "digits",
    seqdigits.build_snake_digits,
    "8x8 digits read one 8-pixel row per step, top to bottom, every other row right to left (held out "
    "of the zoo): seq-digits' shape, each stroke met where the last row ended",
)
_add(
    "halfrow-digits",
    "sequential-digits",
    (4, 10, 16, CE),
    "digits",
    seqdigits.build_halfrow_digits,
    "8x8 digits read one 4-pixel half row per step in raster order (held out of the zoo): "
    "patch-digits' shape, two steps per image row",
)
_add(
    "upward-digits",
    "sequential-digits",
    (8, 10, 8, CE),
    "digits",
    seqdigits.build_upward_digits,
    "8x8 digits read one 8-pixel row per step, bottom to top (held out of the zoo, third batch): "
    "seq-digits' rows, the strokes met in the reverse order",
)
_add(
    "halfcolumn-digits",
    "sequential-digits",
    (4, 10, 16, CE),
    "digits",
    seqdigits.build_halfcolumn_digits,
    "8x8 digits read one 4-pixel half column per step, columns left to right (held out of the zoo, "
    "third batch): halfrow-digits' shape, the image turned a quarter",
)
_add(
    "leftward-digits",
    "sequential-digits",
    (8, 10, 8, CE),
    "digits",
    seqdigits.build_leftward_digits,
    "8x8 digits read one 8-pixel column per step, right to left (held out of the zoo, fourth batch): "
    "column-digits' columns, the strokes met in the reverse order",
)
_add(
    "backpatch-digits",
    "sequential-digits",
    (4, 10, 16, CE),
    "digits",
    seqdigits.build_backpatch_digits,
    "8x8 digits read one 2x2 patch per step, the patches in reverse raster order (held out of the zoo, "
    "fourth batch): patch-digits' patches from the last to the first",
)
_add(
    "colsnake-digits",
    "sequential-digits",
    (8, 10, 8, CE),
    "digits",
    seqdigits.build_colsnake_digits,
    "8x8 digits read one 8-pixel column per step, every other column bottom to top (held out of the "
    "zoo, fifth batch): snake-digits' path, the image turned a quarter",
)
_add(
    "rowpair-digits",
    "sequential-digits",
    (16, 10, 4, CE),
    "digits",
    seqdigits.build_rowpair_digits,
    "8x8 digits read two image rows per step (held out of the zoo, fifth batch): quadrant-digits' "
    "shape, each step a band across the whole image",
)
_add(
    "quadrant-digits",
    "sequential-digits",
    (16, 10, 4, CE),
    "digits",
    seqdigits.build_quadrant_digits,
    "8x8 digits read one 4x4 quarter per step (held out of the zoo): the widest and shortest digit reading",
)
_add(
    "pixel-digits",
    "sequential-digits",
    (1, 10, 64, CE),
    "digits",
    seqdigits.build_pixel_digits,
    "8x8 digits read one pixel per step (sequential MNIST at 8x8): a one-wide input whose class "
    "must be integrated over 64 steps",
)
_add(
    "pixel-digits-permuted",
    "sequential-digits",
    (1, 10, 64, CE),
    "digits",
    seqdigits.build_permuted_digits,
    "8x8 digits read one pixel per step in a fixed random order (permuted sequential MNIST): no local "
    "structure in time, so evidence must be held across all 64 steps",
)
_add(
    "patch-digits",
    "sequential-digits",
    (4, 10, 16, CE),
    "digits",
    seqdigits.build_patch_digits,
    "8x8 digits read one 2x2 patch per step: between seq-digits and pixel-digits in width and length",
)

# classic RNN benchmarks --------------------------------------------------------------------------
_add(
    "adding-50",
    "classic",
    (2, 1, 50, MSE),
    "synthetic",
    functools.partial(classic.adding, "adding-50"),
    "the adding problem over 50 steps (target at every step: the marked values summed so far): a "
    "memoryless network cannot beat the running mean; 2,000 training sequences",
)
_adding(
    "adding-200",
    200,
    "the adding problem over 200 steps: adding-50's memory across four times the distance",
)
_add(
    "parity",
    "classic",
    (1, 2, 10, CE),
    "synthetic",
    functools.partial(classic.parity, "parity"),
    "parity of 10 bits, one per step; validation and test patterns never occur in training, so only a "
    "running XOR (one bit of memory flipped by every input) beats chance",
)
_add(
    "delayed-recall",
    "classic",
    (10, 8, 25, CE),
    "synthetic",
    functools.partial(classic.recall, "delayed-recall"),
    "recall the symbol (1 of 8) stored at step 0 after 23 steps of distractors from the same alphabet: "
    "long memory under interference, nothing else; at 25 steps some configurations solve it and others "
    "stay at chance",
)

_parity(
    "parity-16",
    16,
    "parity of 16 bits, one per step (held out of the zoo): parity's running XOR over 16 steps, "
    "validation and test patterns never seen in training",
)
_recall(
    "recall-12",
    12,
    5,
    "recall the symbol (1 of 5) stored at step 0 after 10 steps of distractors (held out of the zoo): "
    "delayed-recall's question at half its length",
)

_recall(
    "recall-18",
    18,
    6,
    "recall the symbol (1 of 6) stored at step 0 after 16 steps of distractors (held out of the zoo): "
    "between recall-12 and delayed-recall",
)

_recall(
    "recall-30",
    30,
    8,
    "recall the symbol (1 of 8) stored at step 0 after 28 steps of distractors (held out of the zoo): "
    "delayed-recall's question, five steps longer",
)
_adding(
    "adding-20",
    20,
    "the adding problem over 20 steps (held out of the zoo): adding-50's memory at two fifths of "
    "its distance",
)
_recall(
    "recall-24",
    24,
    7,
    "recall the symbol (1 of 7) stored at step 0 after 22 steps of distractors (held out of the zoo, "
    "third batch): between recall-18 and delayed-recall",
)
_adding(
    "adding-100",
    100,
    "the adding problem over 100 steps (held out of the zoo, third batch): between adding-50 and adding-200",
)
_adding(
    "adding-30",
    30,
    "the adding problem over 30 steps (held out of the zoo, fourth batch): between adding-20 and adding-50",
)
_parity(
    "parity-12",
    12,
    "parity of 12 bits, one per step (held out of the zoo, fourth batch): between parity's 10 bits and "
    "parity-16's, validation and test patterns never seen in training",
)
_adding(
    "adding-40",
    40,
    "the adding problem over 40 steps (held out of the zoo, fifth batch): between adding-30 and adding-50",
)
_recall(
    "recall-21",
    21,
    6,
    "recall the symbol (1 of 6) stored at step 0 after 19 steps of distractors (held out of the zoo, "
    "fifth batch): recall-18's symbols, three steps longer",
)

# behaviour cloning -------------------------------------------------------------------------------


def _minari_info(name: str) -> TaskInfo:
    """``minari:<dataset_id>``: behaviour cloning on a Minari dataset, offline when it is local."""
    dataset_id = name.removeprefix("minari:")
    shape = minari_tasks.describe(dataset_id)
    return TaskInfo(
        name,
        f"behaviour cloning on Minari {dataset_id} ({shape.episodes} episodes of {shape.env_id}): "
        "obs_t -> action_t",
        shape.n_obs,
        shape.n_act,
        shape.steps,
        "mse",
        "minari",
        minari_tasks.minari_builder(dataset_id),
        lambda: minari_io.is_local(dataset_id),
        "behaviour-cloning",
    )


register(_minari_info(f"minari:{minari_io.DEFAULT_DATASET}"))
register_prefix(
    "minari:",
    _minari_info,
    lambda: [f"minari:{d}" for d in minari_io.local_dataset_ids() if not d.startswith("sbrnn/")],
)
COLLECTED = {
    "hammer-local": (
        (46, 26, 200),
        "behaviour cloning of smooth random actions in AdroitHandHammer-v1 "
        "(100 episodes): the offline stand-in for D4RL hammer; smooth actions can be told from "
        "the hand's recent motion, uniform ones could not",
    ),
    "pen-local": (
        (45, 24, 50),
        "behaviour cloning of smooth random actions in AdroitHandPen-v1 "
        "(100 episodes, windows of 50): a third hand task, at a quarter of the sequence length",
    ),
    "relocate-local": (
        (39, 30, 200),
        "behaviour cloning of smooth random actions in AdroitHandRelocate-v1 "
        "(100 episodes): the most outputs in the zoo",
    ),
    "pendulum-swingup": (
        (3, 1, 50),
        "behaviour cloning of a scripted energy swing-up and PD balance "
        "controller in Pendulum-v1 (200 episodes, windows of 50): an expert worth cloning, "
        "whose clone can be scored in the environment; one output",
    ),
    "hopper-dynamics": (
        (14, 11, 10),
        "forward dynamics in Hopper-v5 under random actions (400 episodes, "
        "windows of 10): contact dynamics of a hopper that falls within 10 to 70 steps",
    ),
    "halfcheetah-dynamics": (
        (23, 17, 25),
        "forward dynamics in HalfCheetah-v5 under random actions "
        "(100 episodes of 100 steps, windows of 25): a body that never falls",
    ),
    "walker2d-dynamics": (
        (23, 17, 10),
        "forward dynamics in Walker2d-v5 under random actions (600 "
        "episodes, windows of 10): a biped that falls within 10 to 50 steps",
    ),
    "ant-dynamics": (
        (35, 27, 20),
        "forward dynamics in Ant-v5 (contact forces left out of the "
        "observation) under random actions (300 episodes of up to 100 steps, windows of 20): "
        "the widest body",
    ),
    "swimmer-dynamics": (
        (10, 8, 25),
        "forward dynamics in Swimmer-v5 under random actions (200 episodes "
        "of 100 steps, windows of 25): smooth fluid drag, no contacts",
    ),
    "reacher-dynamics": (
        (12, 10, 10),
        "forward dynamics in Reacher-v5 under random actions (200 episodes "
        "of 50 steps, windows of 10): a two-joint arm whose target never moves",
    ),
    "inverted-double-pendulum-dynamics": (
        (10, 9, 5),
        "forward dynamics in InvertedDoublePendulum-v5 under random actions (1,000 episodes, "
        "windows of 5): an unstable system that falls within 4 to 9 steps",
    ),
    "pendulum-dynamics": (
        (4, 3, 20),
        "forward dynamics in Pendulum-v1 under random torques (200 episodes "
        "of 100 steps, windows of 20): one smooth joint, 3 observations",
    ),
    "pusher-dynamics": (
        (30, 23, 20),
        "forward dynamics in Pusher-v5 under random actions (200 episodes of 100 steps, windows of 20; "
        "held out of the zoo): a 7-joint arm and the object it pushes",
    ),
    "pusher-cloning": (
        (23, 7, 50),
        "behaviour cloning of smooth random actions in Pusher-v5 (200 episodes of 100 steps, windows "
        "of 50; held out of the zoo): the Adroit tasks' question on a 7-joint arm",
    ),
    "swimmer-cloning": (
        (8, 2, 50),
        "behaviour cloning of smooth random actions in Swimmer-v5 (200 episodes of 100 steps, windows "
        "of 50; held out of the zoo): two joints in fluid, two outputs",
    ),
    "halfcheetah-cloning": (
        (17, 6, 50),
        "behaviour cloning of smooth random actions in HalfCheetah-v5 (200 episodes of 100 steps, "
        "windows of 50; held out of the zoo): a six-joint body that never falls",
    ),
    "reacher-cloning": (
        (10, 2, 25),
        "behaviour cloning of smooth random actions in Reacher-v5 (200 episodes of 50 steps, windows of "
        "25; held out of the zoo): reacher-dynamics' arm, its two torques as outputs",
    ),
    "ant-cloning": (
        (27, 8, 20),
        "behaviour cloning of smooth random actions in Ant-v5 (contact forces left out of the "
        "observation; 300 episodes of up to 100 steps, windows of 20; held out of the zoo): eight "
        "joints of a body that may flip",
    ),
    "walker2d-cloning": (
        (17, 6, 10),
        "behaviour cloning of smooth random actions in Walker2d-v5 (600 episodes, windows of 10; held "
        "out of the zoo): a biped that falls within tens of steps",
    ),
    "hopper-cloning": (
        (11, 3, 10),
        "behaviour cloning of smooth random actions in Hopper-v5 (400 episodes, windows of 10; held out "
        "of the zoo): hopper-dynamics' body, its three torques as outputs",
    ),
    "humanoid-cloning": (
        (45, 17, 10),
        "behaviour cloning of smooth random actions in Humanoid-v5 (positions and velocities only; 1,200 "
        "episodes of 15-35 steps, windows of 10; held out of the zoo, third batch): 17 outputs from a "
        "body that falls",
    ),
    "pendulum-cloning": (
        (3, 1, 20),
        "behaviour cloning of smooth random actions in Pendulum-v1 (200 episodes of 100 steps, windows "
        "of 20; held out of the zoo, third batch): pendulum-swingup's body under another policy",
    ),
    "inverted-double-pendulum-cloning": (
        (9, 1, 5),
        "behaviour cloning of smooth random actions in InvertedDoublePendulum-v5 (2,000 episodes of "
        "5-12 steps, windows of 5; held out of the zoo, third batch): one output, the zoo's shortest "
        "windows",
    ),
    "door-cloning": (
        (39, 28, 25),
        "behaviour cloning of smooth random actions in AdroitHandDoor-v1 (200 episodes of 200 steps, "
        "windows of 25; held out of the zoo, fourth batch): the fourth Adroit hand, 28 outputs",
    ),
    "humanoid-dynamics": (
        (62, 45, 10),
        "forward dynamics in Humanoid-v5 under random actions (positions and velocities only; 1,200 "
        "episodes, windows of 10; held out of the zoo, fourth batch): the widest state the zoo predicts",
    ),
    "mountaincar-cloning": (
        (2, 1, 20),
        "behaviour cloning of smooth random actions in MountainCarContinuous-v0 (200 episodes of 100 "
        "steps, windows of 20; held out of the zoo, fourth batch): two observations, one output, "
        "the action read from a small change of velocity",
    ),
    "inverted-pendulum-cloning": (
        (4, 1, 5),
        "behaviour cloning of smooth random actions in InvertedPendulum-v5 (6,000 episodes, windows of "
        "5; held out of the zoo, fifth batch): inverted-double-pendulum-cloning's question with one pole",
    ),
    "inverted-pendulum-dynamics": (
        (5, 4, 5),
        "forward dynamics in InvertedPendulum-v5 under random actions (3,000 episodes, windows of 5; "
        "held out of the zoo, fifth batch): inverted-double-pendulum-dynamics' question with one pole",
    ),
    "pen-dynamics": (
        (69, 45, 10),
        "forward dynamics in AdroitHandPen-v1 under random actions (300 episodes of 100 steps, windows "
        "of 10; held out of the zoo, fifth batch): an Adroit hand's state predicted, 69 in, 45 out",
    ),
}
for _name, ((_n_in, _n_out, _steps), _why) in COLLECTED.items():
    _collection = rollout_tasks.COLLECTIONS[_name]
    _family = "behaviour-cloning" if _collection.kind == rollout_tasks.BC else "dynamics"
    _add(
        _name,
        _family,
        (_n_in, _n_out, _steps, MSE),
        "rollouts",
        rollout_tasks.builder(_name),
        f"{_why}; collected here on first build",
        functools.partial(rollout_tasks.can_collect, _collection.env_id),
    )
