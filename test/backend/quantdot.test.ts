// Kernels with rounded activations (int8LinearQ8, bf16LinearDot): the ref kernel against the
// definition (x quantized by hand, ties away from zero) and against the exact product within the
// rounding bounds; native against ref bit for bit (int8LinearQ8) or within f32 summation error
// (bf16LinearDot) on odd shapes: M = 1, 3, 17, 40, K no multiple of 32 or 64, N no multiple of a
// tile. Rerun in child processes with PLINTH_ISA=avx2 and =scalar so every path runs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { quantizeRowQ8 } from '../../src/backend/ref/quantdot.js';
import { createNativeBackend, loadAddon } from '../../src/backend/native/index.js';
import type { Backend } from '../../src/backend/backend.js';
import { int8Scales, quantizeInt8 } from '../../src/quant/index.js';
import { assertClose, lcgUniform, rerunOnEveryIsa } from '../helpers.js';

const addon = loadAddon();
const native = addon ? (createNativeBackend(addon) as Backend) : null;
const ISA_CHILD = process.env.PLINTH_QUANTDOT_ISA_CHILD === '1';

const rand = lcgUniform;

/** x with the spread of activations: a few large outliers, some exact zeros, an all-zero block. */
function activations(M: number, K: number, seed: number): Float32Array {
  const x = rand(M * K, seed);
  for (let i = 0; i < x.length; i++) {
    if (i % 97 === 5) x[i] *= 30;
    if (i % 13 === 0) x[i] = 0;
  }
  if (K >= 64) x.fill(0, 32, 64);
  return x;
}

function int8Weights(N: number, K: number, seed: number) {
  const q = quantizeInt8(rand(N * K, seed, 0.1), N, K);
  const w = q.q;
  if (w.length > 3) w[3] = -128; // the full int8 range, though quantizeInt8 stays within ±127
  return { w, scale: int8Scales(q.scb) };
}

function bf16Weights(N: number, K: number, seed: number): Uint16Array {
  const w = new Uint16Array(N * K);
  R.cast(rand(N * K, seed, 0.1), 'f32', w, 'bf16', N * K);
  return w;
}

/** Same values, NaN included (=== treats −0 and 0 as equal). */
function assertSame(got: Float32Array, want: Float32Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      assert.fail(`${what}: [${i}] got ${got[i]} expected ${want[i]}`);
    }
  }
}

// [M, N, K]
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 16, 32], [1, 17, 64], [1, 33, 100], [3, 40, 96], [3, 5, 31], [1, 64, 1376],
  [17, 19, 160], [2, 31, 33], [40, 48, 130], [5, 3, 257], [4, 70, 64],
];

describe('int8LinearQ8 (ref) against its definition', () => {
  if (ISA_CHILD) return;
  test('quantization of x: d = absmax/127, ties away from zero, clamped, NaN to 0', () => {
    // absmax 127 gives d = 1, so x·(1/d) = x and the ties are exact
    const x = new Float32Array([127, 2.5, -2.5, 0.5, -0.5, 1.4999999, -126.5, 3.2, NaN]);
    const q = new Int8Array(9), d = new Float32Array(1);
    quantizeRowQ8(x, 9, q, d);
    assert.equal(d[0], 1);
    assert.deepEqual([...q], [127, 3, -3, 1, -1, 1, -127, 3, 0]);
    // a second block has its own scale; an all-zero block has d = 0 and q = 0
    const x2 = new Float32Array(70);
    x2[0] = 1; x2[1] = -0.25; x2[64] = 0.01;
    const q2 = new Int8Array(70), d2 = new Float32Array(3);
    quantizeRowQ8(x2, 70, q2, d2);
    assert.deepEqual([...d2], [Math.fround(1 / 127), 0, Math.fround(0.01 / 127)]);
    assert.deepEqual([q2[0], q2[1], q2[64]], [127, -32, 127]); // −0.25·127 = −31.75
  });

  test('y = scale · Σ_b d_b · S_b with exact integer block sums', () => {
    // K = 40: blocks of 32 and 8; w is all 1 in row 0, alternating ±2 in row 1
    const K = 40, x = new Float32Array(K);
    for (let k = 0; k < K; k++) x[k] = k < 32 ? (k % 2 ? -1 : 2) * (k / 31) : 0.5;
    const w = new Int8Array(2 * K);
    for (let k = 0; k < K; k++) { w[k] = 1; w[K + k] = k % 2 ? -2 : 2; }
    const scale = new Float32Array([0.5, 3]);
    const q = new Int8Array(K), d = new Float32Array(2);
    quantizeRowQ8(x, K, q, d);
    const y = new Float32Array(2);
    R.int8LinearQ8(x, w, scale, y, 1, 2, K);
    for (let n = 0; n < 2; n++) {
      let acc = 0;
      for (let b = 0; b < 2; b++) {
        let s = 0;
        for (let k = 32 * b; k < Math.min(K, 32 * b + 32); k++) s += w[n * K + k] * q[k];
        acc = Math.fround(acc + Math.fround(d[b] * s));
      }
      assert.equal(y[n], Math.fround(scale[n] * acc));
    }
    assert.equal(q[32], 127); // the second block is all 0.5: q = 127 with d = 0.5/127
  });

  test('within the Q8 bound of the exact product: |err| ≤ scale·Σ_b d_b/2·Σ|w| (+ f32 sums)', () => {
    for (const [M, N, K] of SHAPES.filter(([M, N, K]) => M * N * K < 100_000)) {
      const { w, scale } = int8Weights(N, K, K + N);
      const x = activations(M, K, M + K);
      const y = new Float32Array(M * N);
      R.int8LinearQ8(x, w, scale, y, M, N, K);
      const nb = Math.ceil(K / 32), q = new Int8Array(K), d = new Float32Array(nb);
      for (let m = 0; m < M; m++) {
        quantizeRowQ8(x.subarray(m * K, (m + 1) * K), K, q, d);
        for (let n = 0; n < N; n++) {
          let exact = 0, bound = 0, mag = 0;
          for (let k = 0; k < K; k++) {
            exact += x[m * K + k] * w[n * K + k];
            mag += Math.abs(x[m * K + k] * w[n * K + k]);
            bound += (Math.abs(w[n * K + k]) * d[Math.floor(k / 32)]) / 2;
          }
          const err = Math.abs(y[m * N + n] - scale[n] * exact);
          assert.ok(err <= Math.abs(scale[n]) * (bound * (1 + 1e-5) + 2e-6 * mag), `M=${M} N=${N} K=${K} [${m},${n}]: ${err}`);
        }
      }
    }
  });
});

describe('bf16LinearDot (ref)', () => {
  if (ISA_CHILD) return;
  test('within 2^-8 of Σ|x||w| of the exact product with the bf16 weight', () => {
    for (const [M, N, K] of SHAPES.filter(([M, N, K]) => M * N * K < 100_000)) {
      const w = bf16Weights(N, K, K), W = new Float32Array(N * K);
      R.cast(w, 'bf16', W, 'f32', N * K);
      const x = activations(M, K, M + 3);
      const y = new Float32Array(M * N);
      R.bf16LinearDot(x, w, y, M, N, K);
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
        let exact = 0, mag = 0;
        for (let k = 0; k < K; k++) { exact += x[m * K + k] * W[n * K + k]; mag += Math.abs(x[m * K + k] * W[n * K + k]); }
        assert.ok(Math.abs(y[m * N + n] - exact) <= 2 ** -8 * mag + 1e-30, `M=${M} N=${N} K=${K}`);
      }
    }
  });
});

/** x values whose bf16 rounding is a tie (both directions of even), just off a tie, and random. */
function roundingProbe(): Float32Array {
  const bits = new Uint32Array([0x3f808000, 0x3f818000, 0xbf808000, 0xbf818000, 0x3f808001, 0x3f807fff, 0x40490fdb, 0x7f7fffff, 0x00800000, 0x3f800000]);
  const x = new Float32Array(bits.buffer).slice();
  return Float32Array.from([...x, ...rand(54, 9, 1e3)]);
}

function checkRounding(B: Backend): void {
  const x = roundingProbe(), M = x.length;
  const one = new Uint16Array([0x3f80]); // W = [[1]]: y = bf16(x) exactly
  const y = new Float32Array(M);
  B.bf16LinearDot(x, one, y, M, 1, 1);
  const xb = new Uint16Array(M), want = new Float32Array(M);
  R.cast(x, 'f32', xb, 'bf16', M);
  R.cast(xb, 'bf16', want, 'f32', M);
  assertSame(y, want, 'bf16(x) round to nearest even');
}

if (!ISA_CHILD) test('bf16LinearDot (ref) rounds x to nearest even', () => checkRounding(R));

function bf16Tolerance(x: Float32Array, w: Uint16Array, M: number, N: number, K: number): number {
  const W = new Float32Array(N * K);
  R.cast(w, 'bf16', W, 'f32', N * K);
  let worst = 0;
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += Math.abs(x[m * K + k] * W[n * K + k]);
    worst = Math.max(worst, s);
  }
  return 4e-7 * worst * Math.max(1, Math.sqrt(K) / 2) + 1e-30;
}

if (native) describe(`native rounded-activation kernels against ref${process.env.PLINTH_ISA ? ` (PLINTH_ISA=${process.env.PLINTH_ISA})` : ''}`, () => {
  test('the addon provides them on the expected instruction set', () => {
    assert.ok(native.supports('int8LinearQ8', 'f32') && native.supports('bf16LinearDot', 'f32'));
    if (process.env.PLINTH_ISA === 'avx2') assert.equal(addon!.cpu.avx512vnni || addon!.cpu.avx512bf16, false);
    if (process.env.PLINTH_ISA === 'scalar') assert.equal(addon!.cpu.avx2fma, false);
  });

  for (const [M, N, K] of SHAPES) {
    test(`M=${M} N=${N} K=${K}`, () => {
      const { w, scale } = int8Weights(N, K, K + N);
      const x = activations(M, K, M + K);
      const got = new Float32Array(M * N).fill(NaN), want = new Float32Array(M * N);
      native.int8LinearQ8(x, w, scale, got, M, N, K);
      R.int8LinearQ8(x, w, scale, want, M, N, K);
      assertSame(got, want, 'int8LinearQ8');
      const wb = bf16Weights(N, K, K);
      const gb = new Float32Array(M * N).fill(NaN), wantb = new Float32Array(M * N);
      native.bf16LinearDot(x, wb, gb, M, N, K);
      R.bf16LinearDot(x, wb, wantb, M, N, K);
      assertClose(gb, wantb, bf16Tolerance(x, wb, M, N, K), 'bf16LinearDot');
    });
  }

  test('a decode GEMV large enough to split over threads', () => {
    const [M, N, K] = [1, 1000, 512];
    const { w, scale } = int8Weights(N, K, 1);
    const x = activations(M, K, 2);
    const got = new Float32Array(M * N), want = new Float32Array(M * N);
    native.int8LinearQ8(x, w, scale, got, M, N, K);
    R.int8LinearQ8(x, w, scale, want, M, N, K);
    assertSame(got, want, 'int8LinearQ8');
    const wb = bf16Weights(N, K, 3);
    native.bf16LinearDot(x, wb, got, M, N, K);
    R.bf16LinearDot(x, wb, want, M, N, K);
    assertClose(got, want, bf16Tolerance(x, wb, M, N, K), 'bf16LinearDot');
  });

  test('x is rounded to bf16 to nearest even', () => checkRounding(native));

  test('bad arguments throw instead of touching memory', () => {
    const [M, N, K] = [2, 3, 40];
    const { w, scale } = int8Weights(N, K, 1);
    const wb = bf16Weights(N, K, 1);
    const x = new Float32Array(M * K), y = new Float32Array(M * N);
    const q8 = addon!.int8LinearQ8 as (...a: unknown[]) => void;
    const bd = addon!.bf16LinearDot as (...a: unknown[]) => void;
    assert.doesNotThrow(() => q8(x, w, scale, y, M, N, K));
    assert.doesNotThrow(() => bd(x, wb, y, M, N, K));
    assert.throws(() => q8(x, new Uint8Array(w.buffer), scale, y, M, N, K), RangeError, 'u8 for int8');
    assert.throws(() => q8(x.subarray(1), w, scale, y, M, N, K), RangeError, 'x too short');
    assert.throws(() => q8(x, w.subarray(1), scale, y, M, N, K), RangeError, 'w too short');
    assert.throws(() => q8(x, w, scale.subarray(1), y, M, N, K), RangeError, 'scale too short');
    assert.throws(() => q8(x, w, scale, y.subarray(1), M, N, K), RangeError, 'y too short');
    assert.throws(() => q8(x, w, scale, y, M, -1, K), RangeError, 'negative N');
    assert.throws(() => q8(x, w, scale, y, M, N, 1.5), RangeError, 'fractional K');
    assert.throws(() => q8(x, w, scale, y, M, N), RangeError, 'too few arguments');
    assert.throws(() => bd(x, new Int16Array(wb.buffer), y, M, N, K), RangeError, 'i16 for bf16');
    assert.throws(() => bd(x, wb.subarray(1), y, M, N, K), RangeError, 'w too short');
    assert.throws(() => bd(x, wb, y.subarray(1), M, N, K), RangeError, 'y too short');
    assert.throws(() => bd(new Float64Array(M * K), wb, y, M, N, K), RangeError, 'f64 x');
  });
});

if (native && !ISA_CHILD) rerunOnEveryIsa('native rounded-activation kernels on every instruction set', import.meta.url, 'PLINTH_QUANTDOT_ISA_CHILD');
