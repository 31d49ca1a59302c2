"""`sbrnn records report`: one self-contained HTML page, checked as text and in headless Chromium."""

from __future__ import annotations

import dataclasses
import html
import re
import shlex
import shutil
import subprocess

import pytest
from conftest import make_synthetic_records

from sbrnn import records_report
from sbrnn.child.weight_space import format_grid, parse_grid
from sbrnn.cli.options import task_options
from sbrnn.records import RunRecord, records_table, write_record
from sbrnn.records_html import config_key, render_report, train_command, write_report
from sbrnn.vocabulary import BLOCKS

TASKS = ("syn-a", "syn-b")
STUDY = "tune-syn-a"


def _records() -> list[RunRecord]:
    """Synthetic runs of two tasks (dense and LSTM baselines, random draws) plus: the balanced label
    on one draw per task, a uniform baseline per task, two more seeds of one dense configuration,
    and a study of six tuned trials, one of them pruned."""
    runs = make_synthetic_records(40, tasks=TASKS)
    extra = []
    for task in TASKS:
        draw = next(r for r in runs if r.task == task and r.label.startswith("random") and r.status == "ok")
        draw.label = "balanced"
        uniform = {f"d_{b}": 0.2 for b in BLOCKS}
        curve = [1.1 * v for v in draw.val_loss]
        extra.append(
            dataclasses.replace(
                draw,
                run_id=f"uniform-{task}",
                arch="uniform",
                label="uniform",
                val_loss=curve,
                min_val_loss=min(curve),
                **uniform,
            )
        )
    dense = runs[0]
    for seed in (1, 2):
        curve = [v * (1 + 0.05 * seed) for v in dense.val_loss]
        extra.append(
            dataclasses.replace(
                dense, run_id=f"dense-seed-{seed}", seed=seed, val_loss=curve, min_val_loss=min(curve)
            )
        )
    draws = [r for r in runs if r.task == "syn-a" and r.label.startswith("random") and r.status == "ok"]
    for trial, draw in enumerate(draws[:6]):
        tuned = dataclasses.replace(
            draw,
            run_id=f"trial-{trial}",
            origin="tune",
            study=STUDY,
            trial=trial,
            label="tpe",
            task_options='{"n_train": 300}',
        )
        if trial == 3:
            tuned.status, tuned.val_loss = "pruned", draw.val_loss[:3]
            tuned.min_val_loss = min(tuned.val_loss)
        extra.append(tuned)
    return runs + extra


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The records written as shards, a tiny parent fitted on other synthetic runs, and the report."""
    from sbrnn.parent.evaluate import fit_and_evaluate
    from sbrnn.parent.store import save_parent

    root = tmp_path_factory.mktemp("report")
    records = _records()
    for record in records:
        write_record(record, root / "runs")
    seen = make_synthetic_records(60, seed=1, tasks=TASKS)
    parent, metrics = fit_and_evaluate(seen, ["xgb"], folds=2, trees=10, members=1, name="tiny")
    save_parent(parent, root / "parent", metrics)
    path = write_report(root / "runs", root / "report.html", root / "parent")
    return path, path.read_text(encoding="utf-8"), records, (parent, seen)


def test_page_holds_every_section_and_loads_nothing(report):
    path, page, records, _ = report
    for anchor in ("counts", "importance", "studies", "parent", "task-syn-a", "task-syn-b"):
        assert f'id="{anchor}"' in page
    assert page.count("<table>") >= 10 and "permutation importance of a random forest" in page
    # 2 tasks x (curves, Fig. 6, Fig. 8), the study's history, the parent's two plots
    assert page.count("<img ") == 9
    loads = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert loads and all(v.startswith(("data:image/png;base64,", "#")) for v in loads), loads
    assert not re.search(r"https?://", page) and "@import" not in page and "url(" not in page
    frame = records_table(records).to_pandas()
    assert f"<b>{len(records)}</b>" in page  # the counts table's total
    bins = records_report.summary(frame).bins["syn-a"]["hidden_proportion"]
    full = next(b for b in bins if b.runs >= 2)
    assert f"[{full.ci_low:.4g}, {full.ci_high:.4g}]" in page and f"{full.runs} runs" in page


def test_best_runs_come_with_their_train_lines(report):
    _, page, records, _ = report
    frame = records_table(records).to_pandas()
    for (task, budget), runs in frame[records_report.is_ok(frame)].groupby(["task", "budget"]):
        best = runs.loc[runs["min_val_loss"].idxmin()]
        assert html.escape(train_command(best)) in page, (task, budget)


def test_seeds_of_one_configuration_group_together(report):
    _, _, records, _ = report
    frame = records_table(records).to_pandas().set_index("run_id", drop=False)
    keys = config_key(frame)
    dense = keys[["s0-00000", "dense-seed-1", "dense-seed-2"]]
    assert dense.nunique() == 1 and (keys == dense.iloc[0]).sum() == 3


def test_train_command_reads_back_as_the_run(report):
    _, _, records, _ = report
    frame = records_table(records).to_pandas()
    for _, run in frame.iterrows():
        args = shlex.split(train_command(run))
        assert args[:3] == ["sbrnn", "child", "train"]
        flags = dict(zip(args[3::2], args[4::2]))
        assert flags["--task"] == run["task"] and flags["--arch"] == run["arch"]
        assert float(flags["--lr"]) == run["lr"] and float(flags["--budget"]) == run["budget"]
        if run["arch"] == "sbrnn":
            grid = parse_grid(flags["--densities"], "densities")
            assert format_grid(grid) == format_grid(
                ((run.d_hx, run.d_hh, run.d_hy), (run.d_yx, run.d_yh, run.d_yy))
            )
        assert ("--densities" in flags) == (run["arch"] == "sbrnn")
        assert ("--uniform-density" in flags) == (run["arch"] == "uniform")
        assert ("--means" in flags) == ("--stds" in flags) == (run["arch"] != "lstm")
        assert flags["--seed"] == str(run["seed"]) and flags["--epochs"] == str(run["epochs"])
        if run["origin"] == "tune":
            assert task_options([flags["--task-option"]]) == {"n_train": 300}


def test_study_counts_its_pruned_trial(report):
    _, page, _, _ = report
    row = re.search(rf"<tr><td class=text>{STUDY}</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1:5] == ["6", "5", "1", "0"]  # trials, ok, pruned, failed or diverged


def test_a_parent_that_saw_every_run_is_a_note_not_an_error(report):
    _, _, _, (parent, seen) = report
    page = render_report(seen[:2], title="seen", parent=parent)
    assert re.search(r'id="parent">.*?No evaluation: .*?were in its training set', page)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="no chromium or chromium-browser on PATH (apt-get install chromium)"
)
def test_page_renders_in_headless_chromium_with_every_image_decoded(report, tmp_path):
    path, page, _, _ = report
    result = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body[^>]*>", result.stdout).group(0)
    images = page.count("<img ")
    assert f'data-images="{images}/{images}"' in body and 'data-loaded="all"' in body, body
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console  # no script error, no load the page's policy blocked


def test_t_quantile_matches_scipy():
    from scipy.stats import t

    from sbrnn.records_report import t975

    assert max(abs(t975(df) - t.ppf(0.975, df)) for df in range(1, 3000)) < 1e-3
