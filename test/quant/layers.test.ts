// Quantized layers in a model: a float folder quantized layer by layer computes exactly what a
// float model with the dequantized weights computes; saved and reloaded it gives identical logits
// without float linear weights; gradients reach the input but not the frozen weights; memory is
// what the formats promise; bad folders are named errors.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { saveModel, readWeights, writeSafetensors } from '../../src/io/index.js';
import { createModel, type CausalLM, type LlamaConfig } from '../../src/models/index.js';
import { Linear } from '../../src/nn/index.js';
import * as pl from '../../src/tensor/index.js';
import {
  HalfLinear, Int8Linear, loadQuantized, NF4Linear, QUANT_METHODS, QuantizationError, quantizedLayers, quantizeFolder,
  saveQuantized, weightBytes,
} from '../../src/quant/index.js';
import { BACKENDS, assertClose, withBackend } from '../helpers.js';

// intermediate 96 and hidden 48: K is no multiple of 64, so NF4 blocks straddle rows
const CONFIG: LlamaConfig = {
  model_type: 'llama', vocab_size: 40, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, tie_word_embeddings: false,
};

function floatFolder(): { dir: string; model: CausalLM } {
  pl.manualSeed(3);
  const model = createModel(CONFIG);
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-quant-f32-'));
  saveModel(model, dir);
  return { dir, model };
}

const ids = pl.tensor([[1, 5, 9, 2, 33, 7, 0, 12, 39, 4, 4, 18]], { dtype: 'i32' });

function logits(model: CausalLM): Float32Array {
  return pl.noGrad(() => model.forward(ids).logits.toFloat32Array());
}

/** A float model whose linear weights are the quantized model's dequantized ones. */
function dequantizedTwin(q: CausalLM): CausalLM {
  const state = q.stateDict();
  for (const layer of quantizedLayers(q)) state.set(`${layer.prefix}.weight`, pl.tensor(Array.from(layer.dequantize())).reshape(layer.outFeatures, layer.inFeatures));
  const twin = createModel(CONFIG, { init: false });
  twin.loadStateDict(state);
  return twin.eval();
}

const { dir: F32_DIR, model: F32 } = floatFolder();

for (const backend of BACKENDS) {
  for (const method of QUANT_METHODS) {
    test(`${method} (${backend}): logits equal the dequantized float model's; close to float32's`, () => withBackend(backend, () => {
      const q = quantizeFolder(F32_DIR, method);
      const layers = quantizedLayers(q.model);
      assert.equal(layers.length, 2 * 7 + 1); // q, k, v, o, gate, up, down per layer, and lm_head
      const got = logits(q.model);
      assertClose(got, logits(dequantizedTwin(q.model)), 2e-5, 'against the dequantized twin');
      const exact = logits(F32);
      const bound = { int8: 0.02, nf4: 0.15, 'nf4-dq': 0.15, bf16: 0.005, f16: 0.001 }[method];
      assertClose(got, exact, bound, 'against float32');
    }));
  }
}

for (const method of QUANT_METHODS) {
  test(`${method}: save and load give identical logits, with no float linear weights on disk`, () => {
    const q = quantizeFolder(F32_DIR, method);
    const out = mkdtempSync(path.join(tmpdir(), `plinth-quant-${method}-`));
    saveQuantized(q.model, method, out);
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    const w = readWeights(out);
    const q0 = 'model.layers.0.self_attn.q_proj';
    if (method === 'int8') {
      assert.equal(config.quantization_config.load_in_8bit, true);
      assert.equal(w.get(`${q0}.weight`)!.dtype, 'u8');
      assert.deepEqual(w.get(`${q0}.SCB`)!.shape, [48]);
    } else if (method === 'nf4' || method === 'nf4-dq') {
      assert.equal(config.quantization_config.bnb_4bit_quant_type, 'nf4');
      assert.equal(config.quantization_config.bnb_4bit_use_double_quant, method === 'nf4-dq');
      assert.deepEqual(w.get(`${q0}.weight`)!.shape, [48 * 48 / 2, 1]);
      assert.equal(w.get(`${q0}.weight.absmax`)!.dtype, method === 'nf4' ? 'f32' : 'u8');
      assert.equal(w.has(`${q0}.weight.nested_absmax`), method === 'nf4-dq');
      const state = JSON.parse(new TextDecoder().decode(w.get(`${q0}.weight.quant_state.bitsandbytes__nf4`)!.data() as Uint8Array)) as Record<string, unknown>;
      assert.equal(state.quant_type, 'nf4');
      assert.equal(state.blocksize, 64);
      assert.deepEqual(state.shape, [48, 48]);
    } else {
      assert.equal(config.torch_dtype, method === 'bf16' ? 'bfloat16' : 'float16');
      assert.equal(w.get(`${q0}.weight`)!.dtype, method);
    }
    const loaded = loadQuantized(out);
    assert.equal(loaded.method, method);
    assert.deepEqual(logits(loaded.model), logits(q.model));
    // no layer holds a float32 weight of its own
    for (const l of quantizedLayers(loaded.model)) assert.equal(l.parameters().length, 0);
    assert.ok(!loaded.model.parameters().some((p) => p.shape.length === 2 && p.shape[1] === 48 && p.shape[0] !== 40));
  });
}

test('weight memory: int8 about 1/4 and NF4 about 1/7 of float32 per linear layer', () => {
  const n = 256 * 512;
  const int8 = new Int8Linear(512, 256, { bias: false });
  const nf4 = new NF4Linear(512, 256, { bias: false }, false);
  const dq = new NF4Linear(512, 256, { bias: false }, true);
  const half = new HalfLinear(512, 256, { bias: false }, 'bf16');
  const w = pl.randn([256, 512], { std: 0.02 }).toFloat32Array();
  for (const l of [int8, nf4, dq, half]) l.quantize(w);
  assert.equal(int8.weightBytes(), n + 4 * 256);
  assert.equal(nf4.weightBytes(), n / 2 + (n / 64) * 4); // 4.5 bits per weight
  assert.equal(dq.weightBytes(), n / 2 + n / 64 + 4 * Math.ceil(n / 64 / 256) + 4); // about 4.127 bits
  assert.equal(half.weightBytes(), 2 * n);
  assert.ok((4 * n) / nf4.weightBytes() > 7 && (4 * n) / dq.weightBytes() > 7.7);
});

for (const backend of BACKENDS) {
  test(`gradients (${backend}): reach the input through the frozen weights, never the weights`, () => withBackend(backend, () => {
    const K = 130, N = 70;
    const w = pl.randn([N, K], { std: 0.05 });
    for (const layer of [new Int8Linear(K, N, {}), new NF4Linear(K, N, {}, true), new HalfLinear(K, N, {}, 'f16')]) {
      layer.quantize(w.toFloat32Array());
      const float = new Linear(K, N, { bias: false });
      (float.weight.storage as Float32Array).set(layer.dequantize());
      const x = pl.randn([2, 9, K]).requiresGrad_(true);
      const x2 = x.detach().requiresGrad_(true);
      const gy = pl.randn([2, 9, N]);
      pl.sum(pl.mul(layer.forward(x), gy)).backward();
      pl.sum(pl.mul(float.forward(x2), gy)).backward();
      assertClose(x.grad!.toFloat32Array(), x2.grad!.toFloat32Array(), 1e-4, `${layer.method} dx`);
      assert.equal(layer.bias!.grad, null);
      assert.equal(layer.bias!.requiresGrad, false);
      // a single row (the decode path) gives the same values as a batch
      const one = pl.noGrad(() => layer.forward(pl.randn([1, K]).requiresGrad_(false)));
      assert.deepEqual(one.shape, [1, N]);
    }
  }));
}

test('bad folders: an already-quantized source, a float folder to loadQuantized, a missing tensor, a wrong shape', () => {
  const q = quantizeFolder(F32_DIR, 'nf4');
  const out = mkdtempSync(path.join(tmpdir(), 'plinth-quant-bad-'));
  saveQuantized(q.model, 'nf4', out);
  assert.throws(() => quantizeFolder(out, 'int8'), QuantizationError);
  assert.throws(() => loadQuantized(F32_DIR), /not quantized/);
  assert.throws(() => quantizeFolder(F32_DIR, 'int4' as never), /unknown quantization 'int4'/);
  // drop one layer's absmax: the error names it
  const w = readWeights(out);
  w.delete('model.layers.1.mlp.down_proj.weight.absmax');
  const missing = mkdtempSync(path.join(tmpdir(), 'plinth-quant-missing-'));
  saveQuantized(q.model, 'nf4', missing);
  writeSafetensors(path.join(missing, 'model.safetensors'), w);
  assert.throws(() => loadQuantized(missing), /missing tensor 'model\.layers\.1\.mlp\.down_proj\.weight\.absmax'/);
  // a config whose shapes differ from the stored ones
  const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 64 }));
  assert.throws(() => loadQuantized(out), /model\.layers\.0\.mlp\.(gate|up|down)_proj/);
});
