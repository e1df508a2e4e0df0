// Fine-tuning data: which tokens are targets for each JSONL shape, the held-out split, and a
// resumable sampler whose windows always hold something to learn.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFinetuneData, StreamSampler } from '../../src/data/finetune.js';
import { DataError } from '../../src/data/index.js';
import { trainTokenizer } from '../../src/tokenizers/index.js';

const file = (name: string, text: string) => {
  const f = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-ftdata-')), name);
  writeFileSync(f, text);
  return f;
};

test('JSONL shapes: prompts are context, responses, text and assistant turns are targets', async () => {
  const tok = await trainTokenizer({ text: 'the cat sat on the mat. hello world. '.repeat(20), vocabSize: 290 });
  tok.addSpecialTokens(['<|im_start|>', '<|im_end|>']);
  const eos = tok.specialId('eosToken')!;
  const lines = [
    { prompt: 'the cat', response: ' sat' },
    { text: 'hello world' },
    { messages: [{ role: 'user', content: 'the mat' }, { role: 'assistant', content: 'the cat' }] },
  ];
  const d = readFinetuneData(file('a.jsonl', lines.map((l) => JSON.stringify(l)).join('\n')), tok, { valFraction: 0 });
  assert.equal(d.examples, 3);
  assert.equal(d.val, null);
  const { ids, targets } = d.train;
  const p = tok.encode('the cat', { addSpecialTokens: false });
  const r = tok.encode(' sat', { addSpecialTokens: false });
  const h = tok.encode('hello world', { addSpecialTokens: false });
  const first = [eos, ...p, ...r, eos, eos, ...h, eos];
  assert.deepEqual([...ids.subarray(0, first.length)], first);
  assert.deepEqual([...targets.subarray(0, first.length)], [0, ...p.map(() => 0), ...r.map(() => 1), 1, 0, ...h.map(() => 1), 1]);
  const chat = tok.applyChatTemplate(lines[2].messages!);
  assert.deepEqual([...ids.subarray(first.length)], [eos, ...chat.ids]);
  assert.deepEqual([...targets.subarray(first.length)], [0, ...chat.assistantMask]);
  assert.throws(() => readFinetuneData(file('b.jsonl', '{"question": "?"}'), tok), (e: Error) => e instanceof DataError && /b\.jsonl:1: expected \{"text"\}/.test(e.message));
  assert.throws(() => readFinetuneData(file('c.jsonl', '{"text": "a"}\n{oops'), tok), /c\.jsonl:2: invalid JSON/);
});

test('a text file is all targets; the tail is held out; windows skip pure-prompt stretches and resume exactly', async () => {
  const tok = await trainTokenizer({ text: 'one two three four five six seven. '.repeat(30), vocabSize: 280 });
  const d = readFinetuneData(file('a.txt', 'one two three four five six seven. '.repeat(40)), tok, { valFraction: 0.1, minValTokens: 9 });
  assert.equal(d.kind, 'text');
  assert.ok(d.val && d.val.ids.length >= 9 && d.train.targets.every((t) => t === 1));
  // A stream whose targets are its last 6 tokens (prompts before): only windows reaching them count.
  const ids = Int32Array.from({ length: 40 }, (_, i) => i % 7);
  const targets = new Uint8Array(40).fill(1, 34);
  const s = new StreamSampler({ ids, targets }, 3, 8, { seed: 5 });
  for (let k = 0; k < 10; k++) {
    const labels = s.next().targets.data() as Int32Array;
    for (let row = 0; row < 3; row++) assert.ok(labels.subarray(row * 8, row * 8 + 8).some((v) => v !== -100), `row ${row} has a target`);
  }
  const state = s.state();
  const next = s.next().inputs.toArray();
  s.setState(state);
  assert.deepEqual(s.next().inputs.toArray(), next);
  assert.throws(() => new StreamSampler({ ids: ids.subarray(0, 5), targets: targets.subarray(0, 5) }, 1, 8), /fewer than one window/);
  assert.throws(() => new StreamSampler({ ids, targets: new Uint8Array(40) }, 1, 8), /no target tokens/);
});
