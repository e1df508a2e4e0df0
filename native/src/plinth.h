/* Shared helpers for the Plinth native kernels: Node-API argument unpacking with validation,
 * kernel registration, the thread pool and CPU feature detection. No JS logic lives here. */
#ifndef PLINTH_H
#define PLINTH_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

/* ---- argument unpacking ---------------------------------------------------------------------
 * Every getter returns true on success; on failure it has already thrown a JS TypeError that names
 * the kernel and the argument, and the kernel must return NULL at once without touching memory. */
typedef struct {
  napi_env env;
  const char* kernel;
  size_t argc;
  napi_value argv[24];
} pl_args;

bool pl_args_init(napi_env env, napi_callback_info info, const char* kernel, size_t expected, pl_args* a);
bool pl_f32(pl_args* a, size_t i, float** ptr, size_t* len);
/* A Float32Array or null (ptr set to NULL, len 0). */
bool pl_f32_or_null(pl_args* a, size_t i, float** ptr, size_t* len);
bool pl_i32(pl_args* a, size_t i, int32_t** ptr, size_t* len);
/* Any typed array: data pointer, element count and element size in bytes. */
bool pl_any(pl_args* a, size_t i, void** ptr, size_t* len, size_t* elsize);
bool pl_int(pl_args* a, size_t i, int64_t* v);
bool pl_double(pl_args* a, size_t i, double* v);
bool pl_bool(pl_args* a, size_t i, bool* v);
bool pl_string(pl_args* a, size_t i, char* buf, size_t bufsize);
/* An array of non-negative integers (shape or strides), at most 16 entries. */
bool pl_int_array(pl_args* a, size_t i, int64_t* out, size_t* n);
/* A typed array of exactly this element type (Int8Array, Uint8Array, Uint16Array, ...); `what` names it in the error. */
bool pl_typed(pl_args* a, size_t i, napi_typedarray_type want, const char* what, void** ptr, size_t* len);
/* Matrix sizes M, N, K of a product: non-negative, and every pairwise product exact in a double. */
bool pl_matrix_sizes(pl_args* a, int64_t M, int64_t N, int64_t K);
/* Throws a RangeError "kernel: what (needs N elements, got M)" unless len >= need. */
bool pl_need(pl_args* a, const char* what, size_t len, int64_t need);
/* Throws a RangeError with a formatted message; always returns false. */
bool pl_fail(pl_args* a, const char* fmt, ...);

/* ---- registration ---------------------------------------------------------------------------
 * `dtypes` is a comma-separated list of the dtypes the kernel takes ("f32", "f32,i32,bf16,u8", ...);
 * the JS loader answers supports(kernel, dtype) from it. */
void pl_export(napi_env env, napi_value exports, const char* name, napi_callback fn, const char* dtypes);

/* Each kernel file defines one of these; addon.c calls them all. */
void pl_register_gemm(napi_env env, napi_value exports);
void pl_register_elementwise(napi_env env, napi_value exports);
void pl_register_fused(napi_env env, napi_value exports);
void pl_register_attention(napi_env env, napi_value exports);
void pl_register_paged(napi_env env, napi_value exports);
void pl_register_quant(napi_env env, napi_value exports);
void pl_register_quantdot(napi_env env, napi_value exports);

/* The float GEMM (gemm.c) for other kernels: C (M,N) = (acc ? C : 0) + op(A)·op(B) on contiguous
 * row-major operands, threaded as matmul is; false when a packing buffer cannot be allocated. */
bool pl_sgemm(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool acc);

/* ---- thread pool ----------------------------------------------------------------------------
 * A persistent pool: threads = available cores, PLINTH_THREADS overrides. pl_parallel_for splits
 * [0, n) into contiguous chunks of at least `grain` items and runs fn on them, the calling thread
 * taking part; it returns when every chunk is done. Calls from inside a running job run serially.
 * `thread` is the chunk's index: below pl_num_threads(), unique among running chunks, and the same
 * for the same range on every call (index per-thread scratch with it). */
typedef void (*pl_range_fn)(void* ctx, int64_t begin, int64_t end, int thread);
void pl_parallel_for(int64_t n, int64_t grain, pl_range_fn fn, void* ctx);
int pl_num_threads(void);
void pl_set_num_threads(int n);

/* ---- CPU features (run-time detection) -------------------------------------------------------- */
bool pl_cpu_avx2_fma(void);
bool pl_cpu_avx512f(void);
bool pl_cpu_avx512bf16(void);
bool pl_cpu_avx512vnni(void);

#endif
