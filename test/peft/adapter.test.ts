// PEFT adapter folders: the exact file names, tensor names and config keys PEFT writes, a round
// trip with identical logits, merged models, and errors that name what does not fit.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import {
  AdapterError, AdapterFormatError, createLoraModel, loadAdapter, loadLoraModel, loraFactory, loraLayers, saveAdapter, saveMergedModel,
} from '../../src/peft/index.js';
import { assertClose } from '../helpers.js';

const llama = { model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32 };
const ids = pl.tensor([[3, 1, 4, 1, 5, 9]], { dtype: 'i32' });
const tmp = () => mkdtempSync(path.join(tmpdir(), 'plinth-peft-'));

/** A base folder and a LoRA model on it whose adapter is not the identity. */
function setup(targetModules: string[] | string = ['q_proj', 'v_proj']) {
  pl.manualSeed(11);
  const baseDir = tmp();
  pl.saveModel(pl.createModel(llama), baseDir);
  const { model } = loadLoraModel(baseDir, { r: 4, alpha: 8, dropout: 0.1, targetModules });
  for (const l of loraLayers(model)) for (const a of l.adapters.values()) (a.B.storage as Float32Array).set(pl.randn(a.B.shape, { std: 0.1 }).data() as Float32Array);
  model.eval();
  return { baseDir, model };
}

test('saveAdapter writes PEFT\'s files, tensor names and config keys', () => {
  const { baseDir, model } = setup();
  const dir = saveAdapter(model, path.join(tmp(), 'adapter'), { baseModel: baseDir, config: { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] } });
  const config = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  for (const [k, v] of Object.entries({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0.1, bias: 'none', fan_in_fan_out: false,
    use_rslora: false, use_dora: false, base_model_name_or_path: baseDir, modules_to_save: null, inference_mode: true, init_lora_weights: true,
  })) assert.deepEqual(config[k], v, k);
  assert.deepEqual(config.target_modules, ['q_proj', 'v_proj']);
  for (const k of ['layers_to_transform', 'layers_pattern', 'rank_pattern', 'alpha_pattern', 'revision']) assert.ok(k in config, k);
  const st = pl.readSafetensors(path.join(dir, 'adapter_model.safetensors'));
  assert.deepEqual([...st.tensors.keys()].sort(), [0, 1].flatMap((i) => ['q_proj', 'v_proj'].flatMap((m) => ['A', 'B'].map((ab) =>
    `base_model.model.model.layers.${i}.self_attn.${m}.lora_${ab}.weight`))).sort());
  assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight')!.shape, [4, 16]);
  assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape, [8, 4]);
});

test('an adapter saved and loaded on a fresh base gives identical logits; the merged folder too', () => {
  const { baseDir, model } = setup('all-linear');
  const want = model.forward(ids).logits.toFloat32Array();
  const dir = saveAdapter(model, path.join(tmp(), 'adapter'), { baseModel: baseDir });
  const config = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as { target_modules: string[] };
  assert.deepEqual(config.target_modules, ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'], 'all-linear is recorded as the module names it covered');
  const loaded = loadLoraModel(baseDir, dir).model;
  assert.deepEqual(loaded.forward(ids).logits.toFloat32Array(), want);
  assert.equal(loaded.parameters().filter((p) => p.requiresGrad).length, 2 * 14);
  const mergedDir = path.join(tmp(), 'merged');
  saveMergedModel(loaded, mergedDir);
  const merged = pl.loadModel(mergedDir);
  assert.ok(loraLayers(merged).length === 0);
  assertClose(merged.forward(ids).logits.toFloat32Array(), want, 1e-4, 'merged model');
});

test('a GPT-2 adapter records fan_in_fan_out and round-trips', () => {
  pl.manualSeed(12);
  const model = createLoraModel({ model_type: 'gpt2', vocab_size: 40, n_embd: 16, n_layer: 1, n_head: 2, n_positions: 32 }, { r: 2, alpha: 2, targetModules: ['c_attn', 'c_proj'] });
  for (const l of loraLayers(model)) for (const a of l.adapters.values()) (a.B.storage as Float32Array).set(pl.randn(a.B.shape).data() as Float32Array);
  const dir = saveAdapter(model, path.join(tmp(), 'a'));
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')).fan_in_fan_out, true);
  const other = pl.createModel(model.config, { linearFactory: loraFactory() });
  other.loadStateDict(new Map([...model.stateDict()].filter(([n]) => !n.includes('lora_'))), { strict: false });
  loadAdapter(other, dir);
  assert.deepEqual(other.forward(ids).logits.toFloat32Array(), model.forward(ids).logits.toFloat32Array());
});

test('loading an adapter that does not fit the base names the mismatch', () => {
  const { baseDir, model } = setup();
  const dir = saveAdapter(model, path.join(tmp(), 'adapter'));
  // A base twice as wide: every A and B has the wrong shape.
  pl.manualSeed(13);
  const wide = tmp();
  pl.saveModel(pl.createModel({ ...llama, hidden_size: 32 }), wide);
  assert.throws(() => loadLoraModel(wide, dir), (e: Error) => e instanceof AdapterError
    && /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[4, 16\], but the base layer needs \[4, 32\]/.test(e.message));
  // A base with fewer layers: the tensors of layer 1 name modules it does not have.
  const shallow = tmp();
  pl.saveModel(pl.createModel({ ...llama, num_hidden_layers: 1 }), shallow);
  assert.throws(() => loadLoraModel(shallow, dir), /names module 'model\.layers\.1\.self_attn\.q_proj', which is not a linear layer of the base model/);
  // A config whose targets cover layers the weights leave out.
  const cfgFile = path.join(dir, 'adapter_config.json');
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8'));
  writeFileSync(cfgFile, JSON.stringify({ ...cfg, target_modules: ['q_proj', 'v_proj', 'o_proj'] }));
  assert.throws(() => loadLoraModel(baseDir, dir), /module 'model\.layers\.0\.self_attn\.o_proj' is a target .* but the adapter has no tensors for it/);
  writeFileSync(cfgFile, JSON.stringify({ ...cfg, r: 0 }));
  assert.throws(() => loadLoraModel(baseDir, dir), (e: Error) => e instanceof AdapterFormatError && /rank r must be a positive integer, got 0/.test(e.message));
  writeFileSync(cfgFile, JSON.stringify({ ...cfg, peft_type: 'IA3' }));
  assert.throws(() => loadLoraModel(baseDir, dir), /peft_type is "IA3"; only LORA/);
  assert.throws(() => loadLoraModel(baseDir, baseDir), /not a PEFT adapter folder/);
});
