"""Behaviour cloning and forward dynamics from Minari datasets, and the local collection behind them.

Tasks (loss ``mse`` at every step; inputs and targets normalised):

- ``minari:<dataset_id>``, behaviour cloning (default ``D4RL/hammer/expert-v2``): per episode the
  inputs are the observations ``obs_0 .. obs_{T-1}`` (the final observation, seen after the last
  action, is dropped) and the targets the actions ``a_0 .. a_{T-1}``.
- forward dynamics: inputs ``[obs_t; a_t]``, targets ``obs_{t+1} - obs_t``.
- the zoo's collected tasks (:mod:`sbrnn.datasets.rollout_tasks`): the same on datasets collected
  here from real Gymnasium rollouts when first asked for (:func:`local_collection`), seeded,
  written once into the local Minari path (``$MINARI_DATASETS_PATH``, default
  ``~/.minari/datasets``) under ``sbrnn/...`` and read from there thereafter.

Splits and sequences. Episodes are split into train / val / test by episode: a permutation drawn
from the task seed, 5 % (rounded, at least one) for val and for test and the rest for train; for
the 5,000 episodes of hammer expert-v2 that is the paper's 4,500 / 250 / 250. Each episode is then
cut into non-overlapping windows of ``window`` steps from its start; a tail shorter than a window
is dropped, and so is an episode shorter than one window. Without a ``window`` the sequences are
whole episodes when all episodes have one length, else windows of the shortest episode's length.
Nothing is padded, so nothing needs a mask: every step of every sequence is a real step. A window
starts from the zero state mid-episode; in the environment the state runs across the episode.

Normalisation. Per-feature mean and std of inputs and of targets over every step of the train
split's episodes (a std below ``STD_FLOOR`` counts as 1), stored in ``Task.meta`` as lists so a
saved child carries them: a policy maps raw observations in and normalised actions back out. The
meta also holds the dataset's env id, action bounds and reference scores when its metadata has them.

Offline. Only the local Minari path is read: a dataset that is not there is an immediate
:class:`SbrnnError` saying how to download it or collect a local one; nothing here touches the
network, so nothing waits on it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from sbrnn import __version__
from sbrnn.datasets.cache import file_lock, load_or_build, progress_bar
from sbrnn.datasets.task import Split, Task
from sbrnn.errors import SbrnnError

DEFAULT_DATASET = "D4RL/hammer/expert-v2"
HOLDOUT_FRACTION = 0.05
"""Share of a dataset's episodes in val, and again in test (rounded, at least one each)."""
STD_FLOOR = 1e-6
POLICIES = ("random", "smooth", "swingup")
"""``random`` and ``smooth`` act in any environment with a bounded action box; ``swingup`` is
scripted for ``Pendulum-v1`` only (:class:`PendulumSwingUpPolicy`)."""
SMOOTH_RHO = 0.9
"""Per-step autocorrelation of the ``smooth`` policy's latent noise."""
COLLECTION_KEY = "sbrnn_collection"
"""Dataset metadata written last by :func:`collect`: its presence marks a complete collection."""
EXAMPLE_ENVS = ("AdroitHandHammer-v1", "Hopper-v5", "HalfCheetah-v5")
TASK_KINDS = ("behaviour_cloning", "forward_dynamics")


@dataclass(frozen=True)
class KnownDataset:
    """What is known of a remote dataset before it is downloaded."""

    env_id: str
    n_obs: int
    n_act: int
    episode_steps: int
    episodes: int
    local_example: str


KNOWN_DATASETS = {
    "D4RL/hammer/expert-v2": KnownDataset("AdroitHandHammer-v1", 46, 26, 200, 5000, "local/hammer/random-v0"),
}

REFERENCE_SCORES = {"AdroitHandHammer-v1": (-267.07, 12635.71)}
"""``env_id -> (ref_min_score, ref_max_score)``: mean returns of a random and an expert policy, as
in the metadata of ``D4RL/hammer/expert-v2``; the normalised score is ``100 (R - min) / (max - min)``."""


# Environments ---------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_int(name: str, value, minimum: int) -> int:
    """``value`` if it is an integer ``>= minimum``, else an :class:`SbrnnError` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SbrnnError(f"{name} = {value!r} is out of range; allowed: integers >= {minimum}")
    return int(value)


def make_env(env_id: str, max_steps: int | None = None, env_kwargs: dict | None = None):
    """The Gymnasium environment ``env_id`` (Gymnasium-Robotics ids included), episodes capped at
    ``max_steps`` when given, made with the keyword arguments ``env_kwargs`` (e.g. Ant-v5's
    ``include_cfrc_ext_in_observation``). Observations and actions must be flat boxes: ``[n_obs]``,
    ``[n_act]``."""
    import gymnasium as gym

    if max_steps is not None:
        check_int("max steps", max_steps, 1)
    if env_id not in gym.registry and importlib.util.find_spec("gymnasium_robotics") is not None:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
    kwargs = {**(env_kwargs or {}), **({} if max_steps is None else {"max_episode_steps": max_steps})}
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as exc:  # an argument the environment does not take
        raise SbrnnError(
            f"environment {env_id!r} cannot be made with {env_kwargs}: {_one_line(exc)}"
        ) from None
    except gym.error.Error as exc:
        raise SbrnnError(
            f"environment {env_id!r} cannot be made ({_one_line(exc)}); e.g. {', '.join(EXAMPLE_ENVS)}"
        ) from None
    for what, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            env.close()
            raise SbrnnError(f"environment {env_id!r} has {what} space {space}; allowed: a flat Box")
    if env.spec is None or env.spec.max_episode_steps is None:
        env.close()
        raise SbrnnError(f"environment {env_id!r} has no time limit; give max steps")
    return env


# Policies -------------------------------------------------------------------------------------


class Policy(Protocol):
    """Acts in one environment: ``reset()`` at the start of each episode, then
    ``act(observation [n_obs]) -> action [n_act]`` at every step."""

    name: str

    def reset(self) -> None: ...

    def act(self, observation: np.ndarray) -> np.ndarray: ...


def _finite_box(space) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise SbrnnError(f"action space {space} is unbounded; random policies need finite bounds")
    return low, high


class RandomPolicy:
    """Actions uniform in the action box, independently at every step."""

    name = "random"

    def __init__(self, action_space, rng: np.random.Generator) -> None:
        self.low, self.high = _finite_box(action_space)
        self.dtype = action_space.dtype
        self.rng = rng

    def reset(self) -> None:
        """Nothing carries over between episodes."""

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(self.dtype)


class SmoothRandomPolicy:
    """Temporally correlated random actions, so that an action can be told from the history.

    Per action coordinate a latent ``u_t = rho u_{t-1} + sqrt(1 - rho^2) e_t`` with
    ``e_t ~ N(0, 1)``, ``u_0 ~ N(0, 1)`` (stationary unit variance), and
    ``a_t = mid + half_range * tanh(u_t)``. With ``rho = 0.9`` (``SMOOTH_RHO``) about half of an
    Adroit hammer action's variance is linear in the last two observations, where uniform random
    actions have none: behaviour cloning of this policy has something to learn.
    """

    name = "smooth"

    def __init__(self, action_space, rng: np.random.Generator, rho: float = SMOOTH_RHO) -> None:
        low, high = _finite_box(action_space)
        self.mid, self.half = (low + high) / 2, (high - low) / 2
        self.dtype = action_space.dtype
        self.rng, self.rho = rng, rho
        self.u = np.zeros_like(low)

    def reset(self) -> None:
        self.u = self.rng.standard_normal(self.mid.shape)

    def act(self, observation: np.ndarray) -> np.ndarray:
        self.u = self.rho * self.u + np.sqrt(1 - self.rho**2) * self.rng.standard_normal(self.mid.shape)
        return (self.mid + self.half * np.tanh(self.u)).astype(self.dtype)


class PendulumSwingUpPolicy:
    """A scripted controller that swings ``Pendulum-v1`` up and balances it: worth cloning.

    Observations ``[cos th, sin th, th_dot]`` (``th = 0`` upright), torque ``u`` in [-2, 2]. In
    Pendulum-v1 ``th'' = 15 sin th + 3 u`` (g 10, m 1, l 1), so ``E = th_dot^2 / 2 + 15 (cos th - 1)``
    (0 upright at rest, -30 hanging at rest) changes as ``E' = 3 th_dot u``. Away from the top
    (``cos th <= 0.9``) ``u = clip(-E th_dot)`` pumps energy in while ``E < 0`` and out while
    ``E > 0``; near the top a PD law ``u = -(10 th + 2 th_dot)`` balances it. Deterministic. Over
    30 episodes of 200 steps (:func:`rollouts` from seed 0) its mean return is -163 (std 93),
    against -1,231 (std 315) for uniform random torques.
    """

    name = "swingup"
    envs = ("Pendulum-v1",)

    def __init__(self, action_space) -> None:
        self.low, self.high = _finite_box(action_space)
        self.dtype = action_space.dtype

    def reset(self) -> None:
        """Nothing carries over between episodes."""

    def act(self, observation: np.ndarray) -> np.ndarray:
        cos, sin, velocity = (float(v) for v in observation)
        energy = 0.5 * velocity**2 + 15.0 * (cos - 1.0)
        torque = -(10.0 * np.arctan2(sin, cos) + 2.0 * velocity) if cos > 0.9 else -energy * velocity
        return np.clip([torque], self.low, self.high).astype(self.dtype)


def make_policy(name: str, action_space, seed: int, env_id: str | None = None) -> Policy:
    """The named policy of :data:`POLICIES` for ``env_id``'s ``action_space``, random draws
    seeded from ``seed``. A scripted policy for another environment is an :class:`SbrnnError`."""
    rng = np.random.default_rng([int(seed), 1])
    if name == "random":
        return RandomPolicy(action_space, rng)
    if name == "smooth":
        return SmoothRandomPolicy(action_space, rng)
    if name == PendulumSwingUpPolicy.name:
        if env_id not in PendulumSwingUpPolicy.envs:
            raise SbrnnError(
                f"policy {name!r} cannot drive {env_id}; allowed: {', '.join(PendulumSwingUpPolicy.envs)}"
            )
        return PendulumSwingUpPolicy(action_space)
    raise SbrnnError(f"policy {name!r} is unknown; allowed: {', '.join(POLICIES)} or a saved model directory")


# Rollouts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One episode of ``T`` steps: ``observations [T + 1, n_obs]`` (the last one follows the final
    action), ``actions [T, n_act]``, ``rewards``, ``terminations``, ``truncations`` ``[T]``, and the
    seed its environment was reset with."""

    seed: int
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        """Undiscounted sum of rewards."""
        return float(self.rewards.sum())


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The reset seed of each of ``episodes`` episodes, drawn from ``seed``."""
    return [int(s) for s in np.random.SeedSequence([int(seed), 0]).generate_state(episodes)]


def rollouts(env, policy: Policy, episodes: int, seed: int) -> Iterator[Episode]:
    """Run ``policy`` for ``episodes`` episodes of ``env``; episode ``i`` resets the environment
    with the ``i``-th of :func:`episode_seeds` and ends when it terminates or is truncated."""
    for episode_seed in episode_seeds(seed, episodes):
        observation, _ = env.reset(seed=episode_seed)
        policy.reset()
        observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
        while True:
            action = policy.act(observation)
            observation, reward, terminated, truncated, _ = env.step(action)
            observations.append(observation)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            if terminated or truncated:
                break
        yield Episode(
            episode_seed, np.stack(observations), np.stack(actions), np.asarray(rewards, np.float64),
            np.asarray(terminations, bool), np.asarray(truncations, bool),
        )


# The local Minari path ------------------------------------------------------------------------


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


def _metadata_file(dataset_id: str) -> Path:
    return dataset_path(dataset_id) / "data" / "metadata.json"


def is_local(dataset_id: str) -> bool:
    """Whether ``dataset_id`` is in the local Minari path (so builds offline)."""
    return _metadata_file(dataset_id).is_file()


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


def _open(dataset_id: str):
    """The local :class:`minari.MinariDataset` ``dataset_id``; fails at once when it is absent."""
    check_dataset_id(dataset_id)
    if not is_local(dataset_id):
        raise missing_dataset_error(dataset_id)
    import gymnasium as gym
    import minari

    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the user's dataset's
        raise SbrnnError(f"cannot read Minari dataset {dataset_id!r}: {_one_line(exc)}") from None
    for what, space in (("observation", dataset.observation_space), ("action", dataset.action_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise SbrnnError(f"dataset {dataset_id!r} has {what} space {space}; allowed: a flat Box")
    return dataset


def _episode_lengths(dataset) -> np.ndarray:
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
            seed=e.seed, observations=e.observations, actions=e.actions, rewards=list(e.rewards),
            terminations=list(e.terminations), truncations=list(e.truncations),
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
                dataset_id, buffers[:1], env=env, algorithm_name=policy, author="sbrnn",
                description=description, data_format="arrow",
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
    progress: Callable[[int], None] | None = None,
    env_kwargs: dict | None = None,
) -> dict:
    """Roll out ``policy`` in ``env_id`` (made with ``env_kwargs``) for ``episodes`` episodes and
    write them as the local Minari dataset ``dataset_id`` (arrow format); the collection metadata
    records the environment's arguments. Returns a summary: id, path, env, policy, seed, episodes,
    steps, mean and std (``ddof=0``) of the episode returns.

    ``policy`` is a name from :data:`POLICIES` (seeded from ``seed``) or a function of the
    environment that returns a :class:`Policy`, such as a trained child's
    (:func:`sbrnn.child.rollout.load_policy`). ``progress(1)`` is called after each episode.
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
        for episode in rollouts(env, actor, episodes, seed):
            collected.append(episode)
            if progress is not None:
                progress(1)
        collection = {
            "env_id": env_id, "policy": actor.name, "seed": int(seed), "episodes": int(episodes),
            "max_steps": max_steps, "env_kwargs": env_kwargs or {}, "sbrnn_version": __version__,
        }
        _write_dataset(dataset_id, env, collected, actor.name, collection)
    finally:
        env.close()
    returns = np.array([e.episode_return for e in collected])
    return {
        "dataset_id": dataset_id, "path": str(dataset_path(dataset_id)), "env_id": env_id,
        "policy": actor.name, "seed": int(seed), "episodes": len(collected),
        "steps": int(sum(len(e) for e in collected)),
        "mean_return": float(returns.mean()), "std_return": float(returns.std()),
    }


def local_collection(env_id: str, short: str, policy: str, episodes: int, seed: int,
                     max_steps: int | None = None, env_kwargs: dict | None = None) -> str:
    """The id of the local dataset of ``episodes`` episodes of ``policy`` in ``env_id`` (made with
    ``env_kwargs``) from ``seed``, collected now (with a progress bar) unless a complete one is
    already there. The id names every choice (``env_kwargs`` by a hash), so different ones never
    share a dataset: ``sbrnn/<short>/<policy>-e<episodes>[-t<max_steps>][-k<hash>]-s<seed>-v0``."""
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
            shutil.rmtree(dataset_path(dataset_id))
        with progress_bar(f"collecting {dataset_id}", episodes) as advance:
            collect(dataset_id, env_id, episodes, policy, seed, max_steps, advance, env_kwargs)
    return dataset_id


def _complete(dataset_id: str) -> bool:
    path = _metadata_file(dataset_id)
    return path.is_file() and COLLECTION_KEY in json.loads(path.read_text())


# Tasks ----------------------------------------------------------------------------------------


def split_counts(episodes: int) -> tuple[int, int, int]:
    """``(train, val, test)`` episode counts: val and test 5 % each, rounded, at least one."""
    if episodes < 3:
        raise SbrnnError(f"a dataset of {episodes} episodes cannot be split; allowed: at least 3 episodes")
    held = max(1, int(episodes * HOLDOUT_FRACTION + 0.5))
    return episodes - 2 * held, held, held


def split_episodes(episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode indices of train, val and test: a permutation drawn from ``seed``, each part sorted."""
    n_train, n_val, _ = split_counts(episodes)
    order = np.random.default_rng([int(seed), 2]).permutation(episodes)
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    return tuple(np.sort(p) for p in parts)


def resolve_window(lengths: np.ndarray, window: int | None) -> int:
    """The sequence length: ``window`` if given (checked), else the shortest episode's length."""
    if window is None:
        return int(lengths.min())
    check_int("window", window, 1)
    if window > lengths.max():
        raise SbrnnError(
            f"window = {window} is longer than every episode; allowed: 1 to {int(lengths.max())}"
        )
    return int(window)


def cut_windows(arrays: list[np.ndarray], window: int) -> np.ndarray:
    """Non-overlapping windows from the start of each ``[T_i, d]`` array -> ``[N, window, d]``;
    a tail shorter than ``window`` is dropped."""
    return np.concatenate([a[: len(a) // window * window].reshape(-1, window, a.shape[1]) for a in arrays])


def _pairs(kind: str, observations: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One episode's ``(inputs [T, n_in], targets [T, n_out])`` for task ``kind``."""
    if kind == "behaviour_cloning":
        return observations[:-1], actions
    return np.concatenate([observations[:-1], actions], axis=1), np.diff(observations, axis=0)


def _moments(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate(arrays).astype(np.float64)
    std = stacked.std(axis=0)
    return stacked.mean(axis=0), np.where(std < STD_FLOOR, 1.0, std)


def _build_tensors(dataset, kind: str, seed: int, window: int) -> dict[str, torch.Tensor]:
    """Split, normalise and window ``dataset`` (see the module doc); float32 sequences, float64 stats."""
    episodes = list(dataset.iterate_episodes())
    pairs = [
        _pairs(kind, np.asarray(e.observations, np.float64), np.asarray(e.actions, np.float64))
        for e in episodes
    ]
    parts = split_episodes(len(pairs), seed)
    in_mean, in_std = _moments([pairs[i][0] for i in parts[0]])
    out_mean, out_std = _moments([pairs[i][1] for i in parts[0]])
    tensors = {
        "input_mean": torch.from_numpy(in_mean), "input_std": torch.from_numpy(in_std),
        "target_mean": torch.from_numpy(out_mean), "target_std": torch.from_numpy(out_std),
        "episodes": torch.tensor([len(p) for p in parts]),
    }
    for split, indices in zip(("train", "val", "test"), parts):
        x = cut_windows([(pairs[i][0] - in_mean) / in_std for i in indices], window)
        y = cut_windows([(pairs[i][1] - out_mean) / out_std for i in indices], window)
        if len(x) == 0:
            raise SbrnnError(
                f"window = {window} leaves no sequences in the {split} split of {dataset.id!r}; "
                "allowed: a window no longer than its episodes"
            )
        tensors[f"{split}_x"] = torch.from_numpy(x).float()
        tensors[f"{split}_y"] = torch.from_numpy(y).float()
    return tensors


def episode_task(name: str, dataset_id: str, kind: str, seed: int = 0, window: int | None = None) -> Task:
    """Task ``name`` of ``kind`` (:data:`TASK_KINDS`) on the local dataset ``dataset_id``.

    The split, normalised and windowed tensors are cached (:mod:`sbrnn.datasets.cache`) under the
    dataset id, a hash of its metadata file, ``kind``, ``seed`` and the window.
    """
    if kind not in TASK_KINDS:
        raise SbrnnError(f"task kind {kind!r} is unknown; allowed: {', '.join(TASK_KINDS)}")
    check_int("seed", seed, 0)
    dataset = _open(dataset_id)
    lengths = _episode_lengths(dataset)
    whole = window is None and len(set(lengths.tolist())) == 1
    window = resolve_window(lengths, window)
    metadata = dataset.storage.metadata
    params = {
        "dataset_id": dataset_id, "kind": kind, "seed": int(seed), "window": window,
        "metadata_sha256": hashlib.sha256(_metadata_file(dataset_id).read_bytes()).hexdigest(),
    }
    tensors, entry = load_or_build("minari", params, lambda: _build_tensors(dataset, kind, seed, window))
    env_id = dataset.env_spec.id if dataset.env_spec is not None else None
    action_space = dataset.action_space
    meta = {
        "kind": kind, "dataset_id": dataset_id, "env_id": env_id, "seed": int(seed), "window": window,
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
    n_in, n_out = splits[0].x.shape[2], splits[0].y.shape[2]
    return Task(name, n_in, n_out, window, "mse", *splits, meta=meta)


def behaviour_cloning(dataset_id: str = DEFAULT_DATASET, seed: int = 0, window: int | None = None) -> Task:
    """Task ``minari:<dataset_id>``: ``obs_t [n_obs] -> action_t [n_act]`` at every step."""
    return episode_task(f"minari:{dataset_id}", dataset_id, "behaviour_cloning", seed, window)


@dataclass(frozen=True)
class DatasetShape:
    """A behaviour-cloning task's dims before building it: ``n_obs`` in, ``n_act`` out, ``steps``."""

    n_obs: int
    n_act: int
    steps: int
    episodes: int
    env_id: str | None


def describe(dataset_id: str) -> DatasetShape:
    """Dims of ``minari:<dataset_id>`` at its default window: for a known dataset
    (:data:`KNOWN_DATASETS`, local or not) what is known of it, else from the local dataset."""
    known = KNOWN_DATASETS.get(dataset_id)
    if known is not None:
        return DatasetShape(known.n_obs, known.n_act, known.episode_steps, known.episodes, known.env_id)
    dataset = _open(dataset_id)
    lengths = _episode_lengths(dataset)
    return DatasetShape(
        int(dataset.observation_space.shape[0]), int(dataset.action_space.shape[0]), int(lengths.min()),
        len(lengths), dataset.env_spec.id if dataset.env_spec is not None else None,
    )


def minari_builder(dataset_id: str) -> Callable[..., Task]:
    """The builder of ``minari:<dataset_id>``: ``builder(seed=0, window=None) -> Task``."""
    return functools.partial(behaviour_cloning, dataset_id)
