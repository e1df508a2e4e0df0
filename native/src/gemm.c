/* GEMM. Placeholder: a correct, unoptimised loop nest, parallel over rows of C. */
#include "plinth.h"

typedef struct {
  const float *a, *b;
  float* c;
  int64_t M, N, K, sa, sb, sc;
  bool ta, tb, acc;
} gemm_job;

static void gemm_rows(void* ctx, int64_t begin, int64_t end, int thread) {
  gemm_job* j = (gemm_job*)ctx;
  (void)thread;
  for (int64_t r = begin; r < end; r++) {
    int64_t p = r / j->M, i = r % j->M;
    const float* A = j->a + p * j->sa;
    const float* B = j->b + p * j->sb;
    float* C = j->c + p * j->sc + i * j->N;
    for (int64_t n = 0; n < j->N; n++) {
      float s = 0;
      for (int64_t k = 0; k < j->K; k++) {
        float av = j->ta ? A[k * j->M + i] : A[i * j->K + k];
        float bv = j->tb ? B[n * j->K + k] : B[k * j->N + n];
        s += av * bv;
      }
      C[n] = j->acc ? C[n] + s : s;
    }
  }
}

/* matmul(a, b, c, M, N, K, transA, transB, batch, strideA, strideB, strideC, accumulate) */
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  pl_args a;
  float *A, *B, *C;
  size_t la, lb, lc;
  int64_t M, N, K, batch, sa, sb, sc;
  bool ta, tb, acc;
  if (!pl_args_init(env, info, "matmul", 13, &a) || !pl_f32(&a, 0, &A, &la) || !pl_f32(&a, 1, &B, &lb) ||
      !pl_f32(&a, 2, &C, &lc) || !pl_int(&a, 3, &M) || !pl_int(&a, 4, &N) || !pl_int(&a, 5, &K) ||
      !pl_bool(&a, 6, &ta) || !pl_bool(&a, 7, &tb) || !pl_int(&a, 8, &batch) || !pl_int(&a, 9, &sa) ||
      !pl_int(&a, 10, &sb) || !pl_int(&a, 11, &sc) || !pl_bool(&a, 12, &acc))
    return NULL;
  if (M < 0 || N < 0 || K < 0 || batch < 0 || sa < 0 || sb < 0 || sc < 0) { pl_fail(&a, "negative size"); return NULL; }
  if (batch == 0 || M == 0 || N == 0) return NULL;
  if (!pl_need(&a, "a", la, (batch - 1) * sa + M * K) || !pl_need(&a, "b", lb, (batch - 1) * sb + K * N) ||
      !pl_need(&a, "c", lc, (batch - 1) * sc + M * N))
    return NULL;
  gemm_job j = {A, B, C, M, N, K, sa, sb, sc, ta, tb, acc};
  pl_parallel_for(batch * M, 1, gemm_rows, &j);
  return NULL;
}

void pl_register_gemm(napi_env env, napi_value exports) {
  pl_export(env, exports, "matmul", js_matmul, "f32");
}
