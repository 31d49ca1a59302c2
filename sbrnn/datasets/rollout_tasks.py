"""The zoo's tasks on rollouts collected here: behaviour cloning and forward dynamics (``mse``).

Each task names an environment, a policy and a collection size (:data:`COLLECTIONS`). The first
build rolls the policy out in the real environment (MuJoCo, Gymnasium-Robotics or classic
control; all offline), seeded by the ``collect_seed`` option, and writes the episodes once into
the local Minari path (:func:`~sbrnn.datasets.minari_io.local_collection`); later builds, and
every task seed, read that dataset. ``collect_seed`` is an option of its own so that the runs of a
sweep (one seed each) share one collected dataset. The task is then
:func:`~sbrnn.datasets.minari_tasks.episode_task`: split by episode (90 / 5 / 5 %), normalised
with the train split's statistics, cut into non-overlapping windows of ``window`` steps (whole
episodes when ``window`` is None and every episode has one length).

- ``behaviour_cloning``: ``obs_t -> action_t``, of the ``smooth`` random policy in the Adroit hand
  tasks (uniform random actions are independent of everything the network sees, so every model
  would reach the same loss, the actions' variance) or of the scripted ``swingup`` controller.
- ``forward_dynamics``: ``[obs_t; a_t] -> obs_{t+1} - obs_t``, under uniform random actions.

Options of every task: ``episodes`` (at least 3), ``max_steps`` (cap on an episode's steps; None:
the environment's own limit), ``collect_seed``, ``window``, and the task ``seed`` (the split).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

from sbrnn.datasets import minari_io, minari_tasks
from sbrnn.datasets.envs import check_int
from sbrnn.datasets.progress import Progress
from sbrnn.datasets.task import Task


@dataclass(frozen=True)
class Collection:
    """How a task's dataset is collected, and its default size.

    Attributes:
        env_id: the Gymnasium environment; ``env_kwargs`` the arguments it is made with.
        short: the dataset id's middle part (``sbrnn/<short>/...``).
        kind: ``behaviour_cloning`` or ``forward_dynamics``.
        policy: a name from :data:`~sbrnn.datasets.envs.POLICIES`.
        episodes, max_steps, window: the defaults of the task's options.
    """

    env_id: str
    short: str
    kind: str
    policy: str
    episodes: int
    max_steps: int | None = None
    window: int | None = None
    env_kwargs: dict = field(default_factory=dict)


BC, DYNAMICS = "behaviour_cloning", "forward_dynamics"
HUMANOID_POSITIONS_VELOCITIES = {
    f"include_{part}_in_observation": False for part in ("cinert", "cvel", "qfrc_actuator", "cfrc_ext")
}
"""Humanoid-v5's observation cut to joint positions and velocities (45 of its 348 numbers)."""
COLLECTIONS = {  # dims, and why each task is in: the registry's descriptions
    "hammer-local": Collection("AdroitHandHammer-v1", "hammer", BC, "smooth", 100),
    "pen-local": Collection("AdroitHandPen-v1", "pen", BC, "smooth", 100, window=50),
    "relocate-local": Collection("AdroitHandRelocate-v1", "relocate", BC, "smooth", 100),
    "pendulum-swingup": Collection("Pendulum-v1", "pendulum", BC, "swingup", 200, window=50),
    "hopper-dynamics": Collection("Hopper-v5", "hopper", DYNAMICS, "random", 400, window=10),
    "halfcheetah-dynamics": Collection("HalfCheetah-v5", "halfcheetah", DYNAMICS, "random", 100, 100, 25),
    "walker2d-dynamics": Collection("Walker2d-v5", "walker2d", DYNAMICS, "random", 600, window=10),
    "ant-dynamics": Collection(
        "Ant-v5", "ant", DYNAMICS, "random", 300, 100, 20, {"include_cfrc_ext_in_observation": False}
    ),
    "swimmer-dynamics": Collection("Swimmer-v5", "swimmer", DYNAMICS, "random", 200, 100, 25),
    "reacher-dynamics": Collection("Reacher-v5", "reacher", DYNAMICS, "random", 200, window=10),
    "inverted-double-pendulum-dynamics": Collection(
        "InvertedDoublePendulum-v5",
        "inverted-double-pendulum",
        DYNAMICS,
        "random",
        1000,
        window=5,
    ),
    "pendulum-dynamics": Collection("Pendulum-v1", "pendulum", DYNAMICS, "random", 200, 100, 20),
    # held out of the zoo (sweeps/zoo-test.toml): the parent never learns from them
    "pusher-dynamics": Collection("Pusher-v5", "pusher", DYNAMICS, "random", 200, window=20),
    "pusher-cloning": Collection("Pusher-v5", "pusher", BC, "smooth", 200, window=50),
    "swimmer-cloning": Collection("Swimmer-v5", "swimmer", BC, "smooth", 200, 100, 50),
    "halfcheetah-cloning": Collection("HalfCheetah-v5", "halfcheetah", BC, "smooth", 200, 100, 50),
    "reacher-cloning": Collection("Reacher-v5", "reacher", BC, "smooth", 200, window=25),
    "ant-cloning": Collection(
        "Ant-v5", "ant", BC, "smooth", 300, 100, 20, {"include_cfrc_ext_in_observation": False}
    ),
    "walker2d-cloning": Collection("Walker2d-v5", "walker2d", BC, "smooth", 600, window=10),
    "hopper-cloning": Collection("Hopper-v5", "hopper", BC, "smooth", 400, window=10),
    # the third batch held out of the zoo (sweeps/zoo-test3.toml)
    "humanoid-cloning": Collection(
        "Humanoid-v5",
        "humanoid",
        BC,
        "smooth",
        1200,
        window=10,
        env_kwargs=HUMANOID_POSITIONS_VELOCITIES,
    ),
    "pendulum-cloning": Collection("Pendulum-v1", "pendulum", BC, "smooth", 200, 100, 20),
    "inverted-double-pendulum-cloning": Collection(
        "InvertedDoublePendulum-v5", "inverted-double-pendulum", BC, "smooth", 2000, window=5
    ),
    # the fourth batch held out of the zoo (sweeps/zoo-test4.toml)
    "door-cloning": Collection("AdroitHandDoor-v1", "door", BC, "smooth", 200, window=25),
    "humanoid-dynamics": Collection(
        "Humanoid-v5",
        "humanoid",
        DYNAMICS,
        "random",
        1200,
        window=10,
        env_kwargs=HUMANOID_POSITIONS_VELOCITIES,
    ),
    "mountaincar-cloning": Collection("MountainCarContinuous-v0", "mountaincar", BC, "smooth", 200, 100, 20),
    # the fifth batch held out of the zoo (sweeps/zoo-test5.toml)
    "inverted-pendulum-cloning": Collection(
        "InvertedPendulum-v5", "inverted-pendulum", BC, "smooth", 6000, window=5
    ),
    "inverted-pendulum-dynamics": Collection(
        "InvertedPendulum-v5", "inverted-pendulum", DYNAMICS, "random", 3000, window=5
    ),
    "pen-dynamics": Collection("AdroitHandPen-v1", "pen", DYNAMICS, "random", 300, window=10),
}


def can_collect(env_id: str) -> bool:
    """Whether the simulator for ``env_id`` is installed (all of these run offline)."""
    needs = ["gymnasium"]
    if not env_id.startswith(("Pendulum", "MountainCar")):
        needs.append("mujoco")
    if env_id.startswith("Adroit"):
        needs.append("gymnasium_robotics")
    return all(importlib.util.find_spec(m) is not None for m in needs)


def build(
    name: str,
    seed: int = 0,
    episodes: int = 100,
    max_steps: int | None = None,
    collect_seed: int = 0,
    window: int | None = None,
    progress: Progress | None = None,
) -> Task:
    """The task ``name`` of :data:`COLLECTIONS` (collected first if need be, the collection reported
    through ``progress`` in episodes). Inputs and targets ``[N, window, n]`` float32, normalised."""
    spec = COLLECTIONS[name]
    check_int("seed", seed, 0)  # fail on a bad seed or window before collecting
    if window is not None:
        check_int("window", window, 1)
    dataset_id = minari_io.local_collection(
        spec.env_id,
        spec.short,
        spec.policy,
        episodes,
        collect_seed,
        max_steps,
        spec.env_kwargs or None,
        progress,
    )
    return minari_tasks.episode_task(name, dataset_id, spec.kind, seed, window)


def builder(name: str) -> Callable[..., Task]:
    """``builder(seed=0, **options) -> Task`` for ``name``, its options defaulting to its collection."""
    spec = COLLECTIONS[name]
    return functools.partial(
        build, name, episodes=spec.episodes, max_steps=spec.max_steps, window=spec.window
    )
