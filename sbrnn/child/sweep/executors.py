"""Executors: one interface over the ways to run sweep jobs, and what a worker does with a job.

A *job* is a tuple of configs trained on one worker, one record each (one config, or a
population of compatible ones). An :class:`Executor` takes jobs and yields ``(job, records)``
as each finishes, or ``(job, exception)`` when its worker could not return records (it died, or
the cluster cancelled it): :class:`InProcess`, :class:`LocalProcesses` (joblib's loky) and
:class:`DaskCluster` (a running scheduler, or a local cluster); :func:`make_executor` picks one.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from typing import TYPE_CHECKING, Any, Protocol

from sbrnn import __version__
from sbrnn.child import malloc
from sbrnn.child.config import RunConfig
from sbrnn.child.model import resolve
from sbrnn.child.weight_space import grid_blocks
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.errors import SbrnnError
from sbrnn.records import RunRecord

if TYPE_CHECKING:  # Dask is optional (the cluster extra): imported where used
    from distributed import Client, LocalCluster

Job = tuple[RunConfig, ...]
"""A unit of work for one worker: configs trained there in order, one record each."""


def lost_record(config: RunConfig, error: str) -> RunRecord:
    """A ``failed`` record for a run whose worker could not return one (it died, or raised)."""
    info = get_info(config.task)
    try:
        spec, h = resolve(config, info.n_x, info.n_y)
    except SbrnnError:
        spec, h = None, 0
    blocks: dict[str, Any] = {}  # RunRecord's block fields
    if spec is not None:
        for prefix, grid in (("d", spec.densities), ("mu", spec.means), ("sigma", spec.stds)):
            blocks.update({f"{prefix}_{b}": v for b, v in grid_blocks(grid).items()})
    return RunRecord(
        run_id=config.run_id(),
        task=config.task,
        n_x=info.n_x,
        n_y=info.n_y,
        steps=info.steps,
        loss_kind=info.loss,
        arch=config.arch,
        h=h,
        lr=config.lr,
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
        status="failed",
        budget=config.budget,
        activation=config.activation,
        precision=config.precision,
        error=error,
        sbrnn_version=__version__,
        task_family=info.family,
        task_options=json.dumps(config.task_options, sort_keys=True),
        **blocks,
    )


_TASK_MEMO: dict[str, object] = {}
"""The last task built in this process, keyed by name, seed and options (one kept at a time)."""


def _task_for(config: RunConfig):
    """The task of ``config``, built once per process and reused by the runs that follow.

    None when building fails: ``train_run`` then builds it itself and records the error.
    """
    key = json.dumps([config.task, config.seed, config.task_options], sort_keys=True)
    if key not in _TASK_MEMO:
        _TASK_MEMO.clear()
        try:
            _TASK_MEMO[key] = build_task(config.task, seed=config.seed, **config.task_options)
        except Exception:  # noqa: BLE001 - train_run repeats the build and records the failure
            return None
    return _TASK_MEMO[key]


def _worker_setup(worker: bool) -> None:
    """A worker process ignores SIGINT (Ctrl-C belongs to the coordinator) and undoes an allocator
    setting that slows training (Dask's ``MALLOC_TRIM_THRESHOLD_``, :mod:`sbrnn.child.malloc`)."""
    if worker and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    malloc.restore()


def run_job(job: Job, threads: int | None = 1, worker: bool = True) -> list[RunRecord]:
    """Train the configs of ``job`` one after another; one record each.

    The task's data is built here, from the cache or from its seed, once per process for all
    the runs of a task. Keyboard interrupts belong to the coordinator: a ``worker`` process
    ignores SIGINT, so Ctrl-C in a terminal never turns a run in progress into a ``failed`` record.
    """
    from sbrnn.child.train import train_run

    _worker_setup(worker)
    records = []
    for config in job:
        try:
            records.append(train_run(config, _task_for(config), threads=threads))
        except Exception:  # noqa: BLE001 - train_run records a run's own failures; this is the rest
            records.append(lost_record(config, traceback.format_exc(limit=5)))
    return records


def run_population_job(job: Job, threads: int | None = 1, worker: bool = True) -> list[RunRecord]:
    """Train the configs of ``job`` as one population (:mod:`sbrnn.child.population`); one record each.

    The job runner of ``child sweep --population K``. Configs that cannot share a population
    train one after another inside it, as :func:`run_job` would train them.
    """
    from sbrnn.child.population import train_population

    _worker_setup(worker)
    try:
        return train_population(job, _task_for(job[0]), threads=threads)
    except Exception:  # noqa: BLE001 - train_population records runs' own failures; this is the rest
        return [lost_record(config, traceback.format_exc(limit=5)) for config in job]


Outcome = tuple[Job, "list[RunRecord] | BaseException"]
JobRunner = Callable[..., "list[RunRecord]"]
"""``runner(job, threads, worker=...)`` -> one record per config of the job (default :func:`run_job`)."""


class Executor(Protocol):
    """Runs jobs somewhere and yields each as it finishes; ``close()`` releases its workers."""

    name: str

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


class InProcess:
    """Runs jobs one at a time in the coordinating process."""

    name = "in process"

    def __init__(self, threads: int | None = 1, runner: JobRunner = run_job) -> None:
        self.threads = threads
        self.runner = runner

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        for job in jobs:
            yield job, self.runner(job, self.threads, worker=False)

    def close(self) -> None:
        pass


class LocalProcesses:
    """Runs jobs on ``workers`` local processes (joblib's loky), ``threads`` torch threads each.

    Keeps one job per worker in flight and yields each as it finishes. A worker process that
    dies (out of memory, a crash in native code) takes the jobs in flight with it; those are
    retried once on fresh workers, and a job whose worker dies twice comes back as the error.
    If the coordinator itself is killed, its workers finish the run in hand (its result is
    lost, and rerun on resume) and exit after about 90 s idle.
    """

    def __init__(self, workers: int, threads: int | None = 1, runner: JobRunner = run_job) -> None:
        if workers < 1:
            raise SbrnnError(f"workers = {workers} is out of range; allowed: integers >= 1")
        self.workers = workers
        self.threads = threads
        self.runner = runner
        self.name = f"{workers} local processes"
        self._pool = None

    def _executor(self):
        from joblib.externals.loky import get_reusable_executor

        self._pool = get_reusable_executor(max_workers=self.workers, timeout=60)
        return self._pool

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        from joblib.externals.loky.process_executor import BrokenProcessPool

        todo = list(jobs)
        todo.reverse()  # pop() from the end keeps the plan's order
        deaths: dict[int, int] = {}
        in_flight: dict = {}
        pool = self._executor()
        while todo or in_flight:
            while todo and len(in_flight) < self.workers:
                job = todo.pop()
                try:
                    in_flight[pool.submit(self.runner, job, self.threads)] = job
                except BrokenProcessPool:
                    todo.append(job)
                    pool = self._executor()
                    break
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                job = in_flight.pop(future)
                error = future.exception()
                if error is None:
                    yield job, future.result()
                elif isinstance(error, BrokenProcessPool) and deaths.get(id(job), 0) == 0:
                    deaths[id(job)] = 1
                    todo.append(job)
                else:
                    yield job, error
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                pool = self._executor()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, kill_workers=True)
            self._pool = None


class DaskCluster:
    """Runs jobs on a Dask ``distributed`` cluster and streams results back as they finish.

    ``address`` (``tcp://HOST:PORT``) joins an existing scheduler; ``local_workers`` starts a
    :class:`distributed.LocalCluster` of that many processes with one thread each instead. Each
    job is a task keyed by its run ids, so a resubmitted job is the same task.
    """

    def __init__(
        self,
        address: str | None = None,
        local_workers: int | None = None,
        threads: int | None = 1,
        runner: JobRunner = run_job,
    ) -> None:
        if (address is None) == (local_workers is None):
            raise SbrnnError("give exactly one of a scheduler address and a local cluster size")
        if local_workers is not None and local_workers < 1:
            raise SbrnnError(f"local cluster size = {local_workers} is out of range; allowed: integers >= 1")
        if address is not None and not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise SbrnnError(f"scheduler {address!r} is not an address; allowed: tcp://HOST:PORT")
        self.address = address
        self.local_workers = local_workers
        self.threads = threads
        self.runner = runner
        self.name = f"Dask at {address}" if address else f"a local Dask cluster of {local_workers}"
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._futures: list = []

    def _connect(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SbrnnError("Dask is not installed; install it with: pip install 'sbrnn[cluster]'") from None
        if self.address is None:
            import dask

            # workers without Dask's MALLOC_TRIM_THRESHOLD_ (see sbrnn.child.malloc)
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                self._cluster = LocalCluster(
                    n_workers=self.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(self.address, timeout="20s")
            except OSError as exc:
                raise SbrnnError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
        return self._client

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        from distributed import as_completed

        client = self._connect()
        by_key = {}
        for job in jobs:
            key = "sbrnn-run-" + "-".join(c.run_id() for c in job)
            future = client.submit(self.runner, job, self.threads, key=key, pure=False)
            by_key[future.key] = job
            self._futures.append(future)
        for future in as_completed(self._futures):
            job = by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker, a cancelled task: recorded as failed
                yield job, exc
            else:
                yield job, result

    def close(self) -> None:
        if self._client is not None:
            if self._futures:
                self._client.cancel(self._futures)
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def make_executor(
    workers: int = 1,
    threads: int = 1,
    population: int = 1,
    scheduler: str | None = None,
    local_cluster: int | None = None,
) -> Executor:
    """The executor of a sweep: a Dask cluster (the scheduler at address ``scheduler``, or a local
    cluster of ``local_cluster`` one-thread workers), ``workers`` local processes when more than
    one, else this process. Each worker uses ``threads`` torch threads and trains up to
    ``population`` compatible runs together (:func:`run_population_job`) or one at a time
    (:func:`run_job`).

    Raises :class:`SbrnnError` for a count below 1, or for more than one of several workers, a
    scheduler and a local cluster.
    """
    for name, value in (("threads", threads), ("workers", workers), ("population", population)):
        if value < 1:
            raise SbrnnError(f"{name} = {value} is out of range; allowed: integers >= 1")
    if sum([workers != 1, scheduler is not None, local_cluster is not None]) > 1:
        raise SbrnnError("give only one of several workers, a scheduler address and a local cluster size")
    runner = run_population_job if population > 1 else run_job
    if scheduler is not None or local_cluster is not None:
        return DaskCluster(scheduler, local_cluster, threads, runner=runner)
    if workers > 1:
        return LocalProcesses(workers, threads, runner=runner)
    return InProcess(threads, runner=runner)
