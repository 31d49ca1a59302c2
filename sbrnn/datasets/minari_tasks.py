"""Behaviour cloning and forward dynamics tasks on local Minari datasets.

Tasks (loss ``mse`` at every step; inputs and targets normalised, :mod:`sbrnn.datasets.windows`):

- ``minari:<dataset_id>``, behaviour cloning (default ``D4RL/hammer/expert-v2``): per episode the
  inputs are the observations ``obs_0 .. obs_{T-1}`` and the targets the actions ``a_0 .. a_{T-1}``.
- forward dynamics: inputs ``[obs_t; a_t]``, targets ``obs_{t+1} - obs_t``.
- the zoo's collected tasks (:mod:`sbrnn.datasets.rollout_tasks`): the same on datasets collected
  here from real Gymnasium rollouts when first asked for
  (:func:`~sbrnn.datasets.minari_io.local_collection`).

Datasets are read from the local Minari path only (:mod:`sbrnn.datasets.minari_io`): one that is
not there is an immediate :class:`SbrnnError` saying how to download it or collect a local one.
The train split's normalisation is stored in ``Task.meta`` as lists so a saved child carries it: a
policy maps raw observations in and normalised actions back out. The meta also holds the dataset's
env id, action bounds and reference scores when its metadata has them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sbrnn.datasets import minari_io, windows
from sbrnn.datasets.cache import load_or_build
from sbrnn.datasets.envs import check_int
from sbrnn.datasets.minari_io import COLLECTION_KEY, DEFAULT_DATASET, KNOWN_DATASETS
from sbrnn.datasets.task import Split, Task
from sbrnn.datasets.windows import TASK_KINDS
from sbrnn.errors import SbrnnError


def episode_task(name: str, dataset_id: str, kind: str, seed: int = 0, window: int | None = None) -> Task:
    """Task ``name`` of ``kind`` (:data:`~sbrnn.datasets.windows.TASK_KINDS`) on the local dataset
    ``dataset_id``: inputs ``[N, window, n_x]`` and targets ``[N, window, n_y]``, float32 and
    normalised (:func:`~sbrnn.datasets.windows.build_tensors`).

    The split, normalised and windowed tensors are cached (:mod:`sbrnn.datasets.cache`) under the
    dataset id, a hash of its metadata file, ``kind``, ``seed`` and the window.
    """
    if kind not in TASK_KINDS:
        raise SbrnnError(f"task kind {kind!r} is unknown; allowed: {', '.join(TASK_KINDS)}")
    check_int("seed", seed, 0)
    dataset = minari_io.open_dataset(dataset_id)
    lengths = minari_io.episode_lengths(dataset)
    whole = window is None and len(set(lengths.tolist())) == 1
    window = windows.resolve_window(lengths, window)
    metadata = dataset.storage.metadata
    params = {
        "dataset_id": dataset_id,
        "kind": kind,
        "seed": int(seed),
        "window": window,
        "metadata_sha256": hashlib.sha256(minari_io.metadata_file(dataset_id).read_bytes()).hexdigest(),
        "normalisation": windows.NORMALISATION,
    }
    tensors, entry = load_or_build(
        "minari", params, lambda: windows.build_tensors(dataset, kind, seed, window)
    )
    env_id = dataset.env_spec.id if dataset.env_spec is not None else None
    action_space = dataset.action_space
    meta = {
        "kind": kind,
        "dataset_id": dataset_id,
        "env_id": env_id,
        "seed": int(seed),
        "window": window,
        "whole_episodes": whole,
        "episodes": dict(zip(("train", "val", "test"), tensors["episodes"].tolist())),
        "observation_size": int(dataset.observation_space.shape[0]),
        "action_size": int(action_space.shape[0]),
        "action_low": np.asarray(action_space.low, np.float64).tolist(),
        "action_high": np.asarray(action_space.high, np.float64).tolist(),
        **{k: tensors[k].tolist() for k in ("input_mean", "input_std", "target_mean", "target_std")},
        "cache": {"key": entry.key, "path": str(entry.path), "hit": entry.hit},
    }
    if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        meta["ref_min_score"] = float(metadata["ref_min_score"])
        meta["ref_max_score"] = float(metadata["ref_max_score"])
    if COLLECTION_KEY in metadata:
        meta["collection"] = metadata[COLLECTION_KEY]
    splits = [Split(tensors[f"{s}_x"], tensors[f"{s}_y"]) for s in ("train", "val", "test")]
    n_x, n_y = splits[0].x.shape[2], splits[0].y.shape[2]
    return Task(name, n_x, n_y, window, "mse", splits[0], splits[1], splits[2], meta=meta)


def behaviour_cloning(dataset_id: str = DEFAULT_DATASET, seed: int = 0, window: int | None = None) -> Task:
    """Task ``minari:<dataset_id>``: ``obs_t [n_obs] -> action_t [n_act]`` at every step."""
    return episode_task(f"minari:{dataset_id}", dataset_id, "behaviour_cloning", seed, window)


@dataclass(frozen=True)
class DatasetShape:
    """A behaviour-cloning task's dims before building it: ``n_obs`` in, ``n_act`` out, ``steps`` per
    sequence; and the dataset's ``episodes`` and environment."""

    n_obs: int
    n_act: int
    steps: int
    episodes: int
    env_id: str | None


def describe(dataset_id: str) -> DatasetShape:
    """Dims of ``minari:<dataset_id>`` at its default window: for a known dataset
    (:data:`~sbrnn.datasets.minari_io.KNOWN_DATASETS`, local or not) what is known of it, else
    from the local dataset."""
    known = KNOWN_DATASETS.get(dataset_id)
    if known is not None:
        return DatasetShape(known.n_obs, known.n_act, known.episode_steps, known.episodes, known.env_id)
    dataset = minari_io.open_dataset(dataset_id)
    lengths = minari_io.episode_lengths(dataset)
    return DatasetShape(
        int(dataset.observation_space.shape[0]),
        int(dataset.action_space.shape[0]),
        int(lengths.min()),
        len(lengths),
        dataset.env_spec.id if dataset.env_spec is not None else None,
    )


def minari_builder(dataset_id: str) -> Callable[..., Task]:
    """The builder of ``minari:<dataset_id>``: ``builder(seed=0, window=None) -> Task``."""
    return functools.partial(behaviour_cloning, dataset_id)
