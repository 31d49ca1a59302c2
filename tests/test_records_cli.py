"""`sbrnn records summary|export|plot|report` on a records directory with known values."""

from __future__ import annotations

import json

import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from sbrnn.cli import app
from sbrnn.records import RunRecord, write_record

# (task, status, hidden proportion, model density, min val loss)
RUNS = [
    ("toy-anomaly", "ok", 0.10, 0.90, 2.0),
    ("toy-anomaly", "ok", 0.15, 0.85, 1.0),
    ("toy-anomaly", "ok", 0.30, 0.50, 1.2),
    ("toy-anomaly", "ok", 0.45, 0.35, 0.9),
    ("toy-anomaly", "ok", 0.55, 0.10, 0.7),
    ("toy-anomaly", "diverged", 0.05, 0.95, 3.0),
    ("toy-anomaly", "failed", None, None, None),
    ("toy-regression", "ok", 0.80, 0.20, 0.5),
    ("toy-regression", "ok", 0.65, 0.40, 0.3),
]


def _record(i: int, task: str, status: str, hp, density, loss) -> RunRecord:
    curve = [] if loss is None else [loss + 0.4, loss + 0.1, loss]
    n_x, n_y = (8, 6) if task == "toy-anomaly" else (3, 2)
    return RunRecord(
        run_id=f"{i:016x}",
        task=task,
        n_x=n_x,
        n_y=n_y,
        steps=6,
        loss_kind="mse",
        arch="sbrnn",
        h=20,
        lr=1e-3,
        batch_size=16,
        epochs=3,
        seed=0,
        status=status,
        budget=400.0,
        hidden_proportion=hp,
        model_density=density,
        d_hx=0.5,
        d_hh=density,
        d_hy=0.5,
        val_loss=curve,
        train_loss=curve,
        val_acc=[0.2, 0.3, 0.4] if curve and task == "toy-anomaly" else [],
        min_val_loss=loss if status == "ok" else (loss if loss is not None else None),
        error=None if status == "ok" else "boom",
    )


@pytest.fixture
def records(tmp_path):
    directory = tmp_path / "runs"
    for i, run in enumerate(RUNS):
        write_record(_record(i, *run), directory)
    return directory


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_summary_counts_and_paper_bins(records):
    out = json.loads(_invoke("records", "summary", str(records), "--json").stdout)
    assert out["runs"] == 9
    assert out["counts"] == [
        {"task": "toy-anomaly", "ok": 5, "diverged": 1, "failed": 1, "pruned": 0, "total": 7},
        {"task": "toy-regression", "ok": 2, "diverged": 0, "failed": 0, "pruned": 0, "total": 2},
    ]
    hp = {r["bin"]: r for r in out["tasks"]["toy-anomaly"]["hidden_proportion"]}
    t = 12.7062047  # Student's t, 97.5% quantile, 1 degree of freedom: half width t * std / sqrt(2)
    assert hp["<.2"] == {
        "bin": "<.2",
        "runs": 2,
        "mean_min_val_loss": 1.5,
        "ci_low": pytest.approx(1.5 - 0.5 * t),
        "ci_high": pytest.approx(1.5 + 0.5 * t),
        "diverged": 1,
    }
    assert hp[".2-.4"]["mean_min_val_loss"] == pytest.approx(1.2) and hp[".2-.4"]["ci_low"] is None
    assert hp[".4-.6"] == {
        "bin": ".4-.6",
        "runs": 2,
        "mean_min_val_loss": pytest.approx(0.8),
        "ci_low": pytest.approx(0.8 - 0.1 * t),
        "ci_high": pytest.approx(0.8 + 0.1 * t),
        "diverged": 0,
    }
    assert hp[">=.8"] == {
        "bin": ">=.8",
        "runs": 0,
        "mean_min_val_loss": None,
        "ci_low": None,
        "ci_high": None,
        "diverged": 0,
    }
    density = {r["bin"]: r for r in out["tasks"]["toy-anomaly"]["model_density"]}
    assert density["<.2"]["runs"] == 1 and density[">=.8"]["mean_min_val_loss"] == pytest.approx(1.5)
    regression = {r["bin"]: r["runs"] for r in out["tasks"]["toy-regression"]["hidden_proportion"]}
    assert regression == {"<.2": 0, ".2-.4": 0, ".4-.6": 0, ".6-.8": 1, ">=.8": 1}
    table = _invoke("records", "summary", str(records)).stdout
    assert "toy-anomaly" in table and "1.500" in table and "2 (1)" in table and "-4.853-7.853" in table


def test_export_csv_and_parquet_round_trip(records, tmp_path):
    csv, parquet = tmp_path / "all.csv", tmp_path / "all.parquet"
    out = _invoke("records", "export", str(records), "--csv", str(csv), "--parquet", str(parquet)).stdout
    assert "9 records written" in out
    frame = pd.read_csv(csv, dtype={"run_id": str})
    assert len(frame) == 9 and json.loads(frame.loc[frame.run_id == f"{0:016x}", "val_loss"].item()) == [
        2.4,
        2.1,
        2.0,
    ]
    table = pl.read_parquet(parquet)
    assert table.height == 9 and sorted(table["status"].unique().to_list()) == ["diverged", "failed", "ok"]
    assert table.filter(pl.col("run_id") == f"{1:016x}")["val_loss"].to_list() == [[1.4, 1.1, 1.0]]


def test_plot_writes_the_figures_per_task(records, tmp_path):
    out = tmp_path / "figs"
    _invoke("records", "plot", str(records), "--out", str(out))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{fig}_{task}.png"
        for fig in ("fig6", "fig8", "fig7b9b")
        for task in ("toy-anomaly", "toy-regression")
    )
    for path in out.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_report_writes_one_html_file(records, tmp_path):
    out = tmp_path / "report.html"
    result = _invoke("records", "report", str(records), "--out", str(out))
    assert result.stdout == f"report written to {out}\n"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<img ") == 6  # curves, Fig. 6, Fig. 8 per task
    assert 'id="task-toy-anomaly"' in page and 'id="task-toy-regression"' in page


def test_truncated_file_is_one_warning_line_and_the_rest_reads(records):
    shard = records / f"{2:016x}.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    result = _invoke("records", "summary", str(records), "--json")
    assert json.loads(result.stdout)["runs"] == 8
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(shard) in warning[0]


def test_bad_input_is_one_line(records, tmp_path):
    cases = [
        (["records", "summary", str(tmp_path / "missing")], "does not exist"),
        (["records", "export", str(records)], "give --csv FILE or --parquet FILE"),
        (["records", "export", str(records), "--csv", str(tmp_path / "x.txt")], "must end in .csv"),
        (
            ["records", "export", str(records), "--parquet", str(records / "x.parquet")],
            "inside the records directory",
        ),
        (["records", "plot", str(tmp_path), "--out", str(tmp_path / "f")], "no readable records"),
        (["records", "report", str(tmp_path / "gone"), "--out", str(tmp_path / "r.html")], "does not exist"),
        (["records", "report", str(tmp_path), "--out", str(tmp_path / "r.html")], "no readable records"),
        (["records", "report", str(records), "--out", str(tmp_path / "no" / "r.html")], "does not exist"),
        (["records", "report", str(records), "--out", str(tmp_path)], "is a directory"),
        (
            ["records", "report", str(records), "--out", str(tmp_path / "r.html"), "--parent", str(tmp_path)],
            "is not a parent directory",
        ),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)
