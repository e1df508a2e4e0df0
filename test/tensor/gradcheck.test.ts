// Finite-difference gradient checks of every differentiable op, in float64 on the ref backend:
// the analytic vector-Jacobian product of loss = Σ f(inputs) ⊙ R (R random) against central
// differences (h = 1e-6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';

type T = pl.Tensor;

function randn(shape: number[], scale = 1): T {
  return pl.randn(shape, { dtype: 'f64', std: scale });
}

/** Positive inputs away from zero (for log, sqrt, rsqrt, pow, division). */
function positive(shape: number[]): T {
  return pl.uniform(shape, 0.5, 2, { dtype: 'f64' });
}

function gradcheck(name: string, f: (...xs: T[]) => T, inputs: T[], tol = 1e-6): void {
  const xs = inputs.map((x) => x.clone().requiresGrad_());
  const out = f(...xs);
  const R = pl.randn(out.shape, { dtype: 'f64' });
  pl.sum(pl.mul(out, R)).backward();
  const h = 1e-6;
  xs.forEach((x, which) => {
    const analytic = x.grad ? x.grad.toArray() : null;
    const flat = analytic === null ? null : (x.grad!.data() as Float64Array);
    const base = inputs[which].data() as Float64Array;
    let worst = 0;
    let scale = 1;
    for (let i = 0; i < base.length; i++) {
      const plus = base.slice();
      const minus = base.slice();
      plus[i] += h;
      minus[i] -= h;
      const val = (arr: Float64Array) => pl.noGrad(() => {
        const args = inputs.map((t, j) => (j === which ? pl.tensor(arr, { shape: t.shape }) : t));
        return (pl.sum(pl.mul(f(...args), R)).item());
      });
      const numeric = (val(plus) - val(minus)) / (2 * h);
      const got = flat ? flat[i] : 0;
      worst = Math.max(worst, Math.abs(numeric - got));
      scale = Math.max(scale, Math.abs(numeric));
    }
    assert.ok(worst <= tol * scale, `${name}: input ${which} gradient differs from finite differences by ${worst} (scale ${scale})`);
  });
}

test('gradcheck: movement ops', () => {
  pl.manualSeed(1);
  const x = randn([2, 3, 4]);
  gradcheck('reshape', (a) => a.reshape(4, 6), [x]);
  gradcheck('view', (a) => a.view(6, -1), [x]);
  gradcheck('transpose+contiguous', (a) => a.transpose(0, 2).contiguous(), [x]);
  gradcheck('permute', (a) => a.permute(2, 0, 1), [x]);
  gradcheck('slice step', (a) => a.slice(2, 1, 4, 2), [x]);
  gradcheck('slice negative', (a) => a.slice(1, -2), [x]);
  gradcheck('select', (a) => a.select(1, 2), [x]);
  gradcheck('squeeze/unsqueeze', (a) => a.unsqueeze(1).squeeze(1).unsqueeze(-1), [x]);
  gradcheck('flatten', (a) => a.flatten(1), [x]);
  gradcheck('expand', (a) => a.expand(3, 2, 3, 4), [randn([2, 1, 4]).expand(2, 3, 4).contiguous()]);
  gradcheck('expand size-1', (a) => a.expand(2, 5, 4), [randn([2, 1, 4])]);
  gradcheck('repeat', (a) => a.repeat(2, 1, 3), [x]);
  gradcheck('cat', (a, b) => pl.cat([a, b], 1), [x, randn([2, 2, 4])]);
  gradcheck('stack', (a, b) => pl.stack([a, b], 2), [x, randn([2, 3, 4])]);
  gradcheck('split', (a) => { const [p, q] = a.split([1, 3], 2); return pl.cat([q, p], 2); }, [x]);
  const idx = pl.tensor([2, 0, 2, 1], { dtype: 'i32' });
  gradcheck('indexSelect', (a) => pl.indexSelect(a, 1, idx), [x]);
  gradcheck('embedding', (w) => pl.embedding(w, pl.tensor([[1, 3], [3, 0]], { dtype: 'i32' })), [randn([5, 3])]);
  const gi = pl.tensor([[[0, 3], [1, 1], [2, 0]], [[3, 3], [0, 1], [2, 2]]], { dtype: 'i32' });
  gradcheck('gather', (a) => pl.gather(a, 2, gi), [x]);
  gradcheck('gather smaller index', (a) => pl.gather(a, 1, pl.tensor([[[0], [2]]], { dtype: 'i32' })), [x]);
  const si = pl.tensor([[1, 0, 1], [2, 2, 0]], { dtype: 'i32' });
  gradcheck('scatterAdd', (a, s) => pl.scatterAdd(a, 1, si, s), [randn([2, 3]), randn([2, 3])]);
});

test('gradcheck: elementwise ops with broadcasting', () => {
  pl.manualSeed(2);
  const a = randn([3, 4]);
  const b = randn([4]);
  const c = randn([3, 1]);
  gradcheck('add', (x, y) => pl.add(x, y), [a, b]);
  gradcheck('sub', (x, y) => pl.sub(x, y), [c, a]);
  gradcheck('mul', (x, y) => pl.mul(x, y), [a, c]);
  gradcheck('div', (x, y) => pl.div(x, y), [a, positive([3, 1])]);
  gradcheck('scalar ops', (x) => pl.sub(2, pl.div(pl.mul(pl.add(x, 1.5), 3), 4)), [a]);
  gradcheck('pow scalar', (x) => pl.pow(x, 2.5), [positive([3, 4])]);
  gradcheck('pow tensor', (x, y) => pl.pow(x, y), [positive([3, 4]), randn([4])]);
  gradcheck('maximum', (x, y) => pl.maximum(x, y), [a, randn([3, 4])]);
  gradcheck('minimum', (x, y) => pl.minimum(x, y), [a, b]);
  for (const [name, f] of [
    ['neg', pl.neg], ['exp', pl.exp], ['tanh', pl.tanh], ['sigmoid', pl.sigmoid], ['relu', pl.relu],
    ['silu', pl.silu], ['abs', pl.abs], ['square', pl.square], ['sin', pl.sin], ['cos', pl.cos],
    ['gelu erf', (x: T) => pl.gelu(x)], ['gelu tanh', (x: T) => pl.gelu(x, 'tanh')],
    ['clamp', (x: T) => pl.clamp(x, -0.5, 0.7)], ['clamp open', (x: T) => pl.clamp(x, null, 0.2)],
  ] as [string, (x: T) => T][]) {
    gradcheck(name, f, [randn([3, 5])]);
  }
  for (const [name, f] of [['log', pl.log], ['sqrt', pl.sqrt], ['rsqrt', pl.rsqrt], ['reciprocal', pl.reciprocal]] as [string, (x: T) => T][]) {
    gradcheck(name, f, [positive([3, 5])]);
  }
  const cond = pl.tensor([[1, 0, 0, 1]], { dtype: 'u8' });
  gradcheck('where', (x, y) => pl.where(cond, x, y), [a, c]);
  gradcheck('maskedFill', (x) => pl.maskedFill(x, cond, -3), [a]);
  gradcheck('swiglu', (g, u) => pl.swiglu(g, u), [a, randn([3, 4])]);
});

test('gradcheck: reductions, softmax, matmul', () => {
  pl.manualSeed(3);
  const x = randn([2, 3, 4]);
  gradcheck('sum all', (a) => pl.sum(a), [x]);
  gradcheck('sum dims', (a) => pl.sum(a, [0, 2], true), [x]);
  gradcheck('mean', (a) => pl.mean(a, 1), [x]);
  gradcheck('max dim', (a) => pl.max(a, 2), [x]);
  gradcheck('max all', (a) => pl.max(a), [x]);
  gradcheck('min dims', (a) => pl.min(a, [0, 1]), [x]);
  gradcheck('var', (a) => a.var(2), [x]);
  gradcheck('var biased', (a) => a.var([0, 2], { correction: 0, keepdim: true }), [x]);
  gradcheck('logsumexp', (a) => pl.logsumexp(a, [1, 2]), [x]);
  gradcheck('softmax last', (a) => pl.softmax(a, -1), [x]);
  gradcheck('softmax middle', (a) => pl.softmax(a, 1), [x]);
  gradcheck('logSoftmax', (a) => pl.logSoftmax(a, 0), [x]);
  gradcheck('matmul 2d', (a, b) => pl.matmul(a, b), [randn([3, 5]), randn([5, 2])]);
  gradcheck('matmul transposed views', (a, b) => pl.matmul(a.T, b.T), [randn([5, 3]), randn([2, 5])]);
  gradcheck('matmul batched broadcast', (a, b) => pl.matmul(a, b), [randn([2, 1, 3, 4]), randn([3, 4, 2])]);
  gradcheck('matmul vector', (a, b) => pl.matmul(a, b), [randn([4]), randn([2, 4, 3])]);
  gradcheck('matmul dot', (a, b) => pl.matmul(a, b), [randn([4]), randn([4])]);
  gradcheck('linear', (a, w, b) => pl.linear(a, w, b), [randn([2, 3, 4]), randn([5, 4]), randn([5])]);
});

test('gradcheck: norms, losses, attention, rope', () => {
  pl.manualSeed(4);
  gradcheck('layerNorm', (x, w, b) => pl.layerNorm(x, w, b, 1e-5), [randn([3, 6]), randn([6]), randn([6])]);
  gradcheck('layerNorm no affine', (x) => pl.layerNorm(x, null, null), [randn([2, 2, 5])]);
  gradcheck('rmsNorm', (x, w) => pl.rmsNorm(x, w, 1e-6), [randn([3, 6]), randn([6])]);
  gradcheck('groupNorm', (x, w, b) => pl.groupNorm(x, 2, w, b), [randn([2, 4, 3, 2]), randn([4]), randn([4])]);
  const targets = pl.tensor([1, -100, 4, 0, 2], { dtype: 'i32' });
  gradcheck('crossEntropy mean', (l) => pl.crossEntropy(l, targets), [randn([5, 6])]);
  gradcheck('crossEntropy smoothing sum', (l) => pl.crossEntropy(l, targets, { labelSmoothing: 0.1, reduction: 'sum' }), [randn([5, 6])]);
  gradcheck('crossEntropy none 3d', (l) => pl.crossEntropy(l, targets.reshape(1, 5), { reduction: 'none' }), [randn([1, 5, 6])]);
  const q = randn([1, 4, 5, 3]);
  const k = randn([1, 2, 5, 3]);
  const v = randn([1, 2, 5, 3]);
  gradcheck('sdpa causal gqa', (a, b, c) => pl.scaledDotProductAttention(a, b, c, { causal: true }), [q, k, v]);
  gradcheck('sdpa bidirectional', (a, b, c) => pl.scaledDotProductAttention(a, b, c), [q, k, v]);
  gradcheck('sdpa kv cache', (a, b, c) => pl.scaledDotProductAttention(a, b, c, { causal: true }), [randn([1, 4, 2, 3]), k, v]);
  const bool = pl.tensor([[1, 1, 0, 1, 0]], { dtype: 'u8' });
  gradcheck('sdpa bool mask', (a, b, c) => pl.scaledDotProductAttention(a, b, c, { mask: bool }), [q, k, v]);
  gradcheck('sdpa additive mask', (a, b, c, m) => pl.scaledDotProductAttention(a, b, c, { mask: m }), [q, k, v, randn([5, 5])]);
  const { cos, sin } = pl.ropeTables([3, 4, 5, 6, 7], 4, 10000, 'f64');
  gradcheck('rope BHTD', (x) => pl.rope(x, cos, sin), [randn([1, 2, 5, 4])]);
  gradcheck('rope BTHD', (x) => pl.rope(x, cos, sin, 'BTHD'), [randn([1, 5, 2, 4])]);
});

test('gradcheck: convolution and resampling', () => {
  pl.manualSeed(5);
  gradcheck('conv2d', (x, w, b) => pl.conv2d(x, w, b, { stride: 2, padding: 1 }), [randn([2, 3, 5, 4]), randn([4, 3, 3, 3]), randn([4])]);
  gradcheck('conv2d 1x1', (x, w) => pl.conv2d(x, w), [randn([1, 2, 3, 3]), randn([3, 2, 1, 1])]);
  gradcheck('upsampleNearest', (x) => pl.upsampleNearest(x, 2), [randn([1, 2, 2, 3])]);
  gradcheck('avgPool2d', (x) => pl.avgPool2d(x, 2), [randn([1, 2, 4, 4])]);
  gradcheck('avgPool2d strided padded', (x) => pl.avgPool2d(x, 3, 2, 1), [randn([1, 2, 5, 5])]);
});

test('gradcheck: dropout uses one fixed mask per call', () => {
  pl.manualSeed(6);
  const x = randn([4, 8]);
  const xs = x.clone().requiresGrad_();
  pl.manualSeed(7);
  const y = pl.dropout(xs, 0.3);
  y.sum().backward();
  const out = y.data() as Float64Array;
  const g = xs.grad!.data() as Float64Array;
  const xd = x.data() as Float64Array;
  let dropped = 0;
  for (let i = 0; i < out.length; i++) {
    if (g[i] === 0) {
      dropped++;
      assert.ok(out[i] === 0, `dropped element ${i} is ${out[i]}`);
    } else {
      assert.ok(Math.abs(g[i] - 1 / 0.7) < 1e-12);
      assert.ok(Math.abs(out[i] - xd[i] / 0.7) < 1e-12);
    }
  }
  assert.ok(dropped > 0 && dropped < out.length);
  pl.manualSeed(7);
  assert.deepEqual(pl.dropout(x, 0.3).toArray(), y.detach().toArray(), 'same seed, same mask');
  assert.equal(pl.dropout(x, 0.3, false), x, 'identity when not training');
});
