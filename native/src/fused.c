/* Fused kernels behind Node-API: softmax, layerNorm, rmsNorm, crossEntropy (each with backward),
 * swiglu, rope, the index kernels, im2col/col2im, dropoutMask and adamwStep. Each validates its
 * arguments (index arrays included: an index out of range throws rather than touching memory),
 * then splits rows over the thread pool. Every result is deterministic: work is split into
 * fixed chunks, and sums over rows (dw, db, repeated ids) are formed in a fixed order. */
#include "plinth.h"
#include "vk.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ~10 µs of work per chunk before a second thread pays off (see elementwise.c) */
#define GRAIN_MOVE 65536
#define GRAIN_MATH 8192

static int64_t rows_grain(int64_t per_row, int64_t grain) { return (grain + per_row) / (per_row + 1); }

static bool nonneg(pl_args* a, int64_t v, const char* what) {
  return v >= 0 || pl_fail(a, "%s must be non-negative, got %lld", what, (long long)v);
}

/* product of non-negative sizes, failing on overflow */
static bool mul_size(pl_args* a, int64_t x, int64_t y, int64_t* out) {
  return !__builtin_mul_overflow(x, y, out) || pl_fail(a, "sizes are too large");
}

/* ---- softmax ----------------------------------------------------------------------------------- */

typedef struct {
  const float *x, *y, *dy, *w, *b, *mean, *rstd;
  float *out, *dx, *omean, *orstd;
  int64_t C;
  double eps;
  bool log;
  int64_t rows, rows_per_part;
  double *dw_part, *db_part; /* partial sums over each part's rows, C each */
  float* scratch;            /* per part: 2C floats (see veckernels.h) */
  const pl_vk* vk;
} row_job;

static void softmax_range(void* ctx, int64_t b, int64_t e, int thread) {
  row_job* j = (row_job*)ctx;
  j->vk->softmax(j->x + b * j->C, j->out + b * j->C, e - b, j->C, j->log);
}

static void softmax_backward_range(void* ctx, int64_t b, int64_t e, int thread) {
  row_job* j = (row_job*)ctx;
  j->vk->softmax_backward(j->y + b * j->C, j->dy + b * j->C, j->dx + b * j->C, e - b, j->C, j->log);
}

/* softmax(x, out, rows, C, log) */
static napi_value js_softmax(napi_env env, napi_callback_info info) {
  pl_args a;
  row_job j = {0};
  float *x, *out;
  size_t lx, lo;
  int64_t rows, C, n;
  if (!pl_args_init(env, info, "softmax", 5, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_f32(&a, 1, &out, &lo) ||
      !pl_int(&a, 2, &rows) || !pl_int(&a, 3, &C) || !pl_bool(&a, 4, &j.log) || !nonneg(&a, rows, "rows") ||
      !nonneg(&a, C, "C") || !mul_size(&a, rows, C, &n) || !pl_need(&a, "x", lx, n) || !pl_need(&a, "out", lo, n))
    return NULL;
  j.x = x;
  j.out = out;
  j.C = C;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(C, GRAIN_MATH), softmax_range, &j);
  return NULL;
}

/* softmaxBackward(y, dy, dx, rows, C, log) */
static napi_value js_softmax_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  row_job j = {0};
  float *y, *dy, *dx;
  size_t ly, ldy, ldx;
  int64_t rows, C, n;
  if (!pl_args_init(env, info, "softmaxBackward", 6, &a) || !pl_f32(&a, 0, &y, &ly) || !pl_f32(&a, 1, &dy, &ldy) ||
      !pl_f32(&a, 2, &dx, &ldx) || !pl_int(&a, 3, &rows) || !pl_int(&a, 4, &C) || !pl_bool(&a, 5, &j.log) ||
      !nonneg(&a, rows, "rows") || !nonneg(&a, C, "C") || !mul_size(&a, rows, C, &n) || !pl_need(&a, "y", ly, n) ||
      !pl_need(&a, "dy", ldy, n) || !pl_need(&a, "dx", ldx, n))
    return NULL;
  j.y = y;
  j.dy = dy;
  j.dx = dx;
  j.C = C;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(C, GRAIN_MOVE / 4), softmax_backward_range, &j);
  return NULL;
}

/* ---- layerNorm / rmsNorm ----------------------------------------------------------------------- */

static void layernorm_range(void* ctx, int64_t b, int64_t e, int thread) {
  row_job* j = (row_job*)ctx;
  j->vk->layernorm(j->x + b * j->C, j->w, j->b, j->out + b * j->C, j->omean + b, j->orstd + b, e - b, j->C, j->eps);
}

static void rmsnorm_range(void* ctx, int64_t b, int64_t e, int thread) {
  row_job* j = (row_job*)ctx;
  j->vk->rmsnorm(j->x + b * j->C, j->w, j->out + b * j->C, j->orstd + b, e - b, j->C, j->eps);
}

/* dw and db are sums over all rows. The rows are cut into a fixed number of parts (one per thread
 * when there is work enough), each part sums its rows into its own partial rows, and the partials
 * are added afterwards in part order: no two threads write the same memory, and the result is the
 * same on every run however the parts are scheduled (even all on one thread). */
static int parts_of(int64_t rows, int64_t grain, int64_t* rows_per_part) {
  int64_t k = (rows + grain - 1) / grain, t = pl_num_threads();
  if (k > t) k = t;
  if (k < 1) k = 1;
  *rows_per_part = (rows + k - 1) / k;
  return (int)(rows > 0 ? (rows + *rows_per_part - 1) / *rows_per_part : 1);
}

static void layernorm_backward_parts(void* ctx, int64_t b, int64_t e, int thread) {
  row_job* j = (row_job*)ctx;
  for (int64_t p = b; p < e; p++) {
    int64_t r0 = p * j->rows_per_part, r1 = r0 + j->rows_per_part < j->rows ? r0 + j->rows_per_part : j->rows;
    double* dw = j->dw_part ? j->dw_part + (size_t)p * j->C : NULL;
    double* db = j->db_part ? j->db_part + (size_t)p * j->C : NULL;
    if (dw) memset(dw, 0, (size_t)j->C * sizeof(double));
    if (db) memset(db, 0, (size_t)j->C * sizeof(double));
    j->vk->layernorm_backward(j->x + r0 * j->C, j->w, j->mean + r0, j->rstd + r0, j->dy + r0 * j->C, j->dx + r0 * j->C,
                              dw, db, j->scratch ? j->scratch + (size_t)p * 2 * j->C : NULL, r1 - r0, j->C);
  }
}

static void rmsnorm_backward_parts(void* ctx, int64_t b, int64_t e, int thread) {
  row_job* j = (row_job*)ctx;
  for (int64_t p = b; p < e; p++) {
    int64_t r0 = p * j->rows_per_part, r1 = r0 + j->rows_per_part < j->rows ? r0 + j->rows_per_part : j->rows;
    double* dw = j->dw_part ? j->dw_part + (size_t)p * j->C : NULL;
    if (dw) memset(dw, 0, (size_t)j->C * sizeof(double));
    j->vk->rmsnorm_backward(j->x + r0 * j->C, j->w, j->rstd + r0, j->dy + r0 * j->C, j->dx + r0 * j->C, dw,
                            j->scratch ? j->scratch + (size_t)p * 2 * j->C : NULL, r1 - r0, j->C);
  }
}

/* target[c] += Σ_p part[p][c], the parts in order */
static void add_partials(float* target, const double* part, int parts, int64_t C) {
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int p = 0; p < parts; p++) s += part[(size_t)p * C + c];
    target[c] = (float)((double)target[c] + s);
  }
}

static bool get_opt_vec(pl_args* a, size_t i, const char* what, int64_t C, float** p) {
  size_t len;
  if (!pl_f32_or_null(a, i, p, &len)) return false;
  return !*p || pl_need(a, what, len, C);
}

/* layerNorm(x, w, b, out, mean, rstd, rows, C, eps) */
static napi_value js_layer_norm(napi_env env, napi_callback_info info) {
  pl_args a;
  row_job j = {0};
  float *x, *w, *b, *out, *mean, *rstd;
  size_t lx, lo, lm, lr;
  int64_t rows, C, n;
  if (!pl_args_init(env, info, "layerNorm", 9, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_f32(&a, 3, &out, &lo) ||
      !pl_f32(&a, 4, &mean, &lm) || !pl_f32(&a, 5, &rstd, &lr) || !pl_int(&a, 6, &rows) || !pl_int(&a, 7, &C) ||
      !pl_double(&a, 8, &j.eps) || !nonneg(&a, rows, "rows") || !nonneg(&a, C, "C") || !mul_size(&a, rows, C, &n) ||
      !get_opt_vec(&a, 1, "w", C, &w) || !get_opt_vec(&a, 2, "b", C, &b) || !pl_need(&a, "x", lx, n) ||
      !pl_need(&a, "out", lo, n) || !pl_need(&a, "mean", lm, rows) || !pl_need(&a, "rstd", lr, rows))
    return NULL;
  j.x = x;
  j.w = w;
  j.b = b;
  j.out = out;
  j.omean = mean;
  j.orstd = rstd;
  j.C = C;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(C, GRAIN_MOVE / 4), layernorm_range, &j);
  return NULL;
}

/* layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, C) */
static napi_value js_layer_norm_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  row_job j = {0};
  float *x, *w, *mean, *rstd, *dy, *dx, *dw, *db;
  size_t lx, lm, lr, ldy, ldx;
  int64_t rows, C, n;
  if (!pl_args_init(env, info, "layerNormBackward", 10, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_f32(&a, 2, &mean, &lm) ||
      !pl_f32(&a, 3, &rstd, &lr) || !pl_f32(&a, 4, &dy, &ldy) || !pl_f32(&a, 5, &dx, &ldx) || !pl_int(&a, 8, &rows) ||
      !pl_int(&a, 9, &C) || !nonneg(&a, rows, "rows") || !nonneg(&a, C, "C") || !mul_size(&a, rows, C, &n) ||
      !get_opt_vec(&a, 1, "w", C, &w) || !get_opt_vec(&a, 6, "dw", C, &dw) || !get_opt_vec(&a, 7, "db", C, &db) ||
      !pl_need(&a, "x", lx, n) || !pl_need(&a, "mean", lm, rows) || !pl_need(&a, "rstd", lr, rows) ||
      !pl_need(&a, "dy", ldy, n) || !pl_need(&a, "dx", ldx, n))
    return NULL;
  int parts = parts_of(rows, rows_grain(C, GRAIN_MOVE / 8), &j.rows_per_part);
  double* part = NULL;
  if (dw || db) {
    /* per part: the dw and db partials (doubles), then 2C floats of scratch */
    part = (double*)malloc((size_t)parts * (size_t)C * 3 * sizeof(double) + 1);
    if (!part) { pl_fail(&a, "out of memory for %d partial rows of %lld", parts, (long long)C); return NULL; }
    j.scratch = (float*)(part + (size_t)parts * C * 2);
  }
  j.x = x;
  j.w = w;
  j.mean = mean;
  j.rstd = rstd;
  j.dy = dy;
  j.dx = dx;
  j.C = C;
  j.rows = rows;
  j.dw_part = dw ? part : NULL;
  j.db_part = db ? part + (size_t)parts * C : NULL;
  j.vk = pl_vk_best();
  pl_parallel_for(parts, 1, layernorm_backward_parts, &j);
  if (dw) add_partials(dw, j.dw_part, parts, C);
  if (db) add_partials(db, j.db_part, parts, C);
  free(part);
  return NULL;
}

/* rmsNorm(x, w, out, rstd, rows, C, eps) */
static napi_value js_rms_norm(napi_env env, napi_callback_info info) {
  pl_args a;
  row_job j = {0};
  float *x, *w, *out, *rstd;
  size_t lx, lo, lr;
  int64_t rows, C, n;
  if (!pl_args_init(env, info, "rmsNorm", 7, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_f32(&a, 2, &out, &lo) ||
      !pl_f32(&a, 3, &rstd, &lr) || !pl_int(&a, 4, &rows) || !pl_int(&a, 5, &C) || !pl_double(&a, 6, &j.eps) ||
      !nonneg(&a, rows, "rows") || !nonneg(&a, C, "C") || !mul_size(&a, rows, C, &n) ||
      !get_opt_vec(&a, 1, "w", C, &w) || !pl_need(&a, "x", lx, n) || !pl_need(&a, "out", lo, n) ||
      !pl_need(&a, "rstd", lr, rows))
    return NULL;
  j.x = x;
  j.w = w;
  j.out = out;
  j.orstd = rstd;
  j.C = C;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(C, GRAIN_MOVE / 4), rmsnorm_range, &j);
  return NULL;
}

/* rmsNormBackward(x, w, rstd, dy, dx, dw, rows, C) */
static napi_value js_rms_norm_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  row_job j = {0};
  float *x, *w, *rstd, *dy, *dx, *dw;
  size_t lx, lr, ldy, ldx;
  int64_t rows, C, n;
  if (!pl_args_init(env, info, "rmsNormBackward", 8, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_f32(&a, 2, &rstd, &lr) ||
      !pl_f32(&a, 3, &dy, &ldy) || !pl_f32(&a, 4, &dx, &ldx) || !pl_int(&a, 6, &rows) || !pl_int(&a, 7, &C) ||
      !nonneg(&a, rows, "rows") || !nonneg(&a, C, "C") || !mul_size(&a, rows, C, &n) ||
      !get_opt_vec(&a, 1, "w", C, &w) || !get_opt_vec(&a, 5, "dw", C, &dw) || !pl_need(&a, "x", lx, n) ||
      !pl_need(&a, "rstd", lr, rows) || !pl_need(&a, "dy", ldy, n) || !pl_need(&a, "dx", ldx, n))
    return NULL;
  int parts = parts_of(rows, rows_grain(C, GRAIN_MOVE / 8), &j.rows_per_part);
  double* part = NULL;
  if (dw) {
    /* per part: the dw partial (doubles), then 2C floats of scratch */
    part = (double*)malloc((size_t)parts * (size_t)C * 2 * sizeof(double) + 1);
    if (!part) { pl_fail(&a, "out of memory for %d partial rows of %lld", parts, (long long)C); return NULL; }
    j.scratch = (float*)(part + (size_t)parts * C);
  }
  j.x = x;
  j.w = w;
  j.rstd = rstd;
  j.dy = dy;
  j.dx = dx;
  j.C = C;
  j.rows = rows;
  j.dw_part = part;
  j.vk = pl_vk_best();
  pl_parallel_for(parts, 1, rmsnorm_backward_parts, &j);
  if (dw) add_partials(dw, part, parts, C);
  free(part);
  return NULL;
}

/* ---- cross-entropy ----------------------------------------------------------------------------- */

typedef struct {
  const float *logits, *lse_in, *dloss;
  const int32_t* targets;
  float *loss, *lse, *dlogits;
  int64_t V, ignore;
  double smoothing;
  const pl_vk* vk;
} ce_job;

static void ce_range(void* ctx, int64_t b, int64_t e, int thread) {
  ce_job* j = (ce_job*)ctx;
  j->vk->cross_entropy(j->logits + b * j->V, j->targets + b, j->loss + b, j->lse + b, e - b, j->V, j->ignore, j->smoothing);
}

static void ce_backward_range(void* ctx, int64_t b, int64_t e, int thread) {
  ce_job* j = (ce_job*)ctx;
  j->vk->cross_entropy_backward(j->logits + b * j->V, j->targets + b, j->lse_in + b, j->dloss + b, j->dlogits + b * j->V,
                                e - b, j->V, j->ignore, j->smoothing);
}

static bool check_targets(pl_args* a, const int32_t* t, int64_t rows, int64_t V, int64_t ignore) {
  for (int64_t r = 0; r < rows; r++)
    if (t[r] != ignore && (t[r] < 0 || t[r] >= V))
      return pl_fail(a, "target %d at row %lld is outside [0, %lld) and is not the ignore index %lld", t[r], (long long)r,
                     (long long)V, (long long)ignore);
  return true;
}

/* crossEntropy(logits, targets, loss, lse, rows, V, ignoreIndex, labelSmoothing) */
static napi_value js_cross_entropy(napi_env env, napi_callback_info info) {
  pl_args a;
  ce_job j = {0};
  float *logits, *loss, *lse;
  int32_t* targets;
  size_t ll, lt, lloss, llse;
  int64_t rows, V, n;
  if (!pl_args_init(env, info, "crossEntropy", 8, &a) || !pl_f32(&a, 0, &logits, &ll) || !pl_i32(&a, 1, &targets, &lt) ||
      !pl_f32(&a, 2, &loss, &lloss) || !pl_f32(&a, 3, &lse, &llse) || !pl_int(&a, 4, &rows) || !pl_int(&a, 5, &V) ||
      !pl_int(&a, 6, &j.ignore) || !pl_double(&a, 7, &j.smoothing) || !nonneg(&a, rows, "rows") ||
      !nonneg(&a, V, "V") || !mul_size(&a, rows, V, &n) || !pl_need(&a, "logits", ll, n) ||
      !pl_need(&a, "targets", lt, rows) || !pl_need(&a, "loss", lloss, rows) || !pl_need(&a, "lse", llse, rows) ||
      !check_targets(&a, targets, rows, V, j.ignore))
    return NULL;
  j.logits = logits;
  j.targets = targets;
  j.loss = loss;
  j.lse = lse;
  j.V = V;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(V, GRAIN_MATH), ce_range, &j);
  return NULL;
}

/* crossEntropyBackward(logits, targets, lse, dloss, dlogits, rows, V, ignoreIndex, labelSmoothing) */
static napi_value js_cross_entropy_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  ce_job j = {0};
  float *logits, *lse, *dloss, *dlogits;
  int32_t* targets;
  size_t ll, lt, llse, ldl, ldg;
  int64_t rows, V, n;
  if (!pl_args_init(env, info, "crossEntropyBackward", 9, &a) || !pl_f32(&a, 0, &logits, &ll) ||
      !pl_i32(&a, 1, &targets, &lt) || !pl_f32(&a, 2, &lse, &llse) || !pl_f32(&a, 3, &dloss, &ldl) ||
      !pl_f32(&a, 4, &dlogits, &ldg) || !pl_int(&a, 5, &rows) || !pl_int(&a, 6, &V) || !pl_int(&a, 7, &j.ignore) ||
      !pl_double(&a, 8, &j.smoothing) || !nonneg(&a, rows, "rows") || !nonneg(&a, V, "V") ||
      !mul_size(&a, rows, V, &n) || !pl_need(&a, "logits", ll, n) || !pl_need(&a, "targets", lt, rows) ||
      !pl_need(&a, "lse", llse, rows) || !pl_need(&a, "dloss", ldl, rows) || !pl_need(&a, "dlogits", ldg, n) ||
      !check_targets(&a, targets, rows, V, j.ignore))
    return NULL;
  j.logits = logits;
  j.targets = targets;
  j.lse_in = lse;
  j.dloss = dloss;
  j.dlogits = dlogits;
  j.V = V;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(V, GRAIN_MATH), ce_backward_range, &j);
  return NULL;
}

/* ---- swiglu ------------------------------------------------------------------------------------ */

typedef struct {
  const float *gate, *up, *dy;
  float *out, *dgate, *dup;
  const pl_vk* vk;
} swiglu_job;

/* each flat range runs its head up to a 64-byte-aligned output as a call of its own (pl_align_head) */
static void swiglu_range(void* ctx, int64_t b, int64_t e, int thread) {
  swiglu_job* j = (swiglu_job*)ctx;
  int64_t m = b + pl_align_head(j->out + b, 4, e - b);
  if (m > b) j->vk->swiglu(j->gate + b, j->up + b, j->out + b, m - b);
  j->vk->swiglu(j->gate + m, j->up + m, j->out + m, e - m);
}

static void swiglu_backward_range(void* ctx, int64_t b, int64_t e, int thread) {
  swiglu_job* j = (swiglu_job*)ctx;
  int64_t m = b + pl_align_head(j->dgate + b, 4, e - b);
  if (m > b) j->vk->swiglu_backward(j->gate + b, j->up + b, j->dy + b, j->dgate + b, j->dup + b, m - b);
  j->vk->swiglu_backward(j->gate + m, j->up + m, j->dy + m, j->dgate + m, j->dup + m, e - m);
}

/* swiglu(gate, up, out, n) */
static napi_value js_swiglu(napi_env env, napi_callback_info info) {
  pl_args a;
  swiglu_job j = {0};
  float *g, *u, *o;
  size_t lg, lu, lo;
  int64_t n;
  if (!pl_args_init(env, info, "swiglu", 4, &a) || !pl_f32(&a, 0, &g, &lg) || !pl_f32(&a, 1, &u, &lu) ||
      !pl_f32(&a, 2, &o, &lo) || !pl_int(&a, 3, &n) || !pl_need(&a, "gate", lg, n) || !pl_need(&a, "up", lu, n) ||
      !pl_need(&a, "out", lo, n))
    return NULL;
  j.gate = g;
  j.up = u;
  j.out = o;
  j.vk = pl_vk_best();
  pl_parallel_for(n, GRAIN_MATH, swiglu_range, &j);
  return NULL;
}

/* swigluBackward(gate, up, dy, dgate, dup, n) */
static napi_value js_swiglu_backward(napi_env env, napi_callback_info info) {
  pl_args a;
  swiglu_job j = {0};
  float *g, *u, *dy, *dg, *du;
  size_t lg, lu, ldy, ldg, ldu;
  int64_t n;
  if (!pl_args_init(env, info, "swigluBackward", 6, &a) || !pl_f32(&a, 0, &g, &lg) || !pl_f32(&a, 1, &u, &lu) ||
      !pl_f32(&a, 2, &dy, &ldy) || !pl_f32(&a, 3, &dg, &ldg) || !pl_f32(&a, 4, &du, &ldu) || !pl_int(&a, 5, &n) ||
      !pl_need(&a, "gate", lg, n) || !pl_need(&a, "up", lu, n) || !pl_need(&a, "dy", ldy, n) ||
      !pl_need(&a, "dgate", ldg, n) || !pl_need(&a, "dup", ldu, n))
    return NULL;
  j.gate = g;
  j.up = u;
  j.dy = dy;
  j.dgate = dg;
  j.dup = du;
  j.vk = pl_vk_best();
  pl_parallel_for(n, GRAIN_MATH, swiglu_backward_range, &j);
  return NULL;
}

/* ---- rope -------------------------------------------------------------------------------------- */

typedef struct {
  const float *x, *cos, *sin;
  float* out;
  int64_t T, G, D;
  bool inverse;
  const pl_vk* vk;
} rope_job;

static void rope_range(void* ctx, int64_t b, int64_t e, int thread) {
  rope_job* j = (rope_job*)ctx;
  j->vk->rope(j->x, j->cos, j->sin, j->out, j->T, j->G, j->D, b, e, j->inverse);
}

/* rope(x, cos, sin, out, N, T, G, D, inverse) */
static napi_value js_rope(napi_env env, napi_callback_info info) {
  pl_args a;
  rope_job j = {0};
  float *x, *c, *s, *o;
  size_t lx, lc, ls, lo;
  int64_t N, T, G, D, n, rows, tab;
  if (!pl_args_init(env, info, "rope", 9, &a) || !pl_f32(&a, 0, &x, &lx) || !pl_f32(&a, 1, &c, &lc) ||
      !pl_f32(&a, 2, &s, &ls) || !pl_f32(&a, 3, &o, &lo) || !pl_int(&a, 4, &N) || !pl_int(&a, 5, &T) ||
      !pl_int(&a, 6, &G) || !pl_int(&a, 7, &D) || !pl_bool(&a, 8, &j.inverse) || !nonneg(&a, N, "N") ||
      !nonneg(&a, T, "T") || !nonneg(&a, G, "G") || !nonneg(&a, D, "D") || !mul_size(&a, N, T, &rows) ||
      !mul_size(&a, rows, G, &n) || !mul_size(&a, n, D, &n) || !mul_size(&a, T, D / 2, &tab) ||
      !pl_need(&a, "x", lx, n) || !pl_need(&a, "out", lo, n) || !pl_need(&a, "cos", lc, tab) ||
      !pl_need(&a, "sin", ls, tab))
    return NULL;
  if (D % 2 != 0) { pl_fail(&a, "D must be even, got %lld", (long long)D); return NULL; }
  j.x = x;
  j.cos = c;
  j.sin = s;
  j.out = o;
  j.T = T;
  j.G = G;
  j.D = D;
  j.vk = pl_vk_best();
  pl_parallel_for(rows, rows_grain(G * D, GRAIN_MOVE / 2), rope_range, &j);
  return NULL;
}

/* ---- indexing ---------------------------------------------------------------------------------- */

typedef struct {
  const float* src;
  const int32_t* idx;
  float* dst;
  int64_t outer, X, n, inner, c0_step;
  const pl_vk* vk;
} index_job;

static bool check_index(pl_args* a, const int32_t* idx, int64_t count, int64_t X) {
  for (int64_t k = 0; k < count; k++)
    if (idx[k] < 0 || idx[k] >= X)
      return pl_fail(a, "index %d at position %lld is outside [0, %lld)", idx[k], (long long)k, (long long)X);
  return true;
}

/* (x, idx, out, outer, X, n, inner) with x (outer, X, inner), out (outer, n, inner) and idx (n), or
 * (outer, n, inner) when per_element; for the accumulating kernels (scatter) the first array is the
 * (outer, n, inner) source and the third the (outer, X, inner) target. */
static bool get_index_args(pl_args* a, bool per_element, bool scatter, index_job* j) {
  float *p0, *p2;
  int32_t* idx;
  size_t l0, l1, l2;
  int64_t big, small, nidx;
  if (!pl_f32(a, 0, &p0, &l0) || !pl_i32(a, 1, &idx, &l1) || !pl_f32(a, 2, &p2, &l2) || !pl_int(a, 3, &j->outer) ||
      !pl_int(a, 4, &j->X) || !pl_int(a, 5, &j->n) || !pl_int(a, 6, &j->inner) || !nonneg(a, j->outer, "outer") ||
      !nonneg(a, j->X, "X") || !nonneg(a, j->n, "n") || !nonneg(a, j->inner, "inner") ||
      !mul_size(a, j->outer, j->X, &big) || !mul_size(a, big, j->inner, &big) || !mul_size(a, j->outer, j->n, &small) ||
      !mul_size(a, small, j->inner, &small))
    return false;
  nidx = per_element ? small : j->n;
  /* gather/indexSelect read x (outer, X, inner) and write out; indexAdd/scatterAdd the reverse */
  if (!pl_need(a, scatter ? "dx" : "x", scatter ? l2 : l0, big) || !pl_need(a, scatter ? "src" : "out", scatter ? l0 : l2, small) ||
      !pl_need(a, "idx", l1, nidx) || !check_index(a, idx, nidx, j->X))
    return false;
  j->src = p0;
  j->idx = idx;
  j->dst = p2;
  j->vk = pl_vk_best();
  return true;
}

/* Rows picked by index are scattered through memory where no hardware prefetcher can follow, so
 * indexSelect requests the row INDEX_AHEAD positions ahead, a line (16 floats) at a time. */
#define INDEX_AHEAD 4

static void prefetch_row(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
}

/* row (o, j) of out = row (o, idx[j]) of x */
static void index_select_range(void* ctx, int64_t b, int64_t e, int thread) {
  index_job* j = (index_job*)ctx;
  for (int64_t r = b; r < e; r++) {
    if (r + INDEX_AHEAD < e) {
      int64_t ra = r + INDEX_AHEAD;
      prefetch_row(j->src + ((ra / j->n) * j->X + j->idx[ra % j->n]) * j->inner, j->inner);
    }
    int64_t o = r / j->n, k = r % j->n;
    memcpy(j->dst + r * j->inner, j->src + (o * j->X + j->idx[k]) * j->inner, (size_t)j->inner * sizeof(float));
  }
}

/* Columns [b, e) of every row: dx[o, idx[k], b:e] += dout[o, k, b:e] for k in order, so each element
 * receives its additions in the same order as a serial loop, whatever the split. */
static void index_add_cols(void* ctx, int64_t b, int64_t e, int thread) {
  index_job* j = (index_job*)ctx;
  for (int64_t o = 0; o < j->outer; o++)
    for (int64_t k = 0; k < j->n; k++)
      j->vk->add_inplace(j->dst + (o * j->X + j->idx[k]) * j->inner + b, j->src + (o * j->n + k) * j->inner + b, e - b);
}

/* Outer slices [b, e) (disjoint parts of dx) */
static void index_add_outer(void* ctx, int64_t b, int64_t e, int thread) {
  index_job* j = (index_job*)ctx;
  for (int64_t o = b; o < e; o++)
    for (int64_t k = 0; k < j->n; k++)
      j->vk->add_inplace(j->dst + (o * j->X + j->idx[k]) * j->inner, j->src + (o * j->n + k) * j->inner, j->inner);
}

static void gather_range(void* ctx, int64_t b, int64_t e, int thread) {
  index_job* j = (index_job*)ctx;
  for (int64_t r = b; r < e; r++) { /* r = o·n + k */
    int64_t o = r / j->n;
    const int32_t* id = j->idx + r * j->inner;
    float* out = j->dst + r * j->inner;
    const float* x = j->src + o * j->X * j->inner;
    for (int64_t i = 0; i < j->inner; i++) out[i] = x[(int64_t)id[i] * j->inner + i];
  }
}

/* out[o, idx[o,k,i], i] += src[o,k,i] over outer slices [b, e) */
static void scatter_outer(void* ctx, int64_t b, int64_t e, int thread) {
  index_job* j = (index_job*)ctx;
  for (int64_t o = b; o < e; o++)
    for (int64_t k = 0; k < j->n; k++) {
      const int32_t* id = j->idx + (o * j->n + k) * j->inner;
      const float* s = j->src + (o * j->n + k) * j->inner;
      float* out = j->dst + o * j->X * j->inner;
      for (int64_t i = 0; i < j->inner; i++) out[(int64_t)id[i] * j->inner + i] += s[i];
    }
}

/* the same over columns [b, e) of every outer slice: each column is one thread's */
static void scatter_cols(void* ctx, int64_t b, int64_t e, int thread) {
  index_job* j = (index_job*)ctx;
  for (int64_t o = 0; o < j->outer; o++)
    for (int64_t k = 0; k < j->n; k++) {
      const int32_t* id = j->idx + (o * j->n + k) * j->inner;
      const float* s = j->src + (o * j->n + k) * j->inner;
      float* out = j->dst + o * j->X * j->inner;
      for (int64_t i = b; i < e; i++) out[(int64_t)id[i] * j->inner + i] += s[i];
    }
}

/* indexSelect(x, idx, out, outer, X, n, inner) */
static napi_value js_index_select(napi_env env, napi_callback_info info) {
  pl_args a;
  index_job j = {0};
  if (!pl_args_init(env, info, "indexSelect", 7, &a) || !get_index_args(&a, false, false, &j)) return NULL;
  pl_parallel_for(j.outer * j.n, rows_grain(j.inner, GRAIN_MOVE), index_select_range, &j);
  return NULL;
}

/* The accumulating kernels split either over outer slices or over columns, never over the rows
 * that may repeat an index. */
static void run_accumulate(index_job* j, pl_range_fn by_outer, pl_range_fn by_cols) {
  int64_t work = j->n * j->inner;
  if (j->outer >= pl_num_threads() || j->inner < 64) pl_parallel_for(j->outer, rows_grain(work, GRAIN_MOVE), by_outer, j);
  else pl_parallel_for(j->inner, (GRAIN_MOVE + j->outer * j->n) / (j->outer * j->n + 1) + 16, by_cols, j);
}

/* indexAdd(dout, idx, dx, outer, X, n, inner) */
static napi_value js_index_add(napi_env env, napi_callback_info info) {
  pl_args a;
  index_job j = {0};
  if (!pl_args_init(env, info, "indexAdd", 7, &a) || !get_index_args(&a, false, true, &j)) return NULL;
  run_accumulate(&j, index_add_outer, index_add_cols);
  return NULL;
}

/* gather(x, idx, out, outer, X, n, inner) */
static napi_value js_gather(napi_env env, napi_callback_info info) {
  pl_args a;
  index_job j = {0};
  if (!pl_args_init(env, info, "gather", 7, &a) || !get_index_args(&a, true, false, &j)) return NULL;
  pl_parallel_for(j.outer * j.n, rows_grain(j.inner, GRAIN_MOVE), gather_range, &j);
  return NULL;
}

/* scatterAdd(src, idx, out, outer, X, n, inner) */
static napi_value js_scatter_add(napi_env env, napi_callback_info info) {
  pl_args a;
  index_job j = {0};
  if (!pl_args_init(env, info, "scatterAdd", 7, &a) || !get_index_args(&a, true, true, &j)) return NULL;
  run_accumulate(&j, scatter_outer, scatter_cols);
  return NULL;
}

/* ---- im2col / col2im --------------------------------------------------------------------------- */

typedef struct {
  const float* src;
  float* dst;
  int64_t C, H, W, kh, kw, stride, pad, outH, outW;
} conv_job;

/* The output columns ox whose input column ox·stride − pad + j lies in [0, W): [*lo, *hi). */
static void valid_cols(const conv_job* c, int64_t j, int64_t* lo, int64_t* hi) {
  int64_t s = c->stride;
  int64_t first = c->pad - j; /* need ox·s ≥ pad − j */
  *lo = first <= 0 ? 0 : (s > 0 ? (first + s - 1) / s : c->outW);
  int64_t last = c->W - 1 + c->pad - j; /* need ox·s ≤ W − 1 + pad − j */
  *hi = last < 0 ? 0 : (s > 0 ? last / s + 1 : c->outW);
  if (*hi > c->outW) *hi = c->outW;
  if (*lo > *hi) *lo = *hi;
}

/* rows [b, e) of cols, row = (c·kh + i)·kw + j */
static void im2col_rows(void* ctx, int64_t b, int64_t e, int thread) {
  conv_job* c = (conv_job*)ctx;
  for (int64_t row = b; row < e; row++) {
    int64_t j = row % c->kw, i = (row / c->kw) % c->kh, ch = row / (c->kw * c->kh);
    int64_t lo, hi;
    valid_cols(c, j, &lo, &hi);
    for (int64_t oy = 0; oy < c->outH; oy++) {
      float* out = c->dst + (row * c->outH + oy) * c->outW; /* cols is (C·kh·kw, outH·outW) */
      int64_t y = oy * c->stride - c->pad + i;
      if (y < 0 || y >= c->H) {
        memset(out, 0, (size_t)c->outW * sizeof(float));
        continue;
      }
      int64_t base = (ch * c->H + y) * c->W - c->pad + j; /* x is (C, H, W) */
      for (int64_t ox = 0; ox < lo; ox++) out[ox] = 0;
      for (int64_t ox = lo; ox < hi; ox++) out[ox] = c->src[base + ox * c->stride];
      for (int64_t ox = hi; ox < c->outW; ox++) out[ox] = 0;
    }
  }
}

/* channels [b, e): each channel's pixels receive their additions in ref's (i, j, oy, ox) order */
static void col2im_channels(void* ctx, int64_t b, int64_t e, int thread) {
  conv_job* c = (conv_job*)ctx;
  for (int64_t ch = b; ch < e; ch++)
    for (int64_t i = 0; i < c->kh; i++)
      for (int64_t j = 0; j < c->kw; j++) {
        int64_t row = (ch * c->kh + i) * c->kw + j, lo, hi;
        valid_cols(c, j, &lo, &hi);
        for (int64_t oy = 0; oy < c->outH; oy++) {
          int64_t y = oy * c->stride - c->pad + i;
          if (y < 0 || y >= c->H) continue;
          const float* in = c->src + (row * c->outH + oy) * c->outW;
          int64_t base = (ch * c->H + y) * c->W - c->pad + j; /* dx is (C, H, W) */
          for (int64_t ox = lo; ox < hi; ox++) c->dst[base + ox * c->stride] += in[ox];
        }
      }
}

static bool get_conv_args(pl_args* a, conv_job* c, bool adjoint) {
  float *p0, *p1;
  size_t l0, l1;
  int64_t img, rows, cols;
  if (!pl_f32(a, 0, &p0, &l0) || !pl_f32(a, 1, &p1, &l1) || !pl_int(a, 2, &c->C) || !pl_int(a, 3, &c->H) ||
      !pl_int(a, 4, &c->W) || !pl_int(a, 5, &c->kh) || !pl_int(a, 6, &c->kw) || !pl_int(a, 7, &c->stride) ||
      !pl_int(a, 8, &c->pad) || !pl_int(a, 9, &c->outH) || !pl_int(a, 10, &c->outW) || !nonneg(a, c->C, "C") ||
      !nonneg(a, c->H, "H") || !nonneg(a, c->W, "W") || !nonneg(a, c->kh, "kh") || !nonneg(a, c->kw, "kw") ||
      !nonneg(a, c->stride, "stride") || !nonneg(a, c->pad, "pad") || !nonneg(a, c->outH, "outH") ||
      !nonneg(a, c->outW, "outW") || !mul_size(a, c->C, c->H, &img) || !mul_size(a, img, c->W, &img) ||
      !mul_size(a, c->C, c->kh, &rows) || !mul_size(a, rows, c->kw, &rows) || !mul_size(a, rows, c->outH, &cols) ||
      !mul_size(a, cols, c->outW, &cols))
    return false;
  if (!pl_need(a, adjoint ? "cols" : "x", l0, adjoint ? cols : img) || !pl_need(a, adjoint ? "dx" : "cols", l1, adjoint ? img : cols))
    return false;
  c->src = p0;
  c->dst = p1;
  return true;
}

/* im2col(x, cols, C, H, W, kh, kw, stride, pad, outH, outW) */
static napi_value js_im2col(napi_env env, napi_callback_info info) {
  pl_args a;
  conv_job c;
  if (!pl_args_init(env, info, "im2col", 11, &a) || !get_conv_args(&a, &c, false)) return NULL;
  pl_parallel_for(c.C * c.kh * c.kw, rows_grain(c.outH * c.outW, GRAIN_MOVE), im2col_rows, &c);
  return NULL;
}

/* col2im(cols, dx, C, H, W, kh, kw, stride, pad, outH, outW) */
static napi_value js_col2im(napi_env env, napi_callback_info info) {
  pl_args a;
  conv_job c;
  if (!pl_args_init(env, info, "col2im", 11, &a) || !get_conv_args(&a, &c, true)) return NULL;
  pl_parallel_for(c.C, rows_grain(c.kh * c.kw * c.outH * c.outW, GRAIN_MOVE), col2im_channels, &c);
  return NULL;
}

/* ---- dropoutMask ------------------------------------------------------------------------------- */

typedef struct {
  float* out;
  uint32_t threshold, key, counter0;
  float scale;
  double offset; /* used when the offset is not an integer */
  bool exact_counters;
  const pl_vk* vk;
} dropout_job;

static void dropout_range(void* ctx, int64_t b, int64_t e, int thread) {
  dropout_job* j = (dropout_job*)ctx;
  if (j->exact_counters) {
    int64_t m = b + pl_align_head(j->out + b, 4, e - b);
    if (m > b) j->vk->dropout(j->out + b, m - b, j->threshold, j->scale, j->key, j->counter0 + (uint32_t)b);
    j->vk->dropout(j->out + m, e - m, j->threshold, j->scale, j->key, j->counter0 + (uint32_t)m);
    return;
  }
  /* a fractional offset: the counter is (offset + i) >>> 0, formed in double as in random.ts */
  for (int64_t i = b; i < e; i++) {
    uint32_t ctr = (uint32_t)pl_js_to_int32(j->offset + (double)i);
    uint32_t w = pl_mix32(pl_mix32(ctr ^ j->key) + j->key);
    j->out[i] = (w >> 8) >= j->threshold ? j->scale : 0.0f;
  }
}

/* dropoutMask(out, n, p, seed, offset): out[i] = uniformAt(seed, offset + i) ≥ p ? 1/(1 − p) : 0 */
static napi_value js_dropout_mask(napi_env env, napi_callback_info info) {
  pl_args a;
  dropout_job j = {0};
  float* out;
  size_t lo;
  int64_t n;
  double p, seed, offset;
  if (!pl_args_init(env, info, "dropoutMask", 5, &a) || !pl_f32(&a, 0, &out, &lo) || !pl_int(&a, 1, &n) ||
      !pl_double(&a, 2, &p) || !pl_double(&a, 3, &seed) || !pl_double(&a, 4, &offset) || !pl_need(&a, "out", lo, n))
    return NULL;
  /* u = (w >>> 8)·2^−24 ≥ p  ⇔  (w >>> 8) ≥ ⌈p·2^24⌉, exactly (p·2^24 is exact); NaN keeps nothing */
  double t = ceil(p * 16777216.0);
  j.threshold = p != p || t > 16777216.0 ? 16777216u : t <= 0 ? 0u : (uint32_t)t;
  j.scale = (float)(1.0 / (1.0 - p));
  j.key = pl_mix32((uint32_t)pl_js_to_int32(seed) ^ 0x9e3779b9u);
  j.out = out;
  j.offset = offset;
  j.exact_counters = offset == trunc(offset) && fabs(offset) < 4503599627370496.0;
  j.counter0 = j.exact_counters ? (uint32_t)pl_js_to_int32(offset) : 0;
  j.vk = pl_vk_best();
  pl_parallel_for(n, GRAIN_MATH * 4, dropout_range, &j);
  return NULL;
}

/* ---- adamwStep --------------------------------------------------------------------------------- */

typedef struct {
  float *p, *m, *v;
  const float* g;
  pl_adamw_consts c;
  const pl_vk* vk;
} adamw_job;

static void adamw_range(void* ctx, int64_t b, int64_t e, int thread) {
  adamw_job* j = (adamw_job*)ctx;
  int64_t m = b + pl_align_head(j->p + b, 4, e - b);
  if (m > b) j->vk->adamw(j->p + b, j->g + b, j->m + b, j->v + b, m - b, &j->c);
  j->vk->adamw(j->p + m, j->g + m, j->m + m, j->v + m, e - m, &j->c);
}

/* adamwStep(p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step) */
static napi_value js_adamw_step(napi_env env, napi_callback_info info) {
  pl_args a;
  adamw_job j = {0};
  float *p, *g, *m, *v;
  size_t lp, lg, lm, lv;
  int64_t n;
  double lr, b1, b2, eps, wd, step;
  if (!pl_args_init(env, info, "adamwStep", 11, &a) || !pl_f32(&a, 0, &p, &lp) || !pl_f32(&a, 1, &g, &lg) ||
      !pl_f32(&a, 2, &m, &lm) || !pl_f32(&a, 3, &v, &lv) || !pl_int(&a, 4, &n) || !pl_double(&a, 5, &lr) ||
      !pl_double(&a, 6, &b1) || !pl_double(&a, 7, &b2) || !pl_double(&a, 8, &eps) || !pl_double(&a, 9, &wd) ||
      !pl_double(&a, 10, &step) || !pl_need(&a, "p", lp, n) || !pl_need(&a, "g", lg, n) || !pl_need(&a, "m", lm, n) ||
      !pl_need(&a, "v", lv, n))
    return NULL;
  double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
  j.c.decay = (float)(1.0 - lr * wd);
  j.c.beta1 = (float)b1;
  j.c.one_minus_beta1 = (float)(1.0 - b1);
  j.c.beta2 = (float)b2;
  j.c.one_minus_beta2 = (float)(1.0 - b2);
  j.c.step_size = (float)(lr / bc1);
  j.c.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
  j.c.eps = (float)eps;
  j.p = p;
  j.g = g;
  j.m = m;
  j.v = v;
  j.vk = pl_vk_best();
  pl_parallel_for(n, GRAIN_MOVE / 2, adamw_range, &j);
  return NULL;
}

void pl_register_fused(napi_env env, napi_value exports) {
  pl_export(env, exports, "softmax", js_softmax, "f32");
  pl_export(env, exports, "softmaxBackward", js_softmax_backward, "f32");
  pl_export(env, exports, "layerNorm", js_layer_norm, "f32");
  pl_export(env, exports, "layerNormBackward", js_layer_norm_backward, "f32");
  pl_export(env, exports, "rmsNorm", js_rms_norm, "f32");
  pl_export(env, exports, "rmsNormBackward", js_rms_norm_backward, "f32");
  pl_export(env, exports, "crossEntropy", js_cross_entropy, "f32");
  pl_export(env, exports, "crossEntropyBackward", js_cross_entropy_backward, "f32");
  pl_export(env, exports, "swiglu", js_swiglu, "f32");
  pl_export(env, exports, "swigluBackward", js_swiglu_backward, "f32");
  pl_export(env, exports, "rope", js_rope, "f32");
  pl_export(env, exports, "indexSelect", js_index_select, "f32");
  pl_export(env, exports, "indexAdd", js_index_add, "f32");
  pl_export(env, exports, "gather", js_gather, "f32");
  pl_export(env, exports, "scatterAdd", js_scatter_add, "f32");
  pl_export(env, exports, "im2col", js_im2col, "f32");
  pl_export(env, exports, "col2im", js_col2im, "f32");
  pl_export(env, exports, "dropoutMask", js_dropout_mask, "f32");
  pl_export(env, exports, "adamwStep", js_adamw_step, "f32");
}
