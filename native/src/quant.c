/* Dequantize-and-multiply with frozen quantized weights: int8 per output channel and 4-bit
 * blockwise codes (bitsandbytes NF4), y = x·Wᵀ and dx = dy·W, never materialising the float W.
 *
 * A few rows of x (decoding: M = 1, or a small batch): each thread takes a range of W's rows and
 * computes their dot products with up to four rows of x at once, dequantizing in registers, so W
 * streams from memory once in its compact form (int8: 1/4 of the f32 bytes, NF4: ~1/7). NF4 codes
 * are looked up with one permute of the 16-entry table (AVX-512) or two 8-entry permutes and a
 * blend (AVX2). The two codes of a byte are the even and odd elements of a pair, so x is split into
 * its even and odd elements once per call and each byte multiplies both halves directly.
 *
 * Many rows (prefill, training): W is dequantized a panel of rows at a time into a buffer that stays
 * in cache (about 256 KB), and the float GEMM multiplies the panel; the backward does the same with
 * dy's matching columns. The dequantization is O(N·K), the GEMM O(M·N·K), so the float micro-kernel
 * sets the speed. */
#include "plinth.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PL_X86 1
#endif

#define PL_AVX2 __attribute__((target("avx2,fma")))
#define PL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

#define MAX_ROWS 4          /* rows of x per pass over W in the dot-product path */
#define DOT_PATH_MAX_M 8    /* above this many rows of x, dequantize panels and use the GEMM */
#define NF4_BLOCK 64
#define PAIRS_PER_BLOCK (NF4_BLOCK / 2)

/* ---- int8 dot products ----------------------------------------------------------------------- */

/* out[m] = Σ_k w[k]·x[m][k] for m < mc */
typedef void (*i8_dot_fn)(const int8_t* w, const float* const* x, int mc, int64_t K, float* out);

static void i8_dot_scalar(const int8_t* w, const float* const* x, int mc, int64_t K, float* out) {
  for (int m = 0; m < mc; m++) {
    float s = 0.f;
    for (int64_t k = 0; k < K; k++) s += (float)w[k] * x[m][k];
    out[m] = s;
  }
}

#ifdef PL_X86
PL_AVX2 static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

PL_AVX2 static inline __attribute__((always_inline)) void i8_dot_avx2_body(const int8_t* w, const float* const* x, int mc, int64_t K, float* out) {
  __m256 acc[MAX_ROWS][2];
  for (int m = 0; m < mc; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(w + k))));
    __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(w + k + 8))));
    for (int m = 0; m < mc; m++) {
      acc[m][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[m] + k), acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[m] + k + 8), acc[m][1]);
    }
  }
  for (int m = 0; m < mc; m++) {
    float s = hsum256(_mm256_add_ps(acc[m][0], acc[m][1]));
    for (int64_t j = k; j < K; j++) s += (float)w[j] * x[m][j];
    out[m] = s;
  }
}

/* the row count as a constant, so the accumulators live in registers */
PL_AVX2 static void i8_dot_avx2(const int8_t* w, const float* const* x, int mc, int64_t K, float* out) {
  switch (mc) {
    case 1: i8_dot_avx2_body(w, x, 1, K, out); break;
    case 2: i8_dot_avx2_body(w, x, 2, K, out); break;
    case 3: i8_dot_avx2_body(w, x, 3, K, out); break;
    case 4: i8_dot_avx2_body(w, x, 4, K, out); break;
  }
}

PL_AVX512 static inline __attribute__((always_inline)) void i8_dot_avx512_body(const int8_t* w, const float* const* x, int mc, int64_t K, float* out) {
  __m512 acc[MAX_ROWS][2];
  for (int m = 0; m < mc; m++) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(w + k))));
    __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(w + k + 16))));
    for (int m = 0; m < mc; m++) {
      acc[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[m] + k), acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[m] + k + 16), acc[m][1]);
    }
  }
  for (; k < K; k += 16) {
    __mmask16 mask = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
    __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, w + k)));
    for (int m = 0; m < mc; m++) acc[m][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mask, x[m] + k), acc[m][0]);
  }
  for (int m = 0; m < mc; m++) out[m] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]));
}

/* the row count as a constant, so the accumulators live in registers */
PL_AVX512 static void i8_dot_avx512(const int8_t* w, const float* const* x, int mc, int64_t K, float* out) {
  switch (mc) {
    case 1: i8_dot_avx512_body(w, x, 1, K, out); break;
    case 2: i8_dot_avx512_body(w, x, 2, K, out); break;
    case 3: i8_dot_avx512_body(w, x, 3, K, out); break;
    case 4: i8_dot_avx512_body(w, x, 4, K, out); break;
  }
}
#endif

/* ---- NF4 dot products -------------------------------------------------------------------------
 * A row of W with an even K is P = K/2 whole bytes; its pair p (elements 2p, 2p+1) is byte
 * row_pair0 + p of the packed array and lies in block (row_pair0 + p)/32. xe[m], xo[m] hold the
 * even and odd elements of x's row m (P each). */
typedef void (*nf4_dot_fn)(const uint8_t* packed, const float* absmax, const float* code, int64_t row_pair0, int64_t P,
                           const float* const* xe, const float* const* xo, int mc, float* out);

static void nf4_dot_scalar(const uint8_t* packed, const float* absmax, const float* code, int64_t row_pair0, int64_t P,
                           const float* const* xe, const float* const* xo, int mc, float* out) {
  float total[MAX_ROWS] = {0};
  for (int64_t p = 0; p < P;) {
    int64_t g = row_pair0 + p;
    int64_t end = p + (PAIRS_PER_BLOCK - g % PAIRS_PER_BLOCK);
    if (end > P) end = P;
    float seg[MAX_ROWS] = {0};
    for (; p < end; p++) {
      uint8_t b = packed[row_pair0 + p];
      float hi = code[b >> 4], lo = code[b & 15];
      for (int m = 0; m < mc; m++) seg[m] += hi * xe[m][p] + lo * xo[m][p];
    }
    float s = absmax[g / PAIRS_PER_BLOCK];
    for (int m = 0; m < mc; m++) total[m] += seg[m] * s;
  }
  for (int m = 0; m < mc; m++) out[m] = total[m];
}

#ifdef PL_X86
PL_AVX2 static inline __attribute__((always_inline)) void nf4_dot_avx2_body(const uint8_t* packed, const float* absmax, const float* code, int64_t row_pair0, int64_t P,
                                 const float* const* xe, const float* const* xo, int mc, float* out) {
  const __m256 code_lo = _mm256_loadu_ps(code), code_hi = _mm256_loadu_ps(code + 8);
  const __m256i nib = _mm256_set1_epi32(15);
  __m256 total[MAX_ROWS];
  float tail[MAX_ROWS] = {0};
  for (int m = 0; m < mc; m++) total[m] = _mm256_setzero_ps();
  for (int64_t p = 0; p < P;) {
    int64_t g = row_pair0 + p;
    int64_t end = p + (PAIRS_PER_BLOCK - g % PAIRS_PER_BLOCK);
    if (end > P) end = P;
    __m256 seg[MAX_ROWS];
    float seg_tail[MAX_ROWS] = {0};
    for (int m = 0; m < mc; m++) seg[m] = _mm256_setzero_ps();
    for (; p + 8 <= end; p += 8) {
      __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(packed + row_pair0 + p)));
      __m256i qh = _mm256_srli_epi32(b, 4), ql = _mm256_and_si256(b, nib);
      /* 16-entry lookup: both halves of the table, chosen by bit 3 of the index (moved to the sign bit) */
      __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(code_lo, qh), _mm256_permutevar8x32_ps(code_hi, qh),
                                   _mm256_castsi256_ps(_mm256_slli_epi32(qh, 28)));
      __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(code_lo, ql), _mm256_permutevar8x32_ps(code_hi, ql),
                                   _mm256_castsi256_ps(_mm256_slli_epi32(ql, 28)));
      for (int m = 0; m < mc; m++) {
        seg[m] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xe[m] + p), seg[m]);
        seg[m] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xo[m] + p), seg[m]);
      }
    }
    for (; p < end; p++) {
      uint8_t b = packed[row_pair0 + p];
      for (int m = 0; m < mc; m++) seg_tail[m] += code[b >> 4] * xe[m][p] + code[b & 15] * xo[m][p];
    }
    float s = absmax[g / PAIRS_PER_BLOCK];
    __m256 sv = _mm256_set1_ps(s);
    for (int m = 0; m < mc; m++) {
      total[m] = _mm256_fmadd_ps(seg[m], sv, total[m]);
      tail[m] += seg_tail[m] * s;
    }
  }
  for (int m = 0; m < mc; m++) out[m] = hsum256(total[m]) + tail[m];
}

/* the row count as a constant, so the accumulators live in registers */
PL_AVX2 static void nf4_dot_avx2(const uint8_t* packed, const float* absmax, const float* code, int64_t row_pair0, int64_t P,
    const float* const* xe, const float* const* xo, int mc, float* out) {
  switch (mc) {
    case 1: nf4_dot_avx2_body(packed, absmax, code, row_pair0, P, xe, xo, 1, out); break;
    case 2: nf4_dot_avx2_body(packed, absmax, code, row_pair0, P, xe, xo, 2, out); break;
    case 3: nf4_dot_avx2_body(packed, absmax, code, row_pair0, P, xe, xo, 3, out); break;
    case 4: nf4_dot_avx2_body(packed, absmax, code, row_pair0, P, xe, xo, 4, out); break;
  }
}

PL_AVX512 static inline __attribute__((always_inline)) void nf4_dot_avx512_body(const uint8_t* packed, const float* absmax, const float* code, int64_t row_pair0, int64_t P,
                                     const float* const* xe, const float* const* xo, int mc, float* out) {
  const __m512 table = _mm512_loadu_ps(code);
  const __m512i nib = _mm512_set1_epi32(15);
  __m512 total[MAX_ROWS];
  for (int m = 0; m < mc; m++) total[m] = _mm512_setzero_ps();
  for (int64_t p = 0; p < P;) {
    int64_t g = row_pair0 + p;
    int64_t end = p + (PAIRS_PER_BLOCK - g % PAIRS_PER_BLOCK);
    if (end > P) end = P;
    __m512 seg[MAX_ROWS];
    for (int m = 0; m < mc; m++) seg[m] = _mm512_setzero_ps();
    if (end - p == PAIRS_PER_BLOCK) {
      /* a whole block: 32 bytes, two independent halves per row of x */
      __m256i bytes = _mm256_loadu_si256((const __m256i*)(packed + row_pair0 + p));
      __m512i b0 = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(bytes));
      __m512i b1 = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(bytes, 1));
      __m512 hi0 = _mm512_permutexvar_ps(_mm512_srli_epi32(b0, 4), table);
      __m512 lo0 = _mm512_permutexvar_ps(_mm512_and_si512(b0, nib), table);
      __m512 hi1 = _mm512_permutexvar_ps(_mm512_srli_epi32(b1, 4), table);
      __m512 lo1 = _mm512_permutexvar_ps(_mm512_and_si512(b1, nib), table);
      for (int m = 0; m < mc; m++) {
        __m512 a = _mm512_mul_ps(hi0, _mm512_loadu_ps(xe[m] + p));
        __m512 c = _mm512_mul_ps(hi1, _mm512_loadu_ps(xe[m] + p + 16));
        a = _mm512_fmadd_ps(lo0, _mm512_loadu_ps(xo[m] + p), a);
        c = _mm512_fmadd_ps(lo1, _mm512_loadu_ps(xo[m] + p + 16), c);
        seg[m] = _mm512_add_ps(a, c);
      }
      p = end;
    }
    for (; p < end; p += 16) {
      /* masked-off pairs load x = 0, so their (arbitrary) codes add nothing */
      __mmask16 mask = end - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (end - p)) - 1);
      __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, packed + row_pair0 + p));
      __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table);
      __m512 lo = _mm512_permutexvar_ps(_mm512_and_si512(b, nib), table);
      for (int m = 0; m < mc; m++) {
        seg[m] = _mm512_fmadd_ps(hi, _mm512_maskz_loadu_ps(mask, xe[m] + p), seg[m]);
        seg[m] = _mm512_fmadd_ps(lo, _mm512_maskz_loadu_ps(mask, xo[m] + p), seg[m]);
      }
    }
    p = end;
    __m512 sv = _mm512_set1_ps(absmax[g / PAIRS_PER_BLOCK]);
    for (int m = 0; m < mc; m++) total[m] = _mm512_fmadd_ps(seg[m], sv, total[m]);
  }
  for (int m = 0; m < mc; m++) out[m] = _mm512_reduce_add_ps(total[m]);
}

/* the row count as a constant, so the accumulators live in registers */
PL_AVX512 static void nf4_dot_avx512(const uint8_t* packed, const float* absmax, const float* code, int64_t row_pair0, int64_t P,
    const float* const* xe, const float* const* xo, int mc, float* out) {
  switch (mc) {
    case 1: nf4_dot_avx512_body(packed, absmax, code, row_pair0, P, xe, xo, 1, out); break;
    case 2: nf4_dot_avx512_body(packed, absmax, code, row_pair0, P, xe, xo, 2, out); break;
    case 3: nf4_dot_avx512_body(packed, absmax, code, row_pair0, P, xe, xo, 3, out); break;
    case 4: nf4_dot_avx512_body(packed, absmax, code, row_pair0, P, xe, xo, 4, out); break;
  }
}
#endif

/* ---- dequantization of a panel of rows (the GEMM path) --------------------------------------- */

static inline float nf4_at(const uint8_t* packed, const float* absmax, const float* code, int64_t e) {
  uint8_t b = packed[e >> 1];
  return code[(e & 1) ? (b & 15) : (b >> 4)] * absmax[e / NF4_BLOCK];
}

/* out[i] = W element e0 + i for i < n (any alignment) */
static void nf4_dequant_range(const uint8_t* packed, const float* absmax, const float* code, int64_t e0, int64_t n, float* out) {
  int64_t i = 0;
  if (e0 & 1) {
    out[0] = nf4_at(packed, absmax, code, e0);
    i = 1;
  }
  /* whole bytes from here: element e0 + i is even */
  for (; i + 2 <= n; i += 2) {
    int64_t e = e0 + i;
    uint8_t b = packed[e >> 1];
    float s = absmax[e / NF4_BLOCK];
    out[i] = code[b >> 4] * s;
    out[i + 1] = code[b & 15] * s;
  }
  if (i < n) out[i] = nf4_at(packed, absmax, code, e0 + i);
}

typedef struct {
  bool nf4;
  const int8_t* w8;
  const float* scale;
  const uint8_t* packed;
  const float* absmax;
  const float* code;
  int64_t K, n0;
  float* panel; /* (rows, K) */
} dequant_job;

static void dequant_rows(void* ctx, int64_t begin, int64_t end, int thread) {
  dequant_job* j = (dequant_job*)ctx;
  for (int64_t r = begin; r < end; r++) {
    int64_t n = j->n0 + r;
    float* dst = j->panel + r * j->K;
    if (j->nf4) {
      nf4_dequant_range(j->packed, j->absmax, j->code, n * j->K, j->K, dst);
    } else {
      const int8_t* src = j->w8 + n * j->K;
      float s = j->scale[n];
      for (int64_t k = 0; k < j->K; k++) dst[k] = (float)src[k] * s;
    }
  }
}

/* ---- scratch buffers: kept between calls (fresh pages cost more than the work) ---------------- */

static pthread_mutex_t g_scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static float* g_scratch = NULL;
static size_t g_scratch_cap = 0;

static float* scratch_reserve(size_t floats) {
  if (floats <= g_scratch_cap) return g_scratch;
  float* p = (float*)aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
  if (!p) return NULL;
  free(g_scratch);
  g_scratch = p;
  g_scratch_cap = floats;
  return p;
}

/* ---- the two paths ---------------------------------------------------------------------------- */

typedef struct {
  bool nf4;
  const int8_t* w8;
  const float* scale;
  const uint8_t* packed;
  const float* absmax;
  const float* code;
  const float* x; /* (mc, K) rows of x */
  const float* xe; /* (mc, K/2) even elements, NF4 only */
  const float* xo;
  float* y; /* (mc, N) */
  int mc;
  int64_t N, K;
  i8_dot_fn i8;
  nf4_dot_fn nf4dot;
} dot_job;

static void dot_rows(void* ctx, int64_t begin, int64_t end, int thread) {
  dot_job* j = (dot_job*)ctx;
  const float* xs[MAX_ROWS];
  const float* xe[MAX_ROWS];
  const float* xo[MAX_ROWS];
  float out[MAX_ROWS];
  for (int m = 0; m < j->mc; m++) {
    xs[m] = j->x + m * j->K;
    if (j->nf4) {
      xe[m] = j->xe + m * (j->K / 2);
      xo[m] = j->xo + m * (j->K / 2);
    }
  }
  for (int64_t n = begin; n < end; n++) {
    if (j->nf4) {
      j->nf4dot(j->packed, j->absmax, j->code, n * (j->K / 2), j->K / 2, xe, xo, j->mc, out);
    } else {
      j->i8(j->w8 + n * j->K, xs, j->mc, j->K, out);
      for (int m = 0; m < j->mc; m++) out[m] *= j->scale[n];
    }
    for (int m = 0; m < j->mc; m++) j->y[m * j->N + n] = out[m];
  }
}

static void select_dots(i8_dot_fn* i8, nf4_dot_fn* nf4) {
  *i8 = i8_dot_scalar;
  *nf4 = nf4_dot_scalar;
#ifdef PL_X86
  if (pl_cpu_avx512f()) {
    *i8 = i8_dot_avx512;
    *nf4 = nf4_dot_avx512;
  } else if (pl_cpu_avx2_fma()) {
    *i8 = i8_dot_avx2;
    *nf4 = nf4_dot_avx2;
  }
#endif
}

/* Matrix-vector products are memory bound: split them over threads from this many weights on. */
#define DOT_PARALLEL_MIN (1 << 15)

/* y (M,N) = x (M,K) · Wᵀ through dot products, up to four rows of x per pass over W. An NF4 W
 * with an odd K has rows that start mid-byte; those go through the panel path instead. */
static bool linear_dots(dot_job* base, const float* x, float* y, int64_t M) {
  select_dots(&base->i8, &base->nf4dot);
  int64_t half = base->K / 2;
  float* split = NULL;
  if (base->nf4) {
    split = (float*)malloc((size_t)(MAX_ROWS * 2 * (half > 0 ? half : 1)) * sizeof(float));
    if (!split) return false;
  }
  for (int64_t m0 = 0; m0 < M; m0 += MAX_ROWS) {
    dot_job j = *base;
    j.mc = (int)(M - m0 < MAX_ROWS ? M - m0 : MAX_ROWS);
    j.x = x + m0 * base->K;
    j.y = y + m0 * base->N;
    if (base->nf4) {
      float* xe = split;
      float* xo = split + MAX_ROWS * half;
      for (int m = 0; m < j.mc; m++)
        for (int64_t p = 0; p < half; p++) {
          xe[m * half + p] = j.x[m * base->K + 2 * p];
          xo[m * half + p] = j.x[m * base->K + 2 * p + 1];
        }
      j.xe = xe;
      j.xo = xo;
    }
    if (base->N * base->K >= DOT_PARALLEL_MIN) pl_parallel_for(base->N, 16, dot_rows, &j);
    else dot_rows(&j, 0, base->N, 0);
  }
  free(split);
  return true;
}

/* Rows of W per panel: about 256 KB of floats, at least 16 rows. */
static int64_t panel_rows(int64_t N, int64_t K) {
  int64_t r = (65536 + K - 1) / (K > 0 ? K : 1);
  r = (r + 15) / 16 * 16;
  if (r < 16) r = 16;
  return r < N ? r : N;
}

/* forward: y (M,N) = x·Wᵀ, or backward: dx (M,K) = dy (M,N)·W, a panel of W's rows at a time */
static bool linear_panels(dequant_job* dq, const float* in, float* out, int64_t M, int64_t N, bool backward) {
  const int64_t K = dq->K;
  const int64_t R = panel_rows(N, K);
  bool ok = true;
  pthread_mutex_lock(&g_scratch_lock);
  float* buf = scratch_reserve((size_t)(R * K + M * R));
  if (!buf) {
    pthread_mutex_unlock(&g_scratch_lock);
    return false;
  }
  float* panel = buf;        /* (r, K) rows n0..n0+r of W */
  float* part = buf + R * K; /* (M, r) columns n0..n0+r of y or dy */
  for (int64_t n0 = 0; n0 < N && ok; n0 += R) {
    int64_t r = N - n0 < R ? N - n0 : R;
    dq->n0 = n0;
    dq->panel = panel;
    if (r * K >= DOT_PARALLEL_MIN) pl_parallel_for(r, 4, dequant_rows, dq);
    else dequant_rows(dq, 0, r, 0);
    if (!backward) {
      /* part (M, r) = x (M,K) · panelᵀ, then into y's columns */
      ok = pl_sgemm(in, panel, part, M, r, K, false, true, false);
      for (int64_t m = 0; m < M; m++) memcpy(out + m * N + n0, part + m * r, (size_t)r * sizeof(float));
    } else {
      /* dx (M,K) (+)= dy[:, n0:n0+r] (M, r) · panel (r, K) */
      for (int64_t m = 0; m < M; m++) memcpy(part + m * r, in + m * N + n0, (size_t)r * sizeof(float));
      ok = pl_sgemm(part, panel, out, M, K, r, false, false, n0 > 0);
    }
  }
  pthread_mutex_unlock(&g_scratch_lock);
  return ok;
}

/* ---- Node-API wrappers ------------------------------------------------------------------------ */

/* A typed array of exactly this element type (Int8Array / Uint8Array). */
static bool typed_bytes(pl_args* a, size_t i, napi_typedarray_type want, const char* what, void** ptr, size_t* len) {
  bool is_ta = false;
  napi_is_typedarray(a->env, a->argv[i], &is_ta);
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (is_ta) napi_get_typedarray_info(a->env, a->argv[i], &t, len, ptr, &ab, &off);
  if (!is_ta || t != want) return pl_fail(a, "argument %zu must be %s", i, what);
  return true;
}

static bool check_sizes(pl_args* a, int64_t M, int64_t N, int64_t K) {
  if (M < 0 || N < 0 || K < 0) return pl_fail(a, "sizes must be non-negative (M=%lld N=%lld K=%lld)", (long long)M, (long long)N, (long long)K);
  const double lim = 9007199254740992.0;
  if ((double)M * (double)K > lim || (double)N * (double)K > lim || (double)M * (double)N > lim) return pl_fail(a, "sizes are too large");
  return true;
}

/* int8Linear(x, w, scale, y, M, N, K) and int8LinearBackward(dy, w, scale, dx, M, N, K) */
static napi_value int8_common(napi_env env, napi_callback_info info, bool backward) {
  pl_args a;
  float *in, *scale, *out;
  void* w;
  size_t lin, lw, ls, lout;
  int64_t M, N, K;
  const char* name = backward ? "int8LinearBackward" : "int8Linear";
  if (!pl_args_init(env, info, name, 7, &a) || !pl_f32(&a, 0, &in, &lin) || !typed_bytes(&a, 1, napi_int8_array, "an Int8Array", &w, &lw) ||
      !pl_f32(&a, 2, &scale, &ls) || !pl_f32(&a, 3, &out, &lout) || !pl_int(&a, 4, &M) || !pl_int(&a, 5, &N) ||
      !pl_int(&a, 6, &K) || !check_sizes(&a, M, N, K))
    return NULL;
  if (!pl_need(&a, backward ? "dy" : "x", lin, backward ? M * N : M * K) || !pl_need(&a, "w", lw, N * K) ||
      !pl_need(&a, "scale", ls, N) || !pl_need(&a, backward ? "dx" : "y", lout, backward ? M * K : M * N))
    return NULL;
  if (M == 0) return NULL;
  if (N == 0 || K == 0) {
    memset(out, 0, (size_t)(backward ? M * K : M * N) * sizeof(float));
    return NULL;
  }
  bool ok;
  if (!backward && M <= DOT_PATH_MAX_M) {
    dot_job j = {.nf4 = false, .w8 = (const int8_t*)w, .scale = scale, .N = N, .K = K};
    ok = linear_dots(&j, in, out, M);
  } else {
    dequant_job d = {.nf4 = false, .w8 = (const int8_t*)w, .scale = scale, .K = K};
    ok = linear_panels(&d, in, out, M, N, backward);
  }
  if (!ok) pl_fail(&a, "out of memory for dequantization buffers");
  return NULL;
}

static napi_value js_int8_linear(napi_env env, napi_callback_info info) { return int8_common(env, info, false); }
static napi_value js_int8_linear_backward(napi_env env, napi_callback_info info) { return int8_common(env, info, true); }

/* nf4Linear(x, packed, absmax, code, y, M, N, K) and nf4LinearBackward(dy, packed, absmax, code, dx, M, N, K) */
static napi_value nf4_common(napi_env env, napi_callback_info info, bool backward) {
  pl_args a;
  float *in, *absmax, *code, *out;
  void* packed;
  size_t lin, lp, la, lc, lout;
  int64_t M, N, K;
  const char* name = backward ? "nf4LinearBackward" : "nf4Linear";
  if (!pl_args_init(env, info, name, 8, &a) || !pl_f32(&a, 0, &in, &lin) ||
      !typed_bytes(&a, 1, napi_uint8_array, "a Uint8Array", &packed, &lp) || !pl_f32(&a, 2, &absmax, &la) ||
      !pl_f32(&a, 3, &code, &lc) || !pl_f32(&a, 4, &out, &lout) || !pl_int(&a, 5, &M) || !pl_int(&a, 6, &N) ||
      !pl_int(&a, 7, &K) || !check_sizes(&a, M, N, K))
    return NULL;
  int64_t n = N * K;
  if (!pl_need(&a, backward ? "dy" : "x", lin, backward ? M * N : M * K) || !pl_need(&a, "packed", lp, (n + 1) / 2) ||
      !pl_need(&a, "absmax", la, (n + NF4_BLOCK - 1) / NF4_BLOCK) || !pl_need(&a, "code", lc, 16) ||
      !pl_need(&a, backward ? "dx" : "y", lout, backward ? M * K : M * N))
    return NULL;
  if (M == 0) return NULL;
  if (N == 0 || K == 0) {
    memset(out, 0, (size_t)(backward ? M * K : M * N) * sizeof(float));
    return NULL;
  }
  bool ok;
  if (!backward && M <= DOT_PATH_MAX_M && K % 2 == 0) {
    dot_job j = {.nf4 = true, .packed = (const uint8_t*)packed, .absmax = absmax, .code = code, .N = N, .K = K};
    ok = linear_dots(&j, in, out, M);
  } else {
    dequant_job d = {.nf4 = true, .packed = (const uint8_t*)packed, .absmax = absmax, .code = code, .K = K};
    ok = linear_panels(&d, in, out, M, N, backward);
  }
  if (!ok) pl_fail(&a, "out of memory for dequantization buffers");
  return NULL;
}

static napi_value js_nf4_linear(napi_env env, napi_callback_info info) { return nf4_common(env, info, false); }
static napi_value js_nf4_linear_backward(napi_env env, napi_callback_info info) { return nf4_common(env, info, true); }

/* nf4Dequantize(packed, absmax, code, out, n) */
static napi_value js_nf4_dequantize(napi_env env, napi_callback_info info) {
  pl_args a;
  void* packed;
  float *absmax, *code, *out;
  size_t lp, la, lc, lout;
  int64_t n;
  if (!pl_args_init(env, info, "nf4Dequantize", 5, &a) || !typed_bytes(&a, 0, napi_uint8_array, "a Uint8Array", &packed, &lp) ||
      !pl_f32(&a, 1, &absmax, &la) || !pl_f32(&a, 2, &code, &lc) || !pl_f32(&a, 3, &out, &lout) || !pl_int(&a, 4, &n))
    return NULL;
  if (n < 0) {
    pl_fail(&a, "n must be non-negative, got %lld", (long long)n);
    return NULL;
  }
  if (!pl_need(&a, "packed", lp, (n + 1) / 2) || !pl_need(&a, "absmax", la, (n + NF4_BLOCK - 1) / NF4_BLOCK) ||
      !pl_need(&a, "code", lc, 16) || !pl_need(&a, "out", lout, n))
    return NULL;
  nf4_dequant_range((const uint8_t*)packed, absmax, code, 0, n, out);
  return NULL;
}

void pl_register_quant(napi_env env, napi_value exports) {
  pl_export(env, exports, "int8Linear", js_int8_linear, "f32");
  pl_export(env, exports, "int8LinearBackward", js_int8_linear_backward, "f32");
  pl_export(env, exports, "nf4Linear", js_nf4_linear, "f32");
  pl_export(env, exports, "nf4LinearBackward", js_nf4_linear_backward, "f32");
  pl_export(env, exports, "nf4Dequantize", js_nf4_dequantize, "u8");
}
