/* GEMM: C_p (M,N) = (accumulate ? C_p : 0) + op(A_p) · op(B_p), batched, fp32.
 *
 * The classic Goto/BLIS structure, written for row-major C:
 *
 *   for each MB-row block of op(A)                       A block (MB x KC) lives in L3
 *     for each KC slice of K
 *       pack op(A)[block, slice] into MR-row micro-panels  (k-major: MR values per k)
 *       for each NB-column block of op(B)                B block (KC x NB) lives in L2
 *         pack op(B)[slice, block] into NR-column micro-panels (NR values per k)
 *         for each A micro-panel                          (KC x MR, stays in L1)
 *           for each B micro-panel                        (streamed from L2)
 *             microkernel: an MR x NR tile of C in registers, KC rank-1 updates
 *
 * The microkernel broadcasts one A value per row and multiplies it by NR/16 (or NR/8) vectors of B,
 * so C's rows are vector-contiguous. All four transpose combinations are absorbed by the packing
 * routines; the microkernels only see packed panels. Panels are zero-padded to full MR/NR, so the
 * kernels never branch on edges: a partial tile is computed into a small buffer and copied out.
 *
 * Special cases: with M = 1 or N = 1 the product is a matrix-vector one, done in place without
 * packing; with a few rows (up to 4, or 8 if B is large) and a transposed B, dot products read both
 * operands in place; with a few rows (M <= 2 MR) and op(B) = B, full-width B panels are read in
 * place.
 *
 * Threads: the cores have private L2s, so each thread packs its own B blocks and computes column
 * parts of C, while the A block (in the shared L3) is packed once, by all threads together. When N
 * is too narrow to split evenly, the parts are ranges of A micro-panels instead. Parts are claimed
 * one at a time, so a thread that loses its core on a busy machine holds up one part, not its whole
 * share. Small GEMMs run on the calling thread; batches of them run whole GEMMs per thread.
 * Packing buffers are allocated once per thread and reused: steady-state calls allocate nothing. */
#include "plinth.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PL_X86 1
#endif

/* A microkernel computes a full MR x NR tile: C (+)= sum over k < kc of a[k*MR + i] * b[k*ldb + j].
 * b is a packed panel (ldb = NR) or, for the direct path, a row-major op(B) slice (ldb = N). */
typedef void (*ukernel_fn)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, bool add);

/* The largest tile of any microkernel (12 x 32), for the buffer that partial tiles go through. */
#define TILE_MAX_FLOATS (12 * 32)

typedef struct {
  int mr, nr;
  int64_t kc, mb, nb; /* cache blocking: KC (depth), MB (rows of A per block), NB (columns of B per block) */
  ukernel_fn kernel;
} gemm_isa;

/* ---- microkernels ------------------------------------------------------------------------- */

#define MR_SCALAR 4
#define NR_SCALAR 8
static void ukernel_scalar(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, bool add) {
  float acc[MR_SCALAR][NR_SCALAR] = {{0}};
  for (int64_t k = 0; k < kc; k++) {
    for (int i = 0; i < MR_SCALAR; i++)
      for (int j = 0; j < NR_SCALAR; j++) acc[i][j] += a[i] * b[j];
    a += MR_SCALAR;
    b += ldb;
  }
  for (int i = 0; i < MR_SCALAR; i++)
    for (int j = 0; j < NR_SCALAR; j++) c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

#ifdef PL_X86
#define PL_AVX2 __attribute__((target("avx2,fma")))
#define PL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* AVX2: 6 x 16 tile, 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16 registers.
 * Zen 4 issues two 256-bit FMAs per cycle with latency 4, so 12 independent chains keep both busy. */
#define MR_AVX2 6
#define NR_AVX2 16
PL_AVX2 static void ukernel_avx2(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, bool add) {
  __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a;
  __m256 c3a = c0a, c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), t;
    t = _mm256_broadcast_ss(a + 0); c0a = _mm256_fmadd_ps(t, b0, c0a); c0b = _mm256_fmadd_ps(t, b1, c0b);
    t = _mm256_broadcast_ss(a + 1); c1a = _mm256_fmadd_ps(t, b0, c1a); c1b = _mm256_fmadd_ps(t, b1, c1b);
    t = _mm256_broadcast_ss(a + 2); c2a = _mm256_fmadd_ps(t, b0, c2a); c2b = _mm256_fmadd_ps(t, b1, c2b);
    t = _mm256_broadcast_ss(a + 3); c3a = _mm256_fmadd_ps(t, b0, c3a); c3b = _mm256_fmadd_ps(t, b1, c3b);
    t = _mm256_broadcast_ss(a + 4); c4a = _mm256_fmadd_ps(t, b0, c4a); c4b = _mm256_fmadd_ps(t, b1, c4b);
    t = _mm256_broadcast_ss(a + 5); c5a = _mm256_fmadd_ps(t, b0, c5a); c5b = _mm256_fmadd_ps(t, b1, c5b);
    a += MR_AVX2;
    b += ldb;
  }
#define STORE_ROW_AVX2(r, va, vb)                                                       \
  do {                                                                                  \
    float* cr = c + (r) * ldc;                                                          \
    if (add) {                                                                          \
      va = _mm256_add_ps(va, _mm256_loadu_ps(cr));                                      \
      vb = _mm256_add_ps(vb, _mm256_loadu_ps(cr + 8));                                  \
    }                                                                                   \
    _mm256_storeu_ps(cr, va);                                                           \
    _mm256_storeu_ps(cr + 8, vb);                                                       \
  } while (0)
  STORE_ROW_AVX2(0, c0a, c0b); STORE_ROW_AVX2(1, c1a, c1b); STORE_ROW_AVX2(2, c2a, c2b);
  STORE_ROW_AVX2(3, c3a, c3b); STORE_ROW_AVX2(4, c4a, c4b); STORE_ROW_AVX2(5, c5a, c5b);
#undef STORE_ROW_AVX2
}

/* AVX-512: 12 x 32 tile, 24 zmm accumulators + 2 B vectors + broadcasts of the 32 registers.
 * Zen 4 runs a zmm FMA as two 256-bit halves (one per cycle), so 24 chains hide the latency, and
 * each k step loads 128 B of B for 24 FMAs, well inside what L2 can stream. */
#define MR_AVX512 12
#define NR_AVX512 32
PL_AVX512 static void ukernel_avx512(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, bool add) {
  __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
  __m512 c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
  __m512 c8a = c0a, c8b = c0a, c9a = c0a, c9b = c0a, c10a = c0a, c10b = c0a, c11a = c0a, c11b = c0a;
  /* the C tile is read only after the k loop; fetching its 24 lines now hides that latency */
  for (int i = 0; i < MR_AVX512; i++) {
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char*)(c + i * ldc + 16), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), t;
#define FMA_ROW_AVX512(r, va, vb)         \
  t = _mm512_set1_ps(a[r]);               \
  va = _mm512_fmadd_ps(t, b0, va);        \
  vb = _mm512_fmadd_ps(t, b1, vb)
    FMA_ROW_AVX512(0, c0a, c0b); FMA_ROW_AVX512(1, c1a, c1b); FMA_ROW_AVX512(2, c2a, c2b);
    FMA_ROW_AVX512(3, c3a, c3b); FMA_ROW_AVX512(4, c4a, c4b); FMA_ROW_AVX512(5, c5a, c5b);
    FMA_ROW_AVX512(6, c6a, c6b); FMA_ROW_AVX512(7, c7a, c7b); FMA_ROW_AVX512(8, c8a, c8b);
    FMA_ROW_AVX512(9, c9a, c9b); FMA_ROW_AVX512(10, c10a, c10b); FMA_ROW_AVX512(11, c11a, c11b);
#undef FMA_ROW_AVX512
    a += MR_AVX512;
    b += ldb;
  }
#define STORE_ROW_AVX512(r, va, vb)                                                     \
  do {                                                                                  \
    float* cr = c + (r) * ldc;                                                          \
    if (add) {                                                                          \
      va = _mm512_add_ps(va, _mm512_loadu_ps(cr));                                      \
      vb = _mm512_add_ps(vb, _mm512_loadu_ps(cr + 16));                                 \
    }                                                                                   \
    _mm512_storeu_ps(cr, va);                                                           \
    _mm512_storeu_ps(cr + 16, vb);                                                      \
  } while (0)
  STORE_ROW_AVX512(0, c0a, c0b); STORE_ROW_AVX512(1, c1a, c1b); STORE_ROW_AVX512(2, c2a, c2b);
  STORE_ROW_AVX512(3, c3a, c3b); STORE_ROW_AVX512(4, c4a, c4b); STORE_ROW_AVX512(5, c5a, c5b);
  STORE_ROW_AVX512(6, c6a, c6b); STORE_ROW_AVX512(7, c7a, c7b); STORE_ROW_AVX512(8, c8a, c8b);
  STORE_ROW_AVX512(9, c9a, c9b); STORE_ROW_AVX512(10, c10a, c10b); STORE_ROW_AVX512(11, c11a, c11b);
#undef STORE_ROW_AVX512
}
#endif

/* Blocking for Zen 4 / Zen 5 (32 / 48 KB L1d, 1 MB L2 per core, 32 MB L3):
 * KC = 320 keeps an A micro-panel (KC x MR floats: 15 KB at MR = 12) in half of L1 while B streams;
 * NB = 256 makes the B block KC x NB = 320 KB, a third of L2, leaving room for the A panels and C
 * tiles streaming through (512 measured no better, 768 worse);
 * MB = 1200 makes the A block 1.5 MB of L3 and repacks B at most once per 1200 rows. */
static const gemm_isa ISA_SCALAR = {MR_SCALAR, NR_SCALAR, 320, 1200, 256, ukernel_scalar};
#ifdef PL_X86
static const gemm_isa ISA_AVX2 = {MR_AVX2, NR_AVX2, 320, 1200, 256, ukernel_avx2};
static const gemm_isa ISA_AVX512 = {MR_AVX512, NR_AVX512, 320, 1200, 256, ukernel_avx512};
#endif

static const gemm_isa* select_isa(void) {
#ifdef PL_X86
  if (pl_cpu_avx512f()) return &ISA_AVX512;
  if (pl_cpu_avx2_fma()) return &ISA_AVX2;
#endif
  return &ISA_SCALAR;
}

/* ---- packing ---------------------------------------------------------------------------------
 * op(A) (M,K) element (i,k) is A[i*K + k], or A[k*M + i] when transposed; op(B) (K,N) element (k,j)
 * is B[k*N + j], or B[j*K + k] when transposed. A panel of width P holds, for each k, P values
 * side by side (dst[k*P + x]); the values come either from P source rows that run along k
 * (pack_rows: a transpose) or from one source row per k (pack_cols: a copy). */

/* dst[k*P + r] = src[r*ld + k] for r < rows, zero for rows <= r < P; k < kc. */
static void pack_rows(const float* src, int64_t ld, int rows, int64_t kc, int P, float* dst) {
  int r = 0;
#ifdef PL_X86
  /* 4x4 SSE transposes: four rows are read sequentially and each k gets one 16-byte store, which
   * runs near memory speed where the scalar loop spends several cycles per element */
  for (; r + 4 <= rows; r += 4) {
    const float *s0 = src + r * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 x0 = _mm_loadu_ps(s0 + k), x1 = _mm_loadu_ps(s1 + k), x2 = _mm_loadu_ps(s2 + k), x3 = _mm_loadu_ps(s3 + k);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      _mm_storeu_ps(dst + (k + 0) * P + r, x0);
      _mm_storeu_ps(dst + (k + 1) * P + r, x1);
      _mm_storeu_ps(dst + (k + 2) * P + r, x2);
      _mm_storeu_ps(dst + (k + 3) * P + r, x3);
    }
    for (; k < kc; k++) {
      dst[k * P + r] = s0[k];
      dst[k * P + r + 1] = s1[k];
      dst[k * P + r + 2] = s2[k];
      dst[k * P + r + 3] = s3[k];
    }
  }
#endif
  for (; r < rows; r++) {
    const float* s = src + r * ld;
    for (int64_t k = 0; k < kc; k++) dst[k * P + r] = s[k];
  }
  for (; r < P; r++)
    for (int64_t k = 0; k < kc; k++) dst[k * P + r] = 0.0f;
}

/* dst[k*P + x] = src[k*ld + x] for x < cols, zero for cols <= x < P; k < kc. */
static void pack_cols(const float* src, int64_t ld, int cols, int64_t kc, int P, float* dst) {
  if (cols == P) {
    for (int64_t k = 0; k < kc; k++) memcpy(dst + k * P, src + k * ld, (size_t)P * sizeof(float));
    return;
  }
  for (int64_t k = 0; k < kc; k++) {
    memcpy(dst + k * P, src + k * ld, (size_t)cols * sizeof(float));
    memset(dst + k * P + cols, 0, (size_t)(P - cols) * sizeof(float));
  }
}

/* Rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) into micro-panels of mr rows, each kc*mr floats;
 * rows past mc are zero. Only micro-panels [p0, p1) are written. */
static void pack_a(const float* A, int64_t M, int64_t K, bool ta, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                   int mr, int64_t p0, int64_t p1, float* dst) {
  for (int64_t p = p0; p < p1; p++) {
    int64_t r0 = i0 + p * mr;
    int rows = (int)(mc - p * mr < mr ? mc - p * mr : mr);
    if (ta) pack_cols(A + k0 * M + r0, M, rows, kc, mr, dst + p * kc * mr);
    else pack_rows(A + r0 * K + k0, K, rows, kc, mr, dst + p * kc * mr);
  }
}

/* Depth [k0, k0+kc) x columns [j0, j0+nc) of op(B) into micro-panels of nr columns, each kc*nr
 * floats; columns past nc are zero. */
static void pack_b(const float* B, int64_t K, int64_t N, bool tb, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   int nr, float* dst) {
  for (int64_t q = 0; q * nr < nc; q++) {
    int64_t c0 = j0 + q * nr;
    int cols = (int)(nc - q * nr < nr ? nc - q * nr : nr);
    if (tb) pack_rows(B + c0 * K + k0, K, cols, kc, nr, dst + q * kc * nr);
    else pack_cols(B + k0 * N + c0, N, cols, kc, nr, dst + q * kc * nr);
  }
}

/* ---- workspaces --------------------------------------------------------------------------------
 * One pair of packing buffers per pool thread, grown on demand and never freed: after the first
 * call of a given size, GEMMs allocate nothing. A caller that finds them in use (a second JS
 * thread calling at the same time) gets a private workspace for that call instead. */
#define WS_MAX_THREADS 256
typedef struct {
  float* a;
  size_t a_cap;
  float* b;
  size_t b_cap;
} workspace;

static workspace g_ws[WS_MAX_THREADS];
static pthread_mutex_t g_ws_lock = PTHREAD_MUTEX_INITIALIZER;

static bool ws_reserve(float** buf, size_t* cap, size_t floats) {
  if (*cap >= floats) return true;
  free(*buf);
  size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
  *buf = aligned_alloc(64, bytes);
  *cap = *buf ? floats : 0;
  return *buf != NULL;
}

/* ---- matrix-vector products ------------------------------------------------------------------
 * With M = 1 or N = 1 each element of the matrix operand is used once, so packing it would only
 * triple the memory traffic of a memory-bound product. These read it in place:
 *   y[i] (+)= sum over k < K of X(i,k) v[k], i < L,
 * where X(i,k) is x[i*ld + k] (rows along k: dot products) or x[k*ld + i] (rows along i: axpys). */

typedef void (*gemv_fn)(const float* x, int64_t ld, bool rows_along_k, const float* v, float* y, int64_t L, int64_t K,
                        bool add);

static void gemv_scalar(const float* x, int64_t ld, bool rows_along_k, const float* v, float* y, int64_t L, int64_t K,
                        bool add) {
  if (rows_along_k) {
    for (int64_t i = 0; i < L; i++) {
      const float* xi = x + i * ld;
      float s = 0.0f;
      for (int64_t k = 0; k < K; k++) s += xi[k] * v[k];
      y[i] = add ? y[i] + s : s;
    }
    return;
  }
  if (!add) memset(y, 0, (size_t)L * sizeof(float));
  for (int64_t k = 0; k < K; k++) {
    const float* xk = x + k * ld;
    float vk = v[k];
    for (int64_t i = 0; i < L; i++) y[i] += vk * xk[i];
  }
}

#ifdef PL_X86
/* Rows along i: four rows of x at a time (one pass over y per four), vectorised across i. */
#define GEMV_AXPY_BODY(VEC, LOAD, STORE, SET1, FMA, W)                                            \
  if (!add) memset(y, 0, (size_t)L * sizeof(float));                                               \
  int64_t k = 0;                                                                                   \
  for (; k + 4 <= K; k += 4) {                                                                     \
    const float *x0 = x + k * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;                     \
    VEC v0 = SET1(v[k]), v1 = SET1(v[k + 1]), v2 = SET1(v[k + 2]), v3 = SET1(v[k + 3]);            \
    int64_t i = 0;                                                                                 \
    for (; i + W <= L; i += W) {                                                                   \
      VEC t = FMA(v0, LOAD(x0 + i), LOAD(y + i));                                                  \
      t = FMA(v1, LOAD(x1 + i), t);                                                                \
      t = FMA(v2, LOAD(x2 + i), t);                                                                \
      STORE(y + i, FMA(v3, LOAD(x3 + i), t));                                                      \
    }                                                                                              \
    for (; i < L; i++) y[i] += v[k] * x0[i] + v[k + 1] * x1[i] + v[k + 2] * x2[i] + v[k + 3] * x3[i]; \
  }                                                                                                \
  for (; k < K; k++) {                                                                             \
    const float* xk = x + k * ld;                                                                  \
    for (int64_t i = 0; i < L; i++) y[i] += v[k] * xk[i];                                          \
  }

PL_AVX512 static void gemv_avx512(const float* x, int64_t ld, bool rows_along_k, const float* v, float* y, int64_t L,
                                  int64_t K, bool add) {
  if (rows_along_k) {
    /* four dot products at a time, each over 16 lanes, with a masked tail */
    int64_t i = 0;
    for (; i < L; i += 4) {
      int n = L - i < 4 ? (int)(L - i) : 4;
      const float* xr[4];
      for (int r = 0; r < 4; r++) xr[r] = x + (i + (r < n ? r : 0)) * ld;
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t k = 0; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 vk = _mm512_maskz_loadu_ps(m, v + k);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr[0] + k), vk, s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr[1] + k), vk, s1);
        s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr[2] + k), vk, s2);
        s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr[3] + k), vk, s3);
      }
      float s[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1), _mm512_reduce_add_ps(s2), _mm512_reduce_add_ps(s3)};
      for (int r = 0; r < n; r++) y[i + r] = add ? y[i + r] + s[r] : s[r];
    }
    return;
  }
  GEMV_AXPY_BODY(__m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, 16)
}

PL_AVX2 static float hsum256(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

PL_AVX2 static void gemv_avx2(const float* x, int64_t ld, bool rows_along_k, const float* v, float* y, int64_t L,
                              int64_t K, bool add) {
  if (rows_along_k) {
    int64_t i = 0;
    for (; i < L; i += 4) {
      int n = L - i < 4 ? (int)(L - i) : 4;
      const float* xr[4];
      for (int r = 0; r < 4; r++) xr[r] = x + (i + (r < n ? r : 0)) * ld;
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      int64_t k = 0;
      for (; k + 8 <= K; k += 8) {
        __m256 vk = _mm256_loadu_ps(v + k);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[0] + k), vk, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[1] + k), vk, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[2] + k), vk, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[3] + k), vk, s3);
      }
      float s[4] = {hsum256(s0), hsum256(s1), hsum256(s2), hsum256(s3)};
      for (; k < K; k++)
        for (int r = 0; r < 4; r++) s[r] += xr[r][k] * v[k];
      for (int r = 0; r < n; r++) y[i + r] = add ? y[i + r] + s[r] : s[r];
    }
    return;
  }
  GEMV_AXPY_BODY(__m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, 8)
}
#undef GEMV_AXPY_BODY
#endif

static gemv_fn select_gemv(void) {
#ifdef PL_X86
  if (pl_cpu_avx512f()) return gemv_avx512;
  if (pl_cpu_avx2_fma()) return gemv_avx2;
#endif
  return gemv_scalar;
}

typedef struct {
  gemv_fn fn;
  const float *x, *v;
  float* y;
  int64_t ld, L, K, sx, sv, sy;
  bool rows_along_k, add;
  bool per_batch; /* items are whole products (else ranges of i in one product) */
  int64_t p;      /* the product being split, when !per_batch */
} gemv_job;

static void gemv_range(void* ctx, int64_t begin, int64_t end, int thread) {
  gemv_job* j = (gemv_job*)ctx;
  if (j->per_batch) {
    for (int64_t p = begin; p < end; p++)
      j->fn(j->x + p * j->sx, j->ld, j->rows_along_k, j->v + p * j->sv, j->y + p * j->sy, j->L, j->K, j->add);
    return;
  }
  const float* x = j->x + j->p * j->sx;
  /* rows i of X start at x + i*ld (along k) or x + i (along i) */
  const float* xb = x + begin * (j->rows_along_k ? j->ld : 1);
  j->fn(xb, j->ld, j->rows_along_k, j->v + j->p * j->sv, j->y + j->p * j->sy + begin, end - begin, j->K, j->add);
}

/* A few rows times a transposed B (x·Wᵀ with W stored (N,K), as in decoding): C[i,j] is the dot
 * product of A's row i and B's row j, both contiguous, so B is read in place, once from memory,
 * in blocks of rows that stay in L2 while every row of A meets them. Packing B would transpose all
 * of it on every call for a handful of rows. */
#define SMALL_M_MAX 8
/* From 5 to 8 rows the packed path wins while B fits in cache (measured at 8 MB); past 16 MB the
 * dot products, which read B once, win by 3x. */
#define SMALL_M_BIG_B (double)(1 << 22)
#define SMALL_M_BLOCK 64 /* rows of B per block: 64 x K floats, 128 KB at K = 512 */

typedef struct {
  gemv_fn fn;
  const float *A, *B;
  float* C;
  int64_t M, N, K;
  bool add;
} small_m_job;

static void small_m_range(void* ctx, int64_t begin, int64_t end, int thread) {
  small_m_job* j = (small_m_job*)ctx;
  for (int64_t blk = begin; blk < end; blk++) {
    int64_t j0 = blk * SMALL_M_BLOCK;
    int64_t nb = j->N - j0 < SMALL_M_BLOCK ? j->N - j0 : SMALL_M_BLOCK;
    for (int64_t i = 0; i < j->M; i++)
      j->fn(j->B + j0 * j->K, j->K, true, j->A + i * j->K, j->C + i * j->N + j0, nb, j->K, j->add);
  }
}

/* ---- the blocked algorithm ------------------------------------------------------------------ */

typedef struct {
  const gemm_isa* isa;
  const float *A, *B;
  float* C;
  int64_t M, N, K;
  bool ta, tb, acc;
  int64_t kcb, mcb, nb; /* block sizes actually used (K and M split into near-equal blocks) */
} gemm_problem;

/* One MR x NR tile; partial tiles go through a buffer so kernels only ever see full tiles. */
static inline void run_tile(const gemm_isa* isa, int64_t kc, const float* ap, const float* bp, int64_t ldb,
                            float* c, int64_t ldc, bool add, int m, int n) {
  if (m == isa->mr && n == isa->nr) {
    isa->kernel(kc, ap, bp, ldb, c, ldc, add);
    return;
  }
  float tile[TILE_MAX_FLOATS] __attribute__((aligned(64)));
  isa->kernel(kc, ap, bp, ldb, tile, isa->nr, false);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) c[i * ldc + j] = add ? c[i * ldc + j] + tile[i * isa->nr + j] : tile[i * isa->nr + j];
}

/* Given a packed A block (rows [i0, i0+mc), depth [k0, k0+kc)), computes the C tiles of A
 * micro-panels [p0, p1) against columns [j_begin, j_end), packing B blocks into bbuf. */
static void compute_block(const gemm_problem* g, const float* apack, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                          int64_t p0, int64_t p1, int64_t j_begin, int64_t j_end, float* bbuf) {
  const gemm_isa* isa = g->isa;
  const int mr = isa->mr, nr = isa->nr;
  bool add = g->acc || k0 > 0;
  /* With a handful of rows the B block is used once or twice: reading op(B) rows in place costs
   * less than packing them (full-width panels only; the ragged last panel is still packed). */
  bool direct = !g->tb && (p1 - p0) <= 2;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += g->nb) {
    int64_t nc = j_end - j0 < g->nb ? j_end - j0 : g->nb;
    int64_t full = direct ? nc / nr * nr : 0;
    if (full < nc) pack_b(g->B, g->K, g->N, g->tb, k0, kc, j0 + full, nc - full, nr, bbuf + (full / nr) * kc * nr);
    for (int64_t p = p0; p < p1; p++) {
      const float* ap = apack + p * kc * mr;
      int m = (int)(mc - p * mr < mr ? mc - p * mr : mr);
      float* crow = g->C + (i0 + p * mr) * g->N;
      for (int64_t jr = 0; jr < nc; jr += nr) {
        int n = (int)(nc - jr < nr ? nc - jr : nr);
        if (jr < full)
          run_tile(isa, kc, ap, g->B + k0 * g->N + j0 + jr, g->N, crow + j0 + jr, g->N, add, m, n);
        else
          run_tile(isa, kc, ap, bbuf + (jr / nr) * kc * nr, nr, crow + j0 + jr, g->N, add, m, n);
      }
    }
  }
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void problem_init(gemm_problem* g, const gemm_isa* isa, const float* A, const float* B, float* C,
                         int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool acc) {
  g->isa = isa;
  g->A = A; g->B = B; g->C = C;
  g->M = M; g->N = N; g->K = K;
  g->ta = ta; g->tb = tb; g->acc = acc;
  /* equal blocks, so K = 330 runs as 2 x 165 rather than 320 + 10 */
  g->kcb = ceil_div(K, ceil_div(K, isa->kc));
  g->mcb = ceil_div(ceil_div(M, ceil_div(M, isa->mb)), isa->mr) * isa->mr;
  g->nb = isa->nb;
}

static size_t apack_floats(const gemm_problem* g) { return (size_t)g->mcb * g->kcb; }
static size_t bpack_floats(const gemm_problem* g) { return (size_t)ceil_div(g->nb, g->isa->nr) * g->isa->nr * g->kcb; }

/* The whole GEMM on the calling thread. */
static void gemm_serial(const gemm_problem* g, workspace* ws) {
  const int mr = g->isa->mr;
  for (int64_t i0 = 0; i0 < g->M; i0 += g->mcb) {
    int64_t mc = g->M - i0 < g->mcb ? g->M - i0 : g->mcb;
    int64_t panels = ceil_div(mc, mr);
    for (int64_t k0 = 0; k0 < g->K; k0 += g->kcb) {
      int64_t kc = g->K - k0 < g->kcb ? g->K - k0 : g->kcb;
      pack_a(g->A, g->M, g->K, g->ta, i0, mc, k0, kc, mr, 0, panels, ws->a);
      compute_block(g, ws->a, i0, mc, k0, kc, 0, panels, 0, g->N, ws->b);
    }
  }
}

/* ---- parallel drivers ----------------------------------------------------------------------- */

typedef struct {
  const gemm_problem* g;
  int64_t i0, mc, k0, kc, panels;
  bool split_n;          /* parts are column ranges (else ranges of A micro-panels) */
  int parts;
  atomic_int next_part;  /* parts are claimed one at a time */
} block_job;

static void pack_a_range(void* ctx, int64_t begin, int64_t end, int thread) {
  block_job* j = (block_job*)ctx;
  const gemm_problem* g = j->g;
  pack_a(g->A, g->M, g->K, g->ta, j->i0, j->mc, j->k0, j->kc, g->isa->mr, begin, end, g_ws[0].a);
}

/* Part t of T of n units, rounded to multiples of `unit` so that only the last part is ragged. */
static void split(int64_t n, int64_t unit, int t, int T, int64_t* b, int64_t* e) {
  int64_t units = ceil_div(n, unit);
  int64_t ub = units * t / T, ue = units * (t + 1) / T;
  *b = ub * unit < n ? ub * unit : n;
  *e = ue * unit < n ? ue * unit : n;
}

/* Each thread claims parts until none are left, so a thread that loses its core for a while (the
 * machine is shared) delays the block by one part, not by its whole share. */
static void compute_parts(void* ctx, int64_t begin, int64_t end, int thread) {
  block_job* j = (block_job*)ctx;
  const gemm_problem* g = j->g;
  for (;;) {
    int t = atomic_fetch_add(&j->next_part, 1);
    if (t >= j->parts) return;
    int64_t b, e;
    if (j->split_n) {
      split(g->N, g->isa->nr, t, j->parts, &b, &e);
      if (b < e) compute_block(g, g_ws[0].a, j->i0, j->mc, j->k0, j->kc, 0, j->panels, b, e, g_ws[thread].b);
    } else {
      split(j->panels, 1, t, j->parts, &b, &e);
      if (b < e) compute_block(g, g_ws[0].a, j->i0, j->mc, j->k0, j->kc, b, e, 0, g->N, g_ws[thread].b);
    }
  }
}

/* How evenly n units of work split over T threads (1 = perfectly). */
static double balance(int64_t units, int T) {
  return (double)units / (double)(ceil_div(units, T) * T);
}

/* Up to PARTS_PER_THREAD parts per thread, enough that a stalled thread's share can move to the
 * others, while each part keeps at least PART_MIN_UNITS micro-panels: a part re-reads the whole A
 * block (column parts) or packs its own B block (row parts), which only pays over several tiles. */
#define PARTS_PER_THREAD 4
#define PART_MIN_UNITS 4

/* One GEMM on all pool threads: A blocks packed jointly, then the threads share out the C tiles. */
static void gemm_parallel(const gemm_problem* g, int T) {
  const int mr = g->isa->mr, nr = g->isa->nr;
  int64_t col_panels = ceil_div(g->N, nr);
  for (int64_t i0 = 0; i0 < g->M; i0 += g->mcb) {
    int64_t mc = g->M - i0 < g->mcb ? g->M - i0 : g->mcb;
    block_job j = {.g = g, .i0 = i0, .mc = mc, .panels = ceil_div(mc, mr)};
    /* columns are preferred (each thread's B block stays in its own L2); rows when N is too narrow */
    j.split_n = balance(col_panels, T) >= balance(j.panels, T) || balance(col_panels, T) >= 0.75;
    int64_t units = j.split_n ? col_panels : j.panels;
    int64_t per_thread = units / ((int64_t)T * PART_MIN_UNITS);
    per_thread = per_thread < 1 ? 1 : per_thread > PARTS_PER_THREAD ? PARTS_PER_THREAD : per_thread;
    j.parts = (int)(units < T * per_thread ? units : T * per_thread);
    for (int64_t k0 = 0; k0 < g->K; k0 += g->kcb) {
      j.k0 = k0;
      j.kc = g->K - k0 < g->kcb ? g->K - k0 : g->kcb;
      pl_parallel_for(j.panels, 4, pack_a_range, &j);
      atomic_store(&j.next_part, 0);
      pl_parallel_for(T, 1, compute_parts, &j);
    }
  }
}

typedef struct {
  const gemm_isa* isa;
  const float *A, *B;
  float* C;
  int64_t M, N, K, sa, sb, sc;
  bool ta, tb, acc;
} batch_job;

static void batch_range(void* ctx, int64_t begin, int64_t end, int thread) {
  batch_job* j = (batch_job*)ctx;
  for (int64_t p = begin; p < end; p++) {
    gemm_problem g;
    problem_init(&g, j->isa, j->A + p * j->sa, j->B + p * j->sb, j->C + p * j->sc, j->M, j->N, j->K, j->ta, j->tb, j->acc);
    gemm_serial(&g, &g_ws[thread]);
  }
}

/* Below this many multiply-adds (about 20 us on one core) a GEMM runs on the calling thread: the
 * fork-join itself is cheap, but on a shared machine a helper that loses its core stalls the call
 * for a scheduler slice, and a small GEMM has little to gain. Matrix-vector products are memory
 * bound and split from a quarter megabyte of matrix on. */
#define PARALLEL_MIN_MACS (1 << 22)
#define GEMV_PARALLEL_MIN_MACS (1 << 16)

/* Runs the batched GEMM; returns false if a packing buffer could not be allocated. */
static bool gemm_run(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                     int64_t batch, int64_t sa, int64_t sb, int64_t sc, bool acc) {
  const gemm_isa* isa = select_isa();
  if (K == 0) {
    /* an empty sum: C = 0, or unchanged when accumulating */
    if (!acc)
      for (int64_t p = 0; p < batch; p++) memset(C + p * sc, 0, (size_t)(M * N) * sizeof(float));
    return true;
  }
  double macs = (double)M * (double)N * (double)K;
  int T = pl_num_threads();
  if (T > WS_MAX_THREADS) T = WS_MAX_THREADS;
  if (macs * (double)batch < ((M == 1 || N == 1) ? GEMV_PARALLEL_MIN_MACS : PARALLEL_MIN_MACS)) T = 1;
  if (M == 1 || N == 1) {
    /* C (L) = X (L,K) · v (K): with N = 1, X = op(A) and v = B; with M = 1, X = op(B)ᵀ and v = A
     * (a one-column or one-row operand has the same layout transposed or not) */
    gemv_job j = {.fn = select_gemv()};
    if (N == 1) {
      j.x = A; j.ld = ta ? M : K; j.rows_along_k = !ta; j.L = M; j.sx = sa;
      j.v = B; j.sv = sb;
    } else {
      j.x = B; j.ld = tb ? K : N; j.rows_along_k = tb; j.L = N; j.sx = sb;
      j.v = A; j.sv = sa;
    }
    j.y = C; j.sy = sc; j.K = K; j.add = acc;
    j.per_batch = T == 1 || (batch >= T && sc >= M * N);
    if (T == 1) gemv_range(&j, 0, batch, 0);
    else if (j.per_batch) pl_parallel_for(batch, 1, gemv_range, &j);
    else
      for (j.p = 0; j.p < batch; j.p++) pl_parallel_for(j.L, 64, gemv_range, &j);
    return true;
  }
  if (tb && !ta && (M <= SMALL_M_MAX / 2 || (M <= SMALL_M_MAX && (double)K * (double)N >= SMALL_M_BIG_B))) {
    small_m_job j = {select_gemv(), A, B, C, M, N, K, acc};
    int64_t blocks = ceil_div(N, SMALL_M_BLOCK);
    for (int64_t p = 0; p < batch; p++) {
      j.A = A + p * sa; j.B = B + p * sb; j.C = C + p * sc;
      if (T > 1) pl_parallel_for(blocks, 1, small_m_range, &j);
      else small_m_range(&j, 0, blocks, 0);
    }
    return true;
  }
  gemm_problem g;
  problem_init(&g, isa, A, B, C, M, N, K, ta, tb, acc);

  if (pthread_mutex_trylock(&g_ws_lock) != 0) {
    /* another JS thread is inside a GEMM: run this one alone with buffers of its own */
    workspace w = {0};
    bool ok = ws_reserve(&w.a, &w.a_cap, apack_floats(&g)) && ws_reserve(&w.b, &w.b_cap, bpack_floats(&g));
    if (ok)
      for (int64_t p = 0; p < batch; p++) {
        problem_init(&g, isa, A + p * sa, B + p * sb, C + p * sc, M, N, K, ta, tb, acc);
        gemm_serial(&g, &w);
      }
    free(w.a);
    free(w.b);
    return ok;
  }
  /* Whole GEMMs per thread when the batch splits evenly or is long, or each GEMM is too small to
   * split; never when the C matrices overlap (strideC = 0 sums the products into one C, in order). */
  bool per_batch = T > 1 && batch >= T && sc >= M * N &&
                   (batch % T == 0 || batch >= 3 * T || macs < (double)PARALLEL_MIN_MACS);
  int used = per_batch || T > 1 ? T : 1;
  bool ok = true;
  for (int t = 0; t < used && ok; t++) {
    /* in the joint path thread 0's A buffer holds the shared A block */
    bool needs_a = per_batch || used == 1 || t == 0;
    ok = (!needs_a || ws_reserve(&g_ws[t].a, &g_ws[t].a_cap, apack_floats(&g))) &&
         ws_reserve(&g_ws[t].b, &g_ws[t].b_cap, bpack_floats(&g));
  }
  if (ok) {
    if (per_batch) {
      batch_job j = {isa, A, B, C, M, N, K, sa, sb, sc, ta, tb, acc};
      pl_parallel_for(batch, 1, batch_range, &j);
    } else {
      for (int64_t p = 0; p < batch; p++) {
        problem_init(&g, isa, A + p * sa, B + p * sb, C + p * sc, M, N, K, ta, tb, acc);
        if (T > 1) gemm_parallel(&g, T);
        else gemm_serial(&g, &g_ws[0]);
      }
    }
  }
  pthread_mutex_unlock(&g_ws_lock);
  return ok;
}

/* The GEMM for other kernels (the quantized layers' dequantized panels): one product of contiguous
 * operands; false when a packing buffer could not be allocated. */
bool pl_sgemm(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool acc) {
  return gemm_run(A, B, C, M, N, K, ta, tb, 1, 0, 0, 0, acc);
}

/* matmul(a, b, c, M, N, K, transA, transB, batch, strideA, strideB, strideC, accumulate) */
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  pl_args a;
  float *A, *B, *C;
  size_t la, lb, lc;
  int64_t M, N, K, batch, sa, sb, sc;
  bool ta, tb, acc;
  if (!pl_args_init(env, info, "matmul", 13, &a) || !pl_f32(&a, 0, &A, &la) || !pl_f32(&a, 1, &B, &lb) ||
      !pl_f32(&a, 2, &C, &lc) || !pl_int(&a, 3, &M) || !pl_int(&a, 4, &N) || !pl_int(&a, 5, &K) ||
      !pl_bool(&a, 6, &ta) || !pl_bool(&a, 7, &tb) || !pl_int(&a, 8, &batch) || !pl_int(&a, 9, &sa) ||
      !pl_int(&a, 10, &sb) || !pl_int(&a, 11, &sc) || !pl_bool(&a, 12, &acc))
    return NULL;
  if (M < 0 || N < 0 || K < 0 || batch < 0 || sa < 0 || sb < 0 || sc < 0) {
    pl_fail(&a, "sizes and strides must be non-negative (M=%lld N=%lld K=%lld batch=%lld strides %lld,%lld,%lld)",
            (long long)M, (long long)N, (long long)K, (long long)batch, (long long)sa, (long long)sb, (long long)sc);
    return NULL;
  }
  /* bound every product by 2^53 (the arguments are JS numbers) so the size checks cannot overflow */
  const double lim = 9007199254740992.0;
  if ((double)M * (double)K > lim || (double)K * (double)N > lim || (double)M * (double)N > lim ||
      (double)batch * (double)(sa > sb ? (sa > sc ? sa : sc) : (sb > sc ? sb : sc)) > lim) {
    pl_fail(&a, "sizes are too large");
    return NULL;
  }
  if (batch == 0 || M == 0 || N == 0) return NULL;
  if (!pl_need(&a, "a", la, (batch - 1) * sa + M * K) || !pl_need(&a, "b", lb, (batch - 1) * sb + K * N) ||
      !pl_need(&a, "c", lc, (batch - 1) * sc + M * N))
    return NULL;
  if (!gemm_run(A, B, C, M, N, K, ta, tb, batch, sa, sb, sc, acc)) pl_fail(&a, "out of memory for packing buffers");
  return NULL;
}

void pl_register_gemm(napi_env env, napi_value exports) {
  pl_export(env, exports, "matmul", js_matmul, "f32");
}
