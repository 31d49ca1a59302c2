"""`sbrnn child train` and `sbrnn child evaluate`: JSON, tables, records, saved models, bad input."""

import json

import pytest
from typer.testing import CliRunner

from sbrnn.cli import app
from sbrnn.records import read_records

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
SMALL = ["--task", "toy-anomaly", "--budget", "2000", "--epochs", "3", "--lr", "1e-2", "--batch-size", "32"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_train_json_writes_record_and_model_that_evaluate_reads(tmp_path):
    result = invoke(
        "child",
        "train",
        *SMALL,
        "--threads",
        "1",
        "--records",
        str(tmp_path / "runs"),
        "--save",
        str(tmp_path / "model"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["task"] == "toy-anomaly" and record["arch"] == "sbrnn"
    assert len(record["val_loss"]) == 3 and record["min_val_loss"] == min(record["val_loss"])
    assert 0.4 < record["hidden_proportion"] < 0.6  # the balanced default
    [stored] = read_records(tmp_path / "runs")
    assert stored.to_dict() == record

    result = invoke("child", "evaluate", "--model", str(tmp_path / "model"), "--json")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    assert evaluated["run_id"] == record["run_id"] and evaluated["task"] == "toy-anomaly"
    assert evaluated["test_loss"] == record["test_loss"] and evaluated["test_acc"] == record["test_acc"]

    result = invoke("child", "evaluate", "--model", str(tmp_path / "model"), "--task-option", "n_test=40")
    assert result.exit_code == 0, result.output
    assert "test loss" in result.stdout and "40" in result.stdout


@pytest.mark.parametrize("arch", ["dense", "uniform", "lstm"])
def test_train_table_for_baselines(arch):
    result = invoke("child", "train", *SMALL, "--arch", arch, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert f"{arch} on toy-anomaly" in result.stdout and "min val loss" in result.stdout
    assert ("Trainable weights per block" in result.stdout) == (arch != "lstm")


def test_train_with_explicit_grids_and_regression_task():
    result = invoke(
        "child",
        "train",
        "--task",
        "toy-regression",
        "--task-option",
        "n_train=64",
        "--hidden",
        "12",
        "--densities",
        ".5,1,1/1,1,.5",
        "--means",
        "0",
        "--stds",
        ".1",
        "--activation",
        "tanh",
        "--epochs",
        "2",
        "--patience",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["h"] == 12 and record["budget"] is None and record["d_hx"] == 0.5
    assert record["sigma_yy"] == 0.1 and record["activation"] == "tanh" and record["loss_kind"] == "mse"


def test_a_diverged_run_is_recorded_and_exits_1(tmp_path):
    result = invoke(
        "child",
        "train",
        "--task",
        "toy-regression",
        "--budget",
        "2000",
        "--lr",
        "1e6",
        "--epochs",
        "2",
        "--records",
        str(tmp_path),
        "--json",
    )
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["status"] == "diverged"
    assert read_records(tmp_path)[0].status == "diverged"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "toy-anomaly", "--arch", "gru"], "arch 'gru'"),
        (["--task", "toy-anomaly", "--arch", "dense", "--densities", ".5"], "densities apply to arch sbrnn"),
        (["--task", "toy-anomaly", "--arch", "lstm", "--balanced"], "balanced densities apply to arch sbrnn"),
        (["--task", "toy-anomaly", "--densities", ".5", "--balanced"], "only one of densities and balanced"),
        (["--task", "toy-anomaly", "--densities", ".5,x"], "malformed"),
        (["--task", "toy-anomaly", "--densities", "1.5"], "(0, 1]"),
        (["--task", "toy-anomaly", "--epochs", "0"], "epochs = 0"),
        (["--task", "toy-anomaly", "--lr", "0"], "lr = 0"),
        (["--task", "toy-anomaly", "--lr", "-1"], "lr = -1"),
        (["--task", "toy-anomaly", "--budget", "50"], "budget = 50 is too small"),
        (["--task", "toy-anomaly", "--arch", "lstm", "--budget", "20"], "budget = 20 is too small"),
        (["--task", "toy-anomaly", "--budget", "5000", "--hidden", "4"], "only one of budget and hidden"),
        (["--task", "toy-anomaly", "--task-option", "colour=red"], "unknown option 'colour'"),
        (["--task", "toy-anomaly", "--task-option", "n_train"], "malformed"),
        (["--task", "toy-anomaly", "--task-option", "n_train=-3"], "cannot be built"),
        (["--task", "toy-anomaly", "--precision", "fp8"], "precision 'fp8'"),
        (["--task", "toy-anomaly", "--activation", "gelu"], "activation 'gelu'"),
        (["--task", "toy-anomaly", "--device", "tpu"], "device 'tpu'"),
        (["--task", "toy-anomaly", "--threads", "0"], "--threads 0"),
        (["--task", "toy-anomaly", "--arch", "sbrnn", "--uniform-density", ".3"], "uniform density applies"),
    ],
)
def test_train_bad_input_one_line_exit_2(args, needle, tmp_path):
    result = invoke("child", "train", *args, "--records", str(tmp_path))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0]
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_config_from_options_knows_the_defaults():
    from sbrnn.child.config import DEFAULT_BUDGET, RunConfig

    assert RunConfig.from_options(task="toy-anomaly").budget == DEFAULT_BUDGET
    by_hidden = RunConfig.from_options(task="toy-anomaly", hidden=12)
    assert (by_hidden.budget, by_hidden.hidden) == (None, 12)
    assert RunConfig.from_options(arch="uniform", uniform_density=0.3).uniform_density == 0.3
    assert RunConfig.from_options(balanced=True) == RunConfig()


def test_evaluate_bad_input(tmp_path):
    result = invoke("child", "evaluate", "--model", str(tmp_path))
    assert result.exit_code == 2 and "no saved model" in result.stderr
    assert invoke("child", "train", *SMALL, "--epochs", "1", "--save", str(tmp_path / "m")).exit_code == 0
    result = invoke("child", "evaluate", "--model", str(tmp_path / "m"), "--task", "toy-regression")
    assert result.exit_code == 2 and "3 inputs and 2 outputs" in result.stderr


def test_ctrl_c_stops_with_a_line_and_writes_nothing(tmp_path, monkeypatch):
    from sbrnn.child import train as train_module

    real_fit = train_module.fit

    def interrupted_after_one_epoch(trainee, members, task, device, progress=None):
        def stop(epoch, metrics):  # Ctrl-C right after the first epoch's figures are shown
            progress(epoch, metrics)
            raise KeyboardInterrupt

        return real_fit(trainee, members, task, device, stop)

    monkeypatch.setattr(train_module, "fit", interrupted_after_one_epoch)
    runs, model = tmp_path / "runs", tmp_path / "model"
    result = invoke("child", "train", *SMALL, "--records", str(runs), "--save", str(model))
    assert result.exit_code == 130, result.output
    assert "interrupted after 1 of 3 epochs: nothing written" in result.output
    assert not runs.exists() and not model.exists()
