"""Workers undo what slows training on them: Dask's frozen mmap threshold (MALLOC_TRIM_THRESHOLD_,
~2x) and a Dask worker's statistical profiler (~10%)."""

import logging
import os
import subprocess
import sys
import time

import pytest

from sbrnn.child.config import RunConfig
from sbrnn.child.sweep import executors
from sbrnn.child.sweep.executors import DaskCluster, lost_record

PROBE = "from sbrnn.child import malloc; print(malloc.restore(), malloc.restore())"


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"MALLOC_TRIM_THRESHOLD_": "65536"}, "True True"),
        ({}, "False False"),
    ],
)
def test_restore_acts_once_where_the_variable_is_set(env, expected):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()


def report_environment(job, threads, worker=True):
    """A job runner that records the worker's allocator variable instead of training."""
    return [
        lost_record(config, f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_')}")
        for config in job
    ]


@pytest.mark.slow
def test_local_cluster_workers_start_without_the_variable():
    pytest.importorskip("distributed")
    executor = DaskCluster(local_workers=1, runner=report_environment)
    config = RunConfig(task="toy-anomaly", budget=500, epochs=1)
    try:
        [(job, records)] = list(executor.run([(config,)]))
    finally:
        executor.close()
    assert records[0].error == "MALLOC_TRIM_THRESHOLD_=None"


def report_profiler(job, threads, worker=True):
    """A job runner that records whether the Dask worker's profiler runs before and after the
    worker setup every job runner does."""
    from distributed import get_worker

    def running():
        callback = get_worker().periodic_callbacks.get("profile")
        return None if callback is None else callback.is_running()

    before = running()
    executors._worker_setup(worker=False)
    time.sleep(0.3)  # the stop is scheduled on the worker's event loop
    return [lost_record(config, f"profiler {before} -> {running()}") for config in job]


@pytest.mark.slow
def test_dask_workers_train_without_the_statistical_profiler():
    distributed = pytest.importorskip("distributed")
    config = RunConfig(task="toy-anomaly", budget=500, epochs=1)
    executor = DaskCluster(local_workers=1, runner=report_profiler)  # started without it
    try:
        [(_, records)] = list(executor.run([(config,)]))
    finally:
        executor.close()
    assert records[0].error == "profiler None -> None"
    with distributed.LocalCluster(  # as started by hand: Dask's defaults, profiler on
        n_workers=1, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        executor = DaskCluster(address=cluster.scheduler_address, runner=report_profiler)
        try:
            [(_, records)] = list(executor.run([(config,)]))
        finally:
            executor.close()
    assert records[0].error == "profiler True -> False"
