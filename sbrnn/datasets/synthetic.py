"""Small synthetic sequence tasks: fast, exact by construction, for tests and smoke runs.

``toy-anomaly`` (cross_entropy): ``T`` noisy copies of a random prototype vector, one of them
shifted along a second random direction; the label is the shifted step's index.
``toy-regression`` (mse): ``y_t = [x_t[0] * x_{t-1}[1], running mean of x[2] up to t]``.
"""

from __future__ import annotations

import torch

from sbrnn.datasets.task import Split, Task


def toy_anomaly(
    seed: int = 0,
    n_x: int = 8,
    steps: int = 6,
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 128,
) -> Task:
    """``[N, steps, n_x]`` sequences, label in ``[0, steps)``; ``n_y = steps``."""
    g = torch.Generator().manual_seed(seed)
    splits = []
    for n in (n_train, n_val, n_test):
        proto = torch.randn(n, 1, n_x, generator=g)
        shift = torch.randn(n, 1, n_x, generator=g)
        x = proto + 0.3 * torch.randn(n, steps, n_x, generator=g)
        label = torch.randint(0, steps, (n,), generator=g)
        x[torch.arange(n), label] += 2.0 * shift[:, 0]
        splits.append(Split(x, label))
    return Task(
        "toy-anomaly",
        n_x,
        steps,
        steps,
        "cross_entropy",
        splits[0],
        splits[1],
        splits[2],
        meta={"seed": seed},
    )


def toy_regression(
    seed: int = 0, steps: int = 8, n_train: int = 512, n_val: int = 128, n_test: int = 128
) -> Task:
    """``[N, steps, 3]`` inputs, ``[N, steps, 2]`` targets."""
    g = torch.Generator().manual_seed(seed)
    splits = []
    for n in (n_train, n_val, n_test):
        x = torch.randn(n, steps, 3, generator=g)
        prev = torch.cat([torch.zeros(n, 1), x[:, :-1, 1]], dim=1)
        counts = torch.arange(1, steps + 1, dtype=x.dtype)
        y = torch.stack([x[:, :, 0] * prev, x[:, :, 2].cumsum(1) / counts], dim=-1)
        splits.append(Split(x, y))
    return Task("toy-regression", 3, 2, steps, "mse", splits[0], splits[1], splits[2], meta={"seed": seed})
