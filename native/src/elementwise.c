/* Elementwise kernels behind Node-API: fill, copyStrided, cast, unary, unaryBackward, binary,
 * where, reduce. Each validates its arguments, then splits the work over the thread pool and runs
 * the vectorised bodies of veckernels.h (through the pl_vk table) on contiguous ranges. */
#include "plinth.h"
#include "vk.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Work per chunk before a second thread pays off: waking a worker costs a few microseconds, so a
 * chunk should be worth ~10 µs. Memory-bound ops move ~64K elements in that time, ops with a
 * transcendental function ~8K. */
#define GRAIN_MOVE 65536
#define GRAIN_MATH 8192

/* ---- argument helpers ------------------------------------------------------------------------- */

typedef struct {
  void* data;
  size_t len;
  size_t es;
  napi_typedarray_type type;
} any_array;

static bool get_any(pl_args* a, size_t i, any_array* out) {
  bool is_ta = false;
  napi_is_typedarray(a->env, a->argv[i], &is_ta);
  if (!is_ta) return pl_fail(a, "argument %zu must be a typed array", i);
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(a->env, a->argv[i], &out->type, &out->len, &out->data, &ab, &off);
  switch (out->type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: out->es = 1; break;
    case napi_int16_array: case napi_uint16_array: out->es = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: out->es = 4; break;
    case napi_float64_array: out->es = 8; break;
    default: return pl_fail(a, "argument %zu has an unsupported element type", i);
  }
  return true;
}

/* shape and strides of equal length; *total = Π shape; *extent = 1 + the largest offset the strides
 * reach (0 when the shape is empty of elements). Fails on overflow. */
static bool get_shape(pl_args* a, size_t ishape, int64_t* shape, size_t* nd, int64_t* total) {
  if (!pl_int_array(a, ishape, shape, nd)) return false;
  int64_t t = 1;
  for (size_t j = 0; j < *nd; j++)
    if (__builtin_mul_overflow(t, shape[j], &t)) return pl_fail(a, "shape is too large");
  *total = t;
  return true;
}

static bool get_strides(pl_args* a, size_t i, const char* what, const int64_t* shape, size_t nd, int64_t total,
                        size_t len, int64_t* strides) {
  size_t ns;
  if (!pl_int_array(a, i, strides, &ns)) return false;
  if (ns != nd) return pl_fail(a, "%s has %zu strides for a shape of %zu dims", what, ns, nd);
  if (total == 0) return true;
  int64_t ext = 1;
  for (size_t j = 0; j < nd; j++) {
    int64_t t;
    if (__builtin_mul_overflow(shape[j] - 1, strides[j], &t) || __builtin_add_overflow(ext, t, &ext))
      return pl_fail(a, "%s strides reach too far", what);
  }
  return pl_need(a, what, len, ext);
}

/* ---- strided iteration ------------------------------------------------------------------------
 * Operands are walked over a shape with one stride list each. Dims of size 1 are dropped and
 * neighbouring dims merged when every operand steps through them as one (stride[j] =
 * stride[j+1]·shape[j+1]), so a contiguous tensor becomes one long dim and a bias add two. */
#define MAX_OPS 3

typedef struct {
  int nd, nops;
  int64_t shape[16];
  int64_t stride[MAX_OPS][16];
} walk;

static void walk_init(walk* w, const int64_t* shape, size_t nd, int nops, const int64_t* const* strides) {
  w->nd = 0;
  w->nops = nops;
  for (size_t j = 0; j < nd; j++) {
    if (shape[j] == 1) continue;
    int k = w->nd;
    bool merge = k > 0;
    for (int s = 0; s < nops && merge; s++) merge = w->stride[s][k - 1] == strides[s][j] * shape[j];
    if (merge) {
      w->shape[k - 1] *= shape[j];
      for (int s = 0; s < nops; s++) w->stride[s][k - 1] = strides[s][j];
    } else {
      w->shape[k] = shape[j];
      for (int s = 0; s < nops; s++) w->stride[s][k] = strides[s][j];
      w->nd++;
    }
  }
}

/* Offsets of row `row` (a flat index over all dims but the last) for each operand. */
static void walk_offsets(const walk* w, int64_t row, int64_t* off) {
  for (int s = 0; s < w->nops; s++) off[s] = 0;
  for (int j = w->nd - 2; j >= 0; j--) {
    int64_t i = row % w->shape[j];
    row /= w->shape[j];
    for (int s = 0; s < w->nops; s++) off[s] += i * w->stride[s][j];
  }
}

/* Advances the per-dim counters of the dims before the last by one row. */
static void walk_next(const walk* w, int64_t* idx, int64_t* off) {
  for (int j = w->nd - 2; j >= 0; j--) {
    idx[j]++;
    for (int s = 0; s < w->nops; s++) off[s] += w->stride[s][j];
    if (idx[j] < w->shape[j]) return;
    for (int s = 0; s < w->nops; s++) off[s] -= idx[j] * w->stride[s][j];
    idx[j] = 0;
  }
}

static void walk_index(const walk* w, int64_t row, int64_t* idx) {
  for (int j = w->nd - 2; j >= 0; j--) {
    idx[j] = row % w->shape[j];
    row /= w->shape[j];
  }
}

/* ---- fill ------------------------------------------------------------------------------------- */

typedef struct {
  uint8_t* out;
  size_t es;
  uint64_t pattern;
} fill_job;

static void fill_range(void* ctx, int64_t b, int64_t e, int thread) {
  fill_job* j = (fill_job*)ctx;
  switch (j->es) {
    case 1: memset(j->out + b, (int)j->pattern, (size_t)(e - b)); break;
    case 2: { uint16_t v = (uint16_t)j->pattern, *o = (uint16_t*)j->out; for (int64_t i = b; i < e; i++) o[i] = v; break; }
    case 4: { uint32_t v = (uint32_t)j->pattern, *o = (uint32_t*)j->out; for (int64_t i = b; i < e; i++) o[i] = v; break; }
    default: { uint64_t v = j->pattern, *o = (uint64_t*)j->out; for (int64_t i = b; i < e; i++) o[i] = v; break; }
  }
}

/* fill(out, value, n): the stored bits are what a JS store of `value` into that array writes. */
static napi_value js_fill(napi_env env, napi_callback_info info) {
  pl_args a;
  any_array out;
  double value;
  int64_t n;
  if (!pl_args_init(env, info, "fill", 3, &a) || !get_any(&a, 0, &out) || !pl_double(&a, 1, &value) ||
      !pl_int(&a, 2, &n) || !pl_need(&a, "out", out.len, n))
    return NULL;
  fill_job j = {(uint8_t*)out.data, out.es, 0};
  if (out.type == napi_float32_array) {
    float f = (float)value;
    uint32_t u;
    memcpy(&u, &f, 4);
    j.pattern = u;
  } else if (out.type == napi_float64_array) {
    memcpy(&j.pattern, &value, 8);
  } else if (out.type == napi_uint8_clamped_array) {
    j.pattern = !(value > 0) ? 0 : value >= 255 ? 255 : (uint64_t)nearbyint(value);
  } else {
    /* every integer store is ToInt32 truncated to the element width */
    j.pattern = (uint32_t)pl_js_to_int32(value);
  }
  pl_parallel_for(n, GRAIN_MOVE, fill_range, &j);
  return NULL;
}

/* ---- copyStrided ------------------------------------------------------------------------------ */

typedef struct {
  const uint8_t* src;
  uint8_t* dst;
  size_t es;
  walk w;
  int64_t inner; /* elements per row (the last merged dim) */
} copy_job;

static inline void copy_elems(uint8_t* d, const uint8_t* s, int64_t n, int64_t stride, size_t es) {
  if (stride == 1) {
    memcpy(d, s, (size_t)n * es);
    return;
  }
  switch (es) {
    case 1: for (int64_t i = 0; i < n; i++) d[i] = s[i * stride]; break;
    case 2: for (int64_t i = 0; i < n; i++) ((uint16_t*)d)[i] = ((const uint16_t*)s)[i * stride]; break;
    case 4: for (int64_t i = 0; i < n; i++) ((uint32_t*)d)[i] = ((const uint32_t*)s)[i * stride]; break;
    default: for (int64_t i = 0; i < n; i++) ((uint64_t*)d)[i] = ((const uint64_t*)s)[i * stride]; break;
  }
}

/* rows [b, e): each row is `inner` elements of the last dim */
static void copy_rows(void* ctx, int64_t b, int64_t e, int thread) {
  copy_job* j = (copy_job*)ctx;
  const walk* w = &j->w;
  int64_t idx[16], off;
  walk_index(w, b, idx);
  walk_offsets(w, b, &off);
  int64_t sl = w->stride[0][w->nd - 1];
  for (int64_t r = b; r < e; r++) {
    copy_elems(j->dst + (size_t)(r * j->inner) * j->es, j->src + (size_t)off * j->es, j->inner, sl, j->es);
    walk_next(w, idx, &off);
  }
}

/* One contiguous run split in flat chunks. */
static void copy_flat(void* ctx, int64_t b, int64_t e, int thread) {
  copy_job* j = (copy_job*)ctx;
  memcpy(j->dst + (size_t)b * j->es, j->src + (size_t)b * j->es, (size_t)(e - b) * j->es);
}

/* Transpose of the last two dims: dst[.., a, c] = src[off + a + c·sc] with A = shape[nd−2]
 * (stride 1 in src) and Cn = shape[nd−1]. Blocked so that the TILE source rows a tile touches
 * stay in L1 while the tile is written row by row. Work item = (batch, tile row). */
#define TILE 32
typedef struct {
  copy_job* cj;
  int64_t A, Cn, sc, tiles_a;
} transpose_job;

static void transpose_items(void* ctx, int64_t b, int64_t e, int thread) {
  transpose_job* t = (transpose_job*)ctx;
  copy_job* j = t->cj;
  size_t es = j->es;
  for (int64_t it = b; it < e; it++) {
    int64_t batch = it / t->tiles_a, a0 = (it % t->tiles_a) * TILE;
    int64_t a1 = a0 + TILE < t->A ? a0 + TILE : t->A;
    int64_t off = 0, rem = batch;
    for (int k = j->w.nd - 3; k >= 0; k--) {
      off += (rem % j->w.shape[k]) * j->w.stride[0][k];
      rem /= j->w.shape[k];
    }
    const uint8_t* s = j->src + (size_t)off * es;
    uint8_t* d = j->dst + (size_t)(batch * t->A * t->Cn) * es;
    for (int64_t c0 = 0; c0 < t->Cn; c0 += TILE) {
      int64_t c1 = c0 + TILE < t->Cn ? c0 + TILE : t->Cn;
      for (int64_t a = a0; a < a1; a++) copy_elems(d + (size_t)(a * t->Cn + c0) * es, s + (size_t)(a + c0 * t->sc) * es, c1 - c0, t->sc, es);
    }
  }
}

/* copyStrided(src, dst, shape, srcStrides) */
static napi_value js_copy_strided(napi_env env, napi_callback_info info) {
  pl_args a;
  any_array src, dst;
  int64_t shape[16], strides[16], total = 0;
  size_t nd;
  if (!pl_args_init(env, info, "copyStrided", 4, &a) || !get_any(&a, 0, &src) || !get_any(&a, 1, &dst) ||
      !get_shape(&a, 2, shape, &nd, &total) || !get_strides(&a, 3, "src", shape, nd, total, src.len, strides) ||
      !pl_need(&a, "dst", dst.len, total))
    return NULL;
  if (src.type != dst.type) {
    pl_fail(&a, "src and dst must have the same element type");
    return NULL;
  }
  if (total == 0) return NULL;
  const int64_t* sp[1] = {strides};
  copy_job j = {(const uint8_t*)src.data, (uint8_t*)dst.data, src.es, {0}, 1};
  walk_init(&j.w, shape, nd, 1, sp);
  if (j.w.nd == 0) {
    memcpy(j.dst, j.src, j.es);
    return NULL;
  }
  int nd2 = j.w.nd;
  j.inner = j.w.shape[nd2 - 1];
  int64_t sl = j.w.stride[0][nd2 - 1];
  if (nd2 == 1 && sl == 1) {
    pl_parallel_for(total, GRAIN_MOVE, copy_flat, &j);
  } else if (nd2 >= 2 && j.w.stride[0][nd2 - 2] == 1 && sl > 1 && j.w.shape[nd2 - 2] >= 8 && j.inner >= 8) {
    transpose_job t = {&j, j.w.shape[nd2 - 2], j.inner, sl, (j.w.shape[nd2 - 2] + TILE - 1) / TILE};
    int64_t items = (total / (t.A * t.Cn)) * t.tiles_a;
    pl_parallel_for(items, (GRAIN_MOVE + TILE * t.Cn - 1) / (TILE * t.Cn), transpose_items, &t);
  } else {
    int64_t rows = total / j.inner;
    pl_parallel_for(rows, (GRAIN_MOVE + j.inner - 1) / j.inner, copy_rows, &j);
  }
  return NULL;
}

/* ---- cast ------------------------------------------------------------------------------------- */

enum { DT_F32, DT_F64, DT_I32, DT_F16, DT_BF16, DT_U8, DT_COUNT };
static const char* const dtype_names[DT_COUNT] = {"f32", "f64", "i32", "f16", "bf16", "u8"};
static const napi_typedarray_type dtype_arrays[DT_COUNT] = {napi_float32_array, napi_float64_array, napi_int32_array,
                                                           napi_uint16_array, napi_uint16_array, napi_uint8_array};

static bool get_dtype(pl_args* a, size_t i, int* dt) {
  char buf[8];
  if (!pl_string(a, i, buf, sizeof buf)) return false;
  for (int k = 0; k < DT_COUNT; k++)
    if (strcmp(buf, dtype_names[k]) == 0) { *dt = k; return true; }
  return pl_fail(a, "unknown dtype '%s'", buf);
}

typedef struct {
  const void* src;
  void* dst;
  int from, to, conv;
  size_t ses, des;
  const pl_vk* vk;
} cast_job;

static double read_as_double(const void* p, int dt, int64_t i) {
  switch (dt) {
    case DT_F32: return ((const float*)p)[i];
    case DT_F64: return ((const double*)p)[i];
    case DT_I32: return ((const int32_t*)p)[i];
    case DT_F16: return pl_double_from_half(((const uint16_t*)p)[i], false);
    case DT_BF16: return pl_double_from_half(((const uint16_t*)p)[i], true);
    default: return ((const uint8_t*)p)[i];
  }
}

/* The exact path for every pair: read the element as a double (exact for every dtype), write it
 * with the target's rounding, as ref does. f32 sources never reach the half targets here. */
static void cast_range(void* ctx, int64_t b, int64_t e, int thread) {
  cast_job* j = (cast_job*)ctx;
  if (j->conv >= 0) {
    int64_t m = b + pl_align_head((uint8_t*)j->dst + (size_t)b * j->des, j->des, e - b);
    if (m > b) j->vk->cast(j->conv, (const uint8_t*)j->src + (size_t)b * j->ses, (uint8_t*)j->dst + (size_t)b * j->des, m - b);
    j->vk->cast(j->conv, (const uint8_t*)j->src + (size_t)m * j->ses, (uint8_t*)j->dst + (size_t)m * j->des, e - m);
    return;
  }
  if (j->from == j->to && j->from == DT_F32) {
    /* a JS read then store of a float32 goes through double, which quiets signalling NaNs */
    const uint32_t* s = (const uint32_t*)j->src;
    uint32_t* d = (uint32_t*)j->dst;
    for (int64_t i = b; i < e; i++) d[i] = (s[i] & 0x7fffffff) > 0x7f800000 ? s[i] | 0x00400000 : s[i];
    return;
  }
  if (j->from == j->to && j->from != DT_F16 && j->from != DT_BF16) {
    memcpy((uint8_t*)j->dst + (size_t)b * j->des, (const uint8_t*)j->src + (size_t)b * j->ses, (size_t)(e - b) * j->des);
    return;
  }
  for (int64_t i = b; i < e; i++) {
    double x = read_as_double(j->src, j->from, i);
    switch (j->to) {
      case DT_F32: ((float*)j->dst)[i] = (float)x; break;
      case DT_F64: ((double*)j->dst)[i] = x; break;
      case DT_I32: ((int32_t*)j->dst)[i] = pl_js_to_int32(x); break;
      case DT_F16: ((uint16_t*)j->dst)[i] = pl_half_from_double(x, false); break;
      case DT_BF16: ((uint16_t*)j->dst)[i] = pl_half_from_double(x, true); break;
      default: ((uint8_t*)j->dst)[i] = (uint8_t)pl_js_to_int32(x); break;
    }
  }
}

/* cast(src, from, dst, to, n) */
static napi_value js_cast(napi_env env, napi_callback_info info) {
  pl_args a;
  any_array src, dst;
  int from = 0, to = 0;
  int64_t n;
  if (!pl_args_init(env, info, "cast", 5, &a) || !get_any(&a, 0, &src) || !get_dtype(&a, 1, &from) ||
      !get_any(&a, 2, &dst) || !get_dtype(&a, 3, &to) || !pl_int(&a, 4, &n) || !pl_need(&a, "src", src.len, n) ||
      !pl_need(&a, "dst", dst.len, n))
    return NULL;
  if (src.type != dtype_arrays[from] || dst.type != dtype_arrays[to]) {
    pl_fail(&a, "the arrays do not hold %s and %s elements", dtype_names[from], dtype_names[to]);
    return NULL;
  }
  int conv = -1;
  if (from == DT_F32 && to == DT_BF16) conv = PL_C_F32_BF16;
  else if (from == DT_F32 && to == DT_F16) conv = PL_C_F32_F16;
  else if (from == DT_BF16 && to == DT_F32) conv = PL_C_BF16_F32;
  else if (from == DT_F16 && to == DT_F32) conv = PL_C_F16_F32;
  else if (from == DT_F32 && to == DT_I32) conv = PL_C_F32_I32;
  else if (from == DT_F32 && to == DT_U8) conv = PL_C_F32_U8;
  else if (from == DT_I32 && to == DT_F32) conv = PL_C_I32_F32;
  else if (from == DT_U8 && to == DT_F32) conv = PL_C_U8_F32;
  cast_job j = {src.data, dst.data, from, to, conv, src.es, dst.es, pl_vk_best()};
  pl_parallel_for(n, GRAIN_MOVE, cast_range, &j);
  return NULL;
}

/* ---- unary ------------------------------------------------------------------------------------ */

static const char* const unary_names[PL_U_COUNT] = {
  "neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "gelu_tanh", "gelu_erf", "silu",
  "powScalar", "addScalar", "mulScalar", "clamp", "sign", "square", "reciprocal", "sin", "cos",
};
static const char* const binary_names[PL_B_COUNT] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                                     "eq", "ne", "lt", "le", "gt", "ge"};
static const char* const reduce_names[PL_R_COUNT] = {"sum", "sumSquares", "max", "min", "argmax", "argmin"};

static bool get_op(pl_args* a, size_t i, const char* const* names, int count, int* op) {
  char buf[16];
  if (!pl_string(a, i, buf, sizeof buf)) return false;
  for (int k = 0; k < count; k++)
    if (strcmp(buf, names[k]) == 0) { *op = k; return true; }
  return pl_fail(a, "unknown op '%s'", buf);
}

static bool unary_is_cheap(int op) {
  switch (op) {
    case PL_U_NEG: case PL_U_ABS: case PL_U_RELU: case PL_U_ADDS: case PL_U_MULS: case PL_U_CLAMP:
    case PL_U_SIGN: case PL_U_SQUARE: return true;
    default: return false;
  }
}

typedef struct {
  int op;
  const float *x, *y, *dy;
  float* out;
  double p0, p1;
  const pl_vk* vk;
} unary_job;

static void unary_range(void* ctx, int64_t b, int64_t e, int thread) {
  unary_job* j = (unary_job*)ctx;
  int64_t m = b + pl_align_head(j->out + b, 4, e - b);
  if (m > b) j->vk->unary(j->op, j->x + b, j->out + b, m - b, j->p0, j->p1);
  j->vk->unary(j->op, j->x + m, j->out + m, e - m, j->p0, j->p1);
}

static void unary_backward_range(void* ctx, int64_t b, int64_t e, int thread) {
  unary_job* j = (unary_job*)ctx;
  int64_t m = b + pl_align_head(j->out + b, 4, e - b);
  if (m > b) j->vk->unary_backward(j->op, j->x + b, j->y + b, j->dy + b, j->out + b, m - b, j->p0, j->p1);
  j->vk->unary_backward(j->op, j->x + m, j->y + m, j->dy + m, j->out + m, e - m, j->p0, j->p1);
}

/* unary(op, x, out, n, p0, p1) */
static napi_value js_unary(napi_env env, napi_callback_info info) {
  pl_args a;
  unary_job j = {0};
  float *x, *out;
  size_t lx, lo;
  int64_t n;
  if (!pl_args_init(env, info, "unary", 6, &a) || !get_op(&a, 0, unary_names, PL_U_COUNT, &j.op) ||
      !pl_f32(&a, 1, &x, &lx) || !pl_f32(&a, 2, &out, &lo) || !pl_int(&a, 3, &n) || !pl_double(&a, 4, &j.p0) ||
      !pl_double(&a, 5, &j.p1) || !pl_need(&a, "x", lx, n) || !pl_need(&a, "out", lo, n))
    return NULL;
  j.x = x;
  j.out = out;
  j.vk = pl_vk_best();
  pl_parallel_for(n, unary_is_cheap(j.op) ? GRAIN_MOVE : GRAIN_MATH, unary_range, &j);
  return NULL;
}

/* unaryBackward(op, x, y, dy, dx, n, p0, p1) */
static napi_value js_unary_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  unary_job j = {0};
  float *x, *y, *dy, *dx;
  size_t lx, ly, ldy, ldx;
  int64_t n;
  if (!pl_args_init(env, info, "unaryBackward", 8, &a) || !get_op(&a, 0, unary_names, PL_U_COUNT, &j.op) ||
      !pl_f32(&a, 1, &x, &lx) || !pl_f32(&a, 2, &y, &ly) || !pl_f32(&a, 3, &dy, &ldy) || !pl_f32(&a, 4, &dx, &ldx) ||
      !pl_int(&a, 5, &n) || !pl_double(&a, 6, &j.p0) || !pl_double(&a, 7, &j.p1) || !pl_need(&a, "x", lx, n) ||
      !pl_need(&a, "y", ly, n) || !pl_need(&a, "dy", ldy, n) || !pl_need(&a, "dx", ldx, n))
    return NULL;
  j.x = x;
  j.y = y;
  j.dy = dy;
  j.out = dx;
  j.vk = pl_vk_best();
  pl_parallel_for(n, unary_is_cheap(j.op) ? GRAIN_MOVE : GRAIN_MATH, unary_backward_range, &j);
  return NULL;
}

/* ---- binary and where ------------------------------------------------------------------------- */

typedef struct {
  int op;
  const float *a, *b;
  float* out;
  const void* cond;
  napi_typedarray_type ctype;
  walk w; /* operands: a, b (binary); cond, a, b (where) */
  int64_t inner;
  const pl_vk* vk;
} bin_job;

/* out[b, e) = a op b with the last-dim strides, the head up to an aligned out a call of its own */
static void binary_span(const bin_job* j, const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  int64_t h = pl_align_head(out, 4, n);
  if (h > 0) j->vk->binary(j->op, a, sa, b, sb, out, h);
  j->vk->binary(j->op, a + h * sa, sa, b + h * sb, sb, out + h, n - h);
}

/* a flat range of a single-row walk */
static void binary_flat(void* ctx, int64_t b, int64_t e, int thread) {
  bin_job* j = (bin_job*)ctx;
  int64_t sa = j->w.stride[0][j->w.nd - 1], sb = j->w.stride[1][j->w.nd - 1];
  binary_span(j, j->a + b * sa, sa, j->b + b * sb, sb, j->out + b, e - b);
}

static void binary_rows(void* ctx, int64_t b, int64_t e, int thread) {
  bin_job* j = (bin_job*)ctx;
  int64_t idx[16], off[2];
  walk_index(&j->w, b, idx);
  walk_offsets(&j->w, b, off);
  int64_t sa = j->w.stride[0][j->w.nd - 1], sb = j->w.stride[1][j->w.nd - 1];
  for (int64_t r = b; r < e; r++) {
    binary_span(j, j->a + off[0], sa, j->b + off[1], sb, j->out + r * j->inner, j->inner);
    walk_next(&j->w, idx, off);
  }
}

/* binary(op, a, aStrides, b, bStrides, out, shape) */
static napi_value js_binary(napi_env env, napi_callback_info info) {
  pl_args a;
  bin_job j = {0};
  float *A, *B, *out;
  size_t la, lb, lo, nd;
  int64_t shape[16], sa[16], sb[16], total = 0;
  if (!pl_args_init(env, info, "binary", 7, &a) || !get_op(&a, 0, binary_names, PL_B_COUNT, &j.op) ||
      !pl_f32(&a, 1, &A, &la) || !pl_f32(&a, 3, &B, &lb) || !pl_f32(&a, 5, &out, &lo) ||
      !get_shape(&a, 6, shape, &nd, &total) || !get_strides(&a, 2, "a", shape, nd, total, la, sa) ||
      !get_strides(&a, 4, "b", shape, nd, total, lb, sb) || !pl_need(&a, "out", lo, total))
    return NULL;
  if (total == 0) return NULL;
  const int64_t* sp[2] = {sa, sb};
  walk_init(&j.w, shape, nd, 2, sp);
  if (j.w.nd == 0) { /* a single element */
    j.w.nd = 1;
    j.w.shape[0] = 1;
    j.w.stride[0][0] = j.w.stride[1][0] = 0;
  }
  j.a = A;
  j.b = B;
  j.out = out;
  j.vk = pl_vk_best();
  j.inner = j.w.shape[j.w.nd - 1];
  int64_t grain = j.op == PL_B_POW ? GRAIN_MATH : GRAIN_MOVE;
  if (j.w.nd == 1) pl_parallel_for(total, grain, binary_flat, &j);
  else pl_parallel_for(total / j.inner, (grain + j.inner - 1) / j.inner, binary_rows, &j);
  return NULL;
}

/* all three contiguous (the common case, vectorised by the compiler) or any strides */
#define WHERE_LOOP(T)                                                                     \
  do {                                                                                    \
    const T* c = (const T*)j->cond + off[0];                                              \
    if (sc == 1 && sa == 1 && sb == 1)                                                    \
      for (int64_t i = 0; i < n; i++) o[i] = c[i] != 0 ? pa[i] : pb[i];                   \
    else                                                                                  \
      for (int64_t i = 0; i < n; i++) o[i] = c[i * sc] != 0 ? pa[i * sa] : pb[i * sb];     \
  } while (0)

static void where_rows(void* ctx, int64_t b, int64_t e, int thread) {
  bin_job* j = (bin_job*)ctx;
  int64_t idx[16], off[3];
  walk_index(&j->w, b, idx);
  walk_offsets(&j->w, b, off);
  int last = j->w.nd - 1;
  int64_t sc = j->w.stride[0][last], sa = j->w.stride[1][last], sb = j->w.stride[2][last], n = j->inner;
  for (int64_t r = b; r < e; r++) {
    const float *pa = j->a + off[1], *pb = j->b + off[2];
    float* o = j->out + r * n;
    /* cond != 0 on the stored values: NaN counts as true, −0 as false, as ref's `!== 0` */
    switch (j->ctype) {
      case napi_float32_array: WHERE_LOOP(float); break;
      case napi_float64_array: WHERE_LOOP(double); break;
      case napi_int32_array: case napi_uint32_array: WHERE_LOOP(uint32_t); break;
      case napi_int16_array: case napi_uint16_array: WHERE_LOOP(uint16_t); break;
      default: WHERE_LOOP(uint8_t); break;
    }
    walk_next(&j->w, idx, off);
  }
}

/* where(cond, cStrides, a, aStrides, b, bStrides, out, shape) */
static napi_value js_where(napi_env env, napi_callback_info info) {
  pl_args a;
  bin_job j = {0};
  any_array cond;
  float *A, *B, *out;
  size_t la, lb, lo, nd;
  int64_t shape[16], sc[16], sa[16], sb[16], total = 0;
  if (!pl_args_init(env, info, "where", 8, &a) || !get_any(&a, 0, &cond) || !pl_f32(&a, 2, &A, &la) ||
      !pl_f32(&a, 4, &B, &lb) || !pl_f32(&a, 6, &out, &lo) || !get_shape(&a, 7, shape, &nd, &total) ||
      !get_strides(&a, 1, "cond", shape, nd, total, cond.len, sc) || !get_strides(&a, 3, "a", shape, nd, total, la, sa) ||
      !get_strides(&a, 5, "b", shape, nd, total, lb, sb) || !pl_need(&a, "out", lo, total))
    return NULL;
  if (total == 0) return NULL;
  const int64_t* sp[3] = {sc, sa, sb};
  walk_init(&j.w, shape, nd, 3, sp);
  if (j.w.nd == 0) {
    j.w.nd = 1;
    j.w.shape[0] = 1;
    j.w.stride[0][0] = j.w.stride[1][0] = j.w.stride[2][0] = 0;
  }
  j.cond = cond.data;
  j.ctype = cond.type;
  j.a = A;
  j.b = B;
  j.out = out;
  j.inner = j.w.shape[j.w.nd - 1];
  pl_parallel_for(total / j.inner, (GRAIN_MOVE + j.inner - 1) / j.inner, where_rows, &j);
  return NULL;
}

/* ---- reduce ------------------------------------------------------------------------------------ */

typedef struct {
  int op;
  const float* x;
  void* out;
  int64_t outer, R, inner, cols_per_item, items_per_outer;
  const pl_vk* vk;
  /* one long row cut into parts of part_len, each reduced to its own partial */
  int64_t part_len;
  float* part_f;
  int32_t* part_i;
  double* part_d;
} reduce_job;

static void reduce_rows_range(void* ctx, int64_t b, int64_t e, int thread) {
  reduce_job* j = (reduce_job*)ctx;
  bool arg = j->op == PL_R_ARGMAX || j->op == PL_R_ARGMIN;
  void* o = arg ? (void*)((int32_t*)j->out + b) : (void*)((float*)j->out + b);
  j->vk->reduce_rows(j->op, j->x + b * j->R, e - b, j->R, o);
}

/* item = (o, column block) */
static void reduce_cols_range(void* ctx, int64_t b, int64_t e, int thread) {
  reduce_job* j = (reduce_job*)ctx;
  bool arg = j->op == PL_R_ARGMAX || j->op == PL_R_ARGMIN;
  for (int64_t it = b; it < e; it++) {
    int64_t o = it / j->items_per_outer, c0 = (it % j->items_per_outer) * j->cols_per_item;
    int64_t cw = j->inner - c0 < j->cols_per_item ? j->inner - c0 : j->cols_per_item;
    int64_t oo = o * j->inner + c0;
    void* out = arg ? (void*)((int32_t*)j->out + oo) : (void*)((float*)j->out + oo);
    j->vk->reduce_cols(j->op, j->x + o * j->R * j->inner + c0, j->R, j->inner, cw, out);
  }
}

/* One long row cut into parts: part p reduces its slice of R to partial p (the parts are fixed,
 * so the combined result does not depend on which thread ran which part). */
static void reduce_parts(void* ctx, int64_t b, int64_t e, int thread) {
  reduce_job* j = (reduce_job*)ctx;
  for (int64_t p = b; p < e; p++) {
    int64_t r0 = p * j->part_len, n = j->R - r0 < j->part_len ? j->R - r0 : j->part_len;
    if (j->op == PL_R_SUM || j->op == PL_R_SUMSQ) {
      j->part_d[p] = j->vk->sum(j->x + r0, n, j->op == PL_R_SUMSQ);
    } else if (j->op == PL_R_MAX || j->op == PL_R_MIN) {
      j->vk->reduce_rows(j->op, j->x + r0, 1, n, &j->part_f[p]);
    } else {
      int32_t r;
      j->vk->reduce_rows(j->op, j->x + r0, 1, n, &r);
      j->part_i[p] = (int32_t)(r0 + r);
    }
  }
}

static float js_maxf(float a, float b, bool is_max) {
  if (a != a || b != b) return a + b;
  if (a == b) {
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    x = is_max ? x & y : x | y;
    memcpy(&a, &x, 4);
    return a;
  }
  return (is_max ? a > b : a < b) ? a : b;
}

/* reduce(op, x, out, outer, R, inner) */
static napi_value js_reduce(napi_env env, napi_callback_info info) {
  pl_args a;
  reduce_job j = {0};
  float* x;
  size_t lx, lo;
  int64_t outer, R, inner, nx, no;
  if (!pl_args_init(env, info, "reduce", 6, &a) || !get_op(&a, 0, reduce_names, PL_R_COUNT, &j.op) ||
      !pl_f32(&a, 1, &x, &lx) || !pl_int(&a, 3, &outer) || !pl_int(&a, 4, &R) || !pl_int(&a, 5, &inner))
    return NULL;
  bool arg = j.op == PL_R_ARGMAX || j.op == PL_R_ARGMIN;
  int32_t* oi = NULL;
  float* of = NULL;
  if (arg ? !pl_i32(&a, 2, &oi, &lo) : !pl_f32(&a, 2, &of, &lo)) return NULL;
  if (outer < 0 || R < 0 || inner < 0) { pl_fail(&a, "negative size"); return NULL; }
  if (__builtin_mul_overflow(outer, inner, &no) || __builtin_mul_overflow(no, R, &nx)) {
    pl_fail(&a, "sizes are too large");
    return NULL;
  }
  if (!pl_need(&a, "x", lx, nx) || !pl_need(&a, "out", lo, no)) return NULL;
  if (no == 0) return NULL;
  j.x = x;
  j.out = arg ? (void*)oi : (void*)of;
  j.outer = outer;
  j.R = R;
  j.inner = inner;
  j.vk = pl_vk_best();
  int threads = pl_num_threads();
  if (inner == 1 && outer == 1 && R >= 2 * GRAIN_MOVE && threads > 1) {
    float pf[256];
    int32_t pi[256];
    double pd[256];
    j.part_f = pf;
    j.part_i = pi;
    j.part_d = pd;
    int64_t k = (R + GRAIN_MOVE - 1) / GRAIN_MOVE < threads ? (R + GRAIN_MOVE - 1) / GRAIN_MOVE : threads;
    j.part_len = (R + k - 1) / k;
    int used = (int)((R + j.part_len - 1) / j.part_len);
    pl_parallel_for(used, 1, reduce_parts, &j);
    if (j.op == PL_R_SUM || j.op == PL_R_SUMSQ) {
      double s = 0;
      for (int t = 0; t < used; t++) s += pd[t];
      of[0] = (float)s;
    } else if (!arg) {
      float r = pf[0];
      for (int t = 1; t < used; t++) r = js_maxf(r, pf[t], j.op == PL_R_MAX);
      of[0] = r;
    } else {
      /* the first chunk holding a NaN wins, else the extreme value at the lowest index */
      int32_t best = pi[0];
      for (int t = 1; t < used; t++) {
        float bv = x[best], v = x[pi[t]];
        if (bv != bv) break;
        if (v != v || (j.op == PL_R_ARGMAX ? v > bv : v < bv)) best = pi[t];
      }
      oi[0] = best;
    }
  } else if (inner == 1) {
    pl_parallel_for(outer, (GRAIN_MOVE + R) / (R + 1), reduce_rows_range, &j);
  } else {
    /* column blocks: enough items to keep every thread busy, each at least 64 columns wide */
    int64_t per = (inner + threads - 1) / threads;
    per = outer >= threads ? inner : (per < 64 ? 64 : (per + 15) / 16 * 16);
    j.cols_per_item = per < inner ? per : inner;
    j.items_per_outer = (inner + j.cols_per_item - 1) / j.cols_per_item;
    int64_t work = j.cols_per_item * (R + 1);
    pl_parallel_for(outer * j.items_per_outer, (GRAIN_MOVE + work - 1) / work, reduce_cols_range, &j);
  }
  return NULL;
}

void pl_register_elementwise(napi_env env, napi_value exports) {
  pl_export(env, exports, "fill", js_fill, "f32,i32,f16,bf16,u8");
  pl_export(env, exports, "copyStrided", js_copy_strided, "f32,i32,f16,bf16,u8");
  pl_export(env, exports, "cast", js_cast, "f32,i32,f16,bf16,u8");
  pl_export(env, exports, "unary", js_unary, "f32");
  pl_export(env, exports, "unaryBackward", js_unary_backward, "f32");
  pl_export(env, exports, "binary", js_binary, "f32");
  pl_export(env, exports, "where", js_where, "f32,i32,f16,bf16,u8");
  pl_export(env, exports, "reduce", js_reduce, "f32");
}
