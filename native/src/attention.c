/* Fused scaled dot-product attention, forward and backward, in the manner of FlashAttention-2.
 *
 * Forward: each work item is one tile of BR query rows of one (batch, head). It walks the key
 * tiles (BC keys each) keeping, per query row, the running max m and running sum l of the
 * exponentials and an unnormalised output accumulator O; a tile with a larger max rescales l and
 * O by exp(m_old − m_new). The tile of scores is the only score storage, so memory is linear in T.
 * At the end out = O / l and lse = m + log(l) are written. The scores are computed transposed,
 * Sᵀ = K·(scale·Q)ᵀ with keys as rows, so that the query tile is transposed once per item rather
 * than every key tile once per query tile; the running max and sum then run along the rows of Sᵀ,
 * one SIMD lane per query.
 *
 * Backward, with P = exp(s − lse) recomputed per tile and D_i = rowsum(dO ⊙ O):
 *   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − D_i),  dK += scale·dSᵀ Q,  dQ += scale·dS K.
 * Work items are (batch, kv head, key tile): an item owns its rows of dk and dv outright (it loops
 * over every query head of its group and every query tile), so dk and dv need no atomics. dq rows
 * are touched by many items, so each thread accumulates into a private dq buffer and the buffers
 * are summed in thread order at the end: deterministic for a given thread count, at the price of
 * one dq-sized buffer per thread (linear in T) instead of a second pass that recomputes S and dP.
 *
 * Precision. Inputs and outputs are float32, but tiles are widened to double as they are loaded and
 * every product accumulates in double. The plain path this kernel replaces (matmul, softmax,
 * matmul) rounds to float32 only between kernels; a float32 FMA chain over D or over a key tile,
 * or the float32 rounding of the saved lse (a common relative error of |lse|·2⁻²⁴ on a whole row of
 * P), each costs several times that, and the fused kernel is held to at most twice the plain
 * path's error. So the backward first recomputes every row's normaliser in double (the saved lse
 * serves as the shift that keeps the exponentials in range) and uses that. Double halves the SIMD
 * width; skipping masked tiles and never touching a T×T buffer keeps the fused kernel ahead of the
 * materialised path all the same.
 *
 * The tile products are small GEMMs C (+)= A·B with B row-major and A addressed through two
 * strides, so a transposed A (Pᵀ, dSᵀ) is read in place. The GEMM microkernels and exp are written
 * with AVX-512 and AVX2 intrinsics; everything else is plain loops in always-inline bodies that
 * are compiled once per instruction set (the *_avx512 / *_avx2 / *_scalar wrappers), so the
 * compiler vectorises them for the ISA picked at run time. Tiles fully hidden by the causal mask
 * are skipped, and work items are ordered so that the contiguous ranges the thread pool hands out
 * mix cheap and expensive causal tiles. */
#include "plinth.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BR 64 /* query rows per tile */
#define BC 64 /* keys per tile */
#define INLINE static inline __attribute__((always_inline))

/* The instruction-set-specific primitives. */
typedef struct {
  /* C (M×N, row stride ldc) = [C +] A·B, A(r, k) = A[r·ars + k·aks], B (K×N, row stride ldb). */
  void (*gemm)(int M, int N, int K, const double* A, int64_t ars, int64_t aks, const double* B, int64_t ldb,
               double* C, int64_t ldc, bool acc);
  /* x[i] = exp(x[i] − shift[i]) for i < n, or exp(x[i] − shift[0]) when `broadcast`. */
  void (*exp_sub)(double* x, int n, const double* shift, bool broadcast);
  /* s[c] = q·K[c] for the n rows of K (n, D), read as float32: scores of a single query. */
  void (*dots)(const double* q, const float* K, int n, int64_t D, double* s);
  /* o += Σ_c p[c]·V[c] over the n rows of V (n, D), read as float32: output of a single query. */
  void (*axpys)(const double* p, const float* V, int n, int64_t D, double* o);
} attn_isa;

/* ---- scalar ------------------------------------------------------------------------------ */

static void gemm_scalar(int M, int N, int K, const double* A, int64_t ars, int64_t aks, const double* B,
                        int64_t ldb, double* C, int64_t ldc, bool acc) {
  for (int r = 0; r < M; r++) {
    double* c = C + r * ldc;
    if (!acc) memset(c, 0, (size_t)N * sizeof(double));
    for (int k = 0; k < K; k++) {
      double a = A[r * ars + k * aks];
      const double* b = B + k * ldb;
      for (int n = 0; n < N; n++) c[n] += a * b[n];
    }
  }
}

static void exp_sub_scalar(double* x, int n, const double* shift, bool broadcast) {
  for (int i = 0; i < n; i++) x[i] = exp(x[i] - shift[broadcast ? 0 : i]);
}

static void dots_scalar(const double* q, const float* K, int n, int64_t D, double* s) {
  for (int c = 0; c < n; c++) {
    double acc = 0;
    for (int64_t d = 0; d < D; d++) acc += q[d] * K[c * D + d];
    s[c] = acc;
  }
}

static void axpys_scalar(const double* p, const float* V, int n, int64_t D, double* o) {
  for (int c = 0; c < n; c++)
    for (int64_t d = 0; d < D; d++) o[d] += p[c] * V[c * D + d];
}

static const attn_isa isa_scalar = {gemm_scalar, exp_sub_scalar, dots_scalar, axpys_scalar};

#if defined(__x86_64__)

/* exp(x) = 2ⁿ·exp(r) with n = round(x·log2 e) and r = x − n·ln 2 (ln 2 in two parts, |r| ≤ ln2/2);
 * exp(r) by its Taylor series to degree 9 (relative error below 1e-11, far under float32's).
 * Inputs below −708 give 0, which is what masked (−inf) scores need; NaN passes through. */
#define EXP_HI 709.0
#define EXP_LO -708.0
#define EXP_LOG2E 1.4426950408889634074
#define EXP_LN2_HI 6.93147180369123816490e-01
#define EXP_LN2_LO 1.90821492927058770002e-10
static const double exp_taylor[10] = {1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
                                      1.0 / 24,     1.0 / 6,     0.5,        1.0,        1.0};

/* ---- AVX-512 ----------------------------------------------------------------------------- */
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

INLINE T512 __m512d exp512(__m512d x) {
  __mmask8 under = _mm512_cmp_pd_mask(x, _mm512_set1_pd(EXP_LO), _CMP_LT_OQ);
  /* min/max return their second operand when one is NaN, so NaN survives the clamp. */
  x = _mm512_max_pd(_mm512_set1_pd(EXP_LO), _mm512_min_pd(_mm512_set1_pd(EXP_HI), x));
  __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(EXP_LN2_HI), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(EXP_LN2_LO), r);
  __m512d p = _mm512_set1_pd(exp_taylor[0]);
  for (int i = 1; i < 10; i++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(exp_taylor[i]));
  return _mm512_mask_mov_pd(_mm512_scalef_pd(p, n), under, _mm512_setzero_pd());
}

INLINE T512 __mmask8 mask8(int n) { return n >= 8 ? (__mmask8)0xff : n <= 0 ? 0 : (__mmask8)((1u << n) - 1); }

/* One MR×(8·NV) block of C. MR and NV are literals at every call site, so the accumulators live
 * in registers; the last vector column is masked to the block's width. */
INLINE T512 void mk512(const int MR, const int NV, int K, const double* A, int64_t ars, int64_t aks, const double* B,
                       int64_t ldb, double* C, int64_t ldc, bool acc, __mmask8 tail) {
  __m512d c[4][4];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_pd();
  for (int k = 0; k < K; k++) {
    const double* b = B + k * ldb;
    const double* a = A + k * aks;
    __m512d bv[4];
    for (int v = 0; v < NV; v++) bv[v] = v == NV - 1 ? _mm512_maskz_loadu_pd(tail, b + 8 * v) : _mm512_loadu_pd(b + 8 * v);
    for (int r = 0; r < MR; r++) {
      __m512d av = _mm512_set1_pd(a[r * ars]);
      for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_pd(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) {
      __mmask8 m = v == NV - 1 ? tail : (__mmask8)0xff;
      double* cp = C + r * ldc + 8 * v;
      __m512d x = acc ? _mm512_add_pd(c[r][v], _mm512_maskz_loadu_pd(m, cp)) : c[r][v];
      _mm512_mask_storeu_pd(cp, m, x);
    }
}

static T512 void gemm_avx512(int M, int N, int K, const double* A, int64_t ars, int64_t aks, const double* B,
                             int64_t ldb, double* C, int64_t ldc, bool acc) {
  for (int n0 = 0; n0 < N; n0 += 32) {
    int nn = N - n0 < 32 ? N - n0 : 32;
    int nv = (nn + 7) / 8;
    __mmask8 tail = mask8(nn - 8 * (nv - 1));
    for (int r0 = 0; r0 < M; r0 += 4) {
      int mr = M - r0 < 4 ? M - r0 : 4;
      const double* a = A + r0 * ars;
      const double* b = B + n0;
      double* c = C + r0 * ldc + n0;
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

static T512 void exp_sub_avx512(double* x, int n, const double* shift, bool broadcast) {
  __m512d s = _mm512_set1_pd(shift[0]);
  for (int i = 0; i < n; i += 8) {
    __mmask8 m = mask8(n - i);
    if (!broadcast) s = _mm512_maskz_loadu_pd(m, shift + i);
    _mm512_mask_storeu_pd(x + i, m, exp512(_mm512_sub_pd(_mm512_maskz_loadu_pd(m, x + i), s)));
  }
}

static T512 void dots_avx512(const double* q, const float* K, int n, int64_t D, double* s) {
  for (int c = 0; c < n; c++) {
    const float* k = K + c * D;
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
      a0 = _mm512_fmadd_pd(_mm512_loadu_pd(q + d), _mm512_cvtps_pd(_mm256_loadu_ps(k + d)), a0);
      a1 = _mm512_fmadd_pd(_mm512_loadu_pd(q + d + 8), _mm512_cvtps_pd(_mm256_loadu_ps(k + d + 8)), a1);
    }
    for (; d < D; d += 8) {
      __mmask8 m = mask8((int)(D - d));
      a0 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m, q + d), _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, k + d)), a0);
    }
    s[c] = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  }
}

static T512 void axpys_avx512(const double* p, const float* V, int n, int64_t D, double* o) {
  for (int64_t d0 = 0; d0 < D; d0 += 32) {
    __mmask8 m[4];
    __m512d acc[4];
    for (int v = 0; v < 4; v++) {
      m[v] = mask8((int)(D - d0 - 8 * v));
      acc[v] = _mm512_maskz_loadu_pd(m[v], o + d0 + 8 * v);
    }
    for (int c = 0; c < n; c++) {
      __m512d pc = _mm512_set1_pd(p[c]);
      const float* row = V + c * D + d0;
      for (int v = 0; v < 4; v++) acc[v] = _mm512_fmadd_pd(pc, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m[v], row + 8 * v)), acc[v]);
    }
    for (int v = 0; v < 4; v++) _mm512_mask_storeu_pd(o + d0 + 8 * v, m[v], acc[v]);
  }
}

static const attn_isa isa_avx512 = {gemm_avx512, exp_sub_avx512, dots_avx512, axpys_avx512};

/* ---- AVX2 -------------------------------------------------------------------------------- */
#define T256 __attribute__((target("avx2,fma")))

INLINE T256 __m256i mask4(int n) {
  n = n < 0 ? 0 : n > 4 ? 4 : n;
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

INLINE T256 __m256d exp256(__m256d x) {
  __m256d under = _mm256_cmp_pd(x, _mm256_set1_pd(EXP_LO), _CMP_LT_OQ);
  x = _mm256_max_pd(_mm256_set1_pd(EXP_LO), _mm256_min_pd(_mm256_set1_pd(EXP_HI), x));
  __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(EXP_LN2_HI), x);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(EXP_LN2_LO), r);
  __m256d p = _mm256_set1_pd(exp_taylor[0]);
  for (int i = 1; i < 10; i++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(exp_taylor[i]));
  /* 2ⁿ through the exponent field: the clamp keeps n within [−1021, 1023], all normal numbers. */
  __m256i e = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
  p = _mm256_mul_pd(p, _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(e, _mm256_set1_epi64x(1023)), 52)));
  return _mm256_blendv_pd(p, _mm256_setzero_pd(), under);
}

/* As mk512 with 4-wide vectors: MR×(4·NV), NV ≤ 3, so 12 accumulators fit in 16 registers. */
INLINE T256 void mk256(const int MR, const int NV, int K, const double* A, int64_t ars, int64_t aks, const double* B,
                       int64_t ldb, double* C, int64_t ldc, bool acc, __m256i tail, bool full) {
  __m256d c[4][3];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = _mm256_setzero_pd();
  for (int k = 0; k < K; k++) {
    const double* b = B + k * ldb;
    const double* a = A + k * aks;
    __m256d bv[3];
    for (int v = 0; v < NV; v++)
      bv[v] = v == NV - 1 && !full ? _mm256_maskload_pd(b + 4 * v, tail) : _mm256_loadu_pd(b + 4 * v);
    for (int r = 0; r < MR; r++) {
      __m256d av = _mm256_broadcast_sd(a + r * ars);
      for (int v = 0; v < NV; v++) c[r][v] = _mm256_fmadd_pd(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) {
      double* cp = C + r * ldc + 4 * v;
      if (v == NV - 1 && !full) {
        __m256d x = acc ? _mm256_add_pd(c[r][v], _mm256_maskload_pd(cp, tail)) : c[r][v];
        _mm256_maskstore_pd(cp, tail, x);
      } else {
        _mm256_storeu_pd(cp, acc ? _mm256_add_pd(c[r][v], _mm256_loadu_pd(cp)) : c[r][v]);
      }
    }
}

static T256 void gemm_avx2(int M, int N, int K, const double* A, int64_t ars, int64_t aks, const double* B,
                           int64_t ldb, double* C, int64_t ldc, bool acc) {
  for (int n0 = 0; n0 < N; n0 += 12) {
    int nn = N - n0 < 12 ? N - n0 : 12;
    int nv = (nn + 3) / 4;
    int last = nn - 4 * (nv - 1);
    __m256i tail = mask4(last);
    bool full = last == 4;
    for (int r0 = 0; r0 < M; r0 += 4) {
      int mr = M - r0 < 4 ? M - r0 : 4;
      const double* a = A + r0 * ars;
      const double* b = B + n0;
      double* c = C + r0 * ldc + n0;
#define MK256(R, V) case (R) * 4 + (V): mk256(R, V, K, a, ars, aks, b, ldb, c, ldc, acc, tail, full); break;
      switch (mr * 4 + nv) {
        MK256(1, 1) MK256(1, 2) MK256(1, 3) MK256(2, 1) MK256(2, 2) MK256(2, 3)
        MK256(3, 1) MK256(3, 2) MK256(3, 3) MK256(4, 1) MK256(4, 2) MK256(4, 3)
      }
#undef MK256
    }
  }
}

static T256 void exp_sub_avx2(double* x, int n, const double* shift, bool broadcast) {
  __m256d s = _mm256_set1_pd(shift[0]);
  for (int i = 0; i < n; i += 4) {
    __m256i m = mask4(n - i);
    if (!broadcast) s = _mm256_maskload_pd(shift + i, m);
    _mm256_maskstore_pd(x + i, m, exp256(_mm256_sub_pd(_mm256_maskload_pd(x + i, m), s)));
  }
}

static T256 void dots_avx2(const double* q, const float* K, int n, int64_t D, double* s) {
  for (int c = 0; c < n; c++) {
    const float* k = K + c * D;
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
      a0 = _mm256_fmadd_pd(_mm256_loadu_pd(q + d), _mm256_cvtps_pd(_mm_loadu_ps(k + d)), a0);
      a1 = _mm256_fmadd_pd(_mm256_loadu_pd(q + d + 4), _mm256_cvtps_pd(_mm_loadu_ps(k + d + 4)), a1);
    }
    for (; d < D; d += 4) {
      __m256i m = mask4((int)(D - d));
      __m128i m32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(m, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
      a0 = _mm256_fmadd_pd(_mm256_maskload_pd(q + d, m), _mm256_cvtps_pd(_mm_maskload_ps(k + d, m32)), a0);
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    s[c] = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }
}

static T256 void axpys_avx2(const double* p, const float* V, int n, int64_t D, double* o) {
  for (int64_t d0 = 0; d0 < D; d0 += 16) {
    __m256i m[4];
    __m128i m32[4];
    __m256d acc[4];
    for (int v = 0; v < 4; v++) {
      m[v] = mask4((int)(D - d0 - 4 * v));
      m32[v] = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(m[v], _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
      acc[v] = _mm256_maskload_pd(o + d0 + 4 * v, m[v]);
    }
    for (int c = 0; c < n; c++) {
      __m256d pc = _mm256_set1_pd(p[c]);
      const float* row = V + c * D + d0;
      for (int v = 0; v < 4; v++) acc[v] = _mm256_fmadd_pd(pc, _mm256_cvtps_pd(_mm_maskload_ps(row + 4 * v, m32[v])), acc[v]);
    }
    for (int v = 0; v < 4; v++) _mm256_maskstore_pd(o + d0 + 4 * v, m[v], acc[v]);
  }
}

static const attn_isa isa_avx2 = {gemm_avx2, exp_sub_avx2, dots_avx2, axpys_avx2};
#endif

/* ---- the kernels, written once ----------------------------------------------------------- */

typedef struct {
  const float *q, *k, *v, *out, *lse, *dout;
  float *o, *l;          /* forward outputs: out, lse */
  float *dq, *dk, *dv;   /* backward outputs */
  double *lse64, *delta; /* backward: exact log-normaliser and D_i = rowsum(dO ⊙ O), (B,H,Tq) */
  double* dqbuf;         /* backward: one private dq accumulator per thread, each (B,H,Tq,D) */
  double* scratch;       /* per-thread tile scratch */
  int64_t B, H, KVH, Tq, Tk, D, qoff, nqt, nkt, scratch_per_thread;
  int threads;
  double scale;
  bool causal;
} attn_job;

/* Visits tile t of n in the order 0, n−1, 1, n−2, ...: under a causal mask tile cost grows with
 * its index, and the thread pool hands out contiguous ranges, so pairing evens the ranges out. */
static int64_t paired(int64_t t, int64_t n) { return (t & 1) ? n - 1 - t / 2 : t / 2; }

/* The keys [0, end) that some row of the query tile [i0, i0 + nr) sees. */
static int64_t key_end(const attn_job* j, int64_t i0, int nr) {
  if (!j->causal) return j->Tk;
  int64_t last = j->qoff + i0 + nr;
  return last < 0 ? 0 : last < j->Tk ? last : j->Tk;
}

/* Whether the causal mask cuts into the tile of queries [i0, i0 + nr) × keys [j0, j0 + nc). */
static bool cut_by_mask(const attn_job* j, int64_t i0, int64_t j0, int nc) {
  return j->causal && j0 + nc - 1 > j->qoff + i0;
}

/* dst (n, D) = s·src (n, D), widened to double. */
INLINE void widen(double* dst, const float* src, int64_t n, double s) {
  for (int64_t e = 0; e < n; e++) dst[e] = s * (double)src[e];
}

/* dst (D, ld) = s·src (n, D)ᵀ, widened to double. */
INLINE void widen_transposed(double* dst, int64_t ld, const float* src, int n, int64_t D, double s) {
  for (int c = 0; c < n; c++)
    for (int64_t d = 0; d < D; d++) dst[d * ld + c] = s * (double)src[c * D + d];
}

/* ---- forward ----------------------------------------------------------------------------- */

/* The online-softmax step of row r for a tile whose max is mnew (≥ the running max m[r]):
 * rescales l and O by exp(m_old − m_new) and returns the shift the tile's exponentials subtract. A
 * row that has seen no key yet keeps shift 0, so that exp(−inf − 0) = 0 rather than NaN. */
INLINE double online_rescale(double* m, double* l, double* O, int r, int64_t D, double mnew) {
  double shift = mnew == -INFINITY ? 0 : mnew;
  double alpha = exp(m[r] - shift);
  m[r] = mnew;
  l[r] *= alpha;
  if (alpha != 1.0)
    for (int64_t d = 0; d < D; d++) O[r * D + d] *= alpha;
  return shift;
}

/* Query tiles of at most this many rows (decode) work along D, one row at a time, reading K and V
 * as float32: the transposed score product would fill one SIMD lane of eight, and widening whole
 * K and V tiles for one query costs more than the arithmetic. */
#define DOT_ROWS 2

INLINE void fwd_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  double* Q = j->scratch + thread * j->scratch_per_thread; /* (D, BR) (scale·Q)ᵀ, or (nr, D) scale·Q */
  double* K = Q + D * BR;                                   /* (BC, D) */
  double* V = K + BC * D;                                   /* (BC, D) */
  double* S = V + BC * D;                                   /* (BC, BR) Sᵀ, or (nr, BC) S; then probabilities */
  double* O = S + BC * BR;                                  /* (BR, D) unnormalised output */
  double* m = O + BR * D;                                   /* (BR) running max */
  double* l = m + BR;                                       /* (BR) running sum */
  double* shift = l + BR;                                   /* (BR) the max the exponentials subtract */
  for (int64_t item = begin; item < end; item++) {
    int64_t bh = item / j->nqt, b = bh / j->H, h = bh % j->H;
    int64_t i0 = paired(item % j->nqt, j->nqt) * BR;
    int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
    bool by_dots = nr <= DOT_ROWS;
    const float* Kh = j->k + (b * j->KVH + h / G) * Tk * D; /* (Tk, D) */
    const float* Vh = j->v + (b * j->KVH + h / G) * Tk * D;
    if (by_dots) widen(Q, j->q + (bh * Tq + i0) * D, nr * D, j->scale);
    else widen_transposed(Q, BR, j->q + (bh * Tq + i0) * D, nr, D, j->scale);
    for (int r = 0; r < nr; r++) m[r] = -INFINITY, l[r] = 0;
    memset(O, 0, (size_t)(nr * D) * sizeof(double));
    int64_t kend = key_end(j, i0, nr);
    for (int64_t j0 = 0; j0 < kend; j0 += BC) {
      int nc = kend - j0 < BC ? (int)(kend - j0) : BC;
      bool cut = cut_by_mask(j, i0, j0, nc);
      if (by_dots) {
        for (int r = 0; r < nr; r++) {
          double* row = S + r * BC;
          isa->dots(Q + r * D, Kh + j0 * D, nc, D, row); /* s = (scale·q)·k */
          if (cut) /* query i0 + r sees keys up to qoff + i0 + r */
            for (int64_t c = j->qoff + i0 + r - j0 + 1 < 0 ? 0 : j->qoff + i0 + r - j0 + 1; c < nc; c++) row[c] = -INFINITY;
          double mnew = m[r];
          for (int c = 0; c < nc; c++) mnew = row[c] > mnew ? row[c] : mnew;
          shift[r] = online_rescale(m, l, O, r, D, mnew);
          isa->exp_sub(row, nc, &shift[r], true); /* P */
          for (int c = 0; c < nc; c++) l[r] += row[c];
          isa->axpys(row, Vh + j0 * D, nc, D, O + r * D); /* o += P V */
        }
        continue;
      }
      widen(K, Kh + j0 * D, nc * D, 1.0);
      widen(V, Vh + j0 * D, nc * D, 1.0);
      isa->gemm(nc, nr, (int)D, K, D, 1, Q, BR, S, BR, false); /* Sᵀ = K (scale·Q)ᵀ */
      if (cut)
        for (int c = 0; c < nc; c++) /* key j0 + c is visible from query row qoff + i0 + r onward */
          for (int64_t r = 0; r < nr && r < j0 + c - j->qoff - i0; r++) S[c * BR + r] = -INFINITY;
      double mnew[BR];
      for (int r = 0; r < nr; r++) mnew[r] = m[r];
      for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) mnew[r] = S[c * BR + r] > mnew[r] ? S[c * BR + r] : mnew[r];
      for (int r = 0; r < nr; r++) shift[r] = online_rescale(m, l, O, r, D, mnew[r]);
      for (int c = 0; c < nc; c++) {
        isa->exp_sub(S + c * BR, nr, shift, false); /* Pᵀ */
        for (int r = 0; r < nr; r++) l[r] += S[c * BR + r];
      }
      isa->gemm(nr, (int)D, nc, S, 1, BR, V, D, O, D, true); /* O += P V */
    }
    float* out = j->o + (bh * Tq + i0) * D;
    float* lse = j->l + bh * Tq + i0;
    for (int r = 0; r < nr; r++) {
      /* A row that saw no key (Tk = 0) gets 0 and −inf. */
      double inv = l[r] > 0 ? 1.0 / l[r] : 0.0;
      for (int64_t d = 0; d < D; d++) out[r * D + d] = (float)(O[r * D + d] * inv);
      lse[r] = l[r] > 0 ? (float)(m[r] + log(l[r])) : -INFINITY;
    }
  }
}

/* ---- backward ---------------------------------------------------------------------------- */

/* Per query row: D_i = dO·O, and the exact normaliser lse64 = lse + log Σ_j exp(s_j − lse), the
 * sum taken in double over the visible keys. Work items and score tiles as in the forward. */
INLINE void rowstats_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  double* Qt = j->scratch + thread * j->scratch_per_thread; /* (D, BR) */
  double* K = Qt + D * BR;                                   /* (BC, D) */
  double* St = K + BC * D;                                   /* (BC, BR) */
  double* sum = St + BC * BR;                                /* (BR) */
  double* shift = sum + BR;                                  /* (BR) */
  for (int64_t item = begin; item < end; item++) {
    int64_t bh = item / j->nqt, b = bh / j->H, h = bh % j->H;
    int64_t i0 = paired(item % j->nqt, j->nqt) * BR;
    int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
    const float* Kh = j->k + (b * j->KVH + h / G) * Tk * D;
    const float* lse = j->lse + bh * Tq + i0;
    for (int r = 0; r < nr; r++) {
      const float* o = j->out + (bh * Tq + i0 + r) * D;
      const float* g = j->dout + (bh * Tq + i0 + r) * D;
      double s = 0;
      for (int64_t d = 0; d < D; d++) s += (double)o[d] * g[d];
      j->delta[bh * Tq + i0 + r] = s;
      sum[r] = 0;
      shift[r] = lse[r] == -INFINITY ? 0 : lse[r];
    }
    widen_transposed(Qt, BR, j->q + (bh * Tq + i0) * D, nr, D, j->scale);
    int64_t kend = key_end(j, i0, nr);
    for (int64_t j0 = 0; j0 < kend; j0 += BC) {
      int nc = kend - j0 < BC ? (int)(kend - j0) : BC;
      widen(K, Kh + j0 * D, nc * D, 1.0);
      isa->gemm(nc, nr, (int)D, K, D, 1, Qt, BR, St, BR, false);
      if (cut_by_mask(j, i0, j0, nc))
        for (int c = 0; c < nc; c++)
          for (int64_t r = 0; r < nr && r < j0 + c - j->qoff - i0; r++) St[c * BR + r] = -INFINITY;
      for (int c = 0; c < nc; c++) {
        isa->exp_sub(St + c * BR, nr, shift, false);
        for (int r = 0; r < nr; r++) sum[r] += St[c * BR + r];
      }
    }
    /* a row whose saved lse is −inf saw no key and gets no gradient */
    for (int r = 0; r < nr; r++)
      j->lse64[bh * Tq + i0 + r] = lse[r] == -INFINITY || !(sum[r] > 0) ? -INFINITY : shift[r] + log(sum[r]);
  }
}

INLINE void bwd_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  double* Kt = j->scratch + thread * j->scratch_per_thread; /* (D, BC) */
  double* Vt = Kt + D * BC;                                  /* (D, BC) */
  double* K = Vt + D * BC;                                   /* (BC, D) */
  double* dK = K + BC * D;                                   /* (BC, D) */
  double* dV = dK + BC * D;                                  /* (BC, D) */
  double* Q = dV + BC * D;                                   /* (BR, D) scale·Q */
  double* dO = Q + BR * D;                                   /* (BR, D) */
  double* P = dO + BR * D;                                   /* (BR, BC) */
  double* dS = P + BR * BC;                                  /* (BR, BC) dP, then dS */
  double* dqacc = j->dqbuf + thread * j->B * j->H * Tq * D;
  for (int64_t item = begin; item < end; item++) {
    int64_t bk = item / j->nkt, b = bk / j->KVH;
    int64_t j0 = paired(item % j->nkt, j->nkt) * BC;
    int nc = Tk - j0 < BC ? (int)(Tk - j0) : BC;
    widen_transposed(Kt, BC, j->k + (bk * Tk + j0) * D, nc, D, 1.0);
    widen_transposed(Vt, BC, j->v + (bk * Tk + j0) * D, nc, D, 1.0);
    widen(K, j->k + (bk * Tk + j0) * D, nc * D, 1.0);
    memset(dK, 0, (size_t)(nc * D) * sizeof(double));
    memset(dV, 0, (size_t)(nc * D) * sizeof(double));
    /* Under the causal mask, query i sees key j0 only when qoff + i >= j0. */
    int64_t first = j->causal && j0 - j->qoff > 0 ? (j0 - j->qoff) / BR * BR : 0;
    for (int64_t g = 0; g < G; g++) {
      int64_t bh = b * j->H + (bk % j->KVH) * G + g;
      for (int64_t i0 = first; i0 < Tq; i0 += BR) {
        int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
        const double* lse = j->lse64 + bh * Tq + i0;
        const double* delta = j->delta + bh * Tq + i0;
        widen(Q, j->q + (bh * Tq + i0) * D, nr * D, j->scale);
        widen(dO, j->dout + (bh * Tq + i0) * D, nr * D, 1.0);
        isa->gemm(nr, nc, (int)D, Q, D, 1, Kt, BC, P, BC, false); /* S = (scale·Q) Kᵀ */
        bool cut = cut_by_mask(j, i0, j0, nc);
        for (int r = 0; r < nr; r++) {
          double* row = P + r * BC;
          if (lse[r] == -INFINITY) { /* a row that saw no key */
            memset(row, 0, (size_t)nc * sizeof(double));
            continue;
          }
          if (cut) /* query i0 + r sees keys up to qoff + i0 + r */
            for (int64_t c = j->qoff + i0 + r - j0 + 1 < 0 ? 0 : j->qoff + i0 + r - j0 + 1; c < nc; c++) row[c] = -INFINITY;
          isa->exp_sub(row, nc, &lse[r], true); /* P = exp(s − lse) */
        }
        isa->gemm(nc, (int)D, nr, P, 1, BC, dO, D, dV, D, true);    /* dV += Pᵀ dO */
        isa->gemm(nr, nc, (int)D, dO, D, 1, Vt, BC, dS, BC, false); /* dP = dO Vᵀ */
        for (int r = 0; r < nr; r++)
          for (int c = 0; c < nc; c++) dS[r * BC + c] = P[r * BC + c] * (dS[r * BC + c] - delta[r]);
        isa->gemm(nc, (int)D, nr, dS, 1, BC, Q, D, dK, D, true); /* dK += dSᵀ (scale·Q) */
        isa->gemm(nr, (int)D, nc, dS, BC, 1, K, D, dqacc + (bh * Tq + i0) * D, D, true); /* dQ/scale += dS K */
      }
    }
    float* dk = j->dk + (bk * Tk + j0) * D;
    float* dv = j->dv + (bk * Tk + j0) * D;
    for (int64_t e = 0; e < nc * D; e++) dk[e] = (float)dK[e], dv[e] = (float)dV[e];
  }
}

INLINE void dq_reduce_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  int64_t n = j->B * j->H * j->Tq * j->D;
  for (int64_t e = begin; e < end; e++) {
    double s = 0;
    for (int t = 0; t < j->threads; t++) s += j->dqbuf[t * n + e];
    j->dq[e] = (float)(j->scale * s);
  }
}

/* Each body compiled for each instruction set; pick_isa says which set runs. */
#if defined(__x86_64__)
#define VARIANTS(body)                                                                                      \
  static T512 void body##_avx512(void* c, int64_t b, int64_t e, int t) { body((attn_job*)c, b, e, t, &isa_avx512); } \
  static T256 void body##_avx2(void* c, int64_t b, int64_t e, int t) { body((attn_job*)c, b, e, t, &isa_avx2); }     \
  static void body##_scalar(void* c, int64_t b, int64_t e, int t) { body((attn_job*)c, b, e, t, &isa_scalar); }
#else
#define VARIANTS(body) \
  static void body##_scalar(void* c, int64_t b, int64_t e, int t) { body((attn_job*)c, b, e, t, &isa_scalar); }
#endif
VARIANTS(fwd_body)
VARIANTS(rowstats_body)
VARIANTS(bwd_body)
VARIANTS(dq_reduce_body)

/* 0 = scalar, 1 = AVX2, 2 = AVX-512. */
static int pick_isa(void) {
#if defined(__x86_64__)
  if (pl_cpu_avx512f()) return 2;
  if (pl_cpu_avx2_fma()) return 1;
#endif
  return 0;
}

#if defined(__x86_64__)
#define RUN(body, n, grain, job)                                                            \
  pl_parallel_for(n, grain, isa == 2 ? body##_avx512 : isa == 1 ? body##_avx2 : body##_scalar, job)
#else
#define RUN(body, n, grain, job) pl_parallel_for(n, grain, body##_scalar, job)
#endif

/* The backward's dq accumulators are its one large buffer (threads × |q| doubles). Fresh pages cost
 * a page fault each on first touch, which on a virtual machine can cost more than the arithmetic,
 * and a training loop calls the backward with the same shapes every step; so the buffer is kept
 * between calls and only grows. A concurrent caller (another JS thread) that finds it in use
 * allocates its own. */
static pthread_mutex_t g_dq_lock = PTHREAD_MUTEX_INITIALIZER;
static double* g_dq_cache;
static size_t g_dq_cache_len;

/* n zeroed doubles; *cached says whether they are the kept buffer (then its lock is held). */
static double* dq_acquire(size_t n, bool* cached) {
  *cached = false;
  if (pthread_mutex_trylock(&g_dq_lock) == 0) {
    if (g_dq_cache_len < n) {
      free(g_dq_cache);
      g_dq_cache = malloc(n * sizeof(double));
      g_dq_cache_len = g_dq_cache ? n : 0;
    }
    if (g_dq_cache) {
      memset(g_dq_cache, 0, n * sizeof(double));
      *cached = true;
      return g_dq_cache;
    }
    pthread_mutex_unlock(&g_dq_lock);
  }
  return calloc(n, sizeof(double));
}

static void dq_release(double* p, bool cached) {
  if (cached) pthread_mutex_unlock(&g_dq_lock);
  else free(p);
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
  j->scale = scale;
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
  j.threads = pl_num_threads();
  /* Q, O; K, V; S; m, l, shift */
  j.scratch_per_thread = (2 * BR * j.D + 2 * BC * j.D + BC * BR + 3 * BR + 7) / 8 * 8;
  j.scratch = calloc((size_t)(j.threads * j.scratch_per_thread), sizeof(double));
  if (!j.scratch) { pl_fail(&a, "out of memory for tile scratch"); return NULL; }
  j.q = q, j.k = k, j.v = v, j.o = out, j.l = lse;
  int isa = pick_isa();
  RUN(fwd_body, j.B * j.H * j.nqt, 1, &j);
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
  int64_t nq = q_elems(&j), nk = kv_elems(&j), rows = j.B * j.H * j.Tq;
  if (!pl_need(&a, "q", lq, nq) || !pl_need(&a, "k", lk, nk) || !pl_need(&a, "v", lv, nk) ||
      !pl_need(&a, "out", lo, nq) || !pl_need(&a, "lse", ll, rows) || !pl_need(&a, "dout", ldo, nq) ||
      !pl_need(&a, "dq", ldq, nq) || !pl_need(&a, "dk", ldk, nk) || !pl_need(&a, "dv", ldv, nk))
    return NULL;
  memset(dq, 0, (size_t)nq * sizeof(float));
  memset(dk, 0, (size_t)nk * sizeof(float));
  memset(dv, 0, (size_t)nk * sizeof(float));
  if (nq == 0 || nk == 0) return NULL;
  j.threads = pl_num_threads();
  /* Kt, Vt, K, dK, dV; Q, dO; P, dS. The row-statistics pass uses less, from the same space. */
  j.scratch_per_thread = (5 * BC * j.D + 2 * BR * j.D + 2 * BR * BC + 7) / 8 * 8;
  j.scratch = calloc((size_t)(j.threads * j.scratch_per_thread), sizeof(double));
  j.lse64 = malloc((size_t)(2 * rows) * sizeof(double));
  bool cached;
  j.dqbuf = dq_acquire((size_t)(j.threads * nq), &cached);
  if (!j.scratch || !j.lse64 || !j.dqbuf) {
    free(j.scratch), free(j.lse64);
    if (j.dqbuf) dq_release(j.dqbuf, cached);
    pl_fail(&a, "out of memory for backward buffers");
    return NULL;
  }
  j.delta = j.lse64 + rows;
  j.q = q, j.k = k, j.v = v, j.out = out, j.lse = lse, j.dout = dout, j.dq = dq, j.dk = dk, j.dv = dv;
  int isa = pick_isa();
  RUN(rowstats_body, j.B * j.H * j.nqt, 1, &j);
  RUN(bwd_body, j.B * j.KVH * j.nkt, 1, &j);
  RUN(dq_reduce_body, nq, 4096, &j);
  free(j.scratch), free(j.lse64);
  dq_release(j.dqbuf, cached);
  return NULL;
}

void pl_register_attention(napi_env env, napi_value exports) {
  pl_export(env, exports, "attention", js_attention, "f32");
  pl_export(env, exports, "attentionBackward", js_attention_backward, "f32");
}
