/* The compiled CPU kernels of sbrnn (built and loaded by kernels.py).

   Sparse x path (sparse_ops.py): the input projection over the kept entries of a block, reading the
   input in a tile-major layout (TILE inputs of every column contiguous). Recurrence
   (recurrence.py): the per-step products [B, R] x [R, R] of the recurrence with the activation and
   its derivative fused, all steps in one call. AVX2/FMA where the compiler targets them, plain
   loops elsewhere; OpenMP over the caller's thread count. Every kernel trusts its arguments: the
   torch ops of kernels.py check dtypes, sizes, contiguity and index ranges before calling one, and
   read the layout constants (TILE, NR) from sbrnn_tile and sbrnn_block_columns. */
#include <math.h>
#include <stddef.h>
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

/* The lane sums of a0..a3, in that order. */
static inline __m128 lane_sums4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

/* out[k] = sum_c v0[c] xb[c, k] and the same for v1 (two rows that keep every column), k < 8 NV. */
static inline void dense_rows2(const float* restrict v0, const float* restrict v1, const float* restrict xb,
                               int64_t C, float* restrict out0, float* restrict out1, const int nv) {
  __m256 a[4], b[4];
  for (int v = 0; v < 4; ++v) a[v] = b[v] = _mm256_setzero_ps();
  for (int64_t c = 0; c < C; ++c) {
    const float* p = xb + c * TILE;
    const __m256 s = _mm256_broadcast_ss(v0 + c), w = _mm256_broadcast_ss(v1 + c);
    for (int v = 0; v < nv; ++v) {
      const __m256 x = _mm256_loadu_ps(p + 8 * v);
      a[v] = _mm256_fmadd_ps(s, x, a[v]);
      b[v] = _mm256_fmadd_ps(w, x, b[v]);
    }
  }
  for (int v = 0; v < nv; ++v) {
    _mm256_storeu_ps(out0 + 8 * v, a[v]);
    _mm256_storeu_ps(out1 + 8 * v, b[v]);
  }
}

/* acc[k] = sum_{j in [j, e)} vals[j] xb[cols[j], k] for k < 8 NV: one sparse row of a tile, two
   entries at a time, the columns PREFETCH entries ahead fetched (last: the pattern's last entry). */
static inline void sparse_row(const int32_t* restrict cols, const float* restrict vals, int64_t j, int64_t e,
                              int64_t last, const float* restrict xb, float* restrict acc, const int nv) {
  __m256 a[4], b[4];
  for (int v = 0; v < 4; ++v) a[v] = b[v] = _mm256_setzero_ps();
  for (; j + 1 < e; j += 2) {
    const int64_t j0 = j + PREFETCH < last ? j + PREFETCH : last, j1 = j0 + 1 < last ? j0 + 1 : last;
    const char* ahead = (const char*)(xb + (int64_t)cols[j0] * TILE);
    _mm_prefetch(ahead, _MM_HINT_T0);
    if (nv > 2) _mm_prefetch(ahead + 64, _MM_HINT_T0);
    ahead = (const char*)(xb + (int64_t)cols[j1] * TILE);
    _mm_prefetch(ahead, _MM_HINT_T0);
    if (nv > 2) _mm_prefetch(ahead + 64, _MM_HINT_T0);
    const float* p = xb + (int64_t)cols[j] * TILE;
    const float* q = xb + (int64_t)cols[j + 1] * TILE;
    const __m256 s = _mm256_broadcast_ss(vals + j), w = _mm256_broadcast_ss(vals + j + 1);
    for (int v = 0; v < nv; ++v) {
      a[v] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * v), a[v]);
      b[v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(q + 8 * v), b[v]);
    }
  }
  if (j < e) {
    const float* p = xb + (int64_t)cols[j] * TILE;
    const __m256 s = _mm256_broadcast_ss(vals + j);
    for (int v = 0; v < nv; ++v) a[v] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * v), a[v]);
  }
  for (int v = 0; v < nv; ++v) _mm256_storeu_ps(acc + 8 * v, _mm256_add_ps(a[v], b[v]));
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
   Rows that keep every column are taken two at a time, each loaded column serving both. A tile of
   at most TILE / 2 rows (the last of a batch) reads the first half of each column only. */
static void tile_product(const int64_t* restrict indptr, const int32_t* restrict cols,
                         const float* restrict vals, const float* restrict bias, int64_t R,
                         const float* restrict xb, int64_t nb, int64_t C, float* restrict o, int64_t ldo) {
#ifdef SBRNN_AVX2
  const int half = 2 * nb <= TILE;
  const int64_t last = indptr[R] - 1;
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
      if (half) dense_rows2(vals + indptr[waiting], vals + j, xb, C, first, acc, 2);
      else dense_rows2(vals + indptr[waiting], vals + j, xb, C, first, acc, 4);
      for (int64_t k = 0; k < nb; ++k) o[k * ldo + waiting] = first[k] + bias[waiting];
      waiting = -1;
    } else if (half) {
      sparse_row(cols, vals, j, e, last, xb, acc, 2);
    } else {
      sparse_row(cols, vals, j, e, last, xb, acc, 4);
    }
#else
    for (int k = 0; k < nb; ++k) acc[k] = 0.f;
    for (; j < e; ++j) {
      const float v = vals[j];
      const float* p = xb + (int64_t)cols[j] * TILE;
      for (int k = 0; k < nb; ++k) acc[k] += v * p[k];
    }
#endif
    for (int64_t k = 0; k < nb; ++k) o[k * ldo + r] = acc[k] + bias[r];
  }
#ifdef SBRNN_AVX2
  if (waiting >= 0) {  /* an odd one out: paired with itself */
    float acc[TILE], same[TILE];
    if (half) dense_rows2(vals + indptr[waiting], vals + indptr[waiting], xb, C, acc, same, 2);
    else dense_rows2(vals + indptr[waiting], vals + indptr[waiting], xb, C, acc, same, 4);
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

#ifdef SBRNN_AVX2
/* sum over k of g[k] x_k[k] for one tile column x (NV registers) and a row g of 8 NV: 8 lanes left.
   NV = 4 covers a tile; 2 its first half (a last tile of at most TILE / 2 rows). */
static inline __m256 dot_tile(const float* g, const __m256* x, const int nv) {
  __m256 a = _mm256_mul_ps(_mm256_loadu_ps(g), x[0]);
  for (int v = 1; v < nv; ++v) a = _mm256_fmadd_ps(_mm256_loadu_ps(g + 8 * v), x[v], a);
  return a;
}

/* mine[j] += sum_k gb[rows[j], k] xc[k] over k < 8 NV for the entries j in [j, e) of one column
   (xc: the column in a tile; gb: g's tile), 8 (then 4) entries at a time, reduced together. */
static inline void column_sums(const int32_t* restrict rows, int64_t j, int64_t e, const float* restrict gb,
                               const float* restrict xc, float* restrict mine, const int nv) {
  __m256 x[4];
  for (int v = 0; v < nv; ++v) x[v] = _mm256_loadu_ps(xc + 8 * v);
#define SBRNN_DOT(i) dot_tile(gb + (int64_t)rows[j + (i)] * TILE, x, nv)
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
    _mm_storeu_ps(s, lane_sums4(dot_tile(g0, x, nv), dot_tile(g1, x, nv), dot_tile(g2, x, nv),
                                _mm256_setzero_ps()));
    for (int64_t i = 0; i < left; ++i) mine[j + i] += s[i];
  }
}
#endif

/* grad[dst[j]] = sum_n g[n, rows[j]] * x[n, c] for the kept entries j of each column c, from the
   tiles of g ([R] per tile) and x ([C] per tile; zero past row N); dst[j] is the entry's position
   in grad (its CSR position: the gradient of a compact map's kept values; entries no dst names are
   left as the caller set them). Threads take tiles, each summing into its nnz floats of partial
   (nt * nnz; each thread that runs zeroes its own slice, and only the slices of the threads OpenMP
   granted are summed). A last tile of at most TILE / 2 rows reads half of each column. */
void sbrnn_sddmm(const int64_t* restrict colptr, const int32_t* restrict rows, const int64_t* restrict dst,
                 int64_t C, const float* restrict gt, int64_t R, const float* restrict xt, int64_t N,
                 int64_t nnz, float* restrict grad, float* restrict partial, int nt) {
  const int64_t tiles = (N + TILE - 1) / TILE;
  if (nt > tiles) nt = (int)tiles;
  if (nt < 1) nt = 1;
  int ran = 1; /* threads OpenMP granted (OMP_THREAD_LIMIT, OMP_DYNAMIC, nesting may give fewer than nt) */
  #pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int me = omp_get_thread_num();
    #pragma omp single
    ran = omp_get_num_threads();
#else
    const int me = 0;
#endif
    float* restrict mine = partial + (int64_t)me * nnz;
    for (int64_t j = 0; j < nnz; ++j) mine[j] = 0.f;
    #pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const float* restrict gb = gt + t * R * TILE;
      const float* restrict xb = xt + t * C * TILE;
#ifdef SBRNN_AVX2
      const int half = 2 * (N - t * TILE) <= TILE;
#endif
      for (int64_t c = 0; c < C; ++c) {
        const float* restrict xc = xb + c * TILE;
#ifdef SBRNN_AVX2
        if (half) column_sums(rows, colptr[c], colptr[c + 1], gb, xc, mine, 2);
        else column_sums(rows, colptr[c], colptr[c + 1], gb, xc, mine, 4);
#else
        for (int64_t j = colptr[c]; j < colptr[c + 1]; ++j) {
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
    for (int i = 0; i < ran; ++i) s += partial[(int64_t)i * nnz + j];  /* only the slices that ran */
    grad[dst[j]] = s;
  }
}

/* ---- The recurrence (see recurrence.py): small products [B, R] x [R, R] with fused epilogues. ---- */

#define MR 4  /* rows of a product block */
#define NR 24 /* columns of a product block (3 vectors of 8) */

/* The layout constants, read by kernels.py (stated here only): rows of a tile of the tile-major
   layout, and the columns the recurrence's maps are padded to a multiple of. */
int64_t sbrnn_tile(void) { return TILE; }
int64_t sbrnn_block_columns(void) { return NR; }

/* acc[i][0 .. NR) = sum_k a[i, k] b[k, n0 + ..] for the MR rows a + i*lda (row i clamped to rows - 1);
   b is [K, ldb] with ldb >= n0 + NR (zero columns past the matrix). */
static inline void block_product(const float* restrict a, int64_t lda, int64_t rows, const float* restrict b,
                                 int64_t ldb, int64_t K, float acc[MR][NR]) {
  const float* r0 = a;
  const float* r1 = a + (rows > 1 ? 1 : 0) * lda;
  const float* r2 = a + (rows > 2 ? 2 : 0) * lda;
  const float* r3 = a + (rows > 3 ? 3 : 0) * lda;
#ifdef SBRNN_AVX2
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = b + k * ldb;
    const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8), b2 = _mm256_loadu_ps(bk + 16);
    __m256 v = _mm256_broadcast_ss(r0 + k);
    c00 = _mm256_fmadd_ps(v, b0, c00); c01 = _mm256_fmadd_ps(v, b1, c01); c02 = _mm256_fmadd_ps(v, b2, c02);
    v = _mm256_broadcast_ss(r1 + k);
    c10 = _mm256_fmadd_ps(v, b0, c10); c11 = _mm256_fmadd_ps(v, b1, c11); c12 = _mm256_fmadd_ps(v, b2, c12);
    v = _mm256_broadcast_ss(r2 + k);
    c20 = _mm256_fmadd_ps(v, b0, c20); c21 = _mm256_fmadd_ps(v, b1, c21); c22 = _mm256_fmadd_ps(v, b2, c22);
    v = _mm256_broadcast_ss(r3 + k);
    c30 = _mm256_fmadd_ps(v, b0, c30); c31 = _mm256_fmadd_ps(v, b1, c31); c32 = _mm256_fmadd_ps(v, b2, c32);
  }
  _mm256_storeu_ps(acc[0], c00); _mm256_storeu_ps(acc[0] + 8, c01); _mm256_storeu_ps(acc[0] + 16, c02);
  _mm256_storeu_ps(acc[1], c10); _mm256_storeu_ps(acc[1] + 8, c11); _mm256_storeu_ps(acc[1] + 16, c12);
  _mm256_storeu_ps(acc[2], c20); _mm256_storeu_ps(acc[2] + 8, c21); _mm256_storeu_ps(acc[2] + 16, c22);
  _mm256_storeu_ps(acc[3], c30); _mm256_storeu_ps(acc[3] + 8, c31); _mm256_storeu_ps(acc[3] + 16, c32);
#else
  const float* r[MR] = {r0, r1, r2, r3};
  for (int i = 0; i < MR; ++i)
    for (int n = 0; n < NR; ++n) acc[i][n] = 0.f;
  for (int64_t k = 0; k < K; ++k)
    for (int i = 0; i < MR; ++i)
      for (int n = 0; n < NR; ++n) acc[i][n] += r[i][k] * b[k * ldb + n];
#endif
}

/* The block blk of K maps x (B / MR) row blocks x (R / NR) column blocks: map k, rows m0.., columns
   n0.. (rows fastest within a map, so one column panel of its W stays in L1). */
static inline void block_of(int64_t blk, int64_t mb, int64_t nb, int64_t* k, int64_t* m0, int64_t* n0) {
  *k = blk / (mb * nb);
  const int64_t rest = blk % (mb * nb);
  *m0 = (rest % mb) * MR;
  *n0 = (rest / mb) * NR;
}

/* Product block blk of one step of K maps: acc = a_k[m0 .., :] w_k[:, n0 ..] for a [K, B, R] (all
   zero when a is NULL: the step with no predecessor) and w stacked [K, R, ldw]; sets the block's
   map k, first row m0 and column n0, and its row and column counts (short at the edges). */
static inline void step_block(int64_t blk, int64_t B, int64_t R, const float* a, const float* w, int64_t ldw,
                              float acc[MR][NR], int64_t* k, int64_t* m0, int64_t* n0, int64_t* rows,
                              int64_t* cols) {
  block_of(blk, (B + MR - 1) / MR, (R + NR - 1) / NR, k, m0, n0);
  *rows = B - *m0 < MR ? B - *m0 : MR;
  *cols = R - *n0 < NR ? R - *n0 : NR;
  if (a == NULL) {
    for (int i = 0; i < MR; ++i)
      for (int n = 0; n < NR; ++n) acc[i][n] = 0.f;
  } else {
    block_product(a + (*k * B + *m0) * R, R, *rows, w + *k * R * ldw + *n0, ldw, R, acc);
  }
}

/* Forward of K independent maps: states[t + 1, k] = act_h(p[k, :, t] + states[t, k] W_k^T) for
   t < T; states [T + 1, K, B, R] with states[0] = 0 written here; p [K, B, T, R]; wt = W_k^T
   stacked [K, R, ldw] (ldw >= R rounded up to NR, zero columns past R); act 0 = relu, 1 = tanh on
   the first h columns. */
void sbrnn_recurrence_forward(const float* restrict p, const float* restrict wt, int64_t ldw, int64_t K,
                              int64_t B, int64_t T, int64_t R, int64_t h, int act, float* restrict states,
                              int nt) {
  for (int64_t i = 0; i < K * B * R; ++i) states[i] = 0.f;
  const int64_t mb = (B + MR - 1) / MR, nb = (R + NR - 1) / NR;
  #pragma omp parallel num_threads(nt)
  for (int64_t t = 0; t < T; ++t) {
    #pragma omp for schedule(static)
    for (int64_t blk = 0; blk < K * mb * nb; ++blk) {
      int64_t k, m0, n0, rows, cols;
      float acc[MR][NR];
      step_block(blk, B, R, t ? states + t * K * B * R : NULL, wt, ldw, acc, &k, &m0, &n0, &rows, &cols);
      for (int64_t i = 0; i < rows; ++i) {
        const float* restrict pi = p + ((k * B + m0 + i) * T + t) * R + n0;
        float* restrict out = states + (((t + 1) * K + k) * B + m0 + i) * R + n0;
        int64_t n = 0;
#ifdef SBRNN_AVX2
        if (act == 0) {  /* relu on columns < h, 8 at a time */
          for (; n + 8 <= cols; n += 8) {
            const __m256 a = _mm256_add_ps(_mm256_loadu_ps(pi + n), _mm256_loadu_ps(acc[i] + n));
            const __m256 linear = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                _mm256_add_epi32(_mm256_set1_epi32((int)(n0 + n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                _mm256_set1_epi32((int)h - 1)));
            _mm256_storeu_ps(out + n, _mm256_blendv_ps(_mm256_max_ps(a, _mm256_setzero_ps()), a, linear));
          }
        }
#endif
        for (; n < cols; ++n) {
          const float a = pi[n] + acc[i][n];
          out[n] = n0 + n >= h ? a : act == 0 ? (a > 0.f ? a : 0.f) : tanhf(a);
        }
      }
    }
  }
}

/* Backward of K maps: grad_a[t, k] = ds_t * act'(a_t) on the first h columns, ds_t + dy_t on the
   others, where ds_t = grad_a[t + 1, k] W_k (0 for the last step); states as the forward wrote
   them (act' from s_t: relu 1 where s_t > 0, tanh 1 - s_t^2); gy [K, B, T, R - h]; w = W_k stacked
   [K, R, ldw] (zero columns past R); grad_a [T, K, B, R]. */
void sbrnn_recurrence_backward(const float* restrict states, const float* restrict gy,
                               const float* restrict w, int64_t ldw, int64_t K, int64_t B, int64_t T,
                               int64_t R, int64_t h, int act, float* restrict grad_a, int nt) {
  const int64_t mb = (B + MR - 1) / MR, nb = (R + NR - 1) / NR, ny = R - h;
  #pragma omp parallel num_threads(nt)
  for (int64_t t = T - 1; t >= 0; --t) {
    #pragma omp for schedule(static)
    for (int64_t blk = 0; blk < K * mb * nb; ++blk) {
      int64_t k, m0, n0, rows, cols;
      float acc[MR][NR];
      const float* next = t < T - 1 ? grad_a + (t + 1) * K * B * R : NULL; /* ds_t = da_{t+1} W */
      step_block(blk, B, R, next, w, ldw, acc, &k, &m0, &n0, &rows, &cols);
      for (int64_t i = 0; i < rows; ++i) {
        const float* restrict si = states + (((t + 1) * K + k) * B + m0 + i) * R;
        const float* restrict gi = gy + ((k * B + m0 + i) * T + t) * ny;
        float* restrict out = grad_a + ((t * K + k) * B + m0 + i) * R;
        int64_t n = n0;
#ifdef SBRNN_AVX2
        if (act == 0) {  /* columns < h: d where s > 0, else 0 */
          for (; n + 8 <= n0 + cols && n + 8 <= h; n += 8) {
            const __m256 keep = _mm256_cmp_ps(_mm256_loadu_ps(si + n), _mm256_setzero_ps(), _CMP_GT_OQ);
            _mm256_storeu_ps(out + n, _mm256_and_ps(_mm256_loadu_ps(acc[i] + n - n0), keep));
          }
        }
#endif
        for (; n < n0 + cols; ++n) {
          const float d = acc[i][n - n0];
          out[n] = n >= h ? d + gi[n - h] : act == 0 ? (si[n] > 0.f ? d : 0.f) : d * (1.f - si[n] * si[n]);
        }
      }
    }
  }
}
