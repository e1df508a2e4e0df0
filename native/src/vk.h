/* The vectorised elementwise and fused kernels, one table per instruction set. veckernels.h
 * defines the bodies once; vk_avx512.c, vk_avx2.c and vk_scalar.c compile them for each ISA, and
 * pl_vk() picks the best table the CPU runs (PLINTH_ISA caps it). The N-API wrappers in
 * elementwise.c and fused.c validate arguments, split work across threads and call these on
 * contiguous ranges; nothing here allocates or fails. */
#ifndef PLINTH_VK_H
#define PLINTH_VK_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

enum {
  PL_U_NEG, PL_U_EXP, PL_U_LOG, PL_U_SQRT, PL_U_RSQRT, PL_U_ABS, PL_U_TANH, PL_U_SIGMOID, PL_U_RELU,
  PL_U_GELU_TANH, PL_U_GELU_ERF, PL_U_SILU, PL_U_POW, PL_U_ADDS, PL_U_MULS, PL_U_CLAMP, PL_U_SIGN,
  PL_U_SQUARE, PL_U_RECIP, PL_U_SIN, PL_U_COS, PL_U_COUNT
};
enum { PL_B_ADD, PL_B_SUB, PL_B_MUL, PL_B_DIV, PL_B_POW, PL_B_MAX, PL_B_MIN, PL_B_EQ, PL_B_NE, PL_B_LT, PL_B_LE,
       PL_B_GT, PL_B_GE, PL_B_COUNT };
enum { PL_R_SUM, PL_R_SUMSQ, PL_R_MAX, PL_R_MIN, PL_R_ARGMAX, PL_R_ARGMIN, PL_R_COUNT };
/* The conversions with a vectorised path; every other pair goes through an exact scalar path. */
enum { PL_C_F32_BF16, PL_C_F32_F16, PL_C_BF16_F32, PL_C_F16_F32, PL_C_F32_I32, PL_C_I32_F32, PL_C_U8_F32,
       PL_C_F32_U8, PL_C_COUNT };

/* AdamW constants, formed once per call (bias corrections in double). */
typedef struct {
  float decay;        /* 1 − lr·wd */
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;    /* lr / (1 − β1^t) */
  float inv_sqrt_bc2; /* 1 / √(1 − β2^t) */
  float eps;
} pl_adamw_consts;

typedef struct {
  const char* isa;
  /* y = op(x) over n; y may alias x */
  void (*unary)(int op, const float* x, float* y, int64_t n, double p0, double p1);
  /* dx = dy · op'(x) over n */
  void (*unary_backward)(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n, double p0, double p1);
  /* out[i] = a[i·sa] op b[i·sb], i < n (any non-negative strides) */
  void (*binary)(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n);
  void (*cast)(int conv, const void* src, void* dst, int64_t n);
  /* x (rows, R) → out (rows): float for sum/sumsq/max/min, int32 for argmax/argmin */
  void (*reduce_rows)(int op, const float* x, int64_t rows, int64_t R, void* out);
  /* Σ x (or Σ x² when squares) over n, in double */
  double (*sum)(const float* x, int64_t n, bool squares);
  /* x (R, cols) with rows `stride` apart → out (cols) */
  void (*reduce_cols)(int op, const float* x, int64_t R, int64_t stride, int64_t cols, void* out);
  void (*softmax)(const float* x, float* y, int64_t rows, int64_t C, bool log);
  void (*softmax_backward)(const float* y, const float* dy, float* dx, int64_t rows, int64_t C, bool log);
  void (*layernorm)(const float* x, const float* w, const float* b, float* out, float* mean, float* rstd,
                    int64_t rows, int64_t C, double eps);
  /* dw_acc, db_acc (C doubles, or NULL) accumulate Σ_rows dy·n and Σ_rows dy; scratch holds 2C floats */
  void (*layernorm_backward)(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                             float* dx, double* dw_acc, double* db_acc, float* scratch, int64_t rows, int64_t C);
  void (*rmsnorm)(const float* x, const float* w, float* out, float* rstd, int64_t rows, int64_t C, double eps);
  /* scratch holds C floats */
  void (*rmsnorm_backward)(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                           double* dw_acc, float* scratch, int64_t rows, int64_t C);
  void (*cross_entropy)(const float* logits, const int32_t* targets, float* loss, float* lse, int64_t rows, int64_t V,
                        int64_t ignore, double smoothing);
  void (*cross_entropy_backward)(const float* logits, const int32_t* targets, const float* lse, const float* dloss,
                                 float* dlogits, int64_t rows, int64_t V, int64_t ignore, double smoothing);
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
  void (*swiglu_backward)(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n);
  /* rows [begin, end) of x, out (N·T, G, D), row i at position i mod T; out may alias x */
  void (*rope)(const float* x, const float* cos, const float* sin, float* out, int64_t T, int64_t G, int64_t D,
               int64_t begin, int64_t end, bool inverse);
  /* out[i] = (randomWordAt(seed, counter0 + i) >> 8) ≥ threshold ? scale : 0, with key = mix32(seed ^ φ) */
  void (*dropout)(float* out, int64_t n, uint32_t threshold, float scale, uint32_t key, uint32_t counter0);
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const pl_adamw_consts* c);
  /* dst += src over n */
  void (*add_inplace)(float* dst, const float* src, int64_t n);
} pl_vk;

extern const pl_vk pl_vk_avx512, pl_vk_avx2, pl_vk_scalar;
/* The best table for this CPU (and PLINTH_ISA). */
const pl_vk* pl_vk_best(void);

/* The number of elements of size es from p to the next 64-byte boundary (at most n). Wrappers run
 * that head as a call of its own, so the kernel's full vectors then load and store whole cache
 * lines: a split access costs up to 1.6x on a streaming kernel. Large typed arrays all start 16
 * bytes past a boundary, so aligning the output aligns the inputs of the same dtype too. */
static inline int64_t pl_align_head(const void* p, size_t es, int64_t n) {
  uintptr_t mis = (uintptr_t)p & 63;
  int64_t h = mis % es ? 0 : (int64_t)(((64 - mis) & 63) / es);
  return h < n ? h : n;
}

/* Shared scalar helpers (vk_scalar.c). */
uint32_t pl_mix32(uint32_t x);
/* JavaScript's ToInt32 (what storing a number into an Int32Array does). */
int32_t pl_js_to_int32(double x);
/* The f16 / bf16 bit pattern nearest to x, ties to even, as the ref backend encodes it (NaN gives
 * the canonical quiet NaN). */
uint16_t pl_half_from_double(double x, bool bf16);
double pl_double_from_half(uint16_t h, bool bf16);

#endif
