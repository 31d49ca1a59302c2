"""Digit images that RAD and the sequential-digits task draw from, split into train/val/test pools.

Two sources, both ``uint8`` images with values ``0..255``:

* ``digits`` (embedded, always offline): scikit-learn's bundled 1,797 8x8 digits (values 0-16),
  scaled to [0, 1], upsampled bilinearly to 20x20 and padded by 4 pixels to 28x28, which is how
  MNIST centres its digits in a 20x20 box. Stratified 70 / 15 / 15 split into train, val and test.
* ``mnist``: MNIST's four IDX files read from ``ROOT/MNIST/raw/`` (the layout torchvision's MNIST
  uses; never downloaded unless asked).
  Train is MNIST's 60,000 training images; val and test are a stratified half each of its 10,000
  test images.

The split is drawn from ``seed`` so every pool is disjoint from the other two by construction.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sbrnn.datasets.cache import cache_root
from sbrnn.errors import SbrnnError

SOURCES = ("digits", "mnist")
SPLITS = ("train", "val", "test")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Where ``download=true`` fetches MNIST's gzipped IDX files, tried in order, and their MD5 sums.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
DIGITS_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Pool:
    """The source images one split may use.

    Attributes:
        images: ``[P, 28, 28]`` uint8, 0..255.
        labels: ``[P]`` int64 digit classes 0..9.
        ids: ``[P]`` int64 identity of each image within the whole source (unique across splits).
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def default_data_root() -> Path:
    """``$SBRNN_DATA`` if set, else ``$SBRNN_CACHE/data`` (where ``MNIST/raw/`` is looked for)."""
    env = os.environ.get("SBRNN_DATA")
    return Path(env).expanduser() if env else cache_root() / "data"


def mnist_available(data_root: str | Path | None = None) -> bool:
    """Whether the four uncompressed MNIST IDX files are in ``ROOT/MNIST/raw/``."""
    raw = Path(data_root or default_data_root()).expanduser() / "MNIST" / "raw"
    return all((raw / name).is_file() for name in MNIST_FILES)


def split_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) + 7919)


def stratified_split(labels: torch.Tensor, fractions, g: torch.Generator) -> list[torch.Tensor]:
    """Indices ``[P_i]`` of each part: every class is shuffled by ``g`` and cut at ``fractions``."""
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in labels.unique(sorted=True).tolist():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        bounds = torch.tensor([0.0, *fractions]).cumsum(0) * len(idx)
        cuts = bounds.round().long().tolist()
        for i in range(len(fractions)):
            parts[i].append(idx[cuts[i] : cuts[i + 1]])
    return [torch.cat(p).sort().values for p in parts]


@functools.lru_cache(maxsize=1)
def upsampled_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as MNIST-like ``[1797, 28, 28]`` uint8 images and ``[1797]`` labels
    (made once per process; treat them as read-only)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)).squeeze(1)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


def _missing_mnist(root: Path) -> SbrnnError:
    return SbrnnError(
        f"MNIST not found: expected {', '.join(MNIST_FILES)} in {root / 'MNIST' / 'raw'}/ "
        "(set data_root=DIR, or download=true when online)"
    )


def read_idx(path: Path) -> torch.Tensor:
    """An uncompressed IDX file of unsigned bytes as a uint8 tensor of its dims (``[N, 28, 28]`` for
    MNIST's images, ``[N]`` for its labels). The format: magic ``00 00 08 D`` (``D`` dims), ``D``
    big-endian uint32 sizes, then the bytes in row-major order."""
    data = path.read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise SbrnnError(
            f"{path} is not an IDX file of unsigned bytes: magic {data[:4].hex()}, allowed: 000008NN"
        )
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(dims):
        raise SbrnnError(
            f"{path} holds {len(body)} bytes after its header; its dims {dims} need {math.prod(dims)}"
        )
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*dims)


def download_mnist(
    data_root: str | Path, mirrors: tuple[str, ...] = MNIST_MIRRORS, md5: dict[str, str] = MNIST_MD5
) -> Path:
    """Fetch each of MNIST's four files missing from ``ROOT/MNIST/raw/`` as ``NAME.gz`` from the first
    mirror that serves it with the expected MD5 sum, and write it there uncompressed; returns the folder.
    Files already there are kept."""
    raw = Path(data_root).expanduser() / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        if (raw / name).is_file():
            continue
        failures = []
        for mirror in mirrors:
            url = f"{mirror}{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    blob = response.read()
            except OSError as exc:
                failures.append(f"{url}: {' '.join(str(exc).split())}")
                continue
            digest = hashlib.md5(blob).hexdigest()
            if digest != md5[name]:
                failures.append(f"{url}: MD5 {digest}, expected {md5[name]}")
                continue
            part = raw / f"{name}.part"
            part.write_bytes(gzip.decompress(blob))
            part.replace(raw / name)
            break
        else:
            raise SbrnnError(f"MNIST could not be downloaded into {raw}: {'; '.join(failures)}")
    return raw


def mnist(data_root: str | Path | None = None, download: bool = False) -> tuple[torch.Tensor, ...]:
    """MNIST from its IDX files: ``(train_images [60000, 28, 28], train_labels [60000], test_images
    [10000, 28, 28], test_labels [10000])``, images uint8 0..255, labels int64."""
    root = Path(data_root or default_data_root()).expanduser()
    if download:
        download_mnist(root)
    elif not mnist_available(root):
        raise _missing_mnist(root)
    raw = root / "MNIST" / "raw"
    parts = [read_idx(raw / name) for name in MNIST_FILES]
    for images, labels, prefix in ((parts[0], parts[1], "train"), (parts[2], parts[3], "t10k")):
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise SbrnnError(
                f"MNIST's {prefix} files in {raw} disagree: images {list(images.shape)}, labels "
                f"{list(labels.shape)}; allowed: images [N, H, W] and labels [N]"
            )
    return parts[0], parts[1].long(), parts[2], parts[3].long()


def write_mnist_idx(
    root: str | Path, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]
) -> Path:
    """Write ``(images [N, 28, 28] uint8, labels [N])`` pairs as the four IDX files of
    ``ROOT/MNIST/raw/`` (the format :func:`mnist` and torchvision's MNIST read); returns that folder."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        n, h, w = images.shape
        header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, h, w))
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.to(torch.uint8).numpy().tobytes())
        header = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.to(torch.uint8).numpy().tobytes())
    return raw


def load_pools(
    source: str, seed: int = 0, data_root: str | Path | None = None, download: bool = False
) -> dict[str, Pool]:
    """The train, val and test pools of ``source``; disjoint, with ``seed`` choosing the split."""
    g = split_generator(seed)
    if source == "digits":
        images, labels = upsampled_digits()
        parts = stratified_split(labels, DIGITS_FRACTIONS, g)
        return {name: Pool(images[i], labels[i], i) for name, i in zip(SPLITS, parts)}
    if source == "mnist":
        tr_x, tr_y, te_x, te_y = mnist(data_root, download)
        val, test = stratified_split(te_y, (0.5, 0.5), g)
        n_train = tr_x.shape[0]
        return {
            "train": Pool(tr_x, tr_y, torch.arange(n_train)),
            "val": Pool(te_x[val], te_y[val], val + n_train),
            "test": Pool(te_x[test], te_y[test], test + n_train),
        }
    raise SbrnnError(f"unknown source {source!r}; allowed: {', '.join(SOURCES)}")
