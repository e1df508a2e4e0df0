/* Bodies of the vectorised elementwise and fused kernels, written once against vec.h and compiled
 * per ISA by vk_avx512.c, vk_avx2.c and vk_scalar.c (each defines PLV_ISA and PLV_TABLE first).
 *
 * Numerics follow the ref backend (src/backend/ref), which computes each element in double and
 * rounds once to float32. Where that costs little, these kernels do the same (vdd arithmetic), so
 * copies, casts, comparisons, add/sub/mul/div, clamp, rope, the norms' forward outputs and most
 * derivatives match ref bit for bit; transcendental functions use the float32 approximations of
 * vec.h (a few ulp). Sums are accumulated in double. */
#include "vec.h"
#include "vk.h"

/* Applies EXPR (an expression of the vf `x`) over n floats X → Y, the tail as a partial vector. */
#define PLV_MAP1(n, X, Y, EXPR)                   \
  do {                                            \
    int64_t i_ = 0;                               \
    for (; i_ + VW <= (n); i_ += VW) {            \
      vf x = vf_load((X) + i_);                   \
      (void)x;                                    \
      vf_store((Y) + i_, (EXPR));                 \
    }                                             \
    if (i_ < (n)) {                               \
      vf x = vf_loadn((X) + i_, (n) - i_);        \
      (void)x;                                    \
      vf_storen((Y) + i_, (EXPR), (n) - i_);      \
    }                                             \
  } while (0)

/* Applies EXPR (of vf `x`, `y`, `g`: elements of X, Y, G) over n floats into D. */
#define PLV_MAP3(n, X, Y, G, D, EXPR)                                                         \
  do {                                                                                        \
    int64_t i_ = 0;                                                                           \
    for (; i_ + VW <= (n); i_ += VW) {                                                        \
      vf x = vf_load((X) + i_), y = vf_load((Y) + i_), g = vf_load((G) + i_);                 \
      (void)x, (void)y, (void)g;                                                              \
      vf_store((D) + i_, (EXPR));                                                             \
    }                                                                                         \
    if (i_ < (n)) {                                                                           \
      int64_t c_ = (n) - i_;                                                                  \
      vf x = vf_loadn((X) + i_, c_), y = vf_loadn((Y) + i_, c_), g = vf_loadn((G) + i_, c_);  \
      (void)x, (void)y, (void)g;                                                              \
      vf_storen((D) + i_, (EXPR), c_);                                                        \
    }                                                                                         \
  } while (0)

/* The smallest float ≥ p and the largest float ≤ p, so that float comparisons against them agree
 * with the double comparisons x ≥ p, x ≤ p of the ref backend. */
static float plv_f32_at_least(double p) {
  float f = (float)p;
  if ((double)f < p) f = nextafterf(f, INFINITY);
  return f;
}
static float plv_f32_at_most(double p) {
  float f = (float)p;
  if ((double)f > p) f = nextafterf(f, -INFINITY);
  return f;
}

/* Math.pow: C's pow except that a NaN exponent, or ±1 to an infinite power, is NaN. */
static inline double plv_js_pow(double a, double b) {
  if (b != b || (fabs(a) == 1.0 && isinf(b))) return NAN;
  return pow(a, b);
}

/* Math.sign: ±1, and ±0 and NaN unchanged. */
static inline vf plv_sign(vf x) {
  return vf_select(vf_gt(x, vf_zero()), vf_set1(1.0f), vf_select(vf_lt(x, vf_zero()), vf_set1(-1.0f), x));
}

/* ---- unary ------------------------------------------------------------------------------------ */

static void k_pow_scalar(const float* X, float* Y, int64_t n, double p) {
  if (p == 2.0) {
    PLV_MAP1(n, X, Y, vf_mul(x, x));
  } else if (p == 1.0) {
    PLV_MAP1(n, X, Y, x);
  } else if (p == 0.0) {
    PLV_MAP1(n, X, Y, vf_set1(1.0f)); /* pow(NaN, 0) = 1 too */
  } else if (p == 0.5) {
    /* pow(x, ½) = √x, except pow(−0, ½) = +0 and pow(−∞, ½) = +∞ */
    PLV_MAP1(n, X, Y, vf_select(vf_eq(x, vf_set1(-INFINITY)), vf_set1(INFINITY),
                                vf_select(vf_eq(x, vf_zero()), vf_zero(), vf_sqrt(x))));
  } else {
    for (int64_t i = 0; i < n; i++) Y[i] = (float)plv_js_pow((double)X[i], p);
  }
}

static void k_unary(int op, const float* X, float* Y, int64_t n, double p0, double p1) {
  switch (op) {
    case PL_U_NEG: PLV_MAP1(n, X, Y, vf_neg(x)); break;
    case PL_U_EXP: PLV_MAP1(n, X, Y, v_exp(x)); break;
    case PL_U_LOG: PLV_MAP1(n, X, Y, v_log(x)); break;
    case PL_U_SQRT: PLV_MAP1(n, X, Y, vf_sqrt(x)); break;
    /* 1/√x in double, rounded once, as ref: the float rsqrt would round twice */
    case PL_U_RSQRT: PLV_MAP1(n, X, Y, vdd_to(vdd_div(vdd_set1(1.0), vdd_sqrt(vdd_from(x))))); break;
    case PL_U_ABS: PLV_MAP1(n, X, Y, vf_abs(x)); break;
    case PL_U_TANH: PLV_MAP1(n, X, Y, v_tanh(x)); break;
    case PL_U_SIGMOID: PLV_MAP1(n, X, Y, v_sigmoid(x)); break;
    /* Math.max(x, 0): NaN stays NaN and −0 becomes +0 */
    case PL_U_RELU: PLV_MAP1(n, X, Y, vf_select(vm_or(vf_gt(x, vf_zero()), vf_isnan(x)), x, vf_zero())); break;
    case PL_U_GELU_TANH: PLV_MAP1(n, X, Y, v_gelu_tanh(x)); break;
    case PL_U_GELU_ERF: PLV_MAP1(n, X, Y, v_gelu_erf(x)); break;
    case PL_U_SILU: PLV_MAP1(n, X, Y, v_silu(x)); break;
    case PL_U_POW: k_pow_scalar(X, Y, n, p0); break;
    case PL_U_ADDS: {
      vdd c = vdd_set1(p0);
      PLV_MAP1(n, X, Y, vdd_to(vdd_add(vdd_from(x), c)));
      break;
    }
    case PL_U_MULS: {
      vdd c = vdd_set1(p0);
      PLV_MAP1(n, X, Y, vdd_to(vdd_mul(vdd_from(x), c)));
      break;
    }
    case PL_U_CLAMP: {
      /* rounding is monotone, so clamping to the rounded bounds equals rounding the double clamp */
      vf lo = vf_set1((float)p0), hi = vf_set1((float)p1);
      PLV_MAP1(n, X, Y, vf_jsmin(vf_jsmax(x, lo), hi));
      break;
    }
    case PL_U_SIGN: PLV_MAP1(n, X, Y, plv_sign(x)); break;
    case PL_U_SQUARE: PLV_MAP1(n, X, Y, vf_mul(x, x)); break;
    case PL_U_RECIP: PLV_MAP1(n, X, Y, vf_div(vf_set1(1.0f), x)); break;
    case PL_U_SIN: for (int64_t i = 0; i < n; i++) Y[i] = (float)sin((double)X[i]); break;
    case PL_U_COS: for (int64_t i = 0; i < n; i++) Y[i] = (float)cos((double)X[i]); break;
    default: break;
  }
}

/* dx = dy·d with d an expression of x (and y) in double, rounded once. */
#define PLV_BWD_DOUBLE(EXPR) \
  PLV_MAP3(n, X, Y, G, DX, vdd_to(vdd_mul(vdd_from(g), (EXPR))))

static void k_unary_backward(int op, const float* X, const float* Y, const float* G, float* DX, int64_t n,
                             double p0, double p1) {
  const vdd one = vdd_set1(1.0);
  switch (op) {
    case PL_U_NEG: PLV_MAP3(n, X, Y, G, DX, vf_neg(g)); break;
    case PL_U_EXP: PLV_MAP3(n, X, Y, G, DX, vf_mul(g, y)); break;
    case PL_U_LOG: PLV_BWD_DOUBLE(vdd_div(one, vdd_from(x))); break;
    case PL_U_SQRT: PLV_BWD_DOUBLE(vdd_div(vdd_set1(0.5), vdd_from(y))); break;
    case PL_U_RSQRT: {
      /* −½·y·y·y, left to right as ref evaluates it */
      PLV_BWD_DOUBLE(vdd_mul(vdd_mul(vdd_mul(vdd_set1(-0.5), vdd_from(y)), vdd_from(y)), vdd_from(y)));
      break;
    }
    case PL_U_ABS: PLV_MAP3(n, X, Y, G, DX, vf_mul(g, plv_sign(x))); break;
    case PL_U_TANH: PLV_BWD_DOUBLE(vdd_sub(one, vdd_mul(vdd_from(y), vdd_from(y)))); break;
    case PL_U_SIGMOID: PLV_BWD_DOUBLE(vdd_mul(vdd_from(y), vdd_sub(one, vdd_from(y)))); break;
    case PL_U_RELU: PLV_MAP3(n, X, Y, G, DX, vf_mul(g, vf_select(vf_gt(x, vf_zero()), vf_set1(1.0f), vf_zero()))); break;
    case PL_U_GELU_TANH: {
      /* y = x·σ(2u): y' = σ + x·σ·(1 − σ)·(2u)', (2u)' = 2√(2/π)(1 + 3·0.044715·x²) */
      vf om;
      PLV_MAP3(n, X, Y, G, DX, (vf_mul(g, ({
        vf s_ = plv_gelu_tanh_sigma(x, &om);
        vf du_ = vf_mul(vf_set1(1.5957691216057308f), vf_fmadd(vf_set1(3.0f * 0.044715f), vf_mul(x, x), vf_set1(1.0f)));
        vf_fmadd(vf_mul(vf_mul(x, s_), om), du_, s_);
      }))));
      break;
    }
    case PL_U_GELU_ERF: {
      /* y' = Φ(x) + x·φ(x) */
      vf pdf;
      PLV_MAP3(n, X, Y, G, DX, vf_mul(g, ({ vf c_ = v_normcdf_pdf(x, &pdf); vf_fmadd(x, pdf, c_); })));
      break;
    }
    case PL_U_SILU: {
      /* (x·σ)' = σ·(1 + x·(1 − σ)) */
      vf om;
      PLV_MAP3(n, X, Y, G, DX, vf_mul(g, ({
        vf s_ = v_sigmoid2(x, &om);
        vf_mul(s_, vf_fmadd(x, om, vf_set1(1.0f)));
      })));
      break;
    }
    case PL_U_POW:
      /* torch's convention: the gradient of x^0 is 0 everywhere */
      if (p0 == 0.0) {
        PLV_MAP3(n, X, Y, G, DX, vf_mul(g, vf_zero()));
      } else {
        for (int64_t i = 0; i < n; i++) DX[i] = (float)((double)G[i] * (p0 * plv_js_pow((double)X[i], p0 - 1.0)));
      }
      break;
    case PL_U_ADDS: PLV_MAP3(n, X, Y, G, DX, g); break;
    case PL_U_MULS: PLV_BWD_DOUBLE(vdd_set1(p0)); break;
    case PL_U_CLAMP: {
      /* the gradient passes where p0 ≤ x ≤ p1, boundaries included (torch) */
      vf lo = vf_set1(plv_f32_at_least(p0)), hi = vf_set1(plv_f32_at_most(p1));
      PLV_MAP3(n, X, Y, G, DX, vf_mul(g, vf_select(vm_and(vf_ge(x, lo), vf_le(x, hi)), vf_set1(1.0f), vf_zero())));
      break;
    }
    case PL_U_SIGN: PLV_MAP3(n, X, Y, G, DX, vf_mul(g, vf_zero())); break;
    case PL_U_SQUARE: PLV_BWD_DOUBLE(vdd_mul(vdd_set1(2.0), vdd_from(x))); break;
    case PL_U_RECIP: PLV_BWD_DOUBLE(vdd_sub(vdd_set1(0.0), vdd_mul(vdd_from(y), vdd_from(y)))); break;
    case PL_U_SIN: for (int64_t i = 0; i < n; i++) DX[i] = (float)((double)G[i] * cos((double)X[i])); break;
    case PL_U_COS: for (int64_t i = 0; i < n; i++) DX[i] = (float)((double)G[i] * -sin((double)X[i])); break;
    default: break;
  }
}

/* ---- binary ----------------------------------------------------------------------------------- */

/* One op over a contiguous-or-broadcast pair: sa, sb ∈ {0, 1}. EXPR is of vf a, b. */
#define PLV_BIN(EXPR)                                                 \
  do {                                                                \
    const vf ca = vf_set1(A[0]), cb = vf_set1(B[0]);                  \
    int64_t i_ = 0;                                                   \
    for (; i_ + VW <= n; i_ += VW) {                                  \
      vf a = sa ? vf_load(A + i_) : ca;                               \
      vf b = sb ? vf_load(B + i_) : cb;                               \
      vf_store(O + i_, (EXPR));                                       \
    }                                                                 \
    if (i_ < n) {                                                     \
      vf a = sa ? vf_loadn(A + i_, n - i_) : ca;                      \
      vf b = sb ? vf_loadn(B + i_, n - i_) : cb;                      \
      vf_storen(O + i_, (EXPR), n - i_);                              \
    }                                                                 \
  } while (0)

static void k_binary_unit(int op, const float* A, int64_t sa, const float* B, int64_t sb, float* O, int64_t n) {
  const vf one = vf_set1(1.0f), zero = vf_zero();
  switch (op) {
    case PL_B_ADD: PLV_BIN(vf_add(a, b)); break;
    case PL_B_SUB: PLV_BIN(vf_sub(a, b)); break;
    case PL_B_MUL: PLV_BIN(vf_mul(a, b)); break;
    case PL_B_DIV: PLV_BIN(vf_div(a, b)); break;
    case PL_B_MAX: PLV_BIN(vf_jsmax(a, b)); break;
    case PL_B_MIN: PLV_BIN(vf_jsmin(a, b)); break;
    case PL_B_EQ: PLV_BIN(vf_select(vf_eq(a, b), one, zero)); break;
    case PL_B_NE: PLV_BIN(vf_select(vf_ne(a, b), one, zero)); break;
    case PL_B_LT: PLV_BIN(vf_select(vf_lt(a, b), one, zero)); break;
    case PL_B_LE: PLV_BIN(vf_select(vf_le(a, b), one, zero)); break;
    case PL_B_GT: PLV_BIN(vf_select(vf_gt(a, b), one, zero)); break;
    case PL_B_GE: PLV_BIN(vf_select(vf_ge(a, b), one, zero)); break;
    default: break;
  }
}

static void k_binary(int op, const float* A, int64_t sa, const float* B, int64_t sb, float* O, int64_t n) {
  if (n <= 0) return;
  if (op == PL_B_POW) {
    for (int64_t i = 0; i < n; i++) O[i] = (float)plv_js_pow((double)A[i * sa], (double)B[i * sb]);
    return;
  }
  if ((sa == 0 || sa == 1) && (sb == 0 || sb == 1)) {
    k_binary_unit(op, A, sa, B, sb, O, n);
    return;
  }
  /* other strides: gather a block into contiguous buffers, then the unit-stride path */
  float ta[256], tb[256];
  for (int64_t i = 0; i < n; i += 256) {
    int64_t c = n - i < 256 ? n - i : 256;
    for (int64_t k = 0; k < c; k++) {
      ta[k] = A[(i + k) * sa];
      tb[k] = B[(i + k) * sb];
    }
    k_binary_unit(op, ta, 1, tb, 1, O + i, c);
  }
}

/* ---- cast --------------------------------------------------------------------------------------
 * Integer algorithms, exact on every input (checked exhaustively against the ref encoder). */

/* f32 → bf16, round to nearest even; NaN keeps its sign and top payload bits with the quiet bit set */
static inline vi plv_bf16_from_f32(vf x) {
  vi b = vf_as_vi(x);
  vi a = vi_and(b, vi_set1(0x7fffffff));
  vi r = vi_srli(vi_add(vi_add(b, vi_set1(0x7fff)), vi_and(vi_srli(b, 16), vi_set1(1))), 16);
  vi nan = vi_or(vi_srli(b, 16), vi_set1(0x40));
  return vi_select(vi_gt(a, vi_set1(0x7f800000)), nan, r);
}

/* f32 → f16, round to nearest even, with subnormals, overflow to ±Inf and NaN as for bf16 */
static inline vi plv_f16_from_f32(vf x) {
  vi b = vf_as_vi(x);
  vi sign = vi_and(vi_srli(b, 16), vi_set1(0x8000));
  vi a = vi_and(b, vi_set1(0x7fffffff));
  /* normal: rebias the exponent (127 → 15) and round the 13 dropped bits to nearest even */
  vi normal = vi_srli(vi_add(vi_add(vi_sub(a, vi_set1(0x38000000)), vi_set1(0xfff)), vi_and(vi_srli(a, 13), vi_set1(1))), 13);
  /* subnormal (|x| < 2^−14): |x|·2^24 is exact, and rounding it to an integer gives the bits */
  vi sub = vf_to_vi_round(vf_mul(vf_abs(x), vf_set1(16777216.0f)));
  vi r = vi_select(vi_gt(vi_set1(0x38800000), a), sub, normal);
  r = vi_select(vi_gt(a, vi_set1(0x477fefff)), vi_set1(0x7c00), r); /* ≥ 65520 rounds to Inf */
  r = vi_select(vi_gt(a, vi_set1(0x7f800000)), vi_or(vi_set1(0x7e00), vi_and(vi_srli(a, 13), vi_set1(0x3ff))), r);
  return vi_or(r, sign);
}

/* bf16 → f32: exact; NaN becomes the canonical quiet NaN (what ref's JS NaN stores as) */
static inline vf plv_f32_from_bf16(vi h) {
  vi b = vi_slli(h, 16);
  vm nan = vi_gt(vi_and(b, vi_set1(0x7fffffff)), vi_set1(0x7f800000));
  return vi_as_vf(vi_select(nan, vi_set1(0x7fc00000), b));
}

static inline vf plv_f32_from_f16(vi h) {
  vi sign = vi_slli(vi_and(h, vi_set1(0x8000)), 16);
  vi e = vi_and(vi_srli(h, 10), vi_set1(0x1f));
  vi m = vi_and(h, vi_set1(0x3ff));
  vi normal = vi_or(vi_slli(vi_add(e, vi_set1(112)), 23), vi_slli(m, 13));
  vi sub = vf_as_vi(vf_mul(vi_to_vf(m), vf_set1(5.9604644775390625e-8f))); /* m·2^−24, exact */
  vi r = vi_select(vi_eq(e, vi_set1(0)), sub, normal);
  r = vi_select(vi_eq(e, vi_set1(31)), vi_select(vi_eq(m, vi_set1(0)), vi_set1(0x7f800000), vi_set1(0x7fc00000)), r);
  return vi_as_vf(vi_or(r, vi_select(vi_eq(r, vi_set1(0x7fc00000)), vi_set1(0), sign)));
}

/* f32 → i32 as Math.trunc then an Int32Array store: lanes outside int32 range (and NaN, ±Inf)
 * come back from the truncating conversion as INT32_MIN and are redone exactly (wrap mod 2^32). */
static inline void plv_i32_from_f32_block(const float* S, int32_t* D, int64_t c) {
  vi r = vf_to_vi_trunc(vf_loadn(S, c));
  vi_storen(D, r, c);
  if (vm_any(vm_and(vi_eq(r, vi_set1(INT32_MIN)), vm_tail(c))))
    for (int64_t k = 0; k < c; k++)
      if (D[k] == INT32_MIN) D[k] = pl_js_to_int32((double)S[k]);
}

static void k_cast(int conv, const void* src, void* dst, int64_t n) {
  int64_t i = 0;
  switch (conv) {
    case PL_C_F32_BF16: {
      const float* S = (const float*)src;
      uint16_t* D = (uint16_t*)dst;
      for (; i + VW <= n; i += VW) vi_store_u16(D + i, plv_bf16_from_f32(vf_load(S + i)));
      for (; i < n; i++) {
        float t[VW] = {0};
        uint16_t o[VW];
        t[0] = S[i];
        vi_store_u16(o, plv_bf16_from_f32(vf_loadn(t, 1)));
        D[i] = o[0];
      }
      break;
    }
    case PL_C_F32_F16: {
      const float* S = (const float*)src;
      uint16_t* D = (uint16_t*)dst;
      for (; i + VW <= n; i += VW) vi_store_u16(D + i, plv_f16_from_f32(vf_load(S + i)));
      for (; i < n; i++) {
        float t[VW] = {0};
        uint16_t o[VW];
        t[0] = S[i];
        vi_store_u16(o, plv_f16_from_f32(vf_loadn(t, 1)));
        D[i] = o[0];
      }
      break;
    }
    case PL_C_BF16_F32: {
      const uint16_t* S = (const uint16_t*)src;
      float* D = (float*)dst;
      for (; i + VW <= n; i += VW) vf_store(D + i, plv_f32_from_bf16(vi_load_u16(S + i)));
      if (i < n) {
        uint16_t t[VW] = {0};
        memcpy(t, S + i, (size_t)(n - i) * 2);
        vf_storen(D + i, plv_f32_from_bf16(vi_load_u16(t)), n - i);
      }
      break;
    }
    case PL_C_F16_F32: {
      const uint16_t* S = (const uint16_t*)src;
      float* D = (float*)dst;
      for (; i + VW <= n; i += VW) vf_store(D + i, plv_f32_from_f16(vi_load_u16(S + i)));
      if (i < n) {
        uint16_t t[VW] = {0};
        memcpy(t, S + i, (size_t)(n - i) * 2);
        vf_storen(D + i, plv_f32_from_f16(vi_load_u16(t)), n - i);
      }
      break;
    }
    case PL_C_F32_I32: {
      const float* S = (const float*)src;
      int32_t* D = (int32_t*)dst;
      for (; i < n; i += VW) plv_i32_from_f32_block(S + i, D + i, n - i < VW ? n - i : VW);
      break;
    }
    case PL_C_F32_U8: {
      /* Uint8Array stores keep the low 8 bits of ToInt32 */
      const float* S = (const float*)src;
      uint8_t* D = (uint8_t*)dst;
      for (; i < n; i += VW) {
        int32_t t[VW];
        int64_t c = n - i < VW ? n - i : VW;
        plv_i32_from_f32_block(S + i, t, c);
        for (int64_t k = 0; k < c; k++) D[i + k] = (uint8_t)t[k];
      }
      break;
    }
    case PL_C_I32_F32: {
      const int32_t* S = (const int32_t*)src;
      float* D = (float*)dst;
      for (; i + VW <= n; i += VW) vf_store(D + i, vi_to_vf(vi_load(S + i)));
      if (i < n) vf_storen(D + i, vi_to_vf(vi_loadn(S + i, n - i)), n - i);
      break;
    }
    case PL_C_U8_F32: {
      const uint8_t* S = (const uint8_t*)src;
      float* D = (float*)dst;
      for (; i + 16 <= n; i += VW) vf_store(D + i, vi_to_vf(vi_load_u8(S + i)));
      for (; i < n; i++) D[i] = (float)S[i];
      break;
    }
    default: break;
  }
}

/* ---- reductions ------------------------------------------------------------------------------- */

static inline float plv_js_maxf(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) { uint32_t x, y; memcpy(&x, &a, 4); memcpy(&y, &b, 4); x &= y; memcpy(&a, &x, 4); return a; }
  return a > b ? a : b;
}
static inline float plv_js_minf(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) { uint32_t x, y; memcpy(&x, &a, 4); memcpy(&y, &b, 4); x |= y; memcpy(&a, &x, 4); return a; }
  return a < b ? a : b;
}

/* Row kernels read each row from memory once, then again from L1. Between rows the hardware
 * prefetcher loses the stream, so the memory pass also requests the next row (`next`, or NULL
 * for the last), a line per vector; for memory-bound rows this is worth up to 2x. */
static inline void plv_prefetch(const float* next, int64_t i) {
  if (next) __builtin_prefetch(next + i);
}

static double plv_row_sum_next(const float* p, int64_t R, bool squares, const float* next) {
  vdd a0 = vdd_set1(0.0), a1 = vdd_set1(0.0);
  int64_t r = 0;
  for (; r + 2 * VW <= R; r += 2 * VW) {
    plv_prefetch(next, r);
    plv_prefetch(next, r + VW);
    vdd x0 = vdd_from(vf_load(p + r)), x1 = vdd_from(vf_load(p + r + VW));
    if (squares) { x0 = vdd_mul(x0, x0); x1 = vdd_mul(x1, x1); }
    a0 = vdd_add(a0, x0);
    a1 = vdd_add(a1, x1);
  }
  for (; r < R; r += VW) {
    vdd x0 = vdd_from(vf_loadn(p + r, R - r));
    if (squares) x0 = vdd_mul(x0, x0);
    a0 = vdd_add(a0, x0);
  }
  return vdd_hsum(vdd_add(a0, a1));
}
static double plv_row_sum(const float* p, int64_t R, bool squares) { return plv_row_sum_next(p, R, squares, NULL); }

/* Math.max / Math.min over a row, as ref folds it from −Inf / +Inf. */
static float plv_row_extreme(const float* p, int64_t R, bool is_max) {
  float init = is_max ? -INFINITY : INFINITY;
  vf acc = vf_set1(init);
  for (int64_t r = 0; r < R; r += VW) {
    vf x = vf_loadn_fill(p + r, R - r, init);
    acc = is_max ? vf_jsmax(acc, x) : vf_jsmin(acc, x);
  }
  float lanes[VW], res = init;
  vf_store(lanes, acc);
  for (int k = 0; k < VW; k++) res = is_max ? plv_js_maxf(res, lanes[k]) : plv_js_minf(res, lanes[k]);
  return res;
}

/* ref's argmax/argmin: the first NaN if there is one, else the first index of the extreme. */
static int32_t plv_row_arg(const float* p, int64_t R, bool is_max) {
  if (R <= 0) return 0;
  float init = is_max ? -INFINITY : INFINITY;
  vf acc = vf_set1(init);
  bool nan = false;
  for (int64_t r = 0; r < R; r += VW) {
    vf x = vf_loadn_fill(p + r, R - r, init);
    if (vm_any(vf_isnan(x))) { nan = true; break; }
    acc = is_max ? vf_max(x, acc) : vf_min(x, acc);
  }
  float lanes[VW], best = init;
  vf_store(lanes, acc);
  if (!nan)
    for (int k = 0; k < VW; k++) best = is_max ? (lanes[k] > best ? lanes[k] : best) : (lanes[k] < best ? lanes[k] : best);
  vf target = vf_set1(best);
  for (int64_t r = 0; r < R; r += VW) {
    vf x = vf_loadn_fill(p + r, R - r, init);
    vm hit = vm_and(nan ? vf_isnan(x) : vf_eq(x, target), vm_tail(R - r));
    if (vm_any(hit)) return (int32_t)(r + vm_first(hit));
  }
  return 0;
}

static void k_reduce_rows(int op, const float* x, int64_t rows, int64_t R, void* out) {
  float* of = (float*)out;
  int32_t* oi = (int32_t*)out;
  for (int64_t o = 0; o < rows; o++) {
    const float* p = x + o * R; /* x is (rows, R) */
    const float* next = o + 1 < rows ? p + R : NULL;
    switch (op) {
      case PL_R_SUM: of[o] = (float)plv_row_sum_next(p, R, false, next); break;
      case PL_R_SUMSQ: of[o] = (float)plv_row_sum_next(p, R, true, next); break;
      case PL_R_MAX: of[o] = plv_row_extreme(p, R, true); break;
      case PL_R_MIN: of[o] = plv_row_extreme(p, R, false); break;
      case PL_R_ARGMAX: oi[o] = plv_row_arg(p, R, true); break;
      case PL_R_ARGMIN: oi[o] = plv_row_arg(p, R, false); break;
      default: break;
    }
  }
}

/* Columns are reduced up to PLV_COLBLOCK at a time into accumulators that stay in L1, walking the
 * rows in memory order (a strided walk down narrow column blocks defeats the prefetcher). */
#define PLV_COLBLOCK 1024

static void k_reduce_cols(int op, const float* x, int64_t R, int64_t stride, int64_t cols, void* out) {
  double accd[PLV_COLBLOCK];
  float accf[PLV_COLBLOCK];
  int32_t acci[PLV_COLBLOCK];
  for (int64_t c0 = 0; c0 < cols; c0 += PLV_COLBLOCK) {
    int64_t w = cols - c0 < PLV_COLBLOCK ? cols - c0 : PLV_COLBLOCK;
    const float* base = x + c0; /* x[r, c0 + c] at base[r·stride + c] */
    if (op == PL_R_SUM || op == PL_R_SUMSQ) {
      for (int64_t c = 0; c < w; c += VW) vdd_store(accd + c, vdd_set1(0.0));
      bool sq = op == PL_R_SUMSQ;
      int64_t r = 0;
      /* four rows per pass over the accumulators: a quarter of their loads and stores, and four
       * streams in flight */
      for (; r + 4 <= R; r += 4) {
        const float* row = base + r * stride;
        for (int64_t c = 0; c < w; c += VW) {
          int64_t k = w - c;
          vdd v0 = vdd_from(vf_loadn(row + c, k)), v1 = vdd_from(vf_loadn(row + stride + c, k));
          vdd v2 = vdd_from(vf_loadn(row + 2 * stride + c, k)), v3 = vdd_from(vf_loadn(row + 3 * stride + c, k));
          if (sq) { v0 = vdd_mul(v0, v0); v1 = vdd_mul(v1, v1); v2 = vdd_mul(v2, v2); v3 = vdd_mul(v3, v3); }
          vdd_store(accd + c, vdd_add(vdd_load(accd + c), vdd_add(vdd_add(v0, v1), vdd_add(v2, v3))));
        }
      }
      for (; r < R; r++) {
        const float* row = base + r * stride;
        for (int64_t c = 0; c < w; c += VW) {
          vdd v = vdd_from(vf_loadn(row + c, w - c));
          if (sq) v = vdd_mul(v, v);
          vdd_store(accd + c, vdd_add(vdd_load(accd + c), v));
        }
      }
      for (int64_t c = 0; c < w; c += VW) vf_storen((float*)out + c0 + c, vdd_to(vdd_load(accd + c)), w - c);
    } else if (op == PL_R_MAX || op == PL_R_MIN) {
      bool is_max = op == PL_R_MAX;
      for (int64_t c = 0; c < w; c += VW) vf_store(accf + c, vf_set1(is_max ? -INFINITY : INFINITY));
      for (int64_t r = 0; r < R; r++) {
        const float* row = base + r * stride;
        for (int64_t c = 0; c < w; c += VW) {
          vf v = vf_loadn(row + c, w - c), a = vf_load(accf + c);
          vf_store(accf + c, is_max ? vf_jsmax(a, v) : vf_jsmin(a, v));
        }
      }
      for (int64_t c = 0; c < w; c += VW) vf_storen((float*)out + c0 + c, vf_load(accf + c), w - c);
    } else {
      /* per column, exactly ref's loop: best = x[0]; stop at a NaN best; take v when v beats best or is NaN */
      bool is_max = op == PL_R_ARGMAX;
      for (int64_t c = 0; c < w; c += VW) {
        vf_store(accf + c, R > 0 ? vf_loadn(base + c, w - c) : vf_zero());
        vi_store(acci + c, vi_set1(0));
      }
      for (int64_t r = 1; r < R; r++) {
        const float* row = base + r * stride;
        vi rv = vi_set1((int32_t)r);
        for (int64_t c = 0; c < w; c += VW) {
          vf v = vf_loadn(row + c, w - c), best = vf_load(accf + c);
          vm better = vm_or(is_max ? vf_gt(v, best) : vf_lt(v, best), vf_isnan(v));
          vm take = vm_andnot(vf_isnan(best), better);
          vf_store(accf + c, vf_select(take, v, best));
          vi_store(acci + c, vi_select(take, rv, vi_load(acci + c)));
        }
      }
      for (int64_t c = 0; c < w; c += VW) vi_storen((int32_t*)out + c0 + c, vi_load(acci + c), w - c);
    }
  }
}

/* ---- softmax ---------------------------------------------------------------------------------- */

/* max over a row, NaN if any element is NaN */
static float plv_row_max_nan(const float* p, int64_t C, const float* next) {
  vf m = vf_set1(-INFINITY);
  int64_t c = 0;
  for (; c + VW <= C; c += VW) {
    plv_prefetch(next, c);
    m = vf_max_nan(m, vf_load(p + c));
  }
  if (c < C) m = vf_max_nan(m, vf_loadn_fill(p + c, C - c, -INFINITY));
  return vf_hmax_nan(m);
}

/* Σ e^(x − mx) over a row in double; also writes the exponentials to y when y is non-null. */
static double plv_row_sumexp(const float* p, int64_t C, float mx, float* y) {
  vf m = vf_set1(mx);
  vdd s = vdd_set1(0.0);
  int64_t c = 0;
  for (; c + VW <= C; c += VW) {
    vf e = v_exp(vf_sub(vf_load(p + c), m));
    if (y) vf_store(y + c, e);
    s = vdd_add(s, vdd_from(e));
  }
  if (c < C) {
    vf e = vf_select(vm_tail(C - c), v_exp(vf_sub(vf_loadn(p + c, C - c), m)), vf_zero());
    if (y) vf_storen(y + c, e, C - c);
    s = vdd_add(s, vdd_from(e));
  }
  return vdd_hsum(s);
}

static void k_softmax(const float* X, float* Y, int64_t rows, int64_t C, bool is_log) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = X + r * C; /* x, y are (rows, C) */
    float* yr = Y + r * C;
    float mx = plv_row_max_nan(xr, C, r + 1 < rows ? xr + C : NULL);
    if (is_log) {
      /* log softmax = x − max − log Σ e^(x − max), in double like ref */
      double ls = log(plv_row_sumexp(xr, C, mx, NULL));
      vdd m = vdd_set1((double)mx), l = vdd_set1(ls);
      PLV_MAP1(C, xr, yr, vdd_to(vdd_sub(vdd_sub(vdd_from(x), m), l)));
    } else {
      double s = plv_row_sumexp(xr, C, mx, yr);
      vf inv = vf_set1((float)(1.0 / s));
      PLV_MAP1(C, yr, yr, vf_mul(x, inv));
    }
  }
}

static void k_softmax_backward(const float* Y, const float* DY, float* DX, int64_t rows, int64_t C, bool is_log) {
  for (int64_t r = 0; r < rows; r++) {
    const float* yr = Y + r * C; /* y, dy, dx are (rows, C) */
    const float* dyr = DY + r * C;
    float* dxr = DX + r * C;
    vdd acc = vdd_set1(0.0);
    bool more = r + 1 < rows;
    for (int64_t c = 0; c < C; c += VW) {
      if (more) { __builtin_prefetch(yr + C + c); __builtin_prefetch(dyr + C + c); }
      vdd g = vdd_from(vf_loadn(dyr + c, C - c));
      acc = vdd_add(acc, is_log ? g : vdd_mul(g, vdd_from(vf_loadn(yr + c, C - c))));
    }
    double s = vdd_hsum(acc);
    /* in the maps below x is an element of y and y one of dy */
    if (is_log) {
      /* dx = dy − e^y·Σdy */
      vf sv = vf_set1((float)s);
      PLV_MAP3(C, yr, dyr, dyr, dxr, vf_fnmadd(v_exp(x), sv, y));
    } else {
      /* dx = y·(dy − Σ dy·y), in double: dy − dot cancels when the row is nearly uniform */
      vdd d = vdd_set1(s);
      PLV_MAP3(C, yr, dyr, dyr, dxr, vdd_to(vdd_mul(vdd_from(x), vdd_sub(vdd_from(y), d))));
    }
  }
}

/* ---- layerNorm / rmsNorm ------------------------------------------------------------------------
 * Statistics in double, and each output formed in double from the float inputs as ref does, so
 * large row means cost no accuracy. */

static void k_layernorm(const float* X, const float* W, const float* Bv, float* OUT, float* MEAN, float* RSTD,
                        int64_t rows, int64_t C, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = X + r * C; /* x, out are (rows, C) */
    double m = plv_row_sum_next(xr, C, false, r + 1 < rows ? xr + C : NULL) / (double)C;
    vdd md = vdd_set1(m), acc = vdd_set1(0.0);
    for (int64_t c = 0; c < C; c += VW) {
      vdd d = vdd_sub(vdd_from(vf_loadn(xr + c, C - c)), md);
      /* the missing lanes of a partial vector hold 0 − m: drop them */
      if (c + VW > C) d = vdd_mul(d, vdd_from(vf_select(vm_tail(C - c), vf_set1(1.0f), vf_zero())));
      acc = vdd_add(acc, vdd_mul(d, d));
    }
    double var = vdd_hsum(acc) / (double)C;
    double s = 1.0 / sqrt(var + eps);
    vdd sd = vdd_set1(s), one = vdd_set1(1.0), zero = vdd_set1(0.0);
    /* x, y, g below are elements of x, w, b (x stands in for a missing w or b) */
    PLV_MAP3(C, xr, W ? W : xr, Bv ? Bv : xr, OUT + r * C, ({
      vdd n_ = vdd_mul(vdd_sub(vdd_from(x), md), sd);
      vdd_to(vdd_add(vdd_mul(n_, W ? vdd_from(y) : one), Bv ? vdd_from(g) : zero));
    }));
    MEAN[r] = (float)m;
    RSTD[r] = (float)s;
  }
}

/* The sums over rows for dw and db are formed in float32 over blocks of PLV_NORM_BLOCK rows (in
 * scratch, a row of C floats each) and added to the double accumulators once per block: a quarter
 * of the memory traffic of accumulating every row in double, with an error bounded by the block
 * length rather than the row count. */
#define PLV_NORM_BLOCK 16

static inline void plv_acc_rowf(float* acc, vf v, int64_t k) {
  if (k >= VW) vf_store(acc, vf_add(vf_load(acc), v));
  else vf_storen(acc, vf_add(vf_loadn(acc, k), v), k);
}

static void plv_flush_block(double* acc, float* blk, int64_t C) {
  for (int64_t c = 0; c < C; c += VW) {
    if (C - c >= VW) {
      vdd_store(acc + c, vdd_add(vdd_load(acc + c), vdd_from(vf_load(blk + c))));
    } else {
      for (int64_t j = c; j < C; j++) acc[j] += (double)blk[j];
    }
  }
  memset(blk, 0, (size_t)C * sizeof(float));
}

/* With n = (x − mean)·rstd and dn = dy·w: dx = rstd·(dn − mean(dn) − n·mean(dn·n)).
 * mean and rstd are the saved float32 values, so x − mean is exact or rounded once and the
 * elementwise terms are float32 to an ulp or two each; the row means are formed in double.
 * scratch: 2C floats when dw_acc or db_acc is non-null. */
static void k_layernorm_backward(const float* X, const float* W, const float* MEAN, const float* RSTD, const float* DY,
                                 float* DX, double* dw_acc, double* db_acc, float* scratch, int64_t rows, int64_t C) {
  float* dwb = scratch;
  float* dbb = scratch + C;
  if (dw_acc) memset(dwb, 0, (size_t)C * sizeof(float));
  if (db_acc) memset(dbb, 0, (size_t)C * sizeof(float));
  for (int64_t r = 0; r < rows; r++) {
    const float* x = X + r * C; /* x, dy, dx are (rows, C) */
    const float* dy = DY + r * C;
    float* dx = DX + r * C;
    const vf m = vf_set1(MEAN[r]), s = vf_set1(RSTD[r]), one = vf_set1(1.0f);
    vdd s_dn = vdd_set1(0.0), s_dnn = vdd_set1(0.0);
    for (int64_t c = 0; c < C; c += VW) {
      int64_t k = C - c;
      vf n = vf_mul(vf_sub(vf_loadn(x + c, k), m), s);
      vf dn = vf_mul(vf_loadn(dy + c, k), W ? vf_loadn(W + c, k) : one); /* 0 in missing lanes */
      s_dn = vdd_add(s_dn, vdd_from(dn));
      s_dnn = vdd_add(s_dnn, vdd_from(vf_mul(dn, n)));
    }
    const vf dn_mean = vf_set1((float)(vdd_hsum(s_dn) / (double)C));
    const vf dnn_mean = vf_set1((float)(vdd_hsum(s_dnn) / (double)C));
    for (int64_t c = 0; c < C; c += VW) {
      int64_t k = C - c;
      if (r + 1 < rows) { __builtin_prefetch(x + C + c); __builtin_prefetch(dy + C + c); } /* see plv_prefetch */
      vf g = vf_loadn(dy + c, k);
      vf n = vf_mul(vf_sub(vf_loadn(x + c, k), m), s);
      vf dn = vf_mul(g, W ? vf_loadn(W + c, k) : one);
      vf_storen(dx + c, vf_mul(s, vf_fnmadd(n, dnn_mean, vf_sub(dn, dn_mean))), k);
      if (dw_acc) plv_acc_rowf(dwb + c, vf_mul(g, n), k);
      if (db_acc) plv_acc_rowf(dbb + c, g, k);
    }
    if ((r + 1) % PLV_NORM_BLOCK == 0 || r + 1 == rows) {
      if (dw_acc) plv_flush_block(dw_acc, dwb, C);
      if (db_acc) plv_flush_block(db_acc, dbb, C);
    }
  }
}

static void k_rmsnorm(const float* X, const float* W, float* OUT, float* RSTD, int64_t rows, int64_t C, double eps) {
  const vdd one = vdd_set1(1.0);
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = X + r * C; /* x, out are (rows, C) */
    double s = 1.0 / sqrt(plv_row_sum_next(xr, C, true, r + 1 < rows ? xr + C : NULL) / (double)C + eps);
    vdd sd = vdd_set1(s);
    PLV_MAP3(C, xr, W ? W : xr, xr, OUT + r * C, vdd_to(vdd_mul(vdd_mul(vdd_from(x), sd), W ? vdd_from(y) : one)));
    RSTD[r] = (float)s;
  }
}

/* With n = x·rstd and dn = dy·w: dx = rstd·(dn − n·mean(dn·n)), as for layerNorm (scratch: C
 * floats when dw_acc is non-null). */
static void k_rmsnorm_backward(const float* X, const float* W, const float* RSTD, const float* DY, float* DX,
                               double* dw_acc, float* scratch, int64_t rows, int64_t C) {
  if (dw_acc) memset(scratch, 0, (size_t)C * sizeof(float));
  for (int64_t r = 0; r < rows; r++) {
    const float* x = X + r * C; /* x, dy, dx are (rows, C) */
    const float* dy = DY + r * C;
    float* dx = DX + r * C;
    const vf s = vf_set1(RSTD[r]), one = vf_set1(1.0f);
    vdd acc = vdd_set1(0.0);
    for (int64_t c = 0; c < C; c += VW) {
      int64_t k = C - c;
      vf dn = vf_mul(vf_loadn(dy + c, k), W ? vf_loadn(W + c, k) : one);
      acc = vdd_add(acc, vdd_from(vf_mul(dn, vf_mul(vf_loadn(x + c, k), s))));
    }
    const vf dnn_mean = vf_set1((float)(vdd_hsum(acc) / (double)C));
    for (int64_t c = 0; c < C; c += VW) {
      int64_t k = C - c;
      if (r + 1 < rows) { __builtin_prefetch(x + C + c); __builtin_prefetch(dy + C + c); }
      vf g = vf_loadn(dy + c, k);
      vf n = vf_mul(vf_loadn(x + c, k), s);
      vf dn = vf_mul(g, W ? vf_loadn(W + c, k) : one);
      vf_storen(dx + c, vf_mul(s, vf_fnmadd(n, dnn_mean, dn)), k);
      if (dw_acc) plv_acc_rowf(scratch + c, vf_mul(g, n), k);
    }
    if (dw_acc && ((r + 1) % PLV_NORM_BLOCK == 0 || r + 1 == rows)) plv_flush_block(dw_acc, scratch, C);
  }
}

/* ---- cross-entropy ------------------------------------------------------------------------------
 * One pass over each row of logits: chunks small enough to stay in L1 are read for their max, then
 * for Σ e^(x − chunk max) and Σ x; the running sum is rescaled when the max grows (online softmax). */
#define PLV_CE_CHUNK 2048

static void k_cross_entropy(const float* LOGITS, const int32_t* T, float* LOSS, float* LSE, int64_t rows, int64_t V,
                            int64_t ignore, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* x = LOGITS + r * V; /* logits is (rows, V) */
    double M = -INFINITY, S = 0.0;
    bool nan = false;
    vdd sx = vdd_set1(0.0);
    for (int64_t c0 = 0; c0 < V; c0 += PLV_CE_CHUNK) {
      int64_t len = V - c0 < PLV_CE_CHUNK ? V - c0 : PLV_CE_CHUNK;
      const float* p = x + c0;
      vf mv = vf_set1(-INFINITY);
      const float* next = r + 1 < rows || c0 + len < V ? p + len : NULL; /* rows are contiguous */
      int64_t c = 0;
      for (; c + VW <= len; c += VW) {
        plv_prefetch(next, c);
        vf v = vf_load(p + c);
        mv = vf_max_nan(mv, v);
        sx = vdd_add(sx, vdd_from(v));
      }
      if (c < len) {
        vf v = vf_loadn(p + c, len - c);
        mv = vf_max_nan(mv, vf_select(vm_tail(len - c), v, vf_set1(-INFINITY)));
        sx = vdd_add(sx, vdd_from(v));
      }
      float mc = vf_hmax_nan(mv);
      if (mc != mc) { nan = true; continue; }
      if (mc == -INFINITY) continue; /* every e^x is 0 here */
      double sc = plv_row_sumexp(p, len, mc, NULL);
      if (mc > M) {
        S = S * exp(M - mc) + sc;
        M = mc;
      } else {
        S += sc * exp(mc - M);
      }
    }
    /* as ref: NaN anywhere, or a row of −Inf (e^(−Inf − −Inf) is NaN), gives NaN */
    double l = nan || (V > 0 && M == -INFINITY) ? NAN : M + log(S);
    if (V == 0) l = -INFINITY;
    LSE[r] = (float)l;
    int32_t t = T[r];
    LOSS[r] = t == ignore ? 0.0f : (float)(l - (1.0 - eps) * (double)x[t] - (eps / (double)V) * vdd_hsum(sx));
  }
}

static void k_cross_entropy_backward(const float* LOGITS, const int32_t* T, const float* LSE, const float* DLOSS,
                                     float* DLOGITS, int64_t rows, int64_t V, int64_t ignore, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = LOGITS + r * V; /* logits, dlogits are (rows, V) */
    float* dr = DLOGITS + r * V;
    int32_t t = T[r];
    if (t == ignore) {
      memset(dr, 0, (size_t)V * sizeof(float));
      continue;
    }
    double dl = (double)DLOSS[r], eps_v = eps / (double)V;
    vf l = vf_set1(LSE[r]);
    if (eps == 0.0) {
      vf dlf = vf_set1((float)dl);
      PLV_MAP1(V, xr, dr, vf_mul(v_exp(vf_sub(x, l)), dlf));
    } else {
      vdd ed = vdd_set1(eps_v), dld = vdd_set1(dl);
      PLV_MAP1(V, xr, dr, vdd_to(vdd_mul(vdd_sub(vdd_from(v_exp(vf_sub(x, l))), ed), dld)));
    }
    /* the target's entry p − (1 − ε) cancels when p → 1: redo it in double */
    dr[t] = (float)(dl * (exp((double)xr[t] - (double)LSE[r]) - (1.0 - eps) - eps_v));
  }
}

/* ---- swiglu -------------------------------------------------------------------------------------- */

static void k_swiglu(const float* G, const float* U, float* O, int64_t n) {
  PLV_MAP3(n, G, U, U, O, vf_mul(v_silu(x), y));
}

/* s = σ(g): dgate = dy·u·s·(1 + g·(1 − s)), dup = dy·g·s */
static void k_swiglu_backward(const float* G, const float* U, const float* DY, float* DG, float* DU, int64_t n) {
  int64_t i = 0;
  for (; i < n; i += VW) {
    int64_t k = n - i;
    vf g = vf_loadn(G + i, k), u = vf_loadn(U + i, k), dy = vf_loadn(DY + i, k);
    vf om;
    vf s = v_sigmoid2(g, &om);
    vf dys = vf_mul(dy, s);
    vf_storen(DG + i, vf_mul(vf_mul(dys, u), vf_fmadd(g, om, vf_set1(1.0f))), k);
    vf_storen(DU + i, vf_mul(dys, g), k);
  }
}

/* ---- rope ---------------------------------------------------------------------------------------- */

static void k_rope(const float* X, const float* COS, const float* SIN, float* OUT, int64_t T, int64_t G, int64_t D,
                   int64_t begin, int64_t end, bool inverse) {
  int64_t half = D / 2;
  for (int64_t i = begin; i < end; i++) {
    int64_t t = i % T;
    const float* cs = COS + t * half; /* cos, sin are (T, D/2) */
    const float* sn = SIN + t * half;
    for (int64_t g = 0; g < G; g++) {
      const float* x = X + (i * G + g) * D; /* x, out are (N·T, G, D) */
      float* o = OUT + (i * G + g) * D;
      for (int64_t j = 0; j < half; j += VW) {
        int64_t k = half - j;
        /* products of two floats are exact in double: one rounding, as ref */
        vdd x1 = vdd_from(vf_loadn(x + j, k)), x2 = vdd_from(vf_loadn(x + half + j, k));
        vdd c = vdd_from(vf_loadn(cs + j, k));
        vf sf = vf_loadn(sn + j, k);
        vdd s = vdd_from(inverse ? vf_neg(sf) : sf);
        vf o1 = vdd_to(vdd_sub(vdd_mul(x1, c), vdd_mul(x2, s)));
        vf o2 = vdd_to(vdd_add(vdd_mul(x2, c), vdd_mul(x1, s)));
        vf_storen(o + j, o1, k);
        vf_storen(o + half + j, o2, k);
      }
    }
  }
}

/* ---- dropout ------------------------------------------------------------------------------------- */

static inline vi plv_mix32(vi x) {
  x = vi_xor(x, vi_srli(x, 16));
  x = vi_mullo(x, vi_set1(0x7feb352d));
  x = vi_xor(x, vi_srli(x, 15));
  x = vi_mullo(x, vi_set1((int32_t)0x846ca68bu));
  return vi_xor(x, vi_srli(x, 16));
}

static void k_dropout(float* out, int64_t n, uint32_t threshold, float scale, uint32_t key, uint32_t counter0) {
  const vi k = vi_set1((int32_t)key), thr = vi_set1((int32_t)threshold);
  const vf keep = vf_set1(scale);
  for (int64_t i = 0; i < n; i += VW) {
    vi ctr = vi_add(vi_set1((int32_t)(counter0 + (uint32_t)i)), vi_iota());
    vi w = plv_mix32(vi_add(plv_mix32(vi_xor(ctr, k)), k));
    /* both sides are < 2^25, so the signed compare is the unsigned one */
    vm drop = vi_gt(thr, vi_srli(w, 8));
    vf_storen(out + i, vf_select(drop, vf_zero(), keep), n - i);
  }
}

/* ---- adamw --------------------------------------------------------------------------------------- */

static void k_adamw(float* P, const float* G, float* M, float* V, int64_t n, const pl_adamw_consts* c) {
  const vf decay = vf_set1(c->decay), b1 = vf_set1(c->beta1), omb1 = vf_set1(c->one_minus_beta1);
  const vf b2 = vf_set1(c->beta2), omb2 = vf_set1(c->one_minus_beta2), step = vf_set1(c->step_size);
  const vf ibc2 = vf_set1(c->inv_sqrt_bc2), eps = vf_set1(c->eps);
  for (int64_t i = 0; i < n; i += VW) {
    int64_t k = n - i;
    vf g = vf_loadn(G + i, k);
    vf m = vf_fmadd(b1, vf_loadn(M + i, k), vf_mul(omb1, g));
    vf v = vf_fmadd(b2, vf_loadn(V + i, k), vf_mul(vf_mul(omb2, g), g));
    vf denom = vf_fmadd(vf_sqrt(v), ibc2, eps);
    vf p = vf_mul(vf_loadn(P + i, k), decay);
    p = vf_fnmadd(step, vf_div(m, denom), p);
    vf_storen(M + i, m, k);
    vf_storen(V + i, v, k);
    vf_storen(P + i, p, k);
  }
}

static void k_add_inplace(float* D, const float* S, int64_t n) { PLV_MAP3(n, D, S, S, D, vf_add(x, y)); }

const pl_vk PLV_TABLE = {
  PLV_NAME,
  k_unary, k_unary_backward, k_binary, k_cast, k_reduce_rows, plv_row_sum, k_reduce_cols,
  k_softmax, k_softmax_backward, k_layernorm, k_layernorm_backward, k_rmsnorm, k_rmsnorm_backward,
  k_cross_entropy, k_cross_entropy_backward, k_swiglu, k_swiglu_backward, k_rope, k_dropout, k_adamw,
  k_add_inplace,
};
