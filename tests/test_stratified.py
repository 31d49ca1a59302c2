"""Draws stratified by hidden proportion: every bin filled, labelled, deterministic; unreachable bins."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sbrnn.child import sampling
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.child.sweep.plan_file import load_plan
from sbrnn.child.weight_space import SparseBlockSpec, uniform_grid
from sbrnn.cli import app
from sbrnn.errors import SbrnnError
from sbrnn.records import read_records
from sbrnn.records_report import BIN_LABELS

runner = CliRunner()
TOY = ("toy-anomaly", 300.0, 8, 6)  # every bin reachable: 4% of the paper's draws below .2, 2% above .8


def _proportion(config, n_x: int, n_y: int) -> float:
    return SparseBlockSpec.from_budget(n_x, n_y, config.budget, config.densities).hidden_proportion


def test_bins_are_those_of_table_iv():
    assert sampling.HP_BINS == BIN_LABELS
    assert [sampling.hp_bin(p) for p in (0.0, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0)] == [
        "<.2",
        "<.2",
        ".2-.4",
        ".4-.6",
        ".6-.8",
        ">=.8",
        ">=.8",
    ]


def test_every_bin_gets_k_labelled_runs_in_it():
    task, budget, n_x, n_y = TOY
    plan = plan_sweep([task], [budget], 2, epochs=1, seed=5, include_baselines=True, stratify=3)
    labels = [p.label for p in plan]
    assert labels[:5] == ["dense", "uniform", "lstm", "random 0", "random 1"]
    stratified = [p for p in plan if p.label.startswith("stratified ")]
    assert [p.label for p in stratified] == [f"stratified {b} {i}" for b in BIN_LABELS for i in range(3)]
    for p in stratified:
        assert sampling.hp_bin(_proportion(p.config, n_x, n_y)) == p.label.split()[1]
        assert p.config.seed == 5 and p.config.arch == "sbrnn"
    assert len({p.run_id for p in plan}) == len(plan) == 5 + 15


def test_stratified_draws_are_deterministic_and_independent_per_run():
    task, budget, n_x, n_y = TOY
    one = sampling.draw_stratified(1, task, budget, n_x, n_y, sampling.Stratify(2))
    again = sampling.draw_stratified(1, task, budget, n_x, n_y, sampling.as_stratify("2"))
    assert one == again
    assert all(d.tries >= 1 and sampling.hp_bin(d.hidden_proportion) == d.bin for d in one)
    # a bin's draws do not depend on which other bins are drawn, nor on their count
    some = sampling.draw_stratified(1, task, budget, n_x, n_y, sampling.as_stratify("3:>=.8,.4-.6"))
    assert [d.label for d in some] == [f"stratified {b} {i}" for b in (".4-.6", ">=.8") for i in range(3)]
    assert [d for d in one if d.bin in (".4-.6", ">=.8")] == [d for d in some if d.index < 2]
    other = sampling.draw_stratified(2, task, budget, n_x, n_y, sampling.Stratify(2))
    assert [d.hyperparameters for d in other] != [d.hyperparameters for d in one]
    plan = plan_sweep([task], [budget], 0, epochs=1, seed=1, stratify=2)
    assert [p.run_id for p in plan] == [
        p.run_id for p in plan_sweep([task], [budget], 0, epochs=1, seed=1, stratify=2)
    ]


def test_an_unreachable_bin_is_an_error_naming_it_and_the_tries():
    # RAD at 50k: the paper's density floor (0.02) caps the hidden proportion at about 0.799
    strata = sampling.Stratify(1, (">=.8",), max_tries=50)
    with pytest.raises(SbrnnError, match=r"bin >=\.8 got no draw of the paper space in 50 tries at 2500 "):
        sampling.draw_stratified(0, "rad", 50_000, 2500, 10, strata)
    with pytest.raises(SbrnnError, match="densities; they are pinned"):
        plan_sweep(["toy-anomaly"], [300], 0, pins=sampling.Pins(densities=uniform_grid(0.5)), stratify=1)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "per_bin = 0 is out of range"),
        ("x", "'x' is malformed"),
        ("2:.1-.3", "bin '.1-.3' is unknown"),
        (2.5, "wrong type"),
    ],
)
def test_bad_stratify_values_are_one_line_errors(value, fragment):
    with pytest.raises(SbrnnError, match=fragment):
        sampling.as_stratify(value)


def test_plan_files_take_stratify_hp(tmp_path):
    plan = tmp_path / "strat.toml"
    plan.write_text(
        'seed = 2\nstratify_hp = 1\n[[task]]\nname = "toy-anomaly"\nepochs = 1\nbudgets = [300]\n'
        '[[task]]\nname = "toy-regression"\nepochs = 1\nbudgets = [300]\nstratify_hp = "2:>=.8"\n'
    )
    labels = [(p.config.task, p.label) for p in load_plan(plan).planned_runs()]
    assert labels == [("toy-anomaly", f"stratified {b} 0") for b in BIN_LABELS] + [
        ("toy-regression", "stratified >=.8 0"),
        ("toy-regression", "stratified >=.8 1"),
    ]
    plan.write_text('stratify_hp = "3:high"\n[[task]]\nname = "toy-anomaly"\nepochs = 1\n')
    with pytest.raises(SbrnnError, match=r"task 1: stratify_hp: hidden-proportion bin 'high' is unknown"):
        load_plan(plan)


def test_sweep_option_labels_the_records(tmp_path, one_thread):
    records = tmp_path / "runs"
    args = ["child", "sweep", "--task", "toy-anomaly", "--budget", "300", "--runs", "0", "--epochs", "1"]
    args += ["--stratify-hp", "1:.4-.6,>=.8", "--records", str(records)]
    args += ["--task-option", "n_train=32", "--task-option", "n_val=16", "--task-option", "n_test=16"]
    dry = runner.invoke(app, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    rows = json.loads(dry.stdout)
    assert [r["label"] for r in rows] == ["stratified .4-.6 0", "stratified >=.8 0"]
    assert sampling.hp_bin(rows[1]["hidden_proportion"]) == ">=.8"
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert sorted(str(r.label) for r in read_records(records)) == ["stratified .4-.6 0", "stratified >=.8 0"]
    bad = runner.invoke(app, [*args, "--stratify-hp", "0", "--dry-run"])
    assert bad.exit_code == 2 and "per_bin = 0 is out of range" in bad.output
