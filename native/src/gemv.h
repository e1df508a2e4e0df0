/* Matrix-vector and few-row products, C (m, n) (+)= A (m, K) · op(B), for gemm.c: the bodies are
 * written once here and compiled per instruction set. gemm.c includes this file once per ISA after
 * defining
 *   GV(name)        the function name with the ISA's suffix
 *   GV_TARGET       the function attribute selecting the ISA (empty for the portable build)
 *   GV_W            float lanes per vector;  gv_vec  the vector type
 *   GV_ACC          accumulator registers a kernel may use (the register file minus working ones)
 *   gv_zero() gv_set1(x) gv_load(p) gv_loadn(p, n) gv_loadhi(p, n) gv_storen(p, v, n) gv_add(a, b) gv_fma(a, b, c)
 *   gv_hsum(v) gv_hsum4(a, b, c, d, out) gv_prefetch(p)
 * where gv_loadn reads the first n (0 <= n <= GV_W) floats and zeros the other lanes without touching
 * their memory, gv_loadhi(p, n) likewise the last n lanes (floats p[GV_W − n] .. p[GV_W − 1]),
 * gv_storen writes only the first n lanes, and gv_hsum4 writes the four sums of
 * gv_hsum(a) .. gv_hsum(d) to out[0..3], bit for bit (a row's result must not depend on the tile
 * it was computed in: a sequence decodes the same alone or among others).
 *
 * Every weight is used once per row of A, so these products are bound by the memory traffic of B
 * (the weights), not by arithmetic: each kernel reads a block of B once and meets every row of A
 * while that block sits in L1, keeps several independent accumulators per row, and never packs B.
 *
 * transB (B stored (n, K): x·Wᵀ with W (out, in), as nn.Linear): C[i][j] is a dot product of two
 * contiguous rows. A tile of MT rows of A by R rows of B keeps MT·R vector accumulators, reads R
 * streams of B along k, and reduces each accumulator to its scalar at the end.
 * plain B (stored (K, n)): C[i][j0 .. j0 + V·W) is a sum of K scaled row pieces of B. A tile keeps
 * MT·V accumulators for V vectors of columns, walks B down k one row piece at a time, and
 * broadcasts A[i][k].
 * Work is split in units of GV_UNIT_ROWS rows of B (transB) or 8 vectors of columns (plain), so
 * that a unit is a whole number of tiles for every MT. */

/* Rows of B (transB) that the software prefetch runs ahead of the rows being read. */
#define GV_AHEAD 8

/* Accumulator tile for MT rows of A: R (or V) = GV_ACC / MT, rounded down to a power of two, at
 * most 8, so that a unit of 8 is always a whole number of tiles. */
#define GV_TILE(MT) ((GV_ACC) / (MT) >= 8 ? 8 : (GV_ACC) / (MT) >= 4 ? 4 : (GV_ACC) / (MT) >= 2 ? 2 : 1)

/* Elements from p up to the next vector boundary (0 on one). */
static inline int GV(head)(const float* p) { return (int)((GV_W - ((uintptr_t)p / sizeof(float)) % GV_W) % GV_W); }

/* C[i][r] (+)= Σ_k a[i·lda + k] · b[r·ldb + k] for i < m <= MT, r < n <= R. Rows past m or n
 * repeat row 0 (harmless extra work on data already in cache) and are not stored.
 * With head > 0 (b + head on a vector boundary, head <= K) the loads start at b + head − GV_W, the
 * lanes before b masked off: element k lands in lane (k − head) mod GV_W instead of k mod GV_W, in
 * the same order, so every lane sums the same terms as without the shift, and the reductions
 * (halves, quarters, ... neighbours) pair the same lanes: the result is the same bit for bit, not
 * dependent on where the buffers lie (a model reloaded elsewhere gives identical logits). */
GV_TARGET static inline __attribute__((always_inline)) void GV(dots)(const int MT, const int R, const float* a,
                                                                   int64_t lda, int m, const float* b, int64_t ldb,
                                                                   int n, int64_t K, int head, float* c, int64_t ldc,
                                                                   bool add) {
  const float* ar[4];
  const float* br[8];
  for (int i = 0; i < MT; i++) ar[i] = a + (i < m ? i : 0) * lda;
  for (int r = 0; r < R; r++) br[r] = b + (r < n ? r : 0) * ldb;
  gv_vec acc[4][8];
  for (int i = 0; i < MT; i++)
    for (int r = 0; r < R; r++) acc[i][r] = gv_zero();
  int64_t k = head;
  if (k > 0) {
    gv_vec bv[8];
    for (int r = 0; r < R; r++) bv[r] = gv_loadhi(br[r] + k - GV_W, k);
    for (int i = 0; i < MT; i++) {
      gv_vec av = gv_loadhi(ar[i] + k - GV_W, k);
      for (int r = 0; r < R; r++) acc[i][r] = gv_fma(av, bv[r], acc[i][r]);
    }
  }
  /* B's rows are contiguous in memory, so the rows GV_AHEAD further on are the next to be read;
   * fetching them now keeps the memory system busy across 4 KB page boundaries, where the
   * hardware prefetcher stops (1.3x on one row of A, 1.8x on four) */
  const int64_t ahead = GV_AHEAD * ldb;
  for (; k + GV_W <= K; k += GV_W) {
    gv_vec bv[8];
    for (int r = 0; r < R; r++) {
      bv[r] = gv_load(br[r] + k);
      gv_prefetch(br[r] + k + ahead);
    }
    for (int i = 0; i < MT; i++) {
      gv_vec av = gv_load(ar[i] + k);
      for (int r = 0; r < R; r++) acc[i][r] = gv_fma(av, bv[r], acc[i][r]);
    }
  }
  if (k < K) {
    int64_t rest = K - k;
    gv_vec bv[8];
    for (int r = 0; r < R; r++) bv[r] = gv_loadn(br[r] + k, rest);
    for (int i = 0; i < MT; i++) {
      gv_vec av = gv_loadn(ar[i] + k, rest);
      for (int r = 0; r < R; r++) acc[i][r] = gv_fma(av, bv[r], acc[i][r]);
    }
  }
  for (int i = 0; i < m; i++) {
    float s[8] = {0};
    int r = 0;
    for (; r + 4 <= R; r += 4) gv_hsum4(acc[i][r], acc[i][r + 1], acc[i][r + 2], acc[i][r + 3], s + r);
    for (; r < R; r++) s[r] = gv_hsum(acc[i][r]);
    for (r = 0; r < n; r++) c[i * ldc + r] = add ? c[i * ldc + r] + s[r] : s[r];
  }
}

/* C[i][x] (+)= Σ_k a[i·lda + k] · b[k·ldb + x] for i < m <= MT, x < cols <= V·W. Rows past m
 * repeat row 0 and are not stored; columns past cols are neither read nor written. */
GV_TARGET static inline __attribute__((always_inline)) void GV(axpys)(const int MT, const int V, const float* a,
                                                                    int64_t lda, int m, const float* b, int64_t ldb,
                                                                    int64_t cols, int64_t K, float* c, int64_t ldc,
                                                                    bool add) {
  const float* ar[4];
  for (int i = 0; i < MT; i++) ar[i] = a + (i < m ? i : 0) * lda;
  gv_vec acc[4][8];
  for (int i = 0; i < MT; i++)
    for (int v = 0; v < V; v++) acc[i][v] = gv_zero();
  if (cols == (int64_t)V * GV_W) {
    for (int64_t k = 0; k < K; k++) {
      const float* bk = b + k * ldb;
      gv_vec bv[8];
      for (int v = 0; v < V; v++) bv[v] = gv_load(bk + v * GV_W);
      for (int i = 0; i < MT; i++) {
        gv_vec av = gv_set1(ar[i][k]);
        for (int v = 0; v < V; v++) acc[i][v] = gv_fma(av, bv[v], acc[i][v]);
      }
    }
  } else {
    int64_t cnt[8];
    for (int v = 0; v < V; v++) {
      int64_t left = cols - (int64_t)v * GV_W;
      cnt[v] = left < 0 ? 0 : left > GV_W ? GV_W : left;
    }
    for (int64_t k = 0; k < K; k++) {
      const float* bk = b + k * ldb;
      gv_vec bv[8];
      for (int v = 0; v < V; v++) bv[v] = gv_loadn(bk + v * GV_W, cnt[v]);
      for (int i = 0; i < MT; i++) {
        gv_vec av = gv_set1(ar[i][k]);
        for (int v = 0; v < V; v++) acc[i][v] = gv_fma(av, bv[v], acc[i][v]);
      }
    }
  }
  for (int i = 0; i < m; i++)
    for (int v = 0; v < V; v++) {
      int64_t x = (int64_t)v * GV_W;
      if (x >= cols) break;
      int64_t n = cols - x < GV_W ? cols - x : GV_W;
      float* cp = c + i * ldc + x;
      gv_vec r = add ? gv_add(gv_loadn(cp, n), acc[i][v]) : acc[i][v];
      gv_storen(cp, r, n);
    }
}

/* One row group (MT rows of A, fixed at compile time) over rows or columns [j0, j1) of op(B). */
#define GV_GROUP(MT)                                                                                  \
  GV_TARGET static void GV(group##MT)(const float* a, int64_t lda, int m, const float* b, bool tb,     \
                                      int64_t ldb, int64_t K, int head, float* c, int64_t ldc,          \
                                      int64_t j0, int64_t j1, bool add) {                               \
    const int T = GV_TILE(MT);                                                                        \
    if (tb) {                                                                                         \
      for (int64_t j = j0; j < j1; j += T)                                                            \
        GV(dots)(MT, T, a, lda, m, b + j * ldb, ldb, j1 - j < T ? (int)(j1 - j) : T, K, head, c + j,    \
                 ldc, add);                                                                           \
    } else {                                                                                          \
      for (int64_t j = j0; j < j1; j += (int64_t)T * GV_W) {                                          \
        int64_t cols = j1 - j < (int64_t)T * GV_W ? j1 - j : (int64_t)T * GV_W;                       \
        GV(axpys)(MT, T, a, lda, m, b + j, ldb, cols, K, c + j, ldc, add);                            \
      }                                                                                               \
    }                                                                                                 \
  }
GV_GROUP(1)
GV_GROUP(2)
GV_GROUP(3)
GV_GROUP(4)
#undef GV_GROUP

/* C (M, ·) (+)= A (M, K) · op(B) over rows (transB) or columns [j0, j1) of op(B): for each unit of B
 * (8 rows, or 8 vectors of columns, which stay in L1), every group of up to 4 rows of A.
 * A load that straddles two cache lines costs two, and Node's large buffers start 16 bytes past a
 * page (32 rows with A and B both off ran at 0.68x the speed of both aligned): when B's rows lie a
 * whole number of vectors apart, the loads start at the vector boundary before each row (masked) so
 * that all of B's loads are aligned (and A's when A has the same offset: small_m_run). */
GV_TARGET static void GV(small_m)(const float* a, int64_t lda, int64_t M, const float* b, bool tb, int64_t ldb,
                                  int64_t K, float* c, int64_t ldc, int64_t j0, int64_t j1, bool add) {
  const int64_t unit = tb ? 8 : 8 * GV_W;
  const int head = tb && ldb % GV_W == 0 && K >= GV_W ? GV(head)(b) : 0;
  for (int64_t u = j0; u < j1; u += unit) {
    int64_t ue = j1 - u < unit ? j1 : u + unit;
    for (int64_t i = 0; i < M; i += 4) {
      int m = M - i < 4 ? (int)(M - i) : 4;
      const float* ai = a + i * lda;
      float* ci = c + i * ldc;
      switch (m) {
        case 1: GV(group1)(ai, lda, m, b, tb, ldb, K, head, ci, ldc, u, ue, add); break;
        case 2: GV(group2)(ai, lda, m, b, tb, ldb, K, head, ci, ldc, u, ue, add); break;
        case 3: GV(group3)(ai, lda, m, b, tb, ldb, K, head, ci, ldc, u, ue, add); break;
        default: GV(group4)(ai, lda, m, b, tb, ldb, K, head, ci, ldc, u, ue, add); break;
      }
    }
  }
}
