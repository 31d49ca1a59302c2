"""benchmarks/reproduce.py at tiny sizes: the Table IV part end to end through the CLI, and its
paired statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import imported_benchmark

from sbrnn.records_report import BIN_LABELS


@pytest.fixture(scope="module")
def reproduce():
    yield from imported_benchmark("reproduce")


def test_paired_comparison_uses_the_seeds_both_ended_ok(reproduce):
    def run(status, loss, acc):
        return pd.Series({"status": status, "min_val_loss": loss, "test_acc": acc})

    runs = {
        "balanced": {0: run("ok", 1.0, 0.9), 1: run("ok", 1.2, 0.8), 2: run("ok", 1.1, 0.85)},
        "dense": {0: run("ok", 1.5, 0.7), 1: run("ok", 1.6, 0.6), 2: run("diverged", float("nan"), None)},
    }
    result = reproduce.compare(runs, "balanced", ("min_val_loss", "test_acc"))
    assert result["configs"]["dense"]["ok"] == 2 and result["configs"]["balanced"]["min_val_loss"]["n"] == 3
    paired = result["paired"]["dense"]
    assert paired["seeds"] == [0, 1] and "balanced" not in result["paired"]
    assert paired["min_val_loss"]["mean"] == pytest.approx(-0.45)
    assert paired["min_val_loss"]["ci_low"] < -0.45 < paired["min_val_loss"]["ci_high"]
    assert paired["test_acc"]["mean"] == pytest.approx(0.2)


@pytest.mark.slow
def test_table4_part_runs_and_resumes_at_tiny_sizes(reproduce, tmp_path, one_thread):
    settings = reproduce.Table4Settings(
        "toy-anomaly", 300, 4, "1", 1, {"n_train": 32, "n_val": 16, "n_test": 16}
    )
    log = reproduce.Log()
    tables = reproduce.table4(settings, tmp_path, log)
    result = reproduce.finish("table4", True, tmp_path, log, tables, 1.0)
    assert [c["command"].split()[3:5] for c in result["commands"]] == [
        ["child", "sweep"],
        ["records", "summary"],
        ["records", "plot"],
    ]
    assert "--stratify-hp 1" in result["commands"][0]["command"]
    assert tables["sweep"]["planned"] == 3 + 4 + len(BIN_LABELS)
    assert [r["bin"] for r in tables["hidden_proportion"]] == list(BIN_LABELS)
    assert sum(r["stratified"] for r in tables["hidden_proportion"]) == len(BIN_LABELS)
    assert all(r["runs"] >= 1 for r in tables["hidden_proportion"])  # every bin filled
    assert [r["paper"] for r in tables["model_density_draws_only"]] == [1.381, 1.511, 1.810, 2.026, 2.091]
    assert sum(r["runs"] for r in tables["model_density_draws_only"]) == 4  # the draws alone
    assert Path(tables["figure"]).is_file()
    assert json.loads((tmp_path / "tables.json").read_text())["tables"]["draws"] == 4
    assert "| .6-.8 | 1.373 |" in (tmp_path / "tables.md").read_text()
    again = reproduce.table4(settings, tmp_path, reproduce.Log())
    assert again["sweep"]["already_done"] == again["sweep"]["planned"] and again["sweep"]["finished"] == 0


@pytest.mark.slow
def test_fig1_runs_the_named_study_on_two_workers_and_resumes(reproduce, tmp_path, one_thread):
    tiny = {"n_train": 32, "n_val": 16, "n_test": 16}
    settings = reproduce.Fig1Settings(
        studies=(
            reproduce.Study("first", "toy-anomaly", tiny),
            reproduce.Study("second", "toy-anomaly", tiny),
        ),
        budget=300,
        seeds=(0, 1),
        epochs=1,
        mnist_options=None,
    )
    with pytest.raises(reproduce.SbrnnError, match="unknown fig1 study 'third'; this run has: first, second"):
        reproduce.fig1(settings, tmp_path, reproduce.Log(), workers=2, only=("third",))
    log = reproduce.Log()
    tables = reproduce.fig1(settings, tmp_path, log, workers=2, only=("second",))
    assert list(tables["studies"]) == ["second"] and not (tmp_path / "first").exists()
    commands = [c["command"] for c in log.commands]
    assert len(commands) == len(set(commands)) == len(settings.configs) * 2
    configs = tables["studies"]["second"]["configs"]
    assert set(configs) == {c.name for c in settings.configs}
    again = reproduce.Log()
    reproduce.fig1(settings, tmp_path, again, workers=2, only=("second",))
    assert again.commands == []  # every run was recorded: nothing retrained
