/* Vector helpers more than one kernel file uses. Include after <immintrin.h>, inside
 * `#if defined(__x86_64__)`. */
#ifndef PLINTH_SIMD_H
#define PLINTH_SIMD_H

/* The sum of the 8 lanes of v: the two halves, then pairs within the low half. */
static inline __attribute__((always_inline, target("avx2,fma"))) float pl_hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#endif
