"""One atomic file write for everything sbrnn stores: records, caches, checkpoints, parents.

:func:`atomic_write` has ``write(tmp)`` fill a temporary file in the target's directory, flushes
it to disk (fsync), renames it over the target (``os.replace``, atomic on one filesystem) and
fsyncs the directory, so a reader sees the old file or the whole new one, and a crash or kill
at any moment leaves no half-written target. On any error the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` writes the content to the temporary path ``tmp``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the target's suffix: some writers choose the format by it (.ubj)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o644)  # as a plain open() would leave it (mkstemp makes it private)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a filesystem that cannot is left as it is."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
