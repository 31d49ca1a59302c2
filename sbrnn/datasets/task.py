"""The task value: tensors, dims and loss kind, as the child trainer consumes them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sbrnn.vocabulary import LOSS_KINDS


@dataclass(frozen=True)
class Split:
    """One split of a task.

    Attributes:
        x: inputs ``[N, T, n_x]``, float16 or float32 (the trainer casts batches to float32).
        y: ``[N]`` int64 class indices for ``cross_entropy``; ``[N, T, n_y]`` float for ``mse``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 3:
            raise ValueError(f"x must be [N, T, n_x], got shape {tuple(self.x.shape)}")
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} sequences but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class Task:
    """A sequence task with train, validation and test splits.

    Attributes:
        name: registry name (e.g. ``rad``), as written into records.
        n_x, n_y, steps: input size, output size and sequence length ``T``.
        loss: one of :data:`LOSS_KINDS`.
        meta: JSON-ready facts saved beside a trained model (normalisation, generation options).
        traits: cheap descriptors of the training split (:mod:`sbrnn.datasets.traits`), filled by
            :func:`sbrnn.datasets.registry.build_task`; empty when a builder is called directly.
    """

    name: str
    n_x: int
    n_y: int
    steps: int
    loss: str
    train: Split
    val: Split
    test: Split
    meta: dict = field(default_factory=dict)
    traits: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"loss {self.loss!r} is not one of {LOSS_KINDS}")
        for name in ("train", "val", "test"):
            x = getattr(self, name).x
            if tuple(x.shape[1:]) != (self.steps, self.n_x):
                raise ValueError(
                    f"{name}.x has shape {tuple(x.shape)}; expected [N, {self.steps}, {self.n_x}]"
                )

    @property
    def is_classification(self) -> bool:
        return self.loss == "cross_entropy"
