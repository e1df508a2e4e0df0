/* attention kernels. */
#include "plinth.h"

void pl_register_attention(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
}
