"""Random Anomaly Detection (RAD), method.md §4: find the one image transformed differently.

A sequence: a digit class ``c``; two distinct pipelines ``A`` (normal) and ``B`` (anomaly) drawn
uniformly from the eight of :data:`~sbrnn.datasets.transforms.PIPELINES`; ``n`` different source
images of class ``c``, all under ``A`` except the one at a uniform position ``k`` under ``B``; the
label is ``k``. With ``no_anomaly_prob = p > 0``, a sequence has, with probability ``p``, every
image under ``A`` and label ``n`` (an extra class). The default layout is the authors' generator:
``n = 10`` images, then one blank query step (all inputs 0) on which the answer is read: 11 steps,
10 classes. The paper's "n = 9 with 10 outputs" is ``n=9, no_anomaly_prob=p``.

Images are resized (bilinear) from 28x28 to ``side`` x ``side``, scaled to [0, 1], transformed,
clamped to the clean image's range, stored as uint8 and fed as ``(v - 0.1307) / 0.3081``.
Generation is batched (no per-image Python loop), draws every random number from generators
derived from ``seed`` (one per chunk of :data:`CHUNK` sequences, so worker threads can share the
work without changing a byte), and is cached under ``$SBRNN_CACHE/rad``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sbrnn.datasets import cache, sources, transforms
from sbrnn.datasets.progress import Progress, counter
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError

_LOG = logging.getLogger(__name__)

GENERATOR_VERSION = 3
"""Bumped whenever generation changes what a key produces, so old cache files are not reused."""
MEAN, STD = 0.1307, 0.3081
N_CLASSES = 10
CHUNK = 256
"""Sequences generated per batch; fixed so the random stream does not depend on the machine."""
DEFAULT_SIZES = {"mnist": (30_000, 1_000, 1_000), "digits": (6_000, 500, 500)}
"""Train/val/test sequences. mnist: the paper's. digits: sized so that the default ``child train``
(batch 16, 25 epochs, 150,000 training sequence passes) ends in under a minute on 2 cores (38 s
measured, test accuracy 0.80; at 2,000 training sequences it overfits by epoch 4 to 0.62; 8,000
reached 0.81, no better, at 1.3x the time); the pools of its 1,797 images hold about 126 / 27 / 27
images per class, each drawn into many sequences under fresh transforms."""
PRESET_SIZES = (3_000, 500, 500)
"""Train/val/test sequences of the zoo's RAD presets: half of ``rad``'s, so one epoch is cheap."""
PRESETS: dict[str, dict[str, Any]] = {
    "rad16-n5": {"side": 16, "n": 5},
    "rad16-n5-noquery": {"side": 16, "n": 5, "query_step": False},
    "rad20": {"side": 20},
    "rad28-n5-none": {"side": 28, "n": 5, "no_anomaly_prob": 0.2},
    "rad50-n5": {"n": 5},
    "rad24-n8": {"side": 24, "n": 8},
    "rad40-n6-none": {"side": 40, "n": 6, "no_anomaly_prob": 0.2},
    "rad32-n4": {"side": 32, "n": 4},
    "rad20-n6": {"side": 20, "n": 6},
    "rad36-n5": {"side": 36, "n": 5},
    "rad28-n8-none": {"side": 28, "n": 8, "no_anomaly_prob": 0.2},
    "rad44-n5-noquery": {"side": 44, "n": 5, "query_step": False},
    "rad40-n8": {"side": 40, "n": 8},
    "rad32-n6-noquery": {"side": 32, "n": 6, "query_step": False},
    "rad24-n5-none": {"side": 24, "n": 5, "no_anomaly_prob": 0.2},
    "rad48-n6": {"side": 48, "n": 6},
    "rad16-n8": {"side": 16, "n": 8},
    "rad36-n6-none": {"side": 36, "n": 6, "no_anomaly_prob": 0.2},
    "rad20-n8-noquery": {"side": 20, "n": 8, "query_step": False},
    "rad44-n4": {"side": 44, "n": 4},
    "rad28-n6": {"side": 28, "n": 6},
    "rad32-n8-none": {"side": 32, "n": 8, "no_anomaly_prob": 0.2},
    "rad24-n6": {"side": 24, "n": 6},
    "rad40-n5-noquery": {"side": 40, "n": 5, "query_step": False},
    "rad48-n4-none": {"side": 48, "n": 4, "no_anomaly_prob": 0.2},
    "rad20-n6-none": {"side": 20, "n": 6, "no_anomaly_prob": 0.2},
    "rad36-n8-noquery": {"side": 36, "n": 8, "query_step": False},
}
"""The RAD variants on the embedded digits: preset name -> the options it changes. From rad24-n8
on they are held out of the zoo (sweeps/zoo-test.toml; then five each in sweeps/zoo-test3.toml,
zoo-test4.toml and zoo-test5.toml)."""
SIDE_RANGE = (16, 256)
N_RANGE = (2, 100)
MAX_SEQUENCES = 1_000_000
SPLITS = sources.SPLITS


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SbrnnError(f"{name} {value!r} is not allowed; allowed: an integer in [{low:,}, {high:,}]")
    return value


@dataclass(frozen=True)
class RadSpec:
    """Every parameter that decides the generated tensors (the cache key hashes all of them).

    Where the source files live (``data_root``) is not part of it: a source is assumed to be the
    standard data set wherever it is read from.
    """

    source: str = "digits"
    side: int = 50
    n: int = 10
    no_anomaly_prob: float = 0.0
    query_step: bool = True
    n_train: int = DEFAULT_SIZES["digits"][0]
    n_val: int = DEFAULT_SIZES["digits"][1]
    n_test: int = DEFAULT_SIZES["digits"][2]
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in sources.SOURCES:
            raise SbrnnError(f"source {self.source!r} is not allowed; allowed: {', '.join(sources.SOURCES)}")
        _check_int("side", self.side, *SIDE_RANGE)
        _check_int("n", self.n, *N_RANGE)
        for name in ("n_train", "n_val", "n_test"):
            _check_int(name, getattr(self, name), 1, MAX_SEQUENCES)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        p = self.no_anomaly_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise SbrnnError(f"no_anomaly_prob {p!r} is not allowed; allowed: a number in [0, 1)")
        if not isinstance(self.query_step, bool):
            raise SbrnnError(f"query_step {self.query_step!r} is not allowed; allowed: true or false")
        object.__setattr__(self, "no_anomaly_prob", float(p))

    @property
    def n_x(self) -> int:
        return self.side * self.side

    @property
    def n_y(self) -> int:
        return self.n + (1 if self.no_anomaly_prob > 0 else 0)

    @property
    def steps(self) -> int:
        return self.n + (1 if self.query_step else 0)

    def size(self, split: str) -> int:
        return getattr(self, f"n_{split}")

    def params(self) -> dict:
        return {**asdict(self), "version": GENERATOR_VERSION, "mean": MEAN, "std": STD}


def chunk_generator(seed: int, split: str, chunk: int) -> torch.Generator:
    """The generator of chunk ``chunk`` of ``split``: every chunk has its own stream, derived from
    ``seed`` by hashing, so chunks can be made in any order and splits do not share draws."""
    digest = hashlib.sha256(f"rad:{seed}:{split}:{chunk}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _class_table(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool indices sorted by class ``[P]``, each class's start ``[10]`` and count ``[10]``."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=N_CLASSES)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts, counts


def generate_chunk(
    pool: sources.Pool, table, s: int, spec: RadSpec, g: torch.Generator
) -> dict[str, torch.Tensor]:
    """``s`` sequences drawn from ``pool``.

    Returns ``images`` ``[s, n, side*side]`` uint8, ``label`` ``[s]`` int64, ``digit``, ``pipe_a``,
    ``pipe_b`` ``[s]`` uint8, ``anomaly`` ``[s]`` bool (False: no anomaly, label ``n``) and
    ``source_id`` ``[s, n]`` int64 (ids of the source images, as in ``pool.ids``).
    """
    n, n_pipes = spec.n, len(transforms.PIPELINES)
    order, starts, counts = table
    digit = torch.randint(0, N_CLASSES, (s,), generator=g)
    pipe_a = torch.randint(0, n_pipes, (s,), generator=g)
    pipe_b = (pipe_a + torch.randint(1, n_pipes, (s,), generator=g)) % n_pipes
    position = torch.randint(0, n, (s,), generator=g)
    anomaly = torch.rand(s, generator=g) >= spec.no_anomaly_prob
    # n distinct images of the class: the n smallest of one uniform key per pool image of that class
    keys = torch.rand(s, int(counts.max()), generator=g)
    keys[torch.arange(keys.shape[1]).view(1, -1) >= counts[digit].view(-1, 1)] = 2.0
    picks = keys.topk(n, dim=1, largest=False).indices  # [s, n] ranks within the class
    rows = order[starts[digit].view(-1, 1) + picks]  # [s, n] pool rows
    pipeline = pipe_a.view(-1, 1).repeat(1, n)
    hit = anomaly.nonzero().squeeze(1)
    pipeline[hit, position[hit]] = pipe_b[hit]

    # transform images grouped by pipeline (one batch each), then put them back in sequence order
    flat = pipeline.view(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=n_pipes).tolist()
    clean = pool.images[rows.view(-1)[order]].to(torch.float32).div_(255.0)  # [s*n, 28, 28]
    out = transforms.transform_grouped(transforms.resize(clean, spec.side), counts, g)
    images = torch.empty(s * n, spec.n_x, dtype=torch.uint8)
    images[order] = out.mul_(255.0).round_().to(torch.uint8).view(-1, spec.n_x)
    images = images.view(s, n, spec.n_x)
    return {
        "images": images,
        "label": torch.where(anomaly, position, torch.full_like(position, n)),
        "digit": digit.to(torch.uint8),
        "pipe_a": pipe_a.to(torch.uint8),
        "pipe_b": pipe_b.to(torch.uint8),
        "anomaly": anomaly,
        "source_id": pool.ids[rows],
    }


def default_workers() -> int:
    """Threads for generation: the CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def _single_threaded_ops():
    """Torch ops on one thread each while worker threads run whole chunks side by side (cheaper
    than splitting every small op across cores, and robust when the machine is busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate_split(
    pool: sources.Pool,
    split: str,
    spec: RadSpec,
    workers: int | None = None,
    advance: Callable[[int], None] | None = None,
) -> dict:
    """The ``spec.size(split)`` sequences of ``split`` from ``pool`` (see :func:`generate_chunk`).

    Made :data:`CHUNK` at a time by ``workers`` threads (default: the usable cores). Every chunk
    draws from its own generator, so the result does not depend on ``workers``. ``advance(n)`` is
    called with the ``n`` sequences of each chunk made.
    """
    table = _class_table(pool.labels)
    count = spec.size(split)
    starts = list(range(0, count, CHUNK))

    def make(i: int) -> dict:
        g = chunk_generator(spec.seed, split, i)
        return generate_chunk(pool, table, min(CHUNK, count - starts[i]), spec, g)

    parts = []
    with _single_threaded_ops(), ThreadPoolExecutor(workers or default_workers()) as pool_:
        for part in pool_.map(make, range(len(starts))):
            parts.append(part)
            if advance is not None:
                advance(part["label"].shape[0])
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def generate(
    spec: RadSpec,
    data_root=None,
    download: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict, cache.Entry]:
    """All three splits of ``spec``, from the cache or generated once (by ``workers`` threads) and
    stored there; generation is reported through ``progress`` (:mod:`sbrnn.datasets.progress`) in
    sequences, as the work ``RAD <source> side <side>``.

    Returns ``({split: tensors}, entry)``; tensors as in :func:`generate_chunk`.
    """

    def build() -> dict[str, torch.Tensor]:
        pools = sources.load_pools(spec.source, spec.seed, data_root, download)
        smallest = min(int(torch.bincount(p.labels, minlength=N_CLASSES).min()) for p in pools.values())
        if smallest < spec.n:
            raise SbrnnError(
                f"n {spec.n} is not allowed for source {spec.source!r}: a split has only {smallest} images "
                f"of some digit; allowed: n <= {smallest}"
            )
        total = sum(spec.size(s) for s in SPLITS)
        _LOG.info(
            "generating %d RAD sequences (%s, side %d, n %d, seed %d)",
            total,
            spec.source,
            spec.side,
            spec.n,
            spec.seed,
        )
        advance = counter(progress, f"RAD {spec.source} side {spec.side}", total)
        flat = {}
        for split in SPLITS:
            data = generate_split(pools[split], split, spec, workers, advance)
            flat.update({f"{split}/{k}": v for k, v in data.items()})
        return flat

    flat, entry = cache.load_or_build("rad", spec.params(), build)
    splits = {s: {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith(f"{s}/")} for s in SPLITS}
    return splits, entry


def to_inputs(images: torch.Tensor, query_step: bool, chunk: int = 4096) -> torch.Tensor:
    """``[N, n, D]`` uint8 images -> ``[N, T, D]`` float16 normalised inputs (blank query step = 0)."""
    count, n, d = images.shape
    x = torch.zeros(count, n + (1 if query_step else 0), d, dtype=torch.float16)
    for i in range(0, count, chunk):
        part = images[i : i + chunk].to(torch.float32).div_(255.0)
        x[i : i + chunk, :n] = part.sub_(MEAN).div_(STD).to(torch.float16)
    return x


def build(
    name: str, spec: RadSpec, data_root=None, download: bool = False, progress: Progress | None = None
) -> Task:
    """The RAD :class:`Task` for ``spec`` (``cross_entropy``; ``y`` is the anomaly's position):
    inputs ``[N, steps, side*side]`` float16, labels ``[N]`` int64; generation (on a cache miss) is
    reported through ``progress`` (see :func:`generate`)."""
    splits, entry = generate(spec, data_root, download, progress=progress)
    parts = [Split(to_inputs(splits[s]["images"], spec.query_step), splits[s]["label"]) for s in SPLITS]
    meta = {
        "generator": "rad",
        "generation": asdict(spec),
        "pipelines": list(transforms.PIPELINES),
        "normalisation": {"mean": MEAN, "std": STD, "blank_query_step": 0.0},
        "layout": f"{spec.n} images"
        + (" + 1 blank query step" if spec.query_step else "")
        + (f"; no-anomaly class {spec.n} with p = {spec.no_anomaly_prob:g}" if spec.no_anomaly_prob else ""),
        "cache": {"key": entry.key, "path": str(entry.path), "hit": entry.hit},
    }
    return Task(
        name, spec.n_x, spec.n_y, spec.steps, "cross_entropy", parts[0], parts[1], parts[2], meta=meta
    )


def _spec(source: str, seed, side, n, no_anomaly_prob, query_step, n_train, n_val, n_test) -> RadSpec:
    defaults = DEFAULT_SIZES[source]
    n_train, n_val, n_test = (d if v is None else v for v, d in zip((n_train, n_val, n_test), defaults))
    return RadSpec(source, side, n, no_anomaly_prob, query_step, n_train, n_val, n_test, seed=seed)


def build_rad(
    seed: int = 0,
    side: int = 50,
    n: int = 10,
    no_anomaly_prob: float = 0.0,
    query_step: bool = True,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    progress: Progress | None = None,
) -> Task:
    """``rad``: RAD on the embedded digits, 2,500 inputs (side 50), 11 steps, 10 classes."""
    spec = _spec("digits", seed, side, n, no_anomaly_prob, query_step, n_train, n_val, n_test)
    return build("rad", spec, progress=progress)


def build_rad28(
    seed: int = 0,
    side: int = 28,
    n: int = 10,
    no_anomaly_prob: float = 0.0,
    query_step: bool = True,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    progress: Progress | None = None,
) -> Task:
    """``rad28``: RAD on the embedded digits at MNIST's own side, 784 inputs."""
    spec = _spec("digits", seed, side, n, no_anomaly_prob, query_step, n_train, n_val, n_test)
    return build("rad28", spec, progress=progress)


def build_preset(
    name: str,
    seed: int = 0,
    side: int = 50,
    n: int = 10,
    no_anomaly_prob: float = 0.0,
    query_step: bool = True,
    n_train: int = PRESET_SIZES[0],
    n_val: int = PRESET_SIZES[1],
    n_test: int = PRESET_SIZES[2],
    progress: Progress | None = None,
) -> Task:
    """The RAD task ``name`` on the embedded digits; the registry binds each of :data:`PRESETS`
    (``functools.partial(build_preset, name, **PRESETS[name])``) so its options default to it."""
    spec = RadSpec("digits", side, n, no_anomaly_prob, query_step, n_train, n_val, n_test, seed=seed)
    return build(name, spec, progress=progress)


def build_rad_mnist(
    seed: int = 0,
    side: int = 50,
    n: int = 10,
    no_anomaly_prob: float = 0.0,
    query_step: bool = True,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    data_root: str | None = None,
    download: bool = False,
    progress: Progress | None = None,
) -> Task:
    """``rad-mnist``: the paper's RAD on MNIST (``data_root``/MNIST/raw), 30,000 / 1,000 / 1,000."""
    spec = _spec("mnist", seed, side, n, no_anomaly_prob, query_step, n_train, n_val, n_test)
    if not isinstance(download, bool):
        raise SbrnnError(f"download {download!r} is not allowed; allowed: true or false")
    return build("rad-mnist", spec, data_root, download, progress)


def write_preview(task: Task, path: str | Path, rows: int = 4, split: str = "train") -> Path:
    """A PNG of the first ``rows`` sequences of ``split``, one per row, the anomaly framed in red.

    The images are tiled into one mosaic (one matplotlib image, fast at any ``n``) with a gap of
    a quarter side between them; each row is captioned with its digit and pipelines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    spec = RadSpec(**task.meta["generation"])
    data = generate(spec)[0][split]
    rows = min(rows, data["label"].shape[0])
    side, gap = spec.side, max(spec.side // 4, 4)
    cell, band = side + gap, side // 2  # band: caption space above each row
    mosaic = torch.full((rows * (cell + band), spec.n * cell), 255, dtype=torch.uint8)
    for r in range(rows):
        top = r * (cell + band) + band
        for t in range(spec.n):
            left = t * cell + gap // 2
            mosaic[top : top + side, left : left + side] = data["images"][r, t].view(side, side)
    width = 1.0 * spec.n
    fig = plt.figure(figsize=(width, width * mosaic.shape[0] / mosaic.shape[1] + 0.4))
    ax = fig.add_axes((0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    ax.imshow(mosaic.numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    names = transforms.PIPELINES
    for r in range(rows):
        label = int(data["label"][r])
        a, b = names[int(data["pipe_a"][r])], names[int(data["pipe_b"][r])]
        anomaly = f"anomaly at step {label} ({b})" if label < spec.n else "no anomaly"
        top = r * (cell + band) + band
        ax.text(
            gap // 2,
            top - 3,
            f"digit {int(data['digit'][r])}: normal {a}, {anomaly}",
            fontsize=8,
            va="bottom",
        )
        if label < spec.n:
            ax.add_patch(
                Rectangle(
                    (label * cell + gap // 2 - 1, top - 1),
                    side + 1,
                    side + 1,  # 0.5 px out
                    fill=False,
                    edgecolor="red",
                    linewidth=2.5,
                )
            )
    query = " then a blank query step" if spec.query_step else ""
    fig.suptitle(
        f"{task.name}: {spec.n} images per sequence{query}; label = framed position",
        fontsize=9,
        y=1 - 0.1 / fig.get_figheight(),
        va="top",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
