"""The task zoo: every registered task builds offline at a tiny size with the registry's dims and
finite traits; the list contract; the classic tasks, the scripted policy and the traits by hand."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sbrnn.cli import app
from sbrnn.datasets import classic, envs, minari_io, registry, seqdigits
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.datasets.task import Split, Task
from sbrnn.datasets.traits import TRAIT_NAMES, task_traits
from sbrnn.errors import SbrnnError

pytestmark = pytest.mark.usefixtures("offline_minari")

TINY = {"n_train": 24, "n_val": 8, "n_test": 8, "episodes": 3}
"""Options that shrink a task, where it takes them; collected tasks keep their windows and horizons,
so their dims are the registry's."""
EPISODES = {
    "hopper-dynamics": 6,
    "walker2d-dynamics": 6,
    "inverted-double-pendulum-dynamics": 20,
    "inverted-double-pendulum-cloning": 100,
    "inverted-pendulum-cloning": 300,
    "inverted-pendulum-dynamics": 100,
}
"""Tasks whose episodes can be shorter than a window need a few more for every split to hold one."""
ZOO = sorted(name for name, info in registry._REGISTRY.items() if info.source not in ("mnist", "minari"))
"""Every registered task but those that read data from outside (MNIST files, a Minari download)."""


def tiny_options(name: str) -> dict:
    allowed = registry.task_options(get_info(name))
    options = {k: v for k, v in TINY.items() if k in allowed}
    if name in EPISODES:
        options["episodes"] = EPISODES[name]
    return options


def test_the_zoo_is_offline_here():
    assert set(registry._REGISTRY) - set(ZOO) == {"rad-mnist", "minari:D4RL/hammer/expert-v2"}
    assert all(get_info(name).offline() for name in ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_every_task_builds_tiny_with_the_registry_dims_and_finite_traits(name):
    info = get_info(name)
    task = build_task(name, seed=1, **tiny_options(name))
    assert (task.name, task.n_x, task.n_y, task.steps, task.loss) == (
        name,
        info.n_x,
        info.n_y,
        info.steps,
        info.loss,
    )
    for split in (task.train, task.val, task.test):
        assert len(split) > 0 and tuple(split.x.shape[1:]) == (info.steps, info.n_x)
        assert torch.isfinite(split.x.float()).all() and torch.isfinite(split.y.float()).all()
        if task.is_classification:
            assert split.y.dtype == torch.int64 and 0 <= int(split.y.min()) <= int(split.y.max()) < task.n_y
        else:
            assert tuple(split.y.shape[1:]) == (info.steps, info.n_y)
    assert tuple(task.traits) == TRAIT_NAMES
    assert all(v is None or math.isfinite(v) for v in task.traits.values())
    assert task.traits["n_train"] == len(task.train) and task.traits["baseline_loss"] >= 0
    classification = ("class_entropy",)
    regression = ("target_std", "target_autocorr")
    for key in classification if task.is_classification else regression:
        assert task.traits[key] is not None
    for key in regression if task.is_classification else classification:
        assert task.traits[key] is None
    if task.is_classification:
        assert 0 <= task.traits["class_entropy"] <= 1
    assert info.family in registry.FAMILIES and info.description


def test_list_json_contract():
    result = CliRunner().invoke(app, ["datasets", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    keys = {"name", "family", "n_x", "n_y", "steps", "loss", "source", "size_on_disk", "offline"}
    assert all(keys <= set(row) for row in rows)
    assert len(rows) >= 24
    assert len({(r["n_x"], r["n_y"], r["steps"], r["loss"]) for r in rows}) >= 20
    assert min(r["n_x"] for r in rows) == 1 and max(r["n_x"] for r in rows) == 2500
    assert min(r["n_y"] for r in rows) == 1 and max(r["n_y"] for r in rows) >= 26
    assert min(r["steps"] for r in rows) == 4 and max(r["steps"] for r in rows) == 200
    assert len({r["family"] for r in rows}) >= 6 and {r["loss"] for r in rows} == {"cross_entropy", "mse"}
    assert all(r["size_on_disk"] is None or r["size_on_disk"] > 0 for r in rows)


def test_size_on_disk_counts_the_default_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path))
    info = get_info("parity")
    assert info.as_dict()["size_on_disk"] is None
    task = build_task("parity")
    size = info.as_dict()["size_on_disk"]
    assert size > Path(task.meta["cache"]["path"]).stat().st_size > 0  # the data and the traits record
    build_task("parity", n_train=10)  # another options' build is not the default's
    assert info.as_dict()["size_on_disk"] == size


def test_traits_are_cached_with_the_task(monkeypatch):
    first = build_task("adding-50", seed=2, n_train=16, n_val=8, n_test=8)
    monkeypatch.setattr(registry, "task_traits", lambda task: pytest.fail("traits computed twice"))
    second = build_task("adding-50", seed=2, n_train=16, n_val=8, n_test=8)
    assert first.traits == second.traits and torch.equal(first.train.x, second.train.x)


def test_traits_by_hand():
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]]).unsqueeze(-1)  # [2, 4, 1]
    labels = torch.tensor([0, 0])
    task = Task(
        "hand", 1, 2, 4, "cross_entropy", Split(x, labels), Split(x, torch.tensor([0, 1])), Split(x, labels)
    )
    traits = task_traits(task)
    assert traits["n_train"] == 2.0 and traits["input_zero_frac"] == 0.5
    assert traits["input_std"] == pytest.approx(math.sqrt(0.5))
    # pairs (1,-1),(-1,1),(1,-1) and three (0,0) around the mean 0: sum -3 over 6 pairs, var 0.5
    assert traits["input_autocorr"] == pytest.approx(-1.0)
    assert traits["class_entropy"] == 0.0 and traits["target_std"] is None
    prior = np.array([3 / 4, 1 / 4])  # counts (2, 0) add-one smoothed
    assert traits["baseline_loss"] == pytest.approx(-(np.log(prior[0]) + np.log(prior[1])) / 2)
    y = torch.arange(8.0).view(2, 4, 1)
    regression = task_traits(Task("hand", 1, 1, 4, "mse", Split(x, y), Split(x, y + 1), Split(x, y)))
    assert regression["target_std"] == pytest.approx(np.arange(8.0).std())
    assert regression["baseline_loss"] == pytest.approx(np.mean((np.arange(8.0) + 1 - 3.5) ** 2))
    assert regression["class_entropy"] is None and 0 < regression["target_autocorr"] <= 1


def test_classic_tasks_by_construction():
    add = classic.adding("adding", seed=0, steps=7, n_train=40, n_val=4, n_test=4)
    x, y = add.train.x, add.train.y[..., 0]
    assert torch.equal(x[..., 1].sum(1), torch.full((40,), 2.0))
    assert (x[:, :4, 1].sum(1) == 1).all() and (x[:, 4:, 1].sum(1) == 1).all()  # one marker per half
    torch.testing.assert_close(y[:, -1], (x[..., 0] * x[..., 1]).sum(1))
    parity = classic.parity("parity", seed=0, steps=8, n_train=300, n_val=40, n_test=40)
    patterns = {
        s: {tuple(r) for r in getattr(parity, s).x[..., 0].tolist()} for s in ("train", "val", "test")
    }
    assert not patterns["train"] & patterns["val"] and not patterns["train"] & patterns["test"]
    assert not patterns["val"] & patterns["test"] and len(patterns["val"]) == 40
    assert torch.equal(parity.train.y, ((parity.train.x[..., 0] > 0).sum(1) % 2))
    recall = classic.recall(
        "recall", seed=0, steps=6, symbols=4, distractor_prob=1.0, n_train=30, n_val=4, n_test=4
    )
    rx = recall.train.x
    assert torch.equal(rx[:, 0, :4].argmax(1), recall.train.y) and (rx[:, 0, 4] == 1).all()
    assert (rx[:, 1:-1, :4].sum(-1) == 1).all() and (rx[:, -1, 5] == 1).all() and (rx[:, -1, :5] == 0).all()
    again = classic.recall(
        "recall", seed=0, steps=6, symbols=4, distractor_prob=1.0, n_train=30, n_val=4, n_test=4
    )
    other = classic.recall(
        "recall", seed=1, steps=6, symbols=4, distractor_prob=1.0, n_train=30, n_val=4, n_test=4
    )
    assert torch.equal(again.train.x, rx) and not torch.equal(other.train.x, rx)


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("parity", {"steps": 21}, "steps 21 is not allowed"),
        ("parity", {"steps": 4, "n_val": 8, "n_test": 8}, "n_val + n_test 16 is not allowed"),
        ("adding-50", {"n_train": 0}, "n_train 0 is not allowed"),
        ("delayed-recall", {"distractor_prob": 1.5}, "distractor_prob 1.5 is not allowed"),
        ("pixel-digits-permuted", {"permutation_seed": -1}, "permutation_seed -1 is not allowed"),
        ("rad16-n5", {"side": 8}, "side 8 is not allowed"),
    ],
)
def test_bad_options_are_one_line_errors(name, options, fragment):
    with pytest.raises(SbrnnError, match=re.escape(fragment)) as error:
        build_task(name, **options)
    assert "\n" not in str(error.value)


def test_digit_readings_are_the_same_pixels():
    rows, pixels = build_task("seq-digits"), build_task("pixel-digits")
    patches, permuted = build_task("patch-digits"), build_task("pixel-digits-permuted")
    assert torch.equal(rows.train.x.reshape(-1, 64), pixels.train.x.reshape(-1, 64))
    order = seqdigits.pixel_order("patches")
    assert torch.equal(patches.train.x.reshape(-1, 64), pixels.train.x.reshape(-1, 64)[:, order])
    assert sorted(seqdigits.pixel_order("permuted").tolist()) == list(range(64))
    assert torch.equal(
        permuted.train.x.reshape(-1, 64), pixels.train.x.reshape(-1, 64)[:, seqdigits.pixel_order("permuted")]
    )
    assert not torch.equal(seqdigits.pixel_order("permuted", 1), seqdigits.pixel_order("permuted", 0))
    columns = build_task("column-digits").train.x  # step t is column t of the image, top to bottom
    assert torch.equal(columns, rows.train.x.transpose(1, 2))
    quadrants = build_task("quadrant-digits").train.x.reshape(-1, 2, 2, 4, 4)  # [N, qr, qc, r, c]
    assert torch.equal(quadrants.permute(0, 1, 3, 2, 4).reshape(-1, 8, 8), rows.train.x)
    snake = build_task("snake-digits").train.x  # even rows as read, odd rows right to left
    assert torch.equal(snake[:, 0::2], rows.train.x[:, 0::2])
    assert torch.equal(snake[:, 1::2], rows.train.x[:, 1::2].flip(2))
    halfrows = build_task("halfrow-digits").train.x  # [N, 16, 4]: step 2r + k is half k of row r
    assert halfrows.shape[1:] == (16, 4) and torch.equal(halfrows.reshape(-1, 8, 8), rows.train.x)
    upward = build_task("upward-digits").train.x  # step t is image row 7 - t
    assert torch.equal(upward, rows.train.x.flip(1))
    halfcolumns = build_task("halfcolumn-digits").train.x  # step 2c + k is half k of column c
    assert halfcolumns.shape[1:] == (16, 4) and torch.equal(halfcolumns.reshape(-1, 8, 8), columns)
    leftward = build_task("leftward-digits").train.x  # step t is column 7 - t
    assert torch.equal(leftward, columns.flip(1))
    patches = build_task("patch-digits").train.x  # [N, 16, 4]: step p is patch p, raster order
    assert torch.equal(build_task("backpatch-digits").train.x, patches.flip(1))
    colsnake = build_task("colsnake-digits").train.x  # even columns as read, odd columns bottom to top
    assert torch.equal(colsnake[:, 0::2], columns[:, 0::2])
    assert torch.equal(colsnake[:, 1::2], columns[:, 1::2].flip(2))
    rowpairs = build_task("rowpair-digits").train.x  # [N, 4, 16]: step s is image rows 2s and 2s + 1
    assert rowpairs.shape[1:] == (4, 16) and torch.equal(rowpairs.reshape(-1, 8, 8), rows.train.x)


def test_swingup_policy_balances_the_pendulum_and_only_it():
    env = envs.make_env("Pendulum-v1")
    policy = envs.make_policy("swingup", env.action_space, seed=0, env_id="Pendulum-v1")
    episodes = list(envs.rollouts(env, policy, 3, seed=0))
    env.close()
    assert np.mean([e.episode_return for e in episodes]) > -400  # uniform random torques: about -1,230
    assert all(e.observations[-20:, 0].min() > 0.99 for e in episodes)  # upright at the end
    with pytest.raises(SbrnnError, match="policy 'swingup' cannot drive Hopper-v5; allowed: Pendulum-v1"):
        envs.make_policy("swingup", env.action_space, seed=0, env_id="Hopper-v5")


def test_environment_arguments_name_their_own_dataset():
    plain = minari_io.local_collection("Ant-v5", "ant", "random", 3, seed=0, max_steps=3)
    narrow = minari_io.local_collection(
        "Ant-v5",
        "ant",
        "random",
        3,
        seed=0,
        max_steps=3,
        env_kwargs={"include_cfrc_ext_in_observation": False},
    )
    assert plain != narrow and narrow.startswith("sbrnn/ant/random-e3-t3-k")
    meta = minari_io.open_dataset(narrow).storage.metadata[minari_io.COLLECTION_KEY]
    assert meta["env_kwargs"] == {"include_cfrc_ext_in_observation": False}
    assert minari_io.open_dataset(narrow).observation_space.shape == (27,)
    assert minari_io.open_dataset(plain).observation_space.shape == (105,)
    with pytest.raises(SbrnnError, match="cannot be made with"):
        envs.make_env("Pendulum-v1", env_kwargs={"colour": "red"})
