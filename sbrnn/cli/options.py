"""Options shared by several commands, and the checks and parsing of what they are given.

Range checks here name the command-line flag (``--in 0 is out of range``); the library checks
the same values again, naming them in plain words, for callers that are not the command line.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from sbrnn.child import weight_space
from sbrnn.cli import console
from sbrnn.errors import SbrnnError

InOpt = Annotated[int, typer.Option("--in", help="Input size |x| of the task.")]
OutOpt = Annotated[int, typer.Option("--out", help="Output size |y| of the task.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DENSITIES_HELP = 'Block densities "hx,hh,hy/yx,yh,yy" (rows h, y; columns x, h, y) or one number.'
TaskOptionOpt = Annotated[
    list[str] | None,
    typer.Option("--task-option", help="A task builder option key=value (repeat), e.g. n_train=300."),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="cpu, cuda or cuda:N; default CUDA when available, else CPU.")
]
TaskArg = Annotated[str, typer.Argument(help="Task name (see `sbrnn datasets list`).")]
TaskSeedOpt = Annotated[int, typer.Option(help="Generation seed.")]
RecordsArg = Annotated[Path, typer.Argument(help="Records directory (Parquet shards).")]


def check_counts(**flags: int | None) -> None:
    """Each given count (``threads=0`` is flag ``--threads``) is an integer >= 1."""
    for name, value in flags.items():
        if value is not None and value < 1:
            raise SbrnnError(f"--{name.replace('_', '-')} {value} is out of range; allowed: integers >= 1")


def check_dims(n_x: int, n_y: int) -> None:
    """``--in`` and ``--out`` are integers >= 1."""
    check_counts(**{"in": n_x, "out": n_y})


def grid_option(text: str | None, name: str) -> weight_space.Grid | None:
    """A grid flag's text (``".2,1,1/.2,.2,1"`` or one number) as a grid; None when not given."""
    return weight_space.parse_grid(text, name) if text is not None else None


def task_options(values: list[str] | None) -> dict:
    """``["n_train=200", "side=28"]`` -> ``{"n_train": 200, "side": 28}`` (values read as JSON, else text)."""
    options = {}
    for item in values or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SbrnnError(f"--task-option {item!r} is malformed; expected key=value (e.g. n_train=200)")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            options[key.strip()] = text
    return options


@contextlib.contextmanager
def warnings_as_lines():
    """Warnings (an unreadable records file skipped, ...) as one ``warning: ...`` line each on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *args, **kwargs: console.stderr.print(
            f"warning: {message}", markup=False, soft_wrap=True, highlight=False
        )
        yield
