"""One child training run: a config and a task in, a filled :class:`RunRecord` out.

The loop: Adam (torch's fused implementation) over ``epochs`` passes of the training split in
batches of ``batch_size`` sequences (a seeded permutation per epoch, each batch a gather of that
permutation's slice, cast to float32 on the device); after each epoch the validation loss (and
accuracy for classification). Loss per task kind:

- ``cross_entropy``: on ``y`` after the last step, ``[B, n_y]`` logits against ``[B]`` labels;
  losses are means per sequence.
- ``mse``: per scalar at every step, ``[B, T, n_y]`` against ``[B, T, n_y]`` targets.

Early stopping (``patience``) ends the run after that many epochs without a new minimum of the
validation loss; the epochs not run stay missing from the curves. Test metrics are computed at
the end of an ``ok`` run on the weights of the best (minimum validation loss) epoch, kept as a
copy during training: that is the model the validation split selects, and the one ``save``
writes.

A run never raises for its own failure: a non-finite training or validation loss stops it with
status ``diverged`` and the curves of the epochs completed before; any other exception gives
status ``failed`` with the error text (a sweep keeps every run).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbrnn import __version__
from sbrnn.child.checkpoint import save_model
from sbrnn.child.config import RunConfig
from sbrnn.child.model import build_model
from sbrnn.child.spec import grid_blocks, hidden_proportion
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError
from sbrnn.records import TRAITS, RunRecord
from sbrnn.vocabulary import BLOCKS

Progress = Callable[[int, dict], None]
"""``progress(epoch, metrics)`` after each completed epoch (1-based); ``metrics`` holds
``train_loss``, ``val_loss`` and ``val_acc`` (None for regression)."""

EVAL_BATCH = 512
"""Sequences per forward pass when evaluating a split (no gradients, so larger than training)."""


def resolve_device(device: str | None) -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``) or, when None, CUDA if available else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise SbrnnError(f"device {device!r} is unknown; allowed: cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SbrnnError(f"device {device!r} is not available on this machine; allowed: cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise SbrnnError(f"device {device!r} is malformed; allowed: cpu, cuda, cuda:N") from None


def describe_device(device: torch.device) -> str:
    """``cpu`` or ``cuda (<GPU name>)``, as written into records."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``; nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_loss(output: torch.Tensor, target: torch.Tensor, loss_kind: str, reduction: str = "mean"):
    """The loss of ``output [B, T, n_y]`` against ``target`` for ``loss_kind``, in float32."""
    if loss_kind == "cross_entropy":
        return F.cross_entropy(output[:, -1].float(), target, reduction=reduction)
    return F.mse_loss(output.float(), target, reduction=reduction)


def _targets(y: torch.Tensor, loss_kind: str) -> torch.Tensor:
    return y.long() if loss_kind == "cross_entropy" else y.float()


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    split: Split,
    loss_kind: str,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    batch_size: int = EVAL_BATCH,
) -> tuple[float, float | None]:
    """``(loss, accuracy)`` of ``model`` on ``split``; accuracy is None for ``mse`` tasks.

    The loss is the mean per sequence (``cross_entropy``) or per scalar (``mse``), as in training.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = len(split)
    for start in range(0, n, batch_size):
        x = split.x[start:start + batch_size].to(device).float()
        y = _targets(split.y[start:start + batch_size].to(device), loss_kind)
        with autocast(device, precision):
            output = model(x)
        total += batch_loss(output, y, loss_kind, reduction="sum").double()
        if loss_kind == "cross_entropy":
            correct += (output[:, -1].argmax(dim=1) == y).sum()
    model.train(was_training)
    if loss_kind == "cross_entropy":
        return float(total) / n, float(correct) / n
    return float(total) / split.y.numel(), None


def _data_generator(seed: int) -> torch.Generator:
    """The data-order stream, independent of the model's (which uses ``seed`` directly)."""
    derived = np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(derived))


def _blank_record(config: RunConfig) -> RunRecord:
    return RunRecord(
        run_id=config.run_id(), task=config.task, n_x=0, n_y=0, steps=0, loss_kind="", arch=config.arch,
        h=0, lr=config.lr, batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
        budget=config.budget, activation=config.activation, precision=config.precision,
        sbrnn_version=__version__, torch_version=torch.__version__,
        task_options=json.dumps(config.task_options, sort_keys=True), threads=torch.get_num_threads(),
    )


def describe_task(record: RunRecord, task: Task) -> None:
    """Fill the record's task fields: dims, loss kind, family and traits."""
    record.n_x, record.n_y, record.steps, record.loss_kind = task.n_in, task.n_out, task.steps, task.loss
    record.task_family = get_info(task.name).family
    for name in TRAITS:
        setattr(record, f"trait_{name}", task.traits.get(name))


def _describe_model(record: RunRecord, model: nn.Module, spec, device: torch.device) -> None:
    """Fill the record's architecture fields from the built model (realised mask counts) and the
    products it runs on ``device``."""
    record.kernel_path = model.kernel_path(device, record.precision)
    record.trainable_total = int(model.trainable_total)
    record.bias_count = int(model.bias_count)
    if spec is None:
        record.h = model.hidden
        return
    record.h = spec.h
    counts = model.trainable_counts()
    for prefix, grid in (("d", spec.densities), ("mu", spec.means), ("sigma", spec.stds)):
        for block, value in grid_blocks(grid).items():
            setattr(record, f"{prefix}_{block}", value)
    for block in BLOCKS:
        setattr(record, f"trainable_{block}", counts[block])
    record.hidden_proportion = hidden_proportion(counts[b] for b in ("hx", "hh", "hy"))
    record.model_density = record.trainable_total / spec.dense_total


def train_run(
    config: RunConfig,
    task: Task | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    save: str | os.PathLike | None = None,
) -> RunRecord:
    """Train one child as ``config`` says and return its record (never raises for the run's failure).

    Args:
        config: the run; ``config.seed`` draws the masks and init and orders the data.
        task: the task to train on; None builds ``config.task`` from the registry with
            ``config.task_options`` and ``config.seed``. Its name must be ``config.task``.
        device: ``cpu``, ``cuda`` or ``cuda:N``; None = CUDA when available, else CPU.
        threads: torch intra-op threads (``torch.set_num_threads``, process-wide); None = leave.
        progress: called as ``progress(epoch, metrics)`` after each epoch.
        save: a directory to write the best-epoch model into (:mod:`sbrnn.child.checkpoint`)
            when the run ends ``ok``.
    """
    started = time.perf_counter()
    record = _blank_record(config)
    try:
        torch_device = resolve_device(device)
        record.device = describe_device(torch_device)
        if threads is not None:
            if threads < 1:
                raise SbrnnError(f"threads = {threads} is out of range; allowed: integers >= 1")
            torch.set_num_threads(threads)
            record.threads = threads
        if task is None:
            task = build_task(config.task, seed=config.seed, **config.task_options)
        elif task.name != config.task:
            raise SbrnnError(f"task {task.name!r} was given for a config of task {config.task!r}")
        describe_task(record, task)
        model, spec = build_model(config, task.n_in, task.n_out)
        _describe_model(record, model, spec, torch_device)
        model.to(torch_device)
        best_state = _fit(model, task, config, torch_device, record, progress)
        if record.status == "ok":
            model.load_state_dict(best_state)
            record.test_loss, record.test_acc = evaluate_split(
                model, task.test, task.loss, torch_device, config.precision
            )
            if save is not None:
                keys = ("min_val_loss", "best_epoch", "test_loss", "test_acc")
                metrics = {k: getattr(record, k) for k in keys}
                save_model(save, model, spec, config, task, metrics)
    except Exception as exc:  # noqa: BLE001 - a run's own failure becomes its record, by design
        record.status = "failed"
        record.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    record.wall_seconds = time.perf_counter() - started
    return record


def _fit(
    model: nn.Module, task: Task, config: RunConfig, device: torch.device, record: RunRecord,
    progress: Progress | None,
) -> dict[str, torch.Tensor] | None:
    """The epoch loop; appends to the record's curves in place. Returns the best epoch's state."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)  # one kernel per step
    generator = _data_generator(config.seed)
    train_x = task.train.x.to(device)
    train_y = _targets(task.train.y.to(device), task.loss)
    n = len(task.train)
    best_state = None
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for start in range(0, n, config.batch_size):
            index = order[start:start + config.batch_size]
            x, y = train_x.index_select(0, index).float(), train_y.index_select(0, index)
            with autocast(device, config.precision):
                output = model(x)
            loss = batch_loss(output, y, task.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * index.numel()
        train_loss = float(total) / n
        val_loss, val_acc = evaluate_split(model, task.val, task.loss, device, config.precision)
        outcome = record_epoch(record, epoch, train_loss, val_loss, val_acc)
        if outcome == "diverged":
            return best_state
        if outcome == "best":
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(epoch, {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc})
        if patience_spent(config, record, epoch):
            break
    return best_state


def record_epoch(record: RunRecord, epoch: int, train_loss: float, val_loss: float,
                 val_acc: float | None) -> str:
    """Add epoch ``epoch``'s figures to ``record``: ``"diverged"`` (a non-finite loss: status set,
    the curve kept as it was), ``"best"`` (a new minimum validation loss) or ``"worse"``."""
    if not (np.isfinite(train_loss) and np.isfinite(val_loss)):
        record.status = "diverged"
        record.error = f"non-finite loss in epoch {epoch} (train {train_loss}, validation {val_loss})"
        return "diverged"
    record.train_loss.append(train_loss)
    record.val_loss.append(val_loss)
    if val_acc is not None:
        record.val_acc.append(val_acc)
    if record.min_val_loss is None or val_loss < record.min_val_loss:
        record.min_val_loss, record.best_epoch = val_loss, epoch
        return "best"
    return "worse"


def patience_spent(config: RunConfig, record: RunRecord, epoch: int) -> bool:
    """Early stopping: ``config.patience`` epochs have passed since the best one."""
    return config.patience is not None and epoch - record.best_epoch >= config.patience
