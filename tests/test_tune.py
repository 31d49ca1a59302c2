"""`sbrnn child tune` and `parent recommend --optuna-storage`: warm start, pruning, resume, leases, errors."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_synthetic_records
from typer.testing import CliRunner

from sbrnn.child import tune as tuning
from sbrnn.cli import app
from sbrnn.records import read_records

try:
    import optuna
except ImportError:  # the tune extra is missing: only the test of its error runs
    optuna = None

pytestmark = pytest.mark.usefixtures("one_thread")
needs_optuna = pytest.mark.skipif(optuna is None, reason="needs the tune extra (Optuna)")

runner = CliRunner()
TASK = ["--task", "toy-regression", "--task-option", "n_train=32", "--budget", "400", "--epochs", "2"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def task():
    from sbrnn.datasets.summary import build_checked

    return build_checked("toy-regression", 0, {"n_train": 32})


@pytest.fixture(scope="module")
def parent_dir(tmp_path_factory):
    """A tiny parent (xgb, 10 rounds) fitted on synthetic records of two tasks, one of toy-regression's
    dims, saved; and the parent itself."""
    from sbrnn.parent.evaluate import fit_and_evaluate
    from sbrnn.parent.store import save_parent

    records = make_synthetic_records(60, seed=1, tasks=("syn-a", "syn-b"))
    parent, report = fit_and_evaluate(records, ["xgb"], folds=2, trees=10, members=1, name="tiny")
    directory = tmp_path_factory.mktemp("tune") / "parent"
    save_parent(parent, directory, report)
    return directory, parent


def settings(tmp_path, **changes):
    fields = dict(
        task="toy-regression",
        task_options={"n_train": 32},
        budget=400,
        trials=3,
        epochs=2,
        records=tmp_path / "runs",
        warm_start=0,
    )
    return tuning.TuneSettings(**{**fields, **changes})


def load(s):
    return optuna.load_study(study_name=s.study_name, storage=tuning.open_storage(s.storage_spec))


def trials_so_far(s):
    """The study's trials as the journal holds them now: none before the tune process has written its
    study (the journal file can exist a moment before the study's creation lands in it)."""
    if not os.path.exists(s.storage_spec):
        return []
    try:
        return load(s).trials
    except KeyError:
        return []


def recorded(s):
    records = read_records(s.records)
    assert len({r.trial for r in records}) == len(records)  # one record per trial
    return {r.trial: r for r in records}


@needs_optuna
def test_warm_start_enqueues_the_parents_top_k_first_and_never_again(tmp_path, task, parent_dir):
    from sbrnn.parent.features import TaskContext
    from sbrnn.parent.recommend import recommend

    _, parent = parent_dir
    first = settings(tmp_path, warm_start=3)
    summary = tuning.tune(first, task, parent=parent)
    top = recommend(parent, TaskContext.of_task(task), 400, top=3, task_name="toy-regression").top
    wanted = [(s.rank, tuning.recommendation_params(s)) for s in top]
    space = tuning.SPACES["paper"]
    wanted = [  # an LSTM is skipped; values outside the space are clipped into it
        (rank, {name: space[name].clip(v) for name, v in params.items()})
        for rank, params in wanted
        if params is not None
    ]
    assert wanted and summary.warm_start.enqueued == len(wanted) and summary.warm_start.parent == "tiny"
    skipped = [n for n in summary.warm_start.notes if "clipped" not in n]  # clipping into the space keeps it
    assert len(skipped) == 3 - len(wanted)
    study = load(first)
    assert study.user_attrs["warm_start"]["parent"] == "tiny"
    runs = recorded(first)
    for trial, (rank, params) in zip(study.trials, wanted):
        assert trial.params == pytest.approx(params)
        assert runs[trial.number].label == f"warm start {rank}"
        assert runs[trial.number].d_hx == pytest.approx(params["d_hx"])
    assert summary.finished == 3 and sorted(runs) == [0, 1, 2]
    assert all(r.origin == "tune" and r.study == first.study_name and r.status == "ok" for r in runs.values())

    again = tuning.tune(settings(tmp_path, warm_start=3, trials=4), task, parent=parent)
    assert again.warm_start.enqueued == 0 and again.ran == 1 and again.finished == 4
    assert recorded(first)[3].label == "tpe"


@needs_optuna
def test_pruned_runs_keep_their_partial_curves(tmp_path, task):
    s = settings(tmp_path, trials=2, epochs=3)
    summary = tuning.tune(s, task, pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # prunes at epoch 1
    assert summary.states == {"pruned": 2} and summary.finished == 2 and summary.best is None
    for record in recorded(s).values():
        assert record.status == "pruned" and len(record.val_loss) == 1 < record.epochs
        assert record.best_epoch == 1 and record.test_loss is not None


@needs_optuna
def test_a_study_made_with_other_ranges_is_refused(tmp_path, task, monkeypatch):
    from sbrnn.child.sampling import draw
    from sbrnn.errors import SbrnnError

    lr = tuning.SPACES["paper"]["lr"]  # the sweep's 3-sigma box: its draws lie inside but for tails
    inside = [lr.low <= draw(np.random.default_rng(i)).lr <= lr.high for i in range(2000)]
    assert 0.98 < np.mean(inside) < 0.99
    study = dict(epochs=1, storage=str(tmp_path / "j.journal"), study="s")
    assert tuning.tune(settings(tmp_path, trials=1, **study), task).finished == 1
    monkeypatch.setitem(tuning.SPACES["paper"], "lr", tuning.Range(1e-4, 3e-3, log=True))
    refused = r"tunes ranges = .*lr 0.0001..0.0022 log.*, not .*lr 0.0001..0.003 log"
    with pytest.raises(SbrnnError, match=refused):
        tuning.tune(settings(tmp_path, trials=2, **study), task)
    assert tuning.space_tag("paper") != tuning.space_tag("wide")


@needs_optuna
def test_resume_after_interruptions_trains_exactly_n_each_recorded_once(
    tmp_path, task, parent_dir, monkeypatch
):
    from sbrnn.child import train

    _, parent = parent_dir
    real, calls = train.train_run, []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_run", interrupted_second)
    s = settings(tmp_path, warm_start=3)
    summary = tuning.tune(s, task, parent=parent)
    assert summary.stopped and summary.finished == 1 and summary.interrupted == 1
    cut = load(s).trials[1]
    monkeypatch.setattr(train, "train_run", real)

    summary = tuning.tune(s, task, parent=parent)  # Ctrl-C, then the same command
    assert not summary.stopped and summary.finished == 3 and summary.interrupted == 1
    runs = recorded(s)
    assert 1 not in runs and len(runs) == 3
    assert [r.label for r in runs.values()].count(cut.user_attrs["sbrnn_label"]) == 1  # the warm start reran

    study = load(s)  # kill -9 in a trial: it stays RUNNING, its worker's lease unlocked
    study.ask().set_user_attr(tuning.WORKER, "killed")
    (tmp_path / "runs" / "optuna.journal.workers" / "killed").touch()
    summary = tuning.tune(settings(tmp_path, warm_start=3, trials=4), task, parent=parent)
    assert summary.finished == 4 and summary.interrupted == 2 and summary.states["fail"] == 2
    assert len(recorded(s)) == 4 and summary.states.get("running", 0) == 0


@needs_optuna
def test_a_live_workers_running_trial_is_waited_for(tmp_path, task, monkeypatch):
    s = settings(tmp_path, trials=1)
    lease_dir = tmp_path / "runs" / "optuna.journal.workers"
    lease_dir.mkdir(parents=True)
    with open(lease_dir / "alive", "w") as lease:
        fcntl.flock(lease, fcntl.LOCK_EX)
        study = optuna.create_study(study_name=s.study_name, storage=tuning.open_storage(s.storage_spec))
        study.set_user_attr(tuning.STUDY_ATTR, s.identity())
        study.ask().set_user_attr(tuning.WORKER, "alive")

        def stop(running):
            assert running == 1
            raise KeyboardInterrupt

        summary = tuning.tune(s, task, on_wait=stop)
    assert summary.stopped and summary.ran == 0 and summary.states == {"running": 1}


@needs_optuna
def test_an_unclaimed_running_trial_is_stale_after_the_grace(tmp_path, task, monkeypatch):
    """A process killed between Optuna starting a trial and its claim leaves a trial with no worker:
    waited for within the grace, failed and rerun after it."""
    s = settings(tmp_path, trials=1)
    storage = tuning.open_storage(s.storage_spec)
    study = optuna.create_study(study_name=s.study_name, storage=storage)
    study.set_user_attr(tuning.STUDY_ATTR, s.identity())
    study.ask()

    def stop(running):
        raise KeyboardInterrupt

    waited = tuning.tune(s, task, on_wait=stop)
    assert waited.stopped and waited.states == {"running": 1}
    monkeypatch.setattr(tuning, "GRACE_S", 0)

    def no_wait(running):
        raise AssertionError(f"waited for {running} running trial(s) that no process runs")

    summary = tuning.tune(s, task, on_wait=no_wait)
    assert summary.ran == 1 and summary.states == {"complete": 1, "fail": 1}


@needs_optuna
def test_cli_json_then_table_on_sqlite(tmp_path, parent_dir):
    directory, _ = parent_dir
    args = [
        "child",
        "tune",
        *TASK,
        "--trials",
        "2",
        "--records",
        tmp_path / "runs",
        "--model",
        directory,
        "--warm-start",
        "1",
        "--pruner",
        "none",
        "--storage",
        f"sqlite:///{tmp_path / 'study.db'}",
        "--study",
        "s",
    ]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["finished"] == 2 and summary["states"] == {"complete": 2} and summary["study"] == "s"
    assert summary["warm_start"]["parent"] == "tiny" and summary["warm_start"]["enqueued"] == 1
    assert summary["best"]["number"] in (0, 1) and len(read_records(tmp_path / "runs")) == 2

    result = invoke(*args)  # done already: nothing runs, the table shows the study
    assert result.exit_code == 0, result.output
    assert "2 of 2 trained, 0 now" in result.stdout and "Best trials" in result.stdout

    result = invoke(*args[:-2], "--study", "s", "--epochs", "3")
    assert result.exit_code == 2 and "tunes epochs = 2, not 3" in result.output


@needs_optuna
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pruner", "hyperband"], "pruner 'hyperband' is unknown; allowed: median, asha, none"),
        (["--space", "huge"], "space 'huge' is unknown; allowed: paper, wide"),
        (["--archs", "sbrnn,gru"], "arch 'gru' is unknown; allowed: sbrnn, lstm"),
        (
            ["--archs", "lstm,lstm"],
            "archs 'lstm,lstm' is not allowed; allowed: distinct names of sbrnn, lstm",
        ),
        (["--warm-start", "2", "--no-warm-start"], "give either --warm-start K or --no-warm-start"),
        (["--trials", "0"], "--trials 0 is out of range"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, args, needle):
    result = invoke(
        "child", "tune", *TASK, "--records", tmp_path, "--trials", "2", *args
    )  # the last --trials wins
    assert result.exit_code == 2 and needle in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1


def test_without_optuna_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    result = invoke("child", "tune", *TASK, "--trials", "1", "--records", tmp_path)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: tuning needs Optuna, which is not installed: pip install 'sbrnn[tune]'"
    ]


@needs_optuna
def test_parent_recommend_enqueues_into_an_existing_study(tmp_path, parent_dir):
    directory, _ = parent_dir
    journal = tmp_path / "mine.journal"
    study = optuna.create_study(study_name="mine", storage=tuning.open_storage(str(journal)))
    args = [
        "parent",
        "recommend",
        "--in",
        3,
        "--out",
        2,
        "--steps",
        8,
        "--loss",
        "mse",
        "--budget",
        400,
        "--model",
        directory,
        "--top",
        2,
        "--optuna-storage",
        journal,
    ]
    result = invoke(*args, "--study", "mine", "--json")
    assert result.exit_code == 0, result.output
    top = [s for s in json.loads(result.stdout)["top"] if s["arch"] != "lstm"]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == len(top) >= 1
    for trial, scored in zip(waiting, top):
        assert trial.system_attrs["fixed_params"]["lr"] == scored["lr"]
        assert trial.system_attrs["fixed_params"]["d_hx"] == scored["densities"][0][0]
        assert trial.user_attrs["sbrnn_label"] == f"tiny rank {scored['rank']}"

    result = invoke(*args, "--study", "theirs")
    assert result.exit_code == 2 and "study 'theirs' is not in storage" in result.output
    assert "allowed: mine" in result.output


@needs_optuna
@pytest.mark.slow
def test_kill_9_in_a_trial_then_the_same_command_finishes(tmp_path):
    """A real ``kill -9`` of a tune process in its first trial; the same command then finishes."""
    records = tmp_path / "runs"
    args = [
        "child",
        "tune",
        "--task",
        "toy-regression",
        "--task-option",
        "n_train=256",
        "--budget",
        "400",
        "--epochs",
        "100",
        "--trials",
        "2",
        "--records",
        str(records),
        "--no-warm-start",
        "--pruner",
        "none",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "sbrnn.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    s = settings(tmp_path, task_options={"n_train": 256}, epochs=100, trials=2)
    deadline = time.time() + 120
    while not any(t.state.name == "RUNNING" for t in trials_so_far(s)):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (
        summary["finished"] == 2
        and summary["interrupted"] == 1
        and summary["states"] == {"complete": 2, "fail": 1}
    )
    assert sorted(recorded(s)) == [1, 2]


@needs_optuna
def test_a_study_of_two_architectures_takes_the_lstm_a_parent_ranks_first(tmp_path, task, monkeypatch):
    """With ``archs = (sbrnn, lstm)`` the warm start enqueues an LSTM recommendation (only ``arch`` and
    ``lr``), every trial draws the parameters of its architecture, and records say which it trained;
    an sbrnn-only study skips that rank with a note, and neither continues the other."""
    from types import SimpleNamespace

    from sbrnn.errors import SbrnnError
    from sbrnn.parent import recommend as recommending

    ones, zeros, stds = ((1.0,) * 3,) * 2, ((0.0,) * 3,) * 2, ((0.05,) * 3,) * 2
    top = [
        SimpleNamespace(rank=1, arch="lstm", densities=None, means=None, stds=None, lr=1e-3),
        SimpleNamespace(rank=2, arch="dense", densities=ones, means=zeros, stds=stds, lr=2e-3),
    ]
    made = SimpleNamespace(top=top, parent={"name": "stub"}, mode="ranked")
    monkeypatch.setattr(recommending, "recommend", lambda *args, **kwargs: made)

    both = settings(tmp_path, trials=6, warm_start=2, archs=("sbrnn", "lstm"), study="both")
    summary = tuning.tune(both, task, parent=SimpleNamespace(name="stub"))
    assert summary.warm_start.enqueued == 2 and summary.archs == ("sbrnn", "lstm")
    trials, runs = load(both).trials, recorded(both)
    assert trials[0].params == {"arch": "lstm", "lr": 1e-3} and runs[0].label == "warm start 1"
    assert (
        trials[1].params["arch"] == "sbrnn"
        and trials[1].params["d_hh"] == 1.0
        and len(trials[1].params) == 20
    )
    for trial in trials:
        sparse = trial.params["arch"] == "sbrnn"
        assert runs[trial.number].arch == trial.params["arch"] and len(trial.params) == (20 if sparse else 2)
        assert runs[trial.number].lr == pytest.approx(trial.params["lr"])
    assert {row.arch for row in summary.top} <= {"sbrnn", "lstm"}

    journal = dict(storage=str(tmp_path / "runs" / "optuna.journal"), records=tmp_path / "sparse-runs")
    sparse_only = settings(tmp_path, trials=1, warm_start=2, study="sparse", **journal)
    summary = tuning.tune(sparse_only, task, parent=SimpleNamespace(name="stub"))
    assert summary.warm_start.enqueued == 1 and summary.archs == ("sbrnn",)
    assert summary.warm_start.notes == (
        "warm start 1 skipped: its lstm is not among the study's architectures (sbrnn)",
    )
    assert recorded(sparse_only)[0].label == "warm start 2" and "archs" not in sparse_only.identity()
    with pytest.raises(SbrnnError, match=r"tunes archs = \['sbrnn', 'lstm'\], not \['sbrnn'\]"):
        tuning.tune(settings(tmp_path, trials=7, warm_start=0, study="both"), task)
    with pytest.raises(SbrnnError, match=r"tunes archs = \['sbrnn'\], not \['sbrnn', 'lstm'\]"):
        tuning.tune(
            settings(tmp_path, trials=2, warm_start=0, archs=("sbrnn", "lstm"), study="sparse", **journal),
            task,
        )


@needs_optuna
def test_ranks_that_clip_to_one_configuration_are_enqueued_once(tmp_path, task, monkeypatch):
    """Two ranks that differ only outside the space (``d_hh`` 0.01 and 0.02; the paper space starts
    at 0.02) clip to one configuration: the second is skipped with a note, not trained twice."""
    from types import SimpleNamespace

    from sbrnn.parent import recommend as recommending

    means, stds = ((0.0,) * 3,) * 2, ((0.05,) * 3,) * 2
    top = [
        SimpleNamespace(
            rank=r, arch="sbrnn", densities=((0.5, d_hh, 0.5), (1.0,) * 3), means=means, stds=stds, lr=1e-3
        )
        for r, d_hh in ((1, 0.01), (2, 0.02), (3, 0.3))
    ]
    made = SimpleNamespace(top=top, parent={"name": "stub"}, mode="ranked")
    monkeypatch.setattr(recommending, "recommend", lambda *args, **kwargs: made)

    first = settings(tmp_path, trials=3, warm_start=3)
    summary = tuning.tune(first, task, parent=SimpleNamespace(name="stub"))
    assert summary.warm_start.enqueued == 2
    assert "warm start 2 skipped: clipped into the paper space it is warm start 1" in summary.warm_start.notes
    runs = recorded(first)
    assert [runs[n].label for n in sorted(runs)] == ["warm start 1", "warm start 3", "tpe"]
    assert runs[0].d_hh == pytest.approx(0.02) and runs[1].d_hh == pytest.approx(0.3)
    again = tuning.tune(settings(tmp_path, trials=4, warm_start=3), task, parent=SimpleNamespace(name="stub"))
    assert again.warm_start.enqueued == 0 and again.warm_start.already == 2 and again.finished == 4


@needs_optuna
def test_a_study_warm_started_by_another_parent_takes_no_ranks_from_this_one(tmp_path, task, monkeypatch):
    """Ranks missing from a study warm-started by a parent fitted on other records (another data
    SHA-256) are not filled from this parent: one study's warm start comes from one parent."""
    from types import SimpleNamespace

    from sbrnn.parent import recommend as recommending

    ones, zeros, stds = ((1.0,) * 3,) * 2, ((0.0,) * 3,) * 2, ((0.05,) * 3,) * 2
    top = [
        SimpleNamespace(rank=r, arch="sbrnn", densities=ones, means=zeros, stds=stds, lr=lr)
        for r, lr in ((1, 1e-3), (2, 2e-3), (3, 5e-4))
    ]

    def parent_of(sha):
        made = SimpleNamespace(top=top, parent={"name": sha, "records_sha256": sha * 16}, mode="ranked")
        monkeypatch.setattr(recommending, "recommend", lambda *args, **kwargs: made)
        return SimpleNamespace(name=f"parent {sha}")

    first = tuning.tune(settings(tmp_path, trials=2, warm_start=2), task, parent=parent_of("a"))
    assert first.warm_start.enqueued == 2
    other = tuning.tune(settings(tmp_path, trials=3, warm_start=3), task, parent=parent_of("b"))
    assert other.warm_start.enqueued == 0 and other.finished == 3
    assert other.warm_start.notes == (
        "warm start: the study was warm-started by another parent (data aaaaaaaaaaaa); parent b "
        "(data bbbbbbbbbbbb) enqueues none of its ranks [3]",
    )
    assert [r.label for _, r in sorted(recorded(settings(tmp_path)).items())] == [
        "warm start 1",
        "warm start 2",
        "tpe",
    ]
    same = tuning.tune(settings(tmp_path, trials=4, warm_start=3), task, parent=parent_of("a"))
    assert same.warm_start.enqueued == 1  # the first parent fills its own missing rank
