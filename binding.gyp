{
  "targets": [
    {
      "target_name": "plinth",
      "sources": [
        "native/src/addon.c",
        "native/src/cpu.c",
        "native/src/threadpool.c",
        "native/src/gemm.c",
        "native/src/elementwise.c",
        "native/src/fused.c",
        "native/src/attention.c",
        "native/src/paged.c",
        "native/src/quant.c",
        "native/src/quantdot.c",
        "native/src/vk_avx512.c",
        "native/src/vk_avx2.c",
        "native/src/vk_scalar.c"
      ],
      "cflags": ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-parameter"],
      "cflags!": ["-O2", "-O0", "-fno-exceptions"],
      "ldflags": ["-lpthread", "-lm"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
