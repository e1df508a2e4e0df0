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
 * Backward, with P = exp(s − lse) recomputed per tile and D_i = rowsum(dO ⊙ O) = rowsum(P ⊙ dP):
 *   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − D_i),  dK += scale·dSᵀ Q,  dQ += scale·dS K.
 * Work items are (batch, kv head, key tile): an item owns its rows of dk and dv outright (it loops
 * over every query head of its group and every query tile), so dk and dv need no atomics. dq rows
 * are touched by many items, so each thread accumulates into a private dq buffer and the buffers
 * are summed in thread order at the end: deterministic for a given thread count, at the price of
 * one dq-sized buffer per thread (linear in T) instead of a second pass that recomputes S and dP.
 *
 * Precision. Tiles and their products are float32, as in the plain path this kernel replaces (the native matmul,
 * softmax and softmax-backward kernels, which accumulate in float32 too): the fused kernel is held
 * to at most twice that path's error against a float64 evaluation, and float32 tiles meet it while
 * running twice the SIMD lanes of double. A few per-row scalars stay in double where float32
 * would add an error common to a whole row, which the plain path does not have: the running sums
 * of exponentials, the scale, and in the backward a correction of the float32 lse and D_i, from
 * a row-statistics pass that recomputes S and dP once more (see rowstats_body).
 *
 * The tile products are small GEMMs C (+)= A·B with B row-major and A addressed through two
 * strides, so a transposed A (Pᵀ, dSᵀ) is read in place, and K, V and dO are read straight from
 * the inputs. The GEMM microkernels and exp are written with AVX-512 and AVX2 intrinsics;
 * everything else is plain loops in always-inline bodies that are compiled once per instruction
 * set (the *_avx512 / *_avx2 / *_scalar wrappers), so the compiler vectorises them for the ISA
 * picked at run time. Tiles fully hidden by the causal mask are skipped, and work items are ordered
 * so that the contiguous ranges the thread pool hands out mix cheap and expensive causal tiles. */
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
  void (*gemm)(int M, int N, int K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
               float* C, int64_t ldc, bool acc);
  /* x[i] = exp(x[i] − shift[i]) for i < n, or exp(x[i] − shift[0]) when `broadcast`. */
  void (*exp_sub)(float* x, int n, const float* shift, bool broadcast);
  /* s[c] = q·K[c] for the n rows of K (n, D): scores of a single query. */
  void (*dots)(const float* q, const float* K, int n, int64_t D, float* s);
  /* o += Σ_c p[c]·V[c] over the n rows of V (n, D): output of a single query. */
  void (*axpys)(const float* p, const float* V, int n, int64_t D, float* o);
} attn_isa;

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

static void exp_sub_scalar(float* x, int n, const float* shift, bool broadcast) {
  for (int i = 0; i < n; i++) x[i] = expf(x[i] - shift[broadcast ? 0 : i]);
}

static void dots_scalar(const float* q, const float* K, int n, int64_t D, float* s) {
  for (int c = 0; c < n; c++) {
    float acc = 0;
    for (int64_t d = 0; d < D; d++) acc += q[d] * K[c * D + d];
    s[c] = acc;
  }
}

static void axpys_scalar(const float* p, const float* V, int n, int64_t D, float* o) {
  for (int c = 0; c < n; c++)
    for (int64_t d = 0; d < D; d++) o[d] += p[c] * V[c * D + d];
}

static const attn_isa isa_scalar = {gemm_scalar, exp_sub_scalar, dots_scalar, axpys_scalar};

#if defined(__x86_64__)

#include "attn_simd.h"

/* ---- AVX-512 ----------------------------------------------------------------------------- */

/* One MR×(16·NV) block of C. MR and NV are literals at every call site, so the accumulators live
 * in registers; the last vector column is masked to the block's width. */
INLINE T512 void mk512(const int MR, const int NV, int K, const float* A, int64_t ars, int64_t aks, const float* B,
                       int64_t ldb, float* C, int64_t ldc, bool acc, __mmask16 tail) {
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

static T512 void exp_sub_avx512(float* x, int n, const float* shift, bool broadcast) {
  __m512 s = _mm512_set1_ps(shift[0]);
  for (int i = 0; i < n; i += 16) {
    __mmask16 m = mask16(n - i);
    if (!broadcast) s = _mm512_maskz_loadu_ps(m, shift + i);
    _mm512_mask_storeu_ps(x + i, m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
  }
}

static T512 void dots_avx512(const float* q, const float* K, int n, int64_t D, float* s) {
  for (int c = 0; c < n; c++) {
    const float* k = K + c * D;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 32 <= D; d += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(k + d), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16), _mm512_loadu_ps(k + d + 16), a1);
    }
    for (; d < D; d += 16) {
      __mmask16 m = mask16((int)(D - d));
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + d), _mm512_maskz_loadu_ps(m, k + d), a0);
    }
    s[c] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

static T512 void axpys_avx512(const float* p, const float* V, int n, int64_t D, float* o) {
  for (int64_t d0 = 0; d0 < D; d0 += 64) {
    __mmask16 m[4];
    __m512 acc[4];
    for (int v = 0; v < 4; v++) {
      m[v] = mask16((int)(D - d0 - 16 * v));
      acc[v] = _mm512_maskz_loadu_ps(m[v], o + d0 + 16 * v);
    }
    /* even and odd keys in separate chains: half the rounding steps per sum (the terms of a row of
     * V·p mostly cancel, so each step's error is large next to the result) */
    __m512 odd[4];
    for (int v = 0; v < 4; v++) odd[v] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 2 <= n; c += 2) {
      __m512 p0 = _mm512_set1_ps(p[c]), p1 = _mm512_set1_ps(p[c + 1]);
      const float* row = V + c * D + d0;
      for (int v = 0; v < 4; v++) {
        acc[v] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m[v], row + 16 * v), acc[v]);
        odd[v] = _mm512_fmadd_ps(p1, _mm512_maskz_loadu_ps(m[v], row + D + 16 * v), odd[v]);
      }
    }
    if (c < n)
      for (int v = 0; v < 4; v++)
        acc[v] = _mm512_fmadd_ps(_mm512_set1_ps(p[c]), _mm512_maskz_loadu_ps(m[v], V + c * D + d0 + 16 * v), acc[v]);
    for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(o + d0 + 16 * v, m[v], _mm512_add_ps(acc[v], odd[v]));
  }
}

static const attn_isa isa_avx512 = {gemm_avx512, exp_sub_avx512, dots_avx512, axpys_avx512};

/* ---- AVX2 -------------------------------------------------------------------------------- */

/* As mk512 with 8-wide vectors: MR×(8·NV), NV ≤ 3, so 12 accumulators fit in 16 registers. */
INLINE T256 void mk256(const int MR, const int NV, int K, const float* A, int64_t ars, int64_t aks, const float* B,
                       int64_t ldb, float* C, int64_t ldc, bool acc, __m256i tail, bool full) {
  __m256 c[4][3];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = _mm256_setzero_ps();
  for (int k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    const float* a = A + k * aks;
    __m256 bv[3];
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
  for (int n0 = 0; n0 < N; n0 += 24) {
    int nn = N - n0 < 24 ? N - n0 : 24;
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
        MK256(1, 1) MK256(1, 2) MK256(1, 3) MK256(2, 1) MK256(2, 2) MK256(2, 3)
        MK256(3, 1) MK256(3, 2) MK256(3, 3) MK256(4, 1) MK256(4, 2) MK256(4, 3)
      }
#undef MK256
    }
  }
}

static T256 void exp_sub_avx2(float* x, int n, const float* shift, bool broadcast) {
  __m256 s = _mm256_set1_ps(shift[0]);
  for (int i = 0; i < n; i += 8) {
    __m256i m = mask8(n - i);
    if (!broadcast) s = _mm256_maskload_ps(shift + i, m);
    _mm256_maskstore_ps(x + i, m, exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), s)));
  }
}

static T256 void dots_avx2(const float* q, const float* K, int n, int64_t D, float* s) {
  for (int c = 0; c < n; c++) {
    const float* k = K + c * D;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(k + d + 8), a1);
    }
    for (; d < D; d += 8) {
      __m256i m = mask8((int)(D - d));
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(q + d, m), _mm256_maskload_ps(k + d, m), a0);
    }
    s[c] = pl_hsum256(_mm256_add_ps(a0, a1));
  }
}

static T256 void axpys_avx2(const float* p, const float* V, int n, int64_t D, float* o) {
  for (int64_t d0 = 0; d0 < D; d0 += 32) {
    __m256i m[4];
    __m256 acc[4];
    for (int v = 0; v < 4; v++) {
      m[v] = mask8((int)(D - d0 - 8 * v));
      acc[v] = _mm256_maskload_ps(o + d0 + 8 * v, m[v]);
    }
    __m256 odd[4]; /* even and odd keys in separate chains, as in axpys_avx512 */
    for (int v = 0; v < 4; v++) odd[v] = _mm256_setzero_ps();
    int c = 0;
    for (; c + 2 <= n; c += 2) {
      __m256 p0 = _mm256_set1_ps(p[c]), p1 = _mm256_set1_ps(p[c + 1]);
      const float* row = V + c * D + d0;
      for (int v = 0; v < 4; v++) {
        acc[v] = _mm256_fmadd_ps(p0, _mm256_maskload_ps(row + 8 * v, m[v]), acc[v]);
        odd[v] = _mm256_fmadd_ps(p1, _mm256_maskload_ps(row + D + 8 * v, m[v]), odd[v]);
      }
    }
    if (c < n)
      for (int v = 0; v < 4; v++)
        acc[v] = _mm256_fmadd_ps(_mm256_set1_ps(p[c]), _mm256_maskload_ps(V + c * D + d0 + 8 * v, m[v]), acc[v]);
    for (int v = 0; v < 4; v++) _mm256_maskstore_ps(o + d0 + 8 * v, m[v], _mm256_add_ps(acc[v], odd[v]));
  }
}

static const attn_isa isa_avx2 = {gemm_avx2, exp_sub_avx2, dots_avx2, axpys_avx2};
#endif

/* ---- the kernels, written once ----------------------------------------------------------- */

typedef struct {
  const float *q, *k, *v, *lse, *dout;
  float *o, *l;        /* forward outputs: out, lse */
  float *dq, *dk, *dv; /* backward outputs */
  float* rinv;         /* backward: the lse correction, (B,H,Tq) */
  double* delta;       /* backward: D_i = Σ_j P_ij dP_ij (= dO·O), (B,H,Tq), in double as softmax backward's */
  float* dqbuf;        /* backward: one private dq accumulator per thread, each (B,H,Tq,D) */
  float* scratch;      /* per-thread tile scratch */
  int64_t B, H, KVH, Tq, Tk, D, qoff, nqt, nkt, scratch_per_thread;
  int threads;
  double scale; /* kept in double: rounded to float32 it would scale every score by the same wrong factor */
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

/* dst (D, ld) = src (n, D)ᵀ. */
INLINE void transpose(float* dst, int64_t ld, const float* src, int n, int64_t D) {
  for (int c = 0; c < n; c++)
    for (int64_t d = 0; d < D; d++) dst[d * ld + c] = src[c * D + d];
}

/* St (nc, BR), the transposed dot products of queries [i0, i0 + nr) with keys [j0, j0 + nc), to
 * scores: times scale after the product, as the plain path scales QKᵀ (a scale folded into Q would
 * add a rounding to every q), and −inf where the causal mask hides the key. */
INLINE void scores_transposed(const attn_job* j, float* St, int64_t i0, int nr, int64_t j0, int nc) {
  for (int c = 0; c < nc; c++) {
    float* col = St + c * BR;
    for (int r = 0; r < nr; r++) col[r] = (float)(col[r] * j->scale);
    if (cut_by_mask(j, i0, j0, nc)) /* key j0 + c is visible from query row qoff + i0 + r onward */
      for (int64_t r = 0; r < nr && r < j0 + c - j->qoff - i0; r++) col[r] = -INFINITY;
  }
}

/* ---- forward ----------------------------------------------------------------------------- */

/* The online-softmax step of row r for a tile whose max is mnew (≥ the running max m[r]):
 * rescales l and O by exp(m_old − m_new) and returns the shift the tile's exponentials subtract. A
 * row that has seen no key yet keeps shift 0, so that exp(−inf − 0) = 0 rather than NaN. */
INLINE float online_rescale(float* m, double* l, float* O, int r, int64_t D, float mnew) {
  float shift = mnew == -INFINITY ? 0 : mnew;
  float alpha = expf(m[r] - shift);
  m[r] = mnew;
  l[r] *= alpha;
  if (alpha != 1.0f)
    for (int64_t d = 0; d < D; d++) O[r * D + d] *= alpha;
  return shift;
}

/* Query tiles of at most this many rows (decode) work along D, one row at a time: the transposed
 * score product would fill one SIMD lane in sixteen. */
#define DOT_ROWS 2

INLINE void fwd_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  float* Q = j->scratch + thread * j->scratch_per_thread; /* (D, BR) Qᵀ */
  float* S = Q + D * BR;                                   /* (BC, BR) Sᵀ, or (nr, BC) S; then probabilities */
  float* O = S + BC * BR;                                  /* (BR, D) unnormalised output */
  float* m = O + BR * D;                                   /* (BR) running max */
  float* shift = m + BR;                                   /* (BR) the max the exponentials subtract */
  /* The running sums are the one thing kept in double: a float32 sum of thousands of exponentials,
   * added one key at a time, drifts by many ulps, and its error is a common factor on the whole
   * output row; adding nr doubles per key costs nothing next to the 2·D flops per score. */
  double l[BR];
  for (int64_t item = begin; item < end; item++) {
    int64_t bh = item / j->nqt, b = bh / j->H, h = bh % j->H;
    int64_t i0 = paired(item % j->nqt, j->nqt) * BR;
    int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
    bool by_dots = nr <= DOT_ROWS;
    const float* Qh = j->q + (bh * Tq + i0) * D; /* (nr, D) */
    const float* Kh = j->k + (b * j->KVH + h / G) * Tk * D; /* (Tk, D) */
    const float* Vh = j->v + (b * j->KVH + h / G) * Tk * D;
    if (!by_dots) transpose(Q, BR, Qh, nr, D);
    for (int r = 0; r < nr; r++) m[r] = -INFINITY, l[r] = 0;
    memset(O, 0, (size_t)(nr * D) * sizeof(float));
    int64_t kend = key_end(j, i0, nr);
    for (int64_t j0 = 0; j0 < kend; j0 += BC) {
      int nc = kend - j0 < BC ? (int)(kend - j0) : BC;
      bool cut = cut_by_mask(j, i0, j0, nc);
      if (by_dots) {
        for (int r = 0; r < nr; r++) {
          float* row = S + r * BC;
          isa->dots(Qh + r * D, Kh + j0 * D, nc, D, row); /* s = q·k */
          if (cut) /* query i0 + r sees keys up to qoff + i0 + r */
            for (int64_t c = j->qoff + i0 + r - j0 + 1 < 0 ? 0 : j->qoff + i0 + r - j0 + 1; c < nc; c++) row[c] = -INFINITY;
          float mnew = m[r];
          for (int c = 0; c < nc; c++) {
            row[c] = (float)(row[c] * j->scale);
            mnew = row[c] > mnew ? row[c] : mnew;
          }
          shift[r] = online_rescale(m, l, O, r, D, mnew);
          isa->exp_sub(row, nc, &shift[r], true); /* P */
          for (int c = 0; c < nc; c++) l[r] += row[c];
          isa->axpys(row, Vh + j0 * D, nc, D, O + r * D); /* o += P V */
        }
        continue;
      }
      isa->gemm(nc, nr, (int)D, Kh + j0 * D, D, 1, Q, BR, S, BR, false); /* Sᵀ = K Qᵀ */
      scores_transposed(j, S, i0, nr, j0, nc);
      float mnew[BR];
      for (int r = 0; r < nr; r++) mnew[r] = m[r];
      for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) mnew[r] = S[c * BR + r] > mnew[r] ? S[c * BR + r] : mnew[r];
      for (int r = 0; r < nr; r++) shift[r] = online_rescale(m, l, O, r, D, mnew[r]);
      for (int c = 0; c < nc; c++) {
        isa->exp_sub(S + c * BR, nr, shift, false); /* Pᵀ */
        for (int r = 0; r < nr; r++) l[r] += S[c * BR + r];
      }
      isa->gemm(nr, (int)D, nc, S, 1, BR, Vh + j0 * D, D, O, D, true); /* O += P V */
    }
    float* out = j->o + (bh * Tq + i0) * D;
    float* lse = j->l + bh * Tq + i0;
    for (int r = 0; r < nr; r++) {
      /* A row that saw no key (Tk = 0) gets 0 and −inf. Dividing rounds once, as softmax does. */
      for (int64_t d = 0; d < D; d++) out[r * D + d] = l[r] > 0 ? (float)(O[r * D + d] / l[r]) : 0.0f;
      lse[r] = l[r] > 0 ? (float)(m[r] + log(l[r])) : -INFINITY;
    }
  }
}

/* ---- backward ---------------------------------------------------------------------------- */

/* Per query row, the factor 1/Σ_j exp(s_j − lse) that corrects the saved lse (rounded to float32
 * it is off by up to |lse|·2⁻²⁴, a common relative error on the whole row of P several times the
 * plain path's softmax error), and D_i = Σ_j P_ij dP_ij. D_i equals dO·O, but summed from the very
 * float32 P and dP the backward recomputes (the same GEMM calls give the same bits), so that the
 * row of dS = P ⊙ (dP − D_i) sums to zero as in the plain path's softmax backward; from O it would
 * carry O's own rounding into every dS. Work items and score tiles as in the forward. */
INLINE void rowstats_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  float* Qt = j->scratch + thread * j->scratch_per_thread; /* (D, BR) */
  float* dOt = Qt + D * BR;                                 /* (D, BR) */
  float* St = dOt + D * BR;                                 /* (BC, BR) */
  float* dPt = St + BC * BR;                                /* (BC, BR) */
  double sum[BR], dot[BR]; /* in double, as the forward's running sums */
  for (int64_t item = begin; item < end; item++) {
    int64_t bh = item / j->nqt, b = bh / j->H, h = bh % j->H;
    int64_t i0 = paired(item % j->nqt, j->nqt) * BR;
    int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
    const float* Kh = j->k + (b * j->KVH + h / G) * Tk * D;
    const float* Vh = j->v + (b * j->KVH + h / G) * Tk * D;
    const float* lse = j->lse + bh * Tq + i0;
    for (int r = 0; r < nr; r++) sum[r] = 0, dot[r] = 0;
    transpose(Qt, BR, j->q + (bh * Tq + i0) * D, nr, D);
    transpose(dOt, BR, j->dout + (bh * Tq + i0) * D, nr, D);
    int64_t kend = key_end(j, i0, nr);
    for (int64_t j0 = 0; j0 < kend; j0 += BC) {
      int nc = kend - j0 < BC ? (int)(kend - j0) : BC;
      isa->gemm(nc, nr, (int)D, Kh + j0 * D, D, 1, Qt, BR, St, BR, false);  /* Sᵀ */
      isa->gemm(nc, nr, (int)D, Vh + j0 * D, D, 1, dOt, BR, dPt, BR, false); /* dPᵀ */
      scores_transposed(j, St, i0, nr, j0, nc);
      for (int c = 0; c < nc; c++) {
        isa->exp_sub(St + c * BR, nr, lse, false);
        for (int r = 0; r < nr; r++) sum[r] += St[c * BR + r], dot[r] += St[c * BR + r] * dPt[c * BR + r];
      }
    }
    /* a row whose saved lse is −inf saw no key and gets no gradient */
    for (int r = 0; r < nr; r++) {
      bool none = lse[r] == -INFINITY || !(sum[r] > 0);
      float rinv = none ? 0.0f : (float)(1.0 / sum[r]);
      j->rinv[bh * Tq + i0 + r] = rinv;
      j->delta[bh * Tq + i0 + r] = none ? 0.0 : rinv * dot[r];
    }
  }
}

INLINE void bwd_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  const int64_t D = j->D, Tq = j->Tq, Tk = j->Tk, G = j->H / j->KVH;
  float* Kt = j->scratch + thread * j->scratch_per_thread; /* (D, BC) */
  float* Vt = Kt + D * BC;                                  /* (D, BC) */
  float* dK = Vt + D * BC;                                  /* (BC, D) */
  float* dV = dK + BC * D;                                  /* (BC, D) */
  float* P = dV + BC * D;                                   /* (BR, BC) */
  float* dS = P + BR * BC;                                  /* (BR, BC) dP, then dS */
  float* dqacc = j->dqbuf + thread * j->B * j->H * Tq * D;
  for (int64_t item = begin; item < end; item++) {
    int64_t bk = item / j->nkt, b = bk / j->KVH;
    int64_t j0 = paired(item % j->nkt, j->nkt) * BC;
    int nc = Tk - j0 < BC ? (int)(Tk - j0) : BC;
    const float* K = j->k + (bk * Tk + j0) * D; /* (nc, D) */
    transpose(Kt, BC, K, nc, D);
    transpose(Vt, BC, j->v + (bk * Tk + j0) * D, nc, D);
    memset(dK, 0, (size_t)(nc * D) * sizeof(float));
    memset(dV, 0, (size_t)(nc * D) * sizeof(float));
    /* Under the causal mask, query i sees key j0 only when qoff + i >= j0. */
    int64_t first = j->causal && j0 - j->qoff > 0 ? (j0 - j->qoff) / BR * BR : 0;
    for (int64_t g = 0; g < G; g++) {
      int64_t bh = b * j->H + (bk % j->KVH) * G + g;
      for (int64_t i0 = first; i0 < Tq; i0 += BR) {
        int nr = Tq - i0 < BR ? (int)(Tq - i0) : BR;
        const float* lse = j->lse + bh * Tq + i0;
        const float* rinv = j->rinv + bh * Tq + i0;
        const double* delta = j->delta + bh * Tq + i0;
        const float* Q = j->q + (bh * Tq + i0) * D;     /* (nr, D) */
        const float* dO = j->dout + (bh * Tq + i0) * D; /* (nr, D) */
        isa->gemm(nr, nc, (int)D, Q, D, 1, Kt, BC, P, BC, false); /* QKᵀ */
        bool cut = cut_by_mask(j, i0, j0, nc);
        for (int r = 0; r < nr; r++) {
          float* row = P + r * BC;
          if (lse[r] == -INFINITY) { /* a row that saw no key */
            memset(row, 0, (size_t)nc * sizeof(float));
            continue;
          }
          for (int c = 0; c < nc; c++) row[c] = (float)(row[c] * j->scale);
          if (cut) /* query i0 + r sees keys up to qoff + i0 + r */
            for (int64_t c = j->qoff + i0 + r - j0 + 1 < 0 ? 0 : j->qoff + i0 + r - j0 + 1; c < nc; c++) row[c] = -INFINITY;
          isa->exp_sub(row, nc, &lse[r], true); /* P = exp(s − lse) / Σ exp(s − lse) */
          for (int c = 0; c < nc; c++) row[c] *= rinv[r];
        }
        isa->gemm(nc, (int)D, nr, P, 1, BC, dO, D, dV, D, true);    /* dV += Pᵀ dO */
        isa->gemm(nr, nc, (int)D, dO, D, 1, Vt, BC, dS, BC, false); /* dP = dO Vᵀ */
        for (int r = 0; r < nr; r++)
          for (int c = 0; c < nc; c++) dS[r * BC + c] = (float)(P[r * BC + c] * ((double)dS[r * BC + c] - delta[r]));
        isa->gemm(nc, (int)D, nr, dS, 1, BC, Q, D, dK, D, true); /* dK/scale += dSᵀ Q */
        isa->gemm(nr, (int)D, nc, dS, BC, 1, K, D, dqacc + (bh * Tq + i0) * D, D, true); /* dQ/scale += dS K */
      }
    }
    float* dk = j->dk + (bk * Tk + j0) * D;
    for (int64_t e = 0; e < nc * D; e++) dk[e] = (float)(j->scale * dK[e]);
    memcpy(j->dv + (bk * Tk + j0) * D, dV, (size_t)(nc * D) * sizeof(float));
  }
}

INLINE void dq_reduce_body(attn_job* j, int64_t begin, int64_t end, int thread, const attn_isa* isa) {
  int64_t n = j->B * j->H * j->Tq * j->D;
  for (int64_t e = begin; e < end; e++) {
    float s = 0;
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

/* The backward's dq accumulators are its one large buffer (threads × |q| floats). Fresh pages cost
 * a page fault each on first touch, which on a virtual machine can cost more than the arithmetic,
 * and a training loop calls the backward with the same shapes every step; so the buffer is kept
 * between calls and only grows. A concurrent caller (another JS thread) that finds it in use
 * allocates its own. */
static pthread_mutex_t g_dq_lock = PTHREAD_MUTEX_INITIALIZER;
static float* g_dq_cache;
static size_t g_dq_cache_len;

/* n zeroed floats; *cached says whether they are the kept buffer (then its lock is held). */
static float* dq_acquire(size_t n, bool* cached) {
  *cached = false;
  if (pthread_mutex_trylock(&g_dq_lock) == 0) {
    if (g_dq_cache_len < n) {
      free(g_dq_cache);
      g_dq_cache = malloc(n * sizeof(float));
      g_dq_cache_len = g_dq_cache ? n : 0;
    }
    if (g_dq_cache) {
      memset(g_dq_cache, 0, n * sizeof(float));
      *cached = true;
      return g_dq_cache;
    }
    pthread_mutex_unlock(&g_dq_lock);
  }
  return calloc(n, sizeof(float));
}

static void dq_release(float* p, bool cached) {
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
  /* Q, O; S; m, shift; each thread's block a whole number of cache lines */
  j.scratch_per_thread = (2 * BR * j.D + BC * BR + 2 * BR + 15) / 16 * 16;
  j.scratch = calloc((size_t)(j.threads * j.scratch_per_thread), sizeof(float));
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
  /* Kt, Vt, dK, dV; P, dS. The row-statistics pass uses less, from the same space. */
  j.scratch_per_thread = (4 * BC * j.D + 2 * BR * BC + 15) / 16 * 16;
  j.scratch = calloc((size_t)(j.threads * j.scratch_per_thread), sizeof(float));
  j.delta = malloc((size_t)rows * sizeof(double));
  j.rinv = malloc((size_t)rows * sizeof(float));
  bool cached;
  j.dqbuf = dq_acquire((size_t)(j.threads * nq), &cached);
  if (!j.scratch || !j.delta || !j.rinv || !j.dqbuf) {
    free(j.scratch), free(j.delta), free(j.rinv);
    if (j.dqbuf) dq_release(j.dqbuf, cached);
    pl_fail(&a, "out of memory for backward buffers");
    return NULL;
  }
  j.q = q, j.k = k, j.v = v, j.lse = lse, j.dout = dout, j.dq = dq, j.dk = dk, j.dv = dv;
  int isa = pick_isa();
  RUN(rowstats_body, j.B * j.H * j.nqt, 1, &j);
  RUN(bwd_body, j.B * j.KVH * j.nkt, 1, &j);
  RUN(dq_reduce_body, nq, 4096, &j);
  free(j.scratch), free(j.delta), free(j.rinv);
  dq_release(j.dqbuf, cached);
  return NULL;
}

void pl_register_attention(napi_env env, napi_value exports) {
  pl_export(env, exports, "attention", js_attention, "f32");
  pl_export(env, exports, "attentionBackward", js_attention_backward, "f32");
}
