// The native elementwise and fused kernels against the ref kernels, on random inputs and shapes:
// odd and prime sizes, sizes 1 and 0, lengths that are no multiple of any vector width,
// broadcasting and strided patterns (zero strides, transposes), special values (±0, ±Inf, NaN,
// subnormals), ignore-index rows, label smoothing, null weights, repeated indices.
//
// Tolerances. Bit-exact wherever the native kernel does the same arithmetic as ref (ref computes
// each element in double and rounds once to float32; the native kernels do the same where it is
// cheap): copies, casts, fill, comparisons, add/sub/mul/div, max/min/argmax/argmin, clamp, the
// gathers and scatters, dropout masks, rope, and most derivatives. Otherwise the bound is a few
// float32 ulps of the result plus, where the formula has a term that cancels, a few units of
// roundoff (u = 2⁻²⁴) of the magnitude of the terms; each bound is stated where it is used, with
// the reason. Results below the normal range (|x| < 2⁻¹²⁶) count as equal to 0. The vectorised
// exp/log/tanh/sigmoid/silu/GELU are also held to a few ulps of float64 over their whole ranges,
// the fused kernels to DESIGN.md's rule (error against float64 at most twice the plain float32
// path's), and the sums over rows to bit-identical results when several JS threads share the pool.
//
// The same checks rerun in child processes with PLINTH_ISA=avx2 and PLINTH_ISA=scalar (one
// thread), so every instruction-set path runs in `npm test`. Without the native addon, the ref
// kernels are checked against direct float64 formulas for the semantics the native kernels mirror.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { createNativeBackend, loadAddon } from '../../src/backend/native/index.js';
import { uniformAt } from '../../src/backend/random.js';
import type { AnyArray, Backend, BinaryOp, KernelDType, ReduceOp, UnaryOp } from '../../src/backend/backend.js';

const addon = loadAddon();
const N = addon ? (createNativeBackend(addon) as Backend) : null;
// Set in the child processes that rerun the checks on a capped instruction set.
const CHILD = process.env.PLINTH_KERNELS_CHILD === '1';
const U = 2 ** -24; // float32 unit roundoff
const TINY = 2 ** -126;

// ---- helpers ---------------------------------------------------------------------------------------

/** A seeded generator of uniform numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** float32 ulp at |x| (the spacing of float32 numbers there). */
function ulp(x: number): number {
  const a = Math.abs(x);
  if (!(a >= TINY)) return 2 ** -149;
  if (a === Infinity) return Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return 2 ** (e - 23);
}

function bitsOf(a: AnyArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Bit-for-bit equality; with nanAny, NaN matches any NaN (NaN bits depend on how it was made). */
function assertBits(what: string, got: AnyArray, want: AnyArray, nanAny = false): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = bitsOf(got), w = bitsOf(want);
  const es = got.BYTES_PER_ELEMENT;
  const bad: string[] = [];
  for (let i = 0; i < got.length && bad.length < 5; i++) {
    let same = true;
    for (let k = 0; k < es; k++) if (g[i * es + k] !== w[i * es + k]) same = false;
    if (!same && nanAny && Number.isNaN(got[i]) && Number.isNaN(want[i])) same = true;
    if (!same) bad.push(`[${i}] got ${got[i]} want ${want[i]}`);
  }
  assert.ok(bad.length === 0, `${what}: not bit-exact: ${bad.join(', ')}`);
}

/** |got − want| ≤ tol(i) elementwise; NaN must meet NaN and ±Inf the same infinity. */
function assertWithin(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const bad: string[] = [];
  for (let i = 0; i < got.length && bad.length < 5; i++) {
    const a = got[i], b = want[i];
    if (Number.isNaN(b) || !Number.isFinite(b)) {
      if (!Object.is(a, b) && !(Number.isNaN(a) && Number.isNaN(b))) bad.push(`[${i}] got ${a} want ${b}`);
      continue;
    }
    const err = Math.abs(a - b);
    if (!(err <= tol(i) || (Math.abs(a) < TINY && Math.abs(b) < TINY))) bad.push(`[${i}] got ${a} want ${b} (error ${err}, allowed ${tol(i)})`);
  }
  assert.ok(bad.length === 0, `${what}: ${bad.join(', ')}`);
}

/** k float32 ulps of the wanted value, plus `abs(i)`. */
const ulps = (want: ArrayLike<number>, k: number, abs: (i: number) => number = () => 0) =>
  (i: number) => k * ulp(want[i]) + abs(i);

const f32 = (n: number) => new Float32Array(n);
const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

// Special values mixed into random inputs: zeros of both signs, infinities, NaN, subnormals, extremes.
const SPECIAL = [0, -0, Infinity, -Infinity, NaN, 1e-40, -1e-40, 3e38, -3e38, 1, -1, 0.5, 2 ** -126];
function withSpecials(x: Float32Array, every = 37): Float32Array {
  for (let i = 0, k = 0; i < x.length; i += every, k++) x[i] = SPECIAL[k % SPECIAL.length];
  return x;
}

const SIZES = [0, 1, 2, 7, 15, 16, 17, 31, 33, 1031];

/** erfc z for z ≥ 2 by its continued fraction (ref's 1 − erf cancels there). */
function erfcBig(z: number): number {
  let k = z;
  for (let n = 80; n >= 1; n--) k = z + n / 2 / k;
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / k;
}

/** gelu(x)/x in float64 without cancellation: σ(2u) for gelu_tanh, Φ(x) for gelu_erf. */
function normalCdfLike(op: UnaryOp, x: number): number {
  if (op === 'gelu_tanh') return 1 / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
  const z = -x / Math.SQRT2;
  if (z >= 2) return 0.5 * erfcBig(z);
  const e = new Float64Array(1);
  R.unary('gelu_erf', Float64Array.of(x), e, 1, 0, 0);
  return x === 0 ? 0.5 : e[0] / x; // 1 + erf loses at most 8 of double's 53 bits here
}

// ---- native against ref ----------------------------------------------------------------------------

function nativeSuite(K: Backend): void {
  test('the addon runs the capped instruction set in child processes', () => {
    if (process.env.PLINTH_ISA === 'avx2') assert.equal(addon!.cpu.avx512f, false);
    if (process.env.PLINTH_ISA === 'scalar') assert.equal(addon!.cpu.avx2fma, false);
    for (const k of ['fill', 'copyStrided', 'cast', 'unary', 'unaryBackward', 'binary', 'where', 'reduce', 'softmax',
      'softmaxBackward', 'layerNorm', 'layerNormBackward', 'rmsNorm', 'rmsNormBackward', 'crossEntropy',
      'crossEntropyBackward', 'swiglu', 'swigluBackward', 'rope', 'indexSelect', 'indexAdd', 'gather', 'scatterAdd',
      'im2col', 'col2im', 'dropoutMask', 'adamwStep'] as const) assert.ok(K.supports(k, 'f32'), k);
    for (const dt of ['i32', 'bf16', 'u8'] as KernelDType[]) assert.ok(K.supports('copyStrided', dt) && K.supports('cast', dt));
  });

  describe('memory', () => {
    test('fill writes what a JS store writes, every dtype', () => {
      const arrays = (n: number): AnyArray[] => [f32(n), new Int32Array(n), new Uint16Array(n), new Uint8Array(n)];
      for (const n of [0, 1, 5, 1031, 70001]) {
        for (const v of [3.7, -0, NaN, -7.9, 2 ** 33 + 5, 70000.5, 300, -1, Infinity, 1e-45]) {
          const want = arrays(n + 3), got = arrays(n + 3);
          for (let k = 0; k < want.length; k++) {
            want[k].fill(7);
            got[k].fill(7);
            R.fill(want[k], v, n);
            K.fill(got[k], v, n);
            assertBits(`fill ${want[k].constructor.name} n=${n} v=${v}`, got[k], want[k]);
          }
        }
      }
    });

    test('copyStrided: contiguous, rows, zero strides, transposes, general, every dtype', () => {
      // [shape, strides, source length]
      const cases: [number[], number[]][] = [
        [[], []], [[0, 5], [5, 1]], [[1], [1]], [[1031], [1]], [[5, 7, 3], [21, 3, 1]],
        [[4, 6], [10, 1]], // rows of a wider tensor
        [[4, 6], [1, 0]], [[3, 5], [0, 1]], [[2, 3, 4], [0, 0, 0]], [[7, 1, 9], [1, 0, 7]], // broadcasts
        [[37, 61], [1, 37]], [[3, 17, 33], [561, 1, 17]], [[61, 37], [1, 61]], [[5, 9], [1, 5]], // transposes
        [[4, 5, 6], [1, 24, 4]], [[3, 4, 5, 2], [2, 30, 6, 1]], [[6, 7], [15, 2]], [[100, 3], [3, 300]],
        [[1, 1, 1031], [0, 5, 1]],
      ];
      for (const [shape, strides] of cases) {
        let ext = 1;
        const total = shape.reduce((p, s) => p * s, 1);
        for (let j = 0; j < shape.length; j++) ext += (shape[j] - 1) * strides[j];
        if (total === 0) ext = 0;
        for (const make of [(n: number) => f32(n), (n: number) => new Int32Array(n), (n: number) => new Uint16Array(n), (n: number) => new Uint8Array(n)]) {
          const src = make(ext);
          const r = rng(ext);
          for (let i = 0; i < ext; i++) src[i] = Math.floor(r() * 250);
          if (src instanceof Float32Array) withSpecials(src, 5);
          const want = make(total), got = make(total);
          R.copyStrided(src, want, shape, strides);
          K.copyStrided(src, got, shape, strides);
          assertBits(`copyStrided ${src.constructor.name} shape [${shape}] strides [${strides}]`, got, want);
        }
      }
    });

    test('cast: every pair of dtypes, rounding ties, subnormals, overflow, NaN payloads', () => {
      const dtypes: KernelDType[] = ['f32', 'i32', 'f16', 'bf16', 'u8'];
      const make = (dt: KernelDType, n: number): AnyArray =>
        dt === 'f32' ? f32(n) : dt === 'i32' ? new Int32Array(n) : dt === 'u8' ? new Uint8Array(n) : new Uint16Array(n);
      const n = 4000;
      const srcs: Record<string, AnyArray> = {};
      const x = withSpecials(rand(n, 11, -70000, 70000), 7);
      const ties = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 65519, 65520, 65536, 2 ** -24,
        3 * 2 ** -25, 2 ** -25, 2 ** -14 - 2 ** -25, 2 ** 31, -(2 ** 31), 2 ** 32 + 512, -3.9e9, 255.9, 256, -1.5, 1e30];
      for (let i = 0; i < ties.length; i++) x[100 + i] = ties[i];
      for (let i = 0; i < 200; i++) x[200 + i] = (rng(i)() - 0.5) * 2 ** -(i % 40); // small and subnormal
      const xb = new Uint32Array(x.buffer);
      xb[400] = 0x7fc00001; xb[401] = 0xffa00fff; xb[402] = 0x7f800001; xb[403] = 0x00000001; // NaN payloads, subnormal
      srcs.f32 = x;
      srcs.i32 = Int32Array.from(rand(n, 12, -3e9, 3e9), (v) => v | 0);
      srcs.u8 = Uint8Array.from(rand(n, 13, 0, 256), (v) => v);
      // every 16-bit pattern (4 at a time: 65536 elements in total over the first few thousand)
      srcs.f16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
      srcs.bf16 = srcs.f16;
      for (const from of dtypes) {
        for (const to of dtypes) {
          const src = srcs[from];
          const want = make(to, src.length), got = make(to, src.length);
          R.cast(src, from, want, to, src.length);
          K.cast(src, from, got, to, src.length);
          assertBits(`cast ${from} -> ${to}`, got, want);
        }
      }
    });
  });

  describe('elementwise', () => {
    const ALL_UNARY: UnaryOp[] = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'relu', 'gelu_tanh',
      'gelu_erf', 'silu', 'powScalar', 'addScalar', 'mulScalar', 'clamp', 'sign', 'square', 'reciprocal', 'sin', 'cos'];
    // computed in double and rounded once, like ref
    const EXACT_UNARY = new Set<UnaryOp>(['neg', 'sqrt', 'rsqrt', 'abs', 'relu', 'addScalar', 'mulScalar', 'clamp', 'sign',
      'square', 'reciprocal']);
    // float32 polynomial approximations: measured worst error against float64 (see the next test)
    // plus the half ulp of ref's own rounding
    const APPROX_ULPS: Partial<Record<UnaryOp, number>> = { exp: 2, log: 2, tanh: 2, sigmoid: 3, silu: 4, gelu_tanh: 5, gelu_erf: 6 };
    // ref's 1 + tanh u and 1 + erf(x/√2) cancel in double for x ≲ −5, leaving it good to only
    // ~|x|·2⁻⁵³ absolute there (the native kernels form σ(2u) and Φ(x) without the cancellation)
    const REF_CANCELS = new Set<UnaryOp>(['gelu_tanh', 'gelu_erf']);

    test('unary: every op, sizes across vector widths, special values', () => {
      for (const op of ALL_UNARY) {
        const params: [number, number][] = op === 'powScalar' ? [[2, 0], [0.5, 0], [1, 0], [0, 0], [1.7, 0], [-2.5, 0], [3, 0]]
          : op === 'clamp' ? [[-0.3, 0.45], [0, Infinity], [-Infinity, 0.1], [0.7, -0.2]]
            : op === 'addScalar' || op === 'mulScalar' ? [[0.1, 0], [-3.7e-3, 0]] : [[0, 0]];
        for (const [p0, p1] of params) {
          for (const n of SIZES) {
            const x = withSpecials(rand(n, n + 3, -9, 9), 11);
            const want = f32(n), got = f32(n);
            R.unary(op, x, want, n, p0, p1);
            K.unary(op, x, got, n, p0, p1);
            const what = `unary ${op}(${p0}, ${p1}) n=${n}`;
            if (EXACT_UNARY.has(op) || (op === 'powScalar' && [2, 0.5, 1, 0].includes(p0))) assertBits(what, got, want, true);
            // libm against V8: both within an ulp in double, so equal after rounding save near ties
            else if (op === 'powScalar' || op === 'sin' || op === 'cos') assertWithin(what, got, want, ulps(want, 1));
            else assertWithin(what, got, want, ulps(want, APPROX_ULPS[op]!, (i) => (REF_CANCELS.has(op) ? 2 ** -50 * Math.abs(x[i]) : 0)));
          }
        }
      }
      // in place
      const x = rand(100, 5, -3, 3), want = f32(100);
      R.unary('gelu_tanh', x, want, 100, 0, 0);
      K.unary('gelu_tanh', x, x, 100, 0, 0);
      assertWithin('unary in place', x, want, ulps(want, 4));
    });

    test('vectorised exp, log, tanh, sigmoid, erf-based GELU stay within a few float32 ulps of float64', () => {
      // dense grids over each function's range (and beyond it, into overflow and underflow); silu
      // stops at −87, gelu_tanh at −10 and gelu_erf at −13, below which σ or Φ is subnormal and
      // x·σ, x·Φ inherit its lost bits
      const grids: [UnaryOp, number, number, number][] = [
        ['exp', -104, 89, 1.5], ['log', 0, 30, 1.5], ['tanh', -12, 12, 1.5], ['sigmoid', -90, 30, 2.5],
        ['silu', -87, 90, 3.5], ['gelu_tanh', -10, 30, 4.5], ['gelu_erf', -13, 30, 5.5],
      ];
      const n = 30001;
      for (const [op, lo, hi, tol] of grids) {
        const x = f32(n);
        for (let i = 0; i < n; i++) x[i] = lo + ((hi - lo) * i) / (n - 1);
        if (op === 'log') for (let i = 0; i < n; i += 3) x[i] = 2 ** (-149 + (277 * i) / n); // every binade
        const exact = new Float64Array(n);
        R.unary(op, f64(x), exact, n, 0, 0);
        if (op === 'gelu_tanh' || op === 'gelu_erf') for (let i = 0; i < n; i++) exact[i] = x[i] * normalCdfLike(op, x[i]);
        const got = f32(n);
        K.unary(op, x, got, n, 0, 0);
        let worst = 0, at = 0;
        for (let i = 0; i < n; i++) {
          if (Math.abs(exact[i]) < TINY) continue;
          if (!Number.isFinite(Math.fround(exact[i]))) {
            assert.equal(got[i], Math.fround(exact[i]), `${op}(${x[i]}) overflows`);
            continue;
          }
          const err = Math.abs(got[i] - exact[i]) / ulp(exact[i]);
          if (err > worst) [worst, at] = [err, x[i]];
        }
        assert.ok(worst <= tol, `${op}: worst error ${worst.toFixed(2)} ulp at x = ${at} > ${tol}`);
      }
    });

    test('unaryBackward: every op', () => {
      const EXACT_BWD = new Set<UnaryOp>(['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'relu',
        'addScalar', 'mulScalar', 'clamp', 'sign', 'square', 'reciprocal']);
      for (const op of ALL_UNARY) {
        const params: [number, number][] = op === 'powScalar' ? [[2, 0], [0, 0], [1.7, 0], [-1.5, 0]]
          : op === 'clamp' ? [[-0.3, 0.45], [0.1, 0.1]] : op === 'mulScalar' ? [[0.1, 0]] : [[0, 0]];
        for (const [p0, p1] of params) {
          for (const n of SIZES) {
            const positive = ['log', 'sqrt', 'rsqrt'].includes(op) || (op === 'powScalar' && p0 !== 2);
            const x = rand(n, 3 * n + 1, positive ? 0.01 : -7, 7);
            if (op === 'clamp') for (let i = 0; i < n; i += 5) x[i] = Math.fround(i % 2 ? p0 : p1); // on the boundary
            const y = f32(n);
            R.unary(op, x, y, n, p0, p1);
            const dy = rand(n, 7 * n + 2, -2, 2);
            const want = f32(n), got = f32(n);
            R.unaryBackward(op, x, y, dy, want, n, p0, p1);
            K.unaryBackward(op, x, y, dy, got, n, p0, p1);
            const what = `unaryBackward ${op}(${p0}, ${p1}) n=${n}`;
            if (EXACT_BWD.has(op) || (op === 'powScalar' && p0 === 0)) assertBits(what, got, want, true);
            else if (op === 'powScalar' || op === 'sin' || op === 'cos') assertWithin(what, got, want, ulps(want, 1));
            // σ·(1 + x(1−σ)) and Φ + xφ cross zero (x ≈ −1.28, −0.75): there the bound is on the
            // terms, each ≤ ~1.2·|dy|, computed to a few ulps (ref's own 1 + tanh u cancels too)
            else assertWithin(what, got, want, ulps(want, 6, (i) => 16 * U * Math.abs(dy[i])));
          }
        }
      }
    });

    test('binary: every op over same-shape, scalar, row, column and strided broadcasts, in place', () => {
      const ops: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'];
      // [shape, a strides, a length, b strides, b length]
      const layouts: [number[], number[], number, number[], number][] = [
        [[3, 37], [37, 1], 111, [37, 1], 111],
        [[1031], [1], 1031, [0], 1], [[1031], [0], 1, [1], 1031],
        [[7, 33], [33, 1], 231, [0, 1], 33], // bias add
        [[33, 7], [7, 1], 231, [1, 0], 33], // column broadcast
        [[13, 17], [1, 13], 221, [17, 1], 221], // a transposed
        [[4, 5, 6], [6, 0, 1], 24, [30, 6, 1], 120], [[2, 3, 1, 5], [15, 5, 5, 1], 30, [0, 0, 0, 1], 5],
        [[1], [1], 1, [1], 1], [[], [], 1, [], 1], [[0, 4], [4, 1], 0, [0, 1], 4], [[5, 1, 3], [3, 3, 1], 15, [0, 0, 2], 5],
      ];
      for (const op of ops) {
        for (const [li, [shape, sa, la, sb, lb]] of layouts.entries()) {
          const total = shape.reduce((p, s) => p * s, 1);
          const a = withSpecials(rand(la, li + 1, -4, 4), 5), b = withSpecials(rand(lb, li + 2, -4, 4), 3);
          for (let i = 0; i < Math.min(la, lb); i += 4) b[i] = a[i]; // ties for the comparisons
          const want = f32(total), got = f32(total);
          R.binary(op, a, sa, b, sb, want, shape);
          K.binary(op, a, sa, b, sb, got, shape);
          const what = `binary ${op} shape [${shape}] a [${sa}] b [${sb}]`;
          if (op === 'pow') assertWithin(what, got, want, ulps(want, 1));
          else assertBits(what, got, want, true);
        }
      }
      const a = rand(100, 1), b = rand(100, 2), want = f32(100);
      R.binary('add', a, [1], b, [1], want, [100]);
      K.binary('add', a, [1], b, [1], a, [100]);
      assertBits('binary in place', a, want);
    });

    test('where: every cond dtype, broadcasting', () => {
      const shape = [5, 7, 9], total = 315;
      const a = rand(total, 1), b = rand(63, 2);
      const conds: [AnyArray, number[]][] = [
        [withSpecials(rand(total, 3).map((v) => (v > 0 ? v : 0)), 4), [63, 9, 1]],
        [Uint8Array.from(rand(9, 4), (v) => (v > 0 ? 1 : 0)), [0, 0, 1]],
        [Int32Array.from(rand(35, 5), (v) => (v > 0.3 ? 5 : 0)), [7, 1, 0]],
        [Uint16Array.from(rand(total, 6), (v) => (v > 0 ? 0x8000 : 0)), [63, 9, 1]],
      ];
      for (const [cond, cs] of conds) {
        const want = f32(total), got = f32(total);
        R.where(cond, cs, a, [63, 9, 1], b, [0, 9, 1], want, shape);
        K.where(cond, cs, a, [63, 9, 1], b, [0, 9, 1], got, shape);
        assertBits(`where cond ${cond.constructor.name}`, got, want);
      }
    });
  });

  test('reduce: every op over (outer, R, inner), ties, NaN, ±0, R = 0, one long row', () => {
    const ops: ReduceOp[] = ['sum', 'sumSquares', 'max', 'min', 'argmax', 'argmin'];
    const shapes: [number, number, number][] = [[1, 1, 1], [3, 1000, 1], [7, 17, 1], [5, 17, 33], [2, 7, 300], [4, 0, 3],
      [4, 0, 1], [1, 300001, 1], [1, 5, 1031], [3, 2, 2]];
    for (const [outer, Rn, inner] of shapes) {
      for (const variant of ['random', 'ties', 'specials']) {
        const n = outer * Rn * inner;
        const x = rand(n, n + variant.length, -5, 5);
        if (variant === 'ties') for (let i = 0; i < n; i++) x[i] = Math.round(x[i]) === 0 ? (i % 2 ? 0 : -0) : Math.round(x[i]);
        if (variant === 'specials') withSpecials(x, 13);
        for (const op of ops) {
          const arg = op === 'argmax' || op === 'argmin';
          const want = arg ? new Int32Array(outer * inner) : f32(outer * inner);
          const got = arg ? new Int32Array(outer * inner) : f32(outer * inner);
          R.reduce(op, x, want, outer, Rn, inner);
          K.reduce(op, x, got, outer, Rn, inner);
          const what = `reduce ${op} (${outer}, ${Rn}, ${inner}) ${variant}`;
          if (op === 'sum' || op === 'sumSquares') {
            // both sum in double, in different orders: they differ by ~2⁻⁵² Σ|x|, then round once
            const mag = f32(outer * inner);
            R.reduce('sumSquares', x.map(Math.abs).map(Math.sqrt), mag, outer, Rn, inner);
            assertWithin(what, got, want, ulps(want, 1, (i) => 2 ** -45 * (op === 'sum' ? mag[i] : mag[i] ** 2 + 1)));
          } else {
            assertBits(what, got, want, true);
          }
        }
      }
    }
  });

  describe('fused rows', () => {
    const ROWS: [number, number][] = [[1, 1], [3, 7], [2, 16], [5, 17], [37, 1001], [2, 50257]];

    function logits(rows: number, C: number, seed: number): Float32Array {
      const x = rand(rows * C, seed, -8, 8);
      if (rows > 1) for (let c = 0; c < C; c++) x[C + c] *= 20; // magnitudes up to 160
      if (rows > 2) for (let c = 0; c < C; c += 3) x[2 * C + c] = -Infinity; // masked
      return x;
    }

    test('softmax and logSoftmax', () => {
      for (const [rows, C] of ROWS) {
        const x = logits(rows, C, rows * C);
        const maxes = Array.from({ length: rows }, (_, r) => x.subarray(r * C, r * C + C).reduce((m, v) => Math.max(m, v), -Infinity));
        const max = (r: number) => maxes[r];
        for (const log of [false, true]) {
          const want = f32(rows * C), got = f32(rows * C);
          R.softmax(x, want, rows, C, log);
          K.softmax(x, got, rows, C, log);
          // x − max is rounded to float32 before the exponential: relative error |x − max|·u on
          // each probability; log softmax is formed in double from log Σ, good to a few u of it
          if (log) assertWithin(`logSoftmax ${rows}x${C}`, got, want, ulps(want, 2, () => 8 * U * Math.log(C + 1)));
          else assertWithin(`softmax ${rows}x${C}`, got, want, ulps(want, 1, (i) => (4 + Math.abs(x[i] - max(Math.floor(i / C)))) * ulp(want[i])));
        }
        const nanRow = x.slice(0, C);
        nanRow[C - 1] = NaN;
        const g = f32(C), w = f32(C);
        K.softmax(nanRow, g, 1, C, false);
        R.softmax(nanRow, w, 1, C, false);
        assertBits('softmax with NaN', g, w, true);
      }
    });

    test('softmaxBackward and logSoftmax backward', () => {
      for (const [rows, C] of ROWS) {
        const x = rand(rows * C, C, -6, 6);
        const dy = rand(rows * C, C + 1, -1, 1);
        for (const log of [false, true]) {
          const y = f32(rows * C);
          R.softmax(x, y, rows, C, log);
          const want = f32(rows * C), got = f32(rows * C);
          R.softmaxBackward(y, dy, want, rows, C, log);
          K.softmaxBackward(y, dy, got, rows, C, log);
          const sums = Array.from({ length: rows }, (_, r) => dy.subarray(r * C, r * C + C).reduce((s, v) => s + Math.abs(v), 0));
          const sumDy = (r: number) => sums[r];
          // softmax: y·(dy − Σdy·y) in double, one rounding; log: dy − e^y·Σdy with a float32 exp
          // (2 ulps of the product) and a subtraction that may cancel
          if (log) assertWithin(`logSoftmax backward ${rows}x${C}`, got, want, ulps(want, 1, (i) => 4 * U * (Math.abs(dy[i]) + Math.exp(y[i]) * sumDy(Math.floor(i / C)))));
          else assertWithin(`softmax backward ${rows}x${C}`, got, want, ulps(want, 1, (i) => 2 ** -40 * y[i]));
        }
      }
    });

    const NORM_ROWS: [number, number][] = [[1, 1], [3, 7], [5, 17], [33, 768], [4, 1031]];

    test('layerNorm and rmsNorm forward, with and without weight and bias, large row means', () => {
      for (const [rows, C] of NORM_ROWS) {
        const x = rand(rows * C, C, -3, 3);
        for (let c = 0; c < C; c++) x[c] = 1000 + x[c] * 0.01; // mean far from 0, small spread
        const w = rand(C, C + 1, 0.5, 1.5), b = rand(C, C + 2, -1, 1);
        for (const [wi, bi] of [[w, b], [null, null], [w, null], [null, b]] as const) {
          const want = { out: f32(rows * C), mean: f32(rows), rstd: f32(rows) };
          const got = { out: f32(rows * C), mean: f32(rows), rstd: f32(rows) };
          R.layerNorm(x, wi, bi, want.out, want.mean, want.rstd, rows, C, 1e-5);
          K.layerNorm(x, wi, bi, got.out, got.mean, got.rstd, rows, C, 1e-5);
          // statistics in double in both (summed in different orders), outputs formed in double
          // from them and rounded once: at most an ulp apart
          for (const k of ['out', 'mean', 'rstd'] as const) assertWithin(`layerNorm ${k} ${rows}x${C} w=${!!wi} b=${!!bi}`, got[k], want[k], ulps(want[k], 1, () => 2 ** -40));
          const ro = { out: f32(rows * C), rstd: f32(rows) }, go = { out: f32(rows * C), rstd: f32(rows) };
          R.rmsNorm(x, wi, ro.out, ro.rstd, rows, C, 1e-6);
          K.rmsNorm(x, wi, go.out, go.rstd, rows, C, 1e-6);
          for (const k of ['out', 'rstd'] as const) assertWithin(`rmsNorm ${k} ${rows}x${C} w=${!!wi}`, go[k], ro[k], ulps(ro[k], 1));
        }
      }
    });

    test('layerNorm and rmsNorm backward: dx against ref, dw and db against float64, deterministic', () => {
      for (const [rows, C] of NORM_ROWS) {
        const x = rand(rows * C, C, -2, 2), w = rand(C, C + 1, 0.5, 1.5), dy = rand(rows * C, C + 3, -1, 1);
        const mean = f32(rows), rstd = f32(rows), out = f32(rows * C);
        R.layerNorm(x, w, null, out, mean, rstd, rows, C, 1e-5);
        for (const wi of [w, null]) {
          const dw0 = rand(C, 9), db0 = rand(C, 10);
          const want = { dx: f32(rows * C) }, got = { dx: f32(rows * C), dw: dw0.slice(), db: db0.slice() };
          R.layerNormBackward(x, wi, mean, rstd, dy, want.dx, null, null, rows, C);
          K.layerNormBackward(x, wi, mean, rstd, dy, got.dx, got.dw, got.db, rows, C);
          // dx = rstd·(dn − mean(dn) − n·mean(dn·n)): float32 terms (an ulp or two each, from the
          // saved float32 mean and rstd) whose difference may cancel, so the bound is on the terms
          // |dn| + |mean(dn)| + |n·mean(dn·n)| ≤ 1.5|dy| + 4
          const s = (i: number) => rstd[Math.floor(i / C)] * (Math.abs(dy[i]) * 1.5 + 4);
          assertWithin(`layerNormBackward dx ${rows}x${C} w=${!!wi}`, got.dx, want.dx, ulps(want.dx, 2, (i) => 8 * U * s(i)));
          // dw, db: ref adds each row into float32 (its own error grows with rows); compare with
          // the float64 evaluation instead: each term dy·n carries ~3 u (n and the product are
          // float32), blocks of 16 rows are summed in float32 (≤ 15 u of their terms) and the
          // blocks in double, so the bound is ~18 u of Σ|terms|, whatever the number of rows
          const e = { dx: new Float64Array(rows * C), dw: f64(dw0), db: f64(db0) };
          R.layerNormBackward(f64(x), wi && f64(wi), f64(mean), f64(rstd), f64(dy), e.dx, e.dw, e.db, rows, C);
          const absTerms = new Float64Array(C), absDy = new Float64Array(C);
          for (let i = 0; i < rows * C; i++) {
            absTerms[i % C] += Math.abs(dy[i] * (x[i] - mean[Math.floor(i / C)]) * rstd[Math.floor(i / C)]);
            absDy[i % C] += Math.abs(dy[i]);
          }
          assertWithin(`layerNormBackward dw ${rows}x${C}`, got.dw, e.dw, ulps(e.dw, 2, (c) => 18 * U * absTerms[c]));
          assertWithin(`layerNormBackward db ${rows}x${C}`, got.db, e.db, ulps(e.db, 2, (c) => 15 * U * absDy[c]));
          const again = { dx: f32(rows * C), dw: dw0.slice(), db: db0.slice() };
          K.layerNormBackward(x, wi, mean, rstd, dy, again.dx, again.dw, again.db, rows, C);
          for (const k of ['dx', 'dw', 'db'] as const) assertBits(`layerNormBackward ${k} deterministic`, again[k], got[k]);
        }
        const rs = f32(rows);
        R.rmsNorm(x, w, out, rs, rows, C, 1e-6);
        for (const wi of [w, null]) {
          const dw0 = rand(C, 11);
          const want = f32(rows * C), got = { dx: f32(rows * C), dw: dw0.slice() };
          R.rmsNormBackward(x, wi, rs, dy, want, null, rows, C);
          K.rmsNormBackward(x, wi, rs, dy, got.dx, got.dw, rows, C);
          const s = (i: number) => rs[Math.floor(i / C)] * (Math.abs(dy[i]) * 1.5 + 4 * Math.abs(x[i]) * rs[Math.floor(i / C)]);
          assertWithin(`rmsNormBackward dx ${rows}x${C} w=${!!wi}`, got.dx, want, ulps(want, 2, (i) => 8 * U * s(i)));
          const e = { dx: new Float64Array(rows * C), dw: f64(dw0) };
          R.rmsNormBackward(f64(x), wi && f64(wi), f64(rs), f64(dy), e.dx, e.dw, rows, C);
          const absTerms = new Float64Array(C);
          for (let i = 0; i < rows * C; i++) absTerms[i % C] += Math.abs(dy[i] * x[i] * rs[Math.floor(i / C)]);
          assertWithin(`rmsNormBackward dw ${rows}x${C}`, got.dw, e.dw, ulps(e.dw, 2, (c) => 18 * U * absTerms[c]));
        }
      }
    });

    test('crossEntropy and its backward: ignore index, label smoothing, long and sorted rows', () => {
      const shapes: [number, number][] = [[1, 1], [7, 13], [4, 2048], [6, 5003], [3, 50257]];
      for (const [rows, V] of shapes) {
        const x = rand(rows * V, V, -10, 10);
        if (rows > 3) for (let v = 0; v < V; v++) { x[V + v] = -30 + (60 * v) / V; x[2 * V + v] = 30 - (60 * v) / V; } // max grows chunk after chunk, or shrinks
        if (rows > 4) for (let v = 0; v < V; v++) x[3 * V + v] *= 10; // logits up to ±100
        const t0 = Int32Array.from({ length: rows }, (_, r) => Math.floor(rng(r + V)() * V));
        for (const [ignore, eps] of [[-100, 0], [-100, 0.1], [t0[0], 0], [t0[rows - 1], 0.25]] as const) {
          const t = t0.slice();
          if (rows > 1) t[1] = ignore;
          const want = { loss: f32(rows), lse: f32(rows) }, got = { loss: f32(rows), lse: f32(rows) };
          R.crossEntropy(x, t, want.loss, want.lse, rows, V, ignore, eps);
          K.crossEntropy(x, t, got.loss, got.lse, rows, V, ignore, eps);
          // lse = max + log Σ e^(x − max): the float32 exponentials err by ~2 u each, so log Σ by
          // ~2 u absolute; loss = lse − … is formed in double and rounded once
          const what = `crossEntropy ${rows}x${V} ignore=${ignore} ε=${eps}`;
          assertWithin(`${what} lse`, got.lse, want.lse, ulps(want.lse, 1, () => 4 * U));
          assertWithin(`${what} loss`, got.loss, want.loss, ulps(want.loss, 1, () => 4 * U));
          const dloss = rand(rows, rows, 0.5, 2);
          const wd = f32(rows * V), gd = f32(rows * V);
          R.crossEntropyBackward(x, t, want.lse, dloss, wd, rows, V, ignore, eps);
          K.crossEntropyBackward(x, t, want.lse, dloss, gd, rows, V, ignore, eps);
          // p = e^(x − lse) from float32 x − lse: relative error (2 + |x − lse|)·u; the target's
          // entry p − (1 − ε) and, with smoothing, p − ε/V may cancel: bounded by the terms
          assertWithin(`${what} dlogits`, gd, wd, (i) => {
            const r = Math.floor(i / V), p = Math.exp(x[i] - want.lse[r]);
            return ulp(wd[i]) + 4 * U * dloss[r] * ((2 + Math.abs(x[i] - want.lse[r])) * p + eps / V + (i % V === t[r] ? 1 : 0));
          });
        }
      }
    });

    test('swiglu and its backward', () => {
      for (const n of SIZES) {
        const g = rand(n, n, -8, 8), u = rand(n, n + 1, -2, 2), dy = rand(n, n + 2, -1, 1);
        const want = f32(n), got = f32(n);
        R.swiglu(g, u, want, n);
        K.swiglu(g, u, got, n);
        assertWithin(`swiglu n=${n}`, got, want, ulps(want, 4));
        const w = { dg: f32(n), du: f32(n) }, k = { dg: f32(n), du: f32(n) };
        R.swigluBackward(g, u, dy, w.dg, w.du, n);
        K.swigluBackward(g, u, dy, k.dg, k.du, n);
        assertWithin(`swigluBackward dup n=${n}`, k.du, w.du, ulps(w.du, 4));
        // 1 + g(1 − σ) vanishes at g ≈ −1.28: bounded by the terms |dy·u|·(σ + |g|σ(1−σ))
        assertWithin(`swigluBackward dgate n=${n}`, k.dg, w.dg, ulps(w.dg, 5, (i) => 8 * U * Math.abs(dy[i] * u[i]) * (1 + Math.abs(g[i]) / 4)));
      }
    });

    test('rope: both directions, in place, odd half widths', () => {
      for (const [Nn, T, G, D] of [[1, 1, 1, 2], [2, 5, 3, 10], [1, 7, 4, 130], [3, 2, 1, 64], [0, 3, 2, 4]]) {
        const n = Nn * T * G * D;
        const x = rand(n, n, -3, 3), cos = rand((T * D) / 2, 1), sin = rand((T * D) / 2, 2);
        for (const inverse of [false, true]) {
          const want = f32(n), got = f32(n);
          R.rope(x, cos, sin, want, Nn, T, G, D, inverse);
          K.rope(x, cos, sin, got, Nn, T, G, D, inverse);
          assertBits(`rope N=${Nn} T=${T} G=${G} D=${D} inverse=${inverse}`, got, want);
          const inPlace = x.slice();
          K.rope(inPlace, cos, sin, inPlace, Nn, T, G, D, inverse);
          assertBits('rope in place', inPlace, want);
        }
      }
    });
  });

  describe('indexing, convolution lowering, randomness, optimizer', () => {
    // [outer, X, n, inner]: the column split (outer 1, wide rows), the outer split, tiny rows
    const SHAPES: [number, number, number, number][] = [[1, 50, 300, 200], [3, 7, 11, 5], [1, 1, 1, 1], [4, 9, 0, 3],
      [2, 13, 40, 1], [5, 3, 17, 70]];

    test('indexSelect and indexAdd (repeated ids accumulate in order)', () => {
      for (const [outer, X, n, inner] of SHAPES) {
        const x = rand(outer * X * inner, X), idx = Int32Array.from({ length: n }, (_, j) => (j * 7 + (j % 3)) % X);
        const want = f32(outer * n * inner), got = f32(outer * n * inner);
        R.indexSelect(x, idx, want, outer, X, n, inner);
        K.indexSelect(x, idx, got, outer, X, n, inner);
        assertBits(`indexSelect ${[outer, X, n, inner]}`, got, want);
        const dout = rand(outer * n * inner, n + 1), dxw = rand(outer * X * inner, 3), dxg = dxw.slice();
        R.indexAdd(dout, idx, dxw, outer, X, n, inner);
        K.indexAdd(dout, idx, dxg, outer, X, n, inner);
        assertBits(`indexAdd ${[outer, X, n, inner]}`, dxg, dxw);
      }
    });

    test('gather and scatterAdd', () => {
      for (const [outer, X, n, inner] of SHAPES) {
        const x = rand(outer * X * inner, X), m = outer * n * inner;
        const idx = Int32Array.from({ length: m }, (_, e) => Math.floor(rng(e)() * X));
        const want = f32(m), got = f32(m);
        R.gather(x, idx, want, outer, X, n, inner);
        K.gather(x, idx, got, outer, X, n, inner);
        assertBits(`gather ${[outer, X, n, inner]}`, got, want);
        const src = rand(m, 4), ow = rand(outer * X * inner, 5), og = ow.slice();
        R.scatterAdd(src, idx, ow, outer, X, n, inner);
        K.scatterAdd(src, idx, og, outer, X, n, inner);
        assertBits(`scatterAdd ${[outer, X, n, inner]}`, og, ow);
      }
    });

    test('im2col and col2im: padding, strides, kernels larger than the image', () => {
      // [C, H, W, kh, kw, stride, pad]
      const convs = [[3, 7, 9, 3, 3, 1, 1], [2, 8, 8, 2, 2, 2, 0], [4, 5, 6, 1, 1, 1, 0], [1, 3, 4, 5, 5, 1, 2],
        [2, 11, 13, 3, 4, 3, 2], [1, 1, 1, 1, 1, 1, 0], [2, 6, 5, 3, 3, 2, 1]];
      for (const [C, H, W, kh, kw, stride, pad] of convs) {
        const outH = Math.floor((H + 2 * pad - kh) / stride) + 1, outW = Math.floor((W + 2 * pad - kw) / stride) + 1;
        const x = rand(C * H * W, H * W), nc = C * kh * kw * outH * outW;
        const want = f32(nc), got = f32(nc);
        R.im2col(x, want, C, H, W, kh, kw, stride, pad, outH, outW);
        K.im2col(x, got, C, H, W, kh, kw, stride, pad, outH, outW);
        const what = `C=${C} H=${H} W=${W} k=${kh}x${kw} stride=${stride} pad=${pad}`;
        assertBits(`im2col ${what}`, got, want);
        const cols = rand(nc, 7), dw = rand(C * H * W, 8), dg = dw.slice();
        R.col2im(cols, dw, C, H, W, kh, kw, stride, pad, outH, outW);
        K.col2im(cols, dg, C, H, W, kh, kw, stride, pad, outH, outW);
        assertBits(`col2im ${what}`, dg, dw);
      }
    });

    test('dropoutMask matches the counter-based stream bit for bit', () => {
      for (const p of [0, 0.1, 0.5, 1, 0.999999, NaN]) {
        for (const seed of [0, 12345, 2 ** 32 + 7, -1, 1.5]) {
          for (const offset of [0, 123456789, 2 ** 32 - 5, 2 ** 40 + 3, 0.5, -3]) {
            for (const n of [0, 1, 17, 1031]) {
              const want = f32(n), got = f32(n);
              R.dropoutMask(want, n, p, seed, offset);
              K.dropoutMask(got, n, p, seed, offset);
              assertBits(`dropoutMask p=${p} seed=${seed} offset=${offset} n=${n}`, got, want);
            }
          }
        }
      }
      const big = f32(200003), ref = f32(200003);
      R.dropoutMask(ref, big.length, 0.3, 42, 77);
      K.dropoutMask(big, big.length, 0.3, 42, 77);
      assertBits('dropoutMask over threads', big, ref);
    });

    test('adamwStep against the float64 update', () => {
      for (const n of [1, 17, 1031, 100003]) {
        for (const [step, wd] of [[1, 0.1], [7, 0], [1000, 0.01]]) {
          const p = rand(n, n), g = rand(n, n + 1, -1e-2, 1e-2), m = rand(n, n + 2, -1e-3, 1e-3), v = rand(n, n + 3, 0, 1e-5);
          const m0 = m.slice();
          const e = { p: f64(p), m: f64(m), v: f64(v) };
          R.adamwStep(e.p, f64(g), e.m, e.v, n, 6e-4, 0.9, 0.95, 1e-8, wd, step);
          K.adamwStep(p, g, m, v, n, 6e-4, 0.9, 0.95, 1e-8, wd, step);
          // float32 arithmetic with FMA and float32 constants (0.9f, 0.1f, … each off by ≤ u):
          // m = β1·m + (1−β1)·g may cancel, so its bound is on the terms; v (no cancellation) to
          // 2 ulps; p to 2 ulps of p plus the update's share of m's error and 4 u of the update
          const mTerms = (i: number) => 0.9 * Math.abs(m0[i]) + 0.1 * Math.abs(g[i]);
          assertWithin(`adamw m n=${n} t=${step}`, m, e.m, ulps(e.m, 1, (i) => 3 * U * mTerms(i)));
          assertWithin(`adamw v n=${n} t=${step}`, v, e.v, ulps(e.v, 2));
          const stepSize = 6e-4 / (1 - 0.9 ** step), bc2 = Math.sqrt(1 - 0.95 ** step);
          const upd = (i: number) => (stepSize * mTerms(i)) / (Math.sqrt(e.v[i]) / bc2 + 1e-8);
          assertWithin(`adamw p n=${n} t=${step}`, p, e.p, ulps(e.p, 2, (i) => 8 * U * upd(i)));
        }
      }
    });
  });

  test('fused kernels err against float64 at most twice the plain float32 path (softmax, norms, cross-entropy)', () => {
    // the plain path: the same math as separate float32 kernels, each result rounded (a reduction
    // sums in double and rounds once, as the reduce kernel does)
    const fr = Math.fround;
    const sum = (a: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i]; return fr(s); };
    const maxErr = (a: ArrayLike<number>, e: Float64Array) => { let m = 0; for (let i = 0; i < e.length; i++) m = Math.max(m, Math.abs(a[i] - e[i])); return m; };
    const plainLogSoftmaxRow = (x: Float32Array) => {
      const m = x.reduce((p, v) => Math.max(p, v), -Infinity);
      const d = x.map((v) => fr(v - m));
      return { d, e: d.map((v) => fr(Math.exp(v))) };
    };
    for (const [rows, C] of [[64, 1000], [4, 50257], [256, 64]]) {
      const x = rand(rows * C, C, -12, 12), w = rand(C, C + 1, 0.5, 1.5), b = rand(C, C + 2, -1, 1);
      for (let c = 0; c < C; c++) x[c] += 100; // one row with a large mean
      const xe = f64(x);
      const plain = { sm: f32(rows * C), lsm: f32(rows * C), ln: f32(rows * C), rms: f32(rows * C), ce: f32(rows) };
      const t = Int32Array.from({ length: rows }, (_, r) => (r * 7919) % C);
      for (let r = 0; r < rows; r++) {
        const row = x.subarray(r * C, r * C + C);
        const { d, e } = plainLogSoftmaxRow(row);
        const s = sum(e), ls = fr(Math.log(s));
        for (let c = 0; c < C; c++) {
          plain.sm[r * C + c] = fr(e[c] / s);
          plain.lsm[r * C + c] = fr(d[c] - ls);
        }
        plain.ce[r] = -plain.lsm[r * C + t[r]];
        const mean = fr(sum(row) / C), xc = row.map((v) => fr(v - mean));
        const rstd = fr(1 / fr(Math.sqrt(fr(fr(sum(xc.map((v) => fr(v * v)))) / C + 1e-5))));
        for (let c = 0; c < C; c++) plain.ln[r * C + c] = fr(fr(fr(xc[c] * rstd) * w[c]) + b[c]);
        const rr = fr(1 / fr(Math.sqrt(fr(fr(sum(row.map((v) => fr(v * v)))) / C + 1e-6))));
        for (let c = 0; c < C; c++) plain.rms[r * C + c] = fr(fr(row[c] * rr) * w[c]);
      }
      const exact = { sm: new Float64Array(rows * C), lsm: new Float64Array(rows * C), ln: new Float64Array(rows * C), rms: new Float64Array(rows * C), ce: new Float64Array(rows) };
      const got = { sm: f32(rows * C), lsm: f32(rows * C), ln: f32(rows * C), rms: f32(rows * C), ce: f32(rows) };
      const n64 = () => new Float64Array(rows), n32 = () => f32(rows);
      R.softmax(xe, exact.sm, rows, C, false);
      R.softmax(xe, exact.lsm, rows, C, true);
      R.layerNorm(xe, f64(w), f64(b), exact.ln, n64(), n64(), rows, C, 1e-5);
      R.rmsNorm(xe, f64(w), exact.rms, n64(), rows, C, 1e-6);
      R.crossEntropy(xe, t, exact.ce, n64(), rows, C, -100, 0);
      K.softmax(x, got.sm, rows, C, false);
      K.softmax(x, got.lsm, rows, C, true);
      K.layerNorm(x, w, b, got.ln, n32(), n32(), rows, C, 1e-5);
      K.rmsNorm(x, w, got.rms, n32(), rows, C, 1e-6);
      K.crossEntropy(x, t, got.ce, n32(), rows, C, -100, 0);
      for (const k of ['sm', 'lsm', 'ln', 'rms', 'ce'] as const) {
        const eg = maxErr(got[k], exact[k]), ep = maxErr(plain[k], exact[k]);
        assert.ok(eg <= 2 * ep, `${k} ${rows}x${C}: fused error ${eg} > 2 x plain ${ep}`);
      }
    }
  });

  test('sums over rows are identical when several JS threads share the thread pool', { skip: CHILD }, async () => {
    // A call made while another JS thread holds the pool runs on its own thread: the partial sums
    // must not depend on that (nor on which thread ran which part).
    const rows = 301, C = 257, long = 400003;
    const x = rand(rows * C, 1, -2, 2), w = rand(C, 2), dy = rand(rows * C, 3), mean = f32(rows), rstd = f32(rows);
    R.layerNorm(x, w, null, f32(rows * C), mean, rstd, rows, C, 1e-5);
    const xl = rand(long, 4);
    const run = (k: Backend) => {
      const dw = f32(C), db = f32(C), dwr = f32(C), s = f32(1);
      k.layerNormBackward(x, w, mean, rstd, dy, f32(rows * C), dw, db, rows, C);
      k.rmsNormBackward(x, w, rstd, dy, f32(rows * C), dwr, rows, C);
      k.reduce('sum', xl, s, 1, long, 1);
      return [dw, db, dwr, s];
    };
    const want = run(K);
    const addonFile = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'build', 'Release', 'plinth.node');
    const code = `
      const { parentPort, workerData: d } = require('node:worker_threads');
      const a = require(d.addonFile);
      const out = [];
      for (let k = 0; k < 30; k++) {
        const dw = new Float32Array(d.C), db = new Float32Array(d.C), dwr = new Float32Array(d.C), s = new Float32Array(1);
        a.layerNormBackward(d.x, d.w, d.mean, d.rstd, d.dy, new Float32Array(d.rows * d.C), dw, db, d.rows, d.C);
        a.rmsNormBackward(d.x, d.w, d.rstd, d.dy, new Float32Array(d.rows * d.C), dwr, d.rows, d.C);
        a.reduce('sum', d.xl, s, 1, d.xl.length, 1);
        out.push([dw, db, dwr, s]);
      }
      parentPort.postMessage(out);`;
    const workerData = { addonFile, x, w, mean, rstd, dy, xl, rows, C };
    const results = await Promise.all([0, 1, 2].map(() => new Promise<Float32Array[][]>((resolve, reject) => {
      const wk = new Worker(code, { eval: true, workerData });
      wk.once('message', resolve);
      wk.once('error', reject);
    })));
    for (const runs of results) for (const got of runs) for (let k = 0; k < want.length; k++) assertBits(`concurrent result ${k}`, got[k], want[k]);
  });

  test('bad arguments throw instead of touching memory', () => {
    const call = (k: string, ...args: unknown[]) => () => (addon![k] as (...a: unknown[]) => void)(...args);
    const x = f32(10);
    assert.throws(call('unary', 'exp', x, f32(5), 10, 0, 0), RangeError);
    assert.throws(call('unary', 'expm1', x, x, 10, 0, 0), RangeError);
    assert.throws(call('unary', 'exp', new Float64Array(10), x, 10, 0, 0), RangeError);
    assert.throws(call('unary', 'exp', x, x, -1, 0, 0), RangeError);
    assert.throws(call('binary', 'add', x, [1], x, [2], x, [10]), RangeError);
    assert.throws(call('binary', 'add', x, [1, 1], x, [1], x, [10]), RangeError);
    assert.throws(call('copyStrided', x, f32(100), [10, 10], [1, 10]), RangeError);
    assert.throws(call('copyStrided', x, new Int32Array(10), [10], [1]), RangeError);
    assert.throws(call('cast', x, 'f32', new Uint16Array(10), 'i32', 10), RangeError);
    assert.throws(call('reduce', 'argmax', x, f32(1), 1, 10, 1), RangeError);
    assert.throws(call('crossEntropy', x, Int32Array.of(5, 10), f32(2), f32(2), 2, 5, -100, 0), RangeError);
    assert.throws(call('indexSelect', x, Int32Array.of(0, 10), f32(2), 1, 10, 2, 1), RangeError);
    assert.throws(call('gather', x, Int32Array.of(-1), f32(1), 1, 10, 1, 1), RangeError);
    assert.throws(call('scatterAdd', f32(1), Int32Array.of(10), x, 1, 10, 1, 1), RangeError);
    assert.throws(call('rope', x, x, x, x, 1, 1, 1, 3, false), RangeError);
    assert.throws(call('layerNorm', x, f32(3), null, x, f32(2), f32(2), 2, 5, 1e-5), RangeError);
    assert.throws(call('im2col', x, f32(10), 1, 4, 4, 3, 3, 1, 0, 2, 2), RangeError);
    assert.throws(call('softmax', x), RangeError);
  });
}

// ---- ref against direct formulas (always) ---------------------------------------------------------

function formulaSuite(): void {
  describe('ref kernels against direct float64 formulas (the semantics the native kernels mirror)', () => {
    test('stores: fill and cast follow JS conversions (ToInt32 wrap, truncation, round-to-nearest-even halves)', () => {
      const i = new Int32Array(3);
      R.fill(i, 2 ** 32 + 5.9, 3);
      assert.deepEqual([...i], [5, 5, 5]);
      const h = new Uint16Array(8), src = Float32Array.of(1, 65504, 65520, 2 ** -24, 1 + 2 ** -11, -0, NaN, 1 + 3 * 2 ** -11);
      R.cast(src, 'f32', h, 'f16', 8);
      assert.deepEqual([...h], [0x3c00, 0x7bff, 0x7c00, 0x0001, 0x3c00, 0x8000, 0x7e00, 0x3c02]);
      R.cast(src, 'f32', h, 'bf16', 8);
      assert.deepEqual([...h.subarray(0, 4)], [0x3f80, 0x4780, 0x4780, 0x3380]);
      const t = new Int32Array(4);
      R.cast(Float32Array.of(-1.9, 2.9, 3e9, NaN), 'f32', t, 'i32', 4);
      assert.deepEqual([...t], [-1, 2, 3e9 - 2 ** 32, 0]);
    });

    test('softmax, layerNorm and crossEntropy equal their textbook formulas', () => {
      const C = 29, x = f64(rand(C, 1, -5, 5));
      const y = new Float64Array(C);
      R.softmax(x, y, 1, C, false);
      const z = x.reduce((s, v) => s + Math.exp(v), 0);
      for (let c = 0; c < C; c++) assert.ok(Math.abs(y[c] - Math.exp(x[c]) / z) < 1e-15);
      const out = new Float64Array(C), mean = new Float64Array(1), rstd = new Float64Array(1);
      R.layerNorm(x, null, null, out, mean, rstd, 1, C, 0);
      const mu = x.reduce((s, v) => s + v, 0) / C, sd = Math.sqrt(x.reduce((s, v) => s + (v - mu) ** 2, 0) / C);
      for (let c = 0; c < C; c++) assert.ok(Math.abs(out[c] - (x[c] - mu) / sd) < 1e-13);
      const loss = new Float64Array(1), lse = new Float64Array(1);
      R.crossEntropy(x, Int32Array.of(3), loss, lse, 1, C, -100, 0);
      assert.ok(Math.abs(loss[0] + Math.log(Math.exp(x[3]) / z)) < 1e-13);
      R.crossEntropy(x, Int32Array.of(3), loss, lse, 1, C, 3, 0);
      assert.equal(loss[0], 0);
    });

    test('dropoutMask is u ≥ p ? 1/(1−p) : 0 with u = uniformAt(seed, offset + i)', () => {
      const out = new Float64Array(500);
      R.dropoutMask(out, 500, 0.25, 9, 2 ** 32 - 3);
      for (let i = 0; i < 500; i++) assert.equal(out[i], uniformAt(9, 2 ** 32 - 3 + i) >= 0.25 ? 1 / 0.75 : 0);
    });

    test('unaryBackward agrees with central differences for the smooth ops', () => {
      const x = f64(rand(50, 3, -3, 3)), dy = new Float64Array(50).fill(1), h = 1e-6;
      for (const op of ['exp', 'tanh', 'sigmoid', 'gelu_tanh', 'gelu_erf', 'silu', 'sin'] as UnaryOp[]) {
        const y = new Float64Array(50), dx = new Float64Array(50), yp = new Float64Array(50), ym = new Float64Array(50);
        R.unary(op, x, y, 50, 0, 0);
        R.unaryBackward(op, x, y, dy, dx, 50, 0, 0);
        R.unary(op, x.map((v) => v + h), yp, 50, 0, 0);
        R.unary(op, x.map((v) => v - h), ym, 50, 0, 0);
        for (let i = 0; i < 50; i++) assert.ok(Math.abs(dx[i] - (yp[i] - ym[i]) / (2 * h)) < 1e-7, `${op} at ${x[i]}`);
      }
    });
  });
}

/** Reruns this file in a child process with a capped ISA (CPU detection is cached per process). */
function runChild(isa: string, threads: string): Promise<{ status: number | null; out: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, PLINTH_ISA: isa, PLINTH_KERNELS_CHILD: '1' };
  if (threads) env.PLINTH_THREADS = threads;
  delete env.NODE_TEST_CONTEXT; // the child reports on its own, not to this runner
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { env });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (status) => resolve({ status, out }));
  });
}

if (!CHILD) formulaSuite();
if (N) {
  // the children start at once and run while this process checks the best ISA
  const children = CHILD ? [] : ([['avx2', ''], ['scalar', '1']] as const).map(([isa, threads]) => ({ isa, threads, run: runChild(isa, threads) }));
  describe(`native kernels against ref${process.env.PLINTH_ISA ? ` (PLINTH_ISA=${process.env.PLINTH_ISA})` : ''}`, () => nativeSuite(N));
  if (!CHILD) {
    describe('native kernels on every instruction set', () => {
      for (const { isa, threads, run } of children) {
        test(`PLINTH_ISA=${isa}${threads ? ` PLINTH_THREADS=${threads}` : ''}`, async () => {
          const r = await run;
          assert.equal(r.status, 0, `the native checks failed with PLINTH_ISA=${isa}:\n${r.out}`);
        });
      }
    });
  }
}
