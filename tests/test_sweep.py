"""Sweeps end to end on the toy tasks: records, resume after kill -9, failures, Dask, bad shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sweep_fakes import fake_runner, log_lines

from sbrnn.child.sampling import Pins
from sbrnn.child.sweep import coordinator, executors
from sbrnn.child.sweep.claims import _pid_alive
from sbrnn.child.sweep.plan import plan_sweep
from sbrnn.datasets import registry, synthetic
from sbrnn.errors import SbrnnError
from sbrnn.records import read_records, read_table, record_files

TOY = dict(epochs=2, seed=5)


def _cli(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path):
    records = tmp_path / "runs"
    args = ["child", "sweep", "--task", "toy-anomaly", "--runs", "10", "--budget", "300", "--epochs", "2"]
    args += ["--records", str(records), "--workers", "2"]
    # started as `cmd &` starts it: Ctrl-C ignored, so kill (SIGTERM) is the way to stop it
    proc = _cli(*args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    _signal_after_shards(proc, records, 0, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    kept = len(record_files(records))
    assert proc.returncode == 130 and 1 <= kept < 10, err
    assert "Resume with:" in err and "Traceback" not in err
    assert not list((records / ".claims").glob("*"))  # its claims released, none left to expire


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_run_that_kills_its_worker_is_retried_then_recorded_worker_lost(tmp_path):
    plan = plan_sweep(["toy-anomaly"], [300], 3, epochs=1)
    doomed_id = plan[2].run_id
    log = tmp_path / "log"
    runner = partial(fake_runner, log=str(log), die=(doomed_id,))
    report = coordinator.run_sweep(plan, tmp_path / "r", executors.LocalProcesses(1, 1, runner=runner))
    assert report.finished == 3 and report.statuses == {"ok": 2, "failed": 1}
    doomed = {r.run_id: r for r in read_records(tmp_path / "r")}[doomed_id]
    assert doomed.status == "failed" and doomed.error.startswith("worker lost the run: ")
    assert f"died {executors.MAX_WORKER_DEATHS} times" in doomed.error
    assert doomed.d_hx == plan[2].config.densities[0][0] and doomed.h > 0
    starts = [run_id for run_id, _ in log_lines(log)]
    assert starts.count(doomed_id) == executors.MAX_WORKER_DEATHS  # alone on one worker: every death counts
    assert sorted(set(starts)) == sorted(p.run_id for p in plan)


@pytest.mark.slow
def test_bystanders_of_a_dying_worker_are_rerun_not_failed(tmp_path):
    plan = plan_sweep(["toy-anomaly"], [300], 5, epochs=1)
    always, once = plan[0].run_id, plan[1].run_id
    (tmp_path / "marks").mkdir()
    log = tmp_path / "log"
    runner = partial(
        fake_runner, log=str(log), sleep=0.3, die=(always,), die_once=(once,), marks=str(tmp_path / "marks")
    )
    report = coordinator.run_sweep(plan, tmp_path / "r", executors.LocalProcesses(2, 1, runner=runner))
    records = {r.run_id: r for r in read_records(tmp_path / "r")}
    assert report.statuses == {"ok": 4, "failed": 1} and len(records) == 5
    assert records[always].error.startswith("worker lost the run: ")
    assert all(r.status == "ok" for run_id, r in records.items() if run_id != always)
    starts = [run_id for run_id, _ in log_lines(log)]
    ended = [run_id for run_id, _ in log_lines(log, "end")]
    assert sorted(ended) == sorted(p.run_id for p in plan[1:])  # each of the others finished once
    # the first death had two runs in flight: neither is charged, both rerun alone; then only the
    # doomed run's own deaths count, and the bystander finishes on its second try
    assert starts.count(always) == executors.MAX_WORKER_DEATHS + 1
    # the bystander dies with its worker once, then reruns; under load a second break may take it
    # again while it is in flight, which is never charged to it
    assert 2 <= starts.count(once) <= 3


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


def test_cli_sweep_tls_options_are_checked(tmp_path):
    from typer.testing import CliRunner

    from sbrnn.cli import app

    pem = tmp_path / "x.pem"
    pem.write_text("not checked before connecting")
    cases = [
        (["--tls-cert", str(pem)], "apply to --scheduler"),
        (["--scheduler", "tls://h:1", "--tls-cert", str(pem)], "give --tls-ca-file and --tls-cert together"),
        (
            ["--scheduler", "tls://h:1", "--tls-ca-file", str(pem), "--tls-cert", "no.pem"],
            "--tls-cert 'no.pem'",
        ),
        (
            ["--scheduler", "tcp://h:1", "--tls-ca-file", str(pem), "--tls-cert", str(pem)],
            "not a TLS address",
        ),
    ]
    for extra, message in cases:
        args = ["child", "sweep", "--task", "toy-anomaly", "--runs", "1", "--budget", "300"]
        result = CliRunner().invoke(app, [*args, "--records", str(tmp_path / "r"), *extra])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_sweep_processes_on_one_directory_train_each_run_once(tmp_path):
    records, log = tmp_path / "runs", tmp_path / "trained"
    args = ["child", "sweep", "--task", "toy-anomaly", "--task", "toy-regression", "--runs", "8"]
    args += ["--budget", "300", "--epochs", "3", "--seed", "2", "--records", str(records), "--json"]
    start = time.monotonic()
    procs = [_cli(*args, env={executors.TRAINING_LOG: str(log)}) for _ in range(2)]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    seconds = time.monotonic() - start
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    planned = sorted(
        p.run_id for p in plan_sweep(["toy-anomaly", "toy-regression"], [300], 8, epochs=3, seed=2)
    )
    trained = [line.split()[0] for line in log.read_text().splitlines()]  # "<run id> <host> <pid>"
    assert sorted(trained) == planned  # every run trained once, by one of the two
    assert sum(r["finished"] for r in reports) == len(planned)
    assert all(r["already_done"] + r["finished"] + r["by_others"] == len(planned) for r in reports)
    assert sorted(read_table(records).column("run_id").to_pylist()) == planned
    assert len(record_files(records)) == len(planned)
    assert not list((records / ".claims").iterdir())
    assert seconds < 200


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _loky_workers_of(pid: int) -> list[int]:
    """The loky worker processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and b"LokyProcess" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_exit_soon_after_their_sweep_is_killed(tmp_path):
    log = tmp_path / "trained"
    args = ["child", "sweep", "--task", "toy-anomaly", "--runs", "4", "--budget", "300", "--epochs", "200"]
    proc = _cli(
        *args, "--records", str(tmp_path / "runs"), "--workers", "2", env={executors.TRAINING_LOG: str(log)}
    )
    deadline = time.monotonic() + 120
    while _lines(log) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # both workers training
    workers = _loky_workers_of(proc.pid)
    assert len(workers) == 2 and proc.poll() is None
    proc.kill()
    proc.communicate(timeout=30)
    killed = time.monotonic()
    while any(_pid_alive(pid) for pid in workers) and time.monotonic() - killed < 10:
        time.sleep(0.1)
    assert not any(_pid_alive(pid) for pid in workers)
    assert not record_files(tmp_path / "runs")  # mid-run: nothing was recorded


@pytest.mark.slow
def test_a_dask_worker_killed_mid_run_is_rescheduled_not_recorded_failed(tmp_path):
    pytest.importorskip("distributed")
    plan = plan_sweep(["toy-anomaly"], [300], 6, epochs=1)
    log = tmp_path / "log"
    executor = executors.DaskCluster(local_workers=2, runner=partial(fake_runner, log=str(log), sleep=2.0))
    killed: list[str] = []

    def kill_a_worker_mid_run() -> None:
        """Once a job has ended, kill the worker of the next job to start, right after it starts."""
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            lines = log.read_text().splitlines() if log.exists() else []
            ended = [i for i, line in enumerate(lines) if line.startswith("end ")]
            fresh = (
                [line.split() for line in lines[ended[0] + 1 :] if line.startswith("start ")] if ended else []
            )
            if fresh:
                _, run_id, pid = fresh[0]
                os.kill(int(pid), signal.SIGKILL)
                killed.append(run_id)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_a_worker_mid_run, daemon=True)
    thread.start()
    report = coordinator.run_sweep(plan, tmp_path / "r", executor)
    thread.join(5)
    assert killed, "no worker was killed"
    assert (report.finished, report.statuses) == (6, {"ok": 6})
    assert sorted(r.run_id for r in read_records(tmp_path / "r")) == sorted(p.run_id for p in plan)
    starts = [run_id for run_id, _ in log_lines(log)]
    assert starts.count(killed[0]) == 2  # the scheduler ran it again on a live worker
    # (a run that had ended on the killed worker, its result not yet fetched, may run again too)
    assert {run_id for run_id, _ in log_lines(log, "end")} == {p.run_id for p in plan}
