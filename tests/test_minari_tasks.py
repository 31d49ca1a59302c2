"""Minari tasks on tiny datasets collected here from the real environments (offline, in tmp dirs)."""

import json
import time

import minari
import numpy as np
import pytest
import torch

from sbrnn.datasets import envs, minari_io, rollout_tasks, windows
from sbrnn.datasets.registry import build_task, get_info, task_names
from sbrnn.errors import SbrnnError

pytestmark = pytest.mark.usefixtures("offline_minari")

HAMMER = "local/hammer/random-v0"
EPISODES, STEPS = 5, 12


@pytest.fixture(scope="module")
def hammer():
    """Five 12-step episodes of uniform random actions in AdroitHandHammer-v1, and the raw arrays."""
    summary = minari_io.collect(HAMMER, "AdroitHandHammer-v1", EPISODES, "random", seed=0, max_steps=STEPS)
    episodes = list(minari.load_dataset(HAMMER).iterate_episodes())
    return summary, episodes


def test_collect_writes_an_arrow_minari_dataset_of_real_rollouts(hammer):
    summary, episodes = hammer
    assert summary["episodes"] == EPISODES and summary["steps"] == EPISODES * STEPS
    assert HAMMER in minari.list_local_datasets()
    metadata = minari.load_dataset(HAMMER).storage.metadata
    assert metadata["data_format"] == "arrow" and metadata["total_episodes"] == EPISODES
    collection = metadata[minari_io.COLLECTION_KEY]
    assert collection["policy"] == "random" and collection["seed"] == 0
    for episode in episodes:
        assert episode.observations.shape == (STEPS + 1, 46) and episode.actions.shape == (STEPS, 26)
        assert np.all(np.abs(episode.actions) <= 1) and np.isfinite(episode.rewards).all()
    # real dynamics: the hand moves, and episodes from different reset seeds differ
    assert not np.allclose(episodes[0].observations[0], episodes[0].observations[-1])
    assert not np.allclose(episodes[0].observations[0], episodes[1].observations[0])
    assert summary["mean_return"] == pytest.approx(np.mean([e.rewards.sum() for e in episodes]))


def test_collection_is_seeded(hammer):
    _, episodes = hammer
    minari_io.collect("local/hammer/again-v0", "AdroitHandHammer-v1", 2, "random", seed=0, max_steps=STEPS)
    minari_io.collect("local/hammer/other-v0", "AdroitHandHammer-v1", 2, "random", seed=1, max_steps=STEPS)
    again = list(minari.load_dataset("local/hammer/again-v0").iterate_episodes())
    other = list(minari.load_dataset("local/hammer/other-v0").iterate_episodes())
    for a, b in zip(again, episodes):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.allclose(other[0].actions, again[0].actions)


def train_episode_arrays(episodes, seed, kind):
    train, _, _ = windows.split_episodes(len(episodes), seed)
    pairs = [
        windows._pairs(
            kind, episodes[i].observations.astype(np.float64), episodes[i].actions.astype(np.float64)
        )
        for i in train
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_behaviour_cloning_round_trip(hammer):
    _, episodes = hammer
    task = build_task(f"minari:{HAMMER}", seed=3)
    assert (task.name, task.n_x, task.n_y, task.steps) == (f"minari:{HAMMER}", 46, 26, STEPS)
    assert task.loss == "mse"
    assert task.meta["episodes"] == {"train": 3, "val": 1, "test": 1}
    assert [len(task.train), len(task.val), len(task.test)] == [3, 1, 1]  # whole episodes
    assert task.meta["whole_episodes"] and task.meta["env_id"] == "AdroitHandHammer-v1"
    inputs, targets = train_episode_arrays(episodes, 3, "behaviour_cloning")
    mean, std = np.asarray(task.meta["input_mean"]), np.asarray(task.meta["input_std"])
    # fitted on the train split only: equal to its moments, not to those of all episodes
    np.testing.assert_allclose(mean, np.concatenate(inputs).mean(0), atol=1e-9)
    everything = np.concatenate([e.observations[:-1] for e in episodes])
    assert not np.allclose(mean, everything.mean(0))
    # inputs are obs_0..obs_{T-1} (final observation dropped), targets the actions
    x = task.train.x.double().numpy() * std + mean
    target_std, target_mean = np.asarray(task.meta["target_std"]), np.asarray(task.meta["target_mean"])
    y = task.train.y.double().numpy() * target_std + target_mean
    np.testing.assert_allclose(x, np.stack(inputs), atol=1e-4)
    np.testing.assert_allclose(y, np.stack(targets), atol=1e-5)
    json.dumps(task.meta)  # JSON-ready, as a checkpoint writes it


def test_split_is_by_episode_and_seeded():
    parts = windows.split_episodes(5000, seed=0)
    assert [len(p) for p in parts] == [4500, 250, 250]  # hammer expert-v2: the paper's split
    assert len(set(np.concatenate(parts).tolist())) == 5000
    assert [len(p) for p in windows.split_episodes(100, 0)] == [90, 5, 5]
    assert not np.array_equal(windows.split_episodes(100, 0)[1], windows.split_episodes(100, 1)[1])
    with pytest.raises(SbrnnError, match="at least 3 episodes"):
        windows.split_counts(2)


def test_windows_slice_each_episode(hammer):
    _, episodes = hammer
    task = build_task(f"minari:{HAMMER}", seed=3, window=5)
    assert task.steps == 5 and len(task.train) == 3 * 2  # 12 steps -> 2 windows, tail of 2 dropped
    inputs, _ = train_episode_arrays(episodes, 3, "behaviour_cloning")
    mean, std = np.asarray(task.meta["input_mean"]), np.asarray(task.meta["input_std"])
    x = task.train.x.double().numpy() * std + mean
    np.testing.assert_allclose(x[0], inputs[0][0:5], atol=1e-4)
    np.testing.assert_allclose(x[1], inputs[0][5:10], atol=1e-4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SbrnnError, match="window"):
            build_task(f"minari:{HAMMER}", window=bad)
    with pytest.raises(SbrnnError, match="longer than every episode"):
        build_task(f"minari:{HAMMER}", window=13)


def test_task_tensors_are_cached(hammer, monkeypatch):
    first = build_task(f"minari:{HAMMER}", seed=4)
    monkeypatch.setattr(windows, "build_tensors", lambda *a: pytest.fail("built twice"))
    second = build_task(f"minari:{HAMMER}", seed=4)
    assert torch.equal(first.train.x, second.train.x) and first.traits == second.traits
    assert (first.meta.pop("cache")["hit"], second.meta.pop("cache")["hit"]) == (False, True)
    assert first.meta == second.meta


def test_remote_dataset_missing_offline_fails_fast_with_the_way_out():
    started = time.perf_counter()
    with pytest.raises(SbrnnError) as error:
        build_task("minari:D4RL/hammer/expert-v2")
    assert time.perf_counter() - started < 5
    message = str(error.value)
    assert "\n" not in message
    assert "minari download D4RL/hammer/expert-v2" in message and "sbrnn datasets collect" in message
    info = get_info("minari:D4RL/hammer/expert-v2")
    assert (info.n_x, info.n_y, info.steps) == (46, 26, 200) and info.offline() is False


def test_registry_resolves_local_minari_ids(hammer):
    info = get_info(f"minari:{HAMMER}")
    assert (info.n_x, info.n_y, info.steps, info.loss, info.offline()) == (46, 26, STEPS, "mse", True)
    assert f"minari:{HAMMER}" in task_names()
    with pytest.raises(SbrnnError, match="not in the local Minari path"):
        get_info("minari:local/nothing-v0")
    for bad in ("bad id!", "D4RL/hammer", ""):
        with pytest.raises(SbrnnError, match="malformed"):
            get_info(f"minari:{bad}")
    shapes = {
        n: (get_info(n).n_x, get_info(n).n_y)
        for n in ("hammer-local", "hopper-dynamics", "halfcheetah-dynamics")
    }
    assert shapes == {"hammer-local": (46, 26), "hopper-dynamics": (14, 11), "halfcheetah-dynamics": (23, 17)}


def test_dynamics_targets_are_observation_changes():
    task = rollout_tasks.build("hopper-dynamics", seed=0, episodes=8, window=3)
    assert (task.name, task.n_x, task.n_y, task.steps) == ("hopper-dynamics", 14, 11, 3)
    dataset_id = task.meta["dataset_id"]
    assert dataset_id == "sbrnn/hopper/random-e8-s0-v0" and task.meta["kind"] == "forward_dynamics"
    episodes = list(minari.load_dataset(dataset_id).iterate_episodes())
    assert len({len(e.actions) for e in episodes}) > 1  # the hopper falls: unequal episode lengths
    train, _, _ = windows.split_episodes(len(episodes), 0)
    first = episodes[train[0]]
    x = task.train.x[0].double().numpy() * task.meta["input_std"] + np.asarray(task.meta["input_mean"])
    y = task.train.y[0].double().numpy() * task.meta["target_std"] + np.asarray(task.meta["target_mean"])
    np.testing.assert_allclose(x[:, :11], first.observations[:3], atol=1e-4)
    np.testing.assert_allclose(x[:, 11:], first.actions[:3], atol=1e-4)
    np.testing.assert_allclose(y, first.observations[1:4] - first.observations[:3], atol=1e-4)


def test_collection_reports_progress_only_to_a_callback(capsys):
    calls = []
    task = build_task(
        "pendulum-dynamics", episodes=3, max_steps=20, window=5, progress=lambda *call: calls.append(call)
    )
    dataset_id = task.meta["dataset_id"]
    assert dataset_id == "sbrnn/pendulum/random-e3-t20-s0-v0"
    assert calls == [(f"collecting {dataset_id}", done, 3) for done in range(4)]  # per episode
    build_task("pendulum-dynamics", episodes=4, max_steps=20, window=5)  # collects, without a callback
    assert capsys.readouterr().err == ""


def test_local_collection_happens_once_and_replaces_a_half_written_one(monkeypatch):
    dataset_id = minari_io.local_collection("Hopper-v5", "hopper", "random", 3, seed=5, max_steps=4)
    assert dataset_id == "sbrnn/hopper/random-e3-t4-s5-v0"
    calls = []
    real_collect = minari_io.collect
    monkeypatch.setattr(minari_io, "collect", lambda *a, **k: calls.append(a) or real_collect(*a, **k))
    assert minari_io.local_collection("Hopper-v5", "hopper", "random", 3, seed=5, max_steps=4) == dataset_id
    assert calls == []
    metadata_file = minari_io.metadata_file(dataset_id)  # as if the collecting process had been killed
    metadata = json.loads(metadata_file.read_text())
    del metadata[minari_io.COLLECTION_KEY]
    metadata_file.write_text(json.dumps(metadata))
    minari_io.local_collection("Hopper-v5", "hopper", "random", 3, seed=5, max_steps=4)
    assert len(calls) == 1 and minari_io._complete(dataset_id)


def test_hammer_local_clones_the_smooth_policy():
    task = rollout_tasks.builder("hammer-local")(seed=0, episodes=3)
    assert (task.name, task.n_x, task.n_y, task.steps) == ("hammer-local", 46, 26, 200)
    assert task.meta["collection"]["policy"] == "smooth" and task.meta["kind"] == "behaviour_cloning"
    assert [len(task.train), len(task.val), len(task.test)] == [1, 1, 1]


def test_smooth_policy_is_correlated_and_inside_the_box():
    from gymnasium.spaces import Box

    space = Box(-2.0, 1.0, (3,), np.float32)
    policy = envs.make_policy("smooth", space, seed=0)
    policy.reset()
    actions = np.stack([policy.act(None) for _ in range(2000)])
    assert actions.min() >= -2 and actions.max() <= 1 and actions.dtype == np.float32
    lag1 = np.corrcoef(actions[:-1, 0], actions[1:, 0])[0, 1]
    assert lag1 > 0.8
    random_policy = envs.make_policy("random", space, seed=0)
    uniform = np.stack([random_policy.act(None) for _ in range(2000)])
    assert abs(np.corrcoef(uniform[:-1, 0], uniform[1:, 0])[0, 1]) < 0.1


def test_bad_collection_inputs(hammer, monkeypatch):
    with pytest.raises(SbrnnError, match="already exists"):
        minari_io.collect(HAMMER, "AdroitHandHammer-v1", 1)
    with pytest.raises(SbrnnError, match="malformed"):
        minari_io.collect("no such id!", "AdroitHandHammer-v1", 1)
    with pytest.raises(SbrnnError, match="out of range"):
        minari_io.collect("local/x-v0", "Hopper-v5", 0)
    with pytest.raises(SbrnnError, match="cannot be made"):
        minari_io.collect("local/x-v0", "NoSuchEnv-v0", 1)
    with pytest.raises(SbrnnError, match="policy 'greedy' is unknown"):
        minari_io.collect("local/x-v0", "Hopper-v5", 1, "greedy")
    with pytest.raises(SbrnnError, match="seed = -1"):
        minari_io.collect("local/x-v0", "Hopper-v5", 1, seed=-1)
    monkeypatch.setattr(minari_io, "collect", lambda *a, **k: pytest.fail("collected before checking"))
    for bad in ({"episodes": 2}, {"episodes": "many"}, {"collect_seed": -1}, {"seed": -3}, {"window": 0}):
        with pytest.raises(SbrnnError, match="out of range"):
            build_task("hopper-dynamics", **bad)
    assert not minari_io.dataset_path("local/x-v0").exists()


def test_hdf5_dataset_with_reference_scores_builds(hammer):
    """D4RL's datasets are HDF5 with ref_min_score / ref_max_score in their metadata."""
    import warnings

    from minari.data_collector.episode_buffer import EpisodeBuffer

    _, episodes = hammer
    buffers = [
        EpisodeBuffer(
            observations=e.observations,
            actions=e.actions,
            rewards=list(e.rewards),
            terminations=list(e.terminations),
            truncations=list(e.truncations),
        )
        for e in episodes
    ]
    env = envs.make_env("AdroitHandHammer-v1", STEPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "test/hammer/h5-v0", buffers, env=env, data_format="hdf5", ref_min_score=-10.0, ref_max_score=90.0
        )
    env.close()
    task = build_task("minari:test/hammer/h5-v0", seed=3)
    reference = build_task(f"minari:{HAMMER}", seed=3)
    assert torch.equal(task.train.x, reference.train.x) and torch.equal(task.test.y, reference.test.y)
    assert (task.meta["ref_min_score"], task.meta["ref_max_score"]) == (-10.0, 90.0)
    assert "ref_min_score" not in reference.meta
