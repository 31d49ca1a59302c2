"""Keyed on-disk tensors: generated data is written once per key and loaded thereafter.

Files live under ``$SBRNN_CACHE`` (default ``~/.cache/sbrnn``) as ``<kind>/<key>.safetensors``
(small JSON records: ``<kind>/<key>.json``), where ``key`` hashes every generation parameter and
the seed. They are written to a temporary file and renamed into place (atomic on one filesystem);
tensors under an exclusive lock so that processes asking for the same key at once generate them
only once.
safetensors holds plain tensors and a JSON string of the parameters: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import load_file, save_file

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock, writes stay atomic
    fcntl = None


def cache_root() -> Path:
    """``$SBRNN_CACHE`` if set, else ``~/.cache/sbrnn``."""
    return Path(os.environ.get("SBRNN_CACHE") or "~/.cache/sbrnn").expanduser()


def cache_key(kind: str, params: dict) -> str:
    """A 20-hex-digit hash of ``kind`` and the JSON of ``params`` (keys sorted)."""
    text = json.dumps({"kind": kind, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Entry:
    """Where a cached item lives and whether this call found it there (``hit``) or made it."""

    kind: str
    key: str
    path: Path
    hit: bool


def path_for(kind: str, params: dict) -> Path:
    """Where the tensors for ``(kind, params)`` are stored."""
    return cache_root() / kind / f"{cache_key(kind, params)}.safetensors"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created with its folder) across processes;
    without ``fcntl`` (not POSIX) no lock is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], params: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        contiguous = {name: t.contiguous() for name, t in tensors.items()}
        save_file(contiguous, tmp, metadata={"params": json.dumps(params, sort_keys=True, default=str)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_build(
    kind: str, params: dict, build: Callable[[], dict[str, torch.Tensor]]
) -> tuple[dict[str, torch.Tensor], Entry]:
    """The tensors stored for ``(kind, params)``; ``build()`` makes and stores them on a miss.

    ``build`` is called at most once per key, across processes sharing the cache directory.
    """
    path = path_for(kind, params)
    key = path.stem  # the cache key, hashed once
    if path.is_file():
        return load_file(path), Entry(kind, key, path, hit=True)
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():  # another process built it while we waited
            return load_file(path), Entry(kind, key, path, hit=True)
        tensors = build()
        _write_atomic(path, tensors, params)
    return tensors, Entry(kind, key, path, hit=False)


def json_path(kind: str, params: dict) -> Path:
    """Where the JSON record for ``(kind, params)`` is stored."""
    return cache_root() / kind / f"{cache_key(kind, params)}.json"


def read_json(kind: str, params: dict) -> dict | None:
    """The JSON record stored for ``(kind, params)``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(json_path(kind, params).read_text())
    except (OSError, ValueError):
        return None


def write_json(kind: str, params: dict, record: dict) -> Path:
    """Store ``record`` (with ``params`` beside it) for ``(kind, params)``, atomically; returns the path."""
    path = json_path(kind, params)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({**record, "params": params}, handle, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def disk_size(path: str | Path) -> int | None:
    """Bytes in the file ``path``, or in every file under the folder ``path``; None if it is absent."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None


def stored_params(path: str | Path) -> dict:
    """The generation parameters written beside the tensors in ``path``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("params", "{}"))
