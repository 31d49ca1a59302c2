"""Executors: one interface over the ways to run sweep jobs, and what a worker does with a job.

A *job* is a tuple of configs trained on one worker, one record each (one config, or a
population of compatible ones). An :class:`Executor` takes jobs from a :class:`JobSource` (the
coordinator's queue, which claims each job's runs just before it is sent; or a plain list) and
yields ``(job, records)`` as each finishes, or ``(job, exception)`` when no worker could return
its records: :class:`InProcess`, :class:`LocalProcesses` (joblib's loky) and
:class:`DaskCluster` (a running scheduler, over TCP or TLS, or a local cluster);
:func:`make_executor` picks one.

A worker that dies takes its job with it, and the executor runs the job again: a job is given up
(yielded as :class:`WorkerLost`) only once workers have died with it :data:`MAX_WORKER_DEATHS`
times. Local worker processes exit as soon as their coordinator is gone.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sbrnn import __version__
from sbrnn.child import malloc
from sbrnn.child.config import RunConfig
from sbrnn.child.weight_space import grid_blocks
from sbrnn.errors import SbrnnError
from sbrnn.records import RunRecord

if TYPE_CHECKING:  # Dask is optional (the cluster extra): imported where used
    from distributed import Client, LocalCluster, Security

Job = tuple[RunConfig, ...]
"""A unit of work for one worker: configs trained there in order, one record each."""


MAX_WORKER_DEATHS = 3
"""Deaths of a worker while it ran a job (alone on its pool) after which the job is given up."""
PARENT_POLL_SECONDS = 1.0
"""How often a local worker process checks that its coordinator still lives, in seconds."""
TRAINING_LOG = "SBRNN_TRAINING_LOG"
"""Environment variable: a file every worker appends ``<run id> <host> <pid>`` to as it starts
training a run (a test and debugging aid: it shows which runs were trained where, and how often)."""

_log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """A job given up because the workers running it kept dying (or the cluster kept dropping it)."""


def lost_record(config: RunConfig, error: str) -> RunRecord:
    """A ``failed`` record for a run whose worker could not return one (it died, or raised)."""
    from sbrnn.child.model import resolve
    from sbrnn.datasets.registry import get_info

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
    from sbrnn.datasets.registry import build_task

    key = json.dumps([config.task, config.seed, config.task_options], sort_keys=True)
    if key not in _TASK_MEMO:
        _TASK_MEMO.clear()
        try:
            _TASK_MEMO[key] = build_task(config.task, seed=config.seed, **config.task_options)
        except Exception:  # noqa: BLE001 - train_run repeats the build and records the failure
            return None
    return _TASK_MEMO[key]


def _worker_setup(worker: bool) -> None:
    """A worker process ignores SIGINT (Ctrl-C belongs to the coordinator) and undoes what slows
    training in it: an allocator setting (Dask's ``MALLOC_TRIM_THRESHOLD_``,
    :mod:`sbrnn.child.malloc`) and, on a Dask worker, its statistical profiler
    (:func:`_stop_dask_profiler`)."""
    if worker and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    malloc.restore()
    _stop_dask_profiler()


@functools.lru_cache(maxsize=1)
def _stop_dask_profiler() -> bool:
    """Stop the statistical profiler of the Dask worker this runs on (once per process); True when
    it was running. Dask's workers sample the stack of every running task each 10 ms
    (``distributed.worker.profile``), taking the GIL from the training thread: measured here, the
    RAD child's step runs about 10% slower beside it. Workers of ``--local-cluster`` start without
    it; this covers workers started by hand (their dashboard's profile page stays empty)."""
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        worker = get_worker()
    except ValueError:  # not on a Dask worker
        return False
    running = [
        callback
        for name in ("profile", "profile-cycle")
        if (callback := worker.periodic_callbacks.get(name)) is not None and callback.is_running()
    ]
    for callback in running:
        worker.loop.add_callback(callback.stop)  # on the worker's event loop, where it runs
    if running:
        _log.info("stopped the Dask worker's statistical profiler (distributed.worker.profile)")
    return bool(running)


def _log_training(job: Job) -> None:
    """One line per run of ``job`` in the file :data:`TRAINING_LOG` names, when it is set."""
    path = os.environ.get(TRAINING_LOG)
    if not path:
        return
    lines = "".join(f"{c.run_id()} {socket.gethostname()} {os.getpid()}\n" for c in job)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)


def exit_with_parent(parent: int, interval: float = PARENT_POLL_SECONDS) -> None:
    """End this worker process as soon as its coordinator, process ``parent``, is gone.

    The initializer of local worker processes: a daemon thread checks every ``interval`` seconds
    that this process's parent is still ``parent`` (a process whose parent dies is handed to
    another) and otherwise exits at once, mid-run too: nobody is left to take the result. Linux's
    ``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that started the worker ends, and
    loky starts workers from whichever thread submits or from its own manager thread.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    if os.getppid() != parent:
        os._exit(0)
    threading.Thread(target=watch, name="sbrnn-parent-watch", daemon=True).start()


def run_job(job: Job, threads: int | None = 1, worker: bool = True) -> list[RunRecord]:
    """Train the configs of ``job`` one after another; one record each.

    The task's data is built here, from the cache or from its seed, once per process for all
    the runs of a task. Keyboard interrupts belong to the coordinator: a ``worker`` process
    ignores SIGINT, so Ctrl-C in a terminal never turns a run in progress into a ``failed`` record.
    """
    from sbrnn.child.train import train_run

    _worker_setup(worker)
    _log_training(job)
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
    _log_training(job)
    try:
        return train_population(job, _task_for(job[0]), threads=threads)
    except Exception:  # noqa: BLE001 - train_population records runs' own failures; this is the rest
        return [lost_record(config, traceback.format_exc(limit=5)) for config in job]


Outcome = tuple[Job, "list[RunRecord] | BaseException"]
JobRunner = Callable[..., "list[RunRecord]"]
"""``runner(job, threads, worker=...)`` -> one record per config of the job (default :func:`run_job`)."""


@runtime_checkable
class JobSource(Protocol):
    """Where an executor takes its jobs: :meth:`take` the next job to send now (None: none is ready
    now, ask again after ``poll_seconds`` seconds), ``done`` once no job will come any more."""

    poll_seconds: float

    def take(self) -> Job | None: ...

    @property
    def done(self) -> bool: ...


class JobList:
    """A fixed sequence of jobs as a :class:`JobSource`, taken in order."""

    poll_seconds = 0.0

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = deque(jobs)

    def take(self) -> Job | None:
        return self._jobs.popleft() if self._jobs else None

    @property
    def done(self) -> bool:
        return not self._jobs


def as_source(jobs: Iterable[Job] | JobSource) -> JobSource:
    """``jobs`` as a :class:`JobSource` (a source stays itself; a sequence becomes a :class:`JobList`)."""
    return jobs if isinstance(jobs, JobSource) else JobList(jobs)


def _one_line(error: BaseException) -> str:
    """``Type: message`` of ``error`` on one line."""
    return " ".join("".join(traceback.format_exception_only(type(error), error)).split())


class Executor(Protocol):
    """Runs jobs somewhere and yields each as it finishes; ``close()`` releases its workers."""

    name: str

    def run(self, jobs: Iterable[Job] | JobSource) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


class InProcess:
    """Runs jobs one at a time in the coordinating process."""

    name = "in process"

    def __init__(self, threads: int | None = 1, runner: JobRunner = run_job) -> None:
        self.threads = threads
        self.runner = runner

    def run(self, jobs: Iterable[Job] | JobSource) -> Iterator[Outcome]:
        source = as_source(jobs)
        while not source.done:
            job = source.take()
            if job is None:
                time.sleep(source.poll_seconds)
                continue
            yield job, self.runner(job, self.threads, worker=False)

    def close(self) -> None:
        pass


class LocalProcesses:
    """Runs jobs on ``workers`` local processes (joblib's loky), ``threads`` torch threads each.

    Keeps one job per worker in flight and yields each as it finishes. A worker process that
    dies (out of memory, a crash in native code) breaks the pool, and every job in flight is lost
    with it; which one killed it is unknown, so those jobs run again one at a time, each alone on
    the pool (the others wait). A job whose worker dies while it runs alone is charged with the
    death; bystanders never are. A job charged :data:`MAX_WORKER_DEATHS` times comes back as
    :class:`WorkerLost`. Worker processes exit within :data:`PARENT_POLL_SECONDS` of their
    coordinator's death (kill -9 included), so none lingers holding memory.
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

        self._pool = get_reusable_executor(
            max_workers=self.workers, timeout=60, initializer=exit_with_parent, initargs=(os.getpid(),)
        )
        return self._pool

    def run(self, jobs: Iterable[Job] | JobSource) -> Iterator[Outcome]:
        from joblib.externals.loky.process_executor import BrokenProcessPool

        source = as_source(jobs)
        taken: deque[Job] = deque()  # taken from the source, not yet submitted (the pool broke)
        alone: deque[Job] = deque()  # lost with a worker: rerun one at a time, nothing beside them
        deaths: dict[int, int] = {}  # id(job) -> worker deaths charged to it
        company: set[int] = set()  # id(job) of jobs in flight that shared the pool with another
        in_flight: dict[Future, Job] = {}
        solo: Job | None = None  # a job of `alone` in flight: nothing else goes in beside it
        pool = self._executor()

        def submit(job: Job) -> bool:
            try:
                in_flight[pool.submit(self.runner, job, self.threads)] = job
            except BrokenProcessPool:
                return False
            if len(in_flight) > 1:
                company.update(id(j) for j in in_flight.values())
            return True

        while True:
            if alone or solo is not None:
                if not in_flight and alone:
                    job = alone.popleft()
                    company.discard(id(job))
                    if not submit(job):
                        alone.appendleft(job)
                        pool = self._executor()
                        continue
                    solo = job
            else:
                while len(in_flight) < self.workers:
                    next_job = taken.popleft() if taken else source.take()
                    if next_job is None:
                        break
                    if not submit(next_job):
                        taken.appendleft(next_job)
                        pool = self._executor()
                        break
            if not in_flight:
                if alone or taken:
                    continue
                if source.done:
                    return
                time.sleep(source.poll_seconds)
                continue
            polling = not alone and solo is None and not source.done and len(in_flight) < self.workers
            done, _ = wait(
                list(in_flight), timeout=source.poll_seconds if polling else None, return_when=FIRST_COMPLETED
            )
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                done, _ = wait(list(in_flight))  # the pool broke: every job in flight is lost with it
            lost = []
            for future in done:
                job = in_flight.pop(future)
                if job is solo:
                    solo = None
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    lost.append((job, error))
                    continue
                company.discard(id(job))
                deaths.pop(id(job), None)
                yield job, future.result() if error is None else error
            if not lost:
                continue
            pool = self._executor()
            for job, error in lost:
                if id(job) not in company:  # it ran alone: its worker died of it
                    deaths[id(job)] = deaths.get(id(job), 0) + 1
                    if deaths[id(job)] >= MAX_WORKER_DEATHS:
                        del deaths[id(job)]
                        yield (
                            job,
                            WorkerLost(
                                f"its worker process died {MAX_WORKER_DEATHS} times while running it "
                                f"(last: {_one_line(error)})"
                            ),
                        )
                        continue
                alone.append(job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, kill_workers=True)
            self._pool = None


@dataclass(frozen=True)
class TlsFiles:
    """This client's TLS files for a Dask scheduler (PEM paths): the CA certificate(s) the cluster's
    certificates are signed by, this client's certificate, and its private key (None when the key
    sits in the certificate file)."""

    ca_file: str
    cert: str
    key: str | None = None

    def security(self) -> Security:
        """The files as Dask's ``Security`` for a client, TLS required. Raises :class:`SbrnnError`
        for a file that does not exist."""
        from distributed import Security

        for what, path in (("CA file", self.ca_file), ("certificate", self.cert), ("key", self.key)):
            if path is not None and not Path(path).is_file():
                raise SbrnnError(f"TLS {what} {str(path)!r} does not exist; allowed: a PEM file")
        return Security(
            require_encryption=True,
            tls_ca_file=str(self.ca_file),
            tls_client_cert=str(self.cert),
            tls_client_key=None if self.key is None else str(self.key),
        )


def _loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface."""
    host = host.strip("[]")
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).partition("%")[0]).is_loopback for a in found)


def plain_tcp_warning(address: str) -> str | None:
    """The warning for a sweep that reaches the scheduler at ``address`` over plain TCP beyond this
    machine (anyone who can reach that port can run code on every worker); None for TLS, another
    protocol, or a loopback address."""
    if not address.startswith("tcp://"):
        return None
    host = address[len("tcp://") :].rpartition(":")[0] or address[len("tcp://") :]
    if _loopback(host.rsplit("/", 1)[0]):
        return None
    return (
        f"the Dask scheduler {address} is reached over plain TCP: anyone who can reach it can run code on "
        "its workers; across machines use a tls:// scheduler with certificates"
    )


class DaskCluster:
    """Runs jobs on a Dask ``distributed`` cluster and streams results back as they finish.

    ``address`` (``tcp://HOST:PORT`` or ``tls://HOST:PORT``) joins an existing scheduler;
    ``local_workers`` starts a :class:`distributed.LocalCluster` of that many processes with one
    thread each instead. ``security`` is the client's TLS: :class:`TlsFiles`, a Dask
    ``Security``, or None (a ``tls://`` scheduler then takes Dask's own configuration,
    ``distributed.comm.tls.*``). Connecting over plain TCP to a scheduler that is not on this
    machine logs a warning. Each job is a task keyed by its run ids, so a resubmitted job is the
    same task. About two jobs per worker thread are in flight at a time, so each is claimed just
    before it goes out. A worker that dies mid-run is Dask's to handle: the scheduler runs its
    task again elsewhere, and gives up (``KilledWorker``, yielded as :class:`WorkerLost`) once
    workers died with it more than ``distributed.scheduler.allowed-failures`` times (3).
    """

    def __init__(
        self,
        address: str | None = None,
        local_workers: int | None = None,
        threads: int | None = 1,
        runner: JobRunner = run_job,
        security: TlsFiles | Security | None = None,
    ) -> None:
        if (address is None) == (local_workers is None):
            raise SbrnnError("give exactly one of a scheduler address and a local cluster size")
        if local_workers is not None and local_workers < 1:
            raise SbrnnError(f"local cluster size = {local_workers} is out of range; allowed: integers >= 1")
        if address is not None and not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise SbrnnError(
                f"scheduler {address!r} is not an address; allowed: tcp://HOST:PORT or tls://HOST:PORT"
            )
        if security is not None and address is None:
            raise SbrnnError("TLS certificates apply to a scheduler address; a local cluster takes none")
        if security is not None and address is not None and not address.startswith("tls://"):
            raise SbrnnError(
                f"scheduler {address!r} is not a TLS address; allowed with TLS certificates: tls://HOST:PORT"
            )
        self.address = address
        self.local_workers = local_workers
        self.threads = threads
        self.runner = runner
        self.security = security
        self.name = f"Dask at {address}" if address else f"a local Dask cluster of {local_workers}"
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._in_flight: dict[str, Any] = {}  # task key -> future
        self._window = (0.0, 2)  # (when measured, jobs in flight allowed)

    def _security(self):
        """The client's Dask ``Security`` for a ``tls://`` address (from the files given, else from
        Dask's configuration); None for other addresses."""
        from distributed import Security

        if self.address is None or not self.address.startswith("tls://"):
            return None
        if isinstance(self.security, TlsFiles):
            return self.security.security()
        security = self.security if self.security is not None else Security()
        tls = security.get_tls_config_for_role("client")
        if not tls.get("ca_file") or not tls.get("cert"):
            raise SbrnnError(
                f"scheduler {self.address!r} needs TLS certificates; allowed: a CA file and a client "
                "certificate, given here or in Dask's configuration (distributed.comm.tls.ca-file, "
                "distributed.comm.tls.client.cert)"
            )
        return security

    def _connect(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SbrnnError("Dask is not installed; install it with: pip install 'sbrnn[cluster]'") from None
        if self._client is not None:
            return self._client
        if self.address is None:
            import dask

            # workers without Dask's MALLOC_TRIM_THRESHOLD_ (see sbrnn.child.malloc)
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            # one task per one-thread worker at a time: a worker that dies takes only its own run;
            # no statistical profiler sampling the training thread (see _stop_dask_profiler)
            settings = {
                "distributed.nanny.pre-spawn-environ": environ,
                "distributed.scheduler.worker-saturation": 1.0,
                "distributed.worker.profile.enabled": False,
            }
            with dask.config.set(settings):
                self._cluster = LocalCluster(
                    n_workers=self.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            self._client = Client(self._cluster)
        else:
            security = self._security()
            warning = plain_tcp_warning(self.address)
            if warning is not None:
                _log.warning(warning)
            try:
                self._client = Client(self.address, timeout="20s", security=security)
            except (OSError, TypeError, ValueError) as exc:
                text = " ".join(str(exc).split())
                raise SbrnnError(f"cannot reach the Dask scheduler at {self.address}: {text}") from None
        return self._client

    def _capacity(self, client) -> int:
        """Jobs to keep in flight: twice the cluster's worker threads (at least 2), measured every 5 s."""
        measured, window = self._window
        if time.monotonic() - measured > 5.0:
            try:
                threads = sum(client.nthreads().values())
            except Exception:  # noqa: BLE001 - a scheduler that does not answer now: keep the last window
                threads = window // 2
            window = 2 * max(1, threads)
            self._window = (time.monotonic(), window)
        return window

    def _submit(self, client, job: Job, completed) -> str:
        """Send ``job``; its task key."""
        key = "sbrnn-run-" + "-".join(c.run_id() for c in job)
        future = client.submit(self.runner, job, self.threads, key=key, pure=False)
        self._in_flight[future.key] = future
        completed.add(future)
        return future.key

    def run(self, jobs: Iterable[Job] | JobSource) -> Iterator[Outcome]:
        from distributed import KilledWorker, as_completed

        source = as_source(jobs)
        client = self._connect()
        completed = as_completed()
        by_key: dict[str, Job] = {}
        cancelled: dict[str, int] = {}
        while True:
            window = self._capacity(client)
            while len(self._in_flight) < window:
                job = source.take()
                if job is None:
                    break
                by_key[self._submit(client, job, completed)] = job
            if not self._in_flight:
                if source.done:
                    return
                time.sleep(source.poll_seconds)
                continue
            if source.done or len(self._in_flight) >= window:
                batch = completed.next_batch(block=True)
            else:  # runs another sweep holds: look at the source again now and then
                batch = completed.next_batch(block=False)
                if not batch:
                    time.sleep(min(0.2, source.poll_seconds))
                    continue
            for future in batch:
                self._in_flight.pop(future.key, None)
                job = by_key.pop(future.key)
                if future.cancelled():  # not by us: the scheduler dropped it (restarted, or we reconnected)
                    cancelled[future.key] = cancelled.get(future.key, 0) + 1
                    if cancelled[future.key] < MAX_WORKER_DEATHS:
                        by_key[self._submit(client, job, completed)] = job
                    else:
                        yield job, WorkerLost(f"the Dask scheduler cancelled it {MAX_WORKER_DEATHS} times")
                    continue
                try:
                    result = future.result()
                except KilledWorker as exc:
                    yield (
                        job,
                        WorkerLost(f"Dask gave it up after its workers died with it ({_one_line(exc)})"),
                    )
                except Exception as exc:  # noqa: BLE001 - anything else the cluster raised: recorded as failed
                    yield job, exc
                else:
                    yield job, result

    def close(self) -> None:
        if self._client is not None:
            if self._in_flight:
                self._client.cancel(list(self._in_flight.values()))
                self._in_flight.clear()
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
    tls: TlsFiles | None = None,
) -> Executor:
    """The executor of a sweep: a Dask cluster (the scheduler at address ``scheduler``, reached with
    the client TLS files ``tls`` when given, or a local cluster of ``local_cluster`` one-thread
    workers), ``workers`` local processes when more than one, else this process. Each worker uses
    ``threads`` torch threads and trains up to ``population`` compatible runs together
    (:func:`run_population_job`) or one at a time (:func:`run_job`).

    Raises :class:`SbrnnError` for a count below 1, for more than one of several workers, a
    scheduler and a local cluster, or for TLS files without a ``tls://`` scheduler.
    """
    for name, value in (("threads", threads), ("workers", workers), ("population", population)):
        if value < 1:
            raise SbrnnError(f"{name} = {value} is out of range; allowed: integers >= 1")
    if sum([workers != 1, scheduler is not None, local_cluster is not None]) > 1:
        raise SbrnnError("give only one of several workers, a scheduler address and a local cluster size")
    if tls is not None and scheduler is None:
        raise SbrnnError("TLS certificates apply to a scheduler address (tls://HOST:PORT)")
    runner = run_population_job if population > 1 else run_job
    if scheduler is not None or local_cluster is not None:
        return DaskCluster(scheduler, local_cluster, threads, runner=runner, security=tls)
    if workers > 1:
        return LocalProcesses(workers, threads, runner=runner)
    return InProcess(threads, runner=runner)
