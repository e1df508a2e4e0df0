/* Linear layers with the activations rounded as well as the weights (opt-in, inference only), so
 * the dot products run on the CPU's low-precision instructions:
 *
 *   int8LinearQ8: each row of x is quantized to int8 in blocks of 32 along K (llama.cpp's Q8_0) and
 *   multiplied with the int8 weight in integers: vpdpbusd (AVX-512 VNNI), else vpmaddubsw (AVX2),
 *   else plain C. Every block sum is an exact int32, and the float steps that combine them
 *   (acc += d_b·S_b in block order, then scale·acc) are the same on every path, so all paths and the
 *   ref kernel agree bit for bit. For that the compiler must not fuse a multiply and an add into an
 *   FMA (one rounding instead of two): fp-contract is off in this file.
 *
 *   bf16LinearDot: x is rounded to bf16 and multiplied with a bf16 weight in pairs along K with
 *   vdpbf16ps (AVX-512 BF16), else in f32 FMAs of the widened values.
 *
 * VNNI layout: a tile of 16 rows of W is transposed once into 4-byte columns (zmm j holds bytes
 * 4j..4j+3 of each of the 16 rows), so one vpdpbusd with 4 bytes of x broadcast adds 4 products to
 * each row's own lane: the block sums come out per row without horizontal reductions, and the
 * transposed tile is reused for every row of x (prefill) from a thread's scratch. vpdpbusd takes
 * unsigned×signed bytes: the tile holds w + 128 (the sign bit flipped) and x stays signed, so each
 * block sum carries 128·Σq, which depends on x alone and is subtracted up front (the accumulator
 * starts at −128·Σq). */
#pragma GCC optimize("fp-contract=off")
#include "plinth.h"
#include <math.h>
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
#define PL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define PL_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

#define Q8_BLOCK 32
#define VNNI_ROWS 16   /* rows of W per tile: one per zmm lane */
#define MAX_GROUP_M 8  /* rows of x per pass over a tile (accumulators in registers) */
#define GROUP_M 4      /* then groups of 4, then the rest */
#define DIRECT_ROWS 4  /* rows of W per pass in bf16's decode path */
#define PARALLEL_MIN (1 << 15)
#define PARTS_PER_THREAD 4

/* ---- scratch: one cached buffer (fresh pages cost more than a decode step), a private one when
 * another call holds it ----------------------------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static void* g_buf = NULL;
static size_t g_cap = 0;

/* A 64-byte aligned buffer of `bytes`; *owned says whether the caller frees it (else it unlocks). */
static void* scratch_take(size_t bytes, bool* owned) {
  bytes = (bytes + 63) / 64 * 64;
  if (pthread_mutex_trylock(&g_lock) == 0) {
    if (bytes <= g_cap) {
      *owned = false;
      return g_buf;
    }
    void* p = aligned_alloc(64, bytes);
    if (p) {
      free(g_buf);
      g_buf = p;
      g_cap = bytes;
      *owned = false;
      return p;
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
  }
  *owned = true;
  return aligned_alloc(64, bytes);
}

static void scratch_give(void* p, bool owned) {
  if (owned) free(p);
  else pthread_mutex_unlock(&g_lock);
}

/* ---- quantization of x (Q8_0) ----------------------------------------------------------------
 * Per block of 32 (the last one shorter when K % 32 != 0): d = absmax/127, q = round(x/d) with
 * ties away from zero, computed as x·(1/d) in f32 as llama.cpp does; q is 0 in an all-zero block,
 * for NaN, and in the padding up to the whole block. corr = −128·Σq. */
static void q8_quantize_row_scalar(const float* x, int64_t K, int8_t* q, float* d, int32_t* corr) {
  const int64_t nb = (K + Q8_BLOCK - 1) / Q8_BLOCK;
  for (int64_t b = 0; b < nb; b++) {
    const int64_t k0 = b * Q8_BLOCK, n = K - k0 < Q8_BLOCK ? K - k0 : Q8_BLOCK;
    float amax = 0.f;
    for (int64_t i = 0; i < n; i++) {
      float a = fabsf(x[k0 + i]);
      if (a > amax) amax = a;
    }
    const float db = amax / 127.f, id = db != 0.f ? 1.f / db : 0.f;
    int32_t s = 0;
    for (int64_t i = 0; i < Q8_BLOCK; i++) {
      int v = 0;
      if (i < n) {
        float r = roundf(x[k0 + i] * id);
        v = r != r ? 0 : r > 127.f ? 127 : r < -127.f ? -127 : (int)r;
      }
      q[k0 + i] = (int8_t)v;
      s += v;
    }
    d[b] = db;
    corr[b] = -128 * s;
  }
}

#ifdef PL_X86
/* The same rule on 16 lanes; round-half-away is trunc, then one step away from zero when the
 * fraction (exact) is at least a half. */
PL_AVX512 static inline __m512i q8_round16(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.f), _mm512_and_ps(v, _mm512_set1_ps(-0.f)));
  __m512 r = _mm512_mask_add_ps(t, up, t, one);
  r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), r);
  r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.f)), _mm512_set1_ps(127.f));
  return _mm512_cvttps_epi32(r);
}

PL_AVX512 static void q8_quantize_row_avx512(const float* x, int64_t K, int8_t* q, float* d, int32_t* corr) {
  const int64_t nb = (K + Q8_BLOCK - 1) / Q8_BLOCK;
  for (int64_t b = 0; b < nb; b++) {
    const int64_t k0 = b * Q8_BLOCK, n = K - k0 < Q8_BLOCK ? K - k0 : Q8_BLOCK;
    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + k0), x1 = _mm512_maskz_loadu_ps(m1, x + k0 + 16);
    /* max(|x|, acc) keeps acc when |x| is NaN, as the scalar comparison does */
    const __m512 a = _mm512_max_ps(_mm512_abs_ps(x1), _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps()));
    const float amax = _mm512_reduce_max_ps(a);
    const float db = amax / 127.f, id = db != 0.f ? 1.f / db : 0.f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 = q8_round16(_mm512_mul_ps(x0, vid)), q1 = q8_round16(_mm512_mul_ps(x1, vid));
    _mm_storeu_si128((__m128i*)(q + k0), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i*)(q + k0 + 16), _mm512_cvtepi32_epi8(q1));
    d[b] = db;
    corr[b] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  }
}
#endif

/* ---- int8 × Q8 jobs ---------------------------------------------------------------------------- */

typedef struct q8_job q8_job;
/* y[m·N + n] for every m and rows n0 ≤ n < n0 + nr; tb is the thread's scratch */
typedef void (*q8_tile_fn)(const q8_job* j, int64_t n0, int nr, uint8_t* tb);

struct q8_job {
  q8_tile_fn tile;
  int tile_rows;
  const int8_t* w;
  const float* scale;
  const int8_t* xq;      /* (M, Kp) quantized x, zero padded */
  const float* d;        /* (M, nb) */
  const int32_t* corr;   /* (M, nb) */
  float* y;
  int64_t M, N, K, Kp, nb;
  uint8_t* tiles;        /* per thread: tile_bytes */
  size_t tile_bytes;
  int64_t ntiles;
  int parts;
  atomic_int next_part;
};

static void q8_scalar_tile(const q8_job* j, int64_t n0, int nr, uint8_t* tb) {
  for (int64_t n = n0; n < n0 + nr; n++) {
    const int8_t* wr = j->w + n * j->K;
    for (int64_t m = 0; m < j->M; m++) {
      const int8_t* q = j->xq + m * j->Kp;
      const float* d = j->d + m * j->nb;
      float acc = 0.f;
      for (int64_t b = 0; b < j->nb; b++) {
        const int64_t k0 = b * Q8_BLOCK, e = j->K - k0 < Q8_BLOCK ? j->K : k0 + Q8_BLOCK;
        int32_t s = 0;
        for (int64_t k = k0; k < e; k++) s += (int32_t)wr[k] * q[k];
        acc = acc + d[b] * (float)s;
      }
      j->y[m * j->N + n] = j->scale[n] * acc;
    }
  }
}

#ifdef PL_X86
PL_AVX2 static inline int32_t hsum_epi32_avx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

/* One row of W at a time; per block |w|·sign(q, w) in vpmaddubsw (|w| ≤ 128 unsigned, |q| ≤ 127:
 * pairs stay below 2^15), widened to int32 pairs by vpmaddwd. */
PL_AVX2 static void q8_avx2_tile(const q8_job* j, int64_t n0, int nr, uint8_t* tb) {
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t K = j->K, nb = j->nb;
  for (int64_t n = n0; n < n0 + nr; n++) {
    const int8_t* wr = j->w + n * K;
    for (int64_t m0 = 0; m0 < j->M; m0 += GROUP_M) {
      const int mc = j->M - m0 < GROUP_M ? (int)(j->M - m0) : GROUP_M;
      float acc[GROUP_M] = {0.f, 0.f, 0.f, 0.f};
      for (int64_t b = 0; b < nb; b++) {
        const int64_t k0 = b * Q8_BLOCK;
        __m256i w;
        if (k0 + Q8_BLOCK <= K) {
          w = _mm256_loadu_si256((const __m256i*)(wr + k0));
        } else {
          int8_t pad[Q8_BLOCK] = {0};
          memcpy(pad, wr + k0, (size_t)(K - k0));
          w = _mm256_loadu_si256((const __m256i*)pad);
        }
        const __m256i aw = _mm256_abs_epi8(w);
        for (int m = 0; m < mc; m++) {
          const __m256i q = _mm256_loadu_si256((const __m256i*)(j->xq + (m0 + m) * j->Kp + k0));
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(q, w)), ones);
          acc[m] = acc[m] + j->d[(m0 + m) * nb + b] * (float)hsum_epi32_avx2(p);
        }
      }
      for (int m = 0; m < mc; m++) j->y[(m0 + m) * j->N + n] = j->scale[n] * acc[m];
    }
  }
}

/* 16 rows × 16 dwords → 16 columns × 16 rows: r[i] lane c (dword c of row i) ends in out[c] lane i. */
PL_AVX512 static inline __attribute__((always_inline)) void transpose16_epi32(const __m512i r[16], __m512i out[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  /* u[4g + c], 128-bit lane L: dword 4L + c of rows 4g..4g+3 */
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  /* a 4×4 transpose of 128-bit lanes for each c */
  for (int c = 0; c < 4; c++) {
    const __m512i a0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), a1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
    const __m512i a2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88), a3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
    out[c] = _mm512_shuffle_i32x4(a0, a2, 0x88);
    out[8 + c] = _mm512_shuffle_i32x4(a0, a2, 0xDD);
    out[4 + c] = _mm512_shuffle_i32x4(a1, a3, 0x88);
    out[12 + c] = _mm512_shuffle_i32x4(a1, a3, 0xDD);
  }
}

/* bytes of W fetched ahead of the chunk being transposed */
#define PREFETCH_AHEAD 4096

/* tb (Kp/4 columns of 64 bytes) = the tile's rows transposed, as w + 128; rows past nr repeat row n0 */
PL_VNNI static void q8_vnni_transpose(const q8_job* j, int64_t n0, int nr, uint8_t* tb) {
  const int64_t K = j->K;
  const int8_t* rows[VNNI_ROWS];
  for (int r = 0; r < VNNI_ROWS; r++) rows[r] = j->w + (n0 + (r < nr ? r : 0)) * K;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int64_t k = 0; k < j->Kp; k += 64) {
    __m512i r[VNNI_ROWS], c[VNNI_ROWS];
    const __mmask64 mask = K - k >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (K - k)) - 1;
    for (int i = 0; i < VNNI_ROWS; i++) {
      _mm_prefetch((const char*)rows[i] + k + PREFETCH_AHEAD, _MM_HINT_T0);
      r[i] = _mm512_maskz_loadu_epi8(mask, rows[i] + k);
    }
    transpose16_epi32(r, c);
    /* columns past Kp (when Kp % 64 == 32) land in the tile's slack */
    for (int i = 0; i < VNNI_ROWS; i++) _mm512_store_si512((__m512i*)(tb + (k / 4 + i) * 64), _mm512_xor_si512(c[i], flip));
  }
}

PL_VNNI static inline __attribute__((always_inline)) void q8_vnni_rows(const q8_job* j, int64_t n0, int nr, const uint8_t* tb,
                                                                        int64_t m0, const int mc) {
  const __mmask16 rows = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  __m512 acc[MAX_GROUP_M];
  const int32_t* xq[MAX_GROUP_M];
  for (int m = 0; m < mc; m++) {
    acc[m] = _mm512_setzero_ps();
    xq[m] = (const int32_t*)(j->xq + (m0 + m) * j->Kp);
  }
  for (int64_t b = 0; b < j->nb; b++) {
    __m512i s[MAX_GROUP_M];
    for (int m = 0; m < mc; m++) s[m] = _mm512_set1_epi32(j->corr[(m0 + m) * j->nb + b]);
    for (int c = 0; c < Q8_BLOCK / 4; c++) {
      const __m512i t = _mm512_load_si512((const __m512i*)(tb + (b * (Q8_BLOCK / 4) + c) * 64));
      for (int m = 0; m < mc; m++) s[m] = _mm512_dpbusd_epi32(s[m], t, _mm512_set1_epi32(xq[m][b * (Q8_BLOCK / 4) + c]));
    }
    for (int m = 0; m < mc; m++)
      acc[m] = _mm512_add_ps(acc[m], _mm512_mul_ps(_mm512_cvtepi32_ps(s[m]), _mm512_set1_ps(j->d[(m0 + m) * j->nb + b])));
  }
  const __m512 sc = _mm512_maskz_loadu_ps(rows, j->scale + n0);
  for (int m = 0; m < mc; m++) _mm512_mask_storeu_ps(j->y + (m0 + m) * j->N + n0, rows, _mm512_mul_ps(sc, acc[m]));
}

/* Decoding (a few rows of x): each 64-byte chunk of the 16 rows is transposed in registers and
 * used at once, instead of through the stored tile. */
PL_VNNI static inline __attribute__((always_inline)) void q8_vnni_direct(const q8_job* j, int64_t n0, int nr, const int mc) {
  const int64_t K = j->K;
  const int8_t* p[VNNI_ROWS];
  for (int r = 0; r < VNNI_ROWS; r++) p[r] = j->w + (n0 + (r < nr ? r : 0)) * K;
  const __mmask16 rows = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const int32_t* xq[GROUP_M];
  __m512 acc[GROUP_M];
  for (int m = 0; m < mc; m++) {
    xq[m] = (const int32_t*)(j->xq + m * j->Kp);
    acc[m] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < j->Kp; k += 64) {
    __m512i r[VNNI_ROWS], c[VNNI_ROWS];
    const __mmask64 mask = K - k >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (K - k)) - 1;
    for (int i = 0; i < VNNI_ROWS; i++) {
      _mm_prefetch((const char*)p[i] + k + VNNI_ROWS * K, _MM_HINT_T0);
      r[i] = _mm512_maskz_loadu_epi8(mask, p[i] + k);
    }
    transpose16_epi32(r, c);
    for (int h = 0; h < 2 && k + h * Q8_BLOCK < j->Kp; h++) {
      const int64_t b = k / Q8_BLOCK + h;
      __m512i s[GROUP_M];
      for (int m = 0; m < mc; m++) s[m] = _mm512_set1_epi32(j->corr[m * j->nb + b]);
      for (int i = 0; i < Q8_BLOCK / 4; i++) {
        const __m512i t = _mm512_xor_si512(c[h * (Q8_BLOCK / 4) + i], flip);
        for (int m = 0; m < mc; m++) s[m] = _mm512_dpbusd_epi32(s[m], t, _mm512_set1_epi32(xq[m][b * (Q8_BLOCK / 4) + i]));
      }
      for (int m = 0; m < mc; m++)
        acc[m] = _mm512_add_ps(acc[m], _mm512_mul_ps(_mm512_cvtepi32_ps(s[m]), _mm512_set1_ps(j->d[m * j->nb + b])));
    }
  }
  const __m512 sc = _mm512_maskz_loadu_ps(rows, j->scale + n0);
  for (int m = 0; m < mc; m++) _mm512_mask_storeu_ps(j->y + m * j->N + n0, rows, _mm512_mul_ps(sc, acc[m]));
}

PL_VNNI static void q8_vnni_tile(const q8_job* j, int64_t n0, int nr, uint8_t* tb) {
  switch (j->M) {
    case 1: q8_vnni_direct(j, n0, nr, 1); return;
    case 2: q8_vnni_direct(j, n0, nr, 2); return;
    case 3: q8_vnni_direct(j, n0, nr, 3); return;
    case 4: q8_vnni_direct(j, n0, nr, 4); return;
  }
  q8_vnni_transpose(j, n0, nr, tb);
  int64_t m0 = 0;
  for (; m0 + MAX_GROUP_M <= j->M; m0 += MAX_GROUP_M) q8_vnni_rows(j, n0, nr, tb, m0, MAX_GROUP_M);
  for (; m0 + GROUP_M <= j->M; m0 += GROUP_M) q8_vnni_rows(j, n0, nr, tb, m0, GROUP_M);
  switch (j->M - m0) {
    case 1: q8_vnni_rows(j, n0, nr, tb, m0, 1); break;
    case 2: q8_vnni_rows(j, n0, nr, tb, m0, 2); break;
    case 3: q8_vnni_rows(j, n0, nr, tb, m0, 3); break;
  }
}
#endif

/* Threads claim contiguous parts of the tiles until none are left: on a busy machine a thread that
 * loses its core holds up one part, not half the product. */
static void q8_parts(void* ctx, int64_t begin, int64_t end, int thread) {
  q8_job* j = (q8_job*)ctx;
  uint8_t* tb = j->tiles + (size_t)thread * j->tile_bytes;
  for (;;) {
    const int p = atomic_fetch_add(&j->next_part, 1);
    if (p >= j->parts) return;
    for (int64_t t = j->ntiles * p / j->parts; t < j->ntiles * (p + 1) / j->parts; t++) {
      const int64_t n0 = t * j->tile_rows;
      j->tile(j, n0, (int)(j->N - n0 < j->tile_rows ? j->N - n0 : j->tile_rows), tb);
    }
  }
}

/* Splits the tiles over threads (when the product is worth it) and runs them. */
static void run_parts(int64_t N, int64_t work, int tile_rows, int64_t* ntiles, int* parts, atomic_int* next, pl_range_fn fn, void* ctx) {
  *ntiles = (N + tile_rows - 1) / tile_rows;
  const int T = pl_num_threads();
  const int64_t most = (int64_t)T * PARTS_PER_THREAD;
  *parts = (int)(*ntiles < most ? *ntiles : most);
  atomic_store(next, 0);
  if (T > 1 && *parts > 1 && work >= PARALLEL_MIN) pl_parallel_for(T, 1, fn, ctx);
  else fn(ctx, 0, 1, 0);
}

/* ---- bf16 × bf16 dot products ------------------------------------------------------------------ */

typedef struct bf16_job bf16_job;
/* y[m·N + n] for every m and rows n0 ≤ n < n0 + nr; tb is the thread's scratch */
typedef void (*bf16_tile_fn)(const bf16_job* j, int64_t n0, int nr, uint8_t* tb);

struct bf16_job {
  bf16_tile_fn tile;
  const uint16_t* w;
  const void* xr;   /* x rounded: (M, ldx) bf16 bit patterns (AVX-512 BF16) or f32 values */
  int64_t ldx;
  float* y;
  int64_t M, N, K;
  uint8_t* tiles;   /* per thread: tile_bytes */
  size_t tile_bytes;
  int64_t ntiles;
  int parts;
  atomic_int next_part;
};

static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* f32 → bf16, round to nearest even; NaN stays a quiet NaN with its sign */
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

static void bf16_scalar_tile(const bf16_job* j, int64_t n0, int nr, uint8_t* tb) {
  const float* xr = (const float*)j->xr;
  for (int64_t n = n0; n < n0 + nr; n++) {
    const uint16_t* wr = j->w + n * j->K;
    for (int64_t m = 0; m < j->M; m++) {
      float s = 0.f;
      for (int64_t k = 0; k < j->K; k++) s += xr[m * j->ldx + k] * bf16_to_f32(wr[k]);
      j->y[m * j->N + n] = s;
    }
  }
}

#ifdef PL_X86
PL_AVX2 static void bf16_avx2_tile(const bf16_job* j, int64_t n0, int nr, uint8_t* tb) {
  const float* xr = (const float*)j->xr;
  for (int64_t n = n0; n < n0 + nr; n++) {
    const uint16_t* wr = j->w + n * j->K;
    for (int64_t m = 0; m < j->M; m++) {
      const float* x = xr + m * j->ldx;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int64_t k = 0;
      for (; k + 16 <= j->K; k += 16) {
        const __m256i h0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(wr + k)));
        const __m256i h1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(wr + k + 8)));
        a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(h0, 16)), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(h1, 16)), _mm256_loadu_ps(x + k + 8), a1);
      }
      float s = pl_hsum256(_mm256_add_ps(a0, a1));
      for (; k < j->K; k++) s += x[k] * bf16_to_f32(wr[k]);
      j->y[m * j->N + n] = s;
    }
  }
}

/* x rounded to bf16 by vcvtne2ps2bf16 (nearest even), zero padded to ldx */
PL_BF16 static void bf16_round_row_avx512(const float* x, int64_t K, uint16_t* out, int64_t ldx) {
  for (int64_t k = 0; k < ldx; k += 32) {
    const int64_t n = K - k;
    const __mmask16 m0 = n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + k + 16), _mm512_maskz_loadu_ps(m0, x + k));
    _mm512_storeu_si512((__m512i*)(out + k), (__m512i)h);
  }
}

/* tb (ldx/2 columns of 64 bytes) = the tile's rows transposed in pairs: column c holds elements
 * 2c, 2c+1 of each of the 16 rows; rows past nr repeat row n0 */
PL_BF16 static void bf16_dot_transpose(const bf16_job* j, int64_t n0, int nr, uint8_t* tb) {
  const int64_t K = j->K;
  const uint16_t* rows[VNNI_ROWS];
  for (int r = 0; r < VNNI_ROWS; r++) rows[r] = j->w + (n0 + (r < nr ? r : 0)) * K;
  for (int64_t k = 0; k < j->ldx; k += 32) {
    __m512i r[VNNI_ROWS], c[VNNI_ROWS];
    const __mmask32 mask = K - k >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (K - k)) - 1);
    for (int i = 0; i < VNNI_ROWS; i++) {
      _mm_prefetch((const char*)(rows[i] + k) + PREFETCH_AHEAD, _MM_HINT_T0);
      r[i] = _mm512_maskz_loadu_epi16(mask, rows[i] + k);
    }
    transpose16_epi32(r, c);
    for (int i = 0; i < VNNI_ROWS; i++) _mm512_store_si512((__m512i*)(tb + (k / 2 + i) * 64), c[i]);
  }
}

/* mc rows of x from m0 against the transposed tile: one vdpbf16ps per pair of x's elements adds
 * two products to each of the 16 rows' lanes. A few rows of x get several accumulators each, so
 * the chain of dependent vdpbf16ps (6 cycles each) does not set the pace. */
PL_BF16 static inline __attribute__((always_inline)) void bf16_dot_rows(const bf16_job* j, int64_t n0, int nr, const uint8_t* tb,
                                                                         int64_t m0, const int mc) {
  enum { MAX_U = 4 };
  const int U = mc >= 4 ? 1 : mc >= 2 ? 2 : 4;
  const __mmask16 rows = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  const int64_t C = (j->K + 1) / 2; /* columns: pairs of elements */
  const int32_t* x[MAX_GROUP_M];
  __m512 acc[MAX_GROUP_M][MAX_U];
  for (int m = 0; m < mc; m++) {
    x[m] = (const int32_t*)((const uint16_t*)j->xr + (m0 + m) * j->ldx);
    for (int u = 0; u < U; u++) acc[m][u] = _mm512_setzero_ps();
  }
  int64_t c = 0;
  for (; c + U <= C; c += U) {
    for (int u = 0; u < U; u++) {
      const __m512bh t = (__m512bh)_mm512_load_si512((const __m512i*)(tb + (c + u) * 64));
      for (int m = 0; m < mc; m++) acc[m][u] = _mm512_dpbf16_ps(acc[m][u], t, (__m512bh)_mm512_set1_epi32(x[m][c + u]));
    }
  }
  for (; c < C; c++) {
    const __m512bh t = (__m512bh)_mm512_load_si512((const __m512i*)(tb + c * 64));
    for (int m = 0; m < mc; m++) acc[m][0] = _mm512_dpbf16_ps(acc[m][0], t, (__m512bh)_mm512_set1_epi32(x[m][c]));
  }
  for (int m = 0; m < mc; m++) {
    for (int u = 1; u < U; u++) acc[m][0] = _mm512_add_ps(acc[m][0], acc[m][u]);
    _mm512_mask_storeu_ps(j->y + (m0 + m) * j->N + n0, rows, acc[m][0]);
  }
}

/* Decoding (a few rows of x): dot products along W's rows as stored, four rows at a time, since
 * transposing the tile would cost more than the products it saves. */
PL_BF16 static inline __attribute__((always_inline)) void bf16_dot_direct(const bf16_job* j, int64_t n0, int nr, int64_t m0, const int mc) {
  const int64_t K = j->K;
  const uint16_t* p[DIRECT_ROWS];
  for (int r = 0; r < DIRECT_ROWS; r++) p[r] = j->w + (n0 + (r < nr ? r : 0)) * K;
  const uint16_t* xr = (const uint16_t*)j->xr + m0 * j->ldx;
  __m512 acc[DIRECT_ROWS][GROUP_M];
  for (int r = 0; r < DIRECT_ROWS; r++)
    for (int m = 0; m < mc; m++) acc[r][m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 mask = K - k >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (K - k)) - 1);
    __m512i x[GROUP_M];
    for (int m = 0; m < mc; m++) x[m] = _mm512_loadu_si512((const __m512i*)(xr + m * j->ldx + k));
    for (int r = 0; r < DIRECT_ROWS; r++) {
      _mm_prefetch((const char*)(p[r] + k) + PREFETCH_AHEAD, _MM_HINT_T0);
      const __m512i w = _mm512_maskz_loadu_epi16(mask, p[r] + k);
      for (int m = 0; m < mc; m++) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], (__m512bh)x[m], (__m512bh)w);
    }
  }
  for (int m = 0; m < mc; m++)
    for (int r = 0; r < nr; r++) j->y[(m0 + m) * j->N + n0 + r] = _mm512_reduce_add_ps(acc[r][m]);
}

PL_BF16 static void bf16_dot_tile(const bf16_job* j, int64_t n0, int nr, uint8_t* tb) {
  if (j->M <= GROUP_M) {
    for (int64_t r0 = 0; r0 < nr; r0 += DIRECT_ROWS) {
      const int rr = nr - r0 < DIRECT_ROWS ? (int)(nr - r0) : DIRECT_ROWS;
      switch (j->M) {
        case 1: bf16_dot_direct(j, n0 + r0, rr, 0, 1); break;
        case 2: bf16_dot_direct(j, n0 + r0, rr, 0, 2); break;
        case 3: bf16_dot_direct(j, n0 + r0, rr, 0, 3); break;
        default: bf16_dot_direct(j, n0 + r0, rr, 0, 4); break;
      }
    }
    return;
  }
  bf16_dot_transpose(j, n0, nr, tb);
  int64_t m0 = 0;
  for (; m0 + MAX_GROUP_M <= j->M; m0 += MAX_GROUP_M) bf16_dot_rows(j, n0, nr, tb, m0, MAX_GROUP_M);
  for (; m0 + GROUP_M <= j->M; m0 += GROUP_M) bf16_dot_rows(j, n0, nr, tb, m0, GROUP_M);
  switch (j->M - m0) {
    case 1: bf16_dot_rows(j, n0, nr, tb, m0, 1); break;
    case 2: bf16_dot_rows(j, n0, nr, tb, m0, 2); break;
    case 3: bf16_dot_rows(j, n0, nr, tb, m0, 3); break;
  }
}
#endif

static void bf16_parts(void* ctx, int64_t begin, int64_t end, int thread) {
  bf16_job* j = (bf16_job*)ctx;
  uint8_t* tb = j->tiles + (size_t)thread * j->tile_bytes;
  for (;;) {
    const int p = atomic_fetch_add(&j->next_part, 1);
    if (p >= j->parts) return;
    for (int64_t t = j->ntiles * p / j->parts; t < j->ntiles * (p + 1) / j->parts; t++) {
      const int64_t n0 = t * VNNI_ROWS;
      j->tile(j, n0, (int)(j->N - n0 < VNNI_ROWS ? j->N - n0 : VNNI_ROWS), tb);
    }
  }
}

/* ---- Node-API wrappers ------------------------------------------------------------------------ */

/* int8LinearQ8(x, w, scale, y, M, N, K) */
static napi_value js_int8_linear_q8(napi_env env, napi_callback_info info) {
  pl_args a;
  float *x, *scale, *y;
  void* w;
  size_t lx, lw, ls, ly;
  int64_t M, N, K;
  if (!pl_args_init(env, info, "int8LinearQ8", 7, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_typed(&a, 1, napi_int8_array, "an Int8Array", &w, &lw) ||
      !pl_f32(&a, 2, &scale, &ls) || !pl_f32(&a, 3, &y, &ly) || !pl_int(&a, 4, &M) || !pl_int(&a, 5, &N) || !pl_int(&a, 6, &K) ||
      !pl_matrix_sizes(&a, M, N, K))
    return NULL;
  if (!pl_need(&a, "x", lx, M * K) || !pl_need(&a, "w", lw, N * K) || !pl_need(&a, "scale", ls, N) || !pl_need(&a, "y", ly, M * N)) return NULL;
  if (M == 0 || N == 0) return NULL;
  if (K == 0) {
    for (int64_t i = 0; i < M * N; i++) y[i] = scale[i % N] * 0.f;
    return NULL;
  }
  q8_job j = {.w = (const int8_t*)w, .scale = scale, .y = y, .M = M, .N = N, .K = K};
  j.nb = (K + Q8_BLOCK - 1) / Q8_BLOCK;
  j.Kp = j.nb * Q8_BLOCK;
  j.tile = q8_scalar_tile;
  j.tile_rows = VNNI_ROWS;
  void (*quantize)(const float*, int64_t, int8_t*, float*, int32_t*) = q8_quantize_row_scalar;
#ifdef PL_X86
  if (pl_cpu_avx512vnni()) {
    j.tile = q8_vnni_tile;
    quantize = q8_quantize_row_avx512;
    j.tile_bytes = (size_t)(j.Kp + 63) / 64 * 64 * VNNI_ROWS;
  } else if (pl_cpu_avx2_fma()) {
    j.tile = q8_avx2_tile;
  }
#endif
  const size_t T = (size_t)pl_num_threads();
  const size_t xq_bytes = (size_t)(M * j.Kp + 63) / 64 * 64, meta = (size_t)(M * j.nb) * 4;
  bool owned;
  uint8_t* buf = (uint8_t*)scratch_take(T * j.tile_bytes + xq_bytes + 2 * meta, &owned);
  if (!buf) {
    pl_fail(&a, "out of memory for the quantized activations");
    return NULL;
  }
  j.tiles = buf;
  int8_t* xq = (int8_t*)(buf + T * j.tile_bytes);
  float* d = (float*)(buf + T * j.tile_bytes + xq_bytes);
  int32_t* corr = (int32_t*)(buf + T * j.tile_bytes + xq_bytes + meta);
  for (int64_t m = 0; m < M; m++) quantize(x + m * K, K, xq + m * j.Kp, d + m * j.nb, corr + m * j.nb);
  j.xq = xq;
  j.d = d;
  j.corr = corr;
  run_parts(N, N * K, j.tile_rows, &j.ntiles, &j.parts, &j.next_part, q8_parts, &j);
  scratch_give(buf, owned);
  return NULL;
}

/* bf16LinearDot(x, w, y, M, N, K) */
static napi_value js_bf16_linear_dot(napi_env env, napi_callback_info info) {
  pl_args a;
  float *x, *y;
  void* w;
  size_t lx, lw, ly;
  int64_t M, N, K;
  if (!pl_args_init(env, info, "bf16LinearDot", 6, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_typed(&a, 1, napi_uint16_array, "a Uint16Array", &w, &lw) ||
      !pl_f32(&a, 2, &y, &ly) || !pl_int(&a, 3, &M) || !pl_int(&a, 4, &N) || !pl_int(&a, 5, &K) || !pl_matrix_sizes(&a, M, N, K))
    return NULL;
  if (!pl_need(&a, "x", lx, M * K) || !pl_need(&a, "w", lw, N * K) || !pl_need(&a, "y", ly, M * N)) return NULL;
  if (M == 0 || N == 0) return NULL;
  if (K == 0) {
    memset(y, 0, (size_t)(M * N) * sizeof(float));
    return NULL;
  }
  bf16_job j = {.w = (const uint16_t*)w, .y = y, .M = M, .N = N, .K = K, .tile = bf16_scalar_tile};
  bool dot = false;
#ifdef PL_X86
  dot = pl_cpu_avx512bf16();
  if (dot) j.tile = bf16_dot_tile;
  else if (pl_cpu_avx2_fma()) j.tile = bf16_avx2_tile;
#endif
  j.ldx = dot ? (K + 31) / 32 * 32 : K;
  if (dot) j.tile_bytes = (size_t)j.ldx * 2 * VNNI_ROWS;
  const size_t T = (size_t)pl_num_threads();
  bool owned;
  uint8_t* tiles = (uint8_t*)scratch_take(T * j.tile_bytes + (size_t)(M * j.ldx) * (dot ? 2 : 4), &owned);
  if (!tiles) {
    pl_fail(&a, "out of memory for the rounded activations");
    return NULL;
  }
  j.tiles = tiles;
  void* buf = tiles + T * j.tile_bytes;
  for (int64_t m = 0; m < M; m++) {
#ifdef PL_X86
    if (dot) {
      bf16_round_row_avx512(x + m * K, K, (uint16_t*)buf + m * j.ldx, j.ldx);
      continue;
    }
#endif
    float* out = (float*)buf + m * j.ldx;
    for (int64_t k = 0; k < K; k++) out[k] = bf16_to_f32(f32_to_bf16(x[m * K + k]));
  }
  j.xr = buf;
  run_parts(N, N * K, VNNI_ROWS, &j.ntiles, &j.parts, &j.next_part, bf16_parts, &j);
  scratch_give(tiles, owned);
  return NULL;
}

void pl_register_quantdot(napi_env env, napi_value exports) {
  pl_export(env, exports, "int8LinearQ8", js_int8_linear_q8, "f32");
  pl_export(env, exports, "bf16LinearDot", js_bf16_linear_dot, "f32");
}
