/* Dequantize-and-multiply with frozen weights stored compactly: int8 per output channel, 4-bit
 * blockwise codes (bitsandbytes NF4) and 16-bit floats (bf16, f16); y = x·Wᵀ and dx = dy·W, never
 * materialising the float W.
 *
 * A few rows of x (decoding: M = 1, or a small batch): threads claim tiles of W's rows and compute
 * their dot products with up to four rows of x at once, dequantizing in registers, so W streams
 * from memory once in its compact form (bf16: 1/2 of the f32 bytes, int8: 1/4, NF4: ~1/7). NF4
 * codes are looked up with one permute of the 16-entry table (AVX-512) or two 8-entry permutes and
 * a blend (AVX2); x is rearranged once per call so that the codes, in the order the lookup yields
 * them, meet their elements of x directly.
 *
 * Many rows (prefill, training): W is dequantized a panel of rows at a time into a buffer that stays
 * in cache (about 256 KB), and the float GEMM multiplies the panel; the backward does the same with
 * dy's matching columns. The dequantization is O(N·K), the GEMM O(M·N·K), so the float micro-kernel
 * sets the speed. */
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

#define PL_AVX2 __attribute__((target("avx2,fma")))
#define PL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

#define MAX_ROWS 4          /* rows of x per pass over W in the dot-product path */
#define DOT_PATH_MAX_M 8    /* above this many rows of x, dequantize panels and use the GEMM */
#define NF4_BLOCK 64
#define PAIRS_PER_BLOCK (NF4_BLOCK / 2)

/* the weight formats */
enum { W_INT8, W_NF4, W_BF16, W_F16 };

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
    float s = pl_hsum256(_mm256_add_ps(acc[m][0], acc[m][1]));
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
  for (int m = 0; m < mc; m++) out[m] = pl_hsum256(total[m]) + tail[m];
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

#endif

/* ---- row tiles: several rows of W per pass, for every row of x ------------------------------
 * The decode-speed paths below compute a tile of TILE_ROWS rows of W against up to MAX_ROWS rows
 * of x in one pass: the rows' independent chains keep the vector units busy, the per-row
 * reductions and stores are paid once per tile, and the next rows are prefetched across page
 * boundaries (where the hardware prefetcher stops). */
#define TILE_ROWS 4
/* bytes of W fetched ahead of the tile being read: a few tiles, across the next page */
#define PREFETCH_AHEAD 8192

struct tile_job;
/* y[m·N + n0 + r] for m < mc, r < nr (nr <= TILE_ROWS) */
typedef void (*tile_fn)(const struct tile_job* j, int64_t n0, int nr);

typedef struct tile_job {
  tile_fn tile;
  const void* w;        /* the weight in its stored form */
  const float* scale;   /* int8 */
  const float* absmax;  /* NF4 */
  const float* code;    /* NF4 */
  i8_dot_fn i8dot;      /* the one-row kernels behind i8_rows_tile and nf4_rows_tile */
  nf4_dot_fn nf4dot;
  const float* x;       /* (mc, ldx): x's rows, rearranged when the kernel needs it */
  int64_t ldx;
  float* y;             /* (mc, N) */
  int mc;
  int64_t N, K;
  int64_t tiles;
  int parts;
  atomic_int next_part; /* parts are claimed one at a time */
} tile_job;

static void tile_range(const tile_job* j, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; t++) {
    int64_t n0 = t * TILE_ROWS;
    j->tile(j, n0, (int)(j->N - n0 < TILE_ROWS ? j->N - n0 : TILE_ROWS));
  }
}

/* Threads claim contiguous parts until none are left: on a busy machine a thread that loses its
 * core holds up one part, not half the product. */
static void tile_parts(void* ctx, int64_t begin, int64_t end, int thread) {
  tile_job* j = (tile_job*)ctx;
  for (;;) {
    int t = atomic_fetch_add(&j->next_part, 1);
    if (t >= j->parts) return;
    tile_range(j, j->tiles * t / j->parts, j->tiles * (t + 1) / j->parts);
  }
}

/* Matrix-vector products are memory bound: split them over threads from this many weights on. */
#define DOT_PARALLEL_MIN (1 << 15)
#define PARTS_PER_THREAD 4

static void tile_run(tile_job* j) {
  j->tiles = (j->N + TILE_ROWS - 1) / TILE_ROWS;
  int T = pl_num_threads();
  int64_t parts = (int64_t)T * PARTS_PER_THREAD;
  j->parts = (int)(j->tiles < parts ? j->tiles : parts);
  if (T > 1 && j->parts > 1 && j->N * j->K >= DOT_PARALLEL_MIN) {
    atomic_store(&j->next_part, 0);
    pl_parallel_for(T, 1, tile_parts, j);
  } else {
    tile_range(j, 0, j->tiles);
  }
}

/* One row of W at a time through the one-row kernels (AVX2 and scalar, whose 16 registers hold
 * no more accumulators). x holds each row's even elements, then its odd ones, for NF4. */
static void i8_rows_tile(const tile_job* j, int64_t n0, int nr) {
  const float* xs[MAX_ROWS];
  float out[MAX_ROWS];
  for (int m = 0; m < j->mc; m++) xs[m] = j->x + m * j->ldx;
  for (int64_t n = n0; n < n0 + nr; n++) {
    j->i8dot((const int8_t*)j->w + n * j->K, xs, j->mc, j->K, out);
    for (int m = 0; m < j->mc; m++) j->y[m * j->N + n] = out[m] * j->scale[n];
  }
}

static void nf4_rows_tile(const tile_job* j, int64_t n0, int nr) {
  const int64_t P = j->K / 2;
  const float* xe[MAX_ROWS];
  const float* xo[MAX_ROWS];
  float out[MAX_ROWS];
  for (int m = 0; m < j->mc; m++) {
    xe[m] = j->x + m * j->ldx;
    xo[m] = xe[m] + P;
  }
  for (int64_t n = n0; n < n0 + nr; n++) {
    j->nf4dot((const uint8_t*)j->w, j->absmax, j->code, n * P, P, xe, xo, j->mc, out);
    for (int m = 0; m < j->mc; m++) j->y[m * j->N + n] = out[m];
  }
}

#ifdef PL_X86
/* ---- int8, bf16 and f16 on AVX-512: four rows of W per pass ---------------------------------
 * One body for the three formats whose weights widen to f32 sixteen at a time; the format is a
 * constant of each caller, so every branch on it folds away. */
/* 16 weights from element k of a row, widened to f32; the first n (< 16) when masked */
PL_AVX512 static inline __m512 widen16_avx512(const void* row, int64_t k, const int f) {
  if (f == W_INT8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)((const int8_t*)row + k))));
  __m256i h = _mm256_loadu_si256((const __m256i*)((const uint16_t*)row + k));
  return f == W_BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}
PL_AVX512 static inline __m512 widen16n_avx512(const void* row, int64_t k, __mmask16 mask, const int f) {
  if (f == W_INT8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, (const int8_t*)row + k)));
  __m256i h = _mm256_maskz_loadu_epi16(mask, (const uint16_t*)row + k);
  return f == W_BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

PL_AVX512 static inline __attribute__((always_inline)) void widened_tile_avx512_body(const tile_job* j, int64_t n0, int nr,
                                                                                     const int mc, const int f) {
  const int64_t K = j->K;
  const size_t bytes = f == W_INT8 ? 1 : 2; /* per weight */
  const char* p[TILE_ROWS]; /* rows past nr repeat row n0 */
  for (int r = 0; r < TILE_ROWS; r++) p[r] = (const char*)j->w + (size_t)(n0 + (r < nr ? r : 0)) * K * bytes;
  __m512 acc[TILE_ROWS][MAX_ROWS];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int m = 0; m < mc; m++) acc[r][m] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    for (int r = 0; r < TILE_ROWS; r++) {
      /* one prefetch per 64-byte line of W */
      if (((k * bytes) & 63) == 0) _mm_prefetch(p[r] + k * bytes + PREFETCH_AHEAD, _MM_HINT_T0);
      __m512 w0 = widen16_avx512(p[r], k, f), w1 = widen16_avx512(p[r], k + 16, f);
      for (int m = 0; m < mc; m++) {
        const float* x = j->x + m * j->ldx + k;
        acc[r][m] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc[r][m]);
        acc[r][m] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), acc[r][m]);
      }
    }
  }
  for (; k < K; k += 16) {
    __mmask16 mask = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
    for (int r = 0; r < TILE_ROWS; r++) {
      __m512 w0 = widen16n_avx512(p[r], k, mask, f);
      for (int m = 0; m < mc; m++) acc[r][m] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mask, j->x + m * j->ldx + k), acc[r][m]);
    }
  }
  for (int m = 0; m < mc; m++)
    for (int r = 0; r < nr; r++) {
      float v = _mm512_reduce_add_ps(acc[r][m]);
      j->y[m * j->N + n0 + r] = f == W_INT8 ? v * j->scale[n0 + r] : v;
    }
}

/* the row count and the format as constants, so the accumulators live in registers */
#define WIDENED_TILE_AVX512(name, fmt)                                          \
  PL_AVX512 static void name(const tile_job* j, int64_t n0, int nr) {           \
    switch (j->mc) {                                                            \
      case 1: widened_tile_avx512_body(j, n0, nr, 1, fmt); break;               \
      case 2: widened_tile_avx512_body(j, n0, nr, 2, fmt); break;               \
      case 3: widened_tile_avx512_body(j, n0, nr, 3, fmt); break;               \
      case 4: widened_tile_avx512_body(j, n0, nr, 4, fmt); break;               \
    }                                                                           \
  }
WIDENED_TILE_AVX512(i8_tile_avx512, W_INT8)
WIDENED_TILE_AVX512(bf16_tile_avx512, W_BF16)
WIDENED_TILE_AVX512(f16_tile_avx512, W_F16)
#undef WIDENED_TILE_AVX512

/* ---- NF4 on AVX-512, codes read in place ---------------------------------------------------------
 * 32 bytes of a row (64 weights) widen to 16 dword lanes of two bytes each with one vpmovzxwd. The
 * permute reads only the low 4 bits of each index lane, so the lane itself and the lane shifted
 * right by 4, 8 and 12 look up its four codes with no masking: lane i holds elements 4i+1, 4i,
 * 4i+3 and 4i+2 of the 64, and x is rearranged once per call to match (nf4_group_x). This needs
 * K % 32 == 0, so that every row starts on a half block: a row whose first byte is not 32-aligned
 * (K % 64 == 32, odd rows) has each 32-byte piece straddle two blocks exactly at the half vector,
 * lanes 0-7 in one and 8-15 in the next. */
static const int NF4_LANE_ELEM[4] = {1, 0, 3, 2};

/* xg (Gp·64) for one row of x: group g, vector s, lane i = x[64g + 4i + NF4_LANE_ELEM[s]], zero past K */
static void nf4_group_x(const float* x, int64_t K, float* xg) {
  int64_t Gp = (K + 63) / 64;
  for (int64_t g = 0; g < Gp; g++)
    for (int s = 0; s < 4; s++)
      for (int i = 0; i < 16; i++) {
        int64_t k = 64 * g + 4 * i + NF4_LANE_ELEM[s];
        xg[64 * g + 16 * s + i] = k < K ? x[k] : 0.f;
      }
}

PL_AVX512 static inline __attribute__((always_inline)) void nf4_tile_avx512_body(const tile_job* j, int64_t n0, int nr,
                                                                                 const int mc, const bool aligned) {
  const uint8_t* packed = (const uint8_t*)j->w;
  const float* absmax = j->absmax;
  const int64_t K = j->K, G = K / 64;
  const __m512 table = _mm512_loadu_ps(j->code);
  int64_t at[TILE_ROWS]; /* byte offset of each row in packed; rows past nr repeat row n0 */
  for (int r = 0; r < TILE_ROWS; r++) at[r] = (n0 + (r < nr ? r : 0)) * (K / 2);
  __m512 acc[TILE_ROWS][MAX_ROWS];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int m = 0; m < mc; m++) acc[r][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; g++) {
    for (int r = 0; r < TILE_ROWS; r++) {
      const int64_t b = at[r] + 32 * g;
      _mm_prefetch((const char*)(packed + b + PREFETCH_AHEAD), _MM_HINT_T0);
      __m512i q = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(packed + b)));
      __m512 c0 = _mm512_permutexvar_ps(q, table);
      __m512 c1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
      __m512 c2 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 8), table);
      __m512 c3 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 12), table);
      __m512 s = aligned ? _mm512_set1_ps(absmax[b >> 5])
                         : _mm512_insertf32x8(_mm512_set1_ps(absmax[b >> 5]), _mm256_set1_ps(absmax[(b + 16) >> 5]), 1);
      for (int m = 0; m < mc; m++) {
        const float* xv = j->x + m * j->ldx + 64 * g;
        __m512 d = _mm512_mul_ps(c0, _mm512_loadu_ps(xv));
        d = _mm512_fmadd_ps(c1, _mm512_loadu_ps(xv + 16), d);
        d = _mm512_fmadd_ps(c2, _mm512_loadu_ps(xv + 32), d);
        d = _mm512_fmadd_ps(c3, _mm512_loadu_ps(xv + 48), d);
        acc[r][m] = _mm512_fmadd_ps(d, s, acc[r][m]);
      }
    }
  }
  if (!aligned && (K & 63)) {
    /* the last 32 weights of each row: 16 bytes in lanes 0-7, within one block; x is zero in 8-15 */
    for (int r = 0; r < TILE_ROWS; r++) {
      const int64_t b = at[r] + 32 * G;
      __m512i q = _mm512_cvtepu16_epi32(_mm256_zextsi128_si256(_mm_loadu_si128((const __m128i*)(packed + b))));
      __m512 c0 = _mm512_permutexvar_ps(q, table);
      __m512 c1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
      __m512 c2 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 8), table);
      __m512 c3 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 12), table);
      __m512 s = _mm512_set1_ps(absmax[b >> 5]);
      for (int m = 0; m < mc; m++) {
        const float* xv = j->x + m * j->ldx + 64 * G;
        __m512 d = _mm512_mul_ps(c0, _mm512_loadu_ps(xv));
        d = _mm512_fmadd_ps(c1, _mm512_loadu_ps(xv + 16), d);
        d = _mm512_fmadd_ps(c2, _mm512_loadu_ps(xv + 32), d);
        d = _mm512_fmadd_ps(c3, _mm512_loadu_ps(xv + 48), d);
        acc[r][m] = _mm512_fmadd_ps(d, s, acc[r][m]);
      }
    }
  }
  for (int m = 0; m < mc; m++)
    for (int r = 0; r < nr; r++) j->y[m * j->N + n0 + r] = _mm512_reduce_add_ps(acc[r][m]);
}

/* the row count and block alignment as constants, so the accumulators live in registers */
PL_AVX512 static void nf4_tile_avx512(const tile_job* j, int64_t n0, int nr) {
  bool aligned = j->K % 64 == 0;
  switch (j->mc * 2 + aligned) {
    case 2: nf4_tile_avx512_body(j, n0, nr, 1, false); break;
    case 3: nf4_tile_avx512_body(j, n0, nr, 1, true); break;
    case 4: nf4_tile_avx512_body(j, n0, nr, 2, false); break;
    case 5: nf4_tile_avx512_body(j, n0, nr, 2, true); break;
    case 6: nf4_tile_avx512_body(j, n0, nr, 3, false); break;
    case 7: nf4_tile_avx512_body(j, n0, nr, 3, true); break;
    case 8: nf4_tile_avx512_body(j, n0, nr, 4, false); break;
    case 9: nf4_tile_avx512_body(j, n0, nr, 4, true); break;
  }
}
#endif

/* ---- 16-bit float weights (bf16, f16), read in place --------------------------------------------
 * Widening is exact: a bf16 is the top half of an f32 (a 16-bit shift), an f16 converts with
 * vcvtph2ps (AVX-512) or by moving its fields (scalar). The products accumulate in f32, so the
 * results are those of the f32 GEMM on the widened weight, in another summation order. */

static inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 31, m = h & 1023, bits;
  if (e == 31) bits = sign | 0x7f800000u | (m << 13);
  else if (e) bits = sign | ((e + 112) << 23) | (m << 13);
  else {
    float f = (float)m * 0x1p-24f; /* subnormal (or zero): exact in f32 */
    memcpy(&bits, &f, sizeof bits);
    bits |= sign;
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline void widen_half(const uint16_t* src, int64_t n, bool bf16, float* dst) {
  if (bf16)
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
  else
    for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

static inline __attribute__((always_inline)) void half_tile_scalar_body(const tile_job* j, int64_t n0, int nr, const bool bf16) {
  const uint16_t* w = (const uint16_t*)j->w;
  for (int r = 0; r < nr; r++) {
    const uint16_t* row = w + (n0 + r) * j->K;
    for (int m = 0; m < j->mc; m++) {
      const float* x = j->x + m * j->ldx;
      float s = 0.f;
      for (int64_t k = 0; k < j->K; k++) s += (bf16 ? bf16_to_f32(row[k]) : f16_to_f32(row[k])) * x[k];
      j->y[m * j->N + n0 + r] = s;
    }
  }
}
static void bf16_tile_scalar(const tile_job* j, int64_t n0, int nr) { half_tile_scalar_body(j, n0, nr, true); }
static void f16_tile_scalar(const tile_job* j, int64_t n0, int nr) { half_tile_scalar_body(j, n0, nr, false); }

#ifdef PL_X86
/* AVX2 has 16 registers: one row of W at a time, two accumulators per row of x */
PL_AVX2 static inline __attribute__((always_inline)) void bf16_row_avx2_body(const tile_job* j, int64_t n, const int mc) {
  const int64_t K = j->K;
  const uint16_t* p = (const uint16_t*)j->w + n * K;
  __m256 acc[MAX_ROWS][2];
  for (int m = 0; m < mc; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    if ((k & 31) == 0) _mm_prefetch((const char*)(p + k) + PREFETCH_AHEAD, _MM_HINT_T0);
    __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(p + k))), 16));
    __m256 w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(p + k + 8))), 16));
    for (int m = 0; m < mc; m++) {
      const float* x = j->x + m * j->ldx + k;
      acc[m][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc[m][1]);
    }
  }
  for (int m = 0; m < mc; m++) {
    const float* x = j->x + m * j->ldx;
    float s = pl_hsum256(_mm256_add_ps(acc[m][0], acc[m][1]));
    for (int64_t t = k; t < K; t++) s += bf16_to_f32(p[t]) * x[t];
    j->y[m * j->N + n] = s;
  }
}

/* the row count as a constant, so the accumulators live in registers */
PL_AVX2 static void bf16_tile_avx2(const tile_job* j, int64_t n0, int nr) {
  for (int64_t n = n0; n < n0 + nr; n++) {
    switch (j->mc) {
      case 1: bf16_row_avx2_body(j, n, 1); break;
      case 2: bf16_row_avx2_body(j, n, 2); break;
      case 3: bf16_row_avx2_body(j, n, 3); break;
      case 4: bf16_row_avx2_body(j, n, 4); break;
    }
  }
}

#endif

/* f16 on AVX2 takes the portable path: AVX2 alone does not promise F16C's conversion. */
static tile_fn select_half_tile(bool bf16) {
#ifdef PL_X86
  if (pl_cpu_avx512f()) return bf16 ? bf16_tile_avx512 : f16_tile_avx512;
  if (pl_cpu_avx2_fma() && bf16) return bf16_tile_avx2;
#endif
  return bf16 ? bf16_tile_scalar : f16_tile_scalar;
}

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
  int kind;
  const int8_t* w8;
  const float* scale;
  const uint8_t* packed;
  const float* absmax;
  const float* code;
  const uint16_t* w16;
  int64_t K, n0;
  float* panel; /* (rows, K) */
} dequant_job;

static void dequant_rows(void* ctx, int64_t begin, int64_t end, int thread) {
  dequant_job* j = (dequant_job*)ctx;
  for (int64_t r = begin; r < end; r++) {
    int64_t n = j->n0 + r;
    float* dst = j->panel + r * j->K;
    if (j->kind == W_NF4) {
      nf4_dequant_range(j->packed, j->absmax, j->code, n * j->K, j->K, dst);
    } else if (j->kind == W_BF16 || j->kind == W_F16) {
      widen_half(j->w16 + n * j->K, j->K, j->kind == W_BF16, dst);
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

/* y (M,N) = x (M,K) · Wᵀ through row tiles, up to MAX_ROWS rows of x per pass over W. */
static void int8_linear_tiles(const int8_t* w, const float* scale, const float* x, float* y, int64_t M, int64_t N, int64_t K) {
  tile_fn tile = i8_rows_tile;
  i8_dot_fn dot = i8_dot_scalar;
#ifdef PL_X86
  if (pl_cpu_avx512f()) tile = i8_tile_avx512;
  else if (pl_cpu_avx2_fma()) dot = i8_dot_avx2;
#endif
  for (int64_t m0 = 0; m0 < M; m0 += MAX_ROWS) {
    tile_job j = {.tile = tile, .i8dot = dot, .w = w, .scale = scale, .x = x + m0 * K, .ldx = K, .y = y + m0 * N, .N = N, .K = K};
    j.mc = (int)(M - m0 < MAX_ROWS ? M - m0 : MAX_ROWS);
    tile_run(&j);
  }
}

/* The same for NF4 with an even K (a row is whole bytes), x rearranged once per call for the
 * kernel: into lookup order on AVX-512 when K % 32 == 0, else into even and odd elements for the
 * one-row kernels (AVX2 serves AVX-512 machines there). */
static bool nf4_linear_tiles(const uint8_t* packed, const float* absmax, const float* code, const float* x, float* y,
                             int64_t M, int64_t N, int64_t K) {
  tile_fn tile = nf4_rows_tile;
  nf4_dot_fn dot = nf4_dot_scalar;
  bool grouped = false;
#ifdef PL_X86
  if (pl_cpu_avx2_fma()) dot = nf4_dot_avx2;
  grouped = pl_cpu_avx512f() && K % 32 == 0;
  if (grouped) tile = nf4_tile_avx512;
#endif
  const int64_t ldx = grouped ? (K + 63) / 64 * 64 : K, P = K / 2;
  float* xr = (float*)malloc((size_t)(MAX_ROWS * ldx) * sizeof(float));
  if (!xr) return false;
  for (int64_t m0 = 0; m0 < M; m0 += MAX_ROWS) {
    tile_job j = {.tile = tile, .nf4dot = dot, .w = packed, .absmax = absmax, .code = code, .x = xr, .ldx = ldx,
                  .y = y + m0 * N, .N = N, .K = K};
    j.mc = (int)(M - m0 < MAX_ROWS ? M - m0 : MAX_ROWS);
    for (int m = 0; m < j.mc; m++) {
      const float* src = x + (m0 + m) * K;
      float* dst = xr + m * ldx;
#ifdef PL_X86
      if (grouped) {
        nf4_group_x(src, K, dst);
        continue;
      }
#endif
      for (int64_t p = 0; p < P; p++) {
        dst[p] = src[2 * p];
        dst[P + p] = src[2 * p + 1];
      }
    }
    tile_run(&j);
  }
  free(xr);
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

/* int8Linear(x, w, scale, y, M, N, K) and int8LinearBackward(dy, w, scale, dx, M, N, K) */
static napi_value int8_common(napi_env env, napi_callback_info info, bool backward) {
  pl_args a;
  float *in, *scale, *out;
  void* w;
  size_t lin, lw, ls, lout;
  int64_t M, N, K;
  const char* name = backward ? "int8LinearBackward" : "int8Linear";
  if (!pl_args_init(env, info, name, 7, &a) || !pl_f32(&a, 0, &in, &lin) || !pl_typed(&a, 1, napi_int8_array, "an Int8Array", &w, &lw) ||
      !pl_f32(&a, 2, &scale, &ls) || !pl_f32(&a, 3, &out, &lout) || !pl_int(&a, 4, &M) || !pl_int(&a, 5, &N) ||
      !pl_int(&a, 6, &K) || !pl_matrix_sizes(&a, M, N, K))
    return NULL;
  if (!pl_need(&a, backward ? "dy" : "x", lin, backward ? M * N : M * K) || !pl_need(&a, "w", lw, N * K) ||
      !pl_need(&a, "scale", ls, N) || !pl_need(&a, backward ? "dx" : "y", lout, backward ? M * K : M * N))
    return NULL;
  if (M == 0) return NULL;
  if (N == 0 || K == 0) {
    memset(out, 0, (size_t)(backward ? M * K : M * N) * sizeof(float));
    return NULL;
  }
  bool ok = true;
  if (!backward && M <= DOT_PATH_MAX_M) {
    int8_linear_tiles((const int8_t*)w, scale, in, out, M, N, K);
  } else {
    dequant_job d = {.kind = W_INT8, .w8 = (const int8_t*)w, .scale = scale, .K = K};
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
      !pl_typed(&a, 1, napi_uint8_array, "a Uint8Array", &packed, &lp) || !pl_f32(&a, 2, &absmax, &la) ||
      !pl_f32(&a, 3, &code, &lc) || !pl_f32(&a, 4, &out, &lout) || !pl_int(&a, 5, &M) || !pl_int(&a, 6, &N) ||
      !pl_int(&a, 7, &K) || !pl_matrix_sizes(&a, M, N, K))
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
    ok = nf4_linear_tiles((const uint8_t*)packed, absmax, code, in, out, M, N, K);
  } else {
    dequant_job d = {.kind = W_NF4, .packed = (const uint8_t*)packed, .absmax = absmax, .code = code, .K = K};
    ok = linear_panels(&d, in, out, M, N, backward);
  }
  if (!ok) pl_fail(&a, "out of memory for dequantization buffers");
  return NULL;
}

static napi_value js_nf4_linear(napi_env env, napi_callback_info info) { return nf4_common(env, info, false); }
static napi_value js_nf4_linear_backward(napi_env env, napi_callback_info info) { return nf4_common(env, info, true); }

/* halfLinear(x, w, wDType, y, M, N, K) and halfLinearBackward(dy, w, wDType, dx, M, N, K) */
static napi_value half_common(napi_env env, napi_callback_info info, bool backward) {
  pl_args a;
  float *in, *out;
  void* w;
  size_t lin, lw, lout;
  char dtype[8];
  int64_t M, N, K;
  const char* name = backward ? "halfLinearBackward" : "halfLinear";
  if (!pl_args_init(env, info, name, 7, &a) || !pl_f32(&a, 0, &in, &lin) || !pl_typed(&a, 1, napi_uint16_array, "a Uint16Array", &w, &lw) ||
      !pl_string(&a, 2, dtype, sizeof dtype) || !pl_f32(&a, 3, &out, &lout) || !pl_int(&a, 4, &M) || !pl_int(&a, 5, &N) ||
      !pl_int(&a, 6, &K) || !pl_matrix_sizes(&a, M, N, K))
    return NULL;
  bool bf16 = strcmp(dtype, "bf16") == 0;
  if (!bf16 && strcmp(dtype, "f16") != 0) {
    pl_fail(&a, "wDType must be 'bf16' or 'f16', got '%s'", dtype);
    return NULL;
  }
  if (!pl_need(&a, backward ? "dy" : "x", lin, backward ? M * N : M * K) || !pl_need(&a, "w", lw, N * K) ||
      !pl_need(&a, backward ? "dx" : "y", lout, backward ? M * K : M * N))
    return NULL;
  if (M == 0) return NULL;
  if (N == 0 || K == 0) {
    memset(out, 0, (size_t)(backward ? M * K : M * N) * sizeof(float));
    return NULL;
  }
  bool ok = true;
  if (!backward && M <= DOT_PATH_MAX_M) {
    for (int64_t m0 = 0; m0 < M; m0 += MAX_ROWS) {
      tile_job j = {.tile = select_half_tile(bf16), .w = w, .x = in + m0 * K, .ldx = K, .y = out + m0 * N, .N = N, .K = K};
      j.mc = (int)(M - m0 < MAX_ROWS ? M - m0 : MAX_ROWS);
      tile_run(&j);
    }
  } else {
    dequant_job d = {.kind = bf16 ? W_BF16 : W_F16, .w16 = (const uint16_t*)w, .K = K};
    ok = linear_panels(&d, in, out, M, N, backward);
  }
  if (!ok) pl_fail(&a, "out of memory for dequantization buffers");
  return NULL;
}

static napi_value js_half_linear(napi_env env, napi_callback_info info) { return half_common(env, info, false); }
static napi_value js_half_linear_backward(napi_env env, napi_callback_info info) { return half_common(env, info, true); }

/* nf4Dequantize(packed, absmax, code, out, n) */
static napi_value js_nf4_dequantize(napi_env env, napi_callback_info info) {
  pl_args a;
  void* packed;
  float *absmax, *code, *out;
  size_t lp, la, lc, lout;
  int64_t n;
  if (!pl_args_init(env, info, "nf4Dequantize", 5, &a) || !pl_typed(&a, 0, napi_uint8_array, "a Uint8Array", &packed, &lp) ||
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
  pl_export(env, exports, "halfLinear", js_half_linear, "f32");
  pl_export(env, exports, "halfLinearBackward", js_half_linear_backward, "f32");
}
