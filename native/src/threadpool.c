/* A persistent thread pool. Workers spin briefly on a job generation counter (so back-to-back
 * kernels do not pay a wake-up each), then sleep on a condition variable. The caller runs chunk 0
 * itself and spins until the others finish. */
#include "plinth.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PL_PAUSE() _mm_pause()
#else
#define PL_PAUSE() ((void)0)
#endif

#define PL_MAX_THREADS 256
#define PL_SPIN_ITERS 20000

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static int g_threads = 0;          /* total threads including the caller */
static int g_started = 0;          /* worker threads started */
static atomic_uint_fast64_t g_generation;
static atomic_int g_remaining;
static _Thread_local int t_in_job = 0;

static pl_range_fn g_fn;
static void* g_ctx;
static int64_t g_n, g_chunk;
static int g_active;               /* threads taking part in the current job */

static void run_chunk(int tid) {
  int64_t b = (int64_t)tid * g_chunk;
  int64_t e = b + g_chunk;
  if (e > g_n) e = g_n;
  if (b < e) g_fn(g_ctx, b, e, tid);
}

static void* worker(void* arg) {
  int tid = (int)(intptr_t)arg;
  t_in_job = 1;
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen;
    int spins = 0;
    while ((gen = atomic_load_explicit(&g_generation, memory_order_acquire)) == seen) {
      if (++spins < PL_SPIN_ITERS) { PL_PAUSE(); continue; }
      pthread_mutex_lock(&g_lock);
      while ((gen = atomic_load_explicit(&g_generation, memory_order_acquire)) == seen)
        pthread_cond_wait(&g_wake, &g_lock);
      pthread_mutex_unlock(&g_lock);
      break;
    }
    seen = gen;
    if (tid < g_active) {
      run_chunk(tid);
      atomic_fetch_sub_explicit(&g_remaining, 1, memory_order_acq_rel);
    }
  }
  return NULL;
}

static int default_threads(void) {
  const char* s = getenv("PLINTH_THREADS");
  if (s) {
    int n = atoi(s);
    if (n >= 1 && n <= PL_MAX_THREADS) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > PL_MAX_THREADS) n = PL_MAX_THREADS;
  return (int)n;
}

int pl_num_threads(void) {
  if (g_threads == 0) g_threads = default_threads();
  return g_threads;
}

void pl_set_num_threads(int n) {
  if (n < 1) n = 1;
  if (n > PL_MAX_THREADS) n = PL_MAX_THREADS;
  g_threads = n;
}

static void ensure_workers(int want) {
  while (g_started < want - 1) {
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&th, &attr, worker, (void*)(intptr_t)(g_started + 1));
    pthread_attr_destroy(&attr);
    g_started++;
  }
}

void pl_parallel_for(int64_t n, int64_t grain, pl_range_fn fn, void* ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int threads = pl_num_threads();
  int64_t max_chunks = (n + grain - 1) / grain;
  int active = threads < max_chunks ? threads : (int)max_chunks;
  if (active <= 1 || t_in_job) {
    fn(ctx, 0, n, 0);
    return;
  }
  ensure_workers(active);
  g_fn = fn;
  g_ctx = ctx;
  g_n = n;
  g_chunk = (n + active - 1) / active;
  g_active = active;
  atomic_store_explicit(&g_remaining, active - 1, memory_order_release);
  pthread_mutex_lock(&g_lock);
  atomic_fetch_add_explicit(&g_generation, 1, memory_order_acq_rel);
  pthread_cond_broadcast(&g_wake);
  pthread_mutex_unlock(&g_lock);
  t_in_job = 1;
  run_chunk(0);
  t_in_job = 0;
  while (atomic_load_explicit(&g_remaining, memory_order_acquire) > 0) PL_PAUSE();
}
