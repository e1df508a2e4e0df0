/* The kernels of veckernels.h compiled for one lane of plain C (the portable path), the choice of
 * kernel table at run time, and scalar helpers shared by the kernel files. */
#define PLV_ISA 1
#define PLV_TABLE pl_vk_scalar
#define PLV_NAME "scalar"
#include "veckernels.h"
#include "plinth.h"

const pl_vk* pl_vk_best(void) {
#if defined(__x86_64__) || defined(_M_X64)
  if (pl_cpu_avx512f()) return &pl_vk_avx512;
  if (pl_cpu_avx2_fma()) return &pl_vk_avx2;
#endif
  return &pl_vk_scalar;
}

uint32_t pl_mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

int32_t pl_js_to_int32(double x) {
  if (!isfinite(x)) return 0;
  double m = fmod(trunc(x), 4294967296.0); /* exact */
  if (m < 0) m += 4294967296.0;
  return (int32_t)(uint32_t)m;
}

/* As the ref backend's encodeHalf: scaling by powers of two is exact in double, so rounding
 * happens once, in nearbyint (round to nearest even); a mantissa that rounds up carries into the
 * exponent, and past the largest exponent into the Inf pattern. */
uint16_t pl_half_from_double(double x, bool bf16) {
  int mant = bf16 ? 7 : 10, bias = bf16 ? 127 : 15;
  uint16_t inf = (uint16_t)((2 * bias + 1) << mant);
  if (isnan(x)) return (uint16_t)(inf | (1 << (mant - 1)));
  uint16_t sign = signbit(x) ? 0x8000 : 0;
  double a = fabs(x);
  int min_normal_exp = 1 - bias;
  if (a < ldexp(1.0, min_normal_exp)) return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, mant - min_normal_exp)));
  if (isinf(a)) return (uint16_t)(sign | inf);
  int e;
  frexp(a, &e);
  e -= 1; /* a = 2^e · [1, 2) */
  if (e > bias) return (uint16_t)(sign | inf);
  int m = (int)nearbyint(ldexp(ldexp(a, -e) - 1.0, mant));
  return (uint16_t)(sign | (((e + bias) << mant) + m));
}

double pl_double_from_half(uint16_t h, bool bf16) {
  int mant = bf16 ? 7 : 10, bias = bf16 ? 127 : 15;
  double sign = (h & 0x8000) ? -1.0 : 1.0;
  int e = (h & 0x7fff) >> mant;
  int m = h & ((1 << mant) - 1);
  if (e == 0) return sign * ldexp((double)m, 1 - bias - mant);
  if (e == 2 * bias + 1) return m ? NAN : sign * INFINITY;
  return sign * ldexp((double)((1 << mant) + m), e - bias - mant);
}
