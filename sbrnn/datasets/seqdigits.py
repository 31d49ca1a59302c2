"""Sequential digits: read an 8x8 digit a few pixels per step and name it after the last step.

scikit-learn's bundled 1,797 digits (values 0-16), label the digit (10 classes, ``cross_entropy``).
Fourteen readings of the same 64 pixels, ``x`` ``[N, T, n_x]`` with ``T * n_x = 64``:

- ``rows`` (``seq-digits``): one 8-pixel image row per step, top to bottom (8 in, 8 steps).
- ``columns`` (``column-digits``, held out of the zoo): one 8-pixel column per step, left to right,
  each top to bottom (8 in, 8 steps): seq-digits' shape, with the strokes met in another order.
- ``pixels`` (``pixel-digits``): one pixel per step in raster order (1 in, 64 steps): the classic
  sequential-MNIST idea at 8x8, where the class is spread over 64 steps of memory.
- ``permuted`` (``pixel-digits-permuted``): one pixel per step in a fixed random order drawn from
  ``permutation_seed`` (pMNIST): neighbouring pixels are no longer neighbouring steps, so the
  network must hold evidence across the whole sequence.
- ``patches`` (``patch-digits``): one 2x2 patch per step (its pixels in raster order), the 16
  patches in raster order (4 in, 16 steps).
- ``snake`` (``snake-digits``, held out of the zoo): one 8-pixel row per step, top to bottom, the
  even rows left to right and the odd rows right to left (8 in, 8 steps).
- ``halfrows`` (``halfrow-digits``, held out of the zoo): one 4-pixel half row per step in raster
  order (4 in, 16 steps): patch-digits' shape, two steps per image row.
- ``quadrants`` (``quadrant-digits``, held out of the zoo): one 4x4 quarter of the image per step
  (its pixels in raster order), the quarters in raster order (16 in, 4 steps).
- ``upward`` (``upward-digits``, held out of the zoo): one 8-pixel row per step, bottom to top,
  each left to right (8 in, 8 steps): seq-digits' rows in the reverse order.
- ``halfcolumns`` (``halfcolumn-digits``, held out of the zoo): one 4-pixel half column per step,
  the columns left to right, each top half then bottom half (4 in, 16 steps).
- ``leftward`` (``leftward-digits``, held out of the zoo): one 8-pixel column per step, right to
  left, each top to bottom (8 in, 8 steps): column-digits' columns in the reverse order.
- ``backpatches`` (``backpatch-digits``, held out of the zoo): one 2x2 patch per step, the patches
  in reverse raster order (4 in, 16 steps): patch-digits' patches from the last to the first.
- ``colsnake`` (``colsnake-digits``, held out of the zoo): one 8-pixel column per step, left to
  right, the even columns top to bottom and the odd ones bottom to top (8 in, 8 steps):
  snake-digits' path, the image turned a quarter.
- ``rowpairs`` (``rowpair-digits``, held out of the zoo): two image rows per step in raster order
  (16 in, 4 steps): quadrant-digits' shape, each step a band across the whole image.

Pixels are scaled to [0, 1] then standardised with the train split's mean and standard deviation
(one scalar each). The split is the same stratified 70 / 15 / 15 split, drawn from ``seed``, that
RAD's ``digits`` source uses: about 1,258 / 270 / 269 sequences. Cached under
``$SBRNN_CACHE/seq-digits``.
"""

from __future__ import annotations

import torch

from sbrnn.datasets import cache, sources
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError

READINGS = {
    "rows": "one 8-pixel image row per step, top to bottom",
    "columns": "one 8-pixel image column per step, left to right",
    "pixels": "one pixel per step in raster order",
    "permuted": "one pixel per step in a fixed order drawn from permutation_seed",
    "patches": "one 2x2 patch per step (pixels in raster order), patches in raster order",
    "quadrants": "one 4x4 quarter per step (pixels in raster order), quarters in raster order",
    "snake": "one 8-pixel image row per step, top to bottom, every other row right to left",
    "halfrows": "one 4-pixel half row per step in raster order",
    "upward": "one 8-pixel image row per step, bottom to top",
    "halfcolumns": "one 4-pixel half column per step, columns left to right, each top half first",
    "leftward": "one 8-pixel image column per step, right to left",
    "backpatches": "one 2x2 patch per step (pixels in raster order), patches in reverse raster order",
    "colsnake": "one 8-pixel image column per step, left to right, every other column bottom to top",
    "rowpairs": "two 8-pixel image rows per step, top to bottom",
}
WIDTHS = {
    **dict.fromkeys(("rows", "columns", "snake", "upward", "leftward", "colsnake"), 8),
    **dict.fromkeys(("patches", "halfrows", "halfcolumns", "backpatches"), 4),
    **dict.fromkeys(("quadrants", "rowpairs"), 16),
}
"""Pixels per step of each reading (``n_x``); the others (``pixels``, ``permuted``) read one."""
REVERSED = {"upward": "rows", "leftward": "columns", "backpatches": "patches"}
"""Readings that feed another reading's steps last to first, each step's pixels in its order."""
SPLITS = ("train", "val", "test")


def _check_seed(name: str, seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SbrnnError(f"{name} {seed!r} is not allowed; allowed: an integer >= 0")
    return seed


def pixel_order(reading: str, permutation_seed: int = 0) -> torch.Tensor:
    """``[64]`` raster indices of the pixels in the order ``reading`` feeds them."""
    if reading == "permuted":
        return torch.randperm(64, generator=torch.Generator().manual_seed(permutation_seed + 104729))
    if reading in REVERSED:
        return pixel_order(REVERSED[reading]).view(-1, WIDTHS[reading]).flip(0).reshape(64)
    if reading == "patches":
        return torch.arange(64).view(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(64)
    if reading == "quadrants":
        return torch.arange(64).view(2, 4, 2, 4).permute(0, 2, 1, 3).reshape(64)
    if reading in ("columns", "halfcolumns"):
        return torch.arange(64).view(8, 8).t().reshape(64)
    if reading in ("snake", "colsnake"):
        lines = torch.arange(64).view(8, 8)
        lines = (lines.t() if reading == "colsnake" else lines).clone()
        lines[1::2] = lines[1::2].flip(1)
        return lines.reshape(64)
    return torch.arange(64)


def _tensors(seed: int, reading: str, permutation_seed: int) -> dict[str, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).view(-1, 64) / 16.0  # [1797, 64]
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    parts = sources.stratified_split(labels, sources.DIGITS_FRACTIONS, sources.split_generator(seed))
    mean, std = images[parts[0]].mean(), images[parts[0]].std()
    n_x = WIDTHS.get(reading, 1)
    x = ((images - mean) / std)[:, pixel_order(reading, permutation_seed)].reshape(-1, 64 // n_x, n_x)
    out = {"mean": mean, "std": std}
    for split, i in zip(SPLITS, parts):
        out[f"{split}_x"], out[f"{split}_y"] = x[i].contiguous(), labels[i]
    return out


def build(name: str, reading: str, seed: int = 0, permutation_seed: int = 0) -> Task:
    """Task ``name`` reading the digits as ``reading`` (a key of :data:`READINGS`)."""
    _check_seed("seed", seed)
    _check_seed("permutation_seed", permutation_seed)
    params = {
        "reading": reading,
        "seed": seed,
        "permutation_seed": permutation_seed if reading == "permuted" else None,
    }
    tensors, entry = cache.load_or_build(
        "seq-digits", params, lambda: _tensors(seed, reading, permutation_seed)
    )
    splits = [Split(tensors[f"{s}_x"], tensors[f"{s}_y"]) for s in SPLITS]
    mean, std = float(tensors["mean"]), float(tensors["std"])
    meta = {
        "generator": "seq-digits",
        "seed": seed,
        "normalisation": {"scale": 1 / 16, "mean": mean, "std": std},
        "layout": f"{READINGS[reading]}; label read after the last step",
        "cache": {"key": entry.key, "path": str(entry.path), "hit": entry.hit},
    }
    if reading == "permuted":
        meta["permutation_seed"] = permutation_seed
    x = splits[0].x
    return Task(name, x.shape[2], 10, x.shape[1], "cross_entropy", splits[0], splits[1], splits[2], meta=meta)


def build_seq_digits(seed: int = 0) -> Task:
    """``seq-digits``: 8 inputs, 8 steps, 10 classes; about 1,258 / 270 / 269 sequences."""
    return build("seq-digits", "rows", seed)


def build_column_digits(seed: int = 0) -> Task:
    """``column-digits``: 8 inputs (an image column), 8 steps, 10 classes."""
    return build("column-digits", "columns", seed)


def build_quadrant_digits(seed: int = 0) -> Task:
    """``quadrant-digits``: 16 inputs (a 4x4 quarter of the image), 4 steps, 10 classes."""
    return build("quadrant-digits", "quadrants", seed)


def build_pixel_digits(seed: int = 0) -> Task:
    """``pixel-digits``: 1 input, 64 steps, 10 classes."""
    return build("pixel-digits", "pixels", seed)


def build_permuted_digits(seed: int = 0, permutation_seed: int = 0) -> Task:
    """``pixel-digits-permuted``: 1 input, 64 steps in the order of ``permutation_seed``, 10 classes."""
    return build("pixel-digits-permuted", "permuted", seed, permutation_seed)


def build_patch_digits(seed: int = 0) -> Task:
    """``patch-digits``: 4 inputs (a 2x2 patch), 16 steps, 10 classes."""
    return build("patch-digits", "patches", seed)


def build_snake_digits(seed: int = 0) -> Task:
    """``snake-digits``: 8 in, 8 steps, the rows read back and forth (held out of the zoo)."""
    return build("snake-digits", "snake", seed)


def build_halfrow_digits(seed: int = 0) -> Task:
    """``halfrow-digits``: 4 in, 16 steps, half rows in raster order (held out of the zoo)."""
    return build("halfrow-digits", "halfrows", seed)


def build_upward_digits(seed: int = 0) -> Task:
    """``upward-digits``: 8 in, 8 steps, the rows bottom to top (held out of the zoo)."""
    return build("upward-digits", "upward", seed)


def build_halfcolumn_digits(seed: int = 0) -> Task:
    """``halfcolumn-digits``: 4 in, 16 steps, half columns left to right (held out of the zoo)."""
    return build("halfcolumn-digits", "halfcolumns", seed)


def build_leftward_digits(seed: int = 0) -> Task:
    """``leftward-digits``: 8 in, 8 steps, the columns right to left (held out of the zoo)."""
    return build("leftward-digits", "leftward", seed)


def build_backpatch_digits(seed: int = 0) -> Task:
    """``backpatch-digits``: 4 in, 16 steps, 2x2 patches in reverse raster order (held out of the zoo)."""
    return build("backpatch-digits", "backpatches", seed)


def build_colsnake_digits(seed: int = 0) -> Task:
    """``colsnake-digits``: 8 in, 8 steps, the columns read down and up in turn (held out of the zoo)."""
    return build("colsnake-digits", "colsnake", seed)


def build_rowpair_digits(seed: int = 0) -> Task:
    """``rowpair-digits``: 16 in, 4 steps, two image rows per step (held out of the zoo)."""
    return build("rowpair-digits", "rowpairs", seed)
