/* Fused scaled dot-product attention, forward and backward, in the manner of FlashAttention-2.
 *
 * Forward: each work item is one tile of BR query rows of one (batch, head). It walks the key
 * tiles (BC keys each) keeping, per query row, the running max m and running sum l of the
 * exponentials and an unnormalised output accumulator O; a new tile with a larger max rescales
 * l and O by exp(m_old - m_new). The BR×BC tile of scores is the only score storage, so memory is
 * linear in T. At the end out = O / l and lse = m + log(l) are written.
 *
 * Backward: with P = exp(s - lse) recomputed per tile from q, k and the saved lse, and
 * D_i = rowsum(dO ⊙ O):
 *   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − D_i) · scale,  dK += dSᵀ Q,  dQ += dS K.
 * Work items are (batch, kv head, key tile): an item owns its rows of dk and dv outright (it loops
 * over every query head of its group and every query tile), so dk and dv need no atomics. dq
 * rows are touched by many items; each thread accumulates into a private dq buffer (thread 0 into
 * dq itself) and the buffers are summed in thread order at the end, so results are deterministic
 * for a given thread count. That costs (threads − 1) copies of dq — linear in T — and saves the
 * second pass over query tiles that would recompute S and dP.
 *
 * The tile products are small GEMMs C (+)= A·B with B row-major and A addressed through two
 * strides, so a transposed A (Pᵀ, dSᵀ) is read in place. Kᵀ and Vᵀ tiles are packed per tile so
 * that the score products also stream B rows. AVX-512 and AVX2 microkernels of up to 4 rows are
 * picked at run time, with a portable scalar path. Exponentials use a vectorised Cephes-style exp
 * (about 1 ulp). Tiles fully hidden by the causal mask are skipped; work items are ordered so that
 * the contiguous chunks the thread pool hands out mix cheap and expensive causal tiles. */
#include "plinth.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BR 64 /* query rows per tile */
#define BC 64 /* keys per tile */

/* C (M×N, row stride ldc) = [C +] A·B, A(r, k) = A[r·ars + k·aks], B (K×N, row stride ldb). */
typedef void (*tile_gemm_fn)(int M, int N, int K, const float* A, int64_t ars, int64_t aks, const float* B,
                             int64_t ldb, float* C, int64_t ldc, bool acc);

/* The per-ISA pieces of the two kernels. */
typedef struct {
  tile_gemm_fn gemm;
  /* x[i] *= s for i < n; returns max x[i] (−inf when n = 0). */
  float (*scale_max)(float* x, int n, float s);
  /* x[i] = exp(x[i] − shift) for i < n, x[i] = 0 for n ≤ i < total; returns the sum. */
  float (*exp_sum)(float* x, int n, int total, float shift);
  /* x[i] *= s for i < n. */
  void (*scale)(float* x, int n, float s);
  /* ds[i] = p[i] · (ds[i] − d) · s for i < n (softmax backward of one row, scale folded in). */
  void (*dsoftmax)(float* ds, const float* p, int n, float d, float s);
} attn_ops;

/* ---- scalar ------------------------------------------------------------------------------ */

static void gemm_scalar(int M, int N, int K, const float* A, int64_t ars, int64_t aks, const float* B,
                        int64_t ldb, float* C, int64_t ldc, bool acc) {
  for (int r = 0; r < M; r++) {
    float* c = C + r * ldc;
    if (!acc) memset(c, 0, (size_t)N * sizeof(float));
    for (int k = 0; k < K; k++) {
      float a = A[r * ars + k * aks];
      const float* b = B + k * ldb;
      for (int n = 0; n < N; n++) c[n] += a * b[n];
    }
  }
}

static float scale_max_scalar(float* x, int n, float s) {
  float m = -INFINITY;
  for (int i = 0; i < n; i++) {
    x[i] *= s;
    if (x[i] > m) m = x[i];
  }
  return m;
}

static float exp_sum_scalar(float* x, int n, int total, float shift) {
  float sum = 0;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - shift);
    sum += x[i];
  }
  for (int i = n; i < total; i++) x[i] = 0;
  return sum;
}

static void scale_scalar(float* x, int n, float s) {
  for (int i = 0; i < n; i++) x[i] *= s;
}

static void dsoftmax_scalar(float* ds, const float* p, int n, float d, float s) {
  for (int i = 0; i < n; i++) ds[i] = p[i] * (ds[i] - d) * s;
}

static const attn_ops ops_scalar = {gemm_scalar, scale_max_scalar, exp_sum_scalar, scale_scalar, dsoftmax_scalar};

#if defined(__x86_64__)

/* Cephes expf: n = round(x·log2 e), r = x − n·ln 2 (in two parts), exp(r) by a degree-6
 * polynomial, times 2^n. Inputs below ln(FLT_MIN) give 0 (masked scores are −inf); NaN passes. */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365447504f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* ---- AVX-512 ----------------------------------------------------------------------------- */
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

static inline T512 __m512 exp512(__m512 x) {
  __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ);
  /* min/max return their second operand when one is NaN, so NaN survives the clamp. */
  x = _mm512_max_ps(_mm512_set1_ps(EXP_LO), _mm512_min_ps(_mm512_set1_ps(EXP_HI), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
  __m512 p = _mm512_set1_ps(EXP_P0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
  __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_mask_mov_ps(_mm512_scalef_ps(y, n), under, _mm512_setzero_ps());
}

static inline T512 __mmask16 mask16(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* One MR×(16·NV) block of C. MR and NV are literals at every call site, so the accumulators live
 * in registers; the last vector column is masked to the block's width. */
static inline __attribute__((always_inline)) T512 void mk512(const int MR, const int NV, int K, const float* A,
                                                              int64_t ars, int64_t aks, const float* B, int64_t ldb,
                                                              float* C, int64_t ldc, bool acc, __mmask16 tail) {
  __m512 c[4][4];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
  for (int k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    const float* a = A + k * aks;
    __m512 bv[4];
    for (int v = 0; v < NV; v++) bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
    for (int r = 0; r < MR; r++) {
      __m512 av = _mm512_set1_ps(a[r * ars]);
      for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) {
      __mmask16 m = v == NV - 1 ? tail : (__mmask16)0xffff;
      float* cp = C + r * ldc + 16 * v;
      __m512 x = acc ? _mm512_add_ps(c[r][v], _mm512_maskz_loadu_ps(m, cp)) : c[r][v];
      _mm512_mask_storeu_ps(cp, m, x);
    }
}

static T512 void gemm_avx512(int M, int N, int K, const float* A, int64_t ars, int64_t aks, const float* B,
                             int64_t ldb, float* C, int64_t ldc, bool acc) {
  for (int n0 = 0; n0 < N; n0 += 64) {
    int nn = N - n0 < 64 ? N - n0 : 64;
    int nv = (nn + 15) / 16;
    __mmask16 tail = mask16(nn - 16 * (nv - 1));
    for (int r0 = 0; r0 < M; r0 += 4) {
      int mr = M - r0 < 4 ? M - r0 : 4;
      const float* a = A + r0 * ars;
      const float* b = B + n0;
      float* c = C + r0 * ldc + n0;
#define MK512(R, V) case (R) * 8 + (V): mk512(R, V, K, a, ars, aks, b, ldb, c, ldc, acc, tail); break;
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

static T512 float scale_max_avx512(float* x, int n, float s) {
  __m512 vs = _mm512_set1_ps(s), mx = _mm512_set1_ps(-INFINITY);
  for (int i = 0; i < n; i += 16) {
    __mmask16 m = mask16(n - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    _mm512_mask_storeu_ps(x + i, m, v);
    mx = _mm512_mask_max_ps(mx, m, mx, v);
  }
  return _mm512_reduce_max_ps(mx);
}

static T512 float exp_sum_avx512(float* x, int n, int total, float shift) {
  __m512 vshift = _mm512_set1_ps(shift), sum = _mm512_setzero_ps();
  for (int i = 0; i < total; i += 16) {
    __mmask16 store = mask16(total - i);
    __mmask16 live = i < n ? mask16(n - i) : 0;
    __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, x + i), vshift)));
    _mm512_mask_storeu_ps(x + i, store, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

static T512 void scale_avx512(float* x, int n, float s) {
  __m512 vs = _mm512_set1_ps(s);
  for (int i = 0; i < n; i += 16) {
    __mmask16 m = mask16(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
  }
}

static T512 void dsoftmax_avx512(float* ds, const float* p, int n, float d, float s) {
  __m512 vd = _mm512_set1_ps(d), vs = _mm512_set1_ps(s);
  for (int i = 0; i < n; i += 16) {
    __mmask16 m = mask16(n - i);
    __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, ds + i), vd);
    _mm512_mask_storeu_ps(ds + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + i), v), vs));
  }
}

static const attn_ops ops_avx512 = {gemm_avx512, scale_max_avx512, exp_sum_avx512, scale_avx512, dsoftmax_avx512};

/* ---- AVX2 -------------------------------------------------------------------------------- */
#define T256 __attribute__((target("avx2,fma")))

static inline T256 __m256i mask8(int n) {
  n = n < 0 ? 0 : n > 8 ? 8 : n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline T256 __m256 exp256(__m256 x) {
  __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), _mm256_min_ps(_mm256_set1_ps(EXP_HI), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
  __m256 p = _mm256_set1_ps(EXP_P0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
  __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  /* 2^n through the exponent field; the clamp keeps n within [−126, 127]. */
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
}

static inline T256 float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline T256 float hmax256(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* As mk512 with 8-wide vectors: MR×(8·NV), NV ≤ 2, keeping 8 accumulators within 16 registers. */
static inline __attribute__((always_inline)) T256 void mk256(const int MR, const int NV, int K, const float* A,
                                                              int64_t ars, int64_t aks, const float* B, int64_t ldb,
                                                              float* C, int64_t ldc, bool acc, __m256i tail, bool full) {
  __m256 c[4][2];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    const float* a = A + k * aks;
    __m256 bv[2];
    for (int v = 0; v < NV; v++)
      bv[v] = v == NV - 1 && !full ? _mm256_maskload_ps(b + 8 * v, tail) : _mm256_loadu_ps(b + 8 * v);
    for (int r = 0; r < MR; r++) {
      __m256 av = _mm256_broadcast_ss(a + r * ars);
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

static T256 void gemm_avx2(int M, int N, int K, const float* A, int64_t ars, int64_t aks, const float* B,
                           int64_t ldb, float* C, int64_t ldc, bool acc) {
  for (int n0 = 0; n0 < N; n0 += 16) {
    int nn = N - n0 < 16 ? N - n0 : 16;
    int nv = (nn + 7) / 8;
    int last = nn - 8 * (nv - 1);
    __m256i tail = mask8(last);
    bool full = last == 8;
    for (int r0 = 0; r0 < M; r0 += 4) {
      int mr = M - r0 < 4 ? M - r0 : 4;
      const float* a = A + r0 * ars;
      const float* b = B + n0;
      float* c = C + r0 * ldc + n0;
#define MK256(R, V) case (R) * 4 + (V): mk256(R, V, K, a, ars, aks, b, ldb, c, ldc, acc, tail, full); break;
      switch (mr * 4 + nv) {
        MK256(1, 1) MK256(1, 2) MK256(2, 1) MK256(2, 2)
        MK256(3, 1) MK256(3, 2) MK256(4, 1) MK256(4, 2)
      }
#undef MK256
    }
  }
}

static T256 float scale_max_avx2(float* x, int n, float s) {
  __m256 vs = _mm256_set1_ps(s), mx = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
    _mm256_storeu_ps(x + i, v);
    mx = _mm256_max_ps(mx, v);
  }
  float m = hmax256(mx);
  for (; i < n; i++) {
    x[i] *= s;
    if (x[i] > m) m = x[i];
  }
  return m;
}

static T256 float exp_sum_avx2(float* x, int n, int total, float shift) {
  __m256 vshift = _mm256_set1_ps(shift), sum = _mm256_setzero_ps();
  for (int i = 0; i < total; i += 8) {
    __m256i store = mask8(total - i);
    __m256i live = mask8(n - i);
    __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, live), vshift));
    e = _mm256_and_ps(e, _mm256_castsi256_ps(live));
    _mm256_maskstore_ps(x + i, store, e);
    sum = _mm256_add_ps(sum, e);
  }
  return hsum256(sum);
}

static T256 void scale_avx2(float* x, int n, float s) {
  __m256 vs = _mm256_set1_ps(s);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
  for (; i < n; i++) x[i] *= s;
}

static T256 void dsoftmax_avx2(float* ds, const float* p, int n, float d, float s) {
  __m256 vd = _mm256_set1_ps(d), vs = _mm256_set1_ps(s);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_sub_ps(_mm256_loadu_ps(ds + i), vd);
    _mm256_storeu_ps(ds + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), v), vs));
  }
  for (; i < n; i++) ds[i] = p[i] * (ds[i] - d) * s;
}

static const attn_ops ops_avx2 = {gemm_avx2, scale_max_avx2, exp_sum_avx2, scale_avx2, dsoftmax_avx2};
#endif

static const attn_ops* pick_ops(void) {
#if defined(__x86_64__)
  if (pl_cpu_avx512f()) return &ops_avx512;
  if (pl_cpu_avx2_fma()) return &ops_avx2;
#endif
  return &ops_scalar;
}

/* ---- shared tile logic ------------------------------------------------------------------- */

typedef struct {
  const attn_ops* ops;
  const float *q, *k, *v, *out, *lse, *dout;
  float *o, *l;               /* forward outputs: out, lse */
  float *dq, *dk, *dv, *dsum; /* backward outputs and D_i = rowsum(dO ⊙ O), (B,H,Tq) */
  float* dqbuf;               /* (threads − 1) private dq accumulators, each (B,H,Tq,D) */
  float* scratch;             /* per-thread tile scratch */
  int64_t B, H, KVH, Tq, Tk, D, qoff, nqt, nkt, scratch_per_thread;
  int threads;
  float scale;
  bool causal;
} attn_job;

/* Visits tile t of n in the order 0, n−1, 1, n−2, ...: under a causal mask tile cost grows with
 * its index, and the thread pool hands out contiguous ranges, so pairing evens the chunks out. */
static int64_t paired(int64_t t, int64_t n) { return (t & 1) ? n - 1 - t / 2 : t / 2; }

/* The keys of tile j0 (nc of them) that query row `row` sees: [0, limit). */
static int visible(const attn_job* j, int64_t row, int64_t j0, int nc) {
  if (!j->causal) return nc;
  int64_t lim = j->qoff + row - j0 + 1;
  return lim <= 0 ? 0 : lim >= nc ? nc : (int)lim;
}

/* Kᵀ tile: dst (D, BC) from src rows (nc, D). */
static void pack_transposed(float* dst, const float* src, int nc, int64_t D) {
  for (int c = 0; c < nc; c++)
    for (int64_t d = 0; d < D; d++) dst[d * BC + c] = src[c * D + d];
}

/* ---- forward ----------------------------------------------------------------------------- */

static void fwd_range(void* ctx, int64_t begin, int64_t end, int thread) {
  attn_job* j = (attn_job*)ctx;
  const attn_ops* ops = j->ops;
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  float* Kt = j->scratch + thread * j->scratch_per_thread; /* (D, BC) */
  float* S = Kt + D * BC;                                   /* (BR, BC) scores, then probabilities */
  float* O = S + BR * BC;                                   /* (BR, D) unnormalised output */
  float* m = O + BR * D;                                    /* (BR) running max */
  float* l = m + BR;                                        /* (BR) running sum */
  for (int64_t item = begin; item < end; item++) {
    int64_t bh = item / j->nqt, b = bh / j->H, h = bh % j->H;
    int64_t i0 = paired(item % j->nqt, j->nqt) * BR;
    int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
    const float* Q = j->q + (bh * Tq + i0) * D;                 /* (nr, D) */
    const float* K = j->k + (b * j->KVH + h / G) * Tk * D;      /* (Tk, D) */
    const float* V = j->v + (b * j->KVH + h / G) * Tk * D;      /* (Tk, D) */
    for (int r = 0; r < nr; r++) {
      m[r] = -INFINITY;
      l[r] = 0;
    }
    memset(O, 0, (size_t)(nr * D) * sizeof(float));
    /* Keys past the last row's position are masked for the whole tile. */
    int64_t kend = Tk;
    if (j->causal) {
      int64_t last = j->qoff + i0 + nr;
      kend = last < 0 ? 0 : last < Tk ? last : Tk;
    }
    for (int64_t j0 = 0; j0 < kend; j0 += BC) {
      int nc = kend - j0 < BC ? (int)(kend - j0) : BC;
      pack_transposed(Kt, K + j0 * D, nc, D);
      ops->gemm(nr, nc, (int)D, Q, D, 1, Kt, BC, S, BC, false); /* S = Q Kᵀ */
      for (int r = 0; r < nr; r++) {
        float* row = S + r * BC;
        int lim = visible(j, i0 + r, j0, nc);
        float mx = ops->scale_max(row, lim, j->scale);
        float mnew = mx > m[r] ? mx : m[r];
        if (mnew == -INFINITY) { /* nothing visible yet: contributes nothing */
          memset(row, 0, (size_t)nc * sizeof(float));
          continue;
        }
        float alpha = expf(m[r] - mnew);
        l[r] = l[r] * alpha + ops->exp_sum(row, lim, nc, mnew);
        m[r] = mnew;
        if (alpha != 1.0f) ops->scale(O + r * D, (int)D, alpha);
      }
      ops->gemm(nr, (int)D, nc, S, BC, 1, V + j0 * D, D, O, D, true); /* O += P V */
    }
    float* out = j->o + (bh * Tq + i0) * D;
    float* lse = j->l + bh * Tq + i0;
    for (int r = 0; r < nr; r++) {
      /* A row that saw no key (only possible without causal's key 0, e.g. Tk = 0) gets 0 and −inf. */
      if (l[r] > 0) {
        float inv = 1.0f / l[r];
        for (int64_t d = 0; d < D; d++) out[r * D + d] = O[r * D + d] * inv;
        lse[r] = m[r] + logf(l[r]);
      } else {
        memset(out + r * D, 0, (size_t)D * sizeof(float));
        lse[r] = -INFINITY;
      }
    }
  }
}

/* ---- backward ---------------------------------------------------------------------------- */

static void dsum_range(void* ctx, int64_t begin, int64_t end, int thread) {
  attn_job* j = (attn_job*)ctx;
  for (int64_t r = begin; r < end; r++) {
    const float* o = j->out + r * j->D;
    const float* g = j->dout + r * j->D;
    double s = 0;
    for (int64_t d = 0; d < j->D; d++) s += (double)o[d] * g[d];
    j->dsum[r] = (float)s;
  }
}

static void bwd_range(void* ctx, int64_t begin, int64_t end, int thread) {
  attn_job* j = (attn_job*)ctx;
  const attn_ops* ops = j->ops;
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  float* Kt = j->scratch + thread * j->scratch_per_thread; /* (D, BC) */
  float* Vt = Kt + D * BC;                                  /* (D, BC) */
  float* P = Vt + D * BC;                                   /* (BR, BC) */
  float* dS = P + BR * BC;                                  /* (BR, BC) dP, then dS */
  float* dqacc = thread == 0 ? j->dq : j->dqbuf + (thread - 1) * j->B * j->H * Tq * D;
  for (int64_t item = begin; item < end; item++) {
    int64_t bk = item / j->nkt, b = bk / j->KVH;
    int64_t j0 = paired(item % j->nkt, j->nkt) * BC;
    int nc = Tk - j0 < BC ? (int)(Tk - j0) : BC;
    const float* K = j->k + (bk * Tk + j0) * D; /* (nc, D) */
    const float* V = j->v + (bk * Tk + j0) * D;
    float* dK = j->dk + (bk * Tk + j0) * D;
    float* dV = j->dv + (bk * Tk + j0) * D;
    memset(dK, 0, (size_t)(nc * D) * sizeof(float));
    memset(dV, 0, (size_t)(nc * D) * sizeof(float));
    pack_transposed(Kt, K, nc, D);
    pack_transposed(Vt, V, nc, D);
    /* Under the causal mask, query i sees key j0 only when qoff + i >= j0. */
    int64_t first = j->causal && j0 - j->qoff > 0 ? (j0 - j->qoff) / BR * BR : 0;
    for (int64_t g = 0; g < G; g++) {
      int64_t bh = b * j->H + (bk % j->KVH) * G + g;
      for (int64_t i0 = first; i0 < Tq; i0 += BR) {
        int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
        const float* Q = j->q + (bh * Tq + i0) * D;   /* (nr, D) */
        const float* dO = j->dout + (bh * Tq + i0) * D;
        const float* lse = j->lse + bh * Tq + i0;
        const float* Di = j->dsum + bh * Tq + i0;
        float* dQ = dqacc + (bh * Tq + i0) * D;
        ops->gemm(nr, nc, (int)D, Q, D, 1, Kt, BC, P, BC, false); /* S = Q Kᵀ */
        for (int r = 0; r < nr; r++) {
          float* row = P + r * BC;
          int lim = visible(j, i0 + r, j0, nc);
          if (lse[r] == -INFINITY) lim = 0; /* a row that saw nothing has no gradient */
          ops->scale_max(row, lim, j->scale);
          ops->exp_sum(row, lim, nc, lse[r]); /* P = exp(s − lse) */
        }
        ops->gemm(nc, (int)D, nr, P, 1, BC, dO, D, dV, D, true);    /* dV += Pᵀ dO */
        ops->gemm(nr, nc, (int)D, dO, D, 1, Vt, BC, dS, BC, false); /* dP = dO Vᵀ */
        for (int r = 0; r < nr; r++) ops->dsoftmax(dS + r * BC, P + r * BC, nc, Di[r], j->scale);
        ops->gemm(nc, (int)D, nr, dS, 1, BC, Q, D, dK, D, true);    /* dK += dSᵀ Q */
        ops->gemm(nr, (int)D, nc, dS, BC, 1, K, D, dQ, D, true);    /* dQ += dS K */
      }
    }
  }
}

static void dq_reduce_range(void* ctx, int64_t begin, int64_t end, int thread) {
  attn_job* j = (attn_job*)ctx;
  int64_t n = j->B * j->H * j->Tq * j->D;
  for (int t = 0; t < j->threads - 1; t++) {
    const float* src = j->dqbuf + t * n;
    for (int64_t e = begin; e < end; e++) j->dq[e] += src[e];
  }
}

/* ---- argument checking ------------------------------------------------------------------- */

/* Reads B, H, KVH, Tq, Tk, D, scale, causal, qOffset starting at argument `at`. */
static bool read_shape(pl_args* a, size_t at, attn_job* j) {
  int64_t s[6], qoff;
  double scale;
  bool causal;
  for (int i = 0; i < 6; i++)
    if (!pl_int(a, at + i, &s[i])) return false;
  if (!pl_double(a, at + 6, &scale) || !pl_bool(a, at + 7, &causal) || !pl_int(a, at + 8, &qoff)) return false;
  static const char* names[6] = {"B", "H", "KVH", "Tq", "Tk", "D"};
  for (int i = 0; i < 6; i++) {
    if (s[i] < 0) return pl_fail(a, "%s = %lld must not be negative", names[i], (long long)s[i]);
    if (s[i] > ((int64_t)1 << 31)) return pl_fail(a, "%s = %lld is too large", names[i], (long long)s[i]);
  }
  if (s[2] == 0 ? s[1] != 0 : s[1] % s[2] != 0)
    return pl_fail(a, "H = %lld is not a multiple of KVH = %lld", (long long)s[1], (long long)s[2]);
  if (!isfinite(scale)) return pl_fail(a, "scale must be finite");
  if (causal && (qoff < 0 || qoff > ((int64_t)1 << 31)))
    return pl_fail(a, "qOffset = %lld is out of range", (long long)qoff);
  int64_t qn, kn, rows;
  if (__builtin_mul_overflow(s[0] * s[1], s[3] * s[5], &qn) || __builtin_mul_overflow(s[0] * s[2], s[4] * s[5], &kn) ||
      __builtin_mul_overflow(s[0] * s[1], s[3], &rows))
    return pl_fail(a, "tensor sizes overflow");
  j->B = s[0], j->H = s[1], j->KVH = s[2], j->Tq = s[3], j->Tk = s[4], j->D = s[5];
  j->scale = (float)scale;
  j->causal = causal;
  j->qoff = causal ? qoff : 0;
  j->nqt = (j->Tq + BR - 1) / BR;
  j->nkt = (j->Tk + BC - 1) / BC;
  return true;
}

static int64_t q_elems(const attn_job* j) { return j->B * j->H * j->Tq * j->D; }
static int64_t kv_elems(const attn_job* j) { return j->B * j->KVH * j->Tk * j->D; }

/* attention(q, k, v, out, lse, B, H, KVH, Tq, Tk, D, scale, causal, qOffset) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  pl_args a;
  attn_job j = {0};
  float *q, *k, *v, *out, *lse;
  size_t lq, lk, lv, lo, ll;
  if (!pl_args_init(env, info, "attention", 14, &a) || !pl_f32(&a, 0, &q, &lq) || !pl_f32(&a, 1, &k, &lk) ||
      !pl_f32(&a, 2, &v, &lv) || !pl_f32(&a, 3, &out, &lo) || !pl_f32(&a, 4, &lse, &ll) || !read_shape(&a, 5, &j))
    return NULL;
  if (!pl_need(&a, "q", lq, q_elems(&j)) || !pl_need(&a, "k", lk, kv_elems(&j)) || !pl_need(&a, "v", lv, kv_elems(&j)) ||
      !pl_need(&a, "out", lo, q_elems(&j)) || !pl_need(&a, "lse", ll, j.B * j.H * j.Tq))
    return NULL;
  if (j.B * j.H * j.Tq == 0) return NULL;
  int threads = pl_num_threads();
  j.scratch_per_thread = (j.D * BC + BR * BC + BR * j.D + 2 * BR + 15) / 16 * 16;
  j.scratch = calloc((size_t)(threads * j.scratch_per_thread), sizeof(float));
  if (!j.scratch) { pl_fail(&a, "out of memory for tile scratch"); return NULL; }
  j.ops = pick_ops();
  j.q = q, j.k = k, j.v = v, j.o = out, j.l = lse;
  pl_parallel_for(j.B * j.H * j.nqt, 1, fwd_range, &j);
  free(j.scratch);
  return NULL;
}

/* attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, H, KVH, Tq, Tk, D, scale, causal, qOffset) */
static napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  attn_job j = {0};
  float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
  size_t lq, lk, lv, lo, ll, ldo, ldq, ldk, ldv;
  if (!pl_args_init(env, info, "attentionBackward", 18, &a) || !pl_f32(&a, 0, &q, &lq) || !pl_f32(&a, 1, &k, &lk) ||
      !pl_f32(&a, 2, &v, &lv) || !pl_f32(&a, 3, &out, &lo) || !pl_f32(&a, 4, &lse, &ll) ||
      !pl_f32(&a, 5, &dout, &ldo) || !pl_f32(&a, 6, &dq, &ldq) || !pl_f32(&a, 7, &dk, &ldk) ||
      !pl_f32(&a, 8, &dv, &ldv) || !read_shape(&a, 9, &j))
    return NULL;
  int64_t nq = q_elems(&j), nk = kv_elems(&j);
  if (!pl_need(&a, "q", lq, nq) || !pl_need(&a, "k", lk, nk) || !pl_need(&a, "v", lv, nk) ||
      !pl_need(&a, "out", lo, nq) || !pl_need(&a, "lse", ll, j.B * j.H * j.Tq) || !pl_need(&a, "dout", ldo, nq) ||
      !pl_need(&a, "dq", ldq, nq) || !pl_need(&a, "dk", ldk, nk) || !pl_need(&a, "dv", ldv, nk))
    return NULL;
  memset(dq, 0, (size_t)nq * sizeof(float));
  memset(dk, 0, (size_t)nk * sizeof(float));
  memset(dv, 0, (size_t)nk * sizeof(float));
  if (nq == 0 || nk == 0) return NULL;
  int threads = j.threads = pl_num_threads();
  j.scratch_per_thread = (2 * j.D * BC + 2 * BR * BC + 15) / 16 * 16;
  j.scratch = calloc((size_t)(threads * j.scratch_per_thread), sizeof(float));
  j.dsum = malloc((size_t)(j.B * j.H * j.Tq) * sizeof(float));
  j.dqbuf = threads > 1 ? calloc((size_t)((threads - 1) * nq), sizeof(float)) : NULL;
  if (!j.scratch || !j.dsum || (threads > 1 && !j.dqbuf)) {
    free(j.scratch), free(j.dsum), free(j.dqbuf);
    pl_fail(&a, "out of memory for backward buffers");
    return NULL;
  }
  j.ops = pick_ops();
  j.q = q, j.k = k, j.v = v, j.out = out, j.lse = lse, j.dout = dout, j.dq = dq, j.dk = dk, j.dv = dv;
  pl_parallel_for(j.B * j.H * j.Tq, 256, dsum_range, &j);
  pl_parallel_for(j.B * j.KVH * j.nkt, 1, bwd_range, &j);
  if (threads > 1) pl_parallel_for(nq, 4096, dq_reduce_range, &j);
  free(j.scratch), free(j.dsum), free(j.dqbuf);
  return NULL;
}

void pl_register_attention(napi_env env, napi_value exports) {
  pl_export(env, exports, "attention", js_attention, "f32");
  pl_export(env, exports, "attentionBackward", js_attention_backward, "f32");
}
