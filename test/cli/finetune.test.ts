// `plinth finetune` and `plinth lora merge` as a user types them: a small pre-trained stories model,
// a LoRA run on prompt/response JSONL that lowers the validation loss, a resumed run, the merged
// model, full fine-tuning, and clear errors.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLoraSpec } from '../../src/cli/finetune.js';
import * as pl from '../../src/index.js';

const cli = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');

function plinth(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const last = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);

test('--lora specs: keys, target lists, all-linear and regular expressions', () => {
  assert.deepEqual(parseLoraSpec(undefined), { r: 8, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] });
  assert.deepEqual(parseLoraSpec('r=4,alpha=8,targets=q_proj,k_proj,o_proj,dropout=0'), { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'o_proj'] });
  assert.equal(parseLoraSpec('targets=all-linear').targetModules, 'all-linear');
  assert.equal(parseLoraSpec('targets=/.*\\.mlp\\..*/').targetModules, '.*\\.mlp\\..*');
  assert.equal(parseLoraSpec('rslora=true').useRslora, true);
  assert.throws(() => parseLoraSpec('rank=4'), /unknown key 'rank'/);
  assert.throws(() => parseLoraSpec('r=four'), /r must be a number/);
});

test('finetune (LoRA, resumed) → lora merge, and full fine-tuning, on a small model', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-finetune-'));
  const names = ['Tom', 'Mia', 'Sam', 'Ann', 'Ben', 'Eve'];
  const colours = ['red', 'blue', 'green'];
  const examples = Array.from({ length: 120 }, (_, i) => ({ prompt: `What colour is the ball of ${names[i % 6]}?`, response: ` It is ${colours[i % 3]}.` }));
  const data = path.join(dir, 'qa.jsonl');
  writeFileSync(data, examples.map((e) => JSON.stringify(e)).join('\n'));
  // A small base with its own tokenizer, saved as a Hugging Face folder.
  const tokenizer = await pl.trainTokenizer({ text: examples.map((e) => e.prompt + e.response).join(' '), vocabSize: 300 });
  pl.manualSeed(0);
  const base = path.join(dir, 'base');
  pl.saveModel(pl.createModel({ model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 }), base, { tokenizer });

  const run = path.join(dir, 'lora');
  const common = ['--model', base, '--data', data, '--out', run, '--lora', 'r=4,alpha=8,targets=q_proj,v_proj,o_proj,lm_head', '--steps', '30', '--batch-size', '4', '--block-size', '32', '--lr', '1e-2', '--eval-every', '15', '--eval-batches', '2', '--json'];
  const first = plinth('finetune', ...common, '--max-minutes', '0.0001');
  assert.equal(first.status, 0, first.stderr);
  assert.equal(last(first.stdout).interrupted, true);
  assert.ok(existsSync(path.join(run, 'checkpoint', 'trainable.safetensors')), 'a LoRA checkpoint holds the adapter only');
  assert.ok(!existsSync(path.join(run, 'checkpoint', 'model.safetensors')));
  const second = plinth('finetune', ...common, '--resume');
  assert.equal(second.status, 0, second.stderr);
  const s = last(second.stdout);
  assert.equal(s.steps, 30);
  assert.equal(s.mode, 'lora');
  assert.ok(s.trainableParameters < s.parameters / 10);
  assert.ok(s.valLoss < 0.5 * last(first.stdout).valLossBefore, `validation loss ${last(first.stdout).valLossBefore} → ${s.valLoss}`);
  const adapter = path.join(run, 'adapter');
  assert.ok(existsSync(path.join(adapter, 'adapter_config.json')) && existsSync(path.join(adapter, 'adapter_model.safetensors')));
  assert.deepEqual(JSON.parse(readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8')).target_modules, ['q_proj', 'v_proj', 'o_proj', 'lm_head']);

  const merged = path.join(dir, 'merged');
  const m = plinth('lora', 'merge', '--model', base, '--adapter', adapter, '--out', merged, '--json');
  assert.equal(m.status, 0, m.stderr);
  const sample = plinth('sample', '--model', merged, '--prompt', 'What colour is the ball of Mia?', '--max-tokens', '4', '--temperature', '0', '--json');
  assert.equal(sample.status, 0, sample.stderr);

  const full = plinth('finetune', '--model', base, '--data', data, '--out', path.join(dir, 'full'), '--steps', '3', '--batch-size', '2', '--block-size', '32', '--json');
  assert.equal(full.status, 0, full.stderr);
  const f = last(full.stdout);
  assert.equal(f.mode, 'full');
  assert.equal(f.trainableParameters, f.parameters);
  assert.ok(existsSync(path.join(dir, 'full', 'model', 'model.safetensors')));

  const q = plinth('finetune', '--model', base, '--data', data, '--out', path.join(dir, 'qlora'), '--qlora', '--steps', '3', '--batch-size', '2', '--block-size', '32', '--json');
  assert.equal(q.status, 0, q.stderr);
  const qs = last(q.stdout);
  assert.equal(qs.mode, 'qlora');
  assert.equal(qs.parameters, f.parameters + qs.trainableParameters, 'the quantized weights are counted, and the adapter');
  assert.ok(existsSync(path.join(dir, 'qlora', 'adapter', 'adapter_model.safetensors')));

  const bad = plinth('finetune', '--model', base, '--data', data, '--out', path.join(dir, 'bad'), '--lora', 'r=0');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /rank r must be a positive integer, got 0/);
  const none = plinth('finetune', '--model', base, '--data', data, '--out', path.join(dir, 'bad'), '--lora', 'targets=qkv');
  assert.equal(none.status, 1);
  assert.match(none.stderr, /LoRA target \["qkv"\] matches no linear layer of the model \(its layers are named like model\.layers\.0\.self_attn\.q_proj/);
});
