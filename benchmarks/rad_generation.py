"""RAD generation speed: the batched generator against a per-image torchvision loop, same run.

    python benchmarks/rad_generation.py [--sequences 2048] [--workers 2] [--mnist-root DIR]

Prints sequences/s for each source and image side, the ratio to the 3,000 sequences/s target,
and the ratio to a baseline that makes the same sequences one image at a time with
torchvision.transforms.v2 (the straightforward loop; global RNG, single-threaded ops). Without
MNIST files the ``mnist`` rows read IDX files of MNIST's sizes filled with random pixels, written
to a temporary folder: the speed depends on the pool sizes, not on the pixels. Also times the
cache: writing and loading the default ``rad`` task. ``seq per CPU-s`` divides by the CPU time
this process used (all its threads), a figure that other processes on a busy machine disturb far
less than the wall-clock rate; the load average is printed for the same reason, and so is the
machine's parallel capacity: how much more work ``--workers`` processes of a plain torch loop get
done than one (2.0 on two free, full cores).

torchvision is the peer here and not a dependency of sbrnn: install the release that matches your
torch first (torch 2.14.1 with torchvision 0.29.1 was used for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from sbrnn.datasets import rad, sources, transforms

try:
    from torchvision.transforms import v2
except ImportError as exc:  # the peer this benchmark measures against
    raise SystemExit(f"rad_generation.py needs torchvision beside torch {torch.__version__}: {exc}") from None

TARGET = 3_000.0


def torchvision_pipelines(side: int) -> list:
    """The eight pipelines as per-image torchvision.transforms.v2 objects (p = 1 everywhere)."""
    erase = v2.RandomErasing(p=1.0, scale=transforms.ERASE_SCALE, ratio=transforms.ERASE_RATIO, value=0)
    return [
        v2.Identity(),
        v2.RandomPerspective(0.5, p=1.0),
        v2.RandomPerspective(0.9, p=1.0),
        erase,
        v2.GaussianNoise(sigma=transforms.NOISE_STD),
        v2.Compose([erase, v2.RandomPerspective(0.5, p=1.0)]),
        v2.GaussianBlur(transforms.BLUR_KERNEL, sigma=transforms.BLUR_SIGMA),
        v2.RandomAdjustSharpness(transforms.SHARPNESS, p=1.0),
    ]


def baseline(pool: sources.Pool, count: int, spec: rad.RadSpec) -> float:
    """Sequences/s of a per-image loop producing the same kind of sequences."""
    torch.manual_seed(0)
    pipes = torchvision_pipelines(spec.side)
    resize = v2.Resize((spec.side, spec.side), antialias=True)
    by_class = [(pool.labels == c).nonzero().squeeze(1) for c in range(rad.N_CLASSES)]
    start = time.perf_counter()
    for _ in range(count):
        digit = int(torch.randint(0, rad.N_CLASSES, ()))
        a = int(torch.randint(0, 8, ()))
        b = (a + int(torch.randint(1, 8, ()))) % 8
        k = int(torch.randint(0, spec.n, ()))
        picks = by_class[digit][torch.randperm(len(by_class[digit]))[: spec.n]]
        images = []
        for t, row in enumerate(picks.tolist()):
            clean = resize(pool.images[row].unsqueeze(0).float() / 255)
            out = pipes[b if t == k else a](clean).clamp(clean.min(), clean.max())
            images.append(out.mul(255).round().to(torch.uint8).view(-1))
        torch.stack(images)
    return count / (time.perf_counter() - start)


def batched(pool: sources.Pool, count: int, spec: rad.RadSpec, workers: int) -> tuple[float, float]:
    """(sequences per wall second, sequences per CPU second of this process) of the generator."""
    rad.generate_split(pool, "train", rad.RadSpec(**{**spec.__dict__, "n_train": rad.CHUNK}), workers)
    start, cpu = time.perf_counter(), time.process_time()
    rad.generate_split(pool, "train", spec, workers)
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def parallel_capacity(processes: int) -> float:
    """How many times one process's work ``processes`` processes get done together: each runs the
    same single-threaded torch loop (64x64 matmuls); 2.0 on two free cores, less when they are
    shared with other jobs or are not full cores."""
    code = (
        "import time, torch; torch.set_num_threads(1); a = torch.rand(64, 64); t = time.perf_counter(); "
        "[a @ a for _ in range(20000)]; print(time.perf_counter() - t)"
    )

    def run(n: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL) for _ in range(n)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    run(1)  # warm the interpreter and torch import caches
    return processes * run(1) / run(processes)


def mnist_root(given: str | None, tmp: str) -> tuple[Path, str]:
    if given:
        return Path(given), "mnist"
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10

    sources.write_mnist_idx(tmp, part(60_000), part(10_000))
    return Path(tmp), "mnist (random-pixel IDX)"


def cache_timing(tmp: str, workers: int) -> tuple[float, float, float, float]:
    """(generate + write s, load s, file MB, sequences) for the default ``rad`` task."""
    os.environ["SBRNN_CACHE"] = tmp
    spec = rad.RadSpec()
    start = time.perf_counter()
    _, entry = rad.generate(spec, workers=workers)
    built = time.perf_counter() - start
    start = time.perf_counter()
    rad.build("rad", spec)
    loaded = time.perf_counter() - start
    total = spec.n_train + spec.n_val + spec.n_test
    return built, loaded, entry.path.stat().st_size / 2**20, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=2048, help="sequences per batched measurement")
    parser.add_argument("--baseline-sequences", type=int, default=48, help="sequences for the per-image loop")
    parser.add_argument("--workers", type=int, default=rad.default_workers(), help="generator threads")
    parser.add_argument("--mnist-root", help="folder holding MNIST/raw (default: random-pixel IDX files)")
    args = parser.parse_args()
    console = Console()
    load_before = os.getloadavg()
    capacity_before = parallel_capacity(args.workers)
    title = f"RAD generation, {args.workers} worker threads, {rad.default_workers()} usable cores"
    table = Table(title=f"{title}, torch {torch.__version__}", title_justify="left")
    for col in (
        "source",
        "side",
        "pool",
        "batched seq/s",
        "vs target 3,000",
        "seq per CPU-s",
        "per-image loop seq/s",
        "speed-up",
    ):
        table.add_column(col, justify="left" if col == "source" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        root, mnist_name = mnist_root(args.mnist_root, tmp)
        pools = {
            "digits": sources.load_pools("digits")["train"],
            mnist_name: sources.load_pools("mnist", data_root=root)["train"],
        }
        for name, pool in pools.items():
            source = "mnist" if name.startswith("mnist") else name
            for side in (50, 28):
                spec = rad.RadSpec(source=source, side=side, n_train=args.sequences)
                fast, per_cpu = batched(pool, args.sequences, spec, args.workers)
                before = torch.get_num_threads()
                torch.set_num_threads(1)
                slow = baseline(pool, args.baseline_sequences, spec)
                torch.set_num_threads(before)
                table.add_row(
                    name,
                    str(side),
                    f"{len(pool):,}",
                    f"{fast:,.0f}",
                    f"{fast / TARGET:.2f}x",
                    f"{per_cpu:,.0f}",
                    f"{slow:,.0f}",
                    f"{fast / slow:.1f}x",
                )
                console.print(f"  {name} side {side}: {fast:,.0f} seq/s", highlight=False)
        built, loaded, size, total = cache_timing(tmp, args.workers)
    console.print(table)
    console.print(
        f"cache, default rad task ({total:,} sequences, side 50): generate + write {built:.1f} s, "
        f"load as a Task {loaded:.1f} s, file {size:.0f} MB (uint8 safetensors)",
        highlight=False,
    )
    capacity = parallel_capacity(args.workers)
    console.print(
        f"parallel capacity: {args.workers} processes of a single-threaded torch loop get "
        f"{capacity_before:.2f}x (before) and {capacity:.2f}x (after) the work of one done in the "
        "same time",
        highlight=False,
    )
    load_after = os.getloadavg()
    console.print(
        f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} "
        f"on {os.cpu_count()} CPUs",
        highlight=False,
    )


if __name__ == "__main__":
    main()
