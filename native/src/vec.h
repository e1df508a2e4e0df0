/* A small vector abstraction for the elementwise and fused kernels, and the vectorised math
 * (exp, log, tanh, erf, ...) built on it.
 *
 * The kernel bodies in veckernels.h are written once against the types and operations below and
 * compiled three times, each in its own translation unit that defines PLV_ISA first:
 *   PLV_ISA 512  AVX-512 (F, BW, VL, DQ) + FMA, 16 float lanes
 *   PLV_ISA 256  AVX2 + FMA, 8 float lanes
 *   PLV_ISA 1    plain C, 1 lane: the portable path, running the same algorithms
 * so every ISA computes the same approximations, and a bug shows up on all of them.
 *
 *   vf   VW floats            vi  VW int32           vm  a lane mask
 *   vdd  VW doubles: the lanes of a vf widened, for arithmetic that must round exactly once the
 *        way the ref backend (JS doubles stored to float32) does.
 *
 * Partial vectors (the tail of a row) load zeros in the missing lanes and store only the valid ones,
 * so any length works without a scalar epilogue. Max/min follow x86 semantics (the second operand
 * when either is NaN); vf_jsmax/vf_jsmin give JavaScript's Math.max/Math.min exactly. */
#ifndef PLINTH_VEC_H
#define PLINTH_VEC_H

#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <math.h>

#if PLV_ISA == 512 || PLV_ISA == 256
#include <immintrin.h>
#endif

#if PLV_ISA == 512
/* ---- AVX-512 --------------------------------------------------------------------------------- */
#define VW 16
typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vm;
typedef struct { __m512d lo, hi; } vdd;

static inline vm vm_tail(int64_t n) { return n >= VW ? (vm)0xffff : (vm)((1u << n) - 1u); }
static inline vf vf_load(const float* p) { return _mm512_loadu_ps(p); }
static inline vf vf_loadn(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(vm_tail(n), p); }
static inline void vf_store(float* p, vf v) { _mm512_storeu_ps(p, v); }
static inline void vf_storen(float* p, vf v, int64_t n) { _mm512_mask_storeu_ps(p, vm_tail(n), v); }
static inline vf vf_set1(float x) { return _mm512_set1_ps(x); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   /* a·b + c */
static inline vf vf_fnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c − a·b */
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm512_sqrt_ps(a); }
static inline vf vf_round(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vm vf_lt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline vm vf_le(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
static inline vm vf_gt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline vm vf_ge(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
static inline vm vf_eq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
static inline vm vf_ne(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
static inline vm vf_isnan(vf a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
static inline vf vf_select(vm m, vf t, vf f) { return _mm512_mask_blend_ps(m, f, t); }
static inline vm vm_and(vm a, vm b) { return a & b; }
static inline vm vm_or(vm a, vm b) { return a | b; }
static inline vm vm_andnot(vm a, vm b) { return (vm)(~a & b); } /* !a && b */
static inline bool vm_any(vm a) { return a != 0; }
/* Index of the first set lane (the mask must be non-empty). */
static inline int vm_first(vm a) { return __builtin_ctz((unsigned)a); }

static inline vi vi_set1(int32_t x) { return _mm512_set1_epi32(x); }
static inline vi vi_load(const int32_t* p) { return _mm512_loadu_si512(p); }
static inline vi vi_loadn(const int32_t* p, int64_t n) { return _mm512_maskz_loadu_epi32(vm_tail(n), p); }
static inline void vi_store(int32_t* p, vi v) { _mm512_storeu_si512(p, v); }
static inline void vi_storen(int32_t* p, vi v, int64_t n) { _mm512_mask_storeu_epi32(p, vm_tail(n), v); }
static inline vi vi_iota(void) { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
static inline vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
static inline vi vi_mullo(vi a, vi b) { return _mm512_mullo_epi32(a, b); }
static inline vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
static inline vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
static inline vi vi_xor(vi a, vi b) { return _mm512_xor_si512(a, b); }
#define vi_slli(a, k) _mm512_slli_epi32((a), (k))
#define vi_srli(a, k) _mm512_srli_epi32((a), (k))
#define vi_srai(a, k) _mm512_srai_epi32((a), (k))
static inline vm vi_eq(vi a, vi b) { return _mm512_cmpeq_epi32_mask(a, b); }
static inline vm vi_gt(vi a, vi b) { return _mm512_cmpgt_epi32_mask(a, b); }     /* signed */
static inline vi vi_select(vm m, vi t, vi f) { return _mm512_mask_blend_epi32(m, f, t); }
static inline vi vf_as_vi(vf a) { return _mm512_castps_si512(a); }
static inline vf vi_as_vf(vi a) { return _mm512_castsi512_ps(a); }
static inline vi vf_to_vi_round(vf a) { return _mm512_cvtps_epi32(a); }
/* Truncation toward zero; out-of-range lanes give INT32_MIN (x86's "integer indefinite"). */
static inline vi vf_to_vi_trunc(vf a) { return _mm512_cvttps_epi32(a); }
static inline vf vi_to_vf(vi a) { return _mm512_cvtepi32_ps(a); }
static inline vi vi_load_u16(const uint16_t* p) { return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)); }
static inline void vi_store_u16(uint16_t* p, vi v) { _mm256_storeu_si256((__m256i*)p, _mm512_cvtepi32_epi16(v)); }
static inline vi vi_load_u8(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p)); }


static inline vdd vdd_from(vf a) {
  vdd r;
  r.lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
  r.hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  return r;
}
static inline vf vdd_to(vdd a) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a.lo)), _mm512_cvtpd_ps(a.hi), 1);
}
static inline vdd vdd_set1(double x) { vdd r = {_mm512_set1_pd(x), _mm512_set1_pd(x)}; return r; }
static inline vdd vdd_add(vdd a, vdd b) { vdd r = {_mm512_add_pd(a.lo, b.lo), _mm512_add_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_sub(vdd a, vdd b) { vdd r = {_mm512_sub_pd(a.lo, b.lo), _mm512_sub_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_mul(vdd a, vdd b) { vdd r = {_mm512_mul_pd(a.lo, b.lo), _mm512_mul_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_div(vdd a, vdd b) { vdd r = {_mm512_div_pd(a.lo, b.lo), _mm512_div_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_sqrt(vdd a) { vdd r = {_mm512_sqrt_pd(a.lo), _mm512_sqrt_pd(a.hi)}; return r; }
static inline double vdd_hsum(vdd a) { return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi)); }
/* The lanes of a double array (VW of them) and back. */
static inline vdd vdd_load(const double* p) { vdd r = {_mm512_loadu_pd(p), _mm512_loadu_pd(p + 8)}; return r; }
static inline void vdd_store(double* p, vdd a) { _mm512_storeu_pd(p, a.lo); _mm512_storeu_pd(p + 8, a.hi); }

#elif PLV_ISA == 256
/* ---- AVX2 + FMA ------------------------------------------------------------------------------ */
#define VW 8
typedef __m256 vf;
typedef __m256i vi;
typedef __m256 vm; /* all-ones or all-zeros lanes */
typedef struct { __m256d lo, hi; } vdd;

static const int32_t plv_tail_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i plv_tail(int64_t n) { return _mm256_loadu_si256((const __m256i*)(plv_tail_table + 8 - (n >= 8 ? 8 : n))); }
static inline vm vm_tail(int64_t n) { return _mm256_castsi256_ps(plv_tail(n)); }
static inline vf vf_load(const float* p) { return _mm256_loadu_ps(p); }
static inline vf vf_loadn(const float* p, int64_t n) { return _mm256_maskload_ps(p, plv_tail(n)); }
static inline void vf_store(float* p, vf v) { _mm256_storeu_ps(p, v); }
static inline void vf_storen(float* p, vf v, int64_t n) { _mm256_maskstore_ps(p, plv_tail(n), v); }
static inline vf vf_set1(float x) { return _mm256_set1_ps(x); }
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_fnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm256_sqrt_ps(a); }
static inline vf vf_round(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vm vf_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vm vf_le(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
static inline vm vf_gt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vm vf_ge(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
static inline vm vf_eq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
static inline vm vf_ne(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
static inline vm vf_isnan(vf a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
static inline vf vf_select(vm m, vf t, vf f) { return _mm256_blendv_ps(f, t, m); }
static inline vm vm_and(vm a, vm b) { return _mm256_and_ps(a, b); }
static inline vm vm_or(vm a, vm b) { return _mm256_or_ps(a, b); }
static inline vm vm_andnot(vm a, vm b) { return _mm256_andnot_ps(a, b); }
static inline bool vm_any(vm a) { return _mm256_movemask_ps(a) != 0; }
static inline int vm_first(vm a) { return __builtin_ctz((unsigned)_mm256_movemask_ps(a)); }

static inline vi vi_set1(int32_t x) { return _mm256_set1_epi32(x); }
static inline vi vi_load(const int32_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
static inline vi vi_loadn(const int32_t* p, int64_t n) { return _mm256_maskload_epi32((const int*)p, plv_tail(n)); }
static inline void vi_store(int32_t* p, vi v) { _mm256_storeu_si256((__m256i*)p, v); }
static inline void vi_storen(int32_t* p, vi v, int64_t n) { _mm256_maskstore_epi32((int*)p, plv_tail(n), v); }
static inline vi vi_iota(void) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
static inline vi vi_add(vi a, vi b) { return _mm256_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
static inline vi vi_mullo(vi a, vi b) { return _mm256_mullo_epi32(a, b); }
static inline vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
static inline vi vi_or(vi a, vi b) { return _mm256_or_si256(a, b); }
static inline vi vi_xor(vi a, vi b) { return _mm256_xor_si256(a, b); }
#define vi_slli(a, k) _mm256_slli_epi32((a), (k))
#define vi_srli(a, k) _mm256_srli_epi32((a), (k))
#define vi_srai(a, k) _mm256_srai_epi32((a), (k))
static inline vm vi_eq(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
static inline vm vi_gt(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b)); }
static inline vi vi_select(vm m, vi t, vi f) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(f), _mm256_castsi256_ps(t), m));
}
static inline vi vf_as_vi(vf a) { return _mm256_castps_si256(a); }
static inline vf vi_as_vf(vi a) { return _mm256_castsi256_ps(a); }
static inline vi vf_to_vi_round(vf a) { return _mm256_cvtps_epi32(a); }
static inline vi vf_to_vi_trunc(vf a) { return _mm256_cvttps_epi32(a); }
static inline vf vi_to_vf(vi a) { return _mm256_cvtepi32_ps(a); }
static inline vi vi_load_u16(const uint16_t* p) { return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)); }
static inline void vi_store_u16(uint16_t* p, vi v) {
  /* every lane holds a 16-bit pattern, so the unsigned-saturating pack is exact */
  __m256i t = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
  _mm_storeu_si128((__m128i*)p, _mm256_castsi256_si128(t));
}
static inline vi vi_load_u8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)); }


static inline vdd vdd_from(vf a) {
  vdd r = {_mm256_cvtps_pd(_mm256_castps256_ps128(a)), _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))};
  return r;
}
static inline vf vdd_to(vdd a) { return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(a.lo)), _mm256_cvtpd_ps(a.hi), 1); }
static inline vdd vdd_set1(double x) { vdd r = {_mm256_set1_pd(x), _mm256_set1_pd(x)}; return r; }
static inline vdd vdd_add(vdd a, vdd b) { vdd r = {_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_sub(vdd a, vdd b) { vdd r = {_mm256_sub_pd(a.lo, b.lo), _mm256_sub_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_mul(vdd a, vdd b) { vdd r = {_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_div(vdd a, vdd b) { vdd r = {_mm256_div_pd(a.lo, b.lo), _mm256_div_pd(a.hi, b.hi)}; return r; }
static inline vdd vdd_sqrt(vdd a) { vdd r = {_mm256_sqrt_pd(a.lo), _mm256_sqrt_pd(a.hi)}; return r; }
static inline double vdd_hsum(vdd a) {
  __m256d s = _mm256_add_pd(a.lo, a.hi);
  __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}
static inline vdd vdd_load(const double* p) { vdd r = {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)}; return r; }
static inline void vdd_store(double* p, vdd a) { _mm256_storeu_pd(p, a.lo); _mm256_storeu_pd(p + 4, a.hi); }

#else
/* ---- portable C, one lane --------------------------------------------------------------------- */
#define VW 1
typedef float vf;
typedef int32_t vi;
typedef bool vm;
typedef double vdd;

static inline vm vm_tail(int64_t n) { return n > 0; }
static inline vf vf_load(const float* p) { return *p; }
static inline vf vf_loadn(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
static inline void vf_store(float* p, vf v) { *p = v; }
static inline void vf_storen(float* p, vf v, int64_t n) { if (n > 0) *p = v; }
static inline vf vf_set1(float x) { return x; }
static inline vf vf_zero(void) { return 0.0f; }
static inline vf vf_add(vf a, vf b) { return a + b; }
static inline vf vf_sub(vf a, vf b) { return a - b; }
static inline vf vf_mul(vf a, vf b) { return a * b; }
static inline vf vf_div(vf a, vf b) { return a / b; }
/* No FMA instruction on the baseline ISA (fmaf would be a slow library call). The product of two
 * floats is exact in double, so this rounds once more than a true FMA only in rare double-rounding
 * cases; the exact-split tricks in the math below stay exact. */
static inline vf vf_fmadd(vf a, vf b, vf c) { return (float)((double)a * b + c); }
static inline vf vf_fnmadd(vf a, vf b, vf c) { return (float)((double)c - (double)a * b); }
static inline vf vf_max(vf a, vf b) { return a > b ? a : b; }
static inline vf vf_min(vf a, vf b) { return a < b ? a : b; }
static inline vf vf_sqrt(vf a) { return sqrtf(a); }
static inline vf vf_round(vf a) { return rintf(a); }
static inline vm vf_lt(vf a, vf b) { return a < b; }
static inline vm vf_le(vf a, vf b) { return a <= b; }
static inline vm vf_gt(vf a, vf b) { return a > b; }
static inline vm vf_ge(vf a, vf b) { return a >= b; }
static inline vm vf_eq(vf a, vf b) { return a == b; }
static inline vm vf_ne(vf a, vf b) { return a != b; }
static inline vm vf_isnan(vf a) { return a != a; }
static inline vf vf_select(vm m, vf t, vf f) { return m ? t : f; }
static inline vm vm_and(vm a, vm b) { return a && b; }
static inline vm vm_or(vm a, vm b) { return a || b; }
static inline vm vm_andnot(vm a, vm b) { return !a && b; }
static inline bool vm_any(vm a) { return a; }
static inline int vm_first(vm a) { (void)a; return 0; }

static inline vi vi_set1(int32_t x) { return x; }
static inline vi vi_load(const int32_t* p) { return *p; }
static inline vi vi_loadn(const int32_t* p, int64_t n) { return n > 0 ? *p : 0; }
static inline void vi_store(int32_t* p, vi v) { *p = v; }
static inline void vi_storen(int32_t* p, vi v, int64_t n) { if (n > 0) *p = v; }
static inline vi vi_iota(void) { return 0; }
static inline vi vi_add(vi a, vi b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline vi vi_sub(vi a, vi b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
static inline vi vi_mullo(vi a, vi b) { return (int32_t)((uint32_t)a * (uint32_t)b); }
static inline vi vi_and(vi a, vi b) { return a & b; }
static inline vi vi_or(vi a, vi b) { return a | b; }
static inline vi vi_xor(vi a, vi b) { return a ^ b; }
#define vi_slli(a, k) ((int32_t)((uint32_t)(a) << (k)))
#define vi_srli(a, k) ((int32_t)((uint32_t)(a) >> (k)))
#define vi_srai(a, k) ((int32_t)(a) >> (k))
static inline vm vi_eq(vi a, vi b) { return a == b; }
static inline vm vi_gt(vi a, vi b) { return a > b; }
static inline vi vi_select(vm m, vi t, vi f) { return m ? t : f; }
static inline vi vf_as_vi(vf a) { vi r; memcpy(&r, &a, 4); return r; }
static inline vf vi_as_vf(vi a) { vf r; memcpy(&r, &a, 4); return r; }
static inline vi vf_to_vi_round(vf a) { return (int32_t)lrintf(a); }
static inline vi vf_to_vi_trunc(vf a) { return a > -2147483904.0f && a < 2147483648.0f ? (int32_t)a : INT32_MIN; }
static inline vf vi_to_vf(vi a) { return (float)a; }
static inline vi vi_load_u16(const uint16_t* p) { return *p; }
static inline void vi_store_u16(uint16_t* p, vi v) { *p = (uint16_t)v; }
static inline vi vi_load_u8(const uint8_t* p) { return *p; }


static inline vdd vdd_from(vf a) { return (double)a; }
static inline vf vdd_to(vdd a) { return (float)a; }
static inline vdd vdd_set1(double x) { return x; }
static inline vdd vdd_add(vdd a, vdd b) { return a + b; }
static inline vdd vdd_sub(vdd a, vdd b) { return a - b; }
static inline vdd vdd_mul(vdd a, vdd b) { return a * b; }
static inline vdd vdd_div(vdd a, vdd b) { return a / b; }
static inline vdd vdd_sqrt(vdd a) { return sqrt(a); }
static inline double vdd_hsum(vdd a) { return a; }
static inline vdd vdd_load(const double* p) { return *p; }
static inline void vdd_store(double* p, vdd a) { *p = a; }
#endif

/* ---- shared helpers ----------------------------------------------------------------------------- */

static inline vf vf_neg(vf a) { return vi_as_vf(vi_xor(vf_as_vi(a), vi_set1((int32_t)0x80000000u))); }
static inline vf vf_abs(vf a) { return vi_as_vf(vi_and(vf_as_vi(a), vi_set1(0x7fffffff))); }
static inline vf vf_copysign(vf mag, vf sgn) {
  return vi_as_vf(vi_or(vi_and(vf_as_vi(mag), vi_set1(0x7fffffff)), vi_and(vf_as_vi(sgn), vi_set1((int32_t)0x80000000u))));
}
/* A partial load whose missing lanes hold `fill` (for max/min over a tail). */
static inline vf vf_loadn_fill(const float* p, int64_t n, float fill) {
  return vf_select(vm_tail(n), vf_loadn(p, n), vf_set1(fill));
}

/* Math.max / Math.min: NaN if either is NaN; max(−0, +0) = +0 and min(−0, +0) = −0. */
static inline vf vf_jsmax(vf a, vf b) {
  vf r = vf_max(a, b);
  r = vf_select(vf_eq(a, b), vi_as_vf(vi_and(vf_as_vi(a), vf_as_vi(b))), r);
  return vf_select(vm_or(vf_isnan(a), vf_isnan(b)), vf_add(a, b), r);
}
static inline vf vf_jsmin(vf a, vf b) {
  vf r = vf_min(a, b);
  r = vf_select(vf_eq(a, b), vi_as_vf(vi_or(vf_as_vi(a), vf_as_vi(b))), r);
  return vf_select(vm_or(vf_isnan(a), vf_isnan(b)), vf_add(a, b), r);
}
/* A running max that keeps a NaN once one is seen (acc is the accumulator, x the new lanes). */
static inline vf vf_max_nan(vf acc, vf x) { return vf_select(vf_isnan(x), x, vf_max(x, acc)); }
static inline float vf_hmax_nan(vf a) {
  float t[VW];
  vf_store(t, a);
  float r = t[0];
  for (int i = 1; i < VW && r == r; i++) r = (t[i] != t[i] || t[i] > r) ? t[i] : r;
  return r;
}

/* ---- vectorised math ---------------------------------------------------------------------------
 * Single-precision approximations with FMA, each within about 1-2 ulp over its whole range
 * (measured against double-precision libm). Inputs outside the range return the IEEE limits
 * (exp: 0 and +Inf; log: −Inf at 0, NaN below; tanh: ±1), and NaN propagates. */

/* 2^n for integer-valued n in [−150, 129] (as a float vector), applied to p: two steps, so that
 * results in the subnormal range round once and results past FLT_MAX become +Inf. */
static inline vf plv_ldexp(vf p, vf n) {
  vi ni = vf_to_vi_round(n);
  vi n1 = vi_srai(ni, 1);
  vi n2 = vi_sub(ni, n1);
  vf s1 = vi_as_vf(vi_slli(vi_add(n1, vi_set1(127)), 23));
  vf s2 = vi_as_vf(vi_slli(vi_add(n2, vi_set1(127)), 23));
  return vf_mul(vf_mul(p, s1), s2);
}

/* e^x: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two so n·C1 is exact), then the Cephes
 * degree-6 polynomial for e^r. */
static inline vf v_exp(vf x) {
  x = vf_min(vf_set1(89.0f), x); /* operand order keeps NaN */
  x = vf_max(vf_set1(-104.0f), x);
  vf n = vf_round(vf_mul(x, vf_set1(1.44269504088896341f)));
  vf r = vf_fnmadd(n, vf_set1(0.693359375f), x);
  r = vf_fnmadd(n, vf_set1(-2.12194440e-4f), r);
  vf p = vf_set1(1.9875691500e-4f);
  p = vf_fmadd(p, r, vf_set1(1.3981999507e-3f));
  p = vf_fmadd(p, r, vf_set1(8.3334519073e-3f));
  p = vf_fmadd(p, r, vf_set1(4.1665795894e-2f));
  p = vf_fmadd(p, r, vf_set1(1.6666665459e-1f));
  p = vf_fmadd(p, r, vf_set1(5.0000001201e-1f));
  p = vf_fmadd(p, vf_mul(r, r), r); /* r + r²·P(r), then + 1 last so no bit of r is lost early */
  p = vf_add(p, vf_set1(1.0f));
  return plv_ldexp(p, n);
}

/* ln x: x = 2^e · m with m in [√½, √2), then the Cephes polynomial for ln(m) around 1. */
static inline vf v_log(vf x) {
  vm sub = vf_lt(x, vf_set1(1.17549435e-38f)); /* subnormal (and ≤ 0): scale into the normal range */
  vf xs = vf_select(sub, vf_mul(x, vf_set1(8388608.0f)), x);
  vi bits = vf_as_vi(xs);
  vf e = vi_to_vf(vi_sub(vi_srli(bits, 23), vi_set1(126)));
  e = vf_select(sub, vf_sub(e, vf_set1(23.0f)), e);
  vf m = vi_as_vf(vi_or(vi_and(bits, vi_set1(0x007fffff)), vi_set1(0x3f000000))); /* [0.5, 1) */
  vm small = vf_lt(m, vf_set1(0.707106781186547524f));
  e = vf_select(small, vf_sub(e, vf_set1(1.0f)), e);
  m = vf_sub(vf_select(small, vf_add(m, m), m), vf_set1(1.0f));
  vf z = vf_mul(m, m);
  vf p = vf_set1(7.0376836292e-2f);
  p = vf_fmadd(p, m, vf_set1(-1.1514610310e-1f));
  p = vf_fmadd(p, m, vf_set1(1.1676998740e-1f));
  p = vf_fmadd(p, m, vf_set1(-1.2420140846e-1f));
  p = vf_fmadd(p, m, vf_set1(1.4249322787e-1f));
  p = vf_fmadd(p, m, vf_set1(-1.6668057665e-1f));
  p = vf_fmadd(p, m, vf_set1(2.0000714765e-1f));
  p = vf_fmadd(p, m, vf_set1(-2.4999993993e-1f));
  p = vf_fmadd(p, m, vf_set1(3.3333331174e-1f));
  vf y = vf_mul(vf_mul(p, m), z);
  y = vf_fmadd(e, vf_set1(-2.12194440e-4f), y);
  y = vf_fnmadd(vf_set1(0.5f), z, y);
  vf r = vf_add(m, y);
  r = vf_fmadd(e, vf_set1(0.693359375f), r);
  /* x = +Inf → +Inf, x = 0 → −Inf, x < 0 or NaN → NaN */
  r = vf_select(vf_eq(x, vf_set1(INFINITY)), x, r);
  r = vf_select(vf_eq(x, vf_zero()), vf_set1(-INFINITY), r);
  return vf_select(vm_or(vf_lt(x, vf_zero()), vf_isnan(x)), vf_set1(NAN), r);
}

/* σ(x) = 1/(1 + e^−x) and 1 − σ(x), both without cancellation or overflow: with t = e^−|x|,
 * they are 1/(1 + t) and t/(1 + t), in one order or the other by the sign of x. The argument is
 * x + lo (lo = 0 for a plain float), for callers that hold x to more than float precision. */
static inline vf plv_sigmoid2(vf x, vf lo, vf* one_minus) {
  vm pos = vf_ge(x, vf_zero());
  vf t = v_exp(vf_neg(vf_abs(x)));
  t = vf_fnmadd(vf_select(pos, lo, vf_neg(lo)), t, t); /* e^(−|x| ∓ lo) ≈ e^−|x|·(1 ∓ lo) */
  vf d = vf_add(vf_set1(1.0f), t);
  *one_minus = vf_div(vf_select(pos, t, vf_set1(1.0f)), d); /* dropped by the compiler when unused */
  return vf_div(vf_select(pos, vf_set1(1.0f), t), d);
}
static inline vf v_sigmoid2(vf x, vf* one_minus) { return plv_sigmoid2(x, vf_zero(), one_minus); }
static inline vf v_sigmoid(vf x) { vf om; return plv_sigmoid2(x, vf_zero(), &om); }

/* tanh x: an odd polynomial (Cephes) for |x| < 0.625, else 1 − 2/(e^2|x| + 1), which has no
 * cancellation there because the result is ≥ 0.55. */
static inline vf v_tanh(vf x) {
  vf a = vf_abs(x);
  vf z = vf_mul(x, x);
  vf p = vf_set1(-5.70498872745e-3f);
  p = vf_fmadd(p, z, vf_set1(2.06390887954e-2f));
  p = vf_fmadd(p, z, vf_set1(-5.37397155531e-2f));
  p = vf_fmadd(p, z, vf_set1(1.33314422036e-1f));
  p = vf_fmadd(p, z, vf_set1(-3.33332819422e-1f));
  vf small = vf_fmadd(vf_mul(p, z), x, x);
  vf e = v_exp(vf_add(a, a));
  vf big = vf_sub(vf_set1(1.0f), vf_div(vf_set1(2.0f), vf_add(e, vf_set1(1.0f))));
  big = vf_copysign(big, x);
  return vf_select(vf_lt(a, vf_set1(0.625f)), small, big);
}

/* The two halves of erf, after N. Juffa's single-precision erff (max error about 1 ulp):
 * |x| < 0.9277: erf x = x + x·P(x²); above: erfc |x| = e^Q(|x|), Q a polynomial. */
static inline vf plv_erf_small(vf x) {
  vf s = vf_mul(x, x);
  vf r = vf_set1(-5.96761703e-4f);
  r = vf_fmadd(r, s, vf_set1(4.99119423e-3f));
  r = vf_fmadd(r, s, vf_set1(-2.67681349e-2f));
  r = vf_fmadd(r, s, vf_set1(1.12819925e-1f));
  r = vf_fmadd(r, s, vf_set1(-3.76125336e-1f));
  r = vf_fmadd(r, s, vf_set1(1.28379166e-1f));
  return vf_fmadd(r, x, x);
}
/* erfc t for t ≥ 0.9277 (about 1 ulp relative when t ≲ 2, growing to ~t² ulp beyond). */
static inline vf plv_erfc_big(vf t) {
  vf s = vf_mul(t, t);
  vf r = vf_fmadd(vf_set1(-1.72853470e-5f), t, vf_set1(3.83197126e-4f));
  vf u = vf_fmadd(vf_set1(-3.88396438e-3f), t, vf_set1(2.42546219e-2f));
  r = vf_fmadd(r, s, u);
  r = vf_fmadd(r, t, vf_set1(-1.06777877e-1f));
  r = vf_fmadd(r, t, vf_set1(-6.34846687e-1f));
  r = vf_fmadd(r, t, vf_set1(-1.28717512e-1f));
  r = vf_fmadd(r, t, vf_neg(t));
  return v_exp(r);
}
static inline vf v_erf(vf x) {
  vf a = vf_abs(x);
  vf big = vf_copysign(vf_sub(vf_set1(1.0f), plv_erfc_big(a)), x);
  return vf_select(vf_lt(a, vf_set1(0.927734375f)), plv_erf_small(x), big);
}

/* Φ(x), the standard normal CDF, and φ(x) its density, with small relative error everywhere:
 * Φ(−a) = φ(a)·M(a) for a = |x|, where the Mills ratio M is smooth and ~1/a, so (a + 2)·M(a) is
 * a degree-11 polynomial in q = (a − 2)/(a + 2) ∈ [−1, 1) (fitted to relative error 3e-9 on
 * a ≤ 14.5; beyond, Φ(−a) underflows). Φ(x) = 1 − Φ(−x) for x > 0 has no cancellation since
 * Φ(−x) ≤ ½. x² is split exactly in two (FMA), so e^(−x²/2) keeps the low bits of x². */
static inline vf v_normcdf_pdf(vf x, vf* pdf) {
  vf a = vf_min(vf_set1(14.5f), vf_abs(x)); /* operand order keeps NaN */
  vf r = vf_div(vf_set1(1.0f), vf_add(a, vf_set1(2.0f)));
  vf q = vf_mul(vf_sub(a, vf_set1(2.0f)), r);
  vf p = vf_set1(-1.656582754e-04f);
  p = vf_fmadd(p, q, vf_set1(-3.734451602e-04f));
  p = vf_fmadd(p, q, vf_set1(3.376134846e-04f));
  p = vf_fmadd(p, q, vf_set1(2.096544718e-03f));
  p = vf_fmadd(p, q, vf_set1(2.060204744e-03f));
  p = vf_fmadd(p, q, vf_set1(-4.891827237e-03f));
  p = vf_fmadd(p, q, vf_set1(-1.687918976e-02f));
  p = vf_fmadd(p, q, vf_set1(-1.177453320e-03f));
  p = vf_fmadd(p, q, vf_set1(9.204159677e-02f));
  p = vf_fmadd(p, q, vf_set1(7.218430191e-02f));
  p = vf_fmadd(p, q, vf_set1(-8.307077885e-01f));
  p = vf_fmadd(p, q, vf_set1(1.685476899e+00f));
  vf h = vf_mul(a, a);
  vf l = vf_fmadd(a, a, vf_neg(h));
  vf e = v_exp(vf_mul(vf_set1(-0.5f), h));
  e = vf_fnmadd(vf_mul(vf_set1(0.5f), l), e, e); /* e^(−(h+l)/2) ≈ e^(−h/2)·(1 − l/2) */
  vf dens = vf_mul(e, vf_set1(0.398942280401432678f)); /* 1/√(2π) */
  vf lower = vf_mul(vf_mul(dens, p), r);             /* Φ(−a) */
  *pdf = vf_select(vf_gt(vf_abs(x), vf_set1(14.5f)), vf_zero(), dens);
  return vf_select(vf_lt(x, vf_zero()), lower, vf_sub(vf_set1(1.0f), lower));
}
static inline vf v_normcdf(vf x) { vf pdf; return v_normcdf_pdf(x, &pdf); }

/* gelu_tanh x = ½x(1 + tanh u) with u = √(2/π)(x + 0.044715x³). ½(1 + tanh u) = σ(2u), which
 * avoids the cancellation of 1 + tanh u for negative x; 2u is formed in double and split into
 * hi + lo so that e^(−|2u|) keeps full relative accuracy where σ(2u) is small. Returns σ(2u) and
 * sets *one_minus = 1 − σ(2u) (the backward needs both). */
static inline vf plv_gelu_tanh_sigma(vf x, vf* one_minus) {
  vdd xd = vdd_from(x);
  vdd x2 = vdd_mul(xd, xd);
  vdd u2 = vdd_mul(xd, vdd_add(vdd_set1(1.5957691216057308), vdd_mul(vdd_set1(1.5957691216057308 * 0.044715), x2)));
  vf hi = vdd_to(u2);
  vf lo = vdd_to(vdd_sub(u2, vdd_from(hi)));
  lo = vf_select(vf_eq(vf_abs(hi), vf_set1(INFINITY)), vf_zero(), lo); /* ∞ − ∞ */
  return plv_sigmoid2(hi, lo, one_minus);
}
static inline vf v_gelu_tanh(vf x) { vf om; return vf_mul(x, plv_gelu_tanh_sigma(x, &om)); }
static inline vf v_gelu_erf(vf x) { return vf_mul(x, v_normcdf(x)); }
static inline vf v_silu(vf x) { return vf_mul(x, v_sigmoid(x)); }

#endif
