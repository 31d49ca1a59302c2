"""Long runs survive interruption: `sbrnn child train --checkpoint-every N` resumes to the same curve."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from sbrnn.child import train as train_module
from sbrnn.child.checkpoint import Checkpointing, checkpoint_file, load_checkpoint
from sbrnn.child.config import RunConfig
from sbrnn.cli import app
from sbrnn.records import read_records

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
EPOCHS = 6
SMALL = [
    "--task",
    "toy-anomaly",
    "--budget",
    "2000",
    "--epochs",
    str(EPOCHS),
    "--lr",
    "1e-2",
    "--batch-size",
    "32",
    "--threads",
    "1",
]
CURVES = (
    "train_loss",
    "val_loss",
    "val_acc",
    "min_val_loss",
    "best_epoch",
    "test_loss",
    "test_acc",
    "status",
)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def interrupt_after(monkeypatch, k: int) -> None:
    """Ctrl-C right after epoch ``k``'s figures are reported (before that epoch's checkpoint)."""
    real_fit = train_module.fit

    def fit(trainee, members, task, device, progress=None, **kwargs):
        def stop(epoch, metrics):
            if progress is not None:
                progress(epoch, metrics)
            if epoch == k:
                raise KeyboardInterrupt

        return real_fit(trainee, members, task, device, stop, **kwargs)

    monkeypatch.setattr(train_module, "fit", fit)


def curves(record) -> dict:
    data = record if isinstance(record, dict) else record.to_dict()
    return {k: data[k] for k in CURVES}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The record of the run trained in one go (one thread)."""
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("whole")
    result = invoke("child", "train", *SMALL, "--records", out, "--json")
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_interrupted_run_resumes_to_the_same_curve(uninterrupted, tmp_path, monkeypatch):
    records, folder = tmp_path / "runs", tmp_path / "ckpt"
    command = [
        "child",
        "train",
        *SMALL,
        "--records",
        records,
        "--checkpoint-every",
        1,
        "--checkpoint",
        folder,
    ]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 4)
        result = invoke(*command)
    assert result.exit_code == 130, result.output
    assert "interrupted after 4 of 6 epochs" in result.stderr and "resumes" in result.stderr
    assert not records.exists() or not list(records.iterdir())  # a record is written for finished runs only
    [written] = folder.iterdir()
    assert load_checkpoint(written, uninterrupted["run_id"]).epoch == 3  # epoch 4's was not written yet

    result = invoke(*command, "--json")
    assert result.exit_code == 0, result.output
    assert "resuming run" in result.stderr and "after epoch 3 of 6" in result.stderr
    resumed = json.loads(result.stdout)
    assert curves(resumed) == curves(uninterrupted)
    assert len(resumed["val_loss"]) == EPOCHS and resumed["threads"] == 1
    [stored] = read_records(records)
    assert curves(stored) == curves(uninterrupted)
    assert folder.is_dir() and not list(folder.iterdir())  # the checkpoint goes when the run ends


def test_default_folder_beside_save_and_keep(uninterrupted, tmp_path, monkeypatch):
    save = tmp_path / "model"
    command = ["child", "train", *SMALL, "--save", save, "--checkpoint-every", 2]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 5)
        assert invoke(*command).exit_code == 130
    folder = tmp_path / "model.checkpoint"
    path = checkpoint_file(folder, uninterrupted["run_id"])
    assert load_checkpoint(path, uninterrupted["run_id"]).epoch == 4 and not save.exists()

    result = invoke(*command, "--keep-checkpoint", "--json")
    assert result.exit_code == 0, result.output
    assert curves(json.loads(result.stdout)) == curves(uninterrupted)
    assert (save / "model.safetensors").is_file() and path.is_file()  # kept on request

    result = invoke(*command, "--json")  # resumes from the kept checkpoint: still the same run
    assert result.exit_code == 0, result.output
    assert curves(json.loads(result.stdout)) == curves(uninterrupted)
    assert not folder.exists()  # the run's own folder goes with its checkpoint


def test_bad_checkpoint_is_one_line(uninterrupted, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    checkpoint_file(folder, uninterrupted["run_id"]).write_bytes(b"not a checkpoint")
    result = invoke("child", "train", *SMALL, "--checkpoint", folder)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert (
        lines[0].startswith("error: checkpoint ") and "cannot be read" in lines[0] and "allowed:" in lines[0]
    )
    (tmp_path / "afile").write_text("x")
    for args, needle in (
        (["--checkpoint-every", "0"], "--checkpoint-every 0"),
        (["--keep-checkpoint"], "--keep-checkpoint needs"),
        (["--checkpoint", tmp_path / "afile"], "is a file"),
    ):
        result = invoke("child", "train", *SMALL, *args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize(
    "fields",
    [
        {"arch": "lstm", "epochs": 5},  # another module and optimizer state
        {"patience": 2, "epochs": 8, "lr": 0.05},  # early stopping across the resume
    ],
)
def test_library_resume_equals_one_go(tmp_path, fields):
    config = RunConfig(
        **{"task": "toy-regression", "budget": 600, "batch_size": 16, "lr": 1e-2, "seed": 3, **fields}
    )
    whole = train_module.train_run(config, threads=1)
    assert whole.status == "ok"
    settings = Checkpointing(tmp_path, every=1)

    def stop_at_2(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_module.train_run(config, threads=1, progress=stop_at_2, checkpoint=settings)
    assert load_checkpoint(settings.path(config.run_id()), config.run_id()).epoch == 1
    seen = []
    resumed = train_module.train_run(
        config, threads=1, checkpoint=settings, progress=lambda e, m: seen.append(e)
    )
    assert curves(resumed) == curves(whole)
    assert seen[0] == 2 and not settings.path(config.run_id()).exists()
    assert resumed.wall_seconds > 0


def test_failed_checkpoint_write_warns_and_trains_on(tmp_path, monkeypatch, caplog):
    import errno

    from sbrnn.child import checkpoint as checkpoint_module

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint_module, "atomic_write", full)
    config = RunConfig(task="toy-regression", budget=600, epochs=3, lr=1e-2)
    with caplog.at_level("WARNING", logger="sbrnn"):
        record = train_module.train_run(config, threads=1, checkpoint=Checkpointing(tmp_path))
    assert record.status == "ok" and len(record.val_loss) == 3
    warned = [r.getMessage() for r in caplog.records if "cannot write the checkpoint" in r.getMessage()]
    assert len(warned) == 1 and "No space left on device" in warned[0]


@pytest.mark.slow
def test_kill_9_then_the_same_command_finishes_the_same_curve(tmp_path):
    """A real SIGKILL in the middle of a run of 40 epochs; the rerun resumes and matches."""
    env = {**os.environ, "SBRNN_CACHE": str(tmp_path / "cache")}
    args = [
        sys.executable,
        "-m",
        "sbrnn.cli",
        "child",
        "train",
        "--task",
        "toy-anomaly",
        "--task-option",
        "n_train=4000",
        "--budget",
        "4000",
        "--epochs",
        "40",
        "--threads",
        "1",
        "--json",
    ]
    whole = subprocess.run([*args, "--records", str(tmp_path / "a")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    expected = json.loads(whole.stdout)
    command = [*args, "--records", str(tmp_path / "b"), "--checkpoint-every", "1"]
    command += ["--checkpoint", str(tmp_path / "ckpt")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = checkpoint_file(tmp_path / "ckpt", expected["run_id"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and load_checkpoint(path, expected["run_id"]).epoch >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(path, expected["run_id"]).epoch
    assert 3 <= killed_at < 40 and not (tmp_path / "b").exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"after epoch {killed_at} of 40" in again.stderr
    assert curves(json.loads(again.stdout)) == curves(expected)
    assert not path.exists()


def test_resuming_with_another_thread_count_warns(tmp_path, caplog):
    config = RunConfig(task="toy-regression", budget=600, epochs=3, lr=1e-2)
    settings = Checkpointing(tmp_path, keep=True)

    def stop_at_2(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_module.train_run(config, threads=1, progress=stop_at_2, checkpoint=settings)
    with caplog.at_level("WARNING", logger="sbrnn"):
        record = train_module.train_run(config, threads=2, checkpoint=settings)
    assert record.status == "ok" and len(record.val_loss) == 3 and record.threads == 2
    [warned] = [r.getMessage() for r in caplog.records if "resumes with threads 2" in r.getMessage()]
    assert "written with 1" in warned and settings.path(config.run_id()).exists()  # keep=True
