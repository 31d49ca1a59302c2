"""Sweeps: plan many child runs, execute them anywhere, record each as it finishes, resume.

Planning (:func:`plan_sweep`) is pure: for every task and budget it lists the baselines and the
balanced configuration when asked, then ``runs`` random draws from the sampling space
(:mod:`sbrnn.child.space`). Draw ``i`` takes its generator from ``(seed, task, budget, i)``, so
the same command plans the same configurations, seeds and run ids on any machine.

Execution: an executor (:class:`InProcess`, :class:`LocalProcesses` on joblib's loky, or
:class:`DaskCluster` on a ``distributed`` cluster) runs *jobs* — tuples of configs — through
:func:`run_job` on its workers and hands results back as they finish. Only the coordinating
process (:func:`run_sweep`) writes the records directory, one atomic Parquet shard per run
(:func:`sbrnn.records.write_record`), so a crash or kill at any moment leaves whole shards only.

Resume: :func:`run_sweep` skips every planned run id that already has a readable shard
(failed ones too, unless ``retry_failed``); rerunning the same command after Ctrl-C or kill -9
therefore finishes exactly the planned set, once each.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sbrnn import __version__
from sbrnn.child import malloc
from sbrnn.child import space as sampling
from sbrnn.child.config import RunConfig
from sbrnn.child.model import resolve
from sbrnn.child.population import population_jobs
from sbrnn.child.spec import grid_blocks
from sbrnn.datasets import registry
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.errors import SbrnnError
from sbrnn.records import RunRecord, read_table, write_record
from sbrnn.vocabulary import BASELINE_ARCHS

Job = tuple[RunConfig, ...]
"""A unit of work for one worker: configs trained there in order, one record each."""


# Planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: a label (``random 3``, ``dense``, ``balanced``, ...) and its config."""

    label: str
    config: RunConfig

    @property
    def run_id(self) -> str:
        return self.config.run_id()


def plan_sweep(
    tasks: Sequence[str],
    budgets: Sequence[float],
    runs: int,
    *,
    epochs: int = 25,
    seed: int = 0,
    space: str = "paper",
    pins: sampling.Pins | None = None,
    include_baselines: bool = False,
    balanced: bool = False,
    batch_size: int = 16,
    task_options: Mapping[str, object] | None = None,
    patience: int | None = None,
) -> list[PlannedRun]:
    """The runs of a sweep, in a fixed order: per task, per budget, baselines, balanced, draws.

    Draw ``i`` at (task, budget) takes densities, init means and stds and the learning rate
    from ``space`` (``pins`` fix any of them for every draw) with the generator
    :func:`sbrnn.child.space.run_rng` of ``(seed, task, budget, i)``. Every run trains with the
    sweep seed, which builds the task's data (one data set per task for the whole sweep) and
    draws masks, init and data order; baselines and the balanced configuration use the pinned
    learning rate (or the default 1e-3). Identical configs (everything pinned) collapse to one
    run. ``task_options`` (builder options such as ``n_train``) apply to every task; ``patience``
    (early stopping) to every run. Raises
    :class:`SbrnnError` for an unknown task or option, a budget too small for a task's dims, or
    an empty sweep.
    """
    if not tasks:
        raise SbrnnError("give at least one --task")
    if not budgets:
        raise SbrnnError("give at least one --budget")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 0:
        raise SbrnnError(f"runs = {runs!r} is out of range; allowed: integers >= 0")
    sampling.check_space(space)
    pins = pins or sampling.Pins()
    lr = pins.lr if pins.lr is not None else RunConfig.lr
    planned: dict[str, PlannedRun] = {}

    def add(label: str, config: RunConfig, n_in: int, n_out: int) -> None:
        resolve(config, n_in, n_out)  # a budget the task cannot hold fails here, before any run
        planned.setdefault(config.run_id(), PlannedRun(label, config))

    options = dict(task_options or {})
    for task in dict.fromkeys(tasks):
        info = get_info(task)
        allowed = registry.task_options(info)
        unknown = sorted(set(options) - set(allowed)) if allowed is not None else []
        if unknown:
            listed = ", ".join(allowed) or "none"
            raise SbrnnError(f"unknown option {unknown[0]!r} for task {task}; allowed: {listed}")
        for budget in dict.fromkeys(float(b) for b in budgets):
            if not (math.isfinite(budget) and budget > 0):
                raise SbrnnError(f"budget = {budget:g} is out of range; allowed: a number > 0")
            common = {"task": task, "task_options": options, "budget": budget, "epochs": epochs,
                      "batch_size": batch_size, "patience": patience}
            if include_baselines:
                for arch in BASELINE_ARCHS:
                    add(arch, RunConfig(**common, arch=arch, lr=lr, seed=seed), info.n_in, info.n_out)
            if balanced:
                add("balanced", RunConfig(**common, lr=lr, seed=seed), info.n_in, info.n_out)
            for i in range(runs):
                rng = sampling.run_rng(seed, task, budget, i)
                hp = sampling.draw(rng, space, pins)
                config = RunConfig(
                    **common, densities=hp.densities, means=hp.means, stds=hp.stds, lr=hp.lr, seed=seed,
                )
                add(f"random {i}", config, info.n_in, info.n_out)
    if not planned:
        raise SbrnnError("the sweep plans no runs; give --runs >= 1, --include-baselines or --balanced")
    return list(planned.values())


def describe_plan(plan: Sequence[PlannedRun], records: str | os.PathLike) -> list[dict]:
    """One JSON-ready row per planned run: its label, config summary, ``h`` and recorded status."""
    done = recorded_statuses(records)
    rows = []
    for p in plan:
        config = p.config
        info = get_info(config.task)
        spec, h = resolve(config, info.n_in, info.n_out)
        rows.append({
            "label": p.label, "run_id": p.run_id, "task": config.task, "budget": config.budget,
            "arch": config.arch, "h": h, "densities": [list(r) for r in spec.densities] if spec else None,
            "hidden_proportion": spec.hidden_proportion if spec else None, "lr": config.lr,
            "epochs": config.epochs, "seed": config.seed, "recorded": done.get(p.run_id),
        })
    return rows


# Work on a worker ----------------------------------------------------------------------------


def lost_record(config: RunConfig, error: str) -> RunRecord:
    """A ``failed`` record for a run whose worker could not return one (it died, or raised)."""
    info = get_info(config.task)
    try:
        spec, h = resolve(config, info.n_in, info.n_out)
    except SbrnnError:
        spec, h = None, 0
    blocks = {}
    if spec is not None:
        for prefix, grid in (("d", spec.densities), ("mu", spec.means), ("sigma", spec.stds)):
            blocks.update({f"{prefix}_{b}": v for b, v in grid_blocks(grid).items()})
    return RunRecord(
        run_id=config.run_id(), task=config.task, n_x=info.n_in, n_y=info.n_out, steps=info.steps,
        loss_kind=info.loss, arch=config.arch, h=h, lr=config.lr, batch_size=config.batch_size,
        epochs=config.epochs, seed=config.seed, status="failed", budget=config.budget,
        activation=config.activation, precision=config.precision, error=error,
        sbrnn_version=__version__, task_family=info.family,
        task_options=json.dumps(config.task_options, sort_keys=True), **blocks,
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


# Executors -----------------------------------------------------------------------------------


Outcome = tuple[Job, "list[RunRecord] | BaseException"]
JobRunner = Callable[..., "list[RunRecord]"]
"""``runner(job, threads, worker=...)`` -> one record per config of the job (default :func:`run_job`)."""


class InProcess:
    """Runs jobs one at a time in the coordinating process (``--workers 1``)."""

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
            raise SbrnnError(f"--workers {workers} is out of range; allowed: integers >= 1")
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

    def __init__(self, address: str | None = None, local_workers: int | None = None,
                 threads: int | None = 1, runner: JobRunner = run_job) -> None:
        if (address is None) == (local_workers is None):
            raise SbrnnError("give exactly one of --scheduler and --local-cluster")
        if local_workers is not None and local_workers < 1:
            raise SbrnnError(f"--local-cluster {local_workers} is out of range; allowed: integers >= 1")
        if address is not None and not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise SbrnnError(f"--scheduler {address!r} is not an address; allowed: tcp://HOST:PORT")
        self.address = address
        self.local_workers = local_workers
        self.threads = threads
        self.runner = runner
        self.name = f"Dask at {address}" if address else f"a local Dask cluster of {local_workers}"
        self._client = None
        self._cluster = None
        self._futures: list = []

    def _connect(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SbrnnError(
                "Dask is not installed; install it with: pip install 'sbrnn[cluster]'"
            ) from None
        if self.address is None:
            import dask

            # workers without Dask's MALLOC_TRIM_THRESHOLD_ (see sbrnn.child.malloc)
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                self._cluster = LocalCluster(
                    n_workers=self.local_workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR,
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


# Coordinator ---------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What a sweep did: planned runs, runs found already recorded, and this session's work."""

    planned: int
    already_done: int
    to_run: int
    finished: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "planned": self.planned,
            "already_done": self.already_done,
            "to_run": self.to_run,
            "finished": self.finished,
            "statuses": dict(self.statuses),
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "runs_per_hour": round(3600 * self.finished / self.seconds, 1) if self.seconds > 0 else None,
        }


def recorded_statuses(records: str | os.PathLike) -> dict[str, str]:
    """``run_id -> status`` of every readable shard in ``records`` (unreadable ones warn)."""
    table = read_table(records, columns=["run_id", "status"])
    return dict(zip(table.column("run_id").to_pylist(), table.column("status").to_pylist()))


def pending_runs(
    plan: Sequence[PlannedRun], records: str | os.PathLike, retry_failed: bool = False
) -> list[PlannedRun]:
    """The planned runs without a record (or with a ``failed`` one, when ``retry_failed``)."""
    done = recorded_statuses(records)
    return [
        p for p in plan
        if p.run_id not in done or (retry_failed and done[p.run_id] == "failed")
    ]


def interleave_tasks(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` taken round-robin across tasks (each task's jobs in their order), so a sweep of
    many tasks that stops early has runs of every task rather than all of the first ones."""
    by_task: dict[str, list[Job]] = {}
    for job in jobs:
        by_task.setdefault(job[0].task, []).append(job)
    queues = list(by_task.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def run_sweep(
    plan: Sequence[PlannedRun],
    records: str | os.PathLike,
    executor,
    *,
    retry_failed: bool = False,
    on_start: Callable[[SweepReport], None] | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
    population: int = 1,
) -> SweepReport:
    """Run the planned runs not yet recorded on ``executor``; write each record as it arrives.

    ``population > 1`` hands the executor jobs of up to that many configs that can train as one
    population (:func:`sbrnn.child.population.population_jobs`; give the executor
    :func:`run_population_job` as its runner); 1 sends one config per job. Jobs of several tasks
    go round-robin across tasks (:func:`interleave_tasks`).

    ``on_start`` sees the report once the records are read (how many runs are planned, already
    done and to run), ``on_record`` each record after its shard is written. On Ctrl-C
    (KeyboardInterrupt) the executor is shut down, every record already written stays, and the
    report comes back with ``interrupted=True``; running the same plan again resumes.
    """
    records = Path(records)
    todo = pending_runs(plan, records, retry_failed)
    report = SweepReport(planned=len(plan), already_done=len(plan) - len(todo), to_run=len(todo))
    if on_start is not None:
        on_start(report)
    if not todo:
        return report
    records.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        configs = [p.config for p in todo]
        labels = {p.run_id: p.label for p in todo}
        grouped = population_jobs(configs, population) if population > 1 else [(c,) for c in configs]
        jobs = interleave_tasks(grouped)
        for job, outcome in executor.run(jobs):
            if isinstance(outcome, BaseException):
                text = "".join(traceback.format_exception_only(type(outcome), outcome)).strip()
                outcome = [lost_record(c, f"worker lost the run: {text}") for c in job]
            for config, record in zip(job, outcome):
                if record.run_id != config.run_id():
                    raise RuntimeError(f"worker returned record {record.run_id} for run {config.run_id()}")
                record.origin, record.label = "sweep", labels[record.run_id]
                write_record(record, records)
                report.finished += 1
                report.statuses[record.status] = report.statuses.get(record.status, 0) + 1
                if on_record is not None:
                    on_record(record)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        executor.close()
        report.seconds = time.perf_counter() - start
    return report


# Progress ------------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    """Runs finished per hour in this session."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed:
            return Text("- runs/h", style="progress.data.speed")
        return Text(f"{3600 * task.completed / task.elapsed:,.0f} runs/h", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """Time left at this session's mean pace (robust to runs that take minutes each)."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed or task.total is None:
            return Text("ETA -:--:--", style="progress.remaining")
        left = round((task.total - task.completed) * task.elapsed / task.completed)
        return Text(f"ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}", style="progress.remaining")


class SweepProgress:
    """A rich progress bar for a sweep: runs done of total, failed and diverged, runs/h, ETA.

    Use as a context manager; pass :meth:`begin` as ``run_sweep``'s ``on_start`` and the
    instance as its ``on_record``.
    """

    def __init__(self, console: Console | None = None, description: str = "sweep") -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/] {task.fields[diverged]} diverged"),
            _RateColumn(), TimeElapsedColumn(), _EtaColumn(),
            console=console,
        )
        self._description = description
        self._task = None
        self._counts = {"failed": 0, "diverged": 0}

    def begin(self, report: SweepReport) -> None:
        """Show the bar for the runs this session has to do."""
        self._task = self._progress.add_task(self._description, total=report.to_run, **self._counts)

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, record: RunRecord) -> None:
        if record.status in self._counts:
            self._counts[record.status] += 1
        self._progress.update(self._task, advance=1, **self._counts)
