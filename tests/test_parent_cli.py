"""`sbrnn parent fit | predict | recommend | evaluate`: JSON, tables and one-line errors."""

from __future__ import annotations

import json

import pytest
from test_parent_data import EPOCHS, make_records
from typer.testing import CliRunner

from sbrnn.cli import app
from sbrnn.records import records_table, write_atomic, write_record

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("parent_cli")
    records = make_records(120, seed=11, tasks=("toy-a", "toy-b"))
    write_atomic(records_table(records[:-2]), root / "records" / "sweep.parquet")
    for record in records[-2:]:  # and two one-run shards
        write_record(record, root / "records")
    unseen = make_records(40, seed=12, tasks=("toy-a", "toy-b"))
    write_atomic(records_table(unseen), root / "unseen" / "x.parquet")
    result = invoke("parent", "fit", root / "records", "--model", "rf", "--out", root / "parent",
                    "--folds", "3", "--trees", "20", "--json")
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_fit_json(fitted_dir):
    root, report = fitted_dir
    assert report["parent"] == str(root / "parent") and (root / "parent" / "manifest.json").is_file()
    assert report["counts"]["runs"] == 120 and report["counts"]["status"]["diverged"] > 0
    assert set(report["cv"]) == {"rf", "hidden_proportion", "constant"}
    assert set(report["leave_one_task_out"]["rf"]["per_task"]) == {"toy-a", "toy-b"}
    assert report["epochs"] == EPOCHS and report["models"]["rf"]["n_estimators"] == 20
    assert len(report["records_sha256"]) == 64


def test_fit_table(fitted_dir, tmp_path):
    root, _ = fitted_dir
    result = invoke("parent", "fit", root / "records", "--out", tmp_path / "p", "--folds", 2, "--trees", 5)
    assert result.exit_code == 0, result.output
    for needle in ("k-fold", "leave one task out", "hp alone", "constant", "diverged", "Brier"):
        assert needle in result.stdout


def test_predict(fitted_dir):
    root, _ = fitted_dir
    args = ["parent", "predict", "--model", root / "parent", "--in", 8, "--out", 6, "--budget", 3000,
            "--densities", ".5,.4,1/1,1,1", "--lr", "2e-3"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["epochs"] == list(range(1, EPOCHS + 1)) and len(out["curve"]) == EPOCHS
    assert all(lo <= mid <= hi for lo, mid, hi in zip(out["curve_low"], out["curve"], out["curve_high"]))
    assert out["min_low"] <= out["min_val_loss"] <= out["min_high"] and 0 <= out["p_converge"] <= 1
    assert out["steps"] == 6 and out["loss_kind"] == "cross_entropy" and out["lr"] == 2e-3
    assert out["plan"]["densities"] == [[0.5, 0.4, 1], [1, 1, 1]] and out["training_counts"]["runs"] == 120
    table = invoke(*args)
    assert table.exit_code == 0 and "minimum" in table.stdout and "P(converges)" in table.stdout


def test_recommend_with_model(fitted_dir):
    root, _ = fitted_dir
    args = ["parent", "recommend", "--in", 3, "--out", 2, "--budget", 1500, "--model", root / "parent"]
    result = invoke(*args, "--top", 3, "--seed", 1, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["top"]) == 3 and out["loss_kind"] == "mse" and out["steps"] == 8
    assert len({str(r["densities"]) for r in out["top"]}) == 3
    for key in ("h", "densities", "hidden_proportion", "predicted_min", "min_low", "min_high", "p_converge"):
        assert key in out["top"][0]
    table = invoke(*args)
    assert table.exit_code == 0 and "ranked by the rf parent" in table.stdout


def test_evaluate(fitted_dir, tmp_path):
    root, _ = fitted_dir
    result = invoke("parent", "evaluate", "--model", root / "parent", root / "unseen", "--out", tmp_path,
                    "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"]["runs"] == 40 and out["counts"]["seen_in_training"] == 0
    assert out["unseen"]["rf"]["pooled"]["n"] == out["counts"]["converged"]
    assert (tmp_path / "fig10.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "metrics.json").read_text())["unseen"] == out["unseen"]


@pytest.mark.parametrize("args, needle", [
    (["parent", "fit", "{root}/records", "--out", "{tmp}/p", "--model", "svm"], "--model 'svm' is unknown"),
    (["parent", "fit", "{root}/records", "--out", "{tmp}/p", "--folds", "1"], "folds = 1"),
    (["parent", "fit", "{tmp}/nothing", "--out", "{tmp}/p"], "does not exist"),
    (["parent", "fit", "{root}/records", "--out", "{tmp}/p", "--trees", "0", "--folds", "2"], "trees = 0"),
    (["parent", "predict", "--model", "{tmp}", "--in", "8", "--out", "6", "--budget", "3000"],
     "no manifest.json"),
    (["parent", "predict", "--model", "{root}/parent", "--in", "8", "--out", "6", "--budget", "3000",
      "--loss", "hinge"], "'hinge' is unknown"),
    (["parent", "predict", "--model", "{root}/parent", "--in", "80", "--out", "6", "--budget", "3000"],
     "give --steps and --loss"),
    (["parent", "predict", "--model", "{root}/parent", "--in", "8", "--out", "6", "--budget", "3000",
      "--kind", "mlp"], "no 'mlp' model"),
    (["parent", "predict", "--model", "{root}/parent", "--in", "8", "--out", "6", "--budget", "30"],
     "budget = 30 is too small"),
    (["parent", "recommend", "--in", "8", "--out", "6", "--top", "3"], "give --model too"),
    (["parent", "recommend", "--in", "8", "--out", "6", "--model", "{root}/parent", "--top", "0"], "top = 0"),
    (["parent", "evaluate", "--model", "{root}/parent", "{root}/records", "--out", "{tmp}/e"],
     "no converged runs the parent did not see"),
])
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
    with open(copy / "rf_curve.skops", "ab") as fh:
        fh.write(b"\0")
    result = invoke("parent", "recommend", "--in", 8, "--out", 6, "--budget", 3000, "--model", copy)
    assert result.exit_code == 2 and "rf_curve.skops was modified" in result.stderr
