"""A trained child as a policy in the real hammer environment; `datasets collect`, `child evaluate --env`."""

import json

import minari
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sbrnn.child.checkpoint import load_model
from sbrnn.child.config import RunConfig
from sbrnn.child.rollout import ChildPolicy, evaluate_in_env, load_policy
from sbrnn.child.train import train_run
from sbrnn.cli import app
from sbrnn.datasets import envs, minari_io
from sbrnn.errors import SbrnnError

pytestmark = pytest.mark.usefixtures("offline_minari")

HAMMER = "local/hammer/random-v0"
runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny dense child trained one epoch on 5 collected 12-step hammer episodes, in 6-step windows."""
    minari_io.collect(HAMMER, "AdroitHandHammer-v1", 5, "random", seed=0, max_steps=12)
    directory = tmp_path_factory.mktemp("model")
    config = RunConfig(
        task=f"minari:{HAMMER}",
        task_options={"window": 6},
        arch="dense",
        budget=None,
        hidden=8,
        epochs=1,
        batch_size=4,
    )
    record = train_run(config, save=directory)
    assert record.status == "ok", record.error
    return directory


def test_evaluate_in_env_runs_the_policy_and_scores_it(model_dir):
    result = evaluate_in_env(model_dir, "AdroitHandHammer-v1", episodes=2, seed=0, max_steps=8)
    assert result.lengths == [8, 8] and result.mean_length == 8 and len(result.returns) == 2
    assert np.isfinite(result.returns).all()
    assert result.mean_return == pytest.approx(np.mean(result.returns))
    assert result.std_return == pytest.approx(np.std(result.returns))
    assert (result.ref_min_score, result.ref_max_score) == (-267.07, 12635.71)
    assert "D4RL" in result.ref_source
    expected = 100 * (result.mean_return + 267.07) / (12635.71 + 267.07)
    assert result.mean_normalised_score == pytest.approx(expected)
    assert json.loads(json.dumps(result.to_dict()))["returns"] == result.returns
    again = evaluate_in_env(model_dir, "AdroitHandHammer-v1", episodes=2, seed=0, max_steps=8)
    assert again.returns == result.returns  # seeded


def test_policy_carries_state_and_normalises_both_ways(model_dir):
    module, info = load_model(model_dir)
    meta = info["task"]["meta"]
    env = envs.make_env("AdroitHandHammer-v1")
    policy = ChildPolicy(module, meta, env.action_space)
    observations = next(iter(minari.load_dataset(HAMMER).iterate_episodes())).observations[:-1]
    policy.reset()
    actions = np.stack([policy.act(o) for o in observations])
    x = (observations - np.asarray(meta["input_mean"])) / np.asarray(meta["input_std"])
    with torch.no_grad():
        y = module(torch.from_numpy(x).float()[None])[0].double().numpy()
    expected = np.clip(y * np.asarray(meta["target_std"]) + np.asarray(meta["target_mean"]), -1, 1)
    np.testing.assert_allclose(actions, expected, atol=1e-5)  # == the whole-sequence forward pass
    assert not np.allclose(actions[0], actions[1])
    policy.reset()
    np.testing.assert_allclose(policy.act(observations[0]), actions[0], atol=1e-6)
    loud = ChildPolicy(module, {**meta, "target_std": [1e4] * 26}, env.action_space)
    loud.reset()
    clipped = np.stack([loud.act(o) for o in observations])
    assert clipped.min() >= -1 and clipped.max() <= 1 and np.isin(clipped, [-1, 1]).mean() > 0.5
    env.close()


def test_load_policy_refuses_other_tasks_and_environments(model_dir, tmp_path):
    hopper = envs.make_env("Hopper-v5")
    with pytest.raises(SbrnnError, match="maps 46 observations to 26 actions"):
        load_policy(model_dir, hopper)
    config = RunConfig(
        task="toy-regression",
        task_options={"n_train": 32, "n_val": 8, "n_test": 8},
        arch="dense",
        budget=None,
        hidden=4,
        epochs=1,
    )
    assert train_run(config, save=tmp_path / "toy").status == "ok"
    with pytest.raises(SbrnnError, match="not behaviour cloning"):
        load_policy(tmp_path / "toy", hopper)
    hopper.close()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_collect_with_random_and_trained_policies(model_dir):
    result = invoke(
        "datasets",
        "collect",
        "--env",
        "AdroitHandHammer-v1",
        "--episodes",
        2,
        "--max-steps",
        5,
        "--id",
        "local/hammer/cli-v0",
        "--seed",
        3,
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["episodes"], summary["steps"], summary["policy"], summary["seed"]) == (2, 10, "random", 3)
    assert "local/hammer/cli-v0" in minari.list_local_datasets()
    result = invoke(
        "datasets",
        "collect",
        "--env",
        "AdroitHandHammer-v1",
        "--episodes",
        2,
        "--max-steps",
        5,
        "--id",
        "local/hammer/child-v0",
        "--policy",
        model_dir,
    )
    assert result.exit_code == 0, result.output
    metadata = minari.load_dataset("local/hammer/child-v0").storage.metadata
    assert metadata["algorithm_name"].startswith("sbrnn child")


def test_cli_evaluate_env(model_dir):
    result = invoke(
        "child",
        "evaluate",
        "--model",
        model_dir,
        "--env",
        "AdroitHandHammer-v1",
        "--episodes",
        2,
        "--max-steps",
        6,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["lengths"] == [6, 6] and np.isfinite(report["mean_return"])
    assert report["mean_normalised_score"] is not None
    table = invoke(
        "child",
        "evaluate",
        "--model",
        model_dir,
        "--env",
        "AdroitHandHammer-v1",
        "--episodes",
        2,
        "--max-steps",
        6,
    )
    assert table.exit_code == 0 and "normalised score" in table.output


COLLECT = ["datasets", "collect", "--episodes", 1]
EVALUATE = ["child", "evaluate", "--model", "MODEL"]


@pytest.mark.parametrize(
    "args, message",
    [
        (COLLECT + ["--env", "NoSuchEnv-v0", "--id", "local/a-v0"], "cannot be made"),
        (
            ["datasets", "collect", "--env", "Hopper-v5", "--episodes", 0, "--id", "local/a-v0"],
            "episodes = 0",
        ),
        (COLLECT + ["--env", "Hopper-v5", "--id", "bad id!"], "malformed"),
        (COLLECT + ["--env", "Hopper-v5", "--id", HAMMER], "already exists"),
        (COLLECT + ["--env", "Hopper-v5", "--id", "local/a-v0", "--policy", "greedy"], "is unknown"),
        (COLLECT + ["--env", "Hopper-v5", "--id", "local/a-v0", "--max-steps", 0], "max steps = 0"),
        (EVALUATE + ["--env", "Hopper-v5", "--episodes", 1], "maps 46 observations"),
        (EVALUATE + ["--env", "AdroitHandHammer-v1", "--episodes", 0], "episodes = 0"),
        (EVALUATE + ["--env", "AdroitHandHammer-v1", "--task", "toy-regression"], "do not apply with --env"),
        (["child", "evaluate", "--model", "no/such/dir", "--env", "AdroitHandHammer-v1"], "no saved model"),
    ],
)
def test_cli_bad_inputs_exit_2(model_dir, args, message):
    result = invoke(*[model_dir if a == "MODEL" else a for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not minari_io.dataset_path("local/a-v0").exists()


def test_reference_scores_prefer_the_training_dataset_of_the_same_environment():
    from sbrnn.child.rollout import normalised_score, reference_scores

    meta = {
        "env_id": "AdroitHandHammer-v1",
        "dataset_id": "local/h-v0",
        "ref_min_score": 1.0,
        "ref_max_score": 2.0,
    }
    assert reference_scores("AdroitHandHammer-v1", meta) == (1.0, 2.0, "dataset local/h-v0")
    table = reference_scores("AdroitHandHammer-v1", {"env_id": "AdroitHandHammer-v1"})
    assert table[:2] == (-267.07, 12635.71)
    assert reference_scores("Hopper-v5", meta) is None
    np.testing.assert_allclose(normalised_score([-267.07, 12635.71], -267.07, 12635.71), [0, 100])
