// The alignment commands as a user runs them, on a tiny model: bad JSONL lines are named with their
// line numbers (exit 1), or skipped and listed with --on-error skip; identical chosen/rejected pairs
// are flagged; a short SFT run and a DPO run write models that load.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { saveModel } from '../../src/io/index.js';
import { createModel } from '../../src/models/index.js';
import { manualSeed } from '../../src/tensor/index.js';
import { trainTokenizer } from '../../src/tokenizers/index.js';

const main = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'plinth-cli-align-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
const modelDir = path.join(tmp, 'model');

before(async () => {
  const tok = await trainTokenizer({ text: 'Anna has 3 apples. Tom gives Anna 4 more apples. How many apples does Anna have now? 7 user assistant '.repeat(30), vocabSize: 300 });
  manualSeed(0);
  const model = createModel({
    model_type: 'llama', vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
    num_attention_heads: 2, max_position_embeddings: 256, tie_word_embeddings: true,
  });
  saveModel(model, modelDir, { tokenizer: tok });
});

const run = (args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
const common = ['--model', modelDir, '--eval', '4', '--kinds', 'arithmetic', '--batch-size', '2'];

test('plinth sft names bad JSONL lines and exits 1; --on-error skip trains on the rest', () => {
  const data = path.join(tmp, 'sft.jsonl');
  writeFileSync(data, [
    JSON.stringify({ prompt: 'Anna has 3 apples.', response: '3' }),
    'not json',
    JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    JSON.stringify({ messages: [{ role: 'user', content: 'How many?' }, { role: 'assistant', content: '7' }] }),
  ].join('\n'));
  const bad = run(['sft', ...common, '--out', path.join(tmp, 'sft'), '--data', data, '--steps', '2']);
  assert.equal(bad.status, 1, bad.stderr);
  assert.match(bad.stderr, /sft\.jsonl: 2 bad lines/);
  assert.match(bad.stderr, /line 2: invalid JSON/);
  assert.match(bad.stderr, /line 3: "messages" has no assistant message/);
  const ok = run(['sft', ...common, '--out', path.join(tmp, 'sft'), '--data', data, '--steps', '2', '--on-error', 'skip']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /skipped .*sft\.jsonl line 2: invalid JSON/);
  assert.match(ok.stdout, /SFT on 2 examples/);
  assert.match(ok.stdout, /sft: 2 steps in .* held-out exact match \d+\.\d%/);
  assert.ok(existsSync(path.join(tmp, 'sft', 'model.safetensors')));
});

test('plinth dpo flags identical chosen and rejected; runs on the good pairs', () => {
  const data = path.join(tmp, 'prefs.jsonl');
  writeFileSync(data, [
    JSON.stringify({ prompt: 'How many apples?', chosen: '7', rejected: '7' }),
    JSON.stringify({ prompt: 'How many apples?', chosen: '7', rejected: '8' }),
    JSON.stringify({ prompt: 'How many apples?', chosen: '3', rejected: 'many' }),
  ].join('\n'));
  const bad = run(['dpo', ...common, '--out', path.join(tmp, 'dpo'), '--data', data, '--steps', '2']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /line 1: "chosen" and "rejected" are identical/);
  const ok = run(['dpo', ...common, '--out', path.join(tmp, 'dpo'), '--data', data, '--steps', '2', '--on-error', 'skip', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  const last = JSON.parse(ok.stdout.trim().split('\n').pop()!);
  assert.ok(Number.isFinite(last.kl) && Number.isFinite(last.margin));
  assert.ok(existsSync(path.join(tmp, 'dpo', 'model.safetensors')));
});
