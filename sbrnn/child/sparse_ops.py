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
hundred kB: cache-friendly gathers of kept columns). The forward transposes each tile and uses it
while it is still in cache (keeping the tiles for the gradient) and adds the bias; rows that keep
every column (a dense ``W_yx``) go two at a time, each loaded column serving both; the gradient
reduces a column's entries eight at a time. They run in a small C kernel (AVX2/FMA where the CPU
has them, plain loops elsewhere, OpenMP over torch's thread count),
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
#define PREFETCH 16 /* entries ahead: the gathered columns of a sparse row come from L2 */

#ifdef SBRNN_AVX2
/* Store the transpose of the 8 x 8 block of rows r0..r7 as 8 rows of dst, stride apart. */
static inline void transpose8(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4, __m256 r5, __m256 r6,
                              __m256 r7, float* dst, int64_t stride) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + stride, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * stride, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * stride, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * stride, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * stride, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * stride, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * stride, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* sum over k of g[k] x_k[k] for one tile column x (4 registers) and a row g of 32: 8 lanes left. */
static inline __m256 dot_tile(const float* g, __m256 x0, __m256 x1, __m256 x2, __m256 x3) {
  __m256 a = _mm256_mul_ps(_mm256_loadu_ps(g), x0);
  a = _mm256_fmadd_ps(_mm256_loadu_ps(g + 8), x1, a);
  a = _mm256_fmadd_ps(_mm256_loadu_ps(g + 16), x2, a);
  return _mm256_fmadd_ps(_mm256_loadu_ps(g + 24), x3, a);
}

/* The lane sums of a0..a3, in that order. */
static inline __m128 lane_sums4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

/* out[k] = sum_c v0[c] xb[c, k] and the same for v1 (two rows that keep every column), k < 32. */
static inline void dense_rows2(const float* restrict v0, const float* restrict v1, const float* restrict xb,
                               int64_t C, float* restrict out0, float* restrict out1) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (int64_t c = 0; c < C; ++c) {
    const float* p = xb + c * TILE;
    const __m256 x0 = _mm256_loadu_ps(p), x1 = _mm256_loadu_ps(p + 8);
    const __m256 x2 = _mm256_loadu_ps(p + 16), x3 = _mm256_loadu_ps(p + 24);
    const __m256 v = _mm256_broadcast_ss(v0 + c), w = _mm256_broadcast_ss(v1 + c);
    a0 = _mm256_fmadd_ps(v, x0, a0); a1 = _mm256_fmadd_ps(v, x1, a1);
    a2 = _mm256_fmadd_ps(v, x2, a2); a3 = _mm256_fmadd_ps(v, x3, a3);
    b0 = _mm256_fmadd_ps(w, x0, b0); b1 = _mm256_fmadd_ps(w, x1, b1);
    b2 = _mm256_fmadd_ps(w, x2, b2); b3 = _mm256_fmadd_ps(w, x3, b3);
  }
  _mm256_storeu_ps(out0, a0); _mm256_storeu_ps(out0 + 8, a1);
  _mm256_storeu_ps(out0 + 16, a2); _mm256_storeu_ps(out0 + 24, a3);
  _mm256_storeu_ps(out1, b0); _mm256_storeu_ps(out1 + 8, b1);
  _mm256_storeu_ps(out1 + 16, b2); _mm256_storeu_ps(out1 + 24, b3);
}
#endif

/* Tile t of the tile-major layout: block[c*TILE + k] = x[(t*TILE + k)*ld + c], zero past row N. */
static void tile_of(const float* restrict x, int64_t N, int64_t C, int64_t ld, int64_t t,
                    float* restrict block) {
  const int64_t nb = N - t * TILE < TILE ? N - t * TILE : TILE;
  int64_t c0 = 0;
#ifdef SBRNN_AVX2
  if (nb == TILE) {  /* 8 x 8 blocks in registers */
    for (; c0 + 8 <= C; c0 += 8) {
      for (int64_t k = 0; k < TILE; k += 8) {
        const float* r = x + (t * TILE + k) * ld + c0;
        transpose8(_mm256_loadu_ps(r), _mm256_loadu_ps(r + ld), _mm256_loadu_ps(r + 2 * ld),
                   _mm256_loadu_ps(r + 3 * ld), _mm256_loadu_ps(r + 4 * ld), _mm256_loadu_ps(r + 5 * ld),
                   _mm256_loadu_ps(r + 6 * ld), _mm256_loadu_ps(r + 7 * ld), block + c0 * TILE + k, TILE);
      }
    }
  }
#endif
  for (int64_t k = 0; k < TILE; ++k) {
    const float* restrict row = x + (t * TILE + k) * ld;
    for (int64_t c = c0; c < C; ++c) block[c * TILE + k] = k < nb ? row[c] : 0.f;
  }
}

/* Tile-major transpose of all of x [N, C] (row stride ld): xt[(t*C + c)*TILE + k] = x[t*TILE + k, c]. */
void sbrnn_tiles(const float* restrict x, int64_t N, int64_t C, int64_t ld, float* restrict xt, int nt) {
  const int64_t tiles = (N + TILE - 1) / TILE;
  #pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) tile_of(x, N, C, ld, t, xt + t * C * TILE);
}

/* o[k*ldo + r] = bias[r] + sum_{j in row r} vals[j] * xb[cols[j], k] for the nb rows k of one tile xb.
   Rows that keep every column are taken two at a time, each loaded column serving both. */
static void tile_product(const int64_t* restrict indptr, const int32_t* restrict cols,
                         const float* restrict vals, const float* restrict bias, int64_t R,
                         const float* restrict xb, int64_t nb, int64_t C, float* restrict o, int64_t ldo) {
#ifdef SBRNN_AVX2
  int64_t waiting = -1; /* a row keeping every column, waiting for a second one */
#endif
  for (int64_t r = 0; r < R; ++r) {
    float acc[TILE];
    int64_t j = indptr[r];
    const int64_t e = indptr[r + 1];
#ifdef SBRNN_AVX2
    if (e - j == C) {
      if (waiting < 0) {
        waiting = r;
        continue;
      }
      float first[TILE];
      dense_rows2(vals + indptr[waiting], vals + j, xb, C, first, acc);
      for (int64_t k = 0; k < nb; ++k) o[k * ldo + waiting] = first[k] + bias[waiting];
      waiting = -1;
    } else {
      const int64_t last = indptr[R] - 1;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (; j + 1 < e; j += 2) {
        const int64_t j0 = j + PREFETCH < last ? j + PREFETCH : last, j1 = j0 + 1 < last ? j0 + 1 : last;
        const char* ahead = (const char*)(xb + (int64_t)cols[j0] * TILE);
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
        ahead = (const char*)(xb + (int64_t)cols[j1] * TILE);
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
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
    }
#else
    for (int k = 0; k < TILE; ++k) acc[k] = 0.f;
    for (; j < e; ++j) {
      const float v = vals[j];
      const float* p = xb + (int64_t)cols[j] * TILE;
      for (int k = 0; k < TILE; ++k) acc[k] += v * p[k];
    }
#endif
    for (int64_t k = 0; k < nb; ++k) o[k * ldo + r] = acc[k] + bias[r];
  }
#ifdef SBRNN_AVX2
  if (waiting >= 0) {  /* an odd one out: paired with itself */
    float acc[TILE], same[TILE];
    dense_rows2(vals + indptr[waiting], vals + indptr[waiting], xb, C, acc, same);
    for (int64_t k = 0; k < nb; ++k) o[k * ldo + waiting] = acc[k] + bias[waiting];
  }
#else
  (void)C;
#endif
}

/* out[n*ldo + r] = bias[r] + sum_{j in row r} vals[j] * x[n, cols[j]] for x [N, C] (row stride ld);
   writes the tiles of x into xt on the way (each tile is transposed, then used while in cache). */
void sbrnn_spmm(const int64_t* restrict indptr, const int32_t* restrict cols, const float* restrict vals,
                const float* restrict bias, int64_t R, const float* restrict x, int64_t N, int64_t C,
                int64_t ld, float* restrict xt, float* restrict out, int64_t ldo, int nt) {
  const int64_t tiles = (N + TILE - 1) / TILE;
  #pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    float* restrict xb = xt + t * C * TILE;
    tile_of(x, N, C, ld, t, xb);
    tile_product(indptr, cols, vals, bias, R, xb, N - t * TILE < TILE ? N - t * TILE : TILE, C,
                 out + t * TILE * ldo, ldo);
  }
}

/* grad[dst[j]] = sum_n g[n, rows[j]] * x[n, c] for the kept entries j of each column c, from the tiles
   of g ([R] per tile) and x ([C] per tile); dst[j] is the entry's position in the dense [R, C] gradient,
   whose other entries the caller zeroes. Threads take tiles, each summing into its nnz floats of
   partial (nt * nnz, zeroed here). A column's entries go 8 (then 4) at a time, their dot products
   reduced together. */
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
    for (int64_t j = 0; j < nnz; ++j) mine[j] = 0.f;
    #pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const float* restrict gb = gt + t * R * TILE;
      const float* restrict xb = xt + t * C * TILE;
      for (int64_t c = 0; c < C; ++c) {
        const float* restrict xc = xb + c * TILE;
        int64_t j = colptr[c];
        const int64_t e = colptr[c + 1];
#ifdef SBRNN_AVX2
        const __m256 x0 = _mm256_loadu_ps(xc), x1 = _mm256_loadu_ps(xc + 8);
        const __m256 x2 = _mm256_loadu_ps(xc + 16), x3 = _mm256_loadu_ps(xc + 24);
#define SBRNN_DOT(i) dot_tile(gb + (int64_t)rows[j + (i)] * TILE, x0, x1, x2, x3)
        for (; j + 8 <= e; j += 8) {
          const __m128 lo = lane_sums4(SBRNN_DOT(0), SBRNN_DOT(1), SBRNN_DOT(2), SBRNN_DOT(3));
          const __m128 hi = lane_sums4(SBRNN_DOT(4), SBRNN_DOT(5), SBRNN_DOT(6), SBRNN_DOT(7));
          _mm_storeu_ps(mine + j, _mm_add_ps(_mm_loadu_ps(mine + j), lo));
          _mm_storeu_ps(mine + j + 4, _mm_add_ps(_mm_loadu_ps(mine + j + 4), hi));
        }
        for (; j + 4 <= e; j += 4) {
          const __m128 s = lane_sums4(SBRNN_DOT(0), SBRNN_DOT(1), SBRNN_DOT(2), SBRNN_DOT(3));
          _mm_storeu_ps(mine + j, _mm_add_ps(_mm_loadu_ps(mine + j), s));
        }
#undef SBRNN_DOT
        if (j < e) {  /* 1 to 3 left: the last one repeated to fill four */
          const int64_t left = e - j;
          float s[4];
          const float* g0 = gb + (int64_t)rows[j] * TILE;
          const float* g1 = gb + (int64_t)rows[left > 1 ? j + 1 : j] * TILE;
          const float* g2 = gb + (int64_t)rows[left > 2 ? j + 2 : j] * TILE;
          _mm_storeu_ps(s, lane_sums4(dot_tile(g0, x0, x1, x2, x3), dot_tile(g1, x0, x1, x2, x3),
                                      dot_tile(g2, x0, x1, x2, x3), _mm256_setzero_ps()));
          for (int64_t i = 0; i < left; ++i) mine[j + i] += s[i];
        }
#else
        for (; j < e; ++j) {
          const float* restrict gr = gb + (int64_t)rows[j] * TILE;
          float s = 0.f;
          for (int k = 0; k < TILE; ++k) s += gr[k] * xc[k];
          mine[j] += s;
        }
#endif
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
    lib.sbrnn_spmm.argtypes = [p, p, p, p, i64, p, i64, i64, i64, p, p, i64, i32]
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


def tiles(a: torch.Tensor) -> torch.Tensor:
    """``a [N, C]`` (unit column stride) -> tile-major ``[ceil(N / 32), C, 32]``, zero-padded."""
    if a.stride(1) != 1:
        a = a.contiguous()
    n, c = a.shape
    out = a.new_empty(-(-n // TILE), c, TILE)
    kernels().sbrnn_tiles(a.data_ptr(), n, c, a.stride(0), out.data_ptr(), torch.get_num_threads())
    return out


class SparseXProduct(torch.autograd.Function):
    """``weight [R, C], bias [R], x [N, C] -> x W^T + b [N, R]`` over the kept entries of ``pattern`` only.

    The gradient of ``weight`` is dense ``[R, C]`` with zeros off the pattern; ``x`` gets none.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, pattern: SparsePattern):
        n, n_cols = x.shape
        n_rows = pattern.shape[0]
        values = weight.detach().reshape(-1).index_select(0, pattern.flat)  # kept entries in CSR order
        bias = bias.detach().contiguous()
        x_tiles = x.new_empty(-(-n // TILE), n_cols, TILE)
        out = x.new_empty(n, n_rows)
        kernels().sbrnn_spmm(
            pattern.indptr.data_ptr(), pattern.cols.data_ptr(), values.data_ptr(), bias.data_ptr(), n_rows,
            x.data_ptr(), n, n_cols, x.stride(0), x_tiles.data_ptr(), out.data_ptr(), n_rows,
            torch.get_num_threads(),
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
        grad_out = grad_out.float()
        g_tiles = tiles(grad_out)
        grad = grad_out.new_zeros(n_rows, n_cols)
        partial = grad.new_empty(threads, pattern.nnz)
        kernels().sbrnn_sddmm(
            pattern.colptr.data_ptr(), pattern.rows.data_ptr(), pattern.colflat.data_ptr(), n_cols,
            g_tiles.data_ptr(), n_rows, x_tiles.data_ptr(), n, pattern.nnz, grad.data_ptr(),
            partial.data_ptr(), threads,
        )
        grad_bias = grad_out.sum(0) if ctx.needs_input_grad[1] else None
        return grad, grad_bias, None, None


def sparse_x_product(
    x: torch.Tensor, weight: torch.Tensor, pattern: SparsePattern, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x [..., C]`` (fp32, CPU, no gradient) times ``W^T`` over ``pattern``'s entries, plus
    ``bias [R]`` (None = no bias) -> ``[..., R]``.

    ``weight [R, C]`` is read at the kept entries only (entries off the pattern count as 0); its
    gradient is written at kept entries, zero elsewhere.
    """
    if x.requires_grad:
        raise ValueError("the sparse x path gives no gradient for its input; use the masked-dense form")
    if bias is None:
        bias = weight.new_zeros(pattern.shape[0])
    lead = x.shape[:-1]
    out = SparseXProduct.apply(weight, bias, x.reshape(-1, x.shape[-1]).contiguous(), pattern)
    return out.reshape(*lead, pattern.shape[0])
