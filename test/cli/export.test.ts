// `plinth export gguf` as a user runs it: a checkpoint folder to a GGUF file (--json and the one-line
// summary), and the messages for a bad --type and a folder without a tokenizer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as pl from '../../src/index.js';

const main = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'plinth-cli-export-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const CONFIG = { model_type: 'llama', vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 };

test('plinth export gguf writes a file llama.cpp can load, with the tokenizer inside', async () => {
  const dir = path.join(tmp, 'model');
  const tokenizer = await pl.trainTokenizer({ text: 'the fox and the sun and the moon. '.repeat(30), vocabSize: 280 });
  pl.manualSeed(0);
  pl.saveModel(pl.createModel(CONFIG), dir, { tokenizer });
  const out = path.join(tmp, 'model.gguf');
  const r = JSON.parse(execFileSync(process.execPath, [main, 'export', 'gguf', '--model', dir, '--out', out, '--type', 'q8_0', '--json'], { encoding: 'utf8' }));
  assert.equal(r.type, 'q8_0');
  assert.equal(r.tensors, 2 + 9 + 1);
  const g = pl.readGGUF(out);
  assert.equal(g.metadata.get('general.name')!.value, 'model');
  assert.equal((g.metadata.get('tokenizer.ggml.tokens')!.value as string[]).length, 300);
  assert.equal(g.tensors.get('blk.0.ffn_up.weight')!.type, pl.GGMLType.Q8_0);
  const line = execFileSync(process.execPath, [main, 'export', 'gguf', '--model', dir, '--out', out], { encoding: 'utf8' });
  assert.match(line, /^wrote .*model\.gguf: F32, 12 tensors, 0\.0\d M parameters, [\d.]+ MiB in [\d.]+ s\n$/);
});

test('plinth export gguf explains a bad --type and a folder without a tokenizer', () => {
  const dir = path.join(tmp, 'bare');
  pl.saveModel(pl.createModel(CONFIG), dir);
  const bad = spawnSync(process.execPath, [main, 'export', 'gguf', '--model', dir, '--out', path.join(tmp, 'x.gguf'), '--type', 'q5_k'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--type must be one of f32, f16, q8_0, q4_0/);
  const noTok = spawnSync(process.execPath, [main, 'export', 'gguf', '--model', dir, '--out', path.join(tmp, 'x.gguf')], { encoding: 'utf8' });
  assert.equal(noTok.status, 1);
  assert.match(noTok.stderr, /has no tokenizer\.json/);
  assert.throws(() => unlinkSync(path.join(tmp, 'x.gguf')), /ENOENT/);
});
