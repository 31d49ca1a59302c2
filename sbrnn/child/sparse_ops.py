"""The sparse x path: the input projection computed over the kept entries of a block only.

The input projection ``x W^T`` of a sparse block RNN is its largest product (RAD: ``n_x = 2,500``
inputs against ``h + n_y`` rows), yet at the balanced configuration only about 8% of ``W_hx`` is
kept. The masked-dense form pays for every entry. Here the block is held as a pattern of kept
entries (CSR by row for the forward product, CSC by column for the gradient) and:

- forward: ``out[n, r] = sum_{c kept in row r} W[r, c] x[n, c]`` (a sparse-dense product);
- backward: only the weight gradient, and only at kept entries,
  ``dW[r, c] = sum_n g[n, r] x[n, c]`` (a sampled dense-dense product). The input is data and
  needs no gradient, so the ``g W`` product of a dense layer is never formed.

Both read the input in a tile-major layout (32 inputs of every column contiguous, one tile a few
hundred kB: cache- and TLB-friendly gathers of kept columns) and run in a small C kernel
(AVX2/FMA where the CPU has them, plain loops elsewhere, OpenMP over torch's thread count),
compiled on first use with the system's C compiler into ``$SBRNN_CACHE/kernels`` and loaded with
:mod:`ctypes`. Where no compiler is found or the build fails, :func:`kernels` returns None and
callers use the masked-dense form; the reason is in :func:`kernel_error`. fp32 only: under bf16
autocast the product runs in fp32.
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
from dataclasses import dataclass
from pathlib import Path

import torch

from sbrnn.datasets.cache import cache_root

_SOURCE = r"""
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SBRNN_AVX2 1
#endif
#define TILE 32

/* Tile-major transpose: xt[(t*C + c)*TILE + k] = x[(t*TILE + k)*ld + c], zero past row N. */
void sbrnn_tiles(const float* restrict x, int64_t N, int64_t C, int64_t ld, float* restrict xt, int nt) {
  const int64_t tiles = (N + TILE - 1) / TILE;
  #pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    float* restrict block = xt + t * C * TILE;
    const int64_t nb = N - t * TILE < TILE ? N - t * TILE : TILE;
    for (int64_t c0 = 0; c0 < C; c0 += 64) {
      const int64_t c1 = c0 + 64 < C ? c0 + 64 : C;
      for (int64_t k = 0; k < TILE; ++k) {
        if (k < nb) {
          const float* restrict row = x + (t * TILE + k) * ld;
          for (int64_t c = c0; c < c1; ++c) block[c * TILE + k] = row[c];
        } else {
          for (int64_t c = c0; c < c1; ++c) block[c * TILE + k] = 0.f;
        }
      }
    }
  }
}

/* out[n*ldo + r] = sum_{j in row r} vals[j] * x[n, cols[j]], from the tiles of x. */
void sbrnn_spmm(const int64_t* restrict indptr, const int32_t* restrict cols, const float* restrict vals,
                int64_t R, const float* restrict xt, int64_t N, int64_t C, float* restrict out, int64_t ldo,
                int nt) {
  const int64_t tiles = (N + TILE - 1) / TILE;
  #pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    const float* restrict xb = xt + t * C * TILE;
    const int64_t nb = N - t * TILE < TILE ? N - t * TILE : TILE;
    for (int64_t r = 0; r < R; ++r) {
      float acc[TILE];
      int64_t j = indptr[r];
      const int64_t e = indptr[r + 1];
#ifdef SBRNN_AVX2
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (; j + 1 < e; j += 2) {
        const float* p = xb + (int64_t)cols[j] * TILE;
        const float* q = xb + (int64_t)cols[j + 1] * TILE;
        const __m256 v = _mm256_broadcast_ss(vals + j), w = _mm256_broadcast_ss(vals + j + 1);
        a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 8), a1);
        a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 16), a2);
        a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 24), a3);
        b0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(q), b0);
        b1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(q + 8), b1);
        b2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(q + 16), b2);
        b3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(q + 24), b3);
      }
      if (j < e) {
        const float* p = xb + (int64_t)cols[j] * TILE;
        const __m256 v = _mm256_broadcast_ss(vals + j);
        a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 8), a1);
        a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 16), a2);
        a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 24), a3);
      }
      _mm256_storeu_ps(acc, _mm256_add_ps(a0, b0));
      _mm256_storeu_ps(acc + 8, _mm256_add_ps(a1, b1));
      _mm256_storeu_ps(acc + 16, _mm256_add_ps(a2, b2));
      _mm256_storeu_ps(acc + 24, _mm256_add_ps(a3, b3));
#else
      for (int k = 0; k < TILE; ++k) acc[k] = 0.f;
      for (; j < e; ++j) {
        const float v = vals[j];
        const float* p = xb + (int64_t)cols[j] * TILE;
        for (int k = 0; k < TILE; ++k) acc[k] += v * p[k];
      }
#endif
      float* o = out + t * TILE * ldo + r;
      for (int64_t k = 0; k < nb; ++k) o[k * ldo] = acc[k];
    }
  }
}

/* grad[dst[j]] = sum_n g[n, rows[j]] * x[n, c] for the kept entries j of each column c, from the tiles
   of g ([R] per tile) and x ([C] per tile); dst[j] is the entry's position in the dense [R, C] gradient,
   whose other entries the caller zeroes. Threads take tiles; partial holds nt * nnz zeros. */
void sbrnn_sddmm(const int64_t* restrict colptr, const int32_t* restrict rows, const int64_t* restrict dst,
                 int64_t C, const float* restrict gt, int64_t R, const float* restrict xt, int64_t N,
                 int64_t nnz, float* restrict grad, float* restrict partial, int nt) {
  const int64_t tiles = (N + TILE - 1) / TILE;
  if (nt > tiles) nt = (int)tiles;
  if (nt < 1) nt = 1;
  #pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int me = omp_get_thread_num();
#else
    const int me = 0;
#endif
    float* restrict mine = partial + (int64_t)me * nnz;
    #pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const float* restrict gb = gt + t * R * TILE;
      const float* restrict xb = xt + t * C * TILE;
      for (int64_t c = 0; c < C; ++c) {
        const float* restrict xc = xb + c * TILE;
#ifdef SBRNN_AVX2
        const __m256 x0 = _mm256_loadu_ps(xc), x1 = _mm256_loadu_ps(xc + 8);
        const __m256 x2 = _mm256_loadu_ps(xc + 16), x3 = _mm256_loadu_ps(xc + 24);
#endif
        for (int64_t j = colptr[c]; j < colptr[c + 1]; ++j) {
          const float* restrict gr = gb + (int64_t)rows[j] * TILE;
#ifdef SBRNN_AVX2
          __m256 a = _mm256_mul_ps(_mm256_loadu_ps(gr), x0);
          __m256 b = _mm256_mul_ps(_mm256_loadu_ps(gr + 8), x1);
          a = _mm256_fmadd_ps(_mm256_loadu_ps(gr + 16), x2, a);
          b = _mm256_fmadd_ps(_mm256_loadu_ps(gr + 24), x3, b);
          a = _mm256_add_ps(a, b);
          __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
          h = _mm_add_ps(h, _mm_movehl_ps(h, h));
          h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
          mine[j] += _mm_cvtss_f32(h);
#else
          float s = 0.f;
          for (int k = 0; k < TILE; ++k) s += gr[k] * xc[k];
          mine[j] += s;
#endif
        }
      }
    }
  }
  #pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t j = 0; j < nnz; ++j) {
    float s = 0.f;
    for (int i = 0; i < nt; ++i) s += partial[(int64_t)i * nnz + j];
    grad[dst[j]] = s;
  }
}
"""

_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c99")
_ERROR: list[str] = []

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


def _library_path(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = "\n".join([_SOURCE, " ".join(_FLAGS), version, platform.machine(), _cpu_flags()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "kernels" / f"sparse_x-{digest}.so"


def _build(compiler: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        source = Path(tmp) / "sparse_x.c"
        source.write_text(_SOURCE)
        target = Path(tmp) / path.name
        done = subprocess.run(
            [compiler, *_FLAGS, str(source), "-o", str(target)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-500:]}")
        os.replace(target, path)  # atomic: a concurrent process sees the old file or the whole new one


@functools.lru_cache(maxsize=1)
def kernels() -> ctypes.CDLL | None:
    """The compiled kernels (built on first use, then cached on disk); None where unavailable."""
    compiler = _compiler()
    if compiler is None:
        _ERROR.append("no C compiler found (set CC or install gcc)")
        return None
    try:
        path = _library_path(compiler)
        if not path.is_file():
            _build(compiler, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _ERROR.append(f"sparse x kernels unavailable: {exc}")
        return None
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.sbrnn_tiles.argtypes = [p, i64, i64, i64, p, i32]
    lib.sbrnn_spmm.argtypes = [p, p, p, i64, p, i64, i64, p, i64, i32]
    lib.sbrnn_sddmm.argtypes = [p, p, p, i64, p, i64, p, i64, i64, p, p, i32]
    for fn in (lib.sbrnn_tiles, lib.sbrnn_spmm, lib.sbrnn_sddmm):
        fn.restype = None
    return lib


def kernel_error() -> str | None:
    """Why :func:`kernels` returned None (None when it did not)."""
    return _ERROR[-1] if _ERROR else None


@dataclass(frozen=True, eq=False)
class SparsePattern:
    """The kept entries of a ``[R, C]`` 0/1 mask, indexed both ways.

    Attributes:
        shape: ``(R, C)``.
        flat: ``[nnz]`` int64 positions ``r * C + c`` in row-major order (CSR order), for
            gathering the kept values of a dense ``[R, C]`` weight.
        indptr: ``[R + 1]`` int64 row pointers; cols: ``[nnz]`` int32 column of each entry.
        colptr: ``[C + 1]`` int64 column pointers; rows: ``[nnz]`` int32 row of each entry in
            column order; colflat: ``[nnz]`` int64 position ``r * C + c`` of each entry in column
            order (where the weight gradient lands).
    """

    shape: tuple[int, int]
    flat: torch.Tensor
    indptr: torch.Tensor
    cols: torch.Tensor
    colptr: torch.Tensor
    rows: torch.Tensor
    colflat: torch.Tensor

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> SparsePattern:
        """The pattern of the nonzeros of a 2-D ``mask`` (any device; indices live on the CPU)."""
        mask = mask.detach().to("cpu") != 0
        n_rows, n_cols = mask.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)
        row, col = flat // n_cols, flat % n_cols
        indptr = torch.zeros(n_rows + 1, dtype=torch.int64)
        indptr[1:] = torch.bincount(row, minlength=n_rows).cumsum(0)
        pos = torch.argsort(col * n_rows + row)
        colptr = torch.zeros(n_cols + 1, dtype=torch.int64)
        colptr[1:] = torch.bincount(col, minlength=n_cols).cumsum(0)
        return cls(
            shape=(n_rows, n_cols), flat=flat, indptr=indptr, cols=col.to(torch.int32),
            colptr=colptr, rows=row[pos].to(torch.int32).contiguous(), colflat=flat[pos].contiguous(),
        )

    @property
    def nnz(self) -> int:
        return self.flat.numel()

    @property
    def density(self) -> float:
        """Kept entries over all entries."""
        return self.nnz / max(1, self.shape[0] * self.shape[1])


TILE = 32
"""Inputs per tile of the kernels' tile-major layout (must match the C source)."""


def _tiles(a: torch.Tensor) -> torch.Tensor:
    """``a [N, C]`` (unit column stride) -> tile-major ``[ceil(N / 32), C, 32]``, zero-padded."""
    if a.stride(1) != 1:
        a = a.contiguous()
    n, c = a.shape
    out = a.new_empty(-(-n // TILE), c, TILE)
    kernels().sbrnn_tiles(a.data_ptr(), n, c, a.stride(0), out.data_ptr(), torch.get_num_threads())
    return out


class SparseXProduct(torch.autograd.Function):
    """``weight [R, C], x [N, C] -> x W^T [N, R]`` over the kept entries of ``pattern`` only.

    The gradient of ``weight`` is dense ``[R, C]`` with zeros off the pattern; ``x`` gets none.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, weight: torch.Tensor, x: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
        n, n_cols = x.shape
        n_rows = pattern.shape[0]
        values = weight.detach().reshape(-1)[pattern.flat]  # kept entries in CSR order
        x_tiles = _tiles(x)
        out = x.new_empty(n, n_rows)
        kernels().sbrnn_spmm(
            pattern.indptr.data_ptr(), pattern.cols.data_ptr(), values.data_ptr(), n_rows,
            x_tiles.data_ptr(), n, n_cols, out.data_ptr(), n_rows, torch.get_num_threads(),
        )
        ctx.pattern = pattern
        ctx.save_for_backward(x_tiles)
        ctx.n = n
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out: torch.Tensor):
        (x_tiles,) = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        n, (n_rows, n_cols) = ctx.n, pattern.shape
        threads = torch.get_num_threads()
        g_tiles = _tiles(grad_out.float())
        grad = grad_out.new_zeros(n_rows, n_cols, dtype=torch.float32)
        partial = grad.new_zeros(threads, pattern.nnz)
        kernels().sbrnn_sddmm(
            pattern.colptr.data_ptr(), pattern.rows.data_ptr(), pattern.colflat.data_ptr(), n_cols,
            g_tiles.data_ptr(), n_rows, x_tiles.data_ptr(), n, pattern.nnz, grad.data_ptr(),
            partial.data_ptr(), threads,
        )
        return grad, None, None


def sparse_x_product(x: torch.Tensor, weight: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """``x [..., C]`` (fp32, CPU, no gradient) times ``W^T`` over ``pattern``'s entries -> ``[..., R]``.

    ``weight [R, C]`` is read at the kept entries only (entries off the pattern count as 0); its
    gradient is written at kept entries, zero elsewhere.
    """
    if x.requires_grad:
        raise ValueError("the sparse x path gives no gradient for its input; use the masked-dense form")
    lead = x.shape[:-1]
    out = SparseXProduct.apply(weight, x.reshape(-1, x.shape[-1]).contiguous(), pattern)
    return out.reshape(*lead, pattern.shape[0])
