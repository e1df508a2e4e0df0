// The native GEMM against the ref kernel on random shapes: odd and prime sizes, 1s, all four
// transpose combinations, batches with stride-0 broadcast, accumulate on and off, and sizes that
// cross every cache block (KC = 320 depth, MB = 1200 rows, NB = 256 columns per thread) and every
// microkernel tile (12x32 AVX-512, 6x16 AVX2, 4x8 scalar), and the few-row path (M <= 32 or N = 1)
// that reads B in place.
// The same checks rerun in child processes with PLINTH_ISA=avx2 and PLINTH_ISA=scalar, and with
// one thread, so every path runs in `npm test`.
// Without the native addon the ref kernel itself is checked against a naive float64 loop.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { loadAddon } from '../../src/backend/native/index.js';
import type { Backend } from '../../src/backend/backend.js';

const addon = loadAddon();
// Set in the child processes that rerun the checks on a capped instruction set or thread count.
const CHILD = process.env.PLINTH_GEMM_CHILD === '1';
const EPS = 2 ** -23;

type Matmul = Backend['matmul'];

interface Case {
  M: number; N: number; K: number;
  transA: boolean; transB: boolean;
  batch: number;
  /** which operands are broadcast over the batch (stride 0) */
  broadcast: '' | 'a' | 'b' | 'c';
  accumulate: boolean;
  /** floats from the start of their buffers at which a and b begin (default 0) */
  offset?: [number, number];
}

const name = (c: Case): string =>
  `M=${c.M} N=${c.N} K=${c.K}${c.transA ? ' transA' : ''}${c.transB ? ' transB' : ''} batch=${c.batch}` +
  `${c.broadcast ? ` broadcast ${c.broadcast}` : ''}${c.accumulate ? ' accumulate' : ''}${c.offset ? ` offsets ${c.offset}` : ''}`;

/** Seeded uniform values in [-1, 1). */
function random(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

// Every size set crosses a different boundary; each runs with all four transpose combinations.
const SIZES: [number, number, number][] = [
  [1, 1, 1], [1, 1, 7], [1, 37, 1], [29, 1, 3], [2, 3, 5],
  [12, 32, 320], [13, 33, 321], // exactly one AVX-512 tile and one KC block, then one past each
  [6, 16, 8], [7, 17, 9], [4, 8, 2], [5, 9, 3], // AVX2 and scalar tiles and one past
  [1, 1031, 131], [1, 64, 700], [3, 200, 77], // one row (matrix-vector) and a few rows (unpacked B)
  [7, 2100, 2000], // a few rows times a large B: dot products when transB
  [131, 1, 257], [1000, 1, 300], [23, 2, 641], // one or two columns (matrix-vector)
  [64, 64, 32], [97, 101, 103], [127, 131, 67], // primes, one thread (below the parallel threshold)
  [40, 70, 700], // three KC blocks
  // from here on big enough (>= 2^22 multiply-adds) for both threads
  [163, 167, 173], // primes
  [1201, 70, 60], // two MB row blocks
  [24, 1100, 170], [1000, 1000, 5], // over NB columns per part, many column parts
  [700, 20, 400], // one column panel: threads split rows
  // few rows (M <= 32, B read in place): every row-group size, tiles of B rows and column vectors
  // and their ragged ends, K below and across a vector, and (K·N >= 2^16) both threads
  [2, 13, 5], [3, 9, 17], [4, 33, 16], [5, 130, 33], [6, 7, 100], [7, 129, 15], [8, 17, 47],
  [9, 65, 31], [12, 31, 64], [15, 19, 21], [16, 257, 19], [17, 40, 9], [31, 11, 29], [32, 33, 7], [33, 5, 23],
  [1, 1001, 67], [3, 300, 229], [13, 140, 500],
];

function cases(): Case[] {
  const out: Case[] = [];
  let i = 0;
  for (const [M, N, K] of SIZES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        out.push({ M, N, K, transA, transB, batch: 1, broadcast: '', accumulate: i++ % 3 === 1 });
      }
    }
  }
  // batched: even and odd batch counts (whole GEMMs per thread, or each GEMM split), broadcasts,
  // and stride-0 C with accumulate (the products summed into one matrix, in batch order)
  out.push(
    { M: 17, N: 19, K: 23, transA: false, transB: false, batch: 4, broadcast: '', accumulate: false },
    // whole GEMMs per thread; each GEMM split over threads; products summed into one C in order
    { M: 100, N: 90, K: 120, transA: false, transB: true, batch: 4, broadcast: '', accumulate: false },
    { M: 100, N: 90, K: 120, transA: true, transB: false, batch: 5, broadcast: 'a', accumulate: true },
    { M: 160, N: 170, K: 163, transA: false, transB: false, batch: 3, broadcast: 'b', accumulate: false },
    { M: 160, N: 170, K: 163, transA: true, transB: true, batch: 2, broadcast: 'c', accumulate: true },
    { M: 17, N: 19, K: 23, transA: true, transB: false, batch: 3, broadcast: 'a', accumulate: true },
    { M: 33, N: 40, K: 65, transA: false, transB: true, batch: 2, broadcast: 'b', accumulate: false },
    { M: 70, N: 90, K: 130, transA: true, transB: true, batch: 3, broadcast: 'b', accumulate: true },
    { M: 5, N: 7, K: 9, transA: false, transB: false, batch: 7, broadcast: 'a', accumulate: false },
    { M: 64, N: 48, K: 80, transA: false, transB: false, batch: 6, broadcast: '', accumulate: true },
    { M: 24, N: 50, K: 31, transA: true, transB: false, batch: 5, broadcast: 'c', accumulate: true },
    { M: 9, N: 11, K: 13, transA: false, transB: true, batch: 3, broadcast: 'c', accumulate: false },
    { M: 1, N: 37, K: 50, transA: false, transB: true, batch: 3, broadcast: 'a', accumulate: false },
    { M: 1, N: 300, K: 500, transA: true, transB: false, batch: 2, broadcast: 'b', accumulate: true },
    { M: 40, N: 1, K: 33, transA: true, transB: false, batch: 4, broadcast: 'b', accumulate: true },
    { M: 1, N: 1, K: 100, transA: false, transB: false, batch: 3, broadcast: 'c', accumulate: true },
    // few rows: products sharing C (in order), split over (product, unit) items, N = 1 with transA
    { M: 3, N: 70, K: 33, transA: false, transB: true, batch: 3, broadcast: 'c', accumulate: true },
    { M: 1, N: 600, K: 130, transA: false, transB: false, batch: 4, broadcast: 'a', accumulate: false },
    { M: 6, N: 300, K: 70, transA: false, transB: true, batch: 5, broadcast: 'b', accumulate: true },
    { M: 5, N: 1, K: 300, transA: true, transB: false, batch: 2, broadcast: 'b', accumulate: false },
    { M: 3, N: 4, K: 0, transA: false, transB: false, batch: 2, broadcast: '', accumulate: false },
    { M: 3, N: 4, K: 0, transA: false, transB: false, batch: 2, broadcast: '', accumulate: true },
  );
  // few rows against B's rows (x·Wᵀ), K a whole number of vectors, a and b starting at offsets from
  // a vector boundary: the kernel aligns B's loads past a masked head and copies A to B's offset
  for (const [M, N, K, offA, offB] of [[32, 40, 64, 0, 3], [1, 37, 48, 5, 5], [7, 20, 80, 1, 0], [17, 9, 32, 4, 13], [4, 33, 1376, 13, 7]]) {
    out.push({ M, N, K, transA: false, transB: true, batch: 1, broadcast: '', accumulate: offA % 2 === 1, offset: [offA, offB] });
  }
  return out;
}

interface Operands { a: Float32Array; b: Float32Array; c0: Float32Array; sa: number; sb: number; sc: number }

function operands(c: Case, seed: number): Operands {
  const sa = c.broadcast === 'a' ? 0 : c.M * c.K;
  const sb = c.broadcast === 'b' ? 0 : c.K * c.N;
  const sc = c.broadcast === 'c' ? 0 : c.M * c.N;
  const [offA, offB] = c.offset ?? [0, 0];
  return {
    a: random(offA + (c.batch - 1) * sa + c.M * c.K, seed).subarray(offA),
    b: random(offB + (c.batch - 1) * sb + c.K * c.N, seed + 1).subarray(offB),
    c0: random((c.batch - 1) * sc + c.M * c.N, seed + 2),
    sa, sb, sc,
  };
}

/** The plain triple loop in float64, independent of every backend. */
const naive: Matmul = (a, b, c, M, N, K, transA, transB, batch, sA, sB, sC, accumulate) => {
  for (let p = 0; p < batch; p++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          s += (transA ? a[p * sA + k * M + i] : a[p * sA + i * K + k]) * (transB ? b[p * sB + j * K + k] : b[p * sB + k * N + j]);
        }
        c[p * sC + i * N + j] = (accumulate ? c[p * sC + i * N + j] : 0) + s;
      }
    }
  }
};

/**
 * Runs `impl` in float32 and `oracle` in float64 on the case, and asserts every entry within
 * 2·√(K+1)·ε·(Σ_k |a_ik||b_kj| + |c0_ij|): a summation-order error budget scaled by the operands,
 * far below the size of any one missing or doubled term.
 */
function check(impl: Matmul, oracle: Matmul, c: Case, seed: number): void {
  const { a, b, c0, sa, sb, sc } = operands(c, seed);
  const args = [c.M, c.N, c.K, c.transA, c.transB, c.batch, sa, sb, sc, c.accumulate] as const;
  const got = c0.slice();
  impl(a, b, got, ...args);
  const want = Float64Array.from(c0);
  oracle(Float64Array.from(a), Float64Array.from(b), want, ...args);
  // magnitudes: the same product on |a|, |b|, |c0| (accumulating exactly as the case does)
  const mag = Float64Array.from(c0, Math.abs);
  oracle(Float64Array.from(a, Math.abs), Float64Array.from(b, Math.abs), mag, ...args);
  const budget = 2 * Math.sqrt(c.K + 1) * EPS;
  let bad = 0;
  const first: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const tol = budget * mag[i]! + 1e-30;
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= tol)) {
      bad++;
      if (first.length < 5) first.push(`[${i}] got ${got[i]} expected ${want[i]} (tol ${tol.toExponential(2)})`);
    }
  }
  assert.equal(bad, 0, `${name(c)}: ${bad} of ${want.length} entries off; first: ${first.join('; ')}`);
}

if (!CHILD) {
  describe('ref matmul against a naive float64 loop', () => {
    for (const [i, c] of cases().filter((x) => x.M * x.N * x.K * x.batch <= 2e5).entries()) {
      test(name(c), () => check(R.matmul, naive, c, 100 + i));
    }
  });
}

if (addon) {
  const matmul = addon.matmul as Matmul;

  describe('native matmul against ref', () => {
    test('the addon provides matmul for f32 on the requested instruction set', () => {
      assert.equal(addon.kernels.matmul, 'f32');
      if (process.env.PLINTH_ISA === 'avx2') assert.equal(addon.cpu.avx512f, false);
      if (process.env.PLINTH_ISA === 'scalar') assert.equal(addon.cpu.avx2fma, false);
    });
    for (const [i, c] of cases().entries()) {
      test(name(c), () => check(matmul, R.matmul, c, 1 + i));
    }
    test('repeated calls of one size give identical results (reused packing buffers)', () => {
      const c: Case = { M: 97, N: 101, K: 400, transA: false, transB: true, batch: 1, broadcast: '', accumulate: false };
      const { a, b, c0 } = operands(c, 7);
      const first = c0.slice(), second = c0.slice();
      matmul(a, b, first, c.M, c.N, c.K, c.transA, c.transB, 1, 0, 0, 0, false);
      matmul(random(5000, 9), random(5000, 10), new Float32Array(50 * 50), 50, 50, 100, true, false, 1, 0, 0, 0, false);
      matmul(a, b, second, c.M, c.N, c.K, c.transA, c.transB, 1, 0, 0, 0, false);
      assert.deepEqual(second, first);
    });
    test('few rows: each row of x·Wᵀ is bit for bit the same whatever rows it is computed with', () => {
      // a sequence decodes the same alone as in a batch of 32: tiles of 1 to 4 rows reduce alike
      const N = 45, K = 528;
      const w = random(3 + N * K, 11).subarray(3);
      const x = random(1 + 32 * K, 12).subarray(1);
      const all = new Float32Array(32 * N);
      matmul(x, w, all, 32, N, K, false, true, 1, 0, 0, 0, false);
      for (const [i0, m] of [[0, 1], [5, 1], [31, 1], [2, 3], [8, 5], [17, 15]]) {
        const part = new Float32Array(m * N);
        matmul(x.subarray(i0 * K, (i0 + m) * K), w, part, m, N, K, false, true, 1, 0, 0, 0, false);
        assert.deepEqual(part, all.subarray(i0 * N, (i0 + m) * N), `rows ${i0}..${i0 + m - 1}`);
      }
    });
    test('few rows: x·Wᵀ is bit for bit the same wherever its operands lie in memory', () => {
      // the kernel aligns its loads to the buffers; a model reloaded elsewhere must give identical logits
      const M = 6, N = 21, K = 96;
      const x = random(M * K, 13), w = random(N * K, 14);
      const at = (offX: number, offW: number) => {
        const xs = new Float32Array(offX + M * K), ws = new Float32Array(offW + N * K);
        xs.set(x, offX);
        ws.set(w, offW);
        const out = new Float32Array(M * N);
        matmul(xs.subarray(offX), ws.subarray(offW), out, M, N, K, false, true, 1, 0, 0, 0, false);
        return out;
      };
      const want = at(0, 0);
      for (let off = 1; off < 16; off++) {
        assert.deepEqual(at(off, off), want, `both at offset ${off}`);
        assert.deepEqual(at(0, off), want, `W at offset ${off}`);
      }
    });
    test('subarray views read and write at their offsets', () => {
      const c: Case = { M: 13, N: 35, K: 17, transA: false, transB: false, batch: 1, broadcast: '', accumulate: false };
      const { a, b } = operands(c, 3);
      const big = new Float32Array(10 + c.M * c.N + 10).fill(5);
      matmul(a, b, big.subarray(10, 10 + c.M * c.N), c.M, c.N, c.K, false, false, 1, 0, 0, 0, false);
      const want = new Float32Array(c.M * c.N);
      R.matmul(a, b, want, c.M, c.N, c.K, false, false, 1, 0, 0, 0, false);
      assert.deepEqual([...big.subarray(0, 10), ...big.subarray(10 + c.M * c.N)], new Array(20).fill(5));
      const got = big.subarray(10, 10 + c.M * c.N);
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5, `entry ${i}`);
    });
    test('bad arguments throw instead of touching memory', () => {
      const a = new Float32Array(12), b = new Float32Array(12), c = new Float32Array(9);
      assert.throws(() => matmul(a, b, c, 3, 3, 5, false, false, 1, 0, 0, 0, false), /a needs 15 elements/);
      assert.throws(() => matmul(a, b, c, 3, 3, 4, false, false, 2, 0, 0, 9, false), /c needs 18 elements/);
      assert.throws(() => matmul(a, b, c, -1, 3, 4, false, false, 1, 0, 0, 0, false), /non-negative/);
      assert.throws(() => matmul(a, b, c, 3, 3, 4, false, false, 1, -4, 0, 0, false), /non-negative/);
      assert.throws(() => matmul(a, b, c, 3.5, 3, 4, false, false, 1, 0, 0, 0, false), /integer/);
      assert.throws(() => matmul(new Float64Array(12), b, c, 3, 3, 4, false, false, 1, 0, 0, 0, false), /element type/);
      assert.throws(() => (matmul as (...x: unknown[]) => void)(a, b, c, 3, 3, 4), /expected 13 arguments/);
      assert.throws(() => matmul(a, b, c, 2 ** 40, 2 ** 40, 4, false, false, 1, 0, 0, 0, false), /too large/);
    });
  });

  if (!CHILD) {
    describe('native matmul on every instruction set and on one thread', () => {
      // CPU detection and the thread count are fixed per process, so each variant reruns this
      // file in a child process.
      const variants: [string, NodeJS.ProcessEnv][] = [
        ['PLINTH_ISA=avx2', { PLINTH_ISA: 'avx2' }],
        ['PLINTH_ISA=scalar', { PLINTH_ISA: 'scalar' }],
        ['PLINTH_THREADS=1', { PLINTH_THREADS: '1' }],
      ];
      for (const [label, extra] of variants) {
        test(label, () => {
          const env: NodeJS.ProcessEnv = { ...process.env, ...extra, PLINTH_GEMM_CHILD: '1' };
          delete env.NODE_TEST_CONTEXT; // the child reports on its own, not to this runner
          const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env, encoding: 'utf8' });
          assert.equal(r.status, 0, `the native checks failed with ${label}:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
          assert.match(r.stdout, /# fail 0/);
        });
      }
    });
  }
}
