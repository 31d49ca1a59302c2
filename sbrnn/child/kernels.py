"""The compiled CPU kernels (``kernels.c``): built on first use, cached on disk, loaded with ctypes.

The source is compiled with the system's C compiler (``$CC``, else ``cc`` or ``gcc``) for this
CPU (``-march=native``, OpenMP) into ``$SBRNN_CACHE/kernels``, under a name that hashes the
source, flags, compiler version and CPU, so an upgrade or another machine builds its own copy.
Where no compiler is found or the build fails, :func:`library` returns None and callers use their
torch forms (masked-dense products, the torch recurrence loop); :func:`library_error` says why.
Users: the sparse x path (:mod:`sbrnn.child.sparse_ops`) and the recurrence
(:mod:`sbrnn.child.recurrence`). All kernels take fp32 tensors' data pointers.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from sbrnn.datasets.cache import cache_root

_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c99")
_LIBS = ("-lm",)
_ERROR: list[str] = []


def _source() -> str:
    return resources.files("sbrnn.child").joinpath("kernels.c").read_text()


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _library_path(compiler: str, source: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = "\n".join([source, " ".join(_FLAGS + _LIBS), version, platform.machine(), _cpu_flags()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "kernels" / f"sbrnn-{digest}.so"


def _build(compiler: str, source: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        source_file = Path(tmp) / "kernels.c"
        source_file.write_text(source)
        target = Path(tmp) / path.name
        done = subprocess.run(
            [compiler, *_FLAGS, str(source_file), "-o", str(target), *_LIBS],
            capture_output=True, text=True, timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-500:]}")
        os.replace(target, path)  # atomic: a concurrent process sees the old file or the whole new one


_SIGNATURES = {  # name -> argument types (p pointer, i 64-bit integer, n int)
    "sbrnn_tiles": "piiipn",
    "sbrnn_spmm": "ppppipiiippin",
    "sbrnn_sddmm": "pppipipiippn",
    "sbrnn_recurrence_forward": "ppiiiiiinpn",
    "sbrnn_recurrence_backward": "pppiiiiiinpn",
}
_TYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int64, "n": ctypes.c_int}


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels (built on first use, then cached on disk); None where unavailable."""
    compiler = _compiler()
    if compiler is None:
        _ERROR.append("no C compiler found (set CC or install gcc)")
        return None
    try:
        source = _source()
        path = _library_path(compiler, source)
        if not path.is_file():
            _build(compiler, source, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _ERROR.append(f"compiled kernels unavailable: {exc}")
        return None
    for name, signature in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = [_TYPES[c] for c in signature]
        fn.restype = None
    return lib


def library_error() -> str | None:
    """Why :func:`library` returned None (None when it did not)."""
    return _ERROR[-1] if _ERROR else None
