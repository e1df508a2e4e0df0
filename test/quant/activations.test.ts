// Rounded activations (int8 × int8 with Q8_0 activations, bf16 × bf16): a layer set to them gives
// exactly the kernel's result (plus bias) when no gradient can flow, and the exact kernel's result
// whenever one can (training mode with grad recording, or an input that requires grad); formats
// without such a kernel refuse the option; setActivationPrecision switches a whole model.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernels } from '../../src/backend/index.js';
import { createModel, type LlamaConfig } from '../../src/models/index.js';
import * as pl from '../../src/tensor/index.js';
import {
  HalfLinear, Int8Linear, int8Scales, NF4Linear, QuantizationError, quantizedLayers, quantizedLinearFactory, setActivationPrecision,
} from '../../src/quant/index.js';
import { BACKENDS, assertClose, withBackend } from '../helpers.js';

const [M, K, N] = [5, 70, 24]; // K is no multiple of 32

function layers() {
  pl.manualSeed(11);
  const w = pl.randn([N, K], { std: 0.1 }).toFloat32Array();
  const i8 = new Int8Linear(K, N, { prefix: 'int8' });
  const b16 = new HalfLinear(K, N, { prefix: 'bf16' }, 'bf16');
  for (const l of [i8, b16]) {
    l.quantize(w);
    l.bias!.storage.set(pl.randn([N]).toFloat32Array());
  }
  const x = pl.randn([M, K]);
  return { i8, b16, x };
}

/** The layer's kernel output for x, plus the bias, computed outside the layer. */
function expected(layer: Int8Linear | HalfLinear, x: pl.Tensor, rounded: boolean): Float32Array {
  const t = layer.tensors();
  const y = new Float32Array(M * N);
  const xs = x.toFloat32Array();
  const k = kernels();
  if (layer instanceof Int8Linear) {
    const w8 = t.get('weight')!.data() as Uint8Array;
    const w = new Int8Array(w8.buffer, w8.byteOffset, w8.length);
    const scb = t.get('SCB')!.data() as Float32Array;
    const scale = int8Scales(scb);
    (rounded ? k.int8LinearQ8 : k.int8Linear).call(k, xs, w, scale, y, M, N, K);
  } else {
    const w = t.get('weight')!.data() as Uint16Array;
    if (rounded) k.bf16LinearDot(xs, w, y, M, N, K);
    else k.halfLinear(xs, w, 'bf16', y, M, N, K);
  }
  const b = layer.bias!.toFloat32Array();
  return y.map((v, i) => Math.fround(v + b[i % N]));
}

for (const backend of BACKENDS) {
  test(`int8 and bf16 layers (${backend}): rounded activations for inference only`, () => withBackend(backend, () => {
    const { i8, b16, x } = layers();
    for (const layer of [i8, b16]) {
      const exact = expected(layer, x, false), rounded = expected(layer, x, true);
      assert.ok(exact.some((v, i) => v !== rounded[i]), 'the two kernels differ on this input');
      layer.setActivations(layer.fastActivations!);
      // inference: no grad recording (training mode or not), or eval mode
      assert.deepEqual(pl.noGrad(() => layer.forward(x)).toFloat32Array(), rounded);
      layer.eval();
      assert.deepEqual(layer.forward(x).toFloat32Array(), rounded);
      // training: the exact kernel, with or without an input that needs a gradient
      layer.train();
      assert.deepEqual(layer.forward(x).toFloat32Array(), exact);
      const xg = x.clone().requiresGrad_();
      const y = layer.forward(xg);
      assert.deepEqual(y.toFloat32Array(), exact);
      pl.sum(y).backward();
      assert.ok(xg.grad, 'the gradient reaches the input');
      layer.eval();
      assert.deepEqual(layer.forward(xg).toFloat32Array(), exact, 'eval mode, but x requires grad');
      layer.setActivations('f32');
      assert.deepEqual(pl.noGrad(() => layer.forward(x)).toFloat32Array(), exact);
    }
  }));
}

test('formats without a rounded-activation kernel refuse the option', () => {
  const f16 = new HalfLinear(K, N, { prefix: 'f16' }, 'f16');
  const nf4 = new NF4Linear(K, N, { prefix: 'nf4' }, false);
  const i8 = new Int8Linear(K, N, { prefix: 'int8' });
  assert.throws(() => f16.setActivations('bf16'), QuantizationError);
  assert.throws(() => nf4.setActivations('int8'), QuantizationError);
  assert.throws(() => i8.setActivations('bf16'), QuantizationError);
  assert.equal(f16.fastActivations, null);
  f16.setActivations('f32');
});

test('setActivationPrecision switches every layer that has a fast kernel; logits stay close', () => {
  const config: LlamaConfig = {
    model_type: 'llama', vocab_size: 40, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 1,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, tie_word_embeddings: false,
  };
  const ids = pl.tensor([[1, 5, 9, 2, 33, 7, 0, 12]], { dtype: 'i32' });
  for (const method of ['int8', 'bf16', 'nf4'] as const) {
    pl.manualSeed(3);
    const float = createModel(config);
    const state = float.stateDict();
    const model = createModel(config, { init: false, linearFactory: quantizedLinearFactory(method, (name) => state.get(name)!.toFloat32Array()) });
    model.loadStateDict(new Map([...state].filter(([k]) => !k.endsWith('proj.weight') && k !== 'lm_head.weight')), { strict: false });
    model.eval();
    const logits = () => pl.noGrad(() => model.forward(ids).logits.toFloat32Array());
    const exact = logits();
    const n = setActivationPrecision(model, 'fast');
    assert.equal(n, method === 'nf4' ? 0 : quantizedLayers(model).length);
    const fast = logits();
    if (method === 'nf4') assert.deepEqual(fast, exact);
    else assertClose(fast, exact, 0.05, `${method} fast activations`);
    assert.equal(setActivationPrecision(model, 'exact'), 0);
    assert.deepEqual(logits(), exact);
  }
});
