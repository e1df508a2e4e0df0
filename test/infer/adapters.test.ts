// Per-request LoRA adapters in the engine: requests for the base and for two adapters stepped
// together give exactly the greedy ids each gives alone, an adapter's ids are those of the model
// with that adapter merged, and the prefix cache never hands one adapter's blocks to another.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as pl from '../../src/index.js';
import { Engine, type EngineEvent, samplingParams } from '../../src/infer/index.js';
import type { CausalLM } from '../../src/models/index.js';
import { addAdapter, loraFactory, loraLayers, mergedModel, setAdapter } from '../../src/peft/index.js';
import type { Tokenizer } from '../../src/tokenizers/index.js';
import { BACKENDS, withBackend } from '../helpers.js';

/** A tokenizer stand-in: every id decodes to "<id>". */
const idTokenizer = {
  specialId: () => undefined,
  tokenToId: () => undefined,
  decode: (ids: ArrayLike<number>) => Array.from(ids, (i) => `<${i}>`).join(''),
} as unknown as Tokenizer;

const config = {
  model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, initializer_range: 0.3, tie_word_embeddings: false,
};

/** A tiny Llama with adapter 'a' on q/v and 'b' on v, down_proj and the output head; B is random
 *  (not PEFT's zero), so both change the outputs. The same seed builds the same model. */
function loraLlama(): CausalLM {
  pl.manualSeed(21);
  const model = pl.createModel(config, { linearFactory: loraFactory() });
  addAdapter(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] }, 'a');
  addAdapter(model, { r: 2, alpha: 4, targetModules: ['v_proj', 'down_proj', 'lm_head'] }, 'b');
  for (const l of loraLayers(model)) for (const ad of l.adapters.values()) (ad.B.storage as Float32Array).set(pl.mul(pl.randn(ad.B.shape), 0.5).data() as Float32Array);
  return model.eval();
}

/** The plain model holding W0 + (α/r)·B·A of one adapter. */
function merged(name: string): CausalLM {
  const model = loraLlama();
  setAdapter(model, name);
  return mergedModel(model);
}

interface Job {
  id: string;
  prompt: number[];
  adapter: string | null;
  maxTokens?: number;
}

interface Result {
  ids: number[];
  cached: number;
}

function runAll(engine: Engine, jobs: Job[]): Map<string, Result> {
  const out = new Map<string, Result>();
  for (const j of jobs) {
    const r: Result = { ids: [], cached: -1 };
    out.set(j.id, r);
    const params = samplingParams({ temperature: 0, maxTokens: j.maxTokens ?? 8, ignoreEos: true });
    engine.add({ id: j.id, promptIds: j.prompt, params, adapter: j.adapter }, (e: EngineEvent) => {
      if (e.type === 'token') r.ids.push(e.tokenId);
      else if (e.type === 'done') r.cached = e.usage.cachedPromptTokens;
      else assert.fail(`request ${e.requestId} failed: ${e.message}`);
    });
  }
  for (let i = 0; engine.hasWork; i++) {
    assert.ok(i < 2000, 'the engine makes progress');
    engine.step();
  }
  return out;
}

const prompts = [
  [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
  [12, 13, 14],
  [1, 2, 3, 4, 5, 6, 7, 8, 40, 41],
];

for (const backend of BACKENDS) {
  test(`${backend}: base and two adapters stepped together give what each gives alone, and an adapter what its merged model gives`, () => withBackend(backend, () => {
    const model = loraLlama();
    const adapters = [null, 'a', 'b'];
    const jobs: Job[] = prompts.flatMap((prompt, p) => adapters.map((adapter) => ({ id: `${adapter ?? 'base'}-${p}`, prompt, adapter })));
    // A small budget reads prompts in chunks beside other requests' decode steps, so steps mix
    // adapters and hold chunks that compute no logits.
    const together = runAll(new Engine(model, idTokenizer, { numBlocks: 48, blockSize: 4, maxBatchTokens: 7 }), jobs);
    const plain = { a: merged('a'), b: merged('b') };
    for (const j of jobs) {
      const alone = runAll(new Engine(model, idTokenizer, { numBlocks: 16, blockSize: 4 }), [j]).get(j.id)!;
      assert.deepEqual(together.get(j.id)!.ids, alone.ids, `${j.id}: together vs alone`);
      if (j.adapter !== null) {
        const ref = runAll(new Engine(plain[j.adapter as 'a' | 'b'], idTokenizer, { numBlocks: 16, blockSize: 4 }), [{ ...j, adapter: null }]).get(j.id)!;
        assert.deepEqual(alone.ids, ref.ids, `${j.id}: adapter vs merged model`);
      }
    }
    for (let p = 0; p < prompts.length; p++) {
      const ids = adapters.map((a) => together.get(`${a ?? 'base'}-${p}`)!.ids.join(' '));
      assert.equal(new Set(ids).size, 3, `prompt ${p}: the base and the two adapters answer differently (${ids.join(' | ')})`);
    }
  }));
}

test('the prefix cache never shares blocks between adapters', () => {
  const model = loraLlama();
  const prompt = prompts[0]; // 11 tokens: two full blocks of 4
  const solo = (adapter: string | null) => runAll(new Engine(model, idTokenizer, { numBlocks: 16, blockSize: 4 }), [{ id: 'x', prompt, adapter }]).get('x')!;
  const engine = new Engine(model, idTokenizer, { numBlocks: 16, blockSize: 4 });
  const run = (adapter: string | null) => runAll(engine, [{ id: `${adapter}`, prompt, adapter }]).get(`${adapter}`)!;
  const base = run(null);
  const a = run('a');
  assert.equal(a.cached, 0, "adapter a finds none of the base's blocks");
  assert.deepEqual(a.ids, solo('a').ids);
  const b = run('b');
  assert.equal(b.cached, 0);
  assert.deepEqual(b.ids, solo('b').ids);
  // Each still finds its own blocks.
  const again = [run(null), run('a'), run('b')];
  assert.deepEqual(again.map((r) => r.cached), [8, 8, 8]);
  assert.deepEqual(again.map((r) => r.ids), [base.ids, a.ids, b.ids]);
  assert.equal(engine.stats().blocksUsed, 0);
});

test('adapters: unknown names are rejected at add, embeddings through an adapter, an adapter left active is switched off', () => {
  const model = loraLlama();
  setAdapter(model, 'a');
  const engine = new Engine(model, idTokenizer, { numBlocks: 16, blockSize: 4 });
  assert.deepEqual(engine.adapters, ['a', 'b']);
  const params = samplingParams({ temperature: 0, maxTokens: 4 });
  assert.throws(() => engine.add({ id: 'r', promptIds: [1, 2], params, adapter: 'c' }, () => {}), (e: Error) => e instanceof pl.ArgumentError && /request r: the model has no LoRA adapter "c" \(it has 'a', 'b'\)/.test(e.message));
  assert.equal(engine.stats().waiting, 0);
  const plainEngine = new Engine(pl.createModel(config), idTokenizer, { numBlocks: 16, blockSize: 4 });
  assert.throws(() => plainEngine.add({ id: 'r', promptIds: [1, 2], params, adapter: 'a' }, () => {}), /no LoRA adapter "a" \(it has none\)/);
  assert.throws(() => engine.embed([1, 2], 'c'), /embed: the model has no LoRA adapter "c"/);
  // A request without an adapter gets the base, though 'a' was active when the engine was built.
  const base = runAll(engine, [{ id: 'base', prompt: prompts[1], adapter: null }]).get('base')!;
  const reference = runAll(new Engine(merged('a'), idTokenizer, { numBlocks: 16, blockSize: 4 }), [{ id: 'a', prompt: prompts[1], adapter: null }]).get('a')!;
  assert.notDeepEqual(base.ids, reference.ids);
  assert.deepEqual(runAll(engine, [{ id: 'a', prompt: prompts[1], adapter: 'a' }]).get('a')!.ids, reference.ids);

  // An adapter made active again after the engine was built (a LoRA policy's rollouts) applies to
  // requests that name none, whether or not other requests in the step name one.
  setAdapter(model, 'a');
  const mixed = runAll(engine, [{ id: 'x', prompt: prompts[1], adapter: null }, { id: 'b', prompt: prompts[0], adapter: 'b' }]);
  assert.deepEqual(mixed.get('x')!.ids, reference.ids);
  setAdapter(model, null);

  const ids = [3, 4, 5, 6, 7];
  const viaA = engine.embed(ids, 'a');
  assert.notDeepEqual(viaA, engine.embed(ids));
  const plainA = new Engine(merged('a'), idTokenizer, { numBlocks: 16, blockSize: 4 }).embed(ids);
  for (let i = 0; i < viaA.length; i++) assert.ok(Math.abs(viaA[i] - plainA[i]) < 1e-5, `embedding [${i}]: ${viaA[i]} vs merged ${plainA[i]}`);
});

test('GPT-2 (Conv1D layers, weights stored transposed): an adapter beside the base gives its merged model\'s ids', () => {
  const gpt2 = { model_type: 'gpt2', vocab_size: 64, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 4, initializer_range: 0.3 };
  const build = () => {
    pl.manualSeed(22);
    const model = pl.createModel(gpt2, { linearFactory: loraFactory() });
    addAdapter(model, { r: 4, alpha: 8, targetModules: ['c_attn', 'c_fc'] }, 'a');
    for (const l of loraLayers(model)) for (const ad of l.adapters.values()) (ad.B.storage as Float32Array).set(pl.mul(pl.randn(ad.B.shape), 0.5).data() as Float32Array);
    return model.eval();
  };
  const jobs: Job[] = [{ id: 'base', prompt: prompts[0], adapter: null }, { id: 'a', prompt: prompts[0], adapter: 'a' }, { id: 'a2', prompt: prompts[2], adapter: 'a' }];
  const together = runAll(new Engine(build(), idTokenizer, { numBlocks: 32, blockSize: 4, maxBatchTokens: 9 }), jobs);
  const plain = mergedModel(build());
  for (const j of jobs.slice(1)) {
    assert.deepEqual(together.get(j.id)!.ids, runAll(new Engine(plain, idTokenizer, { numBlocks: 16, blockSize: 4 }), [{ ...j, adapter: null }]).get(j.id)!.ids, j.id);
  }
  assert.notDeepEqual(together.get('a')!.ids, together.get('base')!.ids);
});
