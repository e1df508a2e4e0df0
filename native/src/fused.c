/* fused kernels. */
#include "plinth.h"

void pl_register_fused(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
}
