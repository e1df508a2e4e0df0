// The fused attention kernel: the native kernel against the ref kernel on random shapes (forward
// out and lse, backward dq, dk, dv), on every instruction-set path, and the FlashAttention rule:
// the fused kernel's error against a float64 evaluation is at most twice the error of the plain
// float32 path that materialises the scores (matmul → scale + mask → softmax → matmul) on the same
// backend. The rule holds the native kernel against the native kernels' plain path, and the ref
// kernel against the ref kernels' plain path; without the native addon only the ref half exists.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { createNativeBackend, loadAddon } from '../../src/backend/native/index.js';
import { uniformAt } from '../../src/backend/random.js';
import type { Backend, FloatArray } from '../../src/backend/backend.js';
import { assertClose, rerunOnEveryIsa } from '../helpers.js';

const addon = loadAddon();
const native = addon ? createNativeBackend(addon) : null;
// Set in the child processes that rerun the native checks on a capped instruction set.
const ISA_CHILD = process.env.PLINTH_ATTENTION_ISA_CHILD === '1';

interface Case { B: number; H: number; KVH: number; Tq: number; Tk: number; D: number; causal: boolean; qOffset: number }

const name = (c: Case): string =>
  `B=${c.B} H=${c.H}/${c.KVH} Tq=${c.Tq} Tk=${c.Tk} D=${c.D} ${c.causal ? `causal qOffset=${c.qOffset}` : 'bidirectional'}`;

// Tile sizes are 64, so 1, 17, 63 and 130 cover one partial tile, one short of a tile, and two
// tiles plus a remainder; D = 8, 12, 64, 80 covers partial and whole SIMD column blocks. Query
// tiles of one or two rows (Tq = 1, and the tails of 65 and 130) take the kernel's single-query path.
const CASES: Case[] = [
  { B: 1, H: 4, KVH: 4, Tq: 1, Tk: 1, D: 8, causal: true, qOffset: 0 },
  { B: 2, H: 4, KVH: 4, Tq: 17, Tk: 17, D: 12, causal: true, qOffset: 0 },
  { B: 1, H: 6, KVH: 2, Tq: 63, Tk: 63, D: 64, causal: true, qOffset: 0 },
  { B: 2, H: 8, KVH: 1, Tq: 130, Tk: 130, D: 8, causal: true, qOffset: 0 },
  { B: 1, H: 4, KVH: 4, Tq: 130, Tk: 130, D: 64, causal: false, qOffset: 0 },
  { B: 2, H: 6, KVH: 2, Tq: 17, Tk: 17, D: 8, causal: false, qOffset: 0 },
  { B: 1, H: 8, KVH: 1, Tq: 63, Tk: 63, D: 12, causal: false, qOffset: 0 },
  { B: 1, H: 4, KVH: 2, Tq: 70, Tk: 70, D: 80, causal: true, qOffset: 0 },
  // a KV cache: Tq new queries after qOffset cached positions (decode is Tq = 1)
  { B: 2, H: 6, KVH: 2, Tq: 5, Tk: 70, D: 12, causal: true, qOffset: 65 },
  { B: 1, H: 8, KVH: 1, Tq: 1, Tk: 130, D: 64, causal: true, qOffset: 129 },
  { B: 2, H: 4, KVH: 2, Tq: 1, Tk: 70, D: 12, causal: true, qOffset: 69 },
  // a last query tile of one row (65 = 64 + 1) takes the single-query path, with D = 80
  { B: 1, H: 2, KVH: 1, Tq: 65, Tk: 65, D: 80, causal: false, qOffset: 0 },
  { B: 1, H: 4, KVH: 4, Tq: 17, Tk: 130, D: 64, causal: true, qOffset: 113 },
  // cross-attention shape: fewer queries than keys, no mask
  { B: 1, H: 4, KVH: 4, Tq: 17, Tk: 63, D: 8, causal: false, qOffset: 0 },
];

/** n uniform numbers in [lo, hi) from stream `seed`, as float32. */
function rand32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * uniformAt(seed, i);
  return out;
}

interface Inputs { q: Float32Array; k: Float32Array; v: Float32Array; dout: Float32Array; scale: number }

function inputs(c: Case, seed: number): Inputs {
  const nq = c.B * c.H * c.Tq * c.D;
  const nk = c.B * c.KVH * c.Tk * c.D;
  // scores of a few units, as in a trained model, so the softmax is neither flat nor one-hot
  return {
    q: rand32(nq, seed, -2, 2), k: rand32(nk, seed + 1, -2, 2), v: rand32(nk, seed + 2), dout: rand32(nq, seed + 3),
    scale: 1 / Math.sqrt(c.D),
  };
}

interface Result<A> { out: A; lse: A; dq: A; dk: A; dv: A }

/** Forward then backward of one attention kernel pair, in the precision of `make`. */
function run<A extends FloatArray>(be: Pick<Backend, 'attention' | 'attentionBackward'>, c: Case, x: Inputs,
  make: (src: ArrayLike<number>) => A): Result<A> {
  const { B, H, KVH, Tq, Tk, D, causal, qOffset } = c;
  const q = make(x.q), k = make(x.k), v = make(x.v), dout = make(x.dout);
  // outputs start as garbage to check that the kernels overwrite them
  const out = make(new Float32Array(q.length).fill(7)), lse = make(new Float32Array(B * H * Tq).fill(7));
  const dq = make(new Float32Array(q.length).fill(7)), dk = make(new Float32Array(k.length).fill(7));
  const dv = make(new Float32Array(v.length).fill(7));
  be.attention(q, k, v, out, lse, B, H, KVH, Tq, Tk, D, x.scale, causal, qOffset);
  be.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, H, KVH, Tq, Tk, D, x.scale, causal, qOffset);
  return { out, lse, dq, dk, dv };
}

const f32 = (a: ArrayLike<number>): Float32Array => Float32Array.from(a);
const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue; // equal infinities (lse of a row that sees no key)
    m = Math.max(m, Math.abs(a[i] - b[i]));
  }
  return m;
}

type PlainKernels = Pick<Backend, 'matmul' | 'unary' | 'softmax' | 'softmaxBackward'>;

/**
 * The plain float32 path with the Tq×Tk scores written out, from one backend's matmul, unary and
 * softmax kernels: S = QKᵀ, S *= scale, masked entries −inf, P = softmax(S), out = PV; backward
 * dP = dO Vᵀ, dS = softmaxBackward(P, dP)·scale, dQ = dS K, dK = Σ_g dSᵀ Q, dV = Σ_g Pᵀ dO over the
 * query heads g sharing a key/value head.
 */
function plainAttention(R: PlainKernels, c: Case, x: Inputs): Omit<Result<Float32Array>, 'lse'> {
  const { B, H, KVH, Tq, Tk, D, causal, qOffset } = c;
  const G = H / KVH;
  const S = new Float32Array(B * H * Tq * Tk); // scores, then probabilities P
  const dP = new Float32Array(S.length); // dP, then dS
  const out = new Float32Array(x.q.length), dq = new Float32Array(x.q.length);
  const dk = new Float32Array(x.k.length), dv = new Float32Array(x.k.length);
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < KVH; kh++) {
      const h0 = b * H + kh * G; // first query head of the group
      const qo = h0 * Tq * D, so = h0 * Tq * Tk, ko = (b * KVH + kh) * Tk * D;
      // the G query heads of the group as a batch against one (broadcast) key/value head
      R.matmul(x.q.subarray(qo), x.k.subarray(ko), S.subarray(so), Tq, Tk, D, false, true, G, Tq * D, 0, Tq * Tk, false);
    }
  }
  R.unary('mulScalar', S, S, S.length, x.scale, 0);
  if (causal) {
    for (let r = 0; r < B * H * Tq; r++) {
      const i = r % Tq; // S is (B,H,Tq,Tk)
      for (let j = qOffset + i + 1; j < Tk; j++) S[r * Tk + j] = -Infinity;
    }
  }
  R.softmax(S, S, B * H * Tq, Tk, false);
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < KVH; kh++) {
      const h0 = b * H + kh * G;
      const qo = h0 * Tq * D, so = h0 * Tq * Tk, ko = (b * KVH + kh) * Tk * D;
      R.matmul(S.subarray(so), x.v.subarray(ko), out.subarray(qo), Tq, D, Tk, false, false, G, Tq * Tk, 0, Tq * D, false);
      R.matmul(x.dout.subarray(qo), x.v.subarray(ko), dP.subarray(so), Tq, Tk, D, false, true, G, Tq * D, 0, Tq * Tk, false);
    }
  }
  R.softmaxBackward(S, dP, dP, B * H * Tq, Tk, false);
  R.unary('mulScalar', dP, dP, dP.length, x.scale, 0);
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < KVH; kh++) {
      const h0 = b * H + kh * G;
      const qo = h0 * Tq * D, so = h0 * Tq * Tk, ko = (b * KVH + kh) * Tk * D;
      R.matmul(dP.subarray(so), x.k.subarray(ko), dq.subarray(qo), Tq, D, Tk, false, false, G, Tq * Tk, 0, Tq * D, false);
      for (let g = 0; g < G; g++) {
        const qg = qo + g * Tq * D, sg = so + g * Tq * Tk;
        R.matmul(dP.subarray(sg), x.q.subarray(qg), dk.subarray(ko), Tk, D, Tq, true, false, 1, 0, 0, 0, g > 0);
        R.matmul(S.subarray(sg), x.dout.subarray(qg), dv.subarray(ko), Tk, D, Tq, true, false, 1, 0, 0, 0, g > 0);
      }
    }
  }
  return { out, dq, dk, dv };
}

// The native tests exist only where the addon is built; each capped instruction set reruns this
// file in a child process, whose own run asserts everything but the spawning.
if (native) describe('native attention against ref', () => {
  test('the native addon provides attention and attentionBackward for f32', () => {
    assert.ok(native!.supports('attention', 'f32') && native!.supports('attentionBackward', 'f32'));
    if (ISA_CHILD && process.env.PLINTH_ISA === 'avx2') assert.equal(addon!.cpu.avx512f, false);
    if (ISA_CHILD && process.env.PLINTH_ISA === 'scalar') assert.equal(addon!.cpu.avx2fma, false);
  });

  for (const [ci, c] of CASES.entries()) {
    test(name(c), () => {
      const x = inputs(c, 1000 + 10 * ci);
      const got = run(native as Backend, c, x, f32);
      const want = run(R, c, x, f32);
      // native accumulates in float32 (over D, a key tile, the key tiles), ref in double
      for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        const scale = Math.max(1, ...Array.from(want[key], (e) => (Number.isFinite(e) ? Math.abs(e) : 0)));
        assertClose(got[key], want[key], 1e-5 * scale, key);
      }
    });
  }

  test('a key/value sequence of length 0 gives out 0, lse −inf and zero gradients', () => {
    const c: Case = { B: 1, H: 2, KVH: 1, Tq: 3, Tk: 0, D: 8, causal: false, qOffset: 0 };
    const got = run(native as Backend, c, inputs(c, 7), f32);
    assert.ok(got.out.every((e) => e === 0) && got.dq.every((e) => e === 0));
    assert.ok(got.lse.every((e) => e === -Infinity));
  });

  test('the backward is deterministic', () => {
    const c = CASES[3];
    const x = inputs(c, 77);
    const a = run(native as Backend, c, x, f32);
    const b = run(native as Backend, c, x, f32);
    for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) assert.deepEqual(a[key], b[key], key);
  });

  test('bad arguments throw instead of touching memory', () => {
    const fwd = addon!.attention as (...a: unknown[]) => void;
    const bwd = addon!.attentionBackward as (...a: unknown[]) => void;
    const B = 1, H = 4, KVH = 2, T = 9, D = 8;
    const q = new Float32Array(B * H * T * D), k = new Float32Array(B * KVH * T * D), lse = new Float32Array(B * H * T);
    const ok: unknown[] = [q, k, k, new Float32Array(q.length), lse, B, H, KVH, T, T, D, 0.5, true, 0];
    assert.doesNotThrow(() => fwd(...ok));
    const bad: [number, unknown][] = [
      [0, new Float32Array(q.length - 1)], // q too short
      [2, new Float32Array(k.length - 1)], // v too short
      [4, new Float32Array(lse.length - 1)], // lse too short
      [0, new Float64Array(q.length)], // wrong element type
      [6, 3], // H not a multiple of KVH
      [7, 0], // KVH 0 with H > 0
      [9, -1], // negative Tk
      [10, 2.5], // fractional D
      [11, Infinity], // scale
      [13, -3], // negative causal offset
    ];
    for (const [i, value] of bad) {
      const args = ok.slice();
      args[i] = value;
      assert.throws(() => fwd(...args), RangeError, `argument ${i} = ${String(value)}`);
    }
    assert.throws(() => fwd(...ok.slice(0, 13)), RangeError, 'too few arguments');
    const okB = [q, k, k, q, lse, q, new Float32Array(q.length), new Float32Array(k.length), new Float32Array(k.length - 1),
      B, H, KVH, T, T, D, 0.5, true, 0];
    assert.throws(() => bwd(...okB), RangeError, 'dv too short');
  });
});

if (native && !ISA_CHILD) rerunOnEveryIsa('native attention on every instruction set', import.meta.url, 'PLINTH_ATTENTION_ISA_CHILD');

describe('FlashAttention rule: fused error ≤ 2× the plain float32 path, against float64', () => {
  const RULE_CASES: Case[] = [CASES[1], CASES[2], CASES[4], CASES[5], CASES[7], CASES[8], CASES[10],
    { B: 1, H: 2, KVH: 2, Tq: 200, Tk: 200, D: 64, causal: true, qOffset: 0 }];
  // The ref kernel is checked once, not again in every instruction-set child.
  const backends: [string, Backend, PlainKernels][] = [];
  if (native) {
    for (const k of ['matmul', 'unary', 'softmax', 'softmaxBackward', 'attention', 'attentionBackward'] as const)
      assert.ok(native.supports(k, 'f32'), `the native addon lacks ${k} for f32`);
    backends.push(['native', native as Backend, native as PlainKernels]);
  }
  if (!ISA_CHILD) backends.push(['ref', R, R]);
  const check = (got: Omit<Result<ArrayLike<number>>, 'lse'>, exact: Result<Float64Array>,
    plain: Omit<Result<Float32Array>, 'lse'>, keys: readonly ('out' | 'dq' | 'dk' | 'dv')[]): void => {
    for (const key of keys) {
      const eFused = maxAbsDiff(got[key], exact[key]);
      const ePlain = maxAbsDiff(plain[key], exact[key]);
      assert.ok(ePlain > 0, `${key}: the plain path is exact here; the case tells nothing`);
      assert.ok(eFused <= 2 * ePlain, `${key}: fused error ${eFused.toExponential(2)} > 2 × plain ${ePlain.toExponential(2)}`);
    }
  };
  for (const [ci, c] of RULE_CASES.entries()) {
    const x = inputs(c, 5000 + 10 * ci);
    let exact: Result<Float64Array> | null = null;
    for (const [who, fused, plainKernels] of backends) {
      const results = (() => {
        let memo: [Result<Float64Array>, Result<Float32Array>, Omit<Result<Float32Array>, 'lse'>] | null = null;
        return () => (memo ??= [exact ??= run(R, c, x, f64), run(fused, c, x, f32), plainAttention(plainKernels, c, x)]);
      })();
      test(`${who} forward: ${name(c)}`, () => {
        const [ex, got, plain] = results();
        check(got, ex, plain, ['out']);
      });
      test(`${who} backward: ${name(c)}`, () => {
        const [ex, got, plain] = results();
        check(got, ex, plain, ['dq', 'dk', 'dv']);
      });
    }
  }
});
