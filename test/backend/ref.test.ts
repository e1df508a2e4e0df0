// The ref backend against the math: every backward by central finite differences in float64,
// every adjoint pair by <A x, y> = <x, Aᵀ y>, and the forward kernels against independent
// hand-written evaluations (materialised attention, explicit transposes, the AdamW formula, bit
// patterns of 16-bit floats).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { erf } from '../../src/backend/ref/elementwise.js';
import { uniformAt } from '../../src/backend/random.js';
import type { FloatArray, UnaryOp } from '../../src/backend/backend.js';

// ---- helpers ---------------------------------------------------------------------------------------

/** n uniform numbers in [lo, hi) from stream `seed`. */
function rand(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * uniformAt(seed, i);
  return out;
}

function dot(a: FloatArray, b: FloatArray): number {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const err = Math.abs(a - e);
    assert.ok(err <= tol * Math.max(1, Math.abs(e)), `${what}[${i}]: got ${a}, expected ${e} (error ${err})`);
  }
}

const H_FD = 1e-6;

/**
 * Central differences of L = Σ_k <upstream[k], outputs[k]> with respect to every element of each
 * input that has an analytic gradient, compared with that gradient. `forward` recomputes the
 * outputs from the (perturbed) inputs.
 */
function gradCheck(what: string, inputs: Float64Array[], analytic: (Float64Array | null)[],
  forward: () => Float64Array[], upstream: Float64Array[]): void {
  const loss = (): number => {
    const outs = forward();
    let L = 0;
    for (let k = 0; k < outs.length; k++) L += dot(outs[k], upstream[k]);
    return L;
  };
  for (let k = 0; k < inputs.length; k++) {
    const grad = analytic[k];
    if (!grad) continue;
    const x = inputs[k];
    for (let i = 0; i < x.length; i++) {
      const saved = x[i];
      x[i] = saved + H_FD;
      const lp = loss();
      x[i] = saved - H_FD;
      const lm = loss();
      x[i] = saved;
      const numeric = (lp - lm) / (2 * H_FD);
      const err = Math.abs(numeric - grad[i]);
      assert.ok(err <= 1e-6 * Math.max(Math.abs(numeric), Math.abs(grad[i])) + 1e-8,
        `${what}: input ${k} element ${i}: analytic ${grad[i]}, numeric ${numeric}`);
    }
  }
}

// ---- backward kernels by finite differences ---------------------------------------------------------

describe('unaryBackward matches finite differences for every op', () => {
  // Each op's inputs stay inside its domain and away from its kinks, where the derivative is
  // one-sided and central differences do not apply.
  const cases: { op: UnaryOp; lo: number; hi: number; p0?: number; p1?: number }[] = [
    { op: 'neg', lo: -2, hi: 2 },
    { op: 'exp', lo: -2, hi: 2 },
    { op: 'log', lo: 0.1, hi: 3 },
    { op: 'sqrt', lo: 0.1, hi: 3 },
    { op: 'rsqrt', lo: 0.1, hi: 3 },
    { op: 'abs', lo: -2, hi: 2 },
    { op: 'tanh', lo: -2, hi: 2 },
    { op: 'sigmoid', lo: -4, hi: 4 },
    { op: 'relu', lo: -2, hi: 2 },
    { op: 'gelu_tanh', lo: -4, hi: 4 },
    { op: 'gelu_erf', lo: -4, hi: 4 },
    { op: 'silu', lo: -4, hi: 4 },
    { op: 'powScalar', lo: 0.1, hi: 3, p0: 2.5 },
    { op: 'powScalar', lo: -2, hi: 2, p0: 3 },
    { op: 'powScalar', lo: 0.1, hi: 3, p0: -1.5 },
    { op: 'addScalar', lo: -2, hi: 2, p0: 0.75 },
    { op: 'mulScalar', lo: -2, hi: 2, p0: -1.25 },
    { op: 'clamp', lo: -2, hi: 2, p0: -0.5, p1: 0.7 },
    { op: 'clamp', lo: -2, hi: 2, p0: -Infinity, p1: 0.3 },
    { op: 'sign', lo: -2, hi: 2 },
    { op: 'square', lo: -2, hi: 2 },
    { op: 'reciprocal', lo: 0.2, hi: 3 },
    { op: 'sin', lo: -3, hi: 3 },
    { op: 'cos', lo: -3, hi: 3 },
  ];
  for (const [ci, c] of cases.entries()) {
    test(`${c.op}(${c.p0 ?? ''}${c.p1 !== undefined ? ', ' + c.p1 : ''})`, () => {
      const p0 = c.p0 ?? 0;
      const p1 = c.p1 ?? 0;
      const n = 40;
      const x = rand(n, 100 + ci, c.lo, c.hi);
      // keep every point 1e-3 away from the kinks of relu, abs, sign and clamp
      for (let i = 0; i < n; i++) {
        for (const kink of [0, p0, p1]) if (Math.abs(x[i] - kink) < 1e-3) x[i] = kink + 2e-3;
      }
      const dy = rand(n, 200 + ci);
      const y = new Float64Array(n);
      R.unary(c.op, x, y, n, p0, p1);
      const dx = new Float64Array(n);
      R.unaryBackward(c.op, x, y, dy, dx, n, p0, p1);
      gradCheck(c.op, [x], [dx], () => {
        const out = new Float64Array(n);
        R.unary(c.op, x, out, n, p0, p1);
        return [out];
      }, [dy]);
    });
  }

  test('derivatives at the kinks follow torch', () => {
    const at = (op: UnaryOp, x: number, p0 = 0, p1 = 0): number => {
      const xs = new Float64Array([x]);
      const y = new Float64Array(1);
      R.unary(op, xs, y, 1, p0, p1);
      const dx = new Float64Array(1);
      R.unaryBackward(op, xs, y, new Float64Array([1]), dx, 1, p0, p1);
      return dx[0];
    };
    assert.equal(at('relu', 0), 0);
    assert.equal(at('abs', 0), 0);
    assert.equal(at('sign', 0.5), 0);
    assert.equal(at('clamp', -0.5, -0.5, 0.7), 1); // torch passes the gradient where min <= x <= max
    assert.equal(at('clamp', 0.7, -0.5, 0.7), 1);
    assert.equal(at('clamp', 0.71, -0.5, 0.7), 0);
    assert.equal(at('powScalar', 0, 0), 0); // d/dx x^0 is 0, not 0·0^-1
    assert.equal(at('powScalar', 2, 0), 0);
    assert.equal(at('powScalar', 0, 2), 0);
  });
});

describe('forward kernels with known values', () => {
  test('erf to ~1e-15 relative', () => {
    // reference values from a correctly rounded erf (CPython math.erf)
    const known: [number, number][] = [
      [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149],
      [2, 0.9953222650189527], [3, 0.9999779095030014], [5.5, 0.9999999999999927],
      [-0.3, -0.3286267594591274], [1e-10, 1.1283791670955126e-10], [7, 1], [-7, -1],
    ];
    for (const [x, e] of known) assert.ok(Math.abs(erf(x) - e) <= 2e-15 * Math.abs(e), `erf(${x}) = ${erf(x)}, expected ${e}`);
    assert.equal(erf(0), 0);
  });

  test('gelu variants match torch', () => {
    const x = new Float64Array([1, -0.5, 2]);
    const y = new Float64Array(3);
    R.unary('gelu_erf', x, y, 3, 0, 0);
    assertClose(y, [0.841344746068543, -0.15426876936299344, 1.9544997361036416], 1e-15, 'gelu_erf');
    R.unary('gelu_tanh', x, y, 3, 0, 0);
    assertClose(y, [0.8411919906082768, -0.15428599017485606, 1.954597694087775], 1e-15, 'gelu_tanh');
  });

  test('binary broadcasts through strides and comparisons write 0/1', () => {
    // a (2,3) contiguous, b (3) broadcast over rows
    const a = new Float64Array([1, 2, 3, 4, 5, 6]);
    const b = new Float64Array([2, 2, 7]);
    const out = new Float64Array(6);
    R.binary('sub', a, [3, 1], b, [0, 1], out, [2, 3]);
    assert.deepEqual([...out], [-1, 0, -4, 2, 3, -1]);
    R.binary('ge', a, [3, 1], b, [0, 1], out, [2, 3]);
    assert.deepEqual([...out], [0, 1, 0, 1, 1, 0]);
    R.binary('pow', a, [3, 1], b, [0, 1], out, [2, 3]);
    assert.deepEqual([...out], [1, 4, 2187, 16, 25, 279936]);
    // a read transposed: a as (3,2) viewed with strides [1,3]
    R.binary('maximum', a, [1, 3], new Float64Array([3.5]), [0, 0], out, [3, 2]);
    assert.deepEqual([...out], [3.5, 4, 3.5, 5, 3.5, 6]);
  });

  test('binary and unary write in place over a same-shaped operand', () => {
    const a = new Float64Array([1, 2, 3, 4, 5, 6]);
    R.binary('add', a, [3, 1], new Float64Array([10, 20, 30]), [0, 1], a, [2, 3]);
    assert.deepEqual([...a], [11, 22, 33, 14, 25, 36]);
    const b = new Float64Array([2, 4, 8, 16, 32, 64]);
    R.binary('div', new Float64Array([64]), [0, 0], b, [3, 1], b, [2, 3]);
    assert.deepEqual([...b], [32, 16, 8, 4, 2, 1]);
    R.unary('square', b, b, 6, 0, 0);
    assert.deepEqual([...b], [1024, 256, 64, 16, 4, 1]);
  });

  test('where selects with a broadcast condition of any dtype', () => {
    const cond = new Uint8Array([1, 0]);
    const a = new Float32Array([1, 2, 3, 4]);
    const b = new Float32Array([-1]);
    const out = new Float32Array(4);
    R.where(cond, [0, 1], a, [2, 1], b, [0, 0], out, [2, 2]);
    assert.deepEqual([...out], [1, -1, 3, -1]);
  });

  test('reduce over the middle axis, argmax/argmin take the first tie', () => {
    // x (2, 3, 2)
    const x = new Float64Array([1, 5, 3, 5, 3, -2, 0, 0, 9, 1, -4, 1]);
    const out = new Float64Array(4);
    R.reduce('sum', x, out, 2, 3, 2);
    assert.deepEqual([...out], [7, 8, 5, 2]);
    R.reduce('sumSquares', x, out, 2, 3, 2);
    assert.deepEqual([...out], [19, 54, 97, 2]);
    R.reduce('max', x, out, 2, 3, 2);
    assert.deepEqual([...out], [3, 5, 9, 1]);
    R.reduce('min', x, out, 2, 3, 2);
    assert.deepEqual([...out], [1, -2, -4, 0]);
    const idx = new Int32Array(4);
    R.reduce('argmax', x, idx, 2, 3, 2);
    assert.deepEqual([...idx], [1, 0, 1, 1]);
    R.reduce('argmin', x, idx, 2, 3, 2);
    assert.deepEqual([...idx], [0, 2, 2, 0]);
  });

  test('copyStrided gathers transposes and broadcasts', () => {
    const src = new Int32Array([1, 2, 3, 4, 5, 6]); // (2,3)
    const dst = new Int32Array(6);
    R.copyStrided(src, dst, [3, 2], [1, 3]);
    assert.deepEqual([...dst], [1, 4, 2, 5, 3, 6]);
    const row = new Int32Array(6);
    R.copyStrided(src, row, [2, 3], [0, 1]);
    assert.deepEqual([...row], [1, 2, 3, 1, 2, 3]);
    const scalar = new Float32Array(1);
    R.copyStrided(new Float32Array([7]), scalar, [], []);
    assert.equal(scalar[0], 7);
  });
});

describe('fused kernels: backward matches finite differences', () => {
  test('softmaxBackward, softmax and log-softmax', () => {
    const rows = 3;
    const C = 7;
    for (const log of [false, true]) {
      const x = rand(rows * C, 1, -3, 3);
      const dy = rand(rows * C, 2);
      const y = new Float64Array(rows * C);
      R.softmax(x, y, rows, C, log);
      const dx = new Float64Array(rows * C);
      R.softmaxBackward(y, dy, dx, rows, C, log);
      gradCheck(log ? 'logSoftmax' : 'softmax', [x], [dx], () => {
        const out = new Float64Array(rows * C);
        R.softmax(x, out, rows, C, log);
        return [out];
      }, [dy]);
    }
  });

  test('layerNormBackward with weight and bias, accumulating dw and db', () => {
    const rows = 4;
    const C = 6;
    const x = rand(rows * C, 3, -2, 2);
    const w = rand(C, 4, 0.5, 1.5);
    const b = rand(C, 5);
    const dy = rand(rows * C, 6);
    const forward = (): Float64Array[] => {
      const out = new Float64Array(rows * C);
      R.layerNorm(x, w, b, out, new Float64Array(rows), new Float64Array(rows), rows, C, 1e-5);
      return [out];
    };
    const mean = new Float64Array(rows);
    const rstd = new Float64Array(rows);
    R.layerNorm(x, w, b, new Float64Array(rows * C), mean, rstd, rows, C, 1e-5);
    const dx = new Float64Array(rows * C);
    // dw and db start at 1 to check that the kernel accumulates into them
    const dw = new Float64Array(C).fill(1);
    const db = new Float64Array(C).fill(1);
    R.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, C);
    for (let c = 0; c < C; c++) {
      dw[c] -= 1;
      db[c] -= 1;
    }
    gradCheck('layerNorm', [x, w, b], [dx, dw, db], forward, [dy]);
  });

  test('layerNormBackward without weight and bias', () => {
    const rows = 3;
    const C = 5;
    const x = rand(rows * C, 7, -2, 2);
    const dy = rand(rows * C, 8);
    const mean = new Float64Array(rows);
    const rstd = new Float64Array(rows);
    R.layerNorm(x, null, null, new Float64Array(rows * C), mean, rstd, rows, C, 1e-5);
    const dx = new Float64Array(rows * C);
    R.layerNormBackward(x, null, mean, rstd, dy, dx, null, null, rows, C);
    gradCheck('layerNorm (no affine)', [x], [dx], () => {
      const out = new Float64Array(rows * C);
      R.layerNorm(x, null, null, out, new Float64Array(rows), new Float64Array(rows), rows, C, 1e-5);
      return [out];
    }, [dy]);
  });

  test('rmsNormBackward with and without weight', () => {
    const rows = 4;
    const C = 6;
    const x = rand(rows * C, 9, -2, 2);
    const w = rand(C, 10, 0.5, 1.5);
    const dy = rand(rows * C, 11);
    for (const weight of [w, null]) {
      const rstd = new Float64Array(rows);
      R.rmsNorm(x, weight, new Float64Array(rows * C), rstd, rows, C, 1e-6);
      const dx = new Float64Array(rows * C);
      const dw = weight ? new Float64Array(C) : null;
      R.rmsNormBackward(x, weight, rstd, dy, dx, dw, rows, C);
      gradCheck('rmsNorm', weight ? [x, w] : [x], weight ? [dx, dw] : [dx], () => {
        const out = new Float64Array(rows * C);
        R.rmsNorm(x, weight, out, new Float64Array(rows), rows, C, 1e-6);
        return [out];
      }, [dy]);
    }
  });

  test('crossEntropyBackward with an ignored row and label smoothing', () => {
    const rows = 5;
    const V = 7;
    const ignore = -100;
    const targets = new Int32Array([3, ignore, 0, 6, 3]);
    const logits = rand(rows * V, 12, -3, 3);
    const dloss = rand(rows, 13, 0.5, 1.5);
    for (const eps of [0, 0.1]) {
      const loss = new Float64Array(rows);
      const lse = new Float64Array(rows);
      R.crossEntropy(logits, targets, loss, lse, rows, V, ignore, eps);
      assert.equal(loss[1], 0);
      // loss against its definition: −Σ_v q_v log softmax_v with q = (1−ε)·onehot + ε/V
      for (const r of [0, 2, 3, 4]) {
        let expected = 0;
        for (let v = 0; v < V; v++) {
          const q = (v === targets[r] ? 1 - eps : 0) + eps / V;
          expected -= q * (logits[r * V + v] - lse[r]);
        }
        assert.ok(Math.abs(loss[r] - expected) < 1e-12, `row ${r}: ${loss[r]} vs ${expected}`);
      }
      const dlogits = new Float64Array(rows * V).fill(7);
      R.crossEntropyBackward(logits, targets, lse, dloss, dlogits, rows, V, ignore, eps);
      for (let v = 0; v < V; v++) assert.equal(dlogits[V + v], 0);
      gradCheck(`crossEntropy ε=${eps}`, [logits], [dlogits], () => {
        const out = new Float64Array(rows);
        R.crossEntropy(logits, targets, out, new Float64Array(rows), rows, V, ignore, eps);
        return [out];
      }, [dloss]);
    }
  });

  test('swigluBackward', () => {
    const n = 30;
    const gate = rand(n, 14, -4, 4);
    const up = rand(n, 15, -2, 2);
    const dy = rand(n, 16);
    const dgate = new Float64Array(n);
    const dup = new Float64Array(n);
    R.swigluBackward(gate, up, dy, dgate, dup, n);
    gradCheck('swiglu', [gate, up], [dgate, dup], () => {
      const out = new Float64Array(n);
      R.swiglu(gate, up, out, n);
      return [out];
    }, [dy]);
  });
});

// ---- attention -------------------------------------------------------------------------------------

interface AttnCase { name: string; B: number; H: number; KVH: number; Tq: number; Tk: number; D: number; causal: boolean; qOffset: number }

const ATTN_CASES: AttnCase[] = [
  { name: 'non-causal', B: 2, H: 2, KVH: 2, Tq: 5, Tk: 5, D: 4, causal: false, qOffset: 0 },
  { name: 'causal', B: 2, H: 2, KVH: 2, Tq: 5, Tk: 5, D: 4, causal: true, qOffset: 0 },
  { name: 'GQA H=6 KVH=2 causal', B: 1, H: 6, KVH: 2, Tq: 4, Tk: 4, D: 3, causal: true, qOffset: 0 },
  { name: 'GQA H=6 KVH=2 non-causal', B: 1, H: 6, KVH: 2, Tq: 3, Tk: 5, D: 3, causal: false, qOffset: 0 },
  { name: 'Tq != Tk causal with qOffset', B: 1, H: 2, KVH: 1, Tq: 3, Tk: 7, D: 4, causal: true, qOffset: 4 },
];

/** softmax(scale·QKᵀ + mask)·V with the full score matrix written out, per (b, h). */
function naiveAttention(q: FloatArray, k: FloatArray, v: FloatArray, c: AttnCase, scale: number): { out: Float64Array; lse: Float64Array } {
  const { B, H, KVH, Tq, Tk, D, causal, qOffset } = c;
  const out = new Float64Array(B * H * Tq * D);
  const lse = new Float64Array(B * H * Tq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor((h * KVH) / H);
      const S: number[][] = [];
      for (let i = 0; i < Tq; i++) {
        S.push([]);
        for (let j = 0; j < Tk; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[((b * H + h) * Tq + i) * D + d] * k[((b * KVH + kh) * Tk + j) * D + d];
          S[i].push(causal && j > qOffset + i ? -Infinity : scale * s);
        }
      }
      for (let i = 0; i < Tq; i++) {
        const m = Math.max(...S[i]);
        const e = S[i].map((s) => Math.exp(s - m));
        const z = e.reduce((x, y) => x + y, 0);
        lse[(b * H + h) * Tq + i] = m + Math.log(z);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < Tk; j++) acc += (e[j] / z) * v[((b * KVH + kh) * Tk + j) * D + d];
          out[((b * H + h) * Tq + i) * D + d] = acc;
        }
      }
    }
  }
  return { out, lse };
}

describe('attention', () => {
  for (const [ci, c] of ATTN_CASES.entries()) {
    test(`${c.name}: forward matches materialised softmax(QKᵀ)V`, () => {
      const { B, H, KVH, Tq, Tk, D } = c;
      const scale = 1 / Math.sqrt(D);
      const q = rand(B * H * Tq * D, 300 + ci, -2, 2);
      const k = rand(B * KVH * Tk * D, 310 + ci, -2, 2);
      const v = rand(B * KVH * Tk * D, 320 + ci);
      const out = new Float64Array(B * H * Tq * D);
      const lse = new Float64Array(B * H * Tq);
      R.attention(q, k, v, out, lse, B, H, KVH, Tq, Tk, D, scale, c.causal, c.qOffset);
      const ref = naiveAttention(q, k, v, c, scale);
      assertClose(out, ref.out, 1e-13, 'out');
      assertClose(lse, ref.lse, 1e-13, 'lse');
      // the same in float32 agrees to float32 precision
      const out32 = new Float32Array(out.length);
      R.attention(Float32Array.from(q), Float32Array.from(k), Float32Array.from(v), out32, new Float32Array(lse.length),
        B, H, KVH, Tq, Tk, D, scale, c.causal, c.qOffset);
      assertClose(out32, ref.out, 1e-5, 'out f32');
    });

    test(`${c.name}: backward matches finite differences`, () => {
      const { B, H, KVH, Tq, Tk, D } = c;
      const scale = 1 / Math.sqrt(D);
      const q = rand(B * H * Tq * D, 400 + ci, -2, 2);
      const k = rand(B * KVH * Tk * D, 410 + ci, -2, 2);
      const v = rand(B * KVH * Tk * D, 420 + ci);
      const dout = rand(B * H * Tq * D, 430 + ci);
      const forward = (): Float64Array[] => {
        const out = new Float64Array(B * H * Tq * D);
        R.attention(q, k, v, out, new Float64Array(B * H * Tq), B, H, KVH, Tq, Tk, D, scale, c.causal, c.qOffset);
        return [out];
      };
      const out = new Float64Array(B * H * Tq * D);
      const lse = new Float64Array(B * H * Tq);
      R.attention(q, k, v, out, lse, B, H, KVH, Tq, Tk, D, scale, c.causal, c.qOffset);
      // outputs start non-zero to check that the kernel overwrites them
      const dq = new Float64Array(q.length).fill(3);
      const dk = new Float64Array(k.length).fill(3);
      const dv = new Float64Array(v.length).fill(3);
      R.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, H, KVH, Tq, Tk, D, scale, c.causal, c.qOffset);
      gradCheck(c.name, [q, k, v], [dq, dk, dv], forward, [dout]);
    });
  }
});

// ---- adjoint pairs ---------------------------------------------------------------------------------

describe('adjoint pairs: <A x, y> = <x, Aᵀ y>', () => {
  test('rope inverse is the adjoint and the inverse of rope', () => {
    const N = 2;
    const T = 3;
    const G = 2;
    const D = 6;
    const half = D / 2;
    // real rotary tables: angle t·θ_j
    const cos = new Float64Array(T * half);
    const sin = new Float64Array(T * half);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < half; j++) {
        const angle = t * Math.pow(10000, (-2 * j) / D) + 0.3;
        cos[t * half + j] = Math.cos(angle);
        sin[t * half + j] = Math.sin(angle);
      }
    }
    const n = N * T * G * D;
    const x = rand(n, 20);
    const y = rand(n, 21);
    const rx = new Float64Array(n);
    R.rope(x, cos, sin, rx, N, T, G, D, false);
    const ry = new Float64Array(n);
    R.rope(y, cos, sin, ry, N, T, G, D, true);
    assert.ok(Math.abs(dot(rx, y) - dot(x, ry)) < 1e-13);
    // in place: out aliases x
    const back = Float64Array.from(rx);
    R.rope(back, cos, sin, back, N, T, G, D, true);
    assertClose(back, x, 1e-14, 'rope⁻¹(rope(x))');
    // the first half of position 0, group 0 by hand
    const t0 = x[half] * cos[0] + x[0] * sin[0];
    assert.ok(Math.abs(rx[half] - t0) < 1e-15);
  });

  test('indexAdd is the adjoint of indexSelect, repeated ids summed', () => {
    const outer = 2;
    const X = 5;
    const n = 6;
    const inner = 3;
    const idx = new Int32Array([4, 1, 1, 0, 4, 4]);
    const x = rand(outer * X * inner, 22);
    const y = rand(outer * n * inner, 23);
    const sel = new Float64Array(outer * n * inner);
    R.indexSelect(x, idx, sel, outer, X, n, inner);
    const adj = new Float64Array(outer * X * inner);
    R.indexAdd(y, idx, adj, outer, X, n, inner);
    assert.ok(Math.abs(dot(sel, y) - dot(x, adj)) < 1e-13);
    assert.equal(sel[(0 * n + 3) * inner + 2], x[(0 * X + 0) * inner + 2]);
  });

  test('scatterAdd is the adjoint of gather', () => {
    const outer = 2;
    const X = 4;
    const n = 5;
    const inner = 3;
    const idx = new Int32Array(outer * n * inner);
    for (let e = 0; e < idx.length; e++) idx[e] = Math.floor(uniformAt(24, e) * X);
    const x = rand(outer * X * inner, 25);
    const y = rand(outer * n * inner, 26);
    const g = new Float64Array(outer * n * inner);
    R.gather(x, idx, g, outer, X, n, inner);
    const adj = new Float64Array(outer * X * inner);
    R.scatterAdd(y, idx, adj, outer, X, n, inner);
    assert.ok(Math.abs(dot(g, y) - dot(x, adj)) < 1e-13);
    const e = (1 * n + 2) * inner + 1;
    assert.equal(g[e], x[(1 * X + idx[e]) * inner + 1]);
  });

  test('col2im is the adjoint of im2col', () => {
    for (const [C, H, W, kh, kw, stride, pad] of [[2, 5, 6, 3, 2, 2, 1], [1, 4, 4, 3, 3, 1, 1], [3, 7, 5, 2, 2, 2, 0]]) {
      const outH = Math.floor((H + 2 * pad - kh) / stride) + 1;
      const outW = Math.floor((W + 2 * pad - kw) / stride) + 1;
      const x = rand(C * H * W, 27);
      const y = rand(C * kh * kw * outH * outW, 28);
      const cols = new Float64Array(y.length);
      R.im2col(x, cols, C, H, W, kh, kw, stride, pad, outH, outW);
      const dx = new Float64Array(x.length);
      R.col2im(y, dx, C, H, W, kh, kw, stride, pad, outH, outW);
      assert.ok(Math.abs(dot(cols, y) - dot(x, dx)) < 1e-13, `C${C} H${H} W${W} k${kh}x${kw} s${stride} p${pad}`);
    }
    // the padded corner of a 3x3, pad 1 lowering reads 0; the centre tap reads the pixel
    const x = Float64Array.from({ length: 16 }, (_, i) => i + 1);
    const cols = new Float64Array(9 * 16);
    R.im2col(x, cols, 1, 4, 4, 3, 3, 1, 1, 4, 4);
    assert.equal(cols[0], 0);
    assert.equal(cols[4 * 16 + 5], x[5]);
  });
});

// ---- matmul ----------------------------------------------------------------------------------------

describe('matmul', () => {
  test('all four transpose combinations with batch strides, stride 0 and accumulate', () => {
    const M = 3;
    const N = 4;
    const K = 5;
    const batch = 3;
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [strideA, strideB, strideC] of [[M * K, K * N, M * N], [0, K * N + 2, M * N + 1], [M * K + 3, 0, M * N]]) {
          const a = rand(strideA * (batch - 1) + M * K, 30);
          const b = rand(strideB * (batch - 1) + K * N, 31);
          for (const accumulate of [false, true]) {
            const c0 = rand(strideC * (batch - 1) + M * N, 32);
            const c = Float64Array.from(c0);
            R.matmul(a, b, c, M, N, K, transA, transB, batch, strideA, strideB, strideC, accumulate);
            const expected = Float64Array.from(c0);
            for (let p = 0; p < batch; p++) {
              // write op(A_p) and op(B_p) out as plain (M,K) and (K,N) matrices first
              const A: number[][] = [];
              for (let i = 0; i < M; i++) A.push(Array.from({ length: K }, (_, kk) => transA ? a[p * strideA + kk * M + i] : a[p * strideA + i * K + kk]));
              const Bm: number[][] = [];
              for (let kk = 0; kk < K; kk++) Bm.push(Array.from({ length: N }, (_, j) => transB ? b[p * strideB + j * K + kk] : b[p * strideB + kk * N + j]));
              for (let i = 0; i < M; i++) {
                for (let j = 0; j < N; j++) {
                  let s = 0;
                  for (let kk = 0; kk < K; kk++) s += A[i][kk] * Bm[kk][j];
                  const e = p * strideC + i * N + j;
                  expected[e] = (accumulate ? c0[e] : 0) + s;
                }
              }
            }
            assertClose(c, expected, 1e-14, `matmul tA=${transA} tB=${transB} strides=${strideA},${strideB},${strideC} acc=${accumulate}`);
          }
        }
      }
    }
  });

  test('float32 agrees with float64', () => {
    const a = rand(6 * 7, 33);
    const b = rand(7 * 5, 34);
    const c64 = new Float64Array(30);
    const c32 = new Float32Array(30);
    R.matmul(a, b, c64, 6, 5, 7, false, false, 1, 0, 0, 0, false);
    R.matmul(Float32Array.from(a), Float32Array.from(b), c32, 6, 5, 7, false, false, 1, 0, 0, 0, false);
    assertClose(c32, c64, 1e-6, 'matmul f32');
  });
});

// ---- cast ------------------------------------------------------------------------------------------

function toF16(values: number[], from: 'f32' | 'f64' = 'f32'): number[] {
  const src = from === 'f32' ? Float32Array.from(values) : Float64Array.from(values);
  const dst = new Uint16Array(values.length);
  R.cast(src, from, dst, 'f16', values.length);
  return [...dst];
}

function toBf16(values: number[]): number[] {
  const dst = new Uint16Array(values.length);
  R.cast(Float32Array.from(values), 'f32', dst, 'bf16', values.length);
  return [...dst];
}

describe('cast', () => {
  test('f32 -> f16 rounds to nearest even on hand-picked patterns', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [1 + 2 ** -11, 0x3c00], // halfway between 0x3c00 and 0x3c01: to even
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: to even
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway
      [65504, 0x7bff], // largest finite
      [65519, 0x7bff],
      [65520, 0x7c00], // halfway to 2^16: rounds to even, which is Inf
      [-65520, 0xfc00],
      [1e9, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to the smallest subnormal: to even (0)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // halfway between subnormals 1 and 2: to even
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -14 - 2 ** -26, 0x0400], // rounds up into the smallest normal
      [-0, 0x8000],
      [0, 0x0000],
      [-2, 0xc000],
      [1 / 3, 0x3555],
    ];
    assert.deepEqual(toF16(cases.map((c) => c[0])).map((b) => b.toString(16)), cases.map((c) => c[1].toString(16)));
  });

  test('f16 NaN stays a quiet NaN', () => {
    const nanBits = new Uint32Array([0x7fc00000, 0xffc00001, 0x7f800001]); // qNaN, negative qNaN, sNaN
    const dst = new Uint16Array(3);
    R.cast(new Float32Array(nanBits.buffer), 'f32', dst, 'f16', 3);
    for (const b of dst) {
      assert.equal(b & 0x7c00, 0x7c00);
      assert.ok((b & 0x0200) !== 0, `quiet bit set in ${b.toString(16)}`);
    }
    assert.equal(dst[1] & 0x8000, 0x8000);
    const back = new Float32Array(3);
    R.cast(dst, 'f16', back, 'f32', 3);
    for (const v of back) assert.ok(Number.isNaN(v));
  });

  test('f64 -> f16 rounds once, not through f32', () => {
    // 1 + 2^-11 + 2^-40 is just above a tie in f16 but becomes the tie itself in f32
    assert.deepEqual(toF16([1 + 2 ** -11 + 2 ** -40], 'f64'), [0x3c01]);
  });

  test('f16 -> f32 is exact and every f16 round-trips', () => {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    const f = new Float32Array(65536);
    R.cast(all, 'f16', f, 'f32', 65536);
    assert.equal(f[0x3c00], 1);
    assert.equal(f[0x0001], 2 ** -24);
    assert.equal(f[0x03ff], 1023 * 2 ** -24);
    assert.equal(f[0x7bff], 65504);
    assert.equal(f[0xc000], -2);
    assert.equal(f[0x7c00], Infinity);
    assert.ok(Object.is(f[0x8000], -0));
    const back = new Uint16Array(65536);
    R.cast(f, 'f32', back, 'f16', 65536);
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x03ff) !== 0;
      if (isNaN) assert.ok(Number.isNaN(f[i]));
      else assert.equal(back[i], i, `f16 ${i.toString(16)} -> ${f[i]} -> ${back[i].toString(16)}`);
    }
  });

  test('f32 -> bf16 rounds to nearest even, NaN stays NaN, every bf16 round-trips', () => {
    const cases: [number, number][] = [
      [1, 0x3f80],
      [1 + 2 ** -8, 0x3f80], // tie: to even
      [1 + 3 * 2 ** -8, 0x3f82], // tie: to even
      [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [3.4028234663852886e38, 0x7f80], // f32 max rounds up to Inf
      [2 ** -133, 0x0001], // smallest bf16 subnormal
      [2 ** -149, 0x0000],
      [-0, 0x8000],
      [1 / 3, 0x3eab],
    ];
    assert.deepEqual(toBf16(cases.map((c) => c[0])).map((b) => b.toString(16)), cases.map((c) => c[1].toString(16)));
    const nan = toBf16([NaN])[0];
    assert.equal(nan & 0x7f80, 0x7f80);
    assert.notEqual(nan & 0x007f, 0);
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    const f = new Float32Array(65536);
    R.cast(all, 'bf16', f, 'f32', 65536);
    const bits = new Uint32Array(f.buffer);
    const back = new Uint16Array(65536);
    R.cast(f, 'f32', back, 'bf16', 65536);
    for (let i = 0; i < 65536; i++) {
      if ((i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0) {
        assert.ok(Number.isNaN(f[i]));
        continue;
      }
      assert.equal(bits[i] >>> 16, i, `bf16 ${i.toString(16)} widens to its bits`);
      assert.equal(back[i], i);
    }
  });

  test('integer and wide conversions', () => {
    const i32 = new Int32Array(4);
    R.cast(new Float32Array([2.7, -2.7, -0.5, 1e3]), 'f32', i32, 'i32', 4);
    assert.deepEqual([...i32], [2, -2, 0, 1000]);
    const f = new Float32Array(3);
    R.cast(new Int32Array([-7, 0, 16777217]), 'i32', f, 'f32', 3);
    assert.deepEqual([...f], [-7, 0, 16777216]);
    R.cast(new Uint8Array([0, 200, 255]), 'u8', f, 'f32', 3);
    assert.deepEqual([...f], [0, 200, 255]);
    const d = new Float64Array(2);
    R.cast(new Float32Array([0.1, -3]), 'f32', d, 'f64', 2);
    assert.deepEqual([...d], [Math.fround(0.1), -3]);
    const g = new Float32Array(2);
    R.cast(new Float64Array([0.1, 1 + 2 ** -30]), 'f64', g, 'f32', 2);
    assert.deepEqual([...g], [Math.fround(0.1), 1]);
  });
});

// ---- optimizer and randomness ------------------------------------------------------------------------

describe('adamwStep', () => {
  test('three steps follow torch.optim.AdamW', () => {
    const n = 8;
    const lr = 1e-2;
    const beta1 = 0.9;
    const beta2 = 0.95;
    const eps = 1e-8;
    const wd = 0.1;
    const p = rand(n, 40);
    const m = new Float64Array(n);
    const v = new Float64Array(n);
    const pe = Float64Array.from(p);
    const me = new Float64Array(n);
    const ve = new Float64Array(n);
    for (let t = 1; t <= 3; t++) {
      const g = rand(n, 41 + t);
      if (t === 1) {
        // step 1 from zero moments: m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps)
        const expect = Array.from(p, (pi, i) => pi * (1 - lr * wd) - (lr * g[i]) / (Math.abs(g[i]) + eps));
        R.adamwStep(p, g, m, v, n, lr, beta1, beta2, eps, wd, t);
        assertClose(p, expect, 1e-14, 'step 1');
      } else {
        R.adamwStep(p, g, m, v, n, lr, beta1, beta2, eps, wd, t);
      }
      // torch's sequence: decay, lerp the moments, bias-corrected step
      for (let i = 0; i < n; i++) {
        pe[i] *= 1 - lr * wd;
        me[i] += (g[i] - me[i]) * (1 - beta1);
        ve[i] = ve[i] * beta2 + (1 - beta2) * g[i] * g[i];
        const denom = Math.sqrt(ve[i]) / Math.sqrt(1 - beta2 ** t) + eps;
        pe[i] -= (lr / (1 - beta1 ** t)) * (me[i] / denom);
      }
      assertClose(p, pe, 1e-14, `p after step ${t}`);
      assertClose(m, me, 1e-14, `m after step ${t}`);
      assertClose(v, ve, 1e-14, `v after step ${t}`);
    }
  });
});

describe('dropoutMask', () => {
  test('keeps about 1 - p, scaled by 1/(1 - p)', () => {
    const n = 100000;
    const p = 0.3;
    const mask = new Float32Array(n);
    R.dropoutMask(mask, n, p, 1234, 0);
    let kept = 0;
    for (const x of mask) {
      if (x !== 0) {
        assert.equal(x, Math.fround(1 / (1 - p)));
        kept++;
      }
    }
    // binomial standard deviation √(n p (1−p)) ≈ 145: allow 5 of them
    assert.ok(Math.abs(kept - n * (1 - p)) < 5 * Math.sqrt(n * p * (1 - p)), `kept ${kept} of ${n}`);
  });

  test('depends only on seed and offset + i', () => {
    const a = new Float64Array(1000);
    const b = new Float64Array(1000);
    R.dropoutMask(a, 1000, 0.5, 7, 0);
    R.dropoutMask(b, 1000, 0.5, 7, 0);
    assert.deepEqual(a, b);
    const shifted = new Float64Array(990);
    R.dropoutMask(shifted, 990, 0.5, 7, 10);
    assert.deepEqual(shifted, a.subarray(10));
    const other = new Float64Array(1000);
    R.dropoutMask(other, 1000, 0.5, 8, 0);
    assert.notDeepEqual(other, a);
  });

  test('p = 0 keeps everything, p = 1 drops everything', () => {
    const m = new Float64Array(100);
    R.dropoutMask(m, 100, 0, 3, 0);
    assert.ok(m.every((x) => x === 1));
    R.dropoutMask(m, 100, 1, 3, 0);
    assert.ok(m.every((x) => x === 0));
  });
});

describe('supports', () => {
  test('float kernels take f32 and f64, memory kernels every dtype', () => {
    assert.equal(R.name, 'ref');
    assert.ok(R.supports('matmul', 'f32') && R.supports('attention', 'f64'));
    assert.ok(!R.supports('matmul', 'f16') && !R.supports('softmax', 'i32'));
    for (const dt of ['f32', 'f64', 'i32', 'f16', 'bf16', 'u8'] as const) {
      assert.ok(R.supports('fill', dt) && R.supports('copyStrided', dt) && R.supports('cast', dt));
    }
  });
});
