"""A trained child on disk: safetensors weights and masks plus a JSON description; no pickle.

A model directory holds:

- ``model.safetensors``: the module's state dict (weights, biases and, for block archs, the
  ``mask_x`` / ``mask_s`` buffers);
- ``config.json``: the run's :class:`RunConfig` (``config``), the resolved ``arch``, ``hidden``,
  ``activation`` and block ``spec`` (null for the LSTM), the task's dims, loss kind and ``meta``
  (normalisation, generation options), and the run's id and key metrics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
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
    except (OSError, ValueError) as exc:
        raise SbrnnError(f"cannot read the model in {str(directory)!r}: {exc}") from None
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
