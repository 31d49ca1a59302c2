"""A saved child on a task's test split: which task, options and seed it is scored on, and how it does.

By default a saved child is scored on the task it was trained on, built with the training run's
options and seed (so the same test split it was tested on); another task is built with its
default options and seed 0 unless they are given.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from sbrnn.child.checkpoint import load_model
from sbrnn.child.train import evaluate_split, resolve_device
from sbrnn.datasets.progress import Progress
from sbrnn.datasets.summary import build_checked
from sbrnn.errors import SbrnnError


@dataclass(frozen=True)
class Evaluation:
    """A saved child's test loss and accuracy (None for regression) on one task's test split."""

    model: str
    run_id: str
    arch: str
    task: str
    task_options: dict
    seed: int
    split: str
    sequences: int
    loss_kind: str
    test_loss: float
    test_acc: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_model(
    model_dir: str | os.PathLike,
    task: str | None = None,
    task_options: dict | None = None,
    seed: int | None = None,
    device: str | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Score the child saved in ``model_dir`` on the test split of ``task``.

    ``task`` defaults to the task the child was trained on; ``task_options`` and ``seed`` default
    to the training run's for that task, and to none and 0 for another. ``progress`` is told of
    the task's generation, if it is generated. Raises :class:`SbrnnError` when there is no saved
    model, the task cannot be built, or its sizes are not the model's.
    """
    module, info = load_model(model_dir)
    saved = info["config"]
    name = task or info["task"]["name"]
    same_task = name == info["task"]["name"]
    if not task_options:
        task_options = saved["task_options"] if same_task else {}
    if seed is None:
        seed = saved["seed"] if same_task else 0
    torch_device = resolve_device(device)
    built = build_checked(name, seed, task_options, progress)
    dims = (info["task"]["n_x"], info["task"]["n_y"])
    if (built.n_x, built.n_y) != dims:
        raise SbrnnError(
            f"task {name!r} has {built.n_x} inputs and {built.n_y} outputs; the model in "
            f"{str(Path(model_dir))!r} takes {dims[0]} and gives {dims[1]}"
        )
    loss, acc = evaluate_split(module.to(torch_device), built.test, built.loss, torch_device)
    return Evaluation(
        model=str(model_dir),
        run_id=info["run_id"],
        arch=info["arch"],
        task=name,
        task_options=task_options,
        seed=seed,
        split="test",
        sequences=len(built.test),
        loss_kind=built.loss,
        test_loss=loss,
        test_acc=acc,
    )
