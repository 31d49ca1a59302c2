"""Sweep plan files: budgets by the rule, the whole plan dry-run and run, resume over compacted files."""

import json

import pytest
from typer.testing import CliRunner

from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.child.sweep.plan_file import load_plan, round_significant, task_budgets
from sbrnn.child.weight_space import reference_budget
from sbrnn.cli import app
from sbrnn.errors import SbrnnError
from sbrnn.records import read_records, record_files

runner = CliRunner()

PLAN = """
name = "tiny"
seed = 3
runs = 2
include_baselines = true
balanced = true
budget_factors = [1, 10]
min_budget = 200
patience = 2

[[task]]
name = "toy-anomaly"
epochs = 2
options = { n_train = 32, n_val = 16, n_test = 16 }

[[task]]
name = "toy-regression"
epochs = 1
runs = 1
budgets = [300]
options = { n_train = 32, n_val = 16, n_test = 16 }
"""


def test_budget_rule():
    assert round_significant(31_234) == 31_000 and round_significant(0.01234) == 0.012
    assert reference_budget(2500, 10) == 25_100 and reference_budget(2, 1) == 1000
    assert task_budgets(2500, 10, [1.2, 3.8, 12]) == [30_000, 95_000, 300_000]
    assert task_budgets(8, 6, [1, 10], min_budget=200) == [200, 2000]


def test_a_plan_file_plans_runs_and_resumes_over_compacted_records(tmp_path, one_thread):
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN)
    parsed = load_plan(plan)
    anomaly, regression = parsed.tasks
    assert anomaly.budgets == (200.0, 2000.0) and regression.budgets == (300.0,)
    planned = parsed.planned_runs()
    assert len(planned) == 2 * (4 + 2) + (4 + 1)  # per budget: 3 baselines, balanced, the draws
    assert {p.config.patience for p in planned} == {2} and {p.config.seed for p in planned} == {3}

    records = tmp_path / "runs"
    dry = runner.invoke(
        app, ["child", "sweep", "--plan", str(plan), "--records", str(records), "--dry-run", "--json"]
    )
    assert dry.exit_code == 0, dry.output
    assert len(json.loads(dry.stdout)) == 17

    first = runner.invoke(app, ["child", "sweep", "--plan", str(plan), "--records", str(records), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["finished"] == 17
    by_label = {r.label for r in read_records(records)}
    assert {"dense", "uniform", "lstm", "balanced", "random 0", "random 1"} <= by_label
    assert {r.origin for r in read_records(records)} == {"sweep"}

    compacted = runner.invoke(app, ["records", "compact", str(records), "--json"])
    assert compacted.exit_code == 0, compacted.output
    assert json.loads(compacted.stdout)["runs"] == 17 and len(record_files(records)) == 2
    again = runner.invoke(app, ["child", "sweep", "--plan", str(plan), "--records", str(records), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["to_run"] == 0


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("runs = 2\n", "lists no [[task]]"),
        ("runz = 2\n[[task]]\nname = 'toy-anomaly'\nepochs = 1\n", "unknown key 'runz'"),
        ("runs = 'two'\n[[task]]\nname = 'toy-anomaly'\nepochs = 1\n", "runs = 'two' has the wrong type"),
        ("[[task]]\nname = 'no-such-task'\nepochs = 1\n", "unknown task 'no-such-task'"),
        ("[[task]]\nname = 'toy-anomaly'\n", "no epochs"),
        ("[[task]]\nname = 'toy-anomaly'\nepochs = 1\nbudgets = [-5]\n", "budgets = [-5] is out of range"),
        ("[[task\n", "is not valid TOML"),
        (
            "lstm_lrs = [0.001, 0]\n[[task]]\nname = 'toy-anomaly'\nepochs = 1\n",
            "lstm_lrs = [0.001, 0] is out",
        ),
        (
            "[[task]]\nname = 'toy-anomaly'\nepochs = 1\nlstm_lrs = 0.001\n",
            "lstm_lrs = 0.001 has the wrong type",
        ),
    ],
)
def test_bad_plan_files_are_one_line_errors(tmp_path, text, fragment):
    plan = tmp_path / "bad.toml"
    plan.write_text(text)
    with pytest.raises(SbrnnError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        load_plan(plan).planned_runs()
    result = runner.invoke(app, ["child", "sweep", "--plan", str(plan), "--records", str(tmp_path / "r")])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_plan_and_task_flags_do_not_mix(tmp_path):
    plan = tmp_path / "p.toml"
    plan.write_text(PLAN)
    result = runner.invoke(app, ["child", "sweep", "--plan", str(plan), "--task", "rad", "--records", "r"])
    assert result.exit_code == 2 and "either --plan or --task" in result.stderr
    stratified = runner.invoke(
        app, ["child", "sweep", "--plan", str(plan), "--stratify-hp", "2", "--records", str(tmp_path / "s")]
    )
    assert stratified.exit_code == 2 and "either --plan or --stratify-hp" in stratified.stderr
    file_as_records = runner.invoke(app, ["child", "sweep", "--plan", str(plan), "--records", str(plan)])
    assert file_as_records.exit_code == 2 and "is a file" in file_as_records.stderr


def test_lstm_lrs_add_the_lstm_at_each_rate_and_a_task_may_opt_out(tmp_path):
    plan = tmp_path / "lstm.toml"
    plan.write_text(
        PLAN.replace("patience = 2\n", "patience = 2\nlstm_lrs = [3e-4, 1e-3, 2.2e-3]\n").replace(
            "runs = 1\n", "runs = 1\nlstm_lrs = []\n"
        )
    )
    parsed = load_plan(plan)
    assert [t.lstm_lrs for t in parsed.tasks] == [(3e-4, 1e-3, 2.2e-3), ()]
    planned = parsed.planned_runs()
    extra = [p for p in planned if p.label.startswith("lstm lr")]
    # 1e-3 is the LSTM baseline's own rate: planned once, labelled as the baseline
    assert sorted(p.label for p in extra) == [
        "lstm lr 0.0003",
        "lstm lr 0.0003",
        "lstm lr 0.0022",
        "lstm lr 0.0022",
    ]
    assert {(p.config.arch, p.config.task) for p in extra} == {("lstm", "toy-anomaly")}
    assert {p.config.lr for p in extra} == {3e-4, 2.2e-3} and {p.config.budget for p in extra} == {
        200.0,
        2000.0,
    }
    assert len(planned) == 17 + 4
    plain = tmp_path / "plain.toml"
    plain.write_text(PLAN)
    without = {p.run_id for p in load_plan(plain).planned_runs()}
    assert without <= {p.run_id for p in planned}  # adding rates leaves every other run's id alone


def test_sweep_lstm_lr_from_the_command_line(tmp_path):
    args = ["child", "sweep", "--task", "toy-regression", "--budget", "500", "--runs", "1"]
    dry = runner.invoke(app, [*args, "--lstm-lr", "2e-3", "--records", str(tmp_path), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    rows = {row["label"]: row for row in json.loads(dry.stdout)}
    assert set(rows) == {"random 0", "lstm lr 0.002"} and rows["lstm lr 0.002"]["lr"] == 2e-3
    bad = runner.invoke(app, [*args, "--lstm-lr", "-1", "--records", str(tmp_path)])
    assert bad.exit_code == 2 and "LSTM learning rate -1.0 is out of range" in bad.stderr
    plan = tmp_path / "p.toml"
    plan.write_text(PLAN)
    mixed = runner.invoke(app, ["child", "sweep", "--plan", str(plan), "--lstm-lr", "1e-3", "--records", "r"])
    assert mixed.exit_code == 2 and "either --plan or --lstm-lr" in mixed.stderr


def test_the_zoo_plan_still_plans_every_committed_zoo_run():
    """``lstm_lrs`` was added to zoo-v1.toml after its sweep: the runs recorded before keep their ids."""
    from pathlib import Path

    from sbrnn.records import read_frame

    root = Path(__file__).resolve().parents[1]
    planned = load_plan(root / "sweeps" / "zoo-v1.toml").planned_runs()
    recorded = set(read_frame(root / "data" / "zoo-v1")["run_id"])
    assert recorded <= {p.run_id for p in planned}
    assert len(planned) == 4002 + 24 * 3 * 4


def test_jobs_go_round_robin_across_tasks():
    from sbrnn.child.sweep.coordinator import interleave_tasks

    plan = plan_sweep(["toy-anomaly", "toy-regression", "seq-digits"], [3000], 3, epochs=1)
    order = [job[0].task for job in interleave_tasks([(p.config,) for p in plan])]
    assert order[:3] == ["toy-anomaly", "toy-regression", "seq-digits"] and len(order) == 9
    assert sorted(order) == sorted(p.config.task for p in plan)


def test_a_plan_names_its_task_entries_and_refuses_unknown_ones():
    from pathlib import Path

    plan = load_plan(Path(__file__).resolve().parents[1] / "sweeps" / "zoo-v1.toml")
    entry = plan.task("rad20")
    assert entry.name == "rad20" and len(entry.budgets) == 3
    with pytest.raises(SbrnnError, match=r"task 'nope' is not in the plan .*zoo-v1.toml; it has: .*rad20"):
        plan.task("nope")


def test_the_held_out_tasks_are_not_in_the_zoo_and_are_swept_as_its_middle_budget():
    from pathlib import Path

    from sbrnn.datasets.registry import get_info
    from sbrnn.records import read_frame

    root = Path(__file__).resolve().parents[1]
    names = ("zoo-v1", "zoo-test", "zoo-test3", "zoo-test4", "zoo-test5")  # in the order swept
    zoo, *batches = (load_plan(root / "sweeps" / f"{n}.toml") for n in names)
    planned, recorded = (
        {t.name for t in zoo.tasks},
        set(read_frame(root / "data" / "zoo-v1")["task"].unique()),
    )
    for name, plan, size in zip(names[1:], batches, (24, 12, 12, 12)):
        held = {t.name for t in plan.tasks}  # in no earlier plan and no earlier batch's records
        assert len(held) == size and not held & planned and not held & recorded
        planned |= held
        recorded |= set(read_frame(root / "data" / name)["task"].unique())
    assert {get_info(t.name).family for t in batches[0].tasks} == {
        get_info(t.name).family for t in zoo.tasks
    } - {"synthetic"}
    for plan in batches:
        for entry in plan.tasks:
            info = get_info(entry.name)
            middle = round_significant(3.8 * max(2000, info.n_y * (info.n_x + info.n_y)))
            assert entry.budgets == (middle,)
            assert (entry.runs, entry.patience, entry.batch_size) == (42, 8, 16)
            assert tuple(entry.lstm_lrs) == zoo.task("rad20").lstm_lrs  # the zoo's five LSTM rates
        same = ("space", "seed", "rule", "include_baselines", "balanced")
        assert [getattr(plan, k) for k in same] == [getattr(zoo, k) for k in same]
