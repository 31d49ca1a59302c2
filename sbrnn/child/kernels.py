"""The compiled CPU kernels (``kernels.c``): built on first use, cached on disk, loaded with ctypes.

The source is compiled with the system's C compiler (``$CC``, split like a shell would, so
``CC="ccache gcc"`` works; else ``cc`` or ``gcc``) with OpenMP into ``$SBRNN_CACHE/kernels``,
under a name that hashes the source, flags, compiler version and CPU, so an upgrade or another
machine builds its own copy. Two variants (``$SBRNN_KERNELS``): ``native`` (the default,
``-march=native``: AVX2/FMA where this CPU has them) and ``portable`` (the compiler's generic
target: the plain loops other CPUs take).

Where no compiler is found or the build fails, :func:`library` returns None, logs one warning
naming the reason, and callers use their torch forms (masked-dense products, the torch recurrence
loop; same results, 2-3x slower); :func:`library_error` says why. ``SBRNN_REQUIRE_KERNELS=1``
turns that into a :class:`KernelsUnavailable` error instead (CI sets it, so a broken build
fails the suite rather than skipping the kernel tests).
Users: the sparse x path (:mod:`sbrnn.child.sparse_ops`) and the recurrence
(:mod:`sbrnn.child.recurrence`). All kernels take fp32 tensors' data pointers.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from sbrnn.datasets.cache import cache_root

_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-std=c99")
_VARIANTS = {"native": ("-march=native",), "portable": ()}
_LIBS = ("-lm",)
_ERROR: list[str] = []
_LOG = logging.getLogger(__name__)


class KernelsUnavailable(RuntimeError):
    """The compiled kernels could not be built or loaded while ``SBRNN_REQUIRE_KERNELS=1``."""


def variant() -> str:
    """The kernel variant asked for by ``$SBRNN_KERNELS``: ``native`` (default) or ``portable``."""
    name = os.environ.get("SBRNN_KERNELS") or "native"
    if name not in _VARIANTS:
        raise KernelsUnavailable(f"SBRNN_KERNELS={name!r} is unknown; allowed: {', '.join(_VARIANTS)}")
    return name


def _flags() -> tuple[str, ...]:
    return (*_FLAGS, *_VARIANTS[variant()])


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


def _compiler() -> list[str] | None:
    """The compiler command: ``$CC`` split like a shell would (``ccache gcc``, ``gcc -w``), else
    ``cc`` or ``gcc`` from the path."""
    if os.environ.get("CC", "").strip():
        return shlex.split(os.environ["CC"])
    found = shutil.which("cc") or shutil.which("gcc")
    return [found] if found else None


def _library_path(compiler: list[str], source: str) -> Path:
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = "\n".join([source, " ".join(_flags() + _LIBS), version, platform.machine(), _cpu_flags()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "kernels" / f"sbrnn-{digest}.so"


def _build(compiler: list[str], source: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        source_file = Path(tmp) / "kernels.c"
        source_file.write_text(source)
        target = Path(tmp) / path.name
        done = subprocess.run(
            [*compiler, *_flags(), str(source_file), "-o", str(target), *_LIBS],
            capture_output=True, text=True, timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(compiler)} failed: {done.stderr.strip()[-500:]}")
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
    """The compiled kernels (built on first use, then cached on disk); None where unavailable,
    with one logged warning naming the reason (:class:`KernelsUnavailable` instead under
    ``SBRNN_REQUIRE_KERNELS=1``)."""
    try:
        return _load()
    except KernelsUnavailable as exc:
        _ERROR.append(str(exc))
        if os.environ.get("SBRNN_REQUIRE_KERNELS", "") not in ("", "0"):
            raise
        _LOG.warning("compiled kernels unavailable, running torch ops instead (2-3x slower): %s", exc)
        return None


def _load() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise KernelsUnavailable("no C compiler found (set CC or install gcc)")
    try:
        source = _source()
        path = _library_path(compiler, source)
        if not path.is_file():
            _build(compiler, source, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise KernelsUnavailable(f"the {variant()} build failed: {exc}") from None
    for name, signature in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = [_TYPES[c] for c in signature]
        fn.restype = None
    return lib


def library_error() -> str | None:
    """Why :func:`library` returned None (None when it did not)."""
    return _ERROR[-1] if _ERROR else None
