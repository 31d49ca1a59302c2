"""Options shared by several commands, and the checks and parsing of what they are given.

Range checks here name the command-line flag (``--in 0 is out of range``); the library checks
the same values again, naming them in plain words, for callers that are not the command line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
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


def check_seeds(**flags: int | None) -> None:
    """Each given seed (``seed=-1`` is flag ``--seed``) is an integer >= 0."""
    for name, value in flags.items():
        if value is not None and value < 0:
            raise SbrnnError(f"--{name.replace('_', '-')} {value} is out of range; allowed: integers >= 0")


def check_dims(n_x: int, n_y: int) -> None:
    """``--in`` and ``--out`` are integers >= 1."""
    check_counts(**{"in": n_x, "out": n_y})


def grid_option(text: str | None, name: str) -> weight_space.Grid | None:
    """A grid flag's text (``".2,1,1/.2,.2,1"`` or one number) as a grid; None when not given.
    The ``densities`` grid is checked here too: every density in (0, 1], naming the flag."""
    if text is None:
        return None
    grid = weight_space.parse_grid(text, name)
    if name == "densities":
        try:
            weight_space.check_densities(grid)
        except SbrnnError as exc:
            raise SbrnnError(f"--densities {text!r}: {exc}") from None
    return grid


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the current directory for a relative path)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _probe(directory: Path) -> str | None:
    """Why a file cannot be created in the existing ``directory``: None when one can (a temporary
    file is created and removed again, so nothing stays behind)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".sbrnn-probe-"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_output_dir(path: Path | None, flag: str) -> None:
    """``flag``'s directory can be written: it is a directory, or does not exist yet under a
    directory that can be written (checked by creating a temporary file there, nothing created),
    before any work whose result it would hold. None (not given) passes."""
    if path is None:
        return
    allowed = "allowed: a directory you can write to (new or existing)"
    if path.exists() and not path.is_dir():
        raise SbrnnError(f"{flag} {str(path)!r} is a file; {allowed}")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise SbrnnError(f"{flag} {str(path)!r} lies under the file {str(ancestor)!r}; {allowed}")
    why = _probe(ancestor)
    if why is not None:
        raise SbrnnError(f"{flag} {str(path)!r} cannot be written ({why} in {str(ancestor)!r}); {allowed}")


def check_output_file(path: Path | None, flag: str) -> None:
    """``flag``'s file can be written: not a directory, and its folder can be written (see
    :func:`check_output_dir`). None (not given) passes."""
    if path is None:
        return
    if path.is_dir():
        raise SbrnnError(f"{flag} {str(path)!r} is a directory; allowed: a file path")
    check_output_dir(path.parent, f"{flag}'s folder")


@contextlib.contextmanager
def writing(flag: str, path: Path | str) -> Iterator[None]:
    """An operating-system error inside (a full disk, no permission, a read-only file system) as one
    :class:`SbrnnError` naming ``flag`` and ``path``. Writes go through :func:`sbrnn.io.atomic_write`,
    so whatever was there before is left as it was."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        shape = exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)  # else space or permission
        allowed = _OS_ALLOWED[exc.errno or 0] if shape else "a writable place with free space"
        raise SbrnnError(f"{flag} {str(path)!r} cannot be written: {os_error_text(exc, allowed)}") from None


_OS_ALLOWED = {
    errno.ENOSPC: "a disk with free space",
    errno.EDQUOT: "a disk with free space (and quota)",
    errno.EACCES: "a path this user may read and write",
    errno.EPERM: "a path this user may read and write",
    errno.EROFS: "a path on a writable file system",
    errno.ENOENT: "a path that exists",
    errno.ENOTDIR: "a path whose folders are folders",
    errno.EISDIR: "a file path, not a folder",
}


def os_error_text(exc: OSError, allowed: str | None = None) -> str:
    """``No space left on device (ENOSPC) on '/x'; allowed: ...``: an operating-system error in one
    line, with what would do (``allowed``, else a word on the error's kind)."""
    why = exc.strerror or (os.strerror(exc.errno) if exc.errno else None) or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno) if exc.errno else None
    where = f" on {str(exc.filename)!r}" if exc.filename else ""
    allowed = allowed or _OS_ALLOWED.get(exc.errno or 0, "a path the system can read and write")
    return f"{' '.join(why.split())}{f' ({code})' if code else ''}{where}; allowed: {allowed}"


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


class _OneLineHandler(logging.Handler):
    """Log records as one ``warning: ...`` (or ``error: ...``) line each on the stderr console."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
        except Exception:  # noqa: BLE001 - a malformed log call must not end the command
            self.handleError(record)
            return
        _line(f"{'error' if record.levelno >= logging.ERROR else 'warning'}: {text}")


_HANDLER = _OneLineHandler(logging.WARNING)
_LOGGER = logging.getLogger("sbrnn")


def _line(text: str) -> None:
    console.stderr.print(text, markup=False, soft_wrap=True, highlight=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _line(f"warning: {' '.join(str(message).split())}")


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Library warnings as one ``warning: ...`` line each on stderr, never a source line: those of
    the ``warnings`` module (an unreadable records file skipped, ...) and the ``sbrnn`` logger's
    records at WARNING and above. The root command applies it to every command; nesting is harmless.
    Third-party deprecation notices stay hidden, as Python hides them by default (under pytest too).
    """
    attached = _HANDLER not in _LOGGER.handlers
    if attached:
        _LOGGER.addHandler(_HANDLER)
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)  # Python's defaults, under pytest too
            warnings.filterwarnings("default", category=DeprecationWarning, module=r"sbrnn(\.|$)")
            warnings.showwarning = _show_warning
            yield
    finally:
        if attached:
            _LOGGER.removeHandler(_HANDLER)


@contextlib.contextmanager
def held_warnings() -> Iterator[None]:
    """Warnings raised inside are held until the block ends: shown then (one line each), or, when
    an :class:`SbrnnError` ends it, folded into that error's one line (``records directory ...
    holds no readable records (skipping unreadable records file ...: not an sbrnn records file)``)
    so that a command ending in an error prints exactly one line."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        except SbrnnError as exc:
            if not caught:
                raise
            why = "; ".join(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
            raise SbrnnError(f"{exc} ({why})") from None
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
