// engineGenerator against generateBatch on tiny random models: the same greedy ids for prompts of
// mixed lengths (a LoRA model in training mode included, whose mode comes back), sampling that a
// seed reproduces and another seed changes, stop ids that end a response (and are kept), the
// context cap, and — one generator, so one engine kept from call to call — no stale keys or values
// once the weights changed and no requests left over from a failed call.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateBatch } from '../../src/align/index.js';
import { engineGenerator } from '../../src/infer/index.js';
import { createModel, type CausalLM } from '../../src/models/index.js';
import { createLoraModel, loraLayers, withoutAdapters } from '../../src/peft/index.js';
import * as pl from '../../src/tensor/index.js';
import { BACKENDS, withBackend } from '../helpers.js';

const V = 48;
const llama = {
  model_type: 'llama', vocab_size: V, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 40, initializer_range: 0.4,
};
const gpt2 = { model_type: 'gpt2', vocab_size: V, n_positions: 40, n_embd: 32, n_layer: 2, n_head: 4, initializer_range: 0.4 };

const models: Record<string, CausalLM> = {};
let prompts: number[][];

before(() => {
  pl.manualSeed(5);
  models.llama = createModel(llama);
  models.gpt2 = createModel(gpt2);
  // Mixed lengths, two of them equal, one prompt repeated (it shares prompt blocks in the engine),
  // and one of 36 tokens that leaves room for only 4 new ones.
  prompts = [3, 7, 7, 1, 12, 20, 5, 36].map((n) => Array.from({ length: n }, () => pl.randomInt(V)));
  prompts.push([...prompts[4]]);
});

const engine = engineGenerator({ blockSize: 4, maxBatchTokens: 24 });

for (const backend of BACKENDS) {
  for (const name of ['llama', 'gpt2']) {
    test(`greedy ids equal generateBatch's for mixed-length prompts (${name}, ${backend})`, () => withBackend(backend, () => {
      const model = models[name];
      const o = { maxNewTokens: 10, temperature: 0 };
      const want = generateBatch(model, prompts, o);
      const got = engine(model, prompts, o);
      assert.deepEqual(got, want);
      assert.equal(got[7].length, 4, 'capped by the context (36 + 4 = 40 positions)');
      assert.ok(got.every((r, i) => i === 7 || r.length === 10));
    }));
  }
}

test('a LoRA model in training mode: greedy ids as generateBatch, adapter on, no tape, its mode restored', () => {
  pl.manualSeed(6);
  const model = createLoraModel(llama, { r: 4, alpha: 8, dropout: 0.5, targetModules: 'all-linear' });
  // A non-zero update, so the adapter takes part in the logits.
  for (const [n, p] of model.namedParameters()) if (n.includes('lora_B')) (p.data() as Float32Array).forEach((_, i, a) => { a[i] = 0.3 * Math.sin(i + 1); });
  model.train();
  const o = { maxNewTokens: 8, temperature: 0 };
  const want = generateBatch(model, prompts, o);
  assert.notDeepEqual(withoutAdapters(model, () => generateBatch(model, prompts, o)), want, 'the adapter changes the greedy ids');
  const got = engine(model, prompts, o);
  assert.deepEqual(got, want);
  assert.equal(model.training, true, 'training mode restored');
  assert.ok(loraLayers(model).every((l) => l.active === (l.adapters.has('default') ? 'default' : null)), 'the adapter is still active');
  assert.ok(model.parameters().every((p) => p.grad === null), 'no gradients from generation');
});

test('sampling is reproducible under manualSeed and differs for another seed', () => {
  const model = models.llama;
  const many = [...prompts, ...prompts, ...prompts];
  const run = (seed: number) => {
    pl.manualSeed(seed);
    return engine(model, many, { maxNewTokens: 10, temperature: 1 });
  };
  const a = run(1);
  assert.deepEqual(run(1), a);
  assert.notDeepEqual(run(2), a);
  // Repeats of one prompt are sampled independently.
  assert.notDeepEqual(a.slice(0, prompts.length), a.slice(prompts.length, 2 * prompts.length));
  // Greedy draws nothing from the global stream.
  pl.manualSeed(3);
  engine(model, prompts, { maxNewTokens: 4, temperature: 0 });
  const after = pl.randomUniform();
  pl.manualSeed(3);
  assert.equal(pl.randomUniform(), after);
});

test('a stop id ends a response and is its last id', () => {
  const model = models.gpt2;
  const free = engine(model, prompts, { maxNewTokens: 10, temperature: 0 });
  // Stop at the third token of the first response: that response ends there; every other one ends
  // at its first occurrence of the id, or runs to its length.
  const stop = free[0][2];
  const got = engine(model, prompts, { maxNewTokens: 10, temperature: 0, stopIds: [stop] });
  assert.deepEqual(got[0], free[0].slice(0, free[0].indexOf(stop) + 1));
  got.forEach((r, i) => {
    const k = free[i].indexOf(stop);
    assert.deepEqual(r, k >= 0 ? free[i].slice(0, k + 1) : free[i]);
  });
  assert.deepEqual(got, generateBatch(model, prompts, { maxNewTokens: 10, temperature: 0, stopIds: [stop] }));
});

test('after the weights change, the next call generates from the new weights', () => {
  pl.manualSeed(7);
  const model = createModel(llama);
  const o = { maxNewTokens: 10, temperature: 0 };
  const first = engine(model, prompts, o);
  for (const p of model.parameters()) (p.data() as Float32Array).forEach((x, i, a) => { a[i] = x + 0.2 * Math.cos(3 * i); });
  const second = engine(model, prompts, o);
  assert.notDeepEqual(second, first);
  assert.deepEqual(second, generateBatch(model, prompts, o));
});

test('no prompt with room left: empty responses; bad prompts are errors that leave nothing behind', () => {
  const model = models.llama;
  const o = { maxNewTokens: 6, temperature: 0 };
  const want = engine(model, prompts, o);
  assert.deepEqual(engine(model, [Array.from({ length: 40 }, () => 1)], o), [[]]);
  assert.throws(() => engine(model, [[1], []], o), /prompt 1 is empty/);
  // Requests queued before the bad one are dropped with the call, not run by the next one.
  assert.throws(() => engine(model, [...prompts, [V]], o), /outside the vocabulary/);
  assert.deepEqual(engine(model, prompts, o), want);
});
