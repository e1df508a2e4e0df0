/* The vector helpers both attention kernels use (attention.c, paged.c): expf on AVX-512 and AVX2,
 * tail masks, and (from simd.h) an 8-lane horizontal sum. Include inside `#if defined(__x86_64__)`
 * after <immintrin.h>. */
#ifndef PLINTH_ATTN_SIMD_H
#define PLINTH_ATTN_SIMD_H

#include "simd.h"

#ifndef INLINE
#define INLINE static inline __attribute__((always_inline))
#endif

/* Cephes expf: n = round(x·log2 e), r = x − n·ln 2 (ln 2 in two parts), exp(r) by a degree-6
 * polynomial, times 2ⁿ (about 1 ulp). Inputs below ln(FLT_MIN) give 0, which is what masked (−inf)
 * scores need; NaN passes through. */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365447504f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
static const float exp_poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                  4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

INLINE T512 __m512 exp512(__m512 x) {
  __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ);
  /* min/max return their second operand when one is NaN, so NaN survives the clamp. */
  x = _mm512_max_ps(_mm512_set1_ps(EXP_LO), _mm512_min_ps(_mm512_set1_ps(EXP_HI), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
  __m512 p = _mm512_set1_ps(exp_poly[0]);
  for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(exp_poly[i]));
  __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_mask_mov_ps(_mm512_scalef_ps(y, n), under, _mm512_setzero_ps());
}

INLINE T512 __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

#define T256 __attribute__((target("avx2,fma")))

INLINE T256 __m256i mask8(int64_t n) {
  n = n < 0 ? 0 : n > 8 ? 8 : n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INLINE T256 __m256 exp256(__m256 x) {
  __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), _mm256_min_ps(_mm256_set1_ps(EXP_HI), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
  __m256 p = _mm256_set1_ps(exp_poly[0]);
  for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(exp_poly[i]));
  __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  /* 2ⁿ through the exponent field: the clamp keeps n ≥ −126, and the kernels only pass x ≤ 0
   * (scores minus their running max), so n ≤ 0. */
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
}

#endif
