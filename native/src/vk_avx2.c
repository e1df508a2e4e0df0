/* The kernels of veckernels.h compiled for AVX2 with FMA; only reached through pl_vk_best() on CPUs
 * that have them. Contraction is off for the same reason as in vk_avx512.c. */
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=off")
#define PLV_ISA 256
#define PLV_TABLE pl_vk_avx2
#define PLV_NAME "avx2"
#include "veckernels.h"
