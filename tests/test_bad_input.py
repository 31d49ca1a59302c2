"""Bad input, every command: one line on stderr starting ``error: ``, naming the value and what is
allowed, exit status 2, and nothing already written lost or changed.

One table (:data:`CASES`) of bad inputs across `child plan/train/evaluate/sweep/tune`, `parent
fit/predict/recommend/evaluate`, `datasets list/build/info/collect` and `records
summary/compact/export/plot/report`: paths that are files, folders that cannot be written, unreadable
and foreign Parquet, wrong types, out-of-range numbers, unknown tasks and options, malformed plan
and configuration files, and a full disk (every atomic write's flush fails with ENOSPC). Each case
runs in process (Typer's CliRunner); the files of the shared folders are compared byte for byte
before and after, and nothing may appear in the case's own output folder. No progress bar may be
drawn before such an error, except where the work ran and only writing its result failed (a full
disk after training): that finished bar may stay above the error line.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sbrnn.io
from sbrnn.cli import app
from sbrnn.records import write_record

pytestmark = pytest.mark.usefixtures("one_thread", "offline_minari")

TOY = ["--task", "toy-anomaly", "--budget", "2000", "--epochs", "1", "--batch-size", "32", "--threads", "1"]
DIMS = ["--in", "8", "--out", "6", "--budget", "3000"]
BAD_DENSITIES = "1,0,1/1,1,1"


@dataclass(frozen=True)
class Case:
    """``args`` (``{name}`` filled from the world's paths, ``{tmp}`` the case's own folder), the
    value the error line must name and what it must say is allowed; ``full_disk`` makes every
    atomic write fail with ENOSPC; ``env`` sets variables (paths filled in too)."""

    id: str
    args: list[str]
    value: str
    allowed: str
    full_disk: bool = False
    env: dict[str, str] = field(default_factory=dict)
    needs: str | None = None  # an optional module the command needs


CASES = [
    # child plan
    Case(
        "plan-density-0-block",
        ["child", "plan", *DIMS, "--densities", BAD_DENSITIES],
        "'1,0,1/1,1,1'",
        "(0, 1]",
    ),
    Case("plan-density-0", ["child", "plan", *DIMS, "--densities", "0"], "block hx = 0", "allowed: (0, 1]"),
    Case("plan-density-nan", ["child", "plan", *DIMS, "--densities", "nan"], "= nan", "allowed: (0, 1]"),
    Case("plan-hidden-0", ["child", "plan", "--in", "8", "--out", "6", "--hidden", "0"], "h = 0", ">= 1"),
    Case("plan-budget-negative", ["child", "plan", "--in", "8", "--out", "6", "--budget", "-5"], "-5", "> 0"),
    Case("plan-in-not-a-number", ["child", "plan", "--in", "many", "--out", "6"], "'--in'", "valid integer"),
    # child train
    Case(
        "train-density-0",
        ["child", "train", *TOY, "--densities", BAD_DENSITIES, "--records", "{records}"],
        "--densities '1,0,1/1,1,1'",
        "(0, 1]",
    ),
    Case("train-records-is-a-file", ["child", "train", *TOY, "--records", "{afile}"], "{afile}", "allowed:"),
    Case(
        "train-records-under-a-file",
        ["child", "train", *TOY, "--records", "{afile}/runs"],
        "under the file",
        "allowed: a directory",
    ),
    Case("train-save-is-a-file", ["child", "train", *TOY, "--save", "{afile}"], "--save", "allowed:"),
    Case(
        "train-records-not-writable",
        ["child", "train", *TOY, "--records", "{readonly}/runs"],
        "cannot be written",
        "allowed: a directory you can write to",
    ),
    Case(
        "train-full-disk-records",
        ["child", "train", *TOY, "--records", "{records}"],
        "--records",
        "No space left on device",
        full_disk=True,
    ),
    Case(
        "train-full-disk-save",
        ["child", "train", *TOY, "--save", "{model}"],
        "--save",
        "No space left on device",
        full_disk=True,
    ),
    Case("train-config-not-json", ["child", "train", "--config", "{badjson}"], "{badjson}", "is not JSON"),
    Case(
        "train-config-rank", ["child", "train", "--config", "{config}", "--rank", "3"], "rank = 3", "1 to 1"
    ),
    Case("train-seed-negative", ["child", "train", *TOY, "--seed", "-1"], "--seed -1", ">= 0"),
    Case(
        "train-batch-size-0", ["child", "train", "--task", "toy-anomaly", "--batch-size", "0"], "= 0", ">= 1"
    ),
    Case("train-epochs-float", ["child", "train", "--epochs", "2.5"], "'--epochs'", "valid integer"),
    Case("train-checkpoint-every-0", ["child", "train", *TOY, "--checkpoint-every", "0"], "every 0", ">= 1"),
    Case("train-unknown-task", ["child", "train", "--task", "nope"], "'nope'", "known tasks"),
    # child evaluate
    Case(
        "evaluate-model-is-a-file", ["child", "evaluate", "--model", "{afile}"], "{afile}", "expected model"
    ),
    Case("evaluate-model-garbage", ["child", "evaluate", "--model", "{badmodel}"], "{badmodel}", "allowed:"),
    Case(
        "evaluate-unknown-env",
        ["child", "evaluate", "--model", "{model}", "--env", "NoSuchEnv-v0"],
        "'NoSuchEnv-v0'",
        "e.g. AdroitHandHammer-v1",
    ),
    Case(
        "evaluate-env-of-a-classifier",
        ["child", "evaluate", "--model", "{model}", "--env", "Pendulum-v1"],
        "not behaviour cloning",
        "allowed: a model trained on",
    ),
    Case("evaluate-seed-negative", ["child", "evaluate", "--model", "{model}", "--seed", "-2"], "-2", ">= 0"),
    # child sweep
    Case(
        "sweep-records-is-a-file",
        [
            "child",
            "sweep",
            "--task",
            "toy-anomaly",
            "--runs",
            "1",
            "--budget",
            "2000",
            "--records",
            "{afile}",
        ],
        "{afile}",
        "allowed: a directory",
    ),
    Case(
        "sweep-plan-malformed",
        ["child", "sweep", "--records", "{tmp}/sweep", "--plan", "{badtoml}"],
        "{badtoml}",
        "not valid TOML",
    ),
    Case(
        "sweep-density-0",
        ["child", "sweep", "--task", "toy-anomaly", "--runs", "1", "--budget", "2000", "--records", "{tmp}/s"]
        + ["--densities", "0"],
        "--densities '0'",
        "(0, 1]",
    ),
    Case(
        "sweep-workers-0",
        ["child", "sweep", "--task", "toy-anomaly", "--runs", "1", "--budget", "2000", "--records", "{tmp}/s"]
        + ["--workers", "0"],
        "--workers 0",
        ">= 1",
    ),
    # child tune
    Case(
        "tune-trials-0",
        [
            "child",
            "tune",
            "--task",
            "toy-anomaly",
            "--budget",
            "2000",
            "--trials",
            "0",
            "--records",
            "{tmp}/t",
        ],
        "--trials 0",
        ">= 1",
        needs="optuna",
    ),
    Case(
        "tune-records-is-a-file",
        [
            "child",
            "tune",
            "--task",
            "toy-anomaly",
            "--budget",
            "2000",
            "--trials",
            "1",
            "--records",
            "{afile}",
        ],
        "{afile}",
        "allowed: a directory",
        needs="optuna",
    ),
    # parent fit
    Case("fit-no-records-dir", ["parent", "fit", "{world}/missing", "--out", "{tmp}/p"], "missing", "exist"),
    Case("fit-empty-records", ["parent", "fit", "{empty}", "--out", "{tmp}/p"], "{empty}", "(*.parquet)"),
    Case(
        "fit-foreign-parquet-only",
        ["parent", "fit", "{foreign}", "--out", "{tmp}/p"],
        "foreign.parquet",
        "(*.parquet)",
    ),
    Case(
        "fit-too-few-runs", ["parent", "fit", "{few}", "--out", "{tmp}/p"], "3 converged", "allowed: at least"
    ),
    Case("fit-folds-1", ["parent", "fit", "{records}", "--out", "{tmp}/p", "--folds", "1"], "= 1", ">= 2"),
    Case("fit-out-is-a-file", ["parent", "fit", "{records}", "--out", "{afile}"], "{afile}", "allowed:"),
    Case(
        "fit-out-not-writable",
        ["parent", "fit", "{records}", "--out", "{readonly}/p"],
        "cannot be written",
        "allowed:",
    ),
    Case(
        "fit-full-disk",
        ["parent", "fit", "{records}", "--out", "{tmp}/p", "--folds", "2", "--trees", "5", "--members", "2"],
        "--out",
        "No space left on device",
        full_disk=True,
    ),
    # parent predict / recommend / evaluate
    Case(
        "predict-density-0",
        ["parent", "predict", *DIMS, "--densities", BAD_DENSITIES],
        "--densities '1,0,1/1,1,1'",
        "(0, 1]",
    ),
    Case(
        "predict-model-is-a-file", ["parent", "predict", *DIMS, "--model", "{afile}"], "{afile}", "manifest"
    ),
    Case("predict-plot-is-a-dir", ["parent", "predict", *DIMS, "--plot", "{world}"], "--plot", "a file path"),
    Case(
        "recommend-target",
        ["parent", "recommend", "--a-priori", "--in", "25", "--out", "1", "--target", "1.5"],
        "target = 1.5",
        "(0, 1)",
    ),
    Case("recommend-seed-negative", ["parent", "recommend", *DIMS, "--seed", "-1"], "--seed -1", ">= 0"),
    Case("recommend-top-not-a-number", ["parent", "recommend", "--top", "x"], "'--top'", "valid integer"),
    Case(
        "evaluate-parent-out-is-a-file",
        ["parent", "evaluate", "{records}", "--out", "{afile}"],
        "{afile}",
        "allowed",
    ),
    # datasets
    Case("list-unknown-option", ["datasets", "list", "--bogus"], "--bogus", "No such option"),
    Case("build-unknown-task", ["datasets", "build", "nope"], "'nope'", "known tasks"),
    Case(
        "build-unknown-option",
        ["datasets", "build", "toy-anomaly", "--task-option", "colour=red"],
        "'colour'",
        "allowed:",
    ),
    Case("build-seed-negative", ["datasets", "build", "toy-anomaly", "--seed", "-1"], "--seed -1", ">= 0"),
    Case(
        "build-cache-not-writable",
        ["datasets", "build", "toy-regression", "--task-option", "n_train=17"],
        "{readonly}",
        "allowed: a path this user may read and write",
        env={"SBRNN_CACHE": "{readonly}/cache"},
    ),
    Case("info-option-out-of-range", ["datasets", "info", "rad", "--task-option", "n=1"], "n 1", "[2, 100]"),
    Case("info-preview-is-a-dir", ["datasets", "info", "rad", "--preview", "{world}"], "--preview", "a file"),
    Case(
        "collect-unknown-env",
        ["datasets", "collect", "--env", "NoSuchEnv-v0", "--episodes", "1", "--id", "local/a-v0"],
        "'NoSuchEnv-v0'",
        "e.g. AdroitHandHammer-v1",
    ),
    Case(
        "collect-episodes-0",
        ["datasets", "collect", "--env", "Pendulum-v1", "--episodes", "0", "--id", "local/a-v0"],
        "episodes = 0",
        ">= 1",
    ),
    Case(
        "collect-malformed-id",
        ["datasets", "collect", "--env", "Pendulum-v1", "--episodes", "1", "--id", "bad id"],
        "'bad id'",
        "allowed:",
    ),
    # records
    Case(
        "summary-empty", ["records", "summary", "{empty}"], "{empty}", "allowed: a directory of run records"
    ),
    Case("summary-foreign-parquet-only", ["records", "summary", "{foreign}"], "foreign.parquet", "allowed:"),
    Case("summary-truncated-parquet-only", ["records", "summary", "{truncated}"], "cut.parquet", "allowed:"),
    Case("summary-missing", ["records", "summary", "{world}/missing"], "missing", "does not exist"),
    Case("compact-a-file", ["records", "compact", "{afile}"], "{afile}", "not a directory"),
    Case(
        "compact-full-disk",
        ["records", "compact", "{records}"],
        "{records}",
        "No space left on device",
        full_disk=True,
    ),
    Case(
        "export-csv-is-a-dir", ["records", "export", "{records}", "--csv", "{csvdir}"], "--csv", "a file path"
    ),
    Case(
        "export-csv-not-writable",
        ["records", "export", "{records}", "--csv", "{readonly}/x.csv"],
        "cannot be written",
        "allowed:",
    ),
    Case(
        "export-parquet-full-disk",
        ["records", "export", "{records}", "--parquet", "{tmp}/all.parquet"],
        "--parquet",
        "No space left on device",
        full_disk=True,
    ),
    Case("export-empty", ["records", "export", "{empty}", "--csv", "{tmp}/x.csv"], "{empty}", "allowed:"),
    Case("plot-out-is-a-file", ["records", "plot", "{records}", "--out", "{afile}"], "{afile}", "allowed:"),
    Case("plot-empty", ["records", "plot", "{empty}", "--out", "{tmp}/figs"], "{empty}", "allowed:"),
    Case(
        "report-empty", ["records", "report", "{empty}", "--out", "{world}/r.html"], "{empty}", "no readable"
    ),
    Case(
        "report-out-under-a-file",
        ["records", "report", "{records}", "--out", "{afile}/r.html"],
        "{afile}/r.html",
        "does not exist",
    ),
]


class _FullDisk:
    """``os`` for :mod:`sbrnn.io` with a disk that is full: flushing any written file fails."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_records):
    """The folders the cases point at: records, a saved child, files of every wrong kind."""
    import pandas as pd

    root = tmp_path_factory.mktemp("world")
    paths = {"world": str(root)}
    for name, n in (("records", 12), ("few", 3)):
        for record in synthetic_records(n):
            write_record(record, root / name)
        paths[name] = str(root / name)
    (root / "empty").mkdir()
    (root / "foreign").mkdir()
    pd.DataFrame({"a": [1, 2]}).to_parquet(root / "foreign" / "foreign.parquet")
    (root / "truncated").mkdir()
    shard = next((root / "records").glob("*.parquet")).read_bytes()
    (root / "truncated" / "cut.parquet").write_bytes(shard[:100])
    (root / "afile").write_text("not a folder\n")
    (root / "bad.json").write_text("{not json")
    (root / "bad.toml").write_text("tasks = [\n")
    (root / "d.csv").mkdir()
    config = {"top": [{"arch": "dense", "budget": 2000, "lr": 0.01}], "task": {"name": "toy-anomaly"}}
    (root / "config.json").write_text(json.dumps(config))
    (root / "badmodel").mkdir()
    (root / "badmodel" / "model.safetensors").write_bytes(b"\x00" * 16)
    (root / "badmodel" / "config.json").write_text("{}")
    result = CliRunner().invoke(app, ["child", "train", *TOY, "--save", str(root / "model")])
    assert result.exit_code == 0, result.output
    paths.update(
        afile=str(root / "afile"),
        empty=str(root / "empty"),
        foreign=str(root / "foreign"),
        truncated=str(root / "truncated"),
        badjson=str(root / "bad.json"),
        badtoml=str(root / "bad.toml"),
        csvdir=str(root / "d.csv"),
        config=str(root / "config.json"),
        badmodel=str(root / "badmodel"),
        model=str(root / "model"),
    )
    return root, paths


def _cannot_write(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def readonly(tmp_path_factory):
    """A folder no file can be created in: chmod 555 for a user; for root, whom chmod does not stop,
    a kernel filesystem's folder that refuses new files (/sys), else the cases are skipped."""
    if os.geteuid() != 0:
        folder = tmp_path_factory.mktemp("readonly")
        folder.chmod(0o555)
        yield str(folder)
        folder.chmod(0o755)
        return
    for candidate in (Path("/sys"), Path("/proc/sys")):
        if candidate.is_dir() and _cannot_write(candidate):
            yield str(candidate)
            return
    pytest.skip("running as root, chmod cannot make a folder unwritable, and no read-only folder exists here")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(case, world, tmp_path, monkeypatch, request):
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"needs {case.needs}")
    root, paths = world
    fill = {**paths, "tmp": str(tmp_path / "out")}
    if any("{readonly}" in a for a in [*case.args, *case.env.values()]):
        fill["readonly"] = request.getfixturevalue("readonly")
    args = [a.format(**fill) for a in case.args]
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(**fill))
    before = _files(root)
    if case.full_disk:
        monkeypatch.setattr(sbrnn.io, "os", _FullDisk())
    result = CliRunner().invoke(app, args)
    monkeypatch.setattr(sbrnn.io, "os", os)
    lines = result.stderr.strip("\n").splitlines()  # blank lines count too: a bar's leftovers
    if case.full_disk:  # the work before the write ran: its finished progress bar may stay above
        lines = [line for line in lines if "━" not in line]
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert case.value.format(**fill) in lines[0] and case.allowed in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert _files(root) == before, "files already written were changed"
    assert not (tmp_path / "out").exists() or not _files(tmp_path / "out"), "a failed command left files"


def test_the_table_covers_every_command():
    commands = {tuple(c.args[:2]) for c in CASES}
    for group, names in {
        "child": ("plan", "train", "evaluate", "sweep", "tune"),
        "parent": ("fit", "predict", "recommend", "evaluate"),
        "datasets": ("list", "build", "info", "collect"),
        "records": ("summary", "compact", "export", "plot", "report"),
    }.items():
        for name in names:
            assert (group, name) in commands, f"{group} {name} has no bad input in the table"
    assert len(CASES) >= 40


# Warnings: one line each, whatever the command -------------------------------------------------


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def test_every_command_shows_library_warnings_as_one_line(monkeypatch):
    """The root command turns `warnings` and the `sbrnn` logger's warnings into `warning: ...` lines."""
    import logging
    import warnings

    from sbrnn.datasets import summary

    real = summary.build_summary

    def noisy(*args, **kwargs):
        warnings.warn("a library warning\nover two lines", RuntimeWarning, stacklevel=1)
        logging.getLogger("sbrnn.datasets.test").warning("a logged warning about %s", "something")
        logging.getLogger("sbrnn.datasets.test").info("news nobody asked for")
        return real(*args, **kwargs)

    monkeypatch.setattr(summary, "build_summary", noisy)
    result = CliRunner().invoke(app, ["datasets", "build", "toy-anomaly", "--json"])
    assert result.exit_code == 0, result.output
    assert _warning_lines(result.stderr) == [
        "warning: a library warning over two lines",
        "warning: a logged warning about something",
    ]
    assert "RuntimeWarning" not in result.stderr and "news" not in result.stderr
    assert not logging.getLogger("sbrnn").handlers  # the handler goes with the command


@pytest.mark.parametrize("command", ["fit", "sweep"])
def test_parent_fit_and_sweep_warn_in_one_line(command, synthetic_records, tmp_path):
    records = tmp_path / "runs"
    for record in synthetic_records(12):
        write_record(record, records)
    (records / "junk.parquet").write_bytes(b"junk")
    if command == "fit":
        args = ["parent", "fit", str(records), "--out", str(tmp_path / "p"), "--folds", "2"]
        args += ["--trees", "5", "--members", "2", "--json"]
    else:
        args = ["child", "sweep", "--task", "toy-anomaly", "--runs", "1", "--budget", "2000", "--epochs", "1"]
        args += ["--records", str(records), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [line] = _warning_lines(result.stderr)
    assert "skipping unreadable records file" in line and "junk.parquet" in line
    assert "RuntimeWarning" not in result.stderr and "warnings.warn" not in result.stderr


def test_adroit_environments_come_without_the_reward_notice():
    import subprocess
    import sys

    code = (
        "from sbrnn.datasets.envs import make_env\n"
        "make_env('AdroitHandHammer-v1').close()\n"
        "from farama_notifications import notifications\n"
        "assert any('reward functions' in t for t in notifications['gymnasium_robotics'].values())\n"
    )
    if importlib.util.find_spec("gymnasium_robotics") is None:
        pytest.skip("needs gymnasium-robotics")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "reward functions" not in done.stderr and "reward functions" not in done.stdout


# Bad data: near-constant features ------------------------------------------------------------------


class _Episode:
    def __init__(self, observations, actions):
        self.observations, self.actions = observations, actions


class _Dataset:
    """The part of a Minari dataset that :func:`sbrnn.datasets.windows.build_tensors` reads."""

    id = "local/fake-v0"

    def __init__(self, episodes):
        self.episodes = episodes

    def iterate_episodes(self):
        return iter(self.episodes)


def test_near_constant_features_are_centred_not_blown_up_and_warned(caplog):
    """A feature with a train std of 3.5e-6 (five random Adroit episodes have such) used to put held-out
    inputs at 12,407 standard deviations; its std now counts as 1, and a warning names it."""
    import numpy as np

    from sbrnn.datasets import windows

    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(20):
        obs = rng.normal(size=(9, 3))
        obs[:, 1] = 0.2 + 3.5e-6 * rng.normal(size=9)  # near-constant in every episode...
        obs[:, 2] = 5.0 + rng.normal(size=9)
        episodes.append(_Episode(obs, rng.normal(size=(8, 2))))
    _, val, test = windows.split_episodes(len(episodes), 0)
    for i in [*val, *test]:
        episodes[i].observations[:, 1] += 0.04  # ...but not in the held-out ones
    with caplog.at_level("WARNING", logger="sbrnn"):
        tensors = windows.build_tensors(_Dataset(episodes), "behaviour_cloning", 0, 8)
    assert tensors["input_std"][1] == 1.0 and tensors["input_std"][0] != 1.0
    assert float(tensors["test_x"][..., 1].abs().max()) < 0.05  # centred: 0.04 stays 0.04
    assert float(tensors["test_x"].abs().max()) < 10
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 of 3 input features are near-constant" in m and "features 1)" in m for m in messages)
    assert not any("standard deviations" in m for m in messages)
    assert windows.near_constant(np.array([0.0, 1000.0, 0.0]), np.array([5e-4, 0.5, 2e-3])).tolist() == [
        True,
        True,
        False,
    ]


def test_held_out_values_far_outside_the_train_split_are_warned(caplog):
    import numpy as np

    from sbrnn.datasets import windows

    rng = np.random.default_rng(1)
    episodes = [_Episode(rng.normal(size=(9, 2)) * 0.01, rng.normal(size=(8, 1))) for _ in range(20)]
    _, val, _ = windows.split_episodes(len(episodes), 0)
    episodes[val[0]].observations[3, 0] = 5.0  # 500 train stds away
    with caplog.at_level("WARNING", logger="sbrnn"):
        windows.build_tensors(_Dataset(episodes), "behaviour_cloning", 0, 8)
    [message] = [r.getMessage() for r in caplog.records]
    assert "validation and test inputs lie up to" in message and "(features 0)" in message
