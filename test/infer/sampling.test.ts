// Sampling: greedy is argmax, top-k/top-p cut the candidates, draws follow the softmax and are
// reproducible from the seed; the simple generation loop matches uncached greedy decoding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';

const logits = Float32Array.from([1.0, 3.0, 2.0, -1.0, 2.5]);

test('greedy, top-k 1 and a tiny top-p all pick the argmax', () => {
  assert.equal(pl.sampleToken(logits, { temperature: 0 }), 1);
  pl.manualSeed(1);
  for (let i = 0; i < 20; i++) assert.equal(pl.sampleToken(logits, { topK: 1 }), 1);
  for (let i = 0; i < 20; i++) assert.equal(pl.sampleToken(logits, { topP: 0.01 }), 1);
});

test('draws follow softmax(logits / temperature) and respect top-k', () => {
  pl.manualSeed(2);
  const counts = new Array<number>(5).fill(0);
  const n = 20000;
  for (let i = 0; i < n; i++) counts[pl.sampleToken(logits, { temperature: 2 })]++;
  const e = Array.from(logits, (l) => Math.exp(l / 2));
  const z = e.reduce((a, b) => a + b, 0);
  e.forEach((p, i) => assert.ok(Math.abs(counts[i] / n - p / z) < 0.015, `token ${i}: ${counts[i] / n} vs ${p / z}`));
  for (let i = 0; i < 200; i++) assert.ok([1, 4].includes(pl.sampleToken(logits, { topK: 2 })));
  pl.manualSeed(3);
  const a = Array.from({ length: 10 }, () => pl.sampleToken(logits));
  pl.manualSeed(3);
  assert.deepEqual(Array.from({ length: 10 }, () => pl.sampleToken(logits)), a);
  assert.throws(() => pl.generate(pl.createModel({ model_type: 'gpt2', vocab_size: 8, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 }), [1], { topP: 0 }), pl.ArgumentError);
});

test('cached generation equals uncached greedy decoding', () => {
  pl.manualSeed(4);
  const model = pl.createModel({ model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 });
  const prompt = [3, 14, 15, 9];
  const fast = pl.generate(model, prompt, { temperature: 0, maxNewTokens: 10 });
  const seq = [...prompt];
  pl.noGrad(() => {
    for (let i = 0; i < 10; i++) {
      const { logits } = model.forward(pl.tensor([seq], { dtype: 'i32' }));
      seq.push(pl.argmax(logits.select(1, seq.length - 1).reshape(-1)).item());
    }
  });
  assert.deepEqual(fast, seq.slice(prompt.length));
});
