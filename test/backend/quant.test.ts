// Quantized-weight kernels (int8Linear, nf4Linear, halfLinear, their backwards, nf4Dequantize): ref against
// float64 products with the dequantized weights (from src/quant's definitions), and native against
// ref on odd shapes that reach every path — the dot products (M ≤ 8, groups of four rows, K with
// vector tails, NF4 blocks that straddle rows when K is no multiple of 64) and the dequantized
// panels (M > 8, odd K, the backward, several panels). Rerun in child processes with
// PLINTH_ISA=avx2 and PLINTH_ISA=scalar so every instruction-set path runs in `npm test`.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { createNativeBackend, loadAddon } from '../../src/backend/native/index.js';
import type { Backend } from '../../src/backend/backend.js';
import { dequantizeNF4, int8Scales, NF4_CODE, quantizeInt8, quantizeNF4 } from '../../src/quant/index.js';
import { assertClose, lcgUniform, rerunOnEveryIsa } from '../helpers.js';

const addon = loadAddon();
const native = addon ? (createNativeBackend(addon) as Backend) : null;
const ISA_CHILD = process.env.PLINTH_QUANT_ISA_CHILD === '1';

const rand = lcgUniform;

interface Weights {
  w8: Int8Array; scale: Float32Array; packed: Uint8Array; absmax: Float32Array;
  /** bf16 and f16 bit patterns */
  bf16: Uint16Array; f16: Uint16Array;
  /** the dequantized matrices, (N,K) */
  f8: Float32Array; f4: Float32Array; fb: Float32Array; fh: Float32Array;
}

function weights(N: number, K: number, seed: number): Weights {
  const w = rand(N * K, seed, 0.1);
  const q8 = quantizeInt8(w, N, K);
  const scale = int8Scales(q8.scb);
  const f8 = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) f8[n * K + k] = Math.fround(q8.q[n * K + k] * scale[n]);
  const q4 = quantizeNF4(w);
  // f16 subnormals included: scaled so that some weights fall below 2^-14
  const bf16 = new Uint16Array(N * K), f16 = new Uint16Array(N * K), fb = new Float32Array(N * K), fh = new Float32Array(N * K);
  R.cast(w, 'f32', bf16, 'bf16', N * K);
  R.cast(w.map((v, i) => (i % 5 === 0 ? v * 1e-3 : v)), 'f32', f16, 'f16', N * K);
  R.cast(bf16, 'bf16', fb, 'f32', N * K);
  R.cast(f16, 'f16', fh, 'f32', N * K);
  return { w8: q8.q, scale, packed: q4.packed, absmax: q4.absmax, bf16, f16, f8, f4: dequantizeNF4(q4), fb, fh };
}

/** y = x·Wᵀ and dx = dy·W in float64 with a dequantized W. */
function reference(x: Float32Array, W: Float32Array, M: number, N: number, K: number, dy: Float32Array) {
  const y = new Float64Array(M * N);
  const dx = new Float64Array(M * K);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * W[n * K + k];
      y[m * N + n] = s;
    }
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += dy[m * N + n] * W[n * K + k];
      dx[m * K + k] = s;
    }
  }
  return { y, dx };
}

function runAll(B: Backend, w: Weights, x: Float32Array, dy: Float32Array, M: number, N: number, K: number) {
  const y8 = new Float32Array(M * N).fill(NaN), y4 = new Float32Array(M * N).fill(NaN);
  const dx8 = new Float32Array(M * K).fill(NaN), dx4 = new Float32Array(M * K).fill(NaN);
  const yb = new Float32Array(M * N).fill(NaN), yh = new Float32Array(M * N).fill(NaN);
  const dxb = new Float32Array(M * K).fill(NaN), dxh = new Float32Array(M * K).fill(NaN);
  B.int8Linear(x, w.w8, w.scale, y8, M, N, K);
  B.int8LinearBackward(dy, w.w8, w.scale, dx8, M, N, K);
  B.nf4Linear(x, w.packed, w.absmax, NF4_CODE, y4, M, N, K);
  B.nf4LinearBackward(dy, w.packed, w.absmax, NF4_CODE, dx4, M, N, K);
  B.halfLinear(x, w.bf16, 'bf16', yb, M, N, K);
  B.halfLinearBackward(dy, w.bf16, 'bf16', dxb, M, N, K);
  B.halfLinear(x, w.f16, 'f16', yh, M, N, K);
  B.halfLinearBackward(dy, w.f16, 'f16', dxh, M, N, K);
  return { y8, dx8, y4, dx4, yb, dxb, yh, dxh };
}

// [M, N, K]: decode (M = 1), small batches (groups of 4 and a remainder), panels (M > 8);
// K = 64 multiples, vector tails, K not a multiple of 64 (NF4 blocks straddle rows: at half blocks
// when K % 64 == 32, anywhere otherwise), odd K; N not a multiple of the four rows of a tile.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 64], [1, 33, 130], [1, 65, 352], [1, 40, 513], [3, 17, 96], [5, 9, 200], [8, 31, 47],
  [6, 11, 160], [2, 6, 32], [7, 5, 128], [1, 3, 1376],
  [9, 13, 64], [17, 70, 130], [33, 600, 40], [12, 5, 1031],
];

/** |got − want| ≤ 1e-5·(1 + Σ|x·w|): float32 sums of K products against float64. */
function tolerance(x: Float32Array, W: Float32Array, M: number, N: number, K: number): number {
  let worst = 0;
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += Math.abs(x[m * K + k] * W[n * K + k]);
    worst = Math.max(worst, s);
  }
  return 2e-6 * (1 + worst) * Math.max(1, Math.sqrt(K) / 4);
}

describe('ref quantized kernels against float64 products with the dequantized weights', () => {
  if (ISA_CHILD) return;
  for (const [M, N, K] of SHAPES.filter(([M, N, K]) => M * N * K < 200_000)) {
    test(`M=${M} N=${N} K=${K}`, () => {
      const w = weights(N, K, M * 7 + N * 13 + K);
      const x = rand(M * K, 11 + K), dy = rand(M * N, 29 + N);
      const got = runAll(R, w, x, dy, M, N, K);
      const r8 = reference(x, w.f8, M, N, K, dy);
      const r4 = reference(x, w.f4, M, N, K, dy);
      assertClose(got.y8, r8.y, 1e-6, 'int8 y'); // ref rounds each result to float32
      assertClose(got.dx8, r8.dx, 1e-6, 'int8 dx');
      assertClose(got.y4, r4.y, 1e-6, 'nf4 y');
      assertClose(got.dx4, r4.dx, 1e-6, 'nf4 dx');
      const rb = reference(x, w.fb, M, N, K, dy), rh = reference(x, w.fh, M, N, K, dy);
      assertClose(got.yb, rb.y, 1e-6, 'bf16 y');
      assertClose(got.dxb, rb.dx, 1e-6, 'bf16 dx');
      assertClose(got.yh, rh.y, 1e-6, 'f16 y');
      assertClose(got.dxh, rh.dx, 1e-6, 'f16 dx');
      const d = new Float32Array(N * K);
      R.nf4Dequantize(w.packed, w.absmax, NF4_CODE, d, N * K);
      assert.deepEqual(d, w.f4);
    });
  }
});

if (native) describe('native quantized kernels against ref', () => {
  test('the native addon provides the quantized kernels', () => {
    for (const k of ['int8Linear', 'int8LinearBackward', 'nf4Linear', 'nf4LinearBackward', 'halfLinear', 'halfLinearBackward'] as const) {
      assert.ok(native.supports(k, 'f32'), k);
    }
    assert.ok(native.supports('nf4Dequantize', 'u8'));
    if (ISA_CHILD && process.env.PLINTH_ISA === 'avx2') assert.equal(addon!.cpu.avx512f, false);
    if (ISA_CHILD && process.env.PLINTH_ISA === 'scalar') assert.equal(addon!.cpu.avx2fma, false);
  });

  for (const [M, N, K] of SHAPES) {
    test(`M=${M} N=${N} K=${K}`, () => {
      const w = weights(N, K, M * 7 + N * 13 + K);
      const x = rand(M * K, 11 + K), dy = rand(M * N, 29 + N);
      const got = runAll(native, w, x, dy, M, N, K);
      const want = runAll(R, w, x, dy, M, N, K);
      assertClose(got.y8, want.y8, tolerance(x, w.f8, M, N, K), 'int8 y');
      assertClose(got.y4, want.y4, tolerance(x, w.f4, M, N, K), 'nf4 y');
      const tb8 = tolerance(dy, w.f8, M, K, N) * 4, tb4 = tolerance(dy, w.f4, M, K, N) * 4;
      assertClose(got.dx8, want.dx8, tb8, 'int8 dx');
      assertClose(got.dx4, want.dx4, tb4, 'nf4 dx');
      assertClose(got.yb, want.yb, tolerance(x, w.fb, M, N, K), 'bf16 y');
      assertClose(got.yh, want.yh, tolerance(x, w.fh, M, N, K), 'f16 y');
      assertClose(got.dxb, want.dxb, tolerance(dy, w.fb, M, K, N) * 4, 'bf16 dx');
      assertClose(got.dxh, want.dxh, tolerance(dy, w.fh, M, K, N) * 4, 'f16 dx');
      const d = new Float32Array(N * K);
      native.nf4Dequantize(w.packed, w.absmax, NF4_CODE, d, N * K);
      assert.deepEqual(d, w.f4);
    });
  }

  test('a large decode GEMV splits over threads and agrees with ref', () => {
    const [M, N, K] = [1, 1376, 512];
    const w = weights(N, K, 5);
    const x = rand(M * K, 3), dy = rand(M * N, 4);
    const got = runAll(native, w, x, dy, M, N, K);
    const want = runAll(R, w, x, dy, M, N, K);
    assertClose(got.y8, want.y8, tolerance(x, w.f8, M, N, K), 'int8 y');
    assertClose(got.y4, want.y4, tolerance(x, w.f4, M, N, K), 'nf4 y');
    assertClose(got.yb, want.yb, tolerance(x, w.fb, M, N, K), 'bf16 y');
    assertClose(got.yh, want.yh, tolerance(x, w.fh, M, N, K), 'f16 y');
  });

  test('bad arguments throw instead of touching memory', () => {
    const [M, N, K] = [2, 3, 64];
    const w = weights(N, K, 1);
    const x = new Float32Array(M * K), y = new Float32Array(M * N);
    const i8 = addon!.int8Linear as (...a: unknown[]) => void;
    const n4 = addon!.nf4Linear as (...a: unknown[]) => void;
    assert.doesNotThrow(() => i8(x, w.w8, w.scale, y, M, N, K));
    assert.doesNotThrow(() => n4(x, w.packed, w.absmax, NF4_CODE, y, M, N, K));
    assert.throws(() => i8(x, new Uint8Array(w.w8.buffer), w.scale, y, M, N, K), RangeError, 'u8 for int8');
    assert.throws(() => i8(x, w.w8.subarray(1), w.scale, y, M, N, K), RangeError, 'w too short');
    assert.throws(() => i8(x, w.w8, w.scale.subarray(1), y, M, N, K), RangeError, 'scale too short');
    assert.throws(() => i8(x, w.w8, w.scale, y.subarray(1), M, N, K), RangeError, 'y too short');
    assert.throws(() => i8(x, w.w8, w.scale, y, -1, N, K), RangeError, 'negative M');
    assert.throws(() => n4(x, w.packed.subarray(1), w.absmax, NF4_CODE, y, M, N, K), RangeError, 'packed too short');
    assert.throws(() => n4(x, w.packed, w.absmax.subarray(1), NF4_CODE, y, M, N, K), RangeError, 'absmax too short');
    assert.throws(() => n4(x, w.packed, w.absmax, NF4_CODE.subarray(1), y, M, N, K), RangeError, 'code too short');
    assert.throws(() => n4(x, w.packed, w.absmax, NF4_CODE, y, M, N, 2.5), RangeError, 'fractional K');
    assert.throws(() => n4(x, w.packed, w.absmax, NF4_CODE, y, M, N), RangeError, 'too few arguments');
    const h = addon!.halfLinear as (...a: unknown[]) => void;
    assert.doesNotThrow(() => h(x, w.bf16, 'bf16', y, M, N, K));
    assert.throws(() => h(x, new Int16Array(w.bf16.buffer), 'bf16', y, M, N, K), RangeError, 'i16 for bf16');
    assert.throws(() => h(x, w.bf16.subarray(1), 'bf16', y, M, N, K), RangeError, 'w too short');
    assert.throws(() => h(x, w.bf16, 'f32', y, M, N, K), RangeError, 'unknown wDType');
    assert.throws(() => h(x.subarray(1), w.f16, 'f16', y, M, N, K), RangeError, 'x too short');
  });
});

if (native && !ISA_CHILD) rerunOnEveryIsa('native quantized kernels on every instruction set', import.meta.url, 'PLINTH_QUANT_ISA_CHILD');
