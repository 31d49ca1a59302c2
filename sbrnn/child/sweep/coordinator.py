"""The coordinator: run a plan's unrecorded runs on an executor, write each record as it arrives.

Only coordinating processes write the records directory, one atomic Parquet shard per run
(:func:`sbrnn.records.write_record`). Resume: :func:`run_sweep` skips every planned run id that
already has a readable record (failed ones too, unless ``retry_failed``); rerunning the same
command after Ctrl-C or kill -9 therefore finishes exactly the planned set, once each.

Several sweeps on one directory cooperate (two terminals, or machines sharing the directory):
each claims a run just before sending it to a worker (:mod:`sbrnn.child.sweep.claims`), looks
again whether it was recorded meanwhile, and leaves runs another live sweep holds to it, taking
them over should that sweep die. A sweep ends once every planned run is recorded, by it or by
another.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from sbrnn.child.config import RunConfig
from sbrnn.child.population import population_jobs
from sbrnn.child.sweep.claims import Claims
from sbrnn.child.sweep.executors import Executor, Job, WorkerLost, lost_record
from sbrnn.child.sweep.plan import PlannedRun
from sbrnn.records import RunRecord, read_table, shard_status, write_record

POLL_SECONDS = 2.0
"""How often a sweep looks again at runs another sweep holds (their records, their claims), in seconds."""


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
    by_others: int = 0
    """Planned runs another sweep on the directory recorded while this one ran."""

    def as_dict(self) -> dict:
        return {
            "planned": self.planned,
            "already_done": self.already_done,
            "to_run": self.to_run,
            "finished": self.finished,
            "by_others": self.by_others,
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
    return [p for p in plan if p.run_id not in done or (retry_failed and done[p.run_id] == "failed")]


def interleave_tasks(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` taken round-robin across tasks (each task's jobs in their order), so a sweep of
    many tasks that stops early has runs of every task rather than all of the first ones."""
    by_task: dict[str, list[Job]] = {}
    for job in jobs:
        by_task.setdefault(job[0].task, []).append(job)
    queues = list(by_task.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def _grouped(configs: Sequence[RunConfig], population: int) -> list[Job]:
    """``configs`` as jobs: populations of up to ``population`` compatible ones, or one each."""
    grouped = population_jobs(configs, population) if population > 1 else [(c,) for c in configs]
    return interleave_tasks(grouped)


class SweepQueue:
    """The jobs of one sweep as an executor's :class:`~sbrnn.child.sweep.executors.JobSource`.

    :meth:`take` claims a job's runs just before the executor sends it and drops the runs
    recorded since the sweep read the directory (``seen``: run id -> ``created_at`` of the records
    it found then, for failed runs it reruns); a run another live sweep holds waits, and every
    ``poll_seconds`` the waiting runs are looked at again: recorded by then (counted in the
    report's ``by_others``), or claimed when their holder has died.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        records: Path,
        claims: Claims,
        seen: dict[str, str],
        report: SweepReport,
        population: int = 1,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.jobs = deque(jobs)
        self.records = records
        self.claims = claims
        self.seen = seen
        self.report = report
        self.population = population
        self.poll_seconds = poll_seconds
        self.waiting: dict[str, RunConfig] = {}
        self._looked = -math.inf

    @property
    def done(self) -> bool:
        return not self.jobs and not self.waiting

    def recorded(self, run_id: str) -> bool:
        """Whether a record of ``run_id`` was written since the sweep read the directory."""
        try:
            created = pq.read_table(self.records / f"{run_id}.parquet", columns=["created_at"])
        except Exception:  # noqa: BLE001 - no shard, or one being replaced or unreadable: not recorded
            return False
        values = created.column("created_at").to_pylist()
        return len(values) == 1 and values[0] != self.seen.get(run_id)

    def _admit(self, job: Job) -> Job | None:
        """The runs of ``job`` this sweep claimed and that are still unrecorded, or None."""
        mine = []
        for config in job:
            run_id = config.run_id()
            if not self.claims.claim(run_id):
                self.waiting[run_id] = config
                continue
            self.waiting.pop(run_id, None)
            if self.recorded(run_id):
                self.claims.release(run_id)
                self.report.by_others += 1
                continue
            mine.append(config)
        return tuple(mine) or None

    def take(self) -> Job | None:
        while True:
            while self.jobs:
                job = self._admit(self.jobs.popleft())
                if job is not None:
                    return job
            if not self.waiting or time.monotonic() - self._looked < self.poll_seconds:
                return None
            self._looked = time.monotonic()
            for run_id in [r for r in self.waiting if self.recorded(r)]:
                del self.waiting[run_id]
                self.report.by_others += 1
            self.jobs.extend(_grouped(list(self.waiting.values()), self.population))
            self.waiting.clear()  # _admit puts back those still held by another sweep


def _failure_text(error: BaseException) -> str:
    if isinstance(error, WorkerLost):
        return str(error)
    return " ".join("".join(traceback.format_exception_only(type(error), error)).split())


def run_sweep(
    plan: Sequence[PlannedRun],
    records: str | os.PathLike,
    executor: Executor,
    *,
    retry_failed: bool = False,
    on_start: Callable[[SweepReport], None] | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
    population: int = 1,
    poll_seconds: float = POLL_SECONDS,
) -> SweepReport:
    """Run the planned runs not yet recorded on ``executor``; write each record as it arrives.

    ``population > 1`` hands the executor jobs of up to that many configs that can train as one
    population (:func:`sbrnn.child.population.population_jobs`; give the executor
    :func:`run_population_job` as its runner); 1 sends one config per job. Jobs of several tasks
    go round-robin across tasks (:func:`interleave_tasks`).

    Other sweeps may run on ``records`` at the same time: each run is claimed just before it is
    sent (:class:`SweepQueue`, :mod:`sbrnn.child.sweep.claims`), so each is trained once; runs
    another sweep holds are looked at again every ``poll_seconds`` seconds until they are
    recorded (or taken over, when their sweep died). A run whose workers kept dying is recorded
    ``failed`` with an error starting ``worker lost``; a failure never replaces another sweep's
    ``ok`` record of the run.

    ``on_start`` sees the report once the records are read (how many runs are planned, already
    done and to run), ``on_record`` each record after its shard is written. On Ctrl-C
    (KeyboardInterrupt) the executor is shut down, every record already written stays, the claims
    still held are released, and the report comes back with ``interrupted=True``; running the
    same plan again resumes.
    """
    records = Path(records)
    table = read_table(records, columns=["run_id", "status", "created_at"])
    ids = table.column("run_id").to_pylist()
    done = dict(zip(ids, table.column("status").to_pylist()))
    seen = dict(zip(ids, table.column("created_at").to_pylist()))
    todo = [p for p in plan if p.run_id not in done or (retry_failed and done[p.run_id] == "failed")]
    report = SweepReport(planned=len(plan), already_done=len(plan) - len(todo), to_run=len(todo))
    if on_start is not None:
        on_start(report)
    if not todo:
        return report
    records.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    claims = Claims(records).start()
    try:
        labels = {p.run_id: p.label for p in todo}
        jobs = _grouped([p.config for p in todo], population)
        queue = SweepQueue(jobs, records, claims, seen, report, population, poll_seconds)
        for job, outcome in executor.run(queue):
            if isinstance(outcome, BaseException):
                text = _failure_text(outcome)
                outcome = [lost_record(c, f"worker lost the run: {text}") for c in job]
            for config, record in zip(job, outcome):
                if record.run_id != config.run_id():
                    raise RuntimeError(f"worker returned record {record.run_id} for run {config.run_id()}")
                record.origin, record.label = "sweep", labels[record.run_id]
                shard = records / f"{record.run_id}.parquet"
                if record.status == "failed" and shard_status(shard) == "ok":
                    report.by_others += 1  # another sweep finished it meanwhile: its ok record stays
                else:
                    write_record(record, records)
                    report.finished += 1
                    report.statuses[record.status] = report.statuses.get(record.status, 0) + 1
                    if on_record is not None:
                        on_record(record)
                claims.release(record.run_id)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        executor.close()
        claims.close()
        report.seconds = time.perf_counter() - start
    return report
