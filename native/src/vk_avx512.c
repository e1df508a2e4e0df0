/* The kernels of veckernels.h compiled for AVX-512 (F, BW, VL, DQ) with FMA; only reached through
 * pl_vk_best() on CPUs that have them. Floating-point contraction is off so that the double
 * arithmetic meant to match the ref backend rounds exactly where it says (explicit FMAs stay). */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#pragma GCC optimize("fp-contract=off")
#define PLV_ISA 512
#define PLV_TABLE pl_vk_avx512
#define PLV_NAME "avx512"
#include "veckernels.h"
