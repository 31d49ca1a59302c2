"""Sequential digits: read an 8x8 digit one row per step and name it after the last row.

scikit-learn's bundled 1,797 digits (values 0-16), ``x`` ``[N, 8, 8]`` (step = image row, input =
its 8 pixels), ``y`` the digit (10 classes, ``cross_entropy``). Pixels are scaled to [0, 1] then
standardised with the train split's mean and standard deviation (one scalar each). The split is
the same stratified 70 / 15 / 15 split, drawn from ``seed``, that RAD's ``digits`` source uses.
"""

from __future__ import annotations

import torch

from sbrnn.datasets import sources
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError


def build_seq_digits(seed: int = 0) -> Task:
    """``seq-digits``: 8 inputs, 8 steps, 10 classes; about 1,258 / 270 / 269 sequences."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SbrnnError(f"seed {seed!r} is not allowed; allowed: an integer >= 0")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32) / 16.0  # [1797, 8, 8]
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    parts = sources.stratified_split(labels, sources.DIGITS_FRACTIONS, sources.split_generator(seed))
    mean = float(images[parts[0]].mean())
    std = float(images[parts[0]].std())
    splits = [Split((images[i] - mean) / std, labels[i]) for i in parts]
    meta = {
        "generator": "seq-digits",
        "seed": seed,
        "normalisation": {"scale": 1 / 16, "mean": mean, "std": std},
        "layout": "one 8-pixel image row per step, top to bottom; label read after the last row",
    }
    return Task("seq-digits", 8, 10, 8, "cross_entropy", *splits, meta=meta)
