"""The coordinator: run a plan's unrecorded runs on an executor, write each record as it arrives.

Only the coordinating process writes the records directory, one atomic Parquet shard per run
(:func:`sbrnn.records.write_record`). Resume: :func:`run_sweep` skips every planned run id that
already has a readable record (failed ones too, unless ``retry_failed``); rerunning the same
command after Ctrl-C or kill -9 therefore finishes exactly the planned set, once each.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sbrnn.child.population import population_jobs
from sbrnn.child.sweep.executors import Executor, Job, lost_record
from sbrnn.child.sweep.plan import PlannedRun
from sbrnn.records import RunRecord, read_table, write_record


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
    return [p for p in plan if p.run_id not in done or (retry_failed and done[p.run_id] == "failed")]


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
    executor: Executor,
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
