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
 * Special cases: with one row (M = 1, or N = 1 read as Cᵀ) or a few (M <= 32, A not transposed),
 * gemv.h reads B in place, once for all rows: decoding's x·Wᵀ streams the weights at memory speed.
 * In the blocked path, with a few rows (M <= 2 MR) and op(B) = B, full-width B panels are read in
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
#include "simd.h"
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

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- few rows: matrix-vector and small-M products ---------------------------------------------
 * With one row of A (or N = 1, read as one row of Cᵀ) or a handful, each element of B is used once
 * per row, so the product is bound by reading B from memory: packing it would add a whole pass
 * over B for nothing. gemv.h reads B in place, once for all the rows, compiled here per ISA. */
typedef void (*small_m_fn)(const float* a, int64_t lda, int64_t M, const float* b, bool tb, int64_t ldb, int64_t K,
                           float* c, int64_t ldc, int64_t j0, int64_t j1, bool add);

#define GV(name) name##_scalar
#define GV_TARGET
#define GV_W 1
#define GV_ACC 8
#define gv_vec float
#define gv_zero() 0.0f
#define gv_set1(x) (x)
#define gv_load(p) (*(p))
#define gv_loadn(p, n) ((n) > 0 ? *(p) : 0.0f)
#define gv_loadhi(p, n) ((n) > 0 ? *(p) : 0.0f)
#define gv_storen(p, v, n) do { if ((n) > 0) *(p) = (v); } while (0)
#define gv_add(a, b) ((a) + (b))
#define gv_fma(a, b, c) ((a) * (b) + (c))
#define gv_hsum(v) (v)
#define gv_hsum4(a, b, c, d, out) ((out)[0] = (a), (out)[1] = (b), (out)[2] = (c), (out)[3] = (d))
#define gv_prefetch(p) ((void)(p))
#include "gemv.h"
#undef GV
#undef GV_TARGET
#undef GV_W
#undef GV_ACC
#undef gv_vec
#undef gv_zero
#undef gv_set1
#undef gv_load
#undef gv_loadn
#undef gv_loadhi
#undef gv_storen
#undef gv_add
#undef gv_fma
#undef gv_hsum
#undef gv_hsum4
#undef gv_prefetch

#ifdef PL_X86
PL_AVX2 static inline __m256i gv_mask_avx2(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
PL_AVX2 static inline __m256i gv_maskhi_avx2(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)(7 - n)));
}
#define GV(name) name##_avx2
#define GV_TARGET PL_AVX2
#define GV_W 8
#define GV_ACC 8 /* of 16 ymm registers */
#define gv_vec __m256
#define gv_zero() _mm256_setzero_ps()
#define gv_set1(x) _mm256_set1_ps(x)
#define gv_load(p) _mm256_loadu_ps(p)
#define gv_loadn(p, n) _mm256_maskload_ps((p), gv_mask_avx2(n))
#define gv_loadhi(p, n) _mm256_maskload_ps((p), gv_maskhi_avx2(n))
#define gv_storen(p, v, n) _mm256_maskstore_ps((p), gv_mask_avx2(n), (v))
#define gv_add(a, b) _mm256_add_ps((a), (b))
#define gv_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define gv_hsum(v) pl_hsum256(v)
#define gv_hsum4(a, b, c, d, out) \
  ((out)[0] = pl_hsum256(a), (out)[1] = pl_hsum256(b), (out)[2] = pl_hsum256(c), (out)[3] = pl_hsum256(d))
#define gv_prefetch(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)
#include "gemv.h"
#undef GV
#undef GV_TARGET
#undef GV_W
#undef GV_ACC
#undef gv_vec
#undef gv_zero
#undef gv_set1
#undef gv_load
#undef gv_loadn
#undef gv_loadhi
#undef gv_storen
#undef gv_add
#undef gv_fma
#undef gv_hsum
#undef gv_hsum4
#undef gv_prefetch

/* Four horizontal sums at once: each step adds the same lanes in the same order as
 * _mm512_reduce_add_ps (halves, quarters, pairs, neighbours), so the sums are bit for bit its own,
 * in a third of the shuffles and adds (a tile of 4 x 4 accumulators over K = 512 spends an eighth
 * of its time reducing one at a time). */
PL_AVX512 static inline void gv_hsum4_avx512(__m512 a, __m512 b, __m512 c, __m512 d, float* out) {
  /* x_j + x_{j+8}: a's eight in the low half, b's in the high half (likewise c, d) */
  __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
  /* + x_{j+4}: one 128-bit quarter per input, in order a b c d */
  __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  s = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4E)); /* + x_{j+2} */
  s = _mm512_add_ps(s, _mm512_permute_ps(s, 0xB1)); /* + x_{j+1} */
  _mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s)));
}

#define GV(name) name##_avx512
#define GV_TARGET PL_AVX512
#define GV_W 16
#define GV_ACC 16 /* of 32 zmm registers */
#define gv_vec __m512
#define gv_zero() _mm512_setzero_ps()
#define gv_set1(x) _mm512_set1_ps(x)
#define gv_load(p) _mm512_loadu_ps(p)
#define gv_loadn(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#define gv_loadhi(p, n) _mm512_maskz_loadu_ps((__mmask16)(0xffffu << (16 - (n))), (p))
#define gv_storen(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define gv_add(a, b) _mm512_add_ps((a), (b))
#define gv_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define gv_hsum(v) _mm512_reduce_add_ps(v)
#define gv_hsum4(a, b, c, d, out) gv_hsum4_avx512(a, b, c, d, out)
#define gv_prefetch(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)
#include "gemv.h"
#undef GV
#undef GV_TARGET
#undef GV_W
#undef GV_ACC
#undef gv_vec
#undef gv_zero
#undef gv_set1
#undef gv_load
#undef gv_loadn
#undef gv_loadhi
#undef gv_storen
#undef gv_add
#undef gv_fma
#undef gv_hsum
#undef gv_hsum4
#undef gv_prefetch
#endif

/* The small-M kernel, its unit of work (rows of B, or columns of op(B) when B is plain) and its
 * vector width in floats. */
static small_m_fn select_small_m(int64_t* unit_rows, int64_t* unit_cols, int* width) {
#ifdef PL_X86
  if (pl_cpu_avx512f()) { *unit_rows = 8; *unit_cols = 8 * 16; *width = 16; return small_m_avx512; }
  if (pl_cpu_avx2_fma()) { *unit_rows = 8; *unit_cols = 8 * 8; *width = 8; return small_m_avx2; }
#endif
  *unit_rows = 8;
  *unit_cols = 8;
  *width = 1;
  return small_m_scalar;
}

/* The copy of A the few-row path reads (see small_m_run), grown on demand and never freed, as the
 * packing buffers. One caller at a time: a caller that finds it in use reads A where it lies. (Not
 * a per-thread buffer freed at thread exit: a worker thread's addon can be unloaded before the
 * thread's destructors run.) */
static pthread_mutex_t g_a_copy_lock = PTHREAD_MUTEX_INITIALIZER;
static float* g_a_copy;
static size_t g_a_copy_cap;

/* Largest copy of A (floats) the few-row path makes: 32 rows of 32K. */
#define A_COPY_MAX_FLOATS (1 << 20)

/* Up to this many rows of A (not transposed) B is read in place. Measured on one core: 1.5-2.4x
 * the packed path from 8 to 16 rows, 1.0-1.5x at 32, even at 64, where the product is bound by
 * arithmetic rather than by reading B. */
#define SMALL_M_MAX 32

typedef struct {
  small_m_fn fn;
  const float *a, *b;
  float* c;
  int64_t M, N, K, lda, ldb, ldc, sa, sb, sc;
  bool tb, add;
  int64_t unit, units; /* units of work per product */
  int64_t p0;          /* the first product: items are (product, unit) pairs, product-major */
  int64_t items;
  int parts;
  atomic_int next_part; /* parts are claimed one at a time */
} small_m_job;

/* Items [begin, end). */
static void small_m_items(small_m_job* j, int64_t begin, int64_t end) {
  while (begin < end) {
    int64_t p = j->p0 + begin / j->units, u0 = begin % j->units;
    int64_t u1 = j->units - u0 < end - begin ? j->units : u0 + (end - begin);
    int64_t e = u1 * j->unit < j->N ? u1 * j->unit : j->N;
    j->fn(j->a + p * j->sa, j->lda, j->M, j->b + p * j->sb, j->tb, j->ldb, j->K, j->c + p * j->sc, j->ldc,
          u0 * j->unit, e, j->add);
    begin += u1 - u0;
  }
}

/* Each thread claims contiguous parts until none are left: on a busy machine a thread that loses
 * its core holds up one part, not half the product. */
static void small_m_parts(void* ctx, int64_t begin, int64_t end, int thread) {
  small_m_job* j = (small_m_job*)ctx;
  for (;;) {
    int t = atomic_fetch_add(&j->next_part, 1);
    if (t >= j->parts) return;
    small_m_items(j, j->items * t / j->parts, j->items * (t + 1) / j->parts);
  }
}

/* Parts per thread for the few-row path: enough for a stalled thread's share to move over, each
 * still a long run of B (a 512 x 512 matrix splits into parts of 128 KB). */
#define SMALL_M_PARTS_PER_THREAD 4

/* C_p (M, N) (+)= A_p (M, K; rows lda apart) · op(B_p), op(B) (K, N) stored (N, K) when tb, for each
 * of `batch` products. Threads claim contiguous runs of (product, unit) items; when the products
 * share C (sc < M·N) they run one after another, in order, each split over its units. */
static void small_m_run(const float* A, int64_t lda, int64_t sa, const float* B, bool tb, int64_t sb, float* C,
                        int64_t sc, int64_t M, int64_t N, int64_t K, int64_t batch, bool acc, int T) {
  int64_t unit_rows, unit_cols;
  int width;
  small_m_job j = {.fn = select_small_m(&unit_rows, &unit_cols, &width)};
  /* The kernel aligns its loads of B's rows (x·Wᵀ); a copy of A (M rows, lda = K) at the same
   * offset from a vector boundary aligns A's loads too: a copy of a few rows for a pass over all of
   * B (1.25x for 32 rows, weights streamed from memory). One product only: a batch's A and B move
   * by their strides. */
  bool copied = false;
  if (tb && width > 1 && batch == 1 && K % width == 0 && M * K <= A_COPY_MAX_FLOATS) {
    int head = (int)((width - ((uintptr_t)B / sizeof(float)) % width) % width);
    if (((uintptr_t)A / sizeof(float) + head) % width != 0 && pthread_mutex_trylock(&g_a_copy_lock) == 0) {
      copied = true;
      if (ws_reserve(&g_a_copy, &g_a_copy_cap, (size_t)(M * K) + 16)) {
        float* dst = g_a_copy + (16 - head) % 16; /* dst + head is on a 64-byte boundary */
        memcpy(dst, A, (size_t)(M * K) * sizeof(float));
        A = dst;
      }
    }
  }
  j.a = A; j.b = B; j.c = C;
  j.M = M; j.N = N; j.K = K;
  j.lda = lda; j.ldb = tb ? K : N; j.ldc = N;
  j.sa = sa; j.sb = sb; j.sc = sc;
  j.tb = tb; j.add = acc;
  j.unit = tb ? unit_rows : unit_cols;
  j.units = ceil_div(N, j.unit);
  bool shared_c = batch > 1 && sc < M * N;
  j.items = shared_c ? j.units : batch * j.units;
  int64_t parts = (int64_t)T * SMALL_M_PARTS_PER_THREAD;
  j.parts = (int)(j.items < parts ? j.items : parts);
  for (int64_t p = 0; p < (shared_c ? batch : 1); p++) {
    j.p0 = p;
    if (T > 1 && j.parts > 1) {
      atomic_store(&j.next_part, 0);
      pl_parallel_for(T, 1, small_m_parts, &j);
    } else {
      small_m_items(&j, 0, j.items);
    }
  }
  if (copied) pthread_mutex_unlock(&g_a_copy_lock);
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
 * for a scheduler slice, and a small GEMM has little to gain. Few-row products are bound by
 * reading B and split from a quarter megabyte of it on. */
#define PARALLEL_MIN_MACS (1 << 22)
#define GEMV_PARALLEL_MIN_ELEMS (1 << 16)

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
  bool small = M == 1 || N == 1 || (!ta && M <= SMALL_M_MAX);
  if (small ? (double)K * (double)(N == 1 ? M : N) * (double)batch < GEMV_PARALLEL_MIN_ELEMS
            : macs * (double)batch < PARALLEL_MIN_MACS)
    T = 1;
  if (N == 1 && M > 1) {
    /* Cᵀ (1, M) = bᵀ · op(A)ᵀ: one row against A, which is (M, K) stored as transB or (K, M) plain */
    small_m_run(B, K, sb, A, !ta, sa, C, sc, 1, M, K, batch, acc, T);
    return true;
  }
  if (M == 1 || (!ta && M <= SMALL_M_MAX)) {
    /* A's rows are contiguous (one row is, transposed or not) */
    small_m_run(A, K, sa, B, tb, sb, C, sc, M, N, K, batch, acc, T);
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
