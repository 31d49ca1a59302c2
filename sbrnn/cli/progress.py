"""Progress drawn on stderr: the callbacks that library calls report their work to, as rich bars.

All of them draw on the one shared stderr console (:mod:`sbrnn.cli.console`), so a builder's bar can
live inside a command's status line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from sbrnn.cli.console import stderr


def _bar(description: str, total: int) -> tuple[Progress, TaskID]:
    """A started progress bar for ``total`` units of ``description``, and its task id."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )
    bar.start()
    return bar, bar.add_task(description, total=total)


@contextlib.contextmanager
def counter(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar for ``total`` units of ``description``; yields ``advance(n)``."""
    bar, task = _bar(description, total)
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.stop()


@contextlib.contextmanager
def builder_bars(status: str | None = None) -> Iterator[Callable[[str, int, int], None]]:
    """A :data:`sbrnn.datasets.progress.Progress` callback for task builders: each piece of work it
    is told of is drawn as a bar from its first report until ``done == total``; ``status``, when
    given, is shown as a status line meanwhile (a task loaded from the cache reports nothing)."""
    live: dict[str, tuple[Progress, TaskID]] = {}  # description -> (bar, task id), until done

    def progress(description: str, done: int, total: int) -> None:
        if description not in live:
            live[description] = _bar(description, total)
        bar, task = live[description]
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()
            del live[description]

    with stderr.status(status) if status else contextlib.nullcontext():
        try:
            yield progress
        finally:
            for bar, _ in live.values():
                bar.stop()


class EpochBar:
    """A bar over epochs showing the latest losses and accuracy; the instance is ``train_run``'s
    ``progress(epoch, metrics)``, and :attr:`done` the epochs finished so far."""

    def __init__(self, epochs: int) -> None:
        self.progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=stderr,
        )
        self.task = self.progress.add_task("train", total=epochs, metrics="")
        self.done = 0

    def __enter__(self) -> EpochBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, epoch: int, metrics: dict) -> None:
        text = f"train {metrics['train_loss']:.4f}  val {metrics['val_loss']:.4f}"
        if metrics["val_acc"] is not None:
            text += f"  acc {metrics['val_acc']:.3f}"
        self.progress.update(self.task, completed=epoch, metrics=text)
        self.done = epoch


class _RunsPerHour(ProgressColumn):
    """Runs finished per hour in this session."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed:
            return Text("- runs/h", style="progress.data.speed")
        return Text(f"{3600 * task.completed / task.elapsed:,.0f} runs/h", style="progress.data.speed")


class _SweepEta(ProgressColumn):
    """Time left at this session's mean pace (robust to runs that take minutes each)."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed or task.total is None:
            return Text("ETA -:--:--", style="progress.remaining")
        left = round((task.total - task.completed) * task.elapsed / task.completed)
        return Text(f"ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}", style="progress.remaining")


class SweepBar:
    """The sweep's bar: runs done of total, failed and diverged, runs/h, ETA. Use as a context
    manager; :meth:`begin` starts the count, and the instance is ``run_sweep``'s ``on_record``."""

    def __init__(self, description: str = "sweep") -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/] {task.fields[diverged]} diverged"),
            _RunsPerHour(),
            TimeElapsedColumn(),
            _SweepEta(),
            console=stderr,
        )
        self._description = description
        self._task: TaskID | None = None
        self._counts = {"failed": 0, "diverged": 0}

    def begin(self, total: int) -> None:
        self._task = self._progress.add_task(
            self._description, total=total, failed=self._counts["failed"], diverged=self._counts["diverged"]
        )

    def __enter__(self) -> SweepBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, record) -> None:
        if record.status in self._counts:
            self._counts[record.status] += 1
        assert self._task is not None, "begin() starts the count before the first record"
        self._progress.update(
            self._task, advance=1, failed=self._counts["failed"], diverged=self._counts["diverged"]
        )


class TuneBar:
    """A study's bar: trials that trained of the target (all processes), this session's pruned,
    failed and diverged runs, the best value so far and its trial. Use as a context manager;
    :meth:`begin` starts the count; the instance is ``tune``'s ``on_trial`` and :meth:`wait` its
    ``on_wait``."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "{task.fields[pruned]} pruned [red]{task.fields[failed]} failed[/] "
                "{task.fields[diverged]} diverged  best {task.fields[best]}"
            ),
            TimeElapsedColumn(),
            console=stderr,
        )
        self._task: TaskID | None = None
        self._counts = {"pruned": 0, "failed": 0, "diverged": 0}
        self._waiting: int | None = None

    def begin(self, done: int, total: int) -> None:
        self._task = self._progress.add_task(
            "tune",
            total=total,
            completed=done,
            best="-",
            pruned=self._counts["pruned"],
            failed=self._counts["failed"],
            diverged=self._counts["diverged"],
        )

    def __enter__(self) -> TuneBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, outcome) -> None:
        if outcome.trial.status in self._counts:
            self._counts[outcome.trial.status] += 1
        best = "-" if outcome.best is None else f"{outcome.best.value:.4g} (trial {outcome.best.number})"
        assert self._task is not None, "begin() starts the count before the first trial"
        self._progress.update(
            self._task,
            completed=outcome.finished,
            best=best,
            pruned=self._counts["pruned"],
            failed=self._counts["failed"],
            diverged=self._counts["diverged"],
        )

    def wait(self, running: int) -> None:
        """A note each time the number of trials waited for changes."""
        if running != self._waiting:
            self._waiting = running
            note(
                f"waiting for {running} running trial(s): of other processes, or left by a killed one "
                "(run again once stale)"
            )


def steps(title: str) -> tuple[Progress, Callable[[str, int], None]]:
    """A transient bar titled ``title`` and the ``on_step(description, total)`` callback that
    advances it by one step (a parent's fit: folds, models)."""
    progress = Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=stderr,
        transient=True,
    )
    task = progress.add_task("", total=None)

    def on_step(description: str, total: int) -> None:
        progress.update(task, advance=1, total=total, description=description)

    return progress, on_step


def note(line: str) -> None:
    """A line of news on stderr (what a sweep is about to do, how to resume it)."""
    stderr.print(line, soft_wrap=True, markup=False, highlight=False)
