// LoRA layers: the forward formula, PEFT's initialisation, gradients that reach only A and B,
// merge/unmerge, target matching, several named adapters, and an optimizer whose state is the
// adapter's size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import {
  addAdapter, adapterNames, createLoraModel, LoRALinear, loraFactory, loraLayers, mergeAdapter, setAdapter, setAdapterSegments, unmergeAdapter, withoutAdapters,
} from '../../src/peft/index.js';
import { AdamW } from '../../src/train/index.js';
import { assertClose, BACKENDS, withBackend } from '../helpers.js';

const llama = { model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, tie_word_embeddings: false };
const gpt2 = { model_type: 'gpt2', vocab_size: 40, n_embd: 16, n_layer: 2, n_head: 2, n_positions: 32 };

/** A LoRA layer around a Linear (or Conv1D) with random A and a random (non-zero) B. */
function layer(inF: number, outF: number, r: number, transposed = false): LoRALinear {
  const l = new LoRALinear(pl.plainLinear(inF, outF, { prefix: 'proj', transposed, bias: true, std: 0.5 }), { prefix: 'proj' });
  const a = l.addAdapter('default', { r, alpha: 2 * r });
  (a.B.storage as Float32Array).set(pl.randn([outF, r]).data() as Float32Array);
  (l.base as pl.Linear).bias!.storage.set(pl.randn([outF]).data());
  l.setAdapter('default');
  return l;
}

/** W0·x + b + s·B·A·x in double precision, for x (N, in). */
function expected(l: LoRALinear, x: pl.Tensor): number[] {
  const base = l.base as pl.Linear | pl.Conv1D;
  const W = base.weight.toFloat32Array();
  const b = base.bias!.toFloat32Array();
  const { A, B, scaling, r } = l.adapters.get('default')!;
  const a = A.toFloat32Array();
  const bb = B.toFloat32Array();
  const xs = x.toFloat32Array();
  const I = l.inFeatures;
  const O = l.outFeatures;
  const out: number[] = [];
  for (let n = 0; n < x.shape[0]; n++) {
    const ax = Array.from({ length: r }, (_, k) => {
      let s = 0;
      for (let i = 0; i < I; i++) s += a[k * I + i] * xs[n * I + i];
      return s;
    });
    for (let o = 0; o < O; o++) {
      let s = b[o];
      for (let i = 0; i < I; i++) s += (l.fanInFanOut ? W[i * O + o] : W[o * I + i]) * xs[n * I + i];
      for (let k = 0; k < r; k++) s += scaling * bb[o * r + k] * ax[k];
      out.push(s);
    }
  }
  return out;
}

for (const backend of BACKENDS) {
  test(`[${backend}] forward is W0·x + (α/r)·B·A·x, for Linear and Conv1D bases`, () => withBackend(backend, () => {
    pl.manualSeed(1);
    for (const transposed of [false, true]) {
      const l = layer(13, 7, 3, transposed);
      const x = pl.randn([5, 13]);
      assertClose(l.forward(x).toFloat32Array(), expected(l, x), 1e-4, `transposed=${transposed}`);
      assert.equal(l.fanInFanOut, transposed);
    }
  }));

  test(`[${backend}] gradients reach A and B only, and match finite differences`, () => withBackend(backend, () => {
    pl.manualSeed(2);
    const l = layer(9, 6, 2);
    for (const p of l.base.parameters()) p.requiresGrad_(false);
    const x = pl.randn([4, 9]);
    const loss = () => pl.sum(pl.mul(l.forward(x), l.forward(x))); // Σ y²
    loss().backward();
    const base = l.base as pl.Linear;
    assert.equal(base.weight.grad, null, 'the frozen base weight gets no gradient');
    assert.equal(base.bias!.grad, null);
    const { A, B } = l.adapters.get('default')!;
    for (const [name, p] of [['A', A], ['B', B]] as const) {
      const g = p.grad!.toFloat32Array();
      const data = p.storage as Float32Array;
      const eps = 1e-2;
      for (const i of [0, 3, p.size - 1]) {
        const keep = data[i];
        data[i] = keep + eps;
        const up = pl.noGrad(loss).item();
        data[i] = keep - eps;
        const down = pl.noGrad(loss).item();
        data[i] = keep;
        const fd = (up - down) / (2 * eps);
        assert.ok(Math.abs(fd - g[i]) <= 2e-2 * Math.max(1, Math.abs(fd)), `d loss / d ${name}[${i}]: autograd ${g[i]}, finite differences ${fd}`);
      }
    }
  }));

  test(`[${backend}] merge gives the same outputs with the base alone, unmerge restores W0`, () => withBackend(backend, () => {
    pl.manualSeed(3);
    for (const transposed of [false, true]) {
      const l = layer(11, 8, 4, transposed);
      const x = pl.randn([3, 11]);
      const before = l.forward(x).toFloat32Array();
      const w0 = (l.base as pl.Linear).weight.toFloat32Array();
      l.merge();
      assert.equal(l.merged, 'default');
      assertClose(l.forward(x).toFloat32Array(), before, 1e-5, 'merged forward');
      assertClose(l.base.forward(x).toFloat32Array(), before, 1e-5, 'the merged base alone');
      l.unmerge();
      assertClose((l.base as pl.Linear).weight.toFloat32Array(), w0, 1e-6, 'W0 after unmerge');
      assertClose(l.forward(x).toFloat32Array(), before, 1e-5, 'forward after unmerge');
    }
  }));
}

test('A is Kaiming-uniform as PEFT initialises it (bound 1/√in) and B is zero, so the model starts as the base', () => {
  pl.manualSeed(4);
  const l = new LoRALinear(pl.plainLinear(256, 32, { prefix: 'q_proj' }), { prefix: 'q_proj' });
  const x = pl.randn([2, 256]);
  const base = l.forward(x).toFloat32Array();
  const { A, B, scaling } = l.addAdapter('default', { r: 64, alpha: 16 });
  l.setAdapter('default');
  assert.equal(scaling, 16 / 64);
  const a = A.toFloat32Array();
  const bound = 1 / Math.sqrt(256);
  let max = 0;
  let sq = 0;
  for (const v of a) {
    max = Math.max(max, Math.abs(v));
    sq += v * v;
  }
  assert.ok(max <= bound && max > 0.99 * bound, `max |A| = ${max}, bound ${bound}`);
  assert.ok(Math.abs(sq / a.length / (bound * bound / 3) - 1) < 0.05, 'variance of U(−b, b) is b²/3');
  assert.ok(B.toFloat32Array().every((v) => v === 0));
  assert.deepEqual(l.forward(x).toFloat32Array(), base);
  assert.equal(l.addAdapter('rs', { r: 16, alpha: 8, useRslora: true }).scaling, 8 / 4, 'rsLoRA scales by α/√r');
});

test('targets: names match by suffix, a string is a regular expression over the whole name', () => {
  pl.manualSeed(5);
  const names = (targetModules: string[] | string) => {
    const m = pl.createModel(llama, { linearFactory: loraFactory() });
    return addAdapter(m, { r: 2, alpha: 4, targetModules }).map((l) => l.prefix);
  };
  assert.deepEqual(names(['q_proj', 'v_proj']), ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
  assert.equal(names('model\\.layers\\.1\\..*_proj').length, 7);
  assert.deepEqual(names('.*\\.(q|k)_proj'), ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.k_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.k_proj']);
});

test('targets: all-linear, and errors for a rank ≤ 0 or a target that matches nothing', () => {
  pl.manualSeed(5);
  const m = pl.createModel(llama, { linearFactory: loraFactory() });
  assert.throws(() => addAdapter(m, { r: 0, alpha: 4, targetModules: ['q_proj'] }), (e: Error) => e instanceof pl.ArgumentError && /rank r must be a positive integer, got 0/.test(e.message));
  assert.throws(() => addAdapter(m, { r: -2, alpha: 4, targetModules: ['q_proj'] }), pl.ArgumentError);
  assert.throws(() => addAdapter(m, { r: 2, alpha: 4, targetModules: ['q_proj', 'qkv'] }), (e: Error) => e instanceof pl.ArgumentError && /'qkv' matches no linear layer/.test(e.message));
  assert.throws(() => addAdapter(m, { r: 2, alpha: 4, targetModules: 'attn' }), (e: Error) => /"attn" matches no linear layer/.test(e.message), 'a regex must match the whole name');
  assert.throws(() => addAdapter(pl.createModel(llama), { r: 2, alpha: 4, targetModules: ['q_proj'] }), /loraFactory/);
  const all = addAdapter(m, { r: 2, alpha: 4, targetModules: 'all-linear' }).map((l) => l.prefix);
  assert.equal(all.length, 2 * 7);
  assert.ok(!all.includes('lm_head'));
});

test('only adapter parameters train: frozen base, no gradients or optimizer state for it', () => {
  pl.manualSeed(6);
  const model = createLoraModel(llama, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] });
  const trainable = model.parameters().filter((p) => p.requiresGrad);
  const adapterSize = loraLayers(model).reduce((s, l) => s + [...l.adapters.values()].reduce((t, a) => t + a.A.size + a.B.size, 0), 0);
  assert.equal(trainable.reduce((s, p) => s + p.size, 0), adapterSize);
  assert.equal(adapterSize, 2 * (4 * 16 + 16 * 4) + 2 * (4 * 16 + 8 * 4));
  const opt = new AdamW(model.parameters(), { lr: 1e-2 });
  const ids = pl.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], { dtype: 'i32' });
  const labels = pl.tensor([[2, 3, 4, 5], [6, 7, 8, 9]], { dtype: 'i32' });
  model.forward(ids, { labels }).loss!.backward();
  opt.step();
  for (const p of model.parameters()) assert.equal(p.grad !== null, p.requiresGrad, `gradient buffers only on trainable parameters (${p})`);
  const stateSize = [...opt.state.values()].reduce((s, st) => s + st.m.size + st.v.size, 0);
  assert.equal(stateSize, 2 * adapterSize, 'AdamW moments: two numbers per adapter parameter, none for the base');
  assert.ok(stateSize < model.numParameters() / 5);
});

test('several named adapters on one base: switch, disable, train one at a time', () => {
  pl.manualSeed(7);
  const model = createLoraModel(gpt2, { r: 2, alpha: 4, targetModules: ['c_attn'] }, { name: 'a' });
  addAdapter(model, { r: 3, alpha: 3, targetModules: ['c_fc'] }, 'b');
  assert.deepEqual(adapterNames(model), ['a', 'b']);
  for (const l of loraLayers(model)) for (const ad of l.adapters.values()) (ad.B.storage as Float32Array).set(pl.randn(ad.B.shape).data() as Float32Array);
  const ids = pl.tensor([[1, 2, 3, 4, 5]], { dtype: 'i32' });
  const logits = () => model.forward(ids).logits.toFloat32Array();
  const b = logits();
  setAdapter(model, 'a');
  const a = logits();
  const base = withoutAdapters(model, logits);
  setAdapter(model, null);
  assert.deepEqual(logits(), base);
  assert.notDeepEqual(a, b);
  assert.notDeepEqual(a, base);
  setAdapter(model, 'a');
  assert.deepEqual(logits(), a);
  const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
  assert.ok(trainable.length === 4 && trainable.every((n) => /c_attn\.lora_[AB]\.a\.weight$/.test(n)), trainable.join(', '));
  assert.throws(() => setAdapter(model, 'c'), /no adapter 'c' \(it has a, b\)/);
  mergeAdapter(model);
  assertClose(logits(), a, 1e-4, 'merged GPT-2 (Conv1D, fan_in_fan_out)');
  assert.throws(() => setAdapter(model, 'b'), /unmerge it before switching/);
  unmergeAdapter(model);
  setAdapter(model, 'b');
  assertClose(logits(), b, 1e-4, 'adapter b after unmerging a');
});

test('a packed batch can apply a different adapter to each request\'s tokens', () => {
  pl.manualSeed(8);
  const model = createLoraModel(llama, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] }, { name: 'a' });
  addAdapter(model, { r: 3, alpha: 3, targetModules: ['v_proj', 'down_proj'] }, 'b');
  for (const l of loraLayers(model)) for (const ad of l.adapters.values()) (ad.B.storage as Float32Array).set(pl.randn(ad.B.shape).data() as Float32Array);
  model.eval();
  const names = ['a', null, 'b'] as const;
  // Three requests packed as 3 + 2 + 4 token rows, as the engine packs a step; one layer that both
  // adapters target. Each request's rows must equal that request alone with its adapter active.
  setAdapter(model, 'a');
  const layer = loraLayers(model).find((l) => l.prefix === 'model.layers.0.self_attn.v_proj')!;
  const x = pl.randn([9, 16]);
  setAdapterSegments(model, [{ start: 0, end: 3, adapter: 'a' }, { start: 3, end: 5, adapter: null }, { start: 5, end: 9, adapter: 'b' }]);
  const packed = layer.forward(x).toFloat32Array();
  setAdapterSegments(model, null);
  let at = 0;
  names.forEach((n, i) => {
    const rows = [3, 2, 4][i];
    setAdapter(model, n);
    assertClose(packed.subarray(at * 8, (at + rows) * 8), layer.forward(x.slice(0, at, at + rows)).toFloat32Array(), 1e-6, `rows of request ${i} (adapter ${n})`);
    at += rows;
  });
  assert.throws(() => setAdapterSegments(model, [{ start: 0, end: 9, adapter: 'c' }]), /no adapter 'c'/);
  setAdapterSegments(model, [{ start: 0, end: 4, adapter: 'a' }]);
  assert.throws(() => layer.forward(x), /segments cover 4 of 9 rows/);
  setAdapterSegments(model, null);
});
