"""A trained behaviour-cloning child in its real environment: the policy it is, and its score.

The child maps normalised observations to normalised actions. As a policy, at every step::

    x_t = (obs_t - input_mean) / input_std                    [1, n_obs]
    y_t, state = module.step(x_t, state)                      [1, n_act]
    a_t = clip(y_t * target_std + target_mean, low, high)     the environment's action box

with the normalisation the task fitted on its train split (saved in the model's ``config.json``)
and the recurrent state carried from step to step, reset to ``init_state(1)`` when an episode
starts. Here rather than in :mod:`sbrnn.datasets`: it loads a saved child, and datasets import
nothing from child; the environment, seeds and episode loop it uses are
:mod:`sbrnn.datasets.envs`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sbrnn.child.checkpoint import load_model
from sbrnn.child.model import ChildModel
from sbrnn.datasets import envs
from sbrnn.errors import SbrnnError

NORMALISATION = ("input_mean", "input_std", "target_mean", "target_std")


class ChildPolicy:
    """A saved behaviour-cloning child acting in one environment (see the module doc).

    Args:
        module: the child, with ``init_state(batch)`` and ``step(x_t [1, n_obs], state)``.
        meta: its task's meta (``kind`` ``behaviour_cloning`` and the four normalisation lists).
        action_space: the environment's action box, which actions are clipped to.
        name: how collections and reports name the policy.
    """

    def __init__(self, module: ChildModel, meta: dict, action_space, name: str = "sbrnn child") -> None:
        self.module, self.name = module.eval(), name
        self.input_mean, self.input_std, self.target_mean, self.target_std = (
            np.asarray(meta[k], np.float64) for k in NORMALISATION
        )
        self.low = np.asarray(action_space.low, np.float64)
        self.high = np.asarray(action_space.high, np.float64)
        self.dtype = action_space.dtype
        self.state: Any = None  # the module's own state: a tensor, or (r, c) for the LSTM

    def reset(self) -> None:
        self.state = self.module.init_state(1)

    @torch.no_grad()
    def act(self, observation: np.ndarray) -> np.ndarray:
        x = (np.asarray(observation, np.float64) - self.input_mean) / self.input_std
        y, self.state = self.module.step(torch.from_numpy(x).float()[None], self.state)
        action = y[0].double().numpy() * self.target_std + self.target_mean
        return np.clip(action, self.low, self.high).astype(self.dtype)


def load_policy(directory: str | os.PathLike, env) -> tuple[ChildPolicy, dict]:
    """The child saved in ``directory`` as a policy for ``env``, and its ``config.json``.

    Raises :class:`SbrnnError` unless it was trained by behaviour cloning with observation and
    action sizes that match ``env``'s.
    """
    module, info = load_model(directory)
    task = info["task"]
    meta = task.get("meta") or {}
    if meta.get("kind") != "behaviour_cloning" or any(k not in meta for k in NORMALISATION):
        raise SbrnnError(
            f"model in {str(directory)!r} was trained on task {task['name']!r}, which is not behaviour "
            "cloning; allowed: a model trained on minari:<id> or hammer-local"
        )
    n_obs, n_act = env.observation_space.shape[0], env.action_space.shape[0]
    if (len(meta["input_mean"]), task["n_y"]) != (n_obs, n_act):
        raise SbrnnError(
            f"model in {str(directory)!r} maps {len(meta['input_mean'])} observations to {task['n_y']} "
            f"actions but {env.spec.id} has {n_obs} and {n_act}; allowed: an environment of its task "
            f"({meta.get('env_id')})"
        )
    name = f"sbrnn child {info.get('run_id', Path(directory).name)}"
    return ChildPolicy(module, meta, env.action_space, name), info


def policy_for(policy: str) -> str | Callable[..., ChildPolicy]:
    """A collection's ``policy`` (:func:`sbrnn.datasets.minari_io.collect`) from its name: one of
    :data:`sbrnn.datasets.envs.POLICIES` as it is; a directory holding a saved child as the
    function that loads that child as a policy for an environment."""
    if policy in envs.POLICIES or not Path(policy).is_dir():
        return policy
    return lambda env: load_policy(policy, env)[0]


def reference_scores(env_id: str, meta: dict) -> tuple[float, float, str] | None:
    """``(ref_min, ref_max, source)`` for normalising returns in ``env_id``: the training dataset's
    when it came from that environment, else :data:`envs.REFERENCE_SCORES`; None if unknown."""
    if meta.get("env_id") == env_id and meta.get("ref_min_score") is not None:
        return float(meta["ref_min_score"]), float(meta["ref_max_score"]), f"dataset {meta['dataset_id']}"
    if env_id in envs.REFERENCE_SCORES:
        low, high = envs.REFERENCE_SCORES[env_id]
        return low, high, f"{env_id} reference returns (D4RL)"
    return None


def normalised_score(returns: np.ndarray, ref_min: float, ref_max: float) -> np.ndarray:
    """``100 (R - ref_min) / (ref_max - ref_min)``: 0 is a random policy, 100 an expert."""
    return 100.0 * (np.asarray(returns, np.float64) - ref_min) / (ref_max - ref_min)


@dataclass(frozen=True)
class EnvEvaluation:
    """A saved child's episodes as a policy in a real environment, and their score.

    ``returns`` and ``lengths`` are per episode; ``mean_return`` and ``std_return`` (``ddof=0``)
    summarise them. When reference scores are known (:func:`reference_scores`: ``ref_min_score``,
    ``ref_max_score`` and where they come from, ``ref_source``), the mean and std of the
    normalised score; otherwise those five are None.
    """

    model: str
    run_id: str | None
    task: str
    env_id: str
    episodes: int
    seed: int
    max_steps: int | None
    returns: list[float]
    lengths: list[int]
    mean_return: float
    std_return: float
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    ref_source: str | None = None
    mean_normalised_score: float | None = None
    std_normalised_score: float | None = None

    @property
    def mean_length(self) -> float:
        """Steps per episode, on average."""
        return sum(self.lengths) / len(self.lengths)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_in_env(
    model_dir: str | os.PathLike,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> EnvEvaluation:
    """Run the child saved in ``model_dir`` for ``episodes`` episodes of ``env_id`` (reset seeds
    from ``seed``, each episode capped at ``max_steps`` when given) and score it
    (:class:`EnvEvaluation`). ``progress(1)`` is called after each episode.
    """
    envs.check_int("episodes", episodes, 1)
    envs.check_int("seed", seed, 0)
    env = envs.make_env(env_id, max_steps)
    try:
        policy, info = load_policy(model_dir, env)
        returns, lengths = [], []
        for episode in envs.rollouts(env, policy, episodes, seed):
            returns.append(episode.episode_return)
            lengths.append(len(episode))
            if progress is not None:
                progress(1)
    finally:
        env.close()
    returns_arr = np.array(returns)
    scores: dict[str, Any] = {}
    refs = reference_scores(env_id, info["task"].get("meta") or {})
    if refs is not None:
        normalised = normalised_score(returns_arr, refs[0], refs[1])
        scores = dict(
            ref_min_score=refs[0],
            ref_max_score=refs[1],
            ref_source=refs[2],
            mean_normalised_score=float(normalised.mean()),
            std_normalised_score=float(normalised.std()),
        )
    return EnvEvaluation(
        model=str(model_dir),
        run_id=info.get("run_id"),
        task=info["task"]["name"],
        env_id=env_id,
        episodes=episodes,
        seed=seed,
        max_steps=max_steps,
        returns=[float(r) for r in returns],
        lengths=lengths,
        mean_return=float(returns_arr.mean()),
        std_return=float(returns_arr.std()),
        **scores,
    )
