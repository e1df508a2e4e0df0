// SFT: only the assistant's tokens are targets (prompt tokens −100), the generation prompt is a
// prefix of the trained conversation, a template without assistant tokens is an error, packing
// keeps examples whole with no target across a boundary, and a tiny model learns a trivially
// learnable question set from near zero to near perfect exact match within seconds.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AlignmentDataError, collate, encodeConversation, encodePrompt, endOfTurnId, evaluateChat, generateBatch, packExamples, sft,
  sftExamplesFromTasks, fitsContext, type EncodedExample,
} from '../../src/align/index.js';
import { taskExamples } from '../../src/data/index.js';
import { createModel } from '../../src/models/index.js';
import { manualSeed } from '../../src/tensor/index.js';
import { trainTokenizer, type Tokenizer } from '../../src/tokenizers/index.js';

const ITEMS = [
  ['apple', 'red'], ['river', 'blue'], ['stone', 'grey'], ['cloud', 'white'], ['flame', 'orange'], ['grass', 'green'],
] as const;
const question = (thing: string) => `What colour is the ${thing}?`;

let tok: Tokenizer;
before(async () => {
  const text = ITEMS.map(([t, c]) => `${question(t)} The ${t} is ${c}. `).join('').repeat(20) + 'user assistant system';
  tok = await trainTokenizer({ text, vocabSize: 320 });
});

describe('SFT data', () => {
  test('prompt tokens are masked; the answer and its end-of-turn token are the targets', () => {
    const e = encodeConversation(tok, [{ role: 'user', content: question('apple') }, { role: 'assistant', content: 'red' }]);
    const targets = e.ids.filter((_, i) => e.mask[i] === 1);
    assert.equal(tok.decode(targets), 'red<|im_end|>');
    const b = collate([e], 0);
    const labels = Array.from(b.labels.data() as Int32Array);
    const kept = labels.filter((l) => l !== -100);
    assert.deepEqual(kept, targets);
    // The label at position t is the token at t+1: every kept label sits one before its token.
    labels.forEach((l, t) => { if (l !== -100) assert.equal(e.ids[t + 1], l); });
    assert.ok(labels.slice(0, e.ids.indexOf(targets[0]) - 1).every((l) => l === -100), 'the whole prompt is −100');
  });

  test('the generation prompt is a prefix of the trained conversation', () => {
    const p = encodePrompt(tok, [{ role: 'user', content: question('river') }]);
    const e = encodeConversation(tok, [{ role: 'user', content: question('river') }, { role: 'assistant', content: 'blue' }]);
    assert.deepEqual(e.ids.slice(0, p.length), p);
    assert.equal(e.mask[p.length], 1);
    assert.equal(e.mask[p.length - 1], 0);
  });

  test('a chat template that yields no assistant tokens is an error', () => {
    const saved = tok.config.chatTemplate;
    tok.config.chatTemplate = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}";
    try {
      assert.throws(() => encodeConversation(tok, [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }]), AlignmentDataError);
    } finally {
      tok.config.chatTemplate = saved;
    }
  });

  test('packing keeps examples whole and puts no target across a boundary', () => {
    const ex = (n: number, answer: number): EncodedExample => ({
      ids: Array.from({ length: n }, (_, i) => 100 + i),
      mask: Array.from({ length: n }, (_, i) => (i >= n - answer ? 1 : 0)),
    });
    const examples = [ex(10, 2), ex(7, 3), ex(12, 1), ex(5, 2), ex(16, 4)];
    const rows = packExamples(examples, 16, 0);
    const spans = rows.flatMap((r) => r.spans.map(([a, b]) => b - a)).sort((x, y) => x - y);
    assert.deepEqual(spans, examples.map((e) => e.ids.length).sort((x, y) => x - y), 'every example exactly once, whole');
    for (const r of rows) {
      assert.equal(r.inputs.length, 16);
      for (const [a, b] of r.spans) {
        // The last token of an example predicts nothing (the next example's first token is not its continuation).
        assert.equal(r.labels[b - 1], -100);
        const n = b - a;
        const e = examples.find((x) => x.ids.length === n)!;
        for (let t = 0; t + 1 < n; t++) assert.equal(r.labels[a + t], e.mask[t + 1] ? e.ids[t + 1] : -100);
      }
      const used = r.spans.reduce((s, [a, b]) => s + b - a, 0);
      for (let t = used; t < 16; t++) assert.equal(r.labels[t], -100, 'padding is never a target');
    }
    assert.ok(rows.length < examples.length, 'short examples share rows');
    assert.throws(() => packExamples([ex(17, 1)], 16, 0), AlignmentDataError);
  });
});

describe('SFT end to end', () => {
  test('a tiny model learns a question set from near zero to near perfect exact match', () => {
    manualSeed(0);
    const model = createModel({
      model_type: 'llama', vocab_size: tok.vocabSize, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true,
    });
    const end = endOfTurnId(tok);
    const items = ITEMS.map(([t, c]) => ({ prompt: question(t), answer: c }));
    const before = evaluateChat(model, tok, items, { maxNewTokens: 4, samples: 0 });
    const examples = items.map((it) => encodeConversation(tok, [{ role: 'user', content: it.prompt }, { role: 'assistant', content: it.answer }]));
    const r = sft(model, examples, { steps: 60, batchSize: 6, lr: 1e-2, padId: end, blockSize: 64, seed: 1 });
    const after = evaluateChat(model, tok, items, { maxNewTokens: 4, samples: 0 });
    assert.ok(before.accuracy <= 1 / 6, `untrained accuracy ${before.accuracy}`);
    assert.ok(after.accuracy >= 5 / 6, `accuracy after SFT ${after.accuracy}: ${JSON.stringify(after.examples.map((e) => e.response))} (loss ${r.loss})`);
    assert.ok(r.loss < r.losses[0] / 4, `loss ${r.losses[0]} → ${r.loss}`);
    assert.ok(r.targetTokensPerStep > 0 && r.rowTokensPerStep > r.targetTokensPerStep);
    // Batched greedy generation gives the same answers as one prompt at a time.
    const prompts = items.map((it) => encodePrompt(tok, [{ role: 'user', content: it.prompt }]));
    const batched = generateBatch(model, prompts, { maxNewTokens: 4, stopIds: [end] });
    prompts.forEach((p, i) => assert.deepEqual(generateBatch(model, [p], { maxNewTokens: 4, stopIds: [end] })[0], batched[i]));
  });
});

describe('SFT data of the built-in tasks', () => {
  test('a rambling fraction f gives exactly f of the answers in needless words, spread over the examples', () => {
    const tasks = taskExamples({ seed: 1, count: 40, kinds: ['arithmetic'] });
    const answerOf = (e: EncodedExample) => tok.decode(e.ids.filter((_, i) => e.mask[i] === 1));
    const count = (f: number) => sftExamplesFromTasks(tok, tasks, { rambling: f }).filter((e, i) => answerOf(e).includes(tasks[i].rambling.slice(0, 8))).length;
    assert.equal(count(0), 0);
    assert.equal(count(0.25), 10);
    assert.equal(count(0.5), 20);
    assert.equal(count(1), 40);
    const half = sftExamplesFromTasks(tok, tasks, { rambling: 0.5 }).map((e, i) => answerOf(e).includes(tasks[i].rambling.slice(0, 8)));
    assert.ok(half.slice(0, 10).some((x) => x) && half.slice(0, 10).some((x) => !x), 'rambling answers are spread, not bunched');
    assert.throws(() => sftExamplesFromTasks(tok, tasks, { rambling: 1.5 }), /fraction/);
  });

  test('fitsContext keeps the tasks whose rambling conversation fits the context', () => {
    const max = 300;
    const all = taskExamples({ seed: 3, count: 60 });
    const kept = all.filter(fitsContext(tok, max));
    assert.ok(kept.length > 0 && kept.length < all.length, `${kept.length} of ${all.length} kept`);
    for (const e of sftExamplesFromTasks(tok, kept, { rambling: 1 })) assert.ok(e.ids.length <= max, `${e.ids.length} tokens`);
    const dropped = all.filter((e) => !kept.includes(e));
    assert.ok(sftExamplesFromTasks(tok, dropped, { rambling: 1 }).some((e) => e.ids.length > max) || dropped.some((e) => encodePrompt(tok, [{ role: 'user', content: e.prompt }]).length + 24 > max));
  });
});

