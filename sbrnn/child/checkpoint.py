"""A child on disk: a trained one (safetensors weights and masks plus a JSON description), and the
resumable checkpoint of a run in progress; no pickle.

A model directory holds:

- ``model.safetensors``: the module's state dict (weights, biases and, for block archs, the
  ``mask_x`` / ``mask_s`` buffers);
- ``config.json``: the run's :class:`RunConfig` (``config``), the resolved ``arch``, ``hidden``,
  ``activation`` and block ``spec`` (null for the LSTM), the task's dims, loss kind and ``meta``
  (normalisation, generation options), and the run's id and key metrics.

A training checkpoint (:class:`TrainingCheckpoint`, what :class:`Checkpointing` asks
:func:`sbrnn.child.train.train_run` to write every few epochs of a single run) is one safetensors
file, ``checkpoint-<run_id>.safetensors``, written atomically (:func:`sbrnn.io.atomic_write`: a
kill leaves the previous checkpoint or the new one, never half of one). Its tensors are the
model's state dict (``model.*``), the Adam state (``optimizer.<param>.<key>``: ``step``,
``exp_avg``, ``exp_avg_sq``), the data-order generator's state (``generator``) and the best
epoch's weights so far (``best.*``); its metadata (``sbrnn_checkpoint``, JSON) the run id, the
epoch it ends, the record so far (curves, best epoch), the wall time so far, and the thread count
and device it was written with. Resuming from it gives the curve of an uninterrupted run for the
same seed, thread count and device. Populations (sweeps' ``population > 1``) do not checkpoint:
a sweep resumes run by run.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sbrnn import __version__
from sbrnn.child.config import RunConfig
from sbrnn.child.model import ChildModel, LSTMBaseline, SparseBlockRNN
from sbrnn.child.weight_space import SparseBlockSpec
from sbrnn.datasets.task import Task
from sbrnn.errors import SbrnnError
from sbrnn.io import atomic_write, atomic_write_text

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 2
"""2 names the task's sizes ``n_x``/``n_y`` (1 said ``n_in``/``n_out``; read as well)."""


def save_model(
    directory: str | os.PathLike,
    model: nn.Module,
    spec: SparseBlockSpec | None,
    config: RunConfig,
    task: Task,
    metrics: dict | None = None,
) -> Path:
    """Write ``model`` (on any device) and its description into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    info = {
        "format_version": FORMAT_VERSION,
        "run_id": config.run_id(),
        "config": config.to_dict(),
        "arch": config.arch,
        "activation": config.activation,
        "hidden": spec.h if spec is not None else model.hidden,
        "spec": None
        if spec is None
        else {
            "n_x": spec.n_x,
            "n_y": spec.n_y,
            "h": spec.h,
            "densities": [list(r) for r in spec.densities],
            "means": [list(r) for r in spec.means],
            "stds": [list(r) for r in spec.stds],
        },
        "task": {
            "name": task.name,
            "n_x": task.n_x,
            "n_y": task.n_y,
            "steps": task.steps,
            "loss": task.loss,
            "meta": task.meta,
        },
        "metrics": metrics or {},
        "sbrnn_version": __version__,
        "torch_version": torch.__version__,
    }
    text = json.dumps(info, indent=2, default=str)  # serialise first: a bad meta leaves no half save
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_text(directory / CONFIG, text + "\n")
    return directory


def load_model(directory: str | os.PathLike) -> tuple[ChildModel, dict]:
    """The module saved in ``directory`` (CPU, eval mode) and its ``config.json`` as a dict."""
    directory = Path(directory)
    if not (directory / WEIGHTS).is_file() or not (directory / CONFIG).is_file():
        raise SbrnnError(f"no saved model in {str(directory)!r}; expected {WEIGHTS} and {CONFIG} there")
    try:
        info = json.loads((directory / CONFIG).read_text())
        tensors = load_file(str(directory / WEIGHTS))
    except Exception as exc:  # noqa: BLE001 - unreadable, not JSON, or foreign bytes (safetensors' own error)
        raise SbrnnError(
            f"cannot read the model in {str(directory)!r} ({' '.join(str(exc).split())}); allowed: a "
            "directory a trained child was saved into"
        ) from None
    if info.get("format_version") not in (1, FORMAT_VERSION):
        raise SbrnnError(
            f"model in {str(directory)!r} has format {info.get('format_version')!r}; "
            f"allowed: 1 or {FORMAT_VERSION}"
        )
    task = info["task"]
    for old, new in (("n_in", "n_x"), ("n_out", "n_y")):  # format 1
        if old in task:
            task[new] = task.pop(old)
    if info["spec"] is None:
        model: ChildModel = LSTMBaseline(task["n_x"], task["n_y"], info["hidden"])
    else:
        model = SparseBlockRNN(SparseBlockSpec(**info["spec"]), activation=info["activation"])
    model.load_state_dict(tensors, strict=True)
    return model.eval(), info


# Training checkpoints --------------------------------------------------------------------------

CHECKPOINT_FORMAT = 1
_META_KEY = "sbrnn_checkpoint"


def checkpoint_file(directory: str | os.PathLike, run_id: str) -> Path:
    """Where the checkpoint of run ``run_id`` lives in ``directory``."""
    return Path(directory) / f"checkpoint-{run_id}.safetensors"


def default_checkpoint_dir(run_id: str, save: str | os.PathLike | None = None) -> Path:
    """The checkpoint directory of a run not told one: beside its saved model (``<save>.checkpoint``)
    when it saves one, else ``$SBRNN_CACHE/checkpoints/<run_id>``."""
    if save is not None:
        save = Path(save)
        return save.with_name(f"{save.name}.checkpoint")
    from sbrnn.datasets.cache import cache_root

    return cache_root() / "checkpoints" / run_id


@dataclass(frozen=True)
class Checkpointing:
    """Resumable checkpoints of a single run: after every ``every``-th epoch that the run goes on
    from, into ``directory`` (:func:`checkpoint_file`). A run that finds its checkpoint there
    resumes from it. The checkpoint is removed when the run ends ``ok``, ``diverged`` or
    ``pruned`` unless ``keep``; a ``failed`` run, or one interrupted, keeps it for the next try.
    ``own_folder`` says ``directory`` is this run's alone (:func:`default_checkpoint_dir`): it goes
    with the checkpoint when left empty."""

    directory: Path
    every: int = 1
    keep: bool = False
    own_folder: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise SbrnnError(f"checkpoint interval = {self.every!r} is out of range; allowed: integers >= 1")
        object.__setattr__(self, "directory", Path(self.directory))

    def path(self, run_id: str) -> Path:
        return checkpoint_file(self.directory, run_id)

    def remove(self, run_id: str) -> None:
        """Remove run ``run_id``'s checkpoint (and the folder, when it is the run's own and empty)."""
        self.path(run_id).unlink(missing_ok=True)
        if self.own_folder:
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only succeeds on an empty folder


@dataclass
class TrainingCheckpoint:
    """A run's state after epoch ``epoch`` (see the module doc); tensors on the CPU."""

    run_id: str
    epoch: int
    record: dict
    model: dict[str, torch.Tensor]
    optimizer: dict[int, dict[str, torch.Tensor]]
    generator: torch.Tensor
    best: dict[str, torch.Tensor] | None
    wall_seconds: float = 0.0
    threads: int | None = None
    device: str | None = None


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu").contiguous().clone()


def save_checkpoint(path: str | os.PathLike, checkpoint: TrainingCheckpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (one safetensors file)."""
    tensors = {f"model.{k}": _cpu(v) for k, v in checkpoint.model.items()}
    for index, state in checkpoint.optimizer.items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {key} of parameter {index} is not a tensor")
            tensors[f"optimizer.{index}.{key}"] = _cpu(value)
    tensors["generator"] = _cpu(checkpoint.generator)
    for k, v in (checkpoint.best or {}).items():
        tensors[f"best.{k}"] = _cpu(v)
    info = {
        "format": CHECKPOINT_FORMAT,
        "run_id": checkpoint.run_id,
        "epoch": checkpoint.epoch,
        "record": checkpoint.record,
        "has_best": checkpoint.best is not None,
        "wall_seconds": checkpoint.wall_seconds,
        "threads": checkpoint.threads,
        "device": checkpoint.device,
        "sbrnn_version": __version__,
        "torch_version": torch.__version__,
    }
    metadata = {_META_KEY: json.dumps(info)}  # serialise first: a bad record leaves the old file
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(path: str | os.PathLike, run_id: str) -> TrainingCheckpoint:
    """The checkpoint of run ``run_id`` in the file ``path``; an :class:`SbrnnError` when it cannot
    be read or is another run's."""
    path = Path(path)
    remove = "; allowed: a checkpoint this run wrote (remove the file to train from the start)"
    try:
        with safe_open(str(path), framework="pt") as handle:
            info = json.loads((handle.metadata() or {})[_META_KEY])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - missing key, bad JSON, foreign bytes (safetensors' own errors)
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise SbrnnError(f"checkpoint {str(path)!r} cannot be read ({why}){remove}") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise SbrnnError(f"checkpoint {str(path)!r} has format {found!r}; allowed: {CHECKPOINT_FORMAT}")
    if info.get("run_id") != run_id:
        raise SbrnnError(f"checkpoint {str(path)!r} is of run {info.get('run_id')!r}, not {run_id!r}{remove}")
    model: dict[str, torch.Tensor] = {}
    best: dict[str, torch.Tensor] = {}
    optimizer: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        kind, _, name = key.partition(".")
        if kind == "model":
            model[name] = tensor
        elif kind == "best":
            best[name] = tensor
        elif kind == "optimizer":
            index, _, field_name = name.partition(".")
            optimizer.setdefault(int(index), {})[field_name] = tensor
    if "generator" not in tensors or not model:
        raise SbrnnError(f"checkpoint {str(path)!r} lacks the model or the data order{remove}")
    return TrainingCheckpoint(
        run_id=run_id,
        epoch=int(info["epoch"]),
        record=info["record"],
        model=model,
        optimizer=optimizer,
        generator=tensors["generator"],
        best=best if info.get("has_best") else None,
        wall_seconds=float(info.get("wall_seconds") or 0.0),
        threads=info.get("threads"),
        device=info.get("device"),
    )
