/* Paged KV cache kernels (vLLM's PagedAttention): the write of a step's keys and values into their
 * slots of the block pool, and causal attention of packed query rows over the pool.
 *
 * pagedAttention walks each sequence's block table with an online softmax, as FlashAttention walks
 * key tiles: per query row a running max m, a running sum l of exponentials and an unnormalised
 * output O; a chunk of keys with a larger max rescales l and O by exp(m_old − m_new). A chunk is
 * 64 keys from however many blocks hold them, so the rescale is paid once per 64 keys, not per block.
 *
 * Work items. The H/KVH query heads that share a key/value head are processed together, and so are
 * the query rows of a prefill chunk, up to MAXM rows (tokens × heads) per item: each block of K and
 * V is then loaded once per item and used by every row. An item is (sequence, kv head, tile of
 * query tokens); a row r of it sits at absolute position p0 + r and sees keys 0..p0 + r.
 *
 * Scores. With many rows (prefill) the scores are computed transposed, Sᵀ = K·Qᵀ, one query row
 * per SIMD lane, and O += P·V is a small GEMM; rows of K and V are addressed through pointer arrays,
 * so the GEMMs read the blocks where they lie in the pool. With few rows (decode: one token times
 * the group's heads) a lane per row would leave most lanes idle, so each score is a dot product
 * along D instead, sixteen keys at a time with their sums reduced together.
 *
 * Memory. A block holds blockSize·D floats per kv head in a place of its own (4 KB for 16 × 64),
 * and the hardware prefetcher, which follows runs of lines within a page, starts over at every
 * block; so the kernel prefetches the next chunk's key and value rows while it computes the
 * current one.
 *
 * Threads. Decode has few items (one sequence with KVH = 4 is 4 items) and items differ in length
 * (sequences have different contexts), so items are not handed out whole. The work is laid out as
 * one line of (item, block) positions, each block weighted by its cost, and cut into one part per
 * thread of equal weight, at block boundaries (stream-K). An item cut by a part boundary is
 * computed in pieces, each writing its partial (m, l, O); a merge then combines the pieces, as
 * FlashDecoding's split-K does: m = max m_k, l = Σ l_k·e^(m_k − m), O = Σ O_k·e^(m_k − m). At most
 * one item per boundary is split, so the merge is a few rows.
 *
 * Precision: scores, exponentials and O in float32 (as the fused attention kernel); the scale, the
 * running sums l (each chunk's float32 sum added in double), the final division and the merge in
 * double, where they cost nothing. */
#include "plinth.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MAXM 64  /* rows (query tokens × heads of a group) per item: the lanes of a transposed score tile */
#define CHUNK 64 /* keys per online-softmax step */
#define DOT_M 8  /* items of at most this many rows compute their scores as dot products */
/* The weight of one block of an item of M rows in the partition: loading the block costs about as
 * much as 16 rows of arithmetic on it. */
#define BLOCK_WEIGHT(M) ((int64_t)(M) + 16)
/* Work below this weight (about 16 decode blocks) runs on the calling thread: waking the pool would
 * cost more than it saves. */
#define MIN_PART_WEIGHT 256
#define INLINE static inline __attribute__((always_inline))

/* The instruction-set-specific primitives. */
typedef struct {
  /* C (M×N, row stride ldc) = [C +] A·B, A(r, k) = arow[r][k·aks], row k of B at brow[k]. */
  void (*gemm)(int M, int N, int K, const float* const* arow, int64_t aks, const float* const* brow, float* C,
               int64_t ldc, bool acc);
  /* S[m·lds + c] = qrow[m]·krow[c] over D, for m < M, c < n; meanwhile prefetches the rows
   * knext[c] and vnext[c], c < nnext (the next chunk's keys and values). */
  void (*dots)(int M, int n, int64_t D, const float* const* qrow, const float* const* krow, float* S, int64_t lds,
               const float* const* knext, const float* const* vnext, int nnext);
  /* x[c] = c < vis ? scale·x[c] : −inf for c < n; returns max(m, max x). */
  float (*scale_mask_max)(float* x, int n, int64_t vis, double scale, float m);
  /* x[c] = exp(x[c] − shift) for c < n; returns Σ x (a float32 sum of at most a chunk). */
  float (*exp_sum)(float* x, int n, float shift);
  /* x[i] = exp(x[i] − shift[i]) for i < n */
  void (*exp_sub)(float* x, int n, const float* shift);
} pg_isa;

/* The cache lines of a row of D floats. */
INLINE void prefetch_row(const float* p, int64_t D) {
  for (int64_t d = 0; d < D; d += 16) __builtin_prefetch(p + d);
}

/* ---- scalar ------------------------------------------------------------------------------ */

static void gemm_scalar(int M, int N, int K, const float* const* arow, int64_t aks, const float* const* brow, float* C,
                        int64_t ldc, bool acc) {
  for (int r = 0; r < M; r++) {
    float* c = C + r * ldc;
    if (!acc) memset(c, 0, (size_t)N * sizeof(float));
    for (int k = 0; k < K; k++) {
      float a = arow[r][k * aks];
      const float* b = brow[k];
      for (int n = 0; n < N; n++) c[n] += a * b[n];
    }
  }
}

static void dots_scalar(int M, int n, int64_t D, const float* const* qrow, const float* const* krow, float* S,
                        int64_t lds, const float* const* knext, const float* const* vnext, int nnext) {
  for (int c = 0; c < nnext; c++) prefetch_row(knext[c], D), prefetch_row(vnext[c], D);
  for (int m = 0; m < M; m++)
    for (int c = 0; c < n; c++) {
      float acc = 0;
      for (int64_t d = 0; d < D; d++) acc += qrow[m][d] * krow[c][d];
      S[m * lds + c] = acc;
    }
}

static float scale_mask_max_scalar(float* x, int n, int64_t vis, double scale, float m) {
  for (int c = 0; c < n; c++) {
    x[c] = c < vis ? (float)(x[c] * scale) : -INFINITY;
    m = x[c] > m ? x[c] : m;
  }
  return m;
}

static float exp_sum_scalar(float* x, int n, float shift) {
  float sum = 0;
  for (int c = 0; c < n; c++) sum += x[c] = expf(x[c] - shift);
  return sum;
}

static void exp_sub_scalar(float* x, int n, const float* shift) {
  for (int i = 0; i < n; i++) x[i] = expf(x[i] - shift[i]);
}

static const pg_isa isa_scalar = {gemm_scalar, dots_scalar, scale_mask_max_scalar, exp_sum_scalar, exp_sub_scalar};

#if defined(__x86_64__)

#include "attn_simd.h"

/* ---- AVX-512 ----------------------------------------------------------------------------- */

/* One MR×(16·NV) block of C, MR and NV literals at every call site so the accumulators stay in
 * registers; the last vector column is masked to the block's width. */
INLINE T512 void mk512(const int MR, const int NV, int K, const float* const* arow, int64_t aks,
                       const float* const* brow, int64_t n0, float* C, int64_t ldc, bool acc, __mmask16 tail) {
  __m512 c[4][4];
  const float* a[4];
  for (int r = 0; r < MR; r++) {
    a[r] = arow[r];
    for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
  }
  for (int k = 0; k < K; k++) {
    const float* b = brow[k] + n0;
    __m512 bv[4];
    for (int v = 0; v < NV; v++) bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
    for (int r = 0; r < MR; r++) {
      __m512 av = _mm512_set1_ps(a[r][k * aks]);
      for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) {
      __mmask16 m = v == NV - 1 ? tail : (__mmask16)0xffff;
      float* cp = C + r * ldc + 16 * v;
      _mm512_mask_storeu_ps(cp, m, acc ? _mm512_add_ps(c[r][v], _mm512_maskz_loadu_ps(m, cp)) : c[r][v]);
    }
}

static T512 void gemm_avx512(int M, int N, int K, const float* const* arow, int64_t aks, const float* const* brow,
                             float* C, int64_t ldc, bool acc) {
  for (int n0 = 0; n0 < N; n0 += 64) {
    int nn = N - n0 < 64 ? N - n0 : 64;
    int nv = (nn + 15) / 16;
    __mmask16 tail = mask16(nn - 16 * (nv - 1));
    for (int r0 = 0; r0 < M; r0 += 4) {
      int mr = M - r0 < 4 ? M - r0 : 4;
      const float* const* a = arow + r0;
      float* c = C + r0 * ldc + n0;
#define MK512(R, V) case (R) * 8 + (V): mk512(R, V, K, a, aks, brow, n0, c, ldc, acc, tail); break;
      switch (mr * 8 + nv) {
        MK512(1, 1) MK512(1, 2) MK512(1, 3) MK512(1, 4)
        MK512(2, 1) MK512(2, 2) MK512(2, 3) MK512(2, 4)
        MK512(3, 1) MK512(3, 2) MK512(3, 3) MK512(3, 4)
        MK512(4, 1) MK512(4, 2) MK512(4, 3) MK512(4, 4)
      }
#undef MK512
    }
  }
}

/* r[c] = the sum of the lanes of v[c]: a transpose-and-add tree, 15 adds and 30 shuffles for 16
 * sums where 16 separate reductions would take 64 of each. */
INLINE T512 __m512 hsum16x16(const __m512 v[16]) {
  __m512 x[8], y[4], z[2];
  for (int i = 0; i < 8; i++) /* lower 256 bits: v[i], upper: v[i + 8] */
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 8], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[i], v[i + 8], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 4; i++) /* 128-bit lanes: i, i + 8, i + 4, i + 12 */
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[i], x[i + 4], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x[i], x[i + 4], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int i = 0; i < 2; i++) /* pairs of floats */
    z[i] = _mm512_add_ps(_mm512_shuffle_ps(y[i], y[i + 2], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(y[i], y[i + 2], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 w = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
  /* w holds the sums of v[0 2 1 3 8 10 9 11 4 6 5 7 12 14 13 15]; the order is its own inverse */
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15), w);
}

/* Two rows (a decoding token's two heads of a kv head), eight keys at a time: each key's vector is
 * loaded once for both rows, the 16 accumulators (row-major) reduced together. Each score is
 * summed in the same order as on the one-row path (per lane along D, then the same tree). */
INLINE T512 void dots2_avx512(int n, int64_t D, const float* const* qrow, const float* const* krow, float* S,
                              int64_t lds, const float* const* knext, const float* const* vnext, int nnext) {
  const float *q0 = qrow[0], *q1 = qrow[1];
  for (int c0 = 0; c0 < n; c0 += 8) {
    int nk = n - c0 < 8 ? n - c0 : 8;
    const float* k[8];
    for (int c = 0; c < 8; c++) k[c] = krow[c0 + (c < nk ? c : nk - 1)]; /* past n: repeat the last key */
    for (int c = c0; c < c0 + 8 && c < nnext; c++) prefetch_row(knext[c], D), prefetch_row(vnext[c], D);
    __m512 acc[16];
    for (int c = 0; c < 16; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      __mmask16 dm = mask16(D - d);
      __m512 a = _mm512_maskz_loadu_ps(dm, q0 + d), b = _mm512_maskz_loadu_ps(dm, q1 + d);
      for (int c = 0; c < 8; c++) {
        __m512 kv = _mm512_maskz_loadu_ps(dm, k[c] + d);
        acc[c] = _mm512_fmadd_ps(a, kv, acc[c]);
        acc[8 + c] = _mm512_fmadd_ps(b, kv, acc[8 + c]);
      }
    }
    __m512 r = hsum16x16(acc);
    __mmask8 km = (__mmask8)((1u << nk) - 1u);
    _mm256_mask_storeu_ps(S + c0, km, _mm512_castps512_ps256(r));
    _mm256_mask_storeu_ps(S + lds + c0, km, _mm512_extractf32x8_ps(r, 1));
  }
}

/* Sixteen keys at a time: one accumulator per key along D, reduced together. */
static T512 void dots_avx512(int M, int n, int64_t D, const float* const* qrow, const float* const* krow, float* S,
                             int64_t lds, const float* const* knext, const float* const* vnext, int nnext) {
  if (M == 2) {
    dots2_avx512(n, D, qrow, krow, S, lds, knext, vnext, nnext);
    return;
  }
  for (int c0 = 0; c0 < n; c0 += 16) {
    int nk = n - c0 < 16 ? n - c0 : 16;
    const float* k[16];
    for (int c = 0; c < 16; c++) k[c] = krow[c0 + (c < nk ? c : nk - 1)]; /* past n: repeat the last key */
    for (int c = c0; c < c0 + 16 && c < nnext; c++) prefetch_row(knext[c], D), prefetch_row(vnext[c], D);
    for (int m = 0; m < M; m++) {
      const float* q = qrow[m];
      __m512 acc[16];
      for (int c = 0; c < 16; c++) acc[c] = _mm512_setzero_ps();
      for (int64_t d = 0; d < D; d += 16) {
        __mmask16 dm = mask16(D - d);
        __m512 qv = _mm512_maskz_loadu_ps(dm, q + d);
        for (int c = 0; c < 16; c++) acc[c] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(dm, k[c] + d), acc[c]);
      }
      _mm512_mask_storeu_ps(S + m * lds + c0, mask16(nk), hsum16x16(acc));
    }
  }
}

static T512 float scale_mask_max_avx512(float* x, int n, int64_t vis, double scale, float m) {
  __m512d s = _mm512_set1_pd(scale);
  __m512 mx = _mm512_set1_ps(m);
  for (int c = 0; c < n; c += 16) {
    __mmask16 in = mask16(n - c), seen = mask16(vis - c) & in;
    __m512 v = _mm512_maskz_loadu_ps(in, x + c);
    /* times scale in double, rounded once, as ref and the fused attention kernel scale */
    __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), s));
    __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), s));
    v = _mm512_mask_blend_ps(seen, _mm512_set1_ps(-INFINITY), _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
    _mm512_mask_storeu_ps(x + c, in, v);
    mx = _mm512_mask_max_ps(mx, in, mx, v);
  }
  return _mm512_reduce_max_ps(mx);
}

static T512 float exp_sum_avx512(float* x, int n, float shift) {
  __m512 s = _mm512_set1_ps(shift), acc = _mm512_setzero_ps();
  for (int c = 0; c < n; c += 16) {
    __mmask16 in = mask16(n - c);
    __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(in, x + c), s));
    _mm512_mask_storeu_ps(x + c, in, e);
    acc = _mm512_mask_add_ps(acc, in, acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

static T512 void exp_sub_avx512(float* x, int n, const float* shift) {
  for (int i = 0; i < n; i += 16) {
    __mmask16 m = mask16(n - i);
    __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, shift + i));
    _mm512_mask_storeu_ps(x + i, m, exp512(v));
  }
}

static const pg_isa isa_avx512 = {gemm_avx512, dots_avx512, scale_mask_max_avx512, exp_sum_avx512, exp_sub_avx512};

/* ---- AVX2 -------------------------------------------------------------------------------- */

/* As mk512 with 8-wide vectors: MR×(8·NV), NV ≤ 3, so 12 accumulators fit in 16 registers. */
INLINE T256 void mk256(const int MR, const int NV, int K, const float* const* arow, int64_t aks,
                       const float* const* brow, int64_t n0, float* C, int64_t ldc, bool acc, __m256i tail, bool full) {
  __m256 c[4][3];
  const float* a[4];
  for (int r = 0; r < MR; r++) {
    a[r] = arow[r];
    for (int v = 0; v < NV; v++) c[r][v] = _mm256_setzero_ps();
  }
  for (int k = 0; k < K; k++) {
    const float* b = brow[k] + n0;
    __m256 bv[3];
    for (int v = 0; v < NV; v++)
      bv[v] = v == NV - 1 && !full ? _mm256_maskload_ps(b + 8 * v, tail) : _mm256_loadu_ps(b + 8 * v);
    for (int r = 0; r < MR; r++) {
      __m256 av = _mm256_broadcast_ss(a[r] + k * aks);
      for (int v = 0; v < NV; v++) c[r][v] = _mm256_fmadd_ps(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) {
      float* cp = C + r * ldc + 8 * v;
      if (v == NV - 1 && !full) {
        __m256 x = acc ? _mm256_add_ps(c[r][v], _mm256_maskload_ps(cp, tail)) : c[r][v];
        _mm256_maskstore_ps(cp, tail, x);
      } else {
        _mm256_storeu_ps(cp, acc ? _mm256_add_ps(c[r][v], _mm256_loadu_ps(cp)) : c[r][v]);
      }
    }
}

static T256 void gemm_avx2(int M, int N, int K, const float* const* arow, int64_t aks, const float* const* brow,
                           float* C, int64_t ldc, bool acc) {
  for (int n0 = 0; n0 < N; n0 += 24) {
    int nn = N - n0 < 24 ? N - n0 : 24;
    int nv = (nn + 7) / 8;
    int last = nn - 8 * (nv - 1);
    __m256i tail = mask8(last);
    bool full = last == 8;
    for (int r0 = 0; r0 < M; r0 += 4) {
      int mr = M - r0 < 4 ? M - r0 : 4;
      const float* const* a = arow + r0;
      float* c = C + r0 * ldc + n0;
#define MK256(R, V) case (R) * 4 + (V): mk256(R, V, K, a, aks, brow, n0, c, ldc, acc, tail, full); break;
      switch (mr * 4 + nv) {
        MK256(1, 1) MK256(1, 2) MK256(1, 3) MK256(2, 1) MK256(2, 2) MK256(2, 3)
        MK256(3, 1) MK256(3, 2) MK256(3, 3) MK256(4, 1) MK256(4, 2) MK256(4, 3)
      }
#undef MK256
    }
  }
}

/* r[c] = the sum of the lanes of v[c], for 8 vectors. */
INLINE T256 __m256 hsum8x8(const __m256 v[8]) {
  __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3); /* halves: v[0..3] and v[4..7] partial sums */
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Eight keys at a time, as dots_avx512. */
static T256 void dots_avx2(int M, int n, int64_t D, const float* const* qrow, const float* const* krow, float* S,
                           int64_t lds, const float* const* knext, const float* const* vnext, int nnext) {
  for (int c0 = 0; c0 < n; c0 += 8) {
    int nk = n - c0 < 8 ? n - c0 : 8;
    const float* k[8];
    for (int c = 0; c < 8; c++) k[c] = krow[c0 + (c < nk ? c : nk - 1)];
    for (int c = c0; c < c0 + 8 && c < nnext; c++) prefetch_row(knext[c], D), prefetch_row(vnext[c], D);
    for (int m = 0; m < M; m++) {
      const float* q = qrow[m];
      __m256 acc[8];
      for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
      int64_t d = 0;
      for (; d + 8 <= D; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
        for (int c = 0; c < 8; c++) acc[c] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[c] + d), acc[c]);
      }
      if (d < D) {
        __m256i dm = mask8(D - d);
        __m256 qv = _mm256_maskload_ps(q + d, dm);
        for (int c = 0; c < 8; c++) acc[c] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k[c] + d, dm), acc[c]);
      }
      _mm256_maskstore_ps(S + m * lds + c0, mask8(nk), hsum8x8(acc));
    }
  }
}

static T256 float scale_mask_max_avx2(float* x, int n, int64_t vis, double scale, float m) {
  __m256d s = _mm256_set1_pd(scale);
  __m256 mx = _mm256_set1_ps(m);
  for (int c = 0; c < n; c += 8) {
    __m256i in = mask8(n - c), seen = mask8(vis - c);
    __m256 v = _mm256_maskload_ps(x + c, in);
    __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), s));
    __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), s));
    v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1),
                         _mm256_castsi256_ps(seen));
    _mm256_maskstore_ps(x + c, in, v);
    mx = _mm256_blendv_ps(mx, _mm256_max_ps(mx, v), _mm256_castsi256_ps(in));
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

static T256 float exp_sum_avx2(float* x, int n, float shift) {
  __m256 s = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
  for (int c = 0; c < n; c += 8) {
    __m256i in = mask8(n - c);
    __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(x + c, in), s));
    e = _mm256_and_ps(e, _mm256_castsi256_ps(in));
    _mm256_maskstore_ps(x + c, in, e);
    acc = _mm256_add_ps(acc, e);
  }
  return pl_hsum256(acc);
}

static T256 void exp_sub_avx2(float* x, int n, const float* shift) {
  for (int i = 0; i < n; i += 8) {
    __m256i m = mask8(n - i);
    __m256 v = _mm256_sub_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(shift + i, m));
    _mm256_maskstore_ps(x + i, m, exp256(v));
  }
}

static const pg_isa isa_avx2 = {gemm_avx2, dots_avx2, scale_mask_max_avx2, exp_sum_avx2, exp_sub_avx2};
#endif

/* ---- the attention kernel, written once ---------------------------------------------------- */

/* One work item: rows r < nr (tokens i0 + r of the packed q) times heads g0 + g, g < ng, of the
 * group of kv head kh of sequence s; row r is at absolute position p0 + r. */
typedef struct {
  int64_t s, kh, g0, i0, p0;
  int64_t nblocks; /* blocks the item walks: those holding keys 0..p0 + nr − 1 */
  int64_t before;  /* total weight of the items before it */
  int nr, ng;
} pg_item;

/* A part boundary: block b of item `item`. */
typedef struct { int64_t item, b; } pg_pos;

/* Per-thread scratch. */
typedef struct {
  float* Qt;     /* (D, MAXM) the item's queries transposed */
  float* S;      /* (ck, MAXM) Sᵀ, or (MAXM, ck) S on the dot-product path; then P */
  float* O;      /* (MAXM, D) unnormalised output */
  float *m, *shift;
  double* l;
  int64_t* lim;  /* per row: the last key position it sees */
  const float **qrow, **prow, **qtrow, **krow, **vrow;
  float** orow;
} pg_scratch;

typedef struct {
  const float *q, *kp, *vp;
  float* out;
  const int32_t* table;
  int64_t H, KVH, G, D, bs, maxBlocks, ck;
  double scale; /* in double: rounded to float32 it would scale every score by the same wrong factor */
  pg_item* items;
  int64_t nitems;
  pg_pos* bounds; /* parts + 1 */
  pg_scratch* scratch; /* one per thread */
  /* partial results of split items, two slots per part (its first and its last piece) */
  int64_t* slot_item; /* −1 when the slot is unused */
  float *slot_m, *slot_O;
  double* slot_l;
} pg_job;

/* The online-softmax step of row r for keys whose max is mnew (≥ the running max): rescales l and O
 * by exp(m_old − m_new) and returns the shift the exponentials subtract. A row that has seen no
 * key keeps shift 0, so that exp(−inf − 0) = 0 rather than NaN. */
INLINE float online_rescale(float* m, double* l, float* O, int r, int64_t D, float mnew) {
  float shift = mnew == -INFINITY ? 0 : mnew;
  float alpha = expf(m[r] - shift);
  m[r] = mnew;
  l[r] *= alpha;
  if (alpha != 1.0f)
    for (int64_t d = 0; d < D; d++) O[r * D + d] *= alpha;
  return shift;
}

/* The rows of keys and values [j0, min(j0 + ck, je)) of kv head kh of the sequence whose block
 * table is `table`, block by block; returns how many (0 when j0 ≥ je). */
INLINE int chunk_rows(const pg_job* j, int64_t kh, const int32_t* table, int64_t j0, int64_t je, const float** kr,
                      const float** vr) {
  const int64_t bs = j->bs, D = j->D;
  int n = je - j0 <= 0 ? 0 : je - j0 < j->ck ? (int)(je - j0) : (int)j->ck;
  for (int c = 0; c < n;) {
    int64_t blk = table[(j0 + c) / bs], off = (j0 + c) % bs;
    const float* kb = j->kp + (blk * j->KVH + kh) * bs * D; /* pools are (numBlocks, KVH, bs, D) */
    const float* vb = j->vp + (blk * j->KVH + kh) * bs * D;
    for (; off < bs && c < n; off++, c++) kr[c] = kb + off * D, vr[c] = vb + off * D;
  }
  return n;
}

/* Blocks [b0, b1) of an item. Whole items (pm == NULL) write out = O / l; pieces of a split item
 * write their m, l and O to a slot for the merge. `next`, when not NULL, is the item the thread
 * computes next, from its first block: its first chunk is prefetched during the last chunk of this
 * one, or every item would start on cold blocks (32 decoding sequences, one thread: 1.15x at 144
 * keys, 1.6x at 40). */
INLINE void run_piece(const pg_job* j, const pg_item* it, int64_t b0, int64_t b1, const pg_scratch* w, float* pm,
                      double* pl, float* pO, const pg_item* next, const pg_isa* isa) {
  const int64_t D = j->D, bs = j->bs, ck = j->ck;
  const int ng = it->ng, M = it->nr * ng;
  const bool by_dots = M <= DOT_M;
  float *S = w->S, *O = w->O, *m = w->m, *shift = w->shift;
  double* l = w->l;
  for (int r = 0; r < M; r++) {
    int64_t off = ((it->i0 + r / ng) * j->H + it->kh * j->G + it->g0 + r % ng) * D; /* q, out are (N, H, D) */
    w->qrow[r] = j->q + off;
    w->orow[r] = j->out + off;
    w->prow[r] = by_dots ? S + r * ck : S + r;
    w->lim[r] = it->p0 + r / ng;
    m[r] = -INFINITY, l[r] = 0;
  }
  if (!by_dots)
    for (int r = 0; r < M; r++)
      for (int64_t d = 0; d < D; d++) w->Qt[d * MAXM + r] = w->qrow[r][d];
  memset(O, 0, (size_t)(M * D) * sizeof(float));
  const int32_t* table = j->table + it->s * j->maxBlocks;
  int64_t kend = it->p0 + it->nr; /* keys past this were not written: never read them */
  int64_t jb = b0 * bs, je = b1 * bs < kend ? b1 * bs : kend;
  /* the key and value rows of the current chunk and of the next (prefetched meanwhile), in turn
   * in the two halves of krow and vrow */
  const float **kr = w->krow, **vr = w->vrow, **kn = w->krow + ck, **vn = w->vrow + ck;
  int nc = chunk_rows(j, it->kh, table, jb, je, kr, vr);
  for (int64_t j0 = jb; j0 < je; j0 += ck) {
    int nn = chunk_rows(j, it->kh, table, j0 + ck, je, kn, vn);
    if (nn == 0 && next) /* rows to prefetch only: the loop ends after this chunk */
      nn = chunk_rows(j, next->kh, j->table + next->s * j->maxBlocks, 0, next->p0 + next->nr, kn, vn);
    if (by_dots) {
      isa->dots(M, nc, D, w->qrow, kr, S, ck, kn, vn, nn); /* S = Q Kᵀ */
      for (int c = nc; c < nn; c++) prefetch_row(kn[c], D), prefetch_row(vn[c], D); /* rows past its tiles */
      for (int r = 0; r < M; r++) {
        float* row = S + r * ck;
        float mnew = isa->scale_mask_max(row, nc, w->lim[r] - j0 + 1, j->scale, m[r]);
        shift[r] = online_rescale(m, l, O, r, D, mnew);
        l[r] += isa->exp_sum(row, nc, shift[r]); /* P */
      }
    } else {
      for (int c = 0; c < nn; c++) prefetch_row(kn[c], D), prefetch_row(vn[c], D);
      isa->gemm(nc, M, (int)D, kr, 1, w->qtrow, S, MAXM, false); /* Sᵀ = K Qᵀ */
      bool cut = j0 + nc - 1 > it->p0; /* some row does not see the chunk's last key */
      float mnew[MAXM];
      for (int r = 0; r < M; r++) mnew[r] = m[r];
      for (int c = 0; c < nc; c++) {
        float* col = S + c * MAXM;
        for (int r = 0; r < M; r++) col[r] = (float)(col[r] * j->scale);
        if (cut)
          for (int r = 0; r < M; r++)
            if (j0 + c > w->lim[r]) col[r] = -INFINITY;
        for (int r = 0; r < M; r++) mnew[r] = col[r] > mnew[r] ? col[r] : mnew[r];
      }
      for (int r = 0; r < M; r++) shift[r] = online_rescale(m, l, O, r, D, mnew[r]);
      for (int c = 0; c < nc; c++) {
        isa->exp_sub(S + c * MAXM, M, shift); /* Pᵀ */
        for (int r = 0; r < M; r++) l[r] += S[c * MAXM + r];
      }
    }
    isa->gemm(M, (int)D, nc, w->prow, by_dots ? 1 : MAXM, vr, O, D, true); /* O += P V */
    const float** t = kr;
    kr = kn, kn = t, t = vr, vr = vn, vn = t;
    nc = nn;
  }
  if (!pm) {
    for (int r = 0; r < M; r++) {
      float* o = w->orow[r];
      for (int64_t d = 0; d < D; d++) o[d] = (float)(O[r * D + d] / l[r]); /* l > 0: every row sees key 0 */
    }
    return;
  }
  memcpy(pm, m, (size_t)M * sizeof(float));
  memcpy(pl, l, (size_t)M * sizeof(double));
  memcpy(pO, O, (size_t)(M * D) * sizeof(float));
}

/* Parts [begin, end): each walks the (item, block) line from its boundary to the next. */
INLINE void attn_body(pg_job* j, int64_t begin, int64_t end, int thread, const pg_isa* isa) {
  const pg_scratch* w = &j->scratch[thread];
  const int64_t D = j->D;
  for (int64_t p = begin; p < end; p++) {
    pg_pos a = j->bounds[p], e = j->bounds[p + 1];
    for (int64_t i = a.item; i < j->nitems && (i < e.item || (i == e.item && e.b > 0)); i++) {
      const pg_item* it = &j->items[i];
      int64_t b0 = i == a.item ? a.b : 0, b1 = i == e.item ? e.b : it->nblocks;
      if (b0 >= b1) continue;
      /* the next item of this part, if the part starts it at its first block */
      const pg_item* next = i + 1 < j->nitems && (i + 1 < e.item || (i + 1 == e.item && e.b > 0)) ? it + 1 : NULL;
      if (b0 == 0 && b1 == it->nblocks) {
        run_piece(j, it, b0, b1, w, NULL, NULL, NULL, next, isa);
        continue;
      }
      int64_t slot = 2 * p + (i == a.item ? 0 : 1);
      j->slot_item[slot] = i;
      run_piece(j, it, b0, b1, w, j->slot_m + slot * MAXM, j->slot_l + slot * MAXM, j->slot_O + slot * MAXM * D, next,
                isa);
    }
  }
}

#if defined(__x86_64__)
static T512 void attn_avx512(void* c, int64_t b, int64_t e, int t) { attn_body((pg_job*)c, b, e, t, &isa_avx512); }
static T256 void attn_avx2(void* c, int64_t b, int64_t e, int t) { attn_body((pg_job*)c, b, e, t, &isa_avx2); }
#endif
static void attn_scalar(void* c, int64_t b, int64_t e, int t) { attn_body((pg_job*)c, b, e, t, &isa_scalar); }

static pl_range_fn pick_body(void) {
#if defined(__x86_64__)
  if (pl_cpu_avx512f()) return attn_avx512;
  if (pl_cpu_avx2_fma()) return attn_avx2;
#endif
  return attn_scalar;
}

/* Combines the pieces of each split item: the used slots of the same item, which follow one another
 * in part order (unused slots may sit between them). */
static void merge_pieces(const pg_job* j, int64_t nslots) {
  const int64_t D = j->D;
  int64_t piece[2 * 256]; /* the slots of one item; parts ≤ 256 threads */
  for (int64_t s0 = 0; s0 < nslots;) {
    int64_t item = j->slot_item[s0], n = 0, s1 = s0;
    if (item < 0) { s0++; continue; }
    for (; s1 < nslots && (j->slot_item[s1] < 0 || j->slot_item[s1] == item); s1++)
      if (j->slot_item[s1] == item) piece[n++] = s1;
    const pg_item* it = &j->items[item];
    int M = it->nr * it->ng;
    for (int r = 0; r < M; r++) {
      float mx = -INFINITY;
      for (int64_t k = 0; k < n; k++) mx = j->slot_m[piece[k] * MAXM + r] > mx ? j->slot_m[piece[k] * MAXM + r] : mx;
      double wk[2 * 256], lsum = 0; /* a piece's weight e^(m_k − m); 0 for a piece that saw no key */
      for (int64_t k = 0; k < n; k++) {
        wk[k] = exp((double)j->slot_m[piece[k] * MAXM + r] - mx);
        lsum += wk[k] * j->slot_l[piece[k] * MAXM + r];
      }
      float* o = j->out + ((it->i0 + r / it->ng) * j->H + it->kh * j->G + it->g0 + r % it->ng) * D;
      for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (int64_t k = 0; k < n; k++)
          if (wk[k] > 0) acc += wk[k] * j->slot_O[(piece[k] * MAXM + r) * D + d];
        o[d] = (float)(acc / lsum);
      }
    }
    s0 = s1;
  }
}

/* ---- kept scratch ------------------------------------------------------------------------- */

/* The scratch (items, per-thread tiles, split slots) is a few hundred kilobytes. Fresh pages cost
 * a page fault each on first touch, and the engine calls this kernel for every layer of every step
 * with the same shapes, so the buffer is kept between calls and only grows. A concurrent caller
 * (another JS thread) that finds it in use allocates its own. */
static pthread_mutex_t g_arena_lock = PTHREAD_MUTEX_INITIALIZER;
static void* g_arena;
static size_t g_arena_len;

static void* alloc_lines(size_t n) {
  void* p;
  return posix_memalign(&p, 64, n) == 0 ? p : NULL;
}

static void* arena_acquire(size_t n, bool* cached) {
  *cached = false;
  if (pthread_mutex_trylock(&g_arena_lock) == 0) {
    if (g_arena_len < n) {
      free(g_arena);
      g_arena = alloc_lines(n);
      g_arena_len = g_arena ? n : 0;
    }
    if (g_arena) {
      *cached = true;
      return g_arena;
    }
    pthread_mutex_unlock(&g_arena_lock);
  }
  return alloc_lines(n);
}

static void arena_release(void* p, bool cached) {
  if (cached) pthread_mutex_unlock(&g_arena_lock);
  else free(p);
}

/* Lays the scratch out from `base` (items, part boundaries, split slots, per-thread tiles), or with
 * base = NULL only measures it; returns its size in bytes. */
static size_t layout(pg_job* j, char* base, int threads, int64_t nitems) {
  const int64_t D = j->D, ck = j->ck;
  size_t at = 0;
#define TAKE(ptr, type, n)                                   \
  do {                                                       \
    if (base) (ptr) = (type*)(base + at);                    \
    at += ((size_t)(n) * sizeof(type) + 63) / 64 * 64;       \
  } while (0)
  TAKE(j->items, pg_item, nitems);
  TAKE(j->bounds, pg_pos, threads + 1);
  TAKE(j->scratch, pg_scratch, threads);
  TAKE(j->slot_item, int64_t, 2 * threads);
  TAKE(j->slot_m, float, 2 * threads * MAXM);
  TAKE(j->slot_l, double, 2 * threads * MAXM);
  TAKE(j->slot_O, float, 2 * threads * MAXM * D);
  for (int t = 0; t < threads; t++) {
    pg_scratch* w = base ? &j->scratch[t] : &(pg_scratch){0};
    TAKE(w->Qt, float, D * MAXM);
    TAKE(w->S, float, ck * MAXM);
    TAKE(w->O, float, MAXM * D);
    TAKE(w->m, float, MAXM);
    TAKE(w->shift, float, MAXM);
    TAKE(w->l, double, MAXM);
    TAKE(w->lim, int64_t, MAXM);
    TAKE(w->qrow, const float*, MAXM);
    TAKE(w->orow, float*, MAXM);
    TAKE(w->prow, const float*, MAXM);
    TAKE(w->qtrow, const float*, D);
    TAKE(w->krow, const float*, 2 * ck);
    TAKE(w->vrow, const float*, 2 * ck);
    if (base)
      for (int64_t d = 0; d < D; d++) w->qtrow[d] = w->Qt + d * MAXM;
  }
#undef TAKE
  return at;
}

/* ---- argument checking ---------------------------------------------------------------------- */

#define PG_MAX ((int64_t)1 << 31)

static bool read_sizes(pl_args* a, size_t at, int n, const char* const* names, int64_t* out) {
  for (int i = 0; i < n; i++) {
    if (!pl_int(a, at + i, &out[i])) return false;
    if (out[i] < 0) return pl_fail(a, "%s = %lld must not be negative", names[i], (long long)out[i]);
    if (out[i] > PG_MAX) return pl_fail(a, "%s = %lld is too large", names[i], (long long)out[i]);
  }
  return true;
}

/* numBlocks·KVH·blockSize·D, the elements of each pool; false (and a thrown error) on overflow. */
static bool pool_elems(pl_args* a, int64_t numBlocks, int64_t KVH, int64_t bs, int64_t D, int64_t* n) {
  int64_t x, y;
  if (__builtin_mul_overflow(numBlocks, KVH, &x) || __builtin_mul_overflow(bs, D, &y) || __builtin_mul_overflow(x, y, n))
    return pl_fail(a, "pool sizes overflow");
  return true;
}

/* pagedKVWrite(k, v, kPool, vPool, slots, N, KVH, D, blockSize, numBlocks) */
typedef struct {
  const float *k, *v;
  float *kp, *vp;
  const int32_t* slots;
  int64_t KVH, D, bs;
} kvw_job;

static void kvw_body(void* ctx, int64_t begin, int64_t end, int thread) {
  const kvw_job* j = ctx;
  for (int64_t n = begin; n < end; n++) {
    int64_t slot = j->slots[n];
    if (slot < 0) continue;
    int64_t block = slot / j->bs, off = slot % j->bs;
    for (int64_t kh = 0; kh < j->KVH; kh++) {
      int64_t src = (n * j->KVH + kh) * j->D;                     /* k, v are (N, KVH, D) */
      int64_t dst = ((block * j->KVH + kh) * j->bs + off) * j->D; /* pools are (numBlocks, KVH, bs, D) */
      memcpy(j->kp + dst, j->k + src, (size_t)j->D * sizeof(float));
      memcpy(j->vp + dst, j->v + src, (size_t)j->D * sizeof(float));
    }
  }
}

static napi_value js_paged_kv_write(napi_env env, napi_callback_info info) {
  pl_args a;
  float *k, *v, *kp, *vp;
  int32_t* slots;
  size_t lk, lv, lkp, lvp, ls;
  int64_t sz[5];
  static const char* names[5] = {"N", "KVH", "D", "blockSize", "numBlocks"};
  if (!pl_args_init(env, info, "pagedKVWrite", 10, &a) || !pl_f32(&a, 0, &k, &lk) || !pl_f32(&a, 1, &v, &lv) ||
      !pl_f32(&a, 2, &kp, &lkp) || !pl_f32(&a, 3, &vp, &lvp) || !pl_i32(&a, 4, &slots, &ls) ||
      !read_sizes(&a, 5, 5, names, sz))
    return NULL;
  int64_t N = sz[0], KVH = sz[1], D = sz[2], bs = sz[3], numBlocks = sz[4], pool = 0, tok;
  if (bs < 1) { pl_fail(&a, "blockSize must be at least 1"); return NULL; }
  if (!pool_elems(&a, numBlocks, KVH, bs, D, &pool)) return NULL;
  if (__builtin_mul_overflow(N, KVH * D, &tok)) { pl_fail(&a, "k, v sizes overflow"); return NULL; }
  if (!pl_need(&a, "k", lk, tok) || !pl_need(&a, "v", lv, tok) || !pl_need(&a, "kPool", lkp, pool) ||
      !pl_need(&a, "vPool", lvp, pool) || !pl_need(&a, "slots", ls, N))
    return NULL;
  /* every slot is checked before anything is written, so a bad call leaves the pool as it was */
  for (int64_t n = 0; n < N; n++)
    if (slots[n] >= numBlocks * bs) {
      pl_fail(&a, "slot %d of token %lld is outside the pool of %lld blocks of %lld", slots[n], (long long)n,
              (long long)numBlocks, (long long)bs);
      return NULL;
    }
  kvw_job j = {k, v, kp, vp, slots, KVH, D, bs};
  /* a copy: worth a second thread only for a prefill-sized write */
  int64_t per_token = KVH * D > 0 ? KVH * D : 1;
  pl_parallel_for(N, (1 << 16) / per_token + 1, kvw_body, &j);
  return NULL;
}

/* pagedAttention(q, kPool, vPool, out, blockTables, queryStart, contextLens,
 *                S, H, KVH, D, blockSize, maxBlocks, numBlocks, scale) */
static napi_value js_paged_attention(napi_env env, napi_callback_info info) {
  pl_args a;
  float *q, *kp, *vp, *out;
  int32_t *table, *qs, *cl;
  size_t lq, lkp, lvp, lo, lt, lqs, lcl;
  int64_t sz[7];
  double scale;
  static const char* names[7] = {"S", "H", "KVH", "D", "blockSize", "maxBlocks", "numBlocks"};
  if (!pl_args_init(env, info, "pagedAttention", 15, &a) || !pl_f32(&a, 0, &q, &lq) || !pl_f32(&a, 1, &kp, &lkp) ||
      !pl_f32(&a, 2, &vp, &lvp) || !pl_f32(&a, 3, &out, &lo) || !pl_i32(&a, 4, &table, &lt) ||
      !pl_i32(&a, 5, &qs, &lqs) || !pl_i32(&a, 6, &cl, &lcl) || !read_sizes(&a, 7, 7, names, sz) ||
      !pl_double(&a, 14, &scale))
    return NULL;
  int64_t S = sz[0], H = sz[1], KVH = sz[2], D = sz[3], bs = sz[4], maxBlocks = sz[5], numBlocks = sz[6];
  int64_t pool = 0, tables, rowElems;
  if (bs < 1) { pl_fail(&a, "blockSize must be at least 1"); return NULL; }
  if (KVH == 0 ? H != 0 : H % KVH != 0) {
    pl_fail(&a, "H = %lld is not a multiple of KVH = %lld", (long long)H, (long long)KVH);
    return NULL;
  }
  if (!isfinite(scale)) { pl_fail(&a, "scale must be finite"); return NULL; }
  if (!pool_elems(&a, numBlocks, KVH, bs, D, &pool)) return NULL;
  if (__builtin_mul_overflow(S, maxBlocks, &tables) || __builtin_mul_overflow(H, D, &rowElems)) {
    pl_fail(&a, "sizes overflow");
    return NULL;
  }
  if (!pl_need(&a, "kPool", lkp, pool) || !pl_need(&a, "vPool", lvp, pool) || !pl_need(&a, "blockTables", lt, tables) ||
      !pl_need(&a, "queryStart", lqs, S + 1) || !pl_need(&a, "contextLens", lcl, S))
    return NULL;
  if (qs[0] < 0) { pl_fail(&a, "queryStart[0] = %d must not be negative", qs[0]); return NULL; }
  for (int64_t s = 0; s < S; s++) {
    int64_t nq = (int64_t)qs[s + 1] - qs[s], ctx = cl[s];
    if (nq < 0) { pl_fail(&a, "queryStart must not decrease (entry %lld)", (long long)s + 1); return NULL; }
    if (ctx < nq) {
      pl_fail(&a, "sequence %lld has %lld query tokens but a context of %lld", (long long)s, (long long)nq, (long long)ctx);
      return NULL;
    }
    if (nq == 0) continue;
    if (ctx > maxBlocks * bs) {
      pl_fail(&a, "sequence %lld: context %lld exceeds maxBlocks·blockSize = %lld", (long long)s, (long long)ctx,
              (long long)(maxBlocks * bs));
      return NULL;
    }
    for (int64_t b = 0; b < (ctx + bs - 1) / bs; b++) {
      int32_t id = table[s * maxBlocks + b];
      if (id < 0 || id >= numBlocks) {
        pl_fail(&a, "block %d (entry %lld of sequence %lld) is outside the pool of %lld blocks", id, (long long)b,
                (long long)s, (long long)numBlocks);
        return NULL;
      }
    }
  }
  int64_t N = qs[S], qElems;
  if (__builtin_mul_overflow(N, rowElems, &qElems)) { pl_fail(&a, "q sizes overflow"); return NULL; }
  if (!pl_need(&a, "q", lq, qElems) || !pl_need(&a, "out", lo, qElems)) return NULL;
  if (qElems == 0) return NULL;

  pg_job j = {.q = q, .kp = kp, .vp = vp, .out = out, .table = table, .H = H, .KVH = KVH, .G = H / KVH, .D = D,
              .bs = bs, .maxBlocks = maxBlocks, .scale = scale};
  j.ck = CHUNK;
  /* items: per sequence, per kv head, per group of at most MAXM heads, per tile of query tokens */
  int64_t ng = j.G < MAXM ? j.G : MAXM, tile = MAXM / ng;
  int64_t nitems = 0;
  bool cached;
  for (int64_t s = 0; s < S; s++)
    nitems += KVH * ((j.G + ng - 1) / ng) * ((qs[s + 1] - qs[s] + tile - 1) / tile);
  if (nitems == 0) return NULL; /* no query rows past queryStart[0] */
  int threads = pl_num_threads();
  size_t bytes = layout(&j, NULL, threads, nitems);
  void* arena = arena_acquire(bytes, &cached);
  if (!arena) { pl_fail(&a, "out of memory for attention scratch"); return NULL; }
  layout(&j, arena, threads, nitems);

  int64_t total = 0, n = 0;
  for (int64_t s = 0; s < S; s++)
    for (int64_t kh = 0; kh < KVH; kh++)
      for (int64_t g0 = 0; g0 < j.G; g0 += ng)
        for (int64_t i0 = qs[s]; i0 < qs[s + 1]; i0 += tile) {
          pg_item* it = &j.items[n++];
          it->s = s, it->kh = kh, it->g0 = g0, it->i0 = i0;
          it->ng = (int)(j.G - g0 < ng ? j.G - g0 : ng);
          it->nr = (int)(qs[s + 1] - i0 < tile ? qs[s + 1] - i0 : tile);
          it->p0 = cl[s] - (qs[s + 1] - i0);
          it->nblocks = (it->p0 + it->nr + bs - 1) / bs;
          it->before = total;
          total += it->nblocks * BLOCK_WEIGHT(it->nr * it->ng);
        }
  j.nitems = nitems;
  /* one part per thread of equal weight, cut at block boundaries */
  int64_t parts = total / MIN_PART_WEIGHT < threads ? total / MIN_PART_WEIGHT : threads;
  if (parts < 1) parts = 1;
  int64_t i = 0;
  for (int64_t p = 0; p <= parts; p++) {
    int64_t c = (int64_t)((__int128)total * p / parts);
    while (i + 1 < nitems && j.items[i + 1].before <= c) i++;
    int64_t wgt = BLOCK_WEIGHT(j.items[i].nr * j.items[i].ng);
    int64_t b = (c - j.items[i].before + wgt / 2) / wgt;
    j.bounds[p] = b >= j.items[i].nblocks ? (pg_pos){i + 1, 0} : (pg_pos){i, b};
  }
  for (int64_t s = 0; s < 2 * parts; s++) j.slot_item[s] = -1;
  pl_parallel_for(parts, 1, pick_body(), &j);
  merge_pieces(&j, 2 * parts);
  arena_release(arena, cached);
  return NULL;
}

void pl_register_paged(napi_env env, napi_value exports) {
  pl_export(env, exports, "pagedKVWrite", js_paged_kv_write, "f32");
  pl_export(env, exports, "pagedAttention", js_paged_attention, "f32");
}
