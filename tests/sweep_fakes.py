"""Stand-in job runners for the sweep tests: a cheap record per run instead of training, with cues
(a log of starts and ends, a sleep, a worker process that dies on a given run). Imports stay
light (no torch), so worker processes that run them start fast. Give options with
``functools.partial(fake_runner, ...)``; it pickles by reference to this module."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sbrnn.records import RunRecord


def fake_record(config, status: str = "ok") -> RunRecord:
    """A minimal record of ``config``'s run."""
    return RunRecord(
        run_id=config.run_id(),
        task=config.task,
        n_x=8,
        n_y=6,
        steps=6,
        loss_kind="cross_entropy",
        arch=config.arch,
        h=1,
        lr=config.lr,
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
        status=status,
    )


def _note(log: str | None, what: str, job) -> None:
    if log is None:
        return
    text = "".join(f"{what} {c.run_id()} {os.getpid()}\n" for c in job)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def fake_runner(
    job,
    threads=1,
    worker=True,
    *,
    log: str | None = None,
    sleep: float = 0.0,
    die: tuple[str, ...] = (),
    die_once: tuple[str, ...] = (),
    marks: str | None = None,
):
    """One :func:`fake_record` per config after ``sleep`` seconds, writing ``start``/``end`` lines
    (``<what> <run id> <pid>``) to ``log``. The process exits (a dead worker) on a run of ``die``
    every time, on a run of ``die_once`` the first time only (a mark file in ``marks`` remembers)."""
    _note(log, "start", job)
    time.sleep(sleep)
    for config in job:
        run_id = config.run_id()
        if run_id in die:
            os._exit(3)
        if run_id in die_once and marks is not None:
            try:
                os.close(os.open(Path(marks) / run_id, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(3)
    _note(log, "end", job)
    return [fake_record(c) for c in job]


def log_lines(log: str | os.PathLike, what: str = "start") -> list[tuple[str, int]]:
    """``(run id, pid)`` of each ``what`` line of ``log`` (none when it does not exist)."""
    path = Path(log)
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(row[1], int(row[2])) for row in rows if len(row) == 3 and row[0] == what]
