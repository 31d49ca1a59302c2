"""The one training core: single runs and populations share one epoch loop, evaluation, loss and step.

A *trainee* holds ``K >= 1`` children being trained on one task with one batch order: a single
run is a trainee of one child (:class:`SingleTrainee`: its model and torch's fused Adam), a
population one of several (:class:`sbrnn.child.population.PopulationTrainee`: the stacked model
and one Adam state per child). :func:`fit` is the epoch loop both use: Adam over ``epochs``
passes of the training split in batches of ``batch_size`` sequences (a seeded permutation per
epoch, each batch a gather of that permutation's slice, cast to float32 on the device), the loss
of every child at once (:func:`member_losses`), and after each epoch the validation loss (and
accuracy for classification) of each child (:func:`evaluate`). Loss per task kind:

- ``cross_entropy``: on ``y`` after the last step, ``[B, n_y]`` logits against ``[B]`` labels;
  losses are means per sequence.
- ``mse``: per scalar at every step, ``[B, T, n_y]`` against ``[B, T, n_y]`` targets.

Each child keeps its own curves, best epoch (a copy of its best weights), early stopping
(``patience``: that many epochs without a new minimum of the validation loss; the epochs not
run stay missing from the curves) and divergence; a child that stops leaves the trainee while
the others go on. Test metrics are computed at the end of an ``ok`` run on the weights of the
best (minimum validation loss) epoch: that is the model the validation split selects, and the
one ``save`` writes.

A run never raises for its own failure: a non-finite training or validation loss stops it with
status ``diverged`` and the curves of the epochs completed before; a ``progress`` hook that asks
to stop (a tuner's pruner) ends it as ``pruned``; any other exception gives status ``failed``
with the error text (a sweep keeps every run).

A single run can checkpoint (:class:`sbrnn.child.checkpoint.Checkpointing`): after every few
epochs its model, Adam state, data-order generator state, epoch, record so far and best weights
so far go atomically into one file, and the same run started again resumes from there to the
curve an uninterrupted run gives (same seed, thread count and device). Populations do not
checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbrnn import __version__
from sbrnn.child.checkpoint import (
    Checkpointing,
    TrainingCheckpoint,
    load_checkpoint,
    save_checkpoint,
    save_model,
)
from sbrnn.child.config import RunConfig
from sbrnn.child.model import ChildModel, SparseBlockRNN, build_model, resolve
from sbrnn.child.weight_space import SparseBlockSpec, grid_blocks, hidden_proportion
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError
from sbrnn.records import TRAITS, RunRecord
from sbrnn.vocabulary import BLOCKS

Progress = Callable[[int, dict], "bool | None"]
"""``progress(epoch, metrics)`` after each completed epoch (1-based) of a single run; ``metrics``
holds ``train_loss``, ``val_loss`` and ``val_acc`` (None for regression). A true return value
stops the run there with status ``pruned`` (what a tuner's pruner asks)."""

_LOG = logging.getLogger(__name__)

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


def member_losses(
    output: torch.Tensor, target: torch.Tensor, loss_kind: str, reduction: str = "mean"
) -> torch.Tensor:
    """The losses ``[K]`` of ``K`` children's outputs ``[K, B, T, n_y]`` against one ``target``, in
    float32: the mean (or sum) per sequence (``cross_entropy``, after the last step) or per scalar
    (``mse``, every step)."""
    k, batch = output.shape[:2]
    if loss_kind == "cross_entropy":
        logits = output[:, :, -1].float().reshape(k * batch, -1)
        losses = F.cross_entropy(logits, target.repeat(k), reduction="none").view(k, batch)
    else:
        losses = F.mse_loss(output.float(), target.expand_as(output), reduction="none").reshape(k, -1)
    return losses.mean(1) if reduction == "mean" else losses.sum(1)


def targets(y: torch.Tensor, loss_kind: str) -> torch.Tensor:
    """Labels as int64 (``cross_entropy``) or targets as float32 (``mse``)."""
    return y.long() if loss_kind == "cross_entropy" else y.float()


Outputs = Callable[[torch.Tensor], torch.Tensor]
"""``outputs(x [B, T, n_x]) -> [K, B, T, n_y]``: the outputs of ``K`` children."""


@torch.no_grad()
def evaluate(
    outputs: Outputs,
    split: Split,
    loss_kind: str,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    batch_size: int = EVAL_BATCH,
) -> tuple[list[float], list[float] | None]:
    """Per-child ``(losses, accuracies)`` on ``split``; accuracies are None for ``mse`` tasks.

    A loss is the mean per sequence (``cross_entropy``) or per scalar (``mse``), as in training.
    """
    device = torch.device(device)
    total: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    n = len(split)
    for start in range(0, n, batch_size):
        x = split.x[start : start + batch_size].to(device).float()
        y = targets(split.y[start : start + batch_size].to(device), loss_kind)
        with autocast(device, precision):
            output = outputs(x)
        losses = member_losses(output, y, loss_kind, reduction="sum").double()
        total = losses if total is None else total + losses
        if loss_kind == "cross_entropy":
            right = (output[:, :, -1].argmax(dim=2) == y).sum(dim=1)
            correct = right if correct is None else correct + right
    assert total is not None, "evaluate needs a split of at least one sequence"
    if loss_kind == "cross_entropy":
        assert correct is not None  # counted with every batch of a classification split
        return (total / n).tolist(), (correct.double() / n).tolist()
    return (total / split.y.numel()).tolist(), None


def evaluate_split(
    model: nn.Module,
    split: Split,
    loss_kind: str,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    batch_size: int = EVAL_BATCH,
) -> tuple[float, float | None]:
    """``(loss, accuracy)`` of one ``model`` on ``split`` (:func:`evaluate` of one child)."""
    was_training = model.training
    model.eval()
    losses, accs = evaluate(lambda x: model(x).unsqueeze(0), split, loss_kind, device, precision, batch_size)
    model.train(was_training)
    return losses[0], None if accs is None else accs[0]


def _data_generator(seed: int) -> torch.Generator:
    """The data-order stream, independent of the model's (which uses ``seed`` directly)."""
    derived = np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(derived))


def _blank_record(config: RunConfig) -> RunRecord:
    return RunRecord(
        run_id=config.run_id(),
        task=config.task,
        n_x=0,
        n_y=0,
        steps=0,
        loss_kind="",
        arch=config.arch,
        h=0,
        lr=config.lr,
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
        budget=config.budget,
        activation=config.activation,
        precision=config.precision,
        sbrnn_version=__version__,
        torch_version=torch.__version__,
        task_options=json.dumps(config.task_options, sort_keys=True),
        threads=torch.get_num_threads(),
    )


def describe_task(record: RunRecord, task: Task) -> None:
    """Fill the record's task fields: dims, loss kind, family and traits."""
    record.n_x, record.n_y, record.steps, record.loss_kind = task.n_x, task.n_y, task.steps, task.loss
    record.task_family = get_info(task.name).family
    for name in TRAITS:
        setattr(record, f"trait_{name}", task.traits.get(name))


def _describe_model(
    record: RunRecord, model: ChildModel, spec: SparseBlockSpec | None, device: torch.device
) -> None:
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


class Trainee(Protocol):
    """``K`` children trained together (see the module doc); slot ``i`` is the ``i``-th child still in."""

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, n_x] -> [K, B, T, n_y]``."""

    def train(self, mode: bool = True) -> object: ...

    def zero_grad(self) -> None: ...

    def step(self) -> None:
        """One Adam update of every child (gradients of the summed losses)."""

    def member_state(self, slot: int) -> dict[str, torch.Tensor]:
        """A copy of child ``slot``'s weights as its own model's state dict."""

    def keep(self, slots: Sequence[int]) -> None:
        """Keep children ``slots`` (in that order) and drop the others."""


class SingleTrainee:
    """One model and torch's fused Adam (``torch.optim.Adam(..., fused=True)``): a trainee of one."""

    def __init__(self, model: nn.Module, lr: float) -> None:
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)  # one kernel per step

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).unsqueeze(0)

    def train(self, mode: bool = True) -> nn.Module:
        return self.model.train(mode)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()

    def member_state(self, slot: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def keep(self, slots: Sequence[int]) -> None:
        """A single run only ever keeps itself."""


@dataclass
class Member:
    """One child of a trainee: its config, its record (filled in place), its best weights so far."""

    config: RunConfig
    record: RunRecord
    best_state: dict[str, torch.Tensor] | None = None
    epochs_run: int = 0


def fit(
    trainee: Trainee,
    members: Sequence[Member],
    task: Task,
    device: torch.device,
    progress: Progress | None = None,
    *,
    generator: torch.Generator | None = None,
    first_epoch: int = 1,
    after_epoch: Callable[[int], None] | None = None,
) -> None:
    """The epoch loop (see the module doc): every member's record gets its curves, best epoch and
    status in place. The members share the task, seed (data order), batch size and precision of
    the first; ``progress`` is called for a trainee of one.

    A resumed run passes the data-order ``generator`` (default: :func:`_data_generator` of the
    seed) in the state it had after epoch ``first_epoch - 1``, the trainee and members restored to
    that epoch; ``after_epoch(epoch)`` is called after each epoch that some member trains on from
    (where a checkpoint is written)."""
    first = members[0].config
    if generator is None:
        generator = _data_generator(first.seed)
    train_x = task.train.x.to(device)
    train_y = targets(task.train.y.to(device), task.loss)
    n = len(task.train)
    active = list(members)
    for epoch in range(first_epoch, max(m.config.epochs for m in members) + 1):
        trainee.train()
        order = torch.randperm(n, generator=generator).to(device)
        totals = torch.zeros(len(active), device=device, dtype=torch.float64)
        for start in range(0, n, first.batch_size):
            index = order[start : start + first.batch_size]
            x, y = train_x.index_select(0, index).float(), train_y.index_select(0, index)
            with autocast(device, first.precision):
                output = trainee.outputs(x)
            losses = member_losses(output, y, task.loss)
            trainee.zero_grad()
            losses.sum().backward()
            trainee.step()
            totals += losses.detach().double() * index.numel()
        train_losses = (totals / n).tolist()
        trainee.train(False)
        val_losses, val_accs = evaluate(trainee.outputs, task.val, task.loss, device, first.precision)
        staying = []
        for slot, member in enumerate(active):
            val_acc = None if val_accs is None else val_accs[slot]
            if _end_epoch(
                member,
                trainee,
                slot,
                epoch,
                train_losses[slot],
                val_losses[slot],
                val_acc,
                progress if len(members) == 1 else None,
            ):
                staying.append(slot)
        if not staying:
            return
        if len(staying) < len(active):
            trainee.keep(staying)
            active = [active[s] for s in staying]
        if after_epoch is not None:
            after_epoch(epoch)


def _end_epoch(
    member: Member,
    trainee: Trainee,
    slot: int,
    epoch: int,
    train_loss: float,
    val_loss: float,
    val_acc: float | None,
    progress: Progress | None,
) -> bool:
    """Record one member's epoch; True if it trains on."""
    member.epochs_run = epoch
    outcome = record_epoch(member.record, epoch, train_loss, val_loss, val_acc)
    if outcome == "diverged":
        return False
    if outcome == "best":
        member.best_state = trainee.member_state(slot)
    if progress is not None and progress(
        epoch, {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}
    ):
        member.record.status = "pruned"
        return False
    return not patience_spent(member.config, member.record, epoch) and epoch < member.config.epochs


def test_member(member: Member, task: Task, device: torch.device) -> nn.Module | None:
    """Fill an ``ok`` or ``pruned`` member's test metrics from its best epoch's weights, on a model
    built afresh for its config; returns that model (None when the member has no best epoch)."""
    if member.record.status not in ("ok", "pruned") or member.best_state is None:
        return None
    model, _ = build_model(member.config, task.n_x, task.n_y)
    model.load_state_dict(member.best_state)
    model.to(device)
    member.record.test_loss, member.record.test_acc = evaluate_split(
        model, task.test, task.loss, device, member.config.precision
    )
    return model


def start_run(member: Member, task: Task, device: torch.device) -> ChildModel:
    """Fill ``member``'s record with the task and model fields and return its model (built from
    ``config.seed``, moved to ``device``)."""
    config, record = member.config, member.record
    if task.name != config.task:
        raise SbrnnError(f"task {task.name!r} was given for a config of task {config.task!r}")
    record.device = describe_device(device)
    describe_task(record, task)
    model, spec = build_model(config, task.n_x, task.n_y)
    _describe_model(record, model, spec, device)
    return model.to(device)


def failure_text(exc: BaseException) -> str:
    """An exception as the one line a ``failed`` record holds."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def train_run(
    config: RunConfig,
    task: Task | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    save: str | os.PathLike | None = None,
    checkpoint: Checkpointing | None = None,
) -> RunRecord:
    """Train one child as ``config`` says and return its record (never raises for the run's failure).

    Args:
        config: the run; ``config.seed`` draws the masks and init and orders the data.
        task: the task to train on; None builds ``config.task`` from the registry with
            ``config.task_options`` and ``config.seed``. Its name must be ``config.task``.
        device: ``cpu``, ``cuda`` or ``cuda:N``; None = CUDA when available, else CPU.
        threads: torch intra-op threads (``torch.set_num_threads``, process-wide); None = leave.
        progress: called as ``progress(epoch, metrics)`` after each epoch; a true return prunes.
        save: a directory to write the best-epoch model into (:mod:`sbrnn.child.checkpoint`)
            when the run ends ``ok``. An ``OSError`` writing it (a full disk) is raised, not
            recorded: the run went well, its result could not be kept (a checkpoint stays).
        checkpoint: write resumable checkpoints as it says, and resume from the run's checkpoint
            when one is there (see the module doc); ``progress`` then hears of the epochs run
            after it only.
    """
    started = time.perf_counter()
    member = Member(config, _blank_record(config))
    earlier = 0.0  # wall seconds of the sessions before a resume
    unsaved: OSError | None = None  # the model could not be written to ``save``
    try:
        torch_device = resolve_device(device)
        if threads is not None:
            if threads < 1:
                raise SbrnnError(f"threads = {threads} is out of range; allowed: integers >= 1")
            torch.set_num_threads(threads)
            member.record.threads = threads
        if task is None:
            task = build_task(config.task, seed=config.seed, **config.task_options)
        model = start_run(member, task, torch_device)
        trainee = SingleTrainee(model, config.lr)
        if checkpoint is None:
            fit(trainee, [member], task, torch_device, progress)
        else:
            generator, first_epoch = _data_generator(config.seed), 1
            path = checkpoint.path(member.record.run_id)
            if path.exists():
                state = load_checkpoint(path, member.record.run_id)
                earlier = _resume(state, member, trainee, generator, path)
                first_epoch = state.epoch + 1
            fit(
                trainee,
                [member],
                task,
                torch_device,
                progress,
                generator=generator,
                first_epoch=first_epoch,
                after_epoch=_checkpointer(checkpoint, path, member, trainee, generator, started, earlier),
            )
        best = test_member(member, task, torch_device)
        if best is not None and save is not None and member.record.status == "ok":
            keys = ("min_val_loss", "best_epoch", "test_loss", "test_acc")
            metrics = {k: getattr(member.record, k) for k in keys}
            try:
                save_model(save, best, resolve(config, task.n_x, task.n_y)[0], config, task, metrics)
            except OSError as exc:  # the run is fine; where its model goes is not
                unsaved = exc
        if checkpoint is not None and not checkpoint.keep and unsaved is None:
            checkpoint.remove(member.record.run_id)
    except Exception as exc:  # noqa: BLE001 - a run's own failure becomes its record, by design
        member.record.status = "failed"
        member.record.error = failure_text(exc)
    member.record.wall_seconds = earlier + time.perf_counter() - started
    if unsaved is not None:
        raise unsaved
    return member.record


RESUMED_FIELDS = ("train_loss", "val_loss", "val_acc", "min_val_loss", "best_epoch")
"""What a checkpoint gives back of the record so far (the rest describes the run, as built again)."""


def _compact_moments(model: nn.Module, saved: dict[int, dict[str, torch.Tensor]]) -> dict:
    """``saved`` Adam state (by parameter index) with moments of a dense x column, as checkpoints
    written before the x column was stored compactly hold them, cut to its kept entries."""
    if not isinstance(model, SparseBlockRNN):
        return saved
    index = next(i for i, p in enumerate(model.parameters()) if p is model.values_x)
    dense = tuple(model.mask_x.shape)
    moments = {
        key: model.kept_x(value) if value.dim() and tuple(value.shape) == dense else value
        for key, value in saved.get(index, {}).items()
    }
    return {**saved, index: moments} if index in saved else saved


def _resume(
    state: TrainingCheckpoint,
    member: Member,
    trainee: SingleTrainee,
    generator: torch.Generator,
    path: Path,
) -> float:
    """Put the run back where ``state`` left it; returns the wall seconds spent before."""
    record = member.record
    written = (("threads", state.threads, record.threads), ("device", state.device, record.device))
    for name, value, now in written:
        if value is not None and value != now:
            _LOG.warning(
                "run %s resumes with %s %s but its checkpoint %s was written with %s; the curve may "
                "differ from an uninterrupted run's",
                record.run_id,
                name,
                now,
                path,
                value,
            )
    trainee.model.load_state_dict(state.model, strict=True)
    optimizer = trainee.optimizer
    groups = optimizer.state_dict()["param_groups"]  # the config's own hyperparameters
    moments = _compact_moments(trainee.model, state.optimizer)
    optimizer.load_state_dict({"state": moments, "param_groups": groups})
    generator.set_state(state.generator)
    for name in RESUMED_FIELDS:
        setattr(record, name, state.record.get(name))
    record.val_acc = list(record.val_acc or [])
    member.best_state = state.best
    member.epochs_run = state.epoch
    _LOG.info("run %s resumes after epoch %d from %s", record.run_id, state.epoch, path)
    return state.wall_seconds


def _checkpointer(
    checkpoint: Checkpointing,
    path: Path,
    member: Member,
    trainee: SingleTrainee,
    generator: torch.Generator,
    started: float,
    earlier: float,
) -> Callable[[int], None]:
    """``after_epoch(epoch)`` for :func:`fit`: write the run's checkpoint every ``checkpoint.every``
    epochs. A checkpoint that cannot be written (a full disk) is a logged warning, once: the run
    goes on without checkpoints."""
    failed = False

    def after_epoch(epoch: int) -> None:
        nonlocal failed
        if failed or epoch % checkpoint.every:
            return
        record = member.record
        state = TrainingCheckpoint(
            run_id=record.run_id,
            epoch=epoch,
            record={name: getattr(record, name) for name in RESUMED_FIELDS},
            model=trainee.model.state_dict(),
            optimizer=trainee.optimizer.state_dict()["state"],
            generator=generator.get_state(),
            best=member.best_state,
            wall_seconds=earlier + time.perf_counter() - started,
            threads=record.threads,
            device=record.device,
        )
        try:
            save_checkpoint(path, state)
        except OSError as exc:
            failed = True
            _LOG.warning(
                "cannot write the checkpoint %s (%s); run %s goes on without checkpoints",
                path,
                exc.strerror or exc,
                record.run_id,
            )

    return after_epoch


def record_epoch(
    record: RunRecord, epoch: int, train_loss: float, val_loss: float, val_acc: float | None
) -> str:
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
    if config.patience is None:
        return False
    assert record.best_epoch is not None, "patience is checked after an epoch was recorded"
    return epoch - record.best_epoch >= config.patience
