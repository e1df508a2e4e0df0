/* The Node-API entry point: argument helpers, the kernel registry, and module init. */
#include "plinth.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool pl_args_init(napi_env env, napi_callback_info info, const char* kernel, size_t expected, pl_args* a) {
  a->env = env;
  a->kernel = kernel;
  a->argc = 24;
  if (napi_get_cb_info(env, info, &a->argc, a->argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "plinth native: could not read arguments");
    return false;
  }
  if (a->argc < expected) return pl_fail(a, "expected %zu arguments, got %zu", expected, a->argc);
  return true;
}

bool pl_fail(pl_args* a, const char* fmt, ...) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s: ", a->kernel);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  va_end(ap);
  bool pending = false;
  napi_is_exception_pending(a->env, &pending);
  if (!pending) napi_throw_range_error(a->env, "PLINTH_KERNEL_ARGS", msg);
  return false;
}

static bool typed(pl_args* a, size_t i, napi_typedarray_type want, bool allow_null, void** ptr, size_t* len) {
  napi_value v = a->argv[i];
  napi_valuetype vt;
  napi_typeof(a->env, v, &vt);
  if (allow_null && (vt == napi_null || vt == napi_undefined)) {
    *ptr = NULL;
    *len = 0;
    return true;
  }
  bool is_ta = false;
  napi_is_typedarray(a->env, v, &is_ta);
  if (!is_ta) return pl_fail(a, "argument %zu must be a typed array", i);
  napi_typedarray_type t;
  size_t n;
  void* data;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(a->env, v, &t, &n, &data, &ab, &off);
  if (t != want) return pl_fail(a, "argument %zu has the wrong element type", i);
  *ptr = data;
  *len = n;
  return true;
}

bool pl_f32(pl_args* a, size_t i, float** ptr, size_t* len) { return typed(a, i, napi_float32_array, false, (void**)ptr, len); }
bool pl_f32_or_null(pl_args* a, size_t i, float** ptr, size_t* len) { return typed(a, i, napi_float32_array, true, (void**)ptr, len); }
bool pl_i32(pl_args* a, size_t i, int32_t** ptr, size_t* len) { return typed(a, i, napi_int32_array, false, (void**)ptr, len); }

bool pl_any(pl_args* a, size_t i, void** ptr, size_t* len, size_t* elsize) {
  bool is_ta = false;
  napi_is_typedarray(a->env, a->argv[i], &is_ta);
  if (!is_ta) return pl_fail(a, "argument %zu must be a typed array", i);
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(a->env, a->argv[i], &t, len, ptr, &ab, &off);
  switch (t) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: *elsize = 1; break;
    case napi_int16_array: case napi_uint16_array: *elsize = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: *elsize = 4; break;
    default: *elsize = 8; break;
  }
  return true;
}

bool pl_int(pl_args* a, size_t i, int64_t* v) {
  double d;
  if (napi_get_value_double(a->env, a->argv[i], &d) != napi_ok) return pl_fail(a, "argument %zu must be a number", i);
  if (d != d || d < -9007199254740992.0 || d > 9007199254740992.0 || (double)(int64_t)d != d)
    return pl_fail(a, "argument %zu must be an integer", i);
  *v = (int64_t)d;
  return true;
}

bool pl_double(pl_args* a, size_t i, double* v) {
  if (napi_get_value_double(a->env, a->argv[i], v) != napi_ok) return pl_fail(a, "argument %zu must be a number", i);
  return true;
}

bool pl_bool(pl_args* a, size_t i, bool* v) {
  if (napi_get_value_bool(a->env, a->argv[i], v) != napi_ok) return pl_fail(a, "argument %zu must be a boolean", i);
  return true;
}

bool pl_string(pl_args* a, size_t i, char* buf, size_t bufsize) {
  size_t n;
  if (napi_get_value_string_utf8(a->env, a->argv[i], buf, bufsize, &n) != napi_ok)
    return pl_fail(a, "argument %zu must be a string", i);
  return true;
}

bool pl_int_array(pl_args* a, size_t i, int64_t* out, size_t* n) {
  bool is_arr = false;
  napi_is_array(a->env, a->argv[i], &is_arr);
  if (!is_arr) return pl_fail(a, "argument %zu must be an array of integers", i);
  uint32_t len;
  napi_get_array_length(a->env, a->argv[i], &len);
  if (len > 16) return pl_fail(a, "argument %zu has %u entries, at most 16 are supported", i, len);
  for (uint32_t j = 0; j < len; j++) {
    napi_value e;
    double d;
    napi_get_element(a->env, a->argv[i], j, &e);
    if (napi_get_value_double(a->env, e, &d) != napi_ok || d < 0 || (double)(int64_t)d != d)
      return pl_fail(a, "argument %zu entry %u must be a non-negative integer", i, j);
    out[j] = (int64_t)d;
  }
  *n = len;
  return true;
}

bool pl_typed(pl_args* a, size_t i, napi_typedarray_type want, const char* what, void** ptr, size_t* len) {
  bool is_ta = false;
  napi_is_typedarray(a->env, a->argv[i], &is_ta);
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (is_ta) napi_get_typedarray_info(a->env, a->argv[i], &t, len, ptr, &ab, &off);
  if (!is_ta || t != want) return pl_fail(a, "argument %zu must be %s", i, what);
  return true;
}

bool pl_matrix_sizes(pl_args* a, int64_t M, int64_t N, int64_t K) {
  if (M < 0 || N < 0 || K < 0) return pl_fail(a, "sizes must be non-negative (M=%lld N=%lld K=%lld)", (long long)M, (long long)N, (long long)K);
  const double lim = 9007199254740992.0;
  if ((double)M * (double)K > lim || (double)N * (double)K > lim || (double)M * (double)N > lim) return pl_fail(a, "sizes are too large");
  return true;
}

bool pl_need(pl_args* a, const char* what, size_t len, int64_t need) {
  if (need < 0) return pl_fail(a, "%s: negative size %lld", what, (long long)need);
  if ((int64_t)len < need) return pl_fail(a, "%s needs %lld elements, got %zu", what, (long long)need, len);
  return true;
}

static napi_value g_kernels; /* object: kernel name -> "f32,..." */

void pl_export(napi_env env, napi_value exports, const char* name, napi_callback fn, const char* dtypes) {
  napi_value f, s;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
  napi_set_named_property(env, exports, name, f);
  napi_create_string_utf8(env, dtypes, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, g_kernels, name, s);
}

static napi_value js_num_threads(napi_env env, napi_callback_info info) {
  napi_value r;
  napi_create_int32(env, pl_num_threads(), &r);
  return r;
}

static napi_value js_set_num_threads(napi_env env, napi_callback_info info) {
  pl_args a;
  int64_t n;
  if (!pl_args_init(env, info, "setNumThreads", 1, &a) || !pl_int(&a, 0, &n)) return NULL;
  if (n < 1 || n > 256) { pl_fail(&a, "thread count %lld is out of range 1..256", (long long)n); return NULL; }
  pl_set_num_threads((int)n);
  return NULL;
}

static napi_value js_noop(napi_env env, napi_callback_info info) { return NULL; }

static napi_value init(napi_env env, napi_value exports) {
  napi_create_object(env, &g_kernels);
  napi_set_named_property(env, exports, "kernels", g_kernels);
  napi_value f;
  napi_create_function(env, "numThreads", NAPI_AUTO_LENGTH, js_num_threads, NULL, &f);
  napi_set_named_property(env, exports, "numThreads", f);
  napi_create_function(env, "setNumThreads", NAPI_AUTO_LENGTH, js_set_num_threads, NULL, &f);
  napi_set_named_property(env, exports, "setNumThreads", f);
  napi_create_function(env, "noop", NAPI_AUTO_LENGTH, js_noop, NULL, &f);
  napi_set_named_property(env, exports, "noop", f);

  napi_value cpu;
  napi_create_object(env, &cpu);
  napi_value b;
  napi_get_boolean(env, pl_cpu_avx2_fma(), &b); napi_set_named_property(env, cpu, "avx2fma", b);
  napi_get_boolean(env, pl_cpu_avx512f(), &b); napi_set_named_property(env, cpu, "avx512f", b);
  napi_get_boolean(env, pl_cpu_avx512bf16(), &b); napi_set_named_property(env, cpu, "avx512bf16", b);
  napi_get_boolean(env, pl_cpu_avx512vnni(), &b); napi_set_named_property(env, cpu, "avx512vnni", b);
  napi_set_named_property(env, exports, "cpu", cpu);

  pl_register_gemm(env, exports);
  pl_register_elementwise(env, exports);
  pl_register_fused(env, exports);
  pl_register_attention(env, exports);
  pl_register_paged(env, exports);
  pl_register_quant(env, exports);
  pl_register_quantdot(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
