// Hugging Face folders and safetensors: round trips with identical logits, sharding, and clear
// errors for corrupt files and weights that do not fit the config.
import { mkdtempSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { parseSafetensors, serializeSafetensors } from '../../src/io/safetensors.js';

const tiny = {
  llama: { model_type: 'llama', vocab_size: 50, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false },
  gpt2: { model_type: 'gpt2', vocab_size: 50, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 2, layer_norm_epsilon: 1e-5, tie_word_embeddings: true },
};

for (const [name, config] of Object.entries(tiny)) {
  test(`${name}: save and load give identical logits; tied weights are not duplicated`, () => {
    pl.manualSeed(1);
    const model = pl.createModel(config);
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-ckpt-'));
    pl.saveModel(model, dir);
    assert.ok(existsSync(path.join(dir, 'config.json')) && existsSync(path.join(dir, 'generation_config.json')));
    const back = pl.loadModel(dir);
    const ids = pl.tensor([[1, 2, 3, 4, 5]], { dtype: 'i32' });
    assert.deepEqual(back.forward(ids).logits.toArray(), model.forward(ids).logits.toArray());
    const names = [...pl.readSafetensors(path.join(dir, 'model.safetensors')).tensors.keys()];
    if (name === 'gpt2') {
      assert.ok(!names.includes('lm_head.weight'), 'GPT-2 head is tied to wte');
      assert.equal(pl.readSafetensors(path.join(dir, 'model.safetensors')).tensors.get('transformer.h.0.attn.c_attn.weight')!.shape.join(), '16,48', 'Conv1D layout (in, out)');
    } else {
      assert.ok(names.includes('lm_head.weight'));
    }
  });
}

test('sharded checkpoints are written with an index and read back', () => {
  pl.manualSeed(2);
  const model = pl.createModel(tiny.llama);
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-shards-'));
  pl.saveModel(model, dir, { maxShardBytes: 8000 });
  const shards = readdirSync(dir).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
  assert.ok(shards.length > 1, `expected several shards, got ${shards.length}`);
  assert.ok(existsSync(path.join(dir, 'model.safetensors.index.json')));
  const back = pl.loadModel(dir);
  const ids = pl.tensor([[3, 1, 4]], { dtype: 'i32' });
  assert.deepEqual(back.forward(ids).logits.toArray(), model.forward(ids).logits.toArray());
});

test('weights that do not fit the config name every offending tensor', () => {
  const model = pl.createModel(tiny.llama, { init: false });
  const state = model.stateDict();
  state.delete('model.norm.weight');
  state.set('model.layers.0.mlp.up_proj.weight', pl.zeros([3, 3]));
  state.set('extra.weight', pl.zeros([2]));
  assert.throws(() => model.loadStateDict(state), (e: Error) =>
    e instanceof pl.StateDictError && /missing tensor 'model.norm.weight'/.test(e.message)
    && /'model.layers.0.mlp.up_proj.weight' has shape \[3, 3\], expected \[24, 16\]/.test(e.message)
    && /unexpected tensor 'extra.weight'/.test(e.message));
});

test('corrupt safetensors are rejected before allocating what the header claims', () => {
  const good = serializeSafetensors({ a: pl.ones([4]), b: pl.tensor([1, 2], { dtype: 'i32' }) });
  assert.deepEqual(parseSafetensors(good).tensors.get('a')!.toArray(), [1, 1, 1, 1]);
  assert.throws(() => parseSafetensors(good.subarray(0, 5)), (e: Error) => e instanceof pl.SafetensorsError && /too short/.test(e.message));
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  assert.throws(() => parseSafetensors(huge), (e: Error) => e instanceof pl.SafetensorsError && /header length/.test(e.message));
  assert.throws(() => parseSafetensors(good.subarray(0, good.length - 4)), (e: Error) => e instanceof pl.SafetensorsError && /data_offsets/.test(e.message));
  const header = JSON.stringify({ x: { dtype: 'F32', shape: [1000000000], data_offsets: [0, 4000000000] } });
  const bad = new Uint8Array(8 + header.length);
  new DataView(bad.buffer).setBigUint64(0, BigInt(header.length), true);
  bad.set(new TextEncoder().encode(header), 8);
  assert.throws(() => parseSafetensors(bad), (e: Error) => e instanceof pl.SafetensorsError && /data_offsets/.test(e.message));
  const notJson = good.slice();
  notJson[8] = 0x7b + 1;
  assert.throws(() => parseSafetensors(notJson), (e: Error) => e instanceof pl.SafetensorsError && /not valid JSON/.test(e.message));
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-bad-'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'bert2000' }));
  assert.throws(() => pl.loadModel(dir), (e: Error) => e instanceof pl.UnsupportedModelError && /bert2000/.test(e.message));
  writeFileSync(path.join(dir, 'config.json'), '{not json');
  assert.throws(() => pl.loadModel(dir), (e: Error) => e instanceof pl.CheckpointError && /not valid JSON/.test(e.message));
});
