"""Sweeps end to end on the toy tasks: records, resume after kill -9, failures, Dask, bad shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sbrnn.child.sampling import Pins
from sbrnn.child.sweep import coordinator, executors
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.datasets import registry, synthetic
from sbrnn.errors import SbrnnError
from sbrnn.records import read_records, read_table, record_files

TOY = dict(epochs=2, seed=5)


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sbrnn.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_six_run_sweep_records_every_run_once_and_resumes(tmp_path, one_thread):
    plan = plan_sweep(["toy-anomaly", "toy-regression"], [300], 3, **TOY)
    assert len(plan) == 6
    seen = []
    report = coordinator.run_sweep(plan, tmp_path, executors.InProcess(1), on_record=seen.append)
    assert (report.finished, report.statuses, report.interrupted) == (6, {"ok": 6}, False)
    assert sorted(p.name for p in record_files(tmp_path)) == sorted(f"{p.run_id}.parquet" for p in plan)
    records = {r.run_id: r for r in read_records(tmp_path)}
    for p in plan:
        r = records[p.run_id]
        assert (r.task, r.budget, r.lr, r.seed) == (p.config.task, 300.0, p.config.lr, 5)
        assert (r.d_hx, r.d_hh, r.d_hy) == p.config.densities[0]
        assert len(r.val_loss) == 2 and r.min_val_loss == min(r.val_loss)
    in_order = coordinator.interleave_tasks([(p.config,) for p in plan])  # in process: tasks alternating
    assert [r.run_id for r in seen] == [job[0].run_id() for job in in_order]
    again = coordinator.run_sweep(plan, tmp_path, executors.InProcess(1))
    assert (again.already_done, again.to_run, again.finished) == (6, 0, 0)


def _signal_after_shards(proc: subprocess.Popen, records: Path, more_than: int, signum: int) -> None:
    """Send ``signum`` to the sweep once the records hold more than ``more_than`` shards."""
    deadline = time.monotonic() + 90
    while len(record_files(records)) <= more_than and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signum)


def test_ctrl_c_then_kill_9_mid_sweep_then_rerun_finishes_exactly_the_plan(tmp_path):
    records = tmp_path / "runs"
    args = [
        "child",
        "sweep",
        "--task",
        "toy-anomaly",
        "--runs",
        "10",
        "--budget",
        "300",
        "--epochs",
        "2",
        "--seed",
        "1",
        "--records",
        str(records),
        "--json",
    ]
    # Ctrl-C: a clean stop, exit 130, finished records kept, the resume command printed
    proc = _cli(*args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _signal_after_shards(proc, records, 0, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    after_interrupt = len(record_files(records))
    assert proc.returncode == 130 and 1 <= after_interrupt < 10
    assert "Resume with:" in err and f"--records {records}" in err and "Traceback" not in err
    # kill -9 of the resumed sweep, once it has added a record
    proc = _cli(*args)
    _signal_after_shards(proc, records, after_interrupt, signal.SIGKILL)
    proc.communicate(timeout=60)
    after_kill = len(record_files(records))
    assert after_interrupt < after_kill < 10
    # the same command again: the rest, once each
    rerun = _cli(*args)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert f"{after_kill} already recorded" in err
    assert json.loads(out)["finished"] == 10 - after_kill
    planned = {p.run_id for p in plan_sweep(["toy-anomaly"], [300], 10, epochs=2, seed=1)}
    ids = read_table(records).column("run_id").to_pylist()
    assert sorted(ids) == sorted(planned)  # every planned run, once each
    assert len(record_files(records)) == 10


def test_local_cluster_gives_the_same_records_as_local_runs(tmp_path, one_thread):
    args = ["toy-regression"], [300], 3
    plan = plan_sweep(*args, **TOY)
    coordinator.run_sweep(plan, tmp_path / "local", executors.InProcess(1))
    proc = _cli(
        "child",
        "sweep",
        "--task",
        "toy-regression",
        "--runs",
        "3",
        "--budget",
        "300",
        "--epochs",
        "2",
        "--seed",
        "5",
        "--records",
        str(tmp_path / "dask"),
        "--local-cluster",
        "2",
    )
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "local Dask cluster" in err
    local = {r.run_id: r for r in read_records(tmp_path / "local")}
    dask = {r.run_id: r for r in read_records(tmp_path / "dask")}
    assert set(local) == set(dask) == {p.run_id for p in plan}
    for run_id, r in local.items():
        d = dask[run_id]
        assert (d.h, d.lr, d.d_hx, d.mu_hh, d.sigma_yy, d.trainable_total) == (
            r.h,
            r.lr,
            r.d_hx,
            r.mu_hh,
            r.sigma_yy,
            r.trainable_total,
        )
        np.testing.assert_allclose(d.val_loss, r.val_loss, rtol=1e-6)
        np.testing.assert_allclose(d.train_loss, r.train_loss, rtol=1e-6)


def test_failed_and_diverged_runs_are_recorded_and_retried(tmp_path, monkeypatch, one_thread):
    broken = {"on": True}

    def flaky(seed=0):
        if broken["on"]:
            raise OSError("data source unavailable")
        return replace(synthetic.toy_anomaly(seed=seed, n_train=64, n_val=32, n_test=32), name="flaky")

    info = registry.get_info("toy-anomaly")
    monkeypatch.setitem(
        registry._REGISTRY,
        "flaky",
        registry.TaskInfo(
            "flaky",
            "toy-anomaly that fails while broken",
            info.n_x,
            info.n_y,
            info.steps,
            info.loss,
            "synthetic",
            flaky,
        ),
    )
    plan = plan_sweep(["flaky"], [300], 2, epochs=1)
    plan += plan_sweep(["toy-regression"], [300], 1, epochs=2, pins=Pins(lr=1e9))
    report = coordinator.run_sweep(plan, tmp_path, executors.InProcess(1))
    assert report.statuses == {"failed": 2, "diverged": 1}
    records = {r.task: r for r in read_records(tmp_path)}
    assert "data source unavailable" in records["flaky"].error
    assert records["toy-regression"].error and len(records["toy-regression"].val_loss) < 2
    # a plain rerun keeps them; --retry-failed reruns the failed ones and replaces their shards
    assert coordinator.run_sweep(plan, tmp_path, executors.InProcess(1)).to_run == 0
    broken["on"] = False
    retry = coordinator.run_sweep(plan, tmp_path, executors.InProcess(1), retry_failed=True)
    assert (retry.to_run, retry.statuses) == (2, {"ok": 2})
    statuses = sorted(r.status for r in read_records(tmp_path))
    assert statuses == ["diverged", "ok", "ok"] and len(record_files(tmp_path)) == 3


def test_a_run_that_kills_its_worker_is_recorded_failed_and_the_rest_finish(tmp_path):
    plan = plan_sweep(["toy-anomaly"], [300], 3, epochs=1)
    doomed_id = plan[2].run_id

    def dies_on_last_run(job, threads, worker=True):
        """Stands in for training (cheap), except that its process dies on the plan's last run."""
        from sbrnn.records import RunRecord

        if job[0].run_id() == doomed_id:
            os._exit(3)
        return [
            RunRecord(
                run_id=c.run_id(),
                task=c.task,
                n_x=8,
                n_y=6,
                steps=6,
                loss_kind="cross_entropy",
                arch=c.arch,
                h=1,
                lr=c.lr,
                batch_size=c.batch_size,
                epochs=c.epochs,
                seed=c.seed,
            )
            for c in job
        ]

    report = coordinator.run_sweep(plan, tmp_path, executors.LocalProcesses(1, 1, runner=dies_on_last_run))
    assert report.finished == 3 and report.statuses == {"ok": 2, "failed": 1}
    doomed = {r.run_id: r for r in read_records(tmp_path)}[doomed_id]
    assert doomed.status == "failed" and "worker lost the run" in doomed.error
    assert doomed.d_hx == plan[2].config.densities[0][0] and doomed.h > 0


def test_truncated_shard_is_skipped_with_a_warning_and_rerun(tmp_path, one_thread):
    plan = plan_sweep(["toy-anomaly"], [300], 2, epochs=1)
    coordinator.run_sweep(plan, tmp_path, executors.InProcess(1))
    victim = tmp_path / f"{plan[0].run_id}.parquet"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.parquet").write_text("not parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_table(tmp_path)
    assert table.column("run_id").to_pylist() == [plan[1].run_id]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any(str(victim) in m for m in messages) and any("notes.parquet" in m for m in messages)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = coordinator.run_sweep(plan, tmp_path, executors.InProcess(1))  # reruns the truncated one
        ids = read_table(tmp_path).column("run_id").to_pylist()
    assert (report.to_run, report.statuses) == (1, {"ok": 1})
    assert sorted(ids) == sorted(p.run_id for p in plan)
    assert any(str(victim) in str(w.message) for w in caught)
    assert all("notes.parquet" in str(w.message) for w in caught[-1:])  # the foreign file stays skipped


def test_cli_sweep_bad_input_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from sbrnn.cli import app

    cases = [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "toy-anomaly", "--space", "gauss"], "space 'gauss' is unknown"),
        (["--task", "toy-anomaly", "--densities", "1,2"], "--densities '1,2' is malformed"),
        (["--task", "toy-anomaly", "--workers", "2", "--local-cluster", "2"], "only one of"),
        (["--task", "toy-anomaly", "--scheduler", "localhost"], "not an address"),
        (["--task", "toy-anomaly", "--threads", "0"], "--threads 0 is out of range"),
        (["--task", "toy-anomaly", "--workers", "0"], "--workers 0 is out of range"),
        (["--task", "toy-anomaly", "--local-cluster", "0"], "--local-cluster 0 is out of range"),
        (["--task", "toy-anomaly", "--task-option", "side=3"], "unknown option 'side'"),
        (["--task", "toy-anomaly", "--budget", "20"], "too small"),
    ]
    for extra, message in cases:
        args = ["child", "sweep", "--runs", "2", "--budget", "300", "--records", str(tmp_path), *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_make_executor_picks_where_the_runs_go():
    assert isinstance(executors.make_executor(), executors.InProcess)
    local = executors.make_executor(workers=2, threads=1, population=3)
    assert isinstance(local, executors.LocalProcesses) and local.runner is executors.run_population_job
    cluster = executors.make_executor(local_cluster=2)
    assert isinstance(cluster, executors.DaskCluster) and cluster.runner is executors.run_job
    cases = [
        ({"threads": 0}, "threads = 0 is out of range"),
        ({"population": 0}, "population = 0"),
        ({"workers": 2, "scheduler": "tcp://h:1"}, "only one of"),
        ({"local_cluster": 0}, "local cluster size = 0 is out of range"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SbrnnError, match=message):
            executors.make_executor(**kwargs)
