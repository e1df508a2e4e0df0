/* A persistent thread pool for fork-join kernels.
 *
 * pl_parallel_for cuts [0, n) into one contiguous chunk per thread. Chunks are not tied to threads:
 * the caller and the workers claim them from a shared counter, so when a worker is slow to wake
 * (the machine is oversubscribed, or the worker was asleep) the caller runs the chunk itself
 * instead of waiting for it. The `thread` argument a chunk receives is its chunk index, which is
 * below pl_num_threads() and unique among running chunks: kernels index per-thread scratch with it,
 * and a given range always gets the same index, so per-thread partial sums stay deterministic.
 *
 * Workers spin briefly on the job generation (back-to-back kernels do not pay a wake-up each) and
 * then sleep on a condition variable; a caller left waiting for a chunk spins briefly and sleeps too. The generation is odd while the caller writes a new job; a
 * worker announces itself in `g_busy` before reading a job and re-checks the generation, and the
 * caller waits for `g_busy` to drain before overwriting the job, so a worker that wakes late can
 * never read a half-written job. */
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
/* About a third of a millisecond of PAUSEs before a worker sleeps. */
#define PL_SPIN_ITERS 20000
/* About 40 us of PAUSEs before a caller waiting for another thread's chunk sleeps. Sleeping
 * matters on a shared machine: when that thread has lost its core to another process, an idle
 * core is what lets the scheduler move it over, where a spinning caller would keep it waiting for
 * a whole time slice. */
#define PL_CALLER_SPIN_ITERS 2000

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;  /* guards sleeping workers */
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t g_caller = PTHREAD_MUTEX_INITIALIZER; /* one job at a time, from any JS thread */
static pthread_cond_t g_finished = PTHREAD_COND_INITIALIZER;  /* the last chunk of a job is done */
static atomic_int g_caller_sleeping;
static int g_threads = 0;                                   /* total threads including the caller */
static int g_started = 0;                                   /* worker threads started */
static atomic_uint_fast64_t g_generation;                   /* odd while a job is being written */
static atomic_int g_busy;                                   /* workers currently inside a job */
static atomic_int g_sleepers;                               /* workers waiting on g_wake */
static _Thread_local int t_in_job = 0;

/* the current job */
static pl_range_fn g_fn;
static void* g_ctx;
static int64_t g_n, g_chunk;
static int g_chunks;
static atomic_int g_next;  /* next chunk to claim */
static atomic_int g_done;  /* chunks finished */

/* Claims and runs chunks until none are left. */
static void run_chunks(void) {
  for (;;) {
    int c = atomic_fetch_add(&g_next, 1);
    if (c >= g_chunks) return;
    int64_t b = (int64_t)c * g_chunk;
    int64_t e = b + g_chunk < g_n ? b + g_chunk : g_n;
    g_fn(g_ctx, b, e, c);
    if (atomic_fetch_add(&g_done, 1) + 1 == g_chunks && atomic_load(&g_caller_sleeping)) {
      pthread_mutex_lock(&g_lock);
      pthread_cond_broadcast(&g_finished);
      pthread_mutex_unlock(&g_lock);
    }
  }
}

/* arg: the generation when the worker was created, so it joins the very next job */
static void* worker(void* arg) {
  t_in_job = 1;
  uint64_t seen = (uint64_t)(uintptr_t)arg;
  for (;;) {
    uint64_t gen;
    int spins = 0;
    while ((gen = atomic_load(&g_generation)) == seen || (gen & 1)) {
      if (++spins < PL_SPIN_ITERS) {
        PL_PAUSE();
        continue;
      }
      pthread_mutex_lock(&g_lock);
      atomic_fetch_add(&g_sleepers, 1);
      while ((gen = atomic_load(&g_generation)) == seen || (gen & 1)) pthread_cond_wait(&g_wake, &g_lock);
      atomic_fetch_sub(&g_sleepers, 1);
      pthread_mutex_unlock(&g_lock);
      break;
    }
    atomic_fetch_add(&g_busy, 1);
    if (atomic_load(&g_generation) == gen) {
      run_chunks();
      seen = gen;
    }
    atomic_fetch_sub(&g_busy, 1);
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
  uint64_t gen = atomic_load(&g_generation);
  while (g_started < want - 1) {
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, worker, (void*)(uintptr_t)gen);
    pthread_attr_destroy(&attr);
    if (rc != 0) return; /* fewer workers: the caller claims their chunks */
    g_started++;
  }
}

void pl_parallel_for(int64_t n, int64_t grain, pl_range_fn fn, void* ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int threads = pl_num_threads();
  int64_t max_chunks = (n + grain - 1) / grain;
  int chunks = threads < max_chunks ? threads : (int)max_chunks;
  /* nested calls, and calls while another JS thread owns the pool, run on the calling thread */
  if (chunks <= 1 || t_in_job || pthread_mutex_trylock(&g_caller) != 0) {
    fn(ctx, 0, n, 0);
    return;
  }
  ensure_workers(chunks);
  /* odd generation: workers keep off while the job is written */
  uint64_t gen = atomic_fetch_add(&g_generation, 1) + 1;
  while (atomic_load(&g_busy) > 0) PL_PAUSE();
  g_fn = fn;
  g_ctx = ctx;
  g_n = n;
  g_chunk = (n + chunks - 1) / chunks;
  g_chunks = (int)((n + g_chunk - 1) / g_chunk);
  atomic_store(&g_next, 0);
  atomic_store(&g_done, 0);
  atomic_store(&g_generation, gen + 1);
  if (atomic_load(&g_sleepers) > 0) {
    pthread_mutex_lock(&g_lock);
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_lock);
  }
  t_in_job = 1;
  run_chunks();
  t_in_job = 0;
  for (int spins = 0; atomic_load(&g_done) < g_chunks; spins++) {
    if (spins < PL_CALLER_SPIN_ITERS) {
      PL_PAUSE();
      continue;
    }
    pthread_mutex_lock(&g_lock);
    atomic_store(&g_caller_sleeping, 1);
    while (atomic_load(&g_done) < g_chunks) pthread_cond_wait(&g_finished, &g_lock);
    atomic_store(&g_caller_sleeping, 0);
    pthread_mutex_unlock(&g_lock);
  }
  pthread_mutex_unlock(&g_caller);
}
