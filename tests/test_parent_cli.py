"""`sbrnn parent fit | predict | recommend | evaluate`, `child train --config`: JSON, tables, errors."""

from __future__ import annotations

import json

import pytest
from conftest import make_synthetic_records
from typer.testing import CliRunner

from sbrnn.cli import app
from sbrnn.parent.features import records_sha256
from sbrnn.records import read_records, records_table, write_atomic, write_record

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("parent_cli")
    records = make_synthetic_records(150, seed=11, tasks=("syn-a", "syn-b", "syn-c"))
    write_atomic(records_table(records[:-2]), root / "records" / "sweep.parquet")
    for record in records[-2:]:  # and two one-run shards
        write_record(record, root / "records")
    unseen = make_synthetic_records(45, seed=12, tasks=("syn-a", "syn-b", "syn-c"))
    write_atomic(records_table(unseen), root / "unseen" / "x.parquet")
    result = invoke(
        "parent",
        "fit",
        root / "records",
        "--model",
        "xgb",
        "--out",
        root / "parent",
        "--folds",
        "3",
        "--trees",
        "20",
        "--members",
        "2",
        "--name",
        "cli-test",
        "--json",
    )
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_fit_json_and_table(fitted_dir, tmp_path):
    root, report = fitted_dir
    assert report["parent"] == str(root / "parent") and (root / "parent" / "manifest.json").is_file()
    assert report["counts"]["runs"] == 150 and report["counts"]["tasks"] == 3
    assert set(report["cv"]) == {"xgb", "hidden_proportion", "constant"}
    assert set(report["leave_one_task_out"]) == {"xgb", "ranker", "hidden_proportion"}
    assert report["ranked_by"] in ("within-task ranker", "xgb predicted minimum")
    assert report["models"]["xgb"]["n_estimators"] == 20 and len(report["records_sha256"]) == 64
    assert any("only 3 tasks" in w for w in report["warnings"])
    both = invoke(  # several directories: one parent on all of their runs
        "parent", "fit", root / "records", root / "unseen", "--out", tmp_path / "both", "--folds", 2,
        "--trees", 5, "--members", 1, "--json",
    )  # fmt: skip
    assert both.exit_code == 0, both.output
    together = json.loads(both.stdout)
    assert together["counts"]["runs"] == 195 and together["records_sha256"] != report["records_sha256"]
    records = read_records(root / "records") + read_records(root / "unseen")
    assert together["records_sha256"] == records_sha256(records)
    table = invoke(
        "parent", "fit", root / "records", "--out", tmp_path / "p", "--folds", 2, "--trees", 5, "--members", 1
    )
    assert table.exit_code == 0, table.output
    for needle in (
        "k-fold",
        "Leave one task out",
        "regret@1",
        "hp alone",
        "constant",
        "Brier",
        "warning: only",
    ):
        assert needle in table.stdout


def test_predict(fitted_dir, tmp_path):
    root, _ = fitted_dir
    args = [
        "parent",
        "predict",
        "--model",
        root / "parent",
        "--in",
        8,
        "--out",
        6,
        "--budget",
        3000,
        "--densities",
        ".5,.4,1/1,1,1",
        "--lr",
        "2e-3",
    ]
    result = invoke(*args, "--json", "--plot", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["curve"]) == 8 and out["min_low"] <= out["min_val_loss"] <= out["min_high"]
    assert all(lo <= mid <= hi for lo, mid, hi in zip(out["curve_low"], out["curve"], out["curve_high"]))
    assert out["task"]["steps"] == 6 and "syn-a" in out["note"] and out["extrapolation"]["inside"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    table = invoke(*args, "--arch", "lstm")
    assert table.exit_code == 0 and "minimum" in table.stdout and "parent cli-test" in table.stdout


def test_recommend_and_train_its_top_configuration(fitted_dir, tmp_path):
    root, _ = fitted_dir
    args = ["parent", "recommend", "--in", 3, "--out", 2, "--budget", 1500, "--model", root / "parent"]
    result = invoke(*args, "--top", 3, "--seed", 1, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mode"] == "learned" and len(out["top"]) == 3 and out["task"]["steps"] == 8
    assert out["parent"]["name"] == "cli-test" and set(out["baselines"]) == {"dense", "uniform", "lstm"}
    assert out["train_command"].startswith("sbrnn child train --task TASK")
    tune = f"sbrnn child tune --task TASK --budget 1500 --trials 10 --records RUNS --model {root / 'parent'}"
    assert out["tune_command"] == tune
    table = invoke(*args, "--plot", tmp_path / "r.png")
    assert table.exit_code == 0, table.output
    for needle in ("a-priori", "lstm", "train the top-1: sbrnn child train", "ranked by the parent"):
        assert needle in table.stdout
    assert f"or tune from the top 10 (the tune extra): {tune}" in " ".join(table.stdout.split())
    far = invoke(
        "parent",
        "recommend",
        "--in",
        4000,
        "--out",
        2,
        "--steps",
        8,
        "--loss",
        "mse",
        "--model",
        root / "parent",
    )
    assert far.exit_code == 0 and "a-priori fallback" in far.stdout
    # train the recommendation's top configuration on a real (tiny) task
    saved = tmp_path / "rec.json"
    saved.write_text(result.stdout)
    trained = invoke(
        "child",
        "train",
        "--config",
        saved,
        "--task",
        "toy-regression",
        "--task-option",
        "n_train=32",
        "--task-option",
        "n_val=16",
        "--task-option",
        "n_test=16",
        "--epochs",
        1,
        "--threads",
        1,
        "--records",
        tmp_path / "runs",
        "--json",
    )
    assert trained.exit_code == 0, trained.output
    [record] = read_records(tmp_path / "runs")
    top = out["top"][0]
    assert (record.arch, record.budget, record.lr) == (top["arch"], top["budget"], top["lr"])
    assert record.origin == "config" and record.label == "cli-test rank 1"
    clash = invoke("child", "train", "--config", saved, "--budget", 5000)
    assert clash.exit_code == 2 and "either --config or --budget" in clash.stderr


def test_a_priori_needs_no_parent():
    result = invoke("parent", "recommend", "--in", 2500, "--out", 10, "--a-priori", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recommended"]["sparsified_block"] == "hx"


def test_evaluate(fitted_dir, tmp_path):
    root, _ = fitted_dir
    result = invoke(
        "parent", "evaluate", "--model", root / "parent", root / "unseen", "--out", tmp_path, "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"]["runs"] == 45 and out["counts"]["seen_in_training"] == 0
    assert 0 <= out["band_coverage"] <= 1
    for name in ("fig10.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "metrics.json").read_text())["unseen"] == out["unseen"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["parent", "fit", "{root}/records", "--out", "{tmp}/p", "--model", "svm"],
            "--model 'svm' is unknown",
        ),
        (["parent", "fit", "{root}/records", "--out", "{tmp}/p", "--folds", "1"], "folds = 1"),
        (["parent", "fit", "{tmp}/nothing", "--out", "{tmp}/p"], "does not exist"),
        (
            ["parent", "fit", "{root}/records", "{root}/unseen", "{root}/records", "--out", "{tmp}/p"],
            "records; allowed: directories that share no run",
        ),
        (
            ["parent", "fit", "{root}/records", "--out", "{tmp}/p", "--trees", "0", "--folds", "2"],
            "trees = 0",
        ),
        (
            ["parent", "predict", "--model", "{tmp}", "--in", "8", "--out", "6", "--budget", "3000"],
            "no manifest.json",
        ),
        (
            [
                "parent",
                "predict",
                "--model",
                "{root}/parent",
                "--in",
                "8",
                "--out",
                "6",
                "--budget",
                "3000",
                "--loss",
                "hinge",
            ],
            "'hinge' is unknown",
        ),
        (
            [
                "parent",
                "predict",
                "--model",
                "{root}/parent",
                "--in",
                "8",
                "--out",
                "6",
                "--budget",
                "3000",
                "--kind",
                "mlp",
            ],
            "no 'mlp' model",
        ),
        (
            ["parent", "predict", "--model", "{root}/parent", "--in", "8", "--out", "6", "--budget", "30"],
            "is too small",
        ),
        (["parent", "recommend", "--model", "{root}/parent", "--out", "6"], "give --in and --out"),
        (
            ["parent", "recommend", "--in", "8", "--out", "6", "--model", "{root}/parent", "--top", "0"],
            "top = 0",
        ),
        (
            ["parent", "recommend", "--in", "8", "--out", "6", "--model", "{root}/parent", "--task", "rad"],
            "either --task or --in/--out",
        ),
        (
            ["parent", "evaluate", "--model", "{root}/parent", "{root}/records", "--out", "{tmp}/e"],
            "no converged runs the parent did not see",
        ),
        (["child", "train", "--config", "{tmp}/none.json"], "cannot be read"),
    ],
)
def test_bad_input_one_line_exit_2(fitted_dir, tmp_path, args, needle):
    root, _ = fitted_dir
    result = invoke(*(a.format(root=root, tmp=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0]


def test_tampered_parent_is_refused(fitted_dir, tmp_path):
    import shutil

    root, _ = fitted_dir
    copy = shutil.copytree(root / "parent", tmp_path / "parent")
    victim = next(p for p in copy.iterdir() if p.suffix == ".ubj")
    victim.write_bytes(victim.read_bytes() + b"\0")
    result = invoke("parent", "recommend", "--in", 8, "--out", 6, "--budget", 3000, "--model", copy)
    assert result.exit_code == 2 and "was modified" in result.stderr
