"""The local Minari path: listing, opening, collecting and writing datasets, offline.

Only the local Minari path (``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``) is read: a
dataset that is not there is an immediate :class:`SbrnnError` saying how to download it or collect
a local one (:func:`missing_dataset_error`); nothing here touches the network, so nothing waits on
it. Local datasets are collected here from real Gymnasium rollouts (:func:`collect`), seeded, and
written once in Minari's arrow format; the zoo's own (:func:`local_collection`) under
``sbrnn/...``, by one process at a time while others wait, and read from there thereafter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbrnn import __version__
from sbrnn.datasets.cache import file_lock
from sbrnn.datasets.envs import Episode, Policy, check_int, make_env, make_policy, one_line, rollouts
from sbrnn.datasets.progress import Progress, counter
from sbrnn.errors import SbrnnError

_LOG = logging.getLogger(__name__)

DEFAULT_DATASET = "D4RL/hammer/expert-v2"
COLLECTION_KEY = "sbrnn_collection"
"""Dataset metadata written last by :func:`collect`: its presence marks a complete collection."""


@dataclass(frozen=True)
class KnownDataset:
    """What is known of a remote dataset before it is downloaded: its environment, observation and
    action sizes, steps per episode, episodes, and the id of a local stand-in to collect."""

    env_id: str
    n_obs: int
    n_act: int
    episode_steps: int
    episodes: int
    local_example: str


KNOWN_DATASETS = {
    "D4RL/hammer/expert-v2": KnownDataset("AdroitHandHammer-v1", 46, 26, 200, 5000, "local/hammer/random-v0"),
}


def check_dataset_id(dataset_id: str) -> str:
    """``dataset_id`` if Minari accepts it (``(namespace/)name-vN``), else an :class:`SbrnnError`."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # TypeError: no version (Minari 0.5.4 reads it as int(None))
        raise SbrnnError(
            f"dataset id {dataset_id!r} is malformed; allowed: (namespace/)name-vN, e.g. {DEFAULT_DATASET}"
        ) from None
    return dataset_id


def dataset_path(dataset_id: str = "") -> Path:
    """Where Minari keeps ``dataset_id`` locally (the root when empty)."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path(dataset_id))


def metadata_file(dataset_id: str) -> Path:
    """The JSON metadata file of the local dataset ``dataset_id`` (there once it is written)."""
    return dataset_path(dataset_id) / "data" / "metadata.json"


def is_local(dataset_id: str) -> bool:
    """Whether ``dataset_id`` is in the local Minari path (so builds offline)."""
    return metadata_file(dataset_id).is_file()


def local_dataset_ids() -> list[str]:
    """Ids of the datasets in the local Minari path."""
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a misconfigured dataset is left out, not shouted about
        return sorted(minari.list_local_datasets())


def missing_dataset_error(dataset_id: str) -> SbrnnError:
    """The error for a dataset that is not local: how to download it or collect a local one."""
    known = KNOWN_DATASETS.get(dataset_id)
    env_id = known.env_id if known else "ENV"
    example = known.local_example if known else "local/NAME-v0"
    return SbrnnError(
        f"Minari dataset {dataset_id!r} is not in the local Minari path {dataset_path()}; download it "
        f"with `minari download {dataset_id}` (needs a network) or collect a local one with "
        f"`sbrnn datasets collect --env {env_id} --episodes 50 --policy random --id {example}` "
        f"and use task minari:{example}"
    )


def open_dataset(dataset_id: str):
    """The local :class:`minari.MinariDataset` ``dataset_id``; fails at once when it is absent."""
    check_dataset_id(dataset_id)
    if not is_local(dataset_id):
        raise missing_dataset_error(dataset_id)
    import gymnasium as gym
    import minari

    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the user's dataset's
        raise SbrnnError(f"cannot read Minari dataset {dataset_id!r}: {one_line(exc)}") from None
    for what, space in (("observation", dataset.observation_space), ("action", dataset.action_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise SbrnnError(f"dataset {dataset_id!r} has {what} space {space}; allowed: a flat Box")
    return dataset


def episode_lengths(dataset) -> np.ndarray:
    """Steps of each episode of the Minari ``dataset``: ``[episodes]`` int."""
    return np.array([m["total_steps"] for m in dataset.storage.get_episode_metadata(dataset.episode_indices)])


@contextlib.contextmanager
def _collection_lock(dataset_id: str) -> Iterator[None]:
    """Held while one process collects ``dataset_id``; others asking for it wait, then read it."""
    name = hashlib.sha256(dataset_id.encode()).hexdigest()[:20]
    with file_lock(dataset_path() / ".sbrnn-locks" / f"{name}.lock"):  # hidden: Minari's listing skips it
        yield


def _write_dataset(dataset_id: str, env, episodes: list[Episode], policy: str, collection: dict) -> None:
    """Write ``episodes`` as the arrow-format Minari dataset ``dataset_id``; on failure remove it."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            seed=e.seed,
            observations=e.observations,
            actions=e.actions,
            rewards=list(e.rewards),
            terminations=list(e.terminations),
            truncations=list(e.truncations),
        )
        for e in episodes
    ]
    description = (
        f"{len(episodes)} episodes of {env.spec.id} under the {policy} policy, "
        f"collected by sbrnn {__version__} with seed {collection['seed']}"
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")  # optional fields
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers[:1],
                env=env,
                algorithm_name=policy,
                author="sbrnn",
                description=description,
                data_format="arrow",
            )
        storage = dataset.storage
        # Minari 0.5.4 re-measures the whole dataset directory after every episode it adds
        # (quadratic in episodes: 26 s for 400 short ones); measure once at the end instead.
        storage.get_size = lambda: 0.0
        try:
            dataset.update_dataset_from_buffer(buffers[1:])
        finally:
            del storage.get_size
        storage.update_metadata({"dataset_size": storage.get_size(), COLLECTION_KEY: collection})
    except BaseException:
        shutil.rmtree(dataset_path(dataset_id), ignore_errors=True)
        raise


def collect(
    dataset_id: str,
    env_id: str,
    episodes: int,
    policy: str | Callable[..., Policy] = "random",
    seed: int = 0,
    max_steps: int | None = None,
    progress: Progress | None = None,
    env_kwargs: dict | None = None,
) -> dict:
    """Roll out ``policy`` in ``env_id`` (made with ``env_kwargs``) for ``episodes`` episodes and
    write them as the local Minari dataset ``dataset_id`` (arrow format); the collection metadata
    records the environment's arguments. Returns a summary: id, path, env, policy, seed, episodes,
    steps, mean and std (``ddof=0``) of the episode returns.

    ``policy`` is a name from :data:`~sbrnn.datasets.envs.POLICIES` (seeded from ``seed``) or a
    function of the environment that returns a :class:`~sbrnn.datasets.envs.Policy`, such as a
    trained child's (:func:`sbrnn.child.rollout.load_policy`). ``progress``
    (:mod:`sbrnn.datasets.progress`) is told of the work ``collecting <dataset_id>`` in episodes.
    """
    check_dataset_id(dataset_id)
    check_int("episodes", episodes, 1)
    check_int("seed", seed, 0)
    if dataset_path(dataset_id).exists():
        raise SbrnnError(
            f"Minari dataset {dataset_id!r} already exists in {dataset_path()}; choose another id "
            f"or delete it with `minari delete {dataset_id}`"
        )
    env = make_env(env_id, max_steps, env_kwargs)
    try:
        if isinstance(policy, str):
            actor = make_policy(policy, env.action_space, seed, env_id)
        else:
            actor = policy(env)
        collected = []
        advance = counter(progress, f"collecting {dataset_id}", episodes)
        for episode in rollouts(env, actor, episodes, seed):
            collected.append(episode)
            advance(1)
        collection = {
            "env_id": env_id,
            "policy": actor.name,
            "seed": int(seed),
            "episodes": int(episodes),
            "max_steps": max_steps,
            "env_kwargs": env_kwargs or {},
            "sbrnn_version": __version__,
        }
        _write_dataset(dataset_id, env, collected, actor.name, collection)
    finally:
        env.close()
    returns = np.array([e.episode_return for e in collected])
    return {
        "dataset_id": dataset_id,
        "path": str(dataset_path(dataset_id)),
        "env_id": env_id,
        "policy": actor.name,
        "seed": int(seed),
        "episodes": len(collected),
        "steps": int(sum(len(e) for e in collected)),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
    }


def local_collection(
    env_id: str,
    short: str,
    policy: str,
    episodes: int,
    seed: int,
    max_steps: int | None = None,
    env_kwargs: dict | None = None,
    progress: Progress | None = None,
) -> str:
    """The id of the local dataset of ``episodes`` episodes of ``policy`` in ``env_id`` (made with
    ``env_kwargs``) from ``seed``, collected now (reported through ``progress``, see :func:`collect`)
    unless a complete one is already there. The id names every choice (``env_kwargs`` by a hash),
    so different ones never share a dataset:
    ``sbrnn/<short>/<policy>-e<episodes>[-t<max_steps>][-k<hash>]-s<seed>-v0``."""
    check_int("episodes", episodes, 3)  # the tasks built on it split it three ways
    check_int("collect seed", seed, 0)
    if max_steps is not None:
        check_int("max steps", max_steps, 1)
    horizon = "" if max_steps is None else f"-t{max_steps}"
    arguments = ""
    if env_kwargs:
        arguments = f"-k{hashlib.sha256(json.dumps(env_kwargs, sort_keys=True).encode()).hexdigest()[:8]}"
    dataset_id = f"sbrnn/{short}/{policy}-e{episodes}{horizon}{arguments}-s{seed}-v0"
    if _complete(dataset_id):
        return dataset_id
    with _collection_lock(dataset_id):
        if _complete(dataset_id):  # another process collected it while we waited
            return dataset_id
        if dataset_path(dataset_id).exists():  # left half-written by a killed collection
            _LOG.info("removing the incomplete collection %s", dataset_path(dataset_id))
            shutil.rmtree(dataset_path(dataset_id))
        _LOG.info("collecting %s: %d episodes of %s, %s policy", dataset_id, episodes, env_id, policy)
        collect(dataset_id, env_id, episodes, policy, seed, max_steps, progress, env_kwargs)
    return dataset_id


def _complete(dataset_id: str) -> bool:
    """Whether ``dataset_id`` is local and :func:`collect` finished writing it."""
    path = metadata_file(dataset_id)
    return path.is_file() and COLLECTION_KEY in json.loads(path.read_text())
