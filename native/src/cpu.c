/* Run-time CPU feature detection (cpuid + xgetbv), so one binary picks the best microkernels. */
#include "plinth.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

static int g_init = 0;
static bool g_avx2fma, g_avx512f, g_avx512bf16, g_avx512vnni;

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static void detect(void) {
  if (g_init) return;
  g_init = 1;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  bool osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx) return;
  uint64_t xcr0 = xgetbv0();
  bool ymm_ok = (xcr0 & 0x6) == 0x6;
  bool zmm_ok = (xcr0 & 0xe6) == 0xe6;
  __cpuid_count(7, 0, a, b, c, d);
  bool avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
  bool avx512dq = (b >> 17) & 1;
  bool vnni = (c >> 11) & 1;
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  bool bf16 = (a1 >> 5) & 1;
  g_avx2fma = ymm_ok && avx2 && fma;
  g_avx512f = zmm_ok && avx512f && avx512bw && avx512vl && avx512dq && g_avx2fma;
  g_avx512bf16 = g_avx512f && bf16;
  g_avx512vnni = g_avx512f && vnni;
  /* PLINTH_ISA=scalar|avx2 caps the instruction set, to test every path on one machine. */
  const char* cap = getenv("PLINTH_ISA");
  if (cap && strcmp(cap, "avx2") == 0) { g_avx512f = g_avx512bf16 = g_avx512vnni = false; }
  if (cap && strcmp(cap, "scalar") == 0) { g_avx2fma = g_avx512f = g_avx512bf16 = g_avx512vnni = false; }
}

bool pl_cpu_avx2_fma(void) { detect(); return g_avx2fma; }
bool pl_cpu_avx512f(void) { detect(); return g_avx512f; }
bool pl_cpu_avx512bf16(void) { detect(); return g_avx512bf16; }
bool pl_cpu_avx512vnni(void) { detect(); return g_avx512vnni; }
#else
bool pl_cpu_avx2_fma(void) { return false; }
bool pl_cpu_avx512f(void) { return false; }
bool pl_cpu_avx512bf16(void) { return false; }
bool pl_cpu_avx512vnni(void) { return false; }
#endif
