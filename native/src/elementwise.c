/* elementwise kernels. */
#include "plinth.h"

void pl_register_elementwise(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
}
