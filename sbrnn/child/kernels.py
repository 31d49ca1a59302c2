"""The compiled CPU kernels (``kernels.c``): built on first use, cached on disk, called as torch ops.

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

Each kernel is a torch custom op in the ``sbrnn`` namespace (:func:`tiles`, :func:`spmm`,
:func:`sddmm`, :func:`recurrence_forward`, :func:`recurrence_backward`; also
``torch.ops.sbrnn.<name>``), with a fake implementation so ``torch.compile`` and
``torch.library.opcheck`` trace them; in eager mode the module's functions run the op's body
without the dispatcher (:class:`KernelOp`). Each op allocates its outputs and checks its arguments
before the kernel runs: dtypes (fp32 data, int32/int64 indices), the CPU, contiguity, sizes
consistent with each other and index entries within range, raising a :class:`ValueError` that
names the argument, the expected and the actual value (a kernel handed a wrong argument would
read or write stray memory). Each kernel's raw pointers are passed in one place: the op's body,
or for ``sbrnn_spmm`` :class:`SparseProduct`, shared by the ``spmm`` op and the sparse
recurrence's ops (:mod:`sbrnn.child.recurrence`: one kernel call per step inside one op), which
use the ``check_*`` helpers too. The layout constants (:attr:`Kernels.tile`,
:attr:`Kernels.block_columns`) are read from the library, the one place they are stated. Users:
the sparse x path (:mod:`sbrnn.child.sparse_ops`) and the recurrence.
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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

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
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(compiler)} failed: {done.stderr.strip()[-500:]}")
        os.replace(target, path)  # atomic: a concurrent process sees the old file or the whole new one


_PTR, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {  # name -> argument types, in kernels.c's order (the names there in the comments)
    "sbrnn_tiles": (_PTR, _I64, _I64, _I64, _PTR, _INT),  # x, N, C, ld, xt, nt
    "sbrnn_spmm": (  # indptr, cols, vals, bias, R, x, N, C, ld, xt, out, ldo, nt
        _PTR,
        _PTR,
        _PTR,
        _PTR,
        _I64,
        _PTR,
        _I64,
        _I64,
        _I64,
        _PTR,
        _PTR,
        _I64,
        _INT,
    ),
    "sbrnn_sddmm": (  # colptr, rows, dst, C, gt, R, xt, N, nnz, grad, partial, nt
        _PTR,
        _PTR,
        _PTR,
        _I64,
        _PTR,
        _I64,
        _PTR,
        _I64,
        _I64,
        _PTR,
        _PTR,
        _INT,
    ),
    "sbrnn_recurrence_forward": (  # p, wt, ldw, K, B, T, R, h, act, states, nt
        _PTR,
        _PTR,
        _I64,
        _I64,
        _I64,
        _I64,
        _I64,
        _I64,
        _INT,
        _PTR,
        _INT,
    ),
    "sbrnn_recurrence_backward": (  # states, gy, w, ldw, K, B, T, R, h, act, grad_a, nt
        _PTR,
        _PTR,
        _PTR,
        _I64,
        _I64,
        _I64,
        _I64,
        _I64,
        _I64,
        _INT,
        _PTR,
        _INT,
    ),
}
_ACTIVATIONS = {"relu": 0, "tanh": 1}
"""The activation codes of kernels.c's recurrence."""


@dataclass(frozen=True)
class Kernels:
    """The loaded library and the layout constants it states.

    Attributes:
        dll: the library, every kernel's argument types declared (called by this module's ops only).
        tile: rows of ``x`` per tile of the sparse x path's tile-major layout (``TILE``, 32).
        block_columns: columns of a product block of the recurrence (``NR``, 24); its maps are
            padded with zero columns to a multiple of it.
    """

    dll: ctypes.CDLL
    tile: int
    block_columns: int


@functools.lru_cache(maxsize=1)
def library() -> Kernels | None:
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


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether the compiled kernels are loaded (:func:`library` is not None); ``torch.compile``
    calls it once while tracing and takes the answer as a constant (the library is not traced)."""
    return library() is not None


def _load() -> Kernels:
    compiler = _compiler()
    if compiler is None:
        raise KernelsUnavailable("no C compiler found (set CC or install gcc)")
    try:
        source = _source()
        path = _library_path(compiler, source)
        if not path.is_file():
            _build(compiler, source, path)
        dll = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise KernelsUnavailable(f"the {variant()} build failed: {exc}") from None
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(dll, name)
        fn.argtypes = list(argtypes)
        fn.restype = None
    constants = []
    for name in ("sbrnn_tile", "sbrnn_block_columns"):
        fn = getattr(dll, name)
        fn.argtypes, fn.restype = [], ctypes.c_int64
        constants.append(int(fn()))
    return Kernels(dll, *constants)


def _loaded(op: str) -> Kernels:
    """The kernels, for ``op``; :class:`KernelsUnavailable` where they are not."""
    lib = library()
    if lib is None:
        raise KernelsUnavailable(f"{op} needs the compiled kernels: {library_error()}")
    return lib


# ---- Argument checks, shared by each op's kernel and fake implementation (the public ones by the
# sparse recurrence's ops in sbrnn.child.recurrence too); each raises a ValueError naming the op,
# the argument, the expected and the actual value ----


def check_tensor(
    op: str, name: str, tensor: Tensor, dtype: torch.dtype, dims: int, contiguous: bool = True
) -> None:
    """:class:`ValueError` unless ``op``'s argument ``name`` has ``dtype`` and ``dims`` dimensions,
    and is contiguous when asked."""
    if tensor.dtype != dtype:
        raise ValueError(f"{op}: {name} must be {dtype}, got {tensor.dtype}")
    if tensor.dim() != dims:
        raise ValueError(f"{op}: {name} must be {dims}-D, got shape {tuple(tensor.shape)}")
    if contiguous and not tensor.is_contiguous():
        raise ValueError(
            f"{op}: {name} must be contiguous, got strides {tensor.stride()} for shape {tuple(tensor.shape)}"
        )


def check_shape(op: str, name: str, tensor: Tensor, expected: tuple, meaning: str) -> None:
    """:class:`ValueError` unless ``tensor`` has shape ``expected`` (``meaning`` names its sizes)."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{op}: {name} must have shape {tuple(expected)} ({meaning}), got {tuple(tensor.shape)}"
        )


def check_cpu(op: str, **tensors: Tensor) -> None:
    """:class:`ValueError` unless every tensor is on the CPU (checked where the kernels run)."""
    for name, tensor in tensors.items():
        if tensor.device.type != "cpu":
            raise ValueError(f"{op}: {name} must be on the CPU, got {tensor.device}")


def _within(op: str, name: str, index: Tensor, low: int, high: int, last: int | None = None) -> None:
    """:class:`ValueError` unless every entry of ``index`` lies in ``[low, high]`` (the kernels
    address memory with them) and, where given, the last one is ``last`` (pointers end at nnz).

    An index tensor that passed remembers it with its version counter, so the pattern of a model,
    used every step, is scanned once: in-place writes advance the counter and bring a new scan
    (writes through ``.data`` do not, as for the models' pattern caches); inference tensors, which
    have no counter, are scanned every call.
    """
    memo = None if index.is_inference() else (index._version, low, high, last)
    if memo is not None and getattr(index, "_sbrnn_checked", None) == memo:
        return
    if index.numel():
        least, most = (int(v) for v in torch.aminmax(index))
        if least < low or most > high:
            raise ValueError(f"{op}: {name} must lie in [{low}, {high}], got entries in [{least}, {most}]")
    if last is not None and int(index[-1]) != last:
        raise ValueError(f"{op}: {name} must end at nnz = {last} (the entries given), got {int(index[-1])}")
    if memo is not None:
        setattr(index, "_sbrnn_checked", memo)  # noqa: B010 - an ad-hoc attribute Tensor does not declare


def _tile_count(rows, tile: int):
    """Tiles of ``tile`` rows that hold ``rows`` rows (ints or symbolic sizes)."""
    return (rows + tile - 1) // tile


def _check_x(op: str, name: str, x: Tensor) -> None:
    """``x [N, C]`` fp32 with unit column stride (any row stride: the kernels take it)."""
    check_tensor(op, name, x, torch.float32, 2, contiguous=False)
    if x.shape[1] > 1 and x.stride(1) != 1:
        raise ValueError(f"{op}: {name} must have unit column stride, got strides {x.stride()}")


def check_pattern(op: str, indptr: Tensor, cols: Tensor, values: Tensor, bias: Tensor) -> tuple:
    """``(R, nnz)`` of the CSR pattern of a product's map and its ``values`` and ``bias``, after
    checking their dtypes and sizes."""
    check_tensor(op, "indptr", indptr, torch.int64, 1)
    check_tensor(op, "cols", cols, torch.int32, 1)
    check_tensor(op, "values", values, torch.float32, 1)
    check_tensor(op, "bias", bias, torch.float32, 1)
    if indptr.shape[0] < 1:
        raise ValueError(f"{op}: indptr must have R + 1 >= 1 entries, got shape {tuple(indptr.shape)}")
    n_rows, nnz = indptr.shape[0] - 1, cols.shape[0]
    check_shape(op, "values", values, (nnz,), "nnz, as cols")
    check_shape(op, "bias", bias, (n_rows,), "R = indptr entries - 1")
    return n_rows, nnz


def _check_sddmm(colptr: Tensor, rows: Tensor, dst: Tensor, g: Tensor, x_tiles: Tensor, tile: int) -> tuple:
    """``(N, R, C, nnz)`` of :func:`sddmm`'s arguments, after checking them."""
    op = "sbrnn::sddmm"
    check_tensor(op, "colptr", colptr, torch.int64, 1)
    check_tensor(op, "rows", rows, torch.int32, 1)
    check_tensor(op, "dst", dst, torch.int64, 1)
    _check_x(op, "g", g)
    check_tensor(op, "x_tiles", x_tiles, torch.float32, 3)
    (n, n_rows), n_cols, nnz = g.shape, x_tiles.shape[1], rows.shape[0]
    check_shape(op, "x_tiles", x_tiles, (_tile_count(n, tile), n_cols, tile), "tiles of N rows as g, C, tile")
    check_shape(op, "colptr", colptr, (n_cols + 1,), "C + 1 = x_tiles.shape[1] + 1")
    check_shape(op, "dst", dst, (nnz,), "nnz, as rows")
    return n, n_rows, n_cols, nnz


def _check_recurrence(
    op: str, states_name: str, states: Tensor, weight_s: Tensor, h: int, activation: str
) -> None:
    """The arguments both recurrence ops share; ``states`` (``projected`` or ``states``) is 4-D
    with ``R`` last."""
    check_tensor(op, states_name, states, torch.float32, 4)
    check_tensor(op, "weight_s", weight_s, torch.float32, 3, contiguous=False)
    check_activation(op, h, states.shape[3], activation)


def check_activation(op: str, h: int, size: int, activation: str) -> None:
    """:class:`ValueError` unless ``0 <= h <= size`` (``R``) and ``activation`` is relu or tanh."""
    if not 0 <= h <= size:
        raise ValueError(f"{op}: h must lie in [0, R = {size}], got {h}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")


def _padded(weight: Tensor, columns: int) -> Tensor:
    """``weight [K, R, R]`` (any strides) copied, with zero columns up to a multiple of ``columns``."""
    size = weight.shape[-1]
    out = weight.new_zeros(*weight.shape[:-1], _tile_count(size, columns) * columns)
    out[..., :size] = weight
    return out


class KernelOp:
    """A kernel's torch custom op (``sbrnn::<name>``, registered from ``body``) as callers call it.

    In eager mode, on plain tensors with no gradient to track, ``body`` runs directly: the
    dispatcher would add about 7 us to each call, paid four or five times in every training step
    of a child. Wherever torch traces (``torch.compile``, export, fake or functional tensors) or a
    tensor argument requires a gradient, the registered op is called, so graphs hold the op and
    its errors are torch's own.

    Attributes:
        op: the registered op (``torch.ops.sbrnn.<name>`` is the same).
    """

    def __init__(self, name: str, body) -> None:
        self.body = body
        self.op = torch.library.custom_op(name, mutates_args=())(body)
        functools.update_wrapper(self, body)

    def register_fake(self, fake):
        """Registers ``fake`` as the op's fake implementation (shapes only, for tracing)."""
        return self.op.register_fake(fake)

    def __call__(self, *args):
        if torch.compiler.is_compiling():
            return self.op(*args)
        grad = torch.is_grad_enabled()
        for a in args:
            if isinstance(a, Tensor) and (type(a) is not Tensor or (grad and a.requires_grad)):
                return self.op(*args)
        return self.body(*args)


def kernel_op(name: str):
    """Decorator: the function as the :class:`KernelOp` ``name`` (its body checks and runs a kernel)."""
    return functools.partial(KernelOp, name)


# ---- The ops: each body checks, allocates the outputs and calls its kernel (the one place its
# raw pointers appear; SparseProduct for spmm's); each fake checks the same and gives the outputs'
# shapes ----


@kernel_op("sbrnn::tiles")
def tiles(x: Tensor) -> Tensor:
    """The tile-major layout of ``x [N, C]`` (fp32, CPU, unit column stride, any row stride):
    ``out [ceil(N / tile), C, tile]`` with ``out[t, c, k] = x[t * tile + k, c]``, zero past row
    ``N`` (``tile`` = :attr:`Kernels.tile`)."""
    lib = _loaded("sbrnn::tiles")
    _check_x("sbrnn::tiles", "x", x)
    check_cpu("sbrnn::tiles", x=x)
    return _tiled(lib, x)


def _tiled(lib: Kernels, x: Tensor) -> Tensor:
    """The body of :func:`tiles` past its checks (also :func:`sddmm`'s, for ``g``)."""
    n, n_cols = x.shape
    out = x.new_empty(_tile_count(n, lib.tile), n_cols, lib.tile)
    lib.dll.sbrnn_tiles(x.data_ptr(), n, n_cols, x.stride(0), out.data_ptr(), torch.get_num_threads())
    return out


@tiles.register_fake
def _(x: Tensor) -> Tensor:
    tile = _loaded("sbrnn::tiles").tile
    _check_x("sbrnn::tiles", "x", x)
    return x.new_empty(_tile_count(x.shape[0], tile), x.shape[1], tile)


class SparseProduct:
    """``out [B, R] = x M^T + bias`` over the kept entries of an ``[R, C]`` map ``M``, for any
    number of ``x [B, C]`` of one batch size ``B``: the kernel of :func:`spmm` called directly.

    The map's arguments are checked once, here; each call checks only ``x`` and ``out``. For loops
    inside an op, such as the sparse recurrence's steps, which would otherwise pay the dispatcher
    at every step; elsewhere call :func:`spmm`.

    Args:
        op: the op it runs for, named in errors.
        indptr, cols, values, bias: the map, as :func:`spmm` takes them.
        batch: ``B``, the rows of every ``x``.
        n_cols: ``C``, the columns of ``M`` and ``x``.

    Attributes:
        x_tiles: ``[ceil(B / tile), C, tile]``, the tiles of the last ``x`` (written by each call).
    """

    def __init__(
        self, op: str, indptr: Tensor, cols: Tensor, values: Tensor, bias: Tensor, batch: int, n_cols: int
    ) -> None:
        self.lib = _loaded(op)
        n_rows, nnz = check_pattern(op, indptr, cols, values, bias)
        check_cpu(op, indptr=indptr, cols=cols, values=values, bias=bias)
        _within(op, "indptr", indptr, 0, nnz, last=nnz)
        _within(op, "cols", cols, 0, n_cols - 1)
        self.op, self.indptr, self.cols, self.values, self.bias = op, indptr, cols, values, bias
        self.batch, self.n_rows, self.n_cols = batch, n_rows, n_cols
        self.x_tiles = values.new_empty(_tile_count(batch, self.lib.tile), n_cols, self.lib.tile)

    def __call__(self, x: Tensor, out: Tensor) -> None:
        """Writes ``x M^T + bias`` into ``out [B, R]`` (fp32, contiguous) for ``x [B, C]`` (fp32,
        unit column stride), both on the CPU."""
        batch, n_rows, n_cols = self.batch, self.n_rows, self.n_cols
        fits = (  # one expression for the common case (a loop calls this every step), then each check
            x.dtype == out.dtype == torch.float32
            and x.device.type == out.device.type == "cpu"
            and x.shape == (batch, n_cols)
            and out.shape == (batch, n_rows)
            and (x.stride(1) == 1 or n_cols <= 1)
            and out.is_contiguous()
        )
        if not fits:
            self._explain(x, out)
        self.lib.dll.sbrnn_spmm(
            self.indptr.data_ptr(),
            self.cols.data_ptr(),
            self.values.data_ptr(),
            self.bias.data_ptr(),
            n_rows,
            x.data_ptr(),
            batch,
            n_cols,
            x.stride(0),
            self.x_tiles.data_ptr(),
            out.data_ptr(),
            n_rows,
            torch.get_num_threads(),
        )

    def _explain(self, x: Tensor, out: Tensor) -> None:
        """The :class:`ValueError` of the first check that ``x`` or ``out`` fails."""
        op = self.op
        _check_x(op, "x", x)
        check_shape(op, "x", x, (self.batch, self.n_cols), "B, C of the product")
        check_tensor(op, "out", out, torch.float32, 2)
        check_shape(op, "out", out, (self.batch, self.n_rows), "B, R of the product")
        check_cpu(op, x=x, out=out)


@kernel_op("sbrnn::spmm")
def spmm(indptr: Tensor, cols: Tensor, values: Tensor, bias: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """The sparse-dense product over the kept entries of an ``[R, C]`` map, and the tiles of ``x``.

    Args:
        indptr: ``[R + 1]`` int64 row pointers of the kept entries (in ``[0, nnz]``, ending at nnz).
        cols: ``[nnz]`` int32 column of each entry (in ``[0, C)``), row by row.
        values: ``[nnz]`` fp32 the entries' weights, in the order of ``cols``.
        bias: ``[R]`` fp32.
        x: ``[N, C]`` fp32, unit column stride (any row stride).

    Returns:
        ``out [N, R]`` with ``out[n, r] = bias[r] + sum_{j in row r} values[j] x[n, cols[j]]``,
        and ``x``'s tiles ``[ceil(N / tile), C, tile]`` (as :func:`tiles`), formed on the way.
        All contiguous fp32 on the CPU.
    """
    _check_x("sbrnn::spmm", "x", x)
    product = SparseProduct("sbrnn::spmm", indptr, cols, values, bias, x.shape[0], x.shape[1])
    out = x.new_empty(x.shape[0], product.n_rows)
    product(x, out)
    return out, product.x_tiles


@spmm.register_fake
def _(indptr: Tensor, cols: Tensor, values: Tensor, bias: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    tile = _loaded("sbrnn::spmm").tile
    n_rows, _ = check_pattern("sbrnn::spmm", indptr, cols, values, bias)
    _check_x("sbrnn::spmm", "x", x)
    n, n_cols = x.shape
    return x.new_empty(n, n_rows), x.new_empty(_tile_count(n, tile), n_cols, tile)


@kernel_op("sbrnn::sddmm")
def sddmm(colptr: Tensor, rows: Tensor, dst: Tensor, g: Tensor, x_tiles: Tensor) -> Tensor:
    """The sampled dense-dense product ``g^T x`` at the kept entries of an ``[R, C]`` map, in CSR order.

    Args:
        colptr: ``[C + 1]`` int64 column pointers of the kept entries (in ``[0, nnz]``, ending at nnz).
        rows: ``[nnz]`` int32 row of each entry (in ``[0, R)``), column by column.
        dst: ``[nnz]`` int64 position of each entry (in column order) in the result, its CSR order
            (a permutation of ``0 .. nnz - 1``).
        g: ``[N, R]`` fp32, unit column stride (any row stride); tiled here as :func:`tiles` does.
        x_tiles: ``[ceil(N / tile), C, tile]`` fp32, the tiles of ``x [N, C]`` (:func:`tiles`).

    Returns:
        ``grad [nnz]`` fp32 with ``grad[dst[j]] = sum_n g[n, r] x[n, c]`` for the entry ``j`` at
        ``(r, c)``; entries ``dst`` misses are 0 (the same sums whatever number of threads OpenMP
        grants).
    """
    op = "sbrnn::sddmm"
    lib = _loaded(op)
    n, n_rows, n_cols, nnz = _check_sddmm(colptr, rows, dst, g, x_tiles, lib.tile)
    check_cpu(op, colptr=colptr, rows=rows, dst=dst, g=g, x_tiles=x_tiles)
    _within(op, "colptr", colptr, 0, nnz, last=nnz)
    _within(op, "rows", rows, 0, n_rows - 1)
    _within(op, "dst", dst, 0, nnz - 1)
    g_tiles = _tiled(lib, g)
    threads = torch.get_num_threads()
    grad = g_tiles.new_zeros(nnz)
    partial = g_tiles.new_empty(threads, nnz)
    lib.dll.sbrnn_sddmm(
        colptr.data_ptr(),
        rows.data_ptr(),
        dst.data_ptr(),
        n_cols,
        g_tiles.data_ptr(),
        n_rows,
        x_tiles.data_ptr(),
        n,
        nnz,
        grad.data_ptr(),
        partial.data_ptr(),
        threads,
    )
    return grad


@sddmm.register_fake
def _(colptr: Tensor, rows: Tensor, dst: Tensor, g: Tensor, x_tiles: Tensor) -> Tensor:
    nnz = _check_sddmm(colptr, rows, dst, g, x_tiles, _loaded("sbrnn::sddmm").tile)[3]
    return g.new_empty(nnz)


@kernel_op("sbrnn::recurrence_forward")
def recurrence_forward(projected: Tensor, weight_s: Tensor, h: int, activation: str) -> Tensor:
    """The states of K independent maps: ``s_t = [act(a_t[:h]); a_t[h:]]`` with
    ``a_t = p_t + s_{t-1} W_k^T`` and ``s_{-1} = 0`` (see :mod:`sbrnn.child.recurrence`).

    Args:
        projected: ``[K, B, T, R]`` fp32 contiguous, the projected inputs ``p``.
        weight_s: ``[K, R, R]`` fp32 (any strides), the maps ``W_k``.
        h: the columns ``act`` applies to, ``0 <= h <= R``.
        activation: ``relu`` or ``tanh``.

    Returns:
        ``states [T + 1, K, B, R]`` fp32 with ``states[t + 1] = s_t`` and ``states[0] = 0``.
    """
    op = "sbrnn::recurrence_forward"
    lib = _loaded(op)
    _check_recurrence(op, "projected", projected, weight_s, h, activation)
    maps, batch, steps, size = projected.shape
    check_shape(op, "weight_s", weight_s, (maps, size, size), "K, R, R of projected")
    check_cpu(op, projected=projected, weight_s=weight_s)
    weight_t = _padded(weight_s.transpose(1, 2), lib.block_columns)
    states = projected.new_empty(steps + 1, maps, batch, size)
    lib.dll.sbrnn_recurrence_forward(
        projected.data_ptr(),
        weight_t.data_ptr(),
        weight_t.shape[-1],
        maps,
        batch,
        steps,
        size,
        h,
        _ACTIVATIONS[activation],
        states.data_ptr(),
        torch.get_num_threads(),
    )
    return states


@recurrence_forward.register_fake
def _(projected: Tensor, weight_s: Tensor, h: int, activation: str) -> Tensor:
    op = "sbrnn::recurrence_forward"
    _check_recurrence(op, "projected", projected, weight_s, h, activation)
    maps, batch, steps, size = projected.shape
    check_shape(op, "weight_s", weight_s, (maps, size, size), "K, R, R of projected")
    return projected.new_empty(steps + 1, maps, batch, size)


def _check_backward(states: Tensor, grad_y: Tensor, weight_s: Tensor, h: int, activation: str) -> None:
    op = "sbrnn::recurrence_backward"
    _check_recurrence(op, "states", states, weight_s, h, activation)
    check_tensor(op, "grad_y", grad_y, torch.float32, 4)
    steps, maps, batch, size = states.shape
    if steps < 1:
        raise ValueError(f"{op}: states must hold T + 1 >= 1 steps, got shape {tuple(states.shape)}")
    check_shape(op, "grad_y", grad_y, (maps, batch, steps - 1, size - h), "K, B, T, R - h of states")
    check_shape(op, "weight_s", weight_s, (maps, size, size), "K, R, R of states")


@kernel_op("sbrnn::recurrence_backward")
def recurrence_backward(states: Tensor, grad_y: Tensor, weight_s: Tensor, h: int, activation: str) -> Tensor:
    """The gradients ``da_t`` of the pre-activations of :func:`recurrence_forward`'s maps.

    ``da_t = ds_t * act'(a_t)`` on the first ``h`` columns and ``ds_t + dy_t`` on the others, with
    ``ds_t = da_{t+1} W_k`` (0 for the last step).

    Args:
        states: ``[T + 1, K, B, R]`` fp32 contiguous, as :func:`recurrence_forward` returned them.
        grad_y: ``[K, B, T, R - h]`` fp32 contiguous, the gradient of the outputs ``y_t = a_t[h:]``.
        weight_s: ``[K, R, R]`` fp32 (any strides), the maps ``W_k``.
        h, activation: as in the forward.

    Returns:
        ``grad_a [T, K, B, R]`` fp32.
    """
    op = "sbrnn::recurrence_backward"
    lib = _loaded(op)
    _check_backward(states, grad_y, weight_s, h, activation)
    check_cpu(op, states=states, grad_y=grad_y, weight_s=weight_s)
    steps, maps, batch, size = states.shape[0] - 1, *states.shape[1:]
    weight = _padded(weight_s, lib.block_columns)
    grad_a = states.new_empty(steps, maps, batch, size)
    lib.dll.sbrnn_recurrence_backward(
        states.data_ptr(),
        grad_y.data_ptr(),
        weight.data_ptr(),
        weight.shape[-1],
        maps,
        batch,
        steps,
        size,
        h,
        _ACTIVATIONS[activation],
        grad_a.data_ptr(),
        torch.get_num_threads(),
    )
    return grad_a


@recurrence_backward.register_fake
def _(states: Tensor, grad_y: Tensor, weight_s: Tensor, h: int, activation: str) -> Tensor:
    _check_backward(states, grad_y, weight_s, h, activation)
    return states.new_empty(states.shape[0] - 1, *states.shape[1:])


def library_error() -> str | None:
    """Why :func:`library` returned None (None when it did not)."""
    return _ERROR[-1] if _ERROR else None
