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

test('the engine sampler: temperature, min-p, top-k and top-p keep the right tokens in the right proportions', () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  const logits = Float32Array.from(probs, Math.log);
  const sampler = new pl.Sampler(4);
  /** Frequencies over an even grid of draws u. */
  const freq = (p: Partial<pl.SamplingParams>, tokens: number[] = [], promptLength = 0) => {
    const n = 20000;
    const f = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) f[sampler.sample(logits, pl.samplingParams(p), tokens, promptLength, (i + 0.5) / n)] += 1 / n;
    return f;
  };
  const close = (a: number[], b: number[]) => a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 2e-3, `${a} vs ${b}`));
  close(freq({}), probs);
  close(freq({ topK: 2 }), [0.5 / 0.8, 0.3 / 0.8, 0, 0]);
  close(freq({ topP: 0.7 }), [0.5 / 0.8, 0.3 / 0.8, 0, 0]);
  close(freq({ topP: 0.85 }), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]);
  close(freq({ minP: 0.35 }), [0.5 / 0.8, 0.3 / 0.8, 0, 0]);
  close(freq({ topK: 3, topP: 0.6 }), [0.5 / 0.8, 0.3 / 0.8, 0, 0]);
  const t2 = probs.map((p) => Math.sqrt(p));
  const z = t2.reduce((a, b) => a + b);
  close(freq({ temperature: 2 }), t2.map((p) => p / z));
  assert.equal(sampler.sample(logits, pl.samplingParams({ temperature: 0 }), [], 0, 0.99), 0);
  // Repetition penalty divides positive logits and multiplies negative ones of every seen token.
  const l2 = Float32Array.from([2, 1.9, -1, -1.05]);
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0, repetitionPenalty: 1.2 }), [0], 0, 0), 1);
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0 }), [0], 1, 0), 0);
  // Presence and frequency penalties count generated tokens only (after the prompt).
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0, presencePenalty: 0.2 }), [0], 1, 0), 0);
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0, presencePenalty: 0.2 }), [0], 0, 0), 1);
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0, frequencyPenalty: 0.06 }), [0, 0], 0, 0), 1);
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0, frequencyPenalty: 0.06 }), [0], 0, 0), 0);
  // The scratch space is clean afterwards: no penalty leaks into the next call.
  assert.equal(sampler.sample(l2, pl.samplingParams({ temperature: 0 }), [], 0, 0), 0);
  const lp = sampler.logprobsOf(logits, 2, 2);
  assert.ok(Math.abs(lp.logprob - Math.log(0.15)) < 1e-6);
  assert.deepEqual(lp.top.map((t) => t.tokenId), [0, 1]);
});

test('logit bias: added to the logits before sampling; -100 bans a token, +100 forces one; not greedy for the batch argmax', () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  const logits = Float32Array.from(probs, Math.log);
  const sampler = new pl.Sampler(4);
  const greedy = (logitBias: [number, number][]) => sampler.sample(logits, pl.samplingParams({ temperature: 0, logitBias }), [], 0, 0.5);
  assert.equal(greedy([]), 0);
  assert.equal(greedy([[0, -100]]), 1, 'the argmax banned: the runner-up');
  assert.equal(greedy([[3, 100]]), 3, 'the least likely forced');
  assert.equal(greedy([[0, -100], [1, -100], [2, -100]]), 3);
  // sampling: a bias of log 2 on token 3 doubles its weight (0.05 → 0.1 of a total 1.05)
  const n = 20000;
  let hits = 0;
  for (let i = 0; i < n; i++) hits += sampler.sample(logits, pl.samplingParams({ logitBias: [[3, Math.log(2)]] }), [], 0, (i + 0.5) / n) === 3 ? 1 : 0;
  assert.ok(Math.abs(hits / n - 0.1 / 1.05) < 2e-3, `${hits / n}`);
  // the logits themselves are untouched (logprobs stay the model's)
  assert.deepEqual(Array.from(logits), Array.from(Float32Array.from(probs, Math.log)));
  assert.equal(pl.Sampler.isGreedy(pl.samplingParams({ temperature: 0, logitBias: [[1, 5]] })), false);
  assert.equal(pl.Sampler.isGreedy(pl.samplingParams({ temperature: 0 })), true);
  assert.throws(() => pl.samplingParams({ logitBias: [[1, 101]] }), /logitBias/);
  assert.throws(() => pl.samplingParams({ logitBias: [[-1, 1]] }), /logitBias/);
});
