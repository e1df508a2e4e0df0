// The contiguous KV cache: a prefill and single-token steps through the cache give the logits of
// one uncached pass over the whole sequence, for several sequences at once (B = 2), for Llama
// (rotary, grouped-query) and GPT-2 (learned positions); and with gradients on, the cache still works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';

const CONFIGS = {
  llama: {
    model_type: 'llama', vocab_size: 50, hidden_size: 32, intermediate_size: 40, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, tie_word_embeddings: false,
  },
  gpt2: { model_type: 'gpt2', vocab_size: 50, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4 },
} as const;

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const [name, config] of Object.entries(CONFIGS)) {
  for (const grad of [false, true]) {
    test(`${name}: cached prefill and steps equal one uncached pass (B = 2${grad ? ', gradients on' : ''})`, () => {
      pl.manualSeed(3);
      const model = pl.createModel({ ...config });
      const ids = [[5, 9, 1, 33, 7, 2, 48, 0], [11, 4, 4, 20, 39, 6, 13, 27]];
      const run = () => {
        const full = model.forward(pl.tensor(ids, { dtype: 'i32' })).logits; // (2, 8, V)
        const cache = model.newCache(2, 80); // one block of 80 positions per sequence: more than one chunk of keys
        const parts = [model.forward(pl.tensor(ids.map((r) => r.slice(0, 5)), { dtype: 'i32' }), { cache }).logits];
        for (let t = 5; t < 8; t++) parts.push(model.forward(pl.tensor(ids.map((r) => [r[t]]), { dtype: 'i32' }), { cache }).logits);
        assert.equal(cache.length, 8);
        return { full, cached: pl.cat(parts, 1) };
      };
      const { full, cached } = grad ? run() : pl.noGrad(run);
      assert.deepEqual(cached.shape, full.shape);
      const d = maxDiff(cached.toFloat32Array(), full.toFloat32Array());
      assert.ok(d < 1e-4, `max difference ${d}`);
    });
  }
}

test('a full contiguous cache refuses more tokens', () => {
  const model = pl.createModel({ ...CONFIGS.llama });
  pl.noGrad(() => {
    const cache = model.newCache(1, 4);
    model.forward(pl.tensor([[1, 2, 3]], { dtype: 'i32' }), { cache });
    assert.throws(() => model.forward(pl.tensor([[4, 5]], { dtype: 'i32' }), { cache }), /KV cache is full/);
  });
});
