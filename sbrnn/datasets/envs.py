"""Gymnasium environments, the policies that act in them, and their rollouts (offline).

Environments are made by id (Gymnasium-Robotics ids included) with flat box observations
``[n_obs]`` and actions ``[n_act]`` and a time limit. A :class:`Policy` maps an observation to an
action at every step; :func:`make_policy` makes the named ones of :data:`POLICIES`, seeded.
:func:`rollouts` runs a policy for whole episodes, each environment reset from its own seed drawn
from one seed, and yields them as :class:`Episode` arrays.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sbrnn.errors import SbrnnError

POLICIES = ("random", "smooth", "swingup")
"""``random`` and ``smooth`` act in any environment with a bounded action box; ``swingup`` is
scripted for ``Pendulum-v1`` only (:class:`PendulumSwingUpPolicy`)."""
SMOOTH_RHO = 0.9
"""Per-step autocorrelation of the ``smooth`` policy's latent noise."""
EXAMPLE_ENVS = ("AdroitHandHammer-v1", "Hopper-v5", "HalfCheetah-v5")
REFERENCE_SCORES = {"AdroitHandHammer-v1": (-267.07, 12635.71)}
"""``env_id -> (ref_min_score, ref_max_score)``: mean returns of a random and an expert policy, as
in the metadata of ``D4RL/hammer/expert-v2``; the normalised score is ``100 (R - min) / (max - min)``."""


# Checks ---------------------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    """``exc``'s message with its whitespace runs (newlines included) folded to single spaces."""
    return " ".join(str(exc).split())


def check_int(name: str, value, minimum: int) -> int:
    """``value`` if it is an integer ``>= minimum``, else an :class:`SbrnnError` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SbrnnError(f"{name} = {value!r} is out of range; allowed: integers >= {minimum}")
    return int(value)


# Environments ---------------------------------------------------------------------------------

ROBOTICS_NOTICE = "reward functions were updated in v1.2.1"
"""Part of the notice Gymnasium-Robotics 1.2.1-1.4.2 prints to stderr when imported (from the
``farama_notifications`` package): the Adroit *Dense-v1* rewards changed without a new version.
sbrnn scores returns against its dataset's reference scores (or D4RL's for hammer) and prints
them, so that notice on every Adroit command is noise; :func:`_import_robotics` leaves it out,
and every other notice of that package (and every warning) as they are."""


def _import_robotics():
    """``gymnasium_robotics``, imported without its Adroit reward-function notice (see
    :data:`ROBOTICS_NOTICE`)."""
    try:
        from farama_notifications import notifications
    except ImportError:  # nothing to leave out
        notifications = {}
    saved = notifications.get("gymnasium_robotics")
    if isinstance(saved, dict):
        notifications["gymnasium_robotics"] = {
            version: text for version, text in saved.items() if ROBOTICS_NOTICE not in str(text)
        }
    try:
        import gymnasium_robotics
    finally:
        if isinstance(saved, dict):
            notifications["gymnasium_robotics"] = saved
    return gymnasium_robotics


def make_env(env_id: str, max_steps: int | None = None, env_kwargs: dict | None = None):
    """The Gymnasium environment ``env_id`` (Gymnasium-Robotics ids included), episodes capped at
    ``max_steps`` when given, made with the keyword arguments ``env_kwargs`` (e.g. Ant-v5's
    ``include_cfrc_ext_in_observation``). Observations and actions must be flat boxes: ``[n_obs]``,
    ``[n_act]``."""
    import gymnasium as gym

    if max_steps is not None:
        check_int("max steps", max_steps, 1)
    if env_id not in gym.registry and importlib.util.find_spec("gymnasium_robotics") is not None:
        gym.register_envs(_import_robotics())
    kwargs = {**(env_kwargs or {}), **({} if max_steps is None else {"max_episode_steps": max_steps})}
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as exc:  # an argument the environment does not take
        raise SbrnnError(
            f"environment {env_id!r} cannot be made with {env_kwargs}: {one_line(exc)}"
        ) from None
    except gym.error.Error as exc:
        raise SbrnnError(
            f"environment {env_id!r} cannot be made ({one_line(exc)}); e.g. {', '.join(EXAMPLE_ENVS)}"
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
    action), ``actions [T, n_act]``, ``rewards [T]`` float64, ``terminations`` and ``truncations``
    ``[T]`` bool, and the seed its environment was reset with."""

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
            episode_seed,
            np.stack(observations),
            np.stack(actions),
            np.asarray(rewards, np.float64),
            np.asarray(terminations, bool),
            np.asarray(truncations, bool),
        )
