// The engine with tiny random models: the fixtures' greedy ids through the paged path; many
// concurrent requests produce exactly what each produces alone (also under a pool that forces
// preemption and a budget that forces chunked prefill); aborts return every block; seeds, stop
// strings, stop ids, logprobs, incremental UTF-8 text and embeddings.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { Engine, type EngineEvent, type EngineOptions, QueueFullError, samplingParams, type SamplingParams, TextStream } from '../../src/infer/index.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import type { CausalLM } from '../../src/models/index.js';
import type { Tokenizer } from '../../src/tokenizers/index.js';
import { BACKENDS, withBackend } from '../helpers.js';

const here = path.join(import.meta.dirname, '..', '..', '..', 'test');
const fixtureRoot = path.join(here, 'fixtures', 'models');
const fixtureCases = readdirSync(fixtureRoot).filter((d) => existsSync(path.join(fixtureRoot, d, 'case.json'))).sort();

/** A tokenizer stand-in for models without one: every id decodes to "<id>". */
const idTokenizer = {
  specialId: () => undefined,
  tokenToId: () => undefined,
  decode: (ids: ArrayLike<number>) => Array.from(ids, (i) => `<${i}>`).join(''),
} as unknown as Tokenizer;

interface Result {
  ids: number[];
  text: string;
  pieces: string[];
  finishReason: string;
  events: EngineEvent[];
  usage?: { promptTokens: number; completionTokens: number; cachedPromptTokens: number };
}

interface Job {
  id: string;
  prompt: number[];
  params: SamplingParams;
}

/** Runs the jobs together through one engine; returns each job's result. */
function runAll(engine: Engine, jobs: Job[]): Map<string, Result> {
  const out = new Map<string, Result>();
  for (const j of jobs) {
    const r: Result = { ids: [], text: '', pieces: [], finishReason: '', events: [] };
    out.set(j.id, r);
    engine.add({ id: j.id, promptIds: j.prompt, params: j.params }, (e) => {
      r.events.push(e);
      if (e.type === 'token') {
        r.ids.push(e.tokenId);
        r.pieces.push(e.text);
        r.text += e.text;
      } else if (e.type === 'done') {
        r.text += e.text;
        r.finishReason = e.finishReason;
        r.usage = e.usage;
      } else {
        assert.fail(`request ${e.requestId} failed: ${e.message}`);
      }
    });
  }
  for (let i = 0; engine.hasWork; i++) {
    assert.ok(i < 5000, 'the engine makes progress');
    engine.step();
  }
  return out;
}

function alone(model: CausalLM, tokenizer: Tokenizer, job: Job): Result {
  return runAll(new Engine(model, tokenizer, { numBlocks: 64, blockSize: 4 }), [job]).get(job.id)!;
}

let tokenizer: Tokenizer;
const models: Record<string, CausalLM> = {};

before(async () => {
  const text = readFileSync(path.join(here, 'fixtures', 'data', 'tinyshakespeare.txt'), 'utf8').slice(0, 20000);
  tokenizer = await pl.trainTokenizer({ text, vocabSize: 300 });
  const V = tokenizer.vocabSize;
  pl.manualSeed(11);
  models.llama = pl.createModel({
    model_type: 'llama', vocab_size: V, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 96, initializer_range: 0.3,
  });
  models.gpt2 = pl.createModel({ model_type: 'gpt2', vocab_size: V, n_positions: 96, n_embd: 32, n_layer: 2, n_head: 4, initializer_range: 0.3 });
});

for (const name of fixtureCases) {
  for (const backend of BACKENDS) {
    test(`fixture ${name}: greedy ids through the engine on ${backend}`, () => withBackend(backend, () => {
      const dir = path.join(fixtureRoot, name);
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
      const c = JSON.parse(readFileSync(path.join(dir, 'case.json'), 'utf8')) as { generation: { prompt: number[]; n_new: number } };
      const want = Array.from(readSafetensors(path.join(dir, 'expected.safetensors')).tensors.get('greedy_ids')!.data() as Int32Array);
      const model = pl.createModel(config, { init: false });
      model.loadStateDict(readSafetensors(path.join(dir, 'model.safetensors')).tensors);
      // Small blocks and a small budget: the prompt is read in chunks across block boundaries,
      // beside another request.
      const engine = new Engine(model, idTokenizer, { numBlocks: 40, blockSize: 4, maxBatchTokens: 5 });
      const g = c.generation;
      const greedy = samplingParams({ temperature: 0, maxTokens: g.n_new, ignoreEos: true });
      const res = runAll(engine, [
        { id: 'fixture', prompt: g.prompt, params: greedy },
        { id: 'other', prompt: g.prompt.slice(0, 3).reverse(), params: samplingParams({ temperature: 1, seed: 1, maxTokens: 6 }) },
      ]);
      assert.deepEqual(res.get('fixture')!.ids, want, `${name} greedy ids`);
      assert.equal(engine.stats().blocksUsed, 0);
    }));
  }
}

/** Requests with different prompts (some sharing prefixes, some a whole number of blocks), seeds
 *  and sampling parameters. */
function jobs(): Job[] {
  const base = tokenizer.encode('First Citizen:\nBefore we proceed any further, hear me speak.');
  const other = tokenizer.encode('All:\nSpeak, speak.');
  const prompts = [
    base, base.slice(0, 8), base.slice(0, 8), [...base.slice(0, 8), ...other.slice(0, 3)], other, other.slice(0, 1),
    [...other, ...base], base.slice(0, 12), [...base.slice(0, 12), 7], base.slice(2, 19), other.slice(0, 4), base,
  ];
  const params: Partial<SamplingParams>[] = [
    { temperature: 0 }, { temperature: 1, seed: 1 }, { temperature: 1, seed: 2 }, { temperature: 0.7, topK: 20, seed: 3 },
    { temperature: 1.2, topP: 0.8, seed: 4 }, { temperature: 1, minP: 0.1, seed: 5 }, { temperature: 0, repetitionPenalty: 1.5 },
    { temperature: 1, presencePenalty: 1, frequencyPenalty: 0.5, seed: 6 }, { temperature: 0.9, topK: 5, topP: 0.9, minP: 0.05, seed: 7 },
    { temperature: 1, seed: 8, logprobs: 2 }, { temperature: 0, repetitionPenalty: 0.8, frequencyPenalty: -0.5 }, { temperature: 1, seed: 1 },
  ];
  return prompts.map((prompt, i) => ({
    id: `job${i}`, prompt, params: samplingParams({ maxTokens: 6 + ((i * 5) % 13), ignoreEos: true, ...params[i] }),
  }));
}

for (const family of ['llama', 'gpt2']) {
  for (const backend of BACKENDS) {
    test(`${family} on ${backend}: concurrent requests produce exactly what each produces alone`, () => withBackend(backend, () => {
      const model = models[family];
      const js = jobs();
      const solo = new Map(js.map((j) => [j.id, alone(model, tokenizer, j)]));
      const maxTokens = Math.max(...js.map((j) => j.prompt.length + j.params.maxTokens));
      const setups: [string, EngineOptions][] = [
        ['roomy', { numBlocks: 256, blockSize: 4 }],
        ['tiny pool, small budget', { numBlocks: Math.ceil(maxTokens / 4) + 2, blockSize: 4, maxBatchTokens: 7 }],
        ['no prefix caching, 16-token blocks', { numBlocks: 64, blockSize: 16, enablePrefixCaching: false, maxRunning: 5 }],
      ];
      for (const [what, options] of setups) {
        const engine = new Engine(model, tokenizer, options);
        // Twice through the same engine: the second round finds the first round's prompts cached.
        const together = runAll(engine, js);
        const again = runAll(engine, js.map((j) => ({ ...j, id: `${j.id}-again` })));
        for (const j of [...js, ...js.map((x) => ({ ...x, id: `${x.id}-again` }))]) {
          const a = solo.get(j.id.replace('-again', ''))!;
          const b = together.get(j.id) ?? again.get(j.id)!;
          assert.deepEqual(b.ids, a.ids, `${what}: ${j.id} ids`);
          assert.equal(b.text, a.text, `${what}: ${j.id} text`);
          assert.equal(b.finishReason, 'length');
          assert.equal(b.usage!.completionTokens, j.params.maxTokens);
          assert.equal(b.usage!.promptTokens, j.prompt.length);
        }
        const s = engine.stats();
        assert.equal(s.blocksUsed, 0, `${what}: every block returned`);
        if (what.startsWith('tiny')) assert.ok(s.preemptions > 0, 'the tiny pool forced preemption');
        const hits = [...again.values()].filter((r) => r.usage!.cachedPromptTokens > 0).length;
        if (options.enablePrefixCaching === false) assert.equal(hits, 0);
        else assert.ok(hits >= (what === 'roomy' ? js.length - 1 : 1), `${what}: the second round hits the prefix cache (${hits} of ${js.length})`);
      }
      // The repeated request with the same seed made the same text; greedy differs from sampled.
      assert.deepEqual(solo.get('job11')!.ids.slice(0, 6), alone(model, tokenizer, { ...js[11], prompt: js[0].prompt }).ids.slice(0, 6));
    }));
  }
}

test('warmup runs the largest steps on throwaway requests and leaves the engine idle, with the same results after', () => {
  const model = models.llama;
  const options = { numBlocks: 40, blockSize: 4, maxBatchTokens: 24, maxRunning: 6 };
  const warm = new Engine(model, tokenizer, options);
  const events: string[] = [];
  warm.warmup();
  const s = warm.stats();
  assert.deepEqual([s.running, s.waiting, s.blocksUsed, warm.hasWork], [0, 0, 0, false]);
  const list = jobs().slice(0, 6);
  const a = runAll(warm, list);
  const b = runAll(new Engine(model, tokenizer, options), list);
  for (const j of list) assert.deepEqual(a.get(j.id)!.ids, b.get(j.id)!.ids, `${j.id}: the same tokens with and without warmup`);
  // a busy engine refuses
  warm.add({ id: 'busy', promptIds: [1, 2, 3], params: samplingParams({ maxTokens: 2 }) }, (e) => events.push(e.type));
  assert.throws(() => warm.warmup(), /warm it up before adding any/);
  while (warm.hasWork) warm.step();
  assert.deepEqual(events, ['token', 'token', 'done']);
  // a pool too small for maxRunning sequences warms up with fewer
  const small = new Engine(model, tokenizer, { numBlocks: 3, blockSize: 4, maxBatchTokens: 24, maxRunning: 6 });
  small.warmup();
  assert.equal(small.stats().blocksUsed, 0);
});

test('100 aborted requests leave the pool as it was, and the engine keeps serving', () => {
  const model = models.llama;
  const engine = new Engine(model, tokenizer, { numBlocks: 60, blockSize: 4, maxBatchTokens: 24, maxRunning: 8 });
  const job: Job = { id: 'after', prompt: tokenizer.encode('Speak, speak.'), params: samplingParams({ temperature: 1, seed: 3, maxTokens: 8 }) };
  const first = runAll(engine, [job]).get('after')!;
  const before = engine.stats();
  const done = new Map<string, EngineEvent[]>();
  for (let i = 0; i < 100; i++) {
    const id = `a${i}`;
    done.set(id, []);
    engine.add({ id, promptIds: tokenizer.encode(`Citizen ${i}: we know't, we know't.`), params: samplingParams({ temperature: 1, seed: i, maxTokens: 30 }) },
      (e) => done.get(id)!.push(e));
  }
  for (let s = 0; s < 6; s++) engine.step();
  const mid = engine.stats();
  assert.ok(mid.running > 0 && mid.waiting > 0 && mid.blocksUsed > 0);
  for (let i = 0; i < 100; i++) engine.abort(`a${i}`);
  engine.abort('a0'); // twice, and unknown ids, are no-ops
  engine.abort('nobody');
  for (const [id, events] of done) {
    const ends = events.filter((e) => e.type === 'done');
    assert.equal(ends.length, 1, `${id} ends once`);
    assert.equal(ends[0].type === 'done' && ends[0].finishReason, 'abort');
  }
  const after = engine.stats();
  assert.equal(after.running, 0);
  assert.equal(after.waiting, 0);
  assert.equal(engine.hasWork, false);
  assert.equal(after.blocksUsed, before.blocksUsed);
  assert.equal(after.blocksUsed, 0);
  assert.deepEqual(runAll(engine, [{ ...job, id: 'again' }]).get('again')!.ids, first.ids);
});

test('same seed, same text; stop strings cut the text; stop ids end with reason stop', () => {
  const model = models.llama;
  const prompt = tokenizer.encode('First Citizen:\n');
  const params = samplingParams({ temperature: 1, seed: 42, maxTokens: 40, ignoreEos: true });
  const a = alone(model, tokenizer, { id: 'a', prompt, params });
  const b = alone(model, tokenizer, { id: 'b', prompt, params });
  const c = alone(model, tokenizer, { id: 'c', prompt, params: { ...params, seed: 43 } });
  assert.equal(a.text, b.text);
  assert.notDeepEqual(a.ids, c.ids);
  assert.equal(a.text, tokenizer.decode(a.ids), 'the streamed pieces add up to the decoded ids');
  // A stop string from the middle of the text: the output ends just before its first occurrence.
  const stop = a.text.slice(20, 23);
  const cut = alone(model, tokenizer, { id: 's', prompt, params: { ...params, stop: ['@@never', stop] } });
  assert.equal(cut.finishReason, 'stop');
  assert.equal(cut.text, a.text.slice(0, a.text.indexOf(stop)));
  assert.ok(cut.ids.length < a.ids.length);
  assert.deepEqual(cut.ids, a.ids.slice(0, cut.ids.length));
  for (const piece of cut.pieces) assert.ok(!piece.includes(stop));
  // A stop id: the request ends on it, and its text is not part of the output.
  const k = 5;
  const byId = alone(model, tokenizer, { id: 'i', prompt, params: { ...params, stopTokenIds: [a.ids[k]] } });
  const firstAt = a.ids.indexOf(a.ids[k]);
  assert.equal(byId.finishReason, 'stop');
  assert.deepEqual(byId.ids, a.ids.slice(0, firstAt + 1));
  assert.equal(byId.text, tokenizer.decode(a.ids.slice(0, firstAt)));
  assert.equal(byId.usage!.completionTokens, firstAt + 1);
  // The tokenizer's end-of-text id stops a request unless ignoreEos.
  const eos = Object.create(tokenizer, { specialId: { value: (role: string) => (role === 'eosToken' ? a.ids[k] : undefined) } }) as Tokenizer;
  const eosRun = (ignoreEos: boolean) => runAll(new Engine(model, eos, { numBlocks: 64, blockSize: 4 }), [{ id: 'e', prompt, params: { ...params, ignoreEos } }]).get('e')!;
  assert.deepEqual(eosRun(false).ids, byId.ids);
  assert.deepEqual(eosRun(true).ids, a.ids);
});

test('logprobs equal log_softmax of the logits, with the top alternatives in order', () => {
  const model = models.gpt2;
  const prompt = tokenizer.encode('Resolved. resolved.');
  const r = alone(model, tokenizer, { id: 'l', prompt, params: samplingParams({ temperature: 0.8, seed: 9, maxTokens: 5, logprobs: 3 }) });
  const seq = [...prompt];
  for (const e of r.events) {
    if (e.type !== 'token') continue;
    const logits = pl.noGrad(() => model.forward(pl.tensor([seq], { dtype: 'i32' })).logits);
    const lp = pl.logSoftmax(logits.select(1, seq.length - 1).reshape(-1)).toFloat32Array();
    assert.ok(Math.abs(e.logprob! - lp[e.tokenId]) < 1e-4, `logprob ${e.logprob} vs ${lp[e.tokenId]}`);
    const order = Array.from(lp.keys()).sort((x, y) => lp[y] - lp[x]).slice(0, 3);
    assert.deepEqual(e.topLogprobs!.map((t) => t.tokenId), order);
    e.topLogprobs!.forEach((t) => {
      assert.ok(Math.abs(t.logprob - lp[t.tokenId]) < 1e-4);
      assert.equal(t.text, tokenizer.decode([t.tokenId]));
    });
    seq.push(e.tokenId);
  }
  assert.equal(seq.length, prompt.length + 5);
});

test('text is released whole characters at a time and held while it may start a stop string', () => {
  // A byte tokenizer: id = one UTF-8 byte.
  const bytes = {
    decode: (ids: ArrayLike<number>) => new TextDecoder().decode(Uint8Array.from(Array.from(ids))),
  } as unknown as Tokenizer;
  const enc = (s: string) => Array.from(new TextEncoder().encode(s));
  const stream = new TextStream(bytes, enc('é'), ['STOP', 'ö!']);
  const pieces: string[] = [];
  let stopped = false;
  for (const id of enc('hé wörld ST 🙂 STOP tail')) {
    const out = stream.push(id);
    pieces.push(out.text);
    for (const ch of out.text) assert.notEqual(ch, '\uFFFD');
    if (out.stopped) {
      stopped = true;
      break;
    }
  }
  assert.ok(stopped);
  assert.equal(pieces.join('') + stream.flush(), 'hé wörld ST 🙂 ');
  // 'ö' alone was held (it may start 'ö!') and released with the next character.
  const i = pieces.findIndex((p) => p.includes('ö'));
  assert.ok(pieces[i].includes('ör'), `pieces: ${JSON.stringify(pieces)}`);
  const tail = new TextStream(bytes, [], ['STOP']);
  for (const id of enc('abST')) tail.push(id);
  assert.equal(tail.flush(), 'ST', 'a held prefix of a stop string is flushed at the end');
});

test('add() validates requests; embed gives unit mean-pooled final hidden states', () => {
  const model = models.llama;
  const engine = new Engine(model, tokenizer, { numBlocks: 8, blockSize: 4, maxWaiting: 2 });
  const ok = samplingParams({ maxTokens: 4 });
  const noop = () => {};
  assert.throws(() => engine.add({ id: 'x', promptIds: [], params: ok }, noop), pl.ArgumentError);
  assert.throws(() => engine.add({ id: 'x', promptIds: [tokenizer.vocabSize], params: ok }, noop), pl.ArgumentError);
  assert.throws(() => engine.add({ id: 'x', promptIds: [1], params: { ...ok, topP: 0 } }, noop), pl.ArgumentError);
  assert.throws(() => engine.add({ id: 'x', promptIds: [1], params: { ...ok, logitBias: [[tokenizer.vocabSize, 1]] } }, noop), /logit bias for token id/);
  assert.throws(() => engine.add({ id: 'x', promptIds: [1], params: { ...ok, maxTokens: 200 } }, noop), pl.ArgumentError, 'beyond the context');
  assert.throws(() => engine.add({ id: 'x', promptIds: [1], params: { ...ok, maxTokens: 40 } }, noop), pl.ArgumentError, 'beyond the KV cache');
  assert.throws(() => samplingParams({ logprobs: 21 }), pl.ArgumentError);
  engine.add({ id: 'x', promptIds: [1], params: ok }, noop);
  assert.throws(() => engine.add({ id: 'x', promptIds: [1], params: ok }, noop), pl.ArgumentError, 'duplicate id');
  engine.add({ id: 'y', promptIds: [1], params: ok }, noop);
  assert.throws(() => engine.add({ id: 'z', promptIds: [1], params: ok }, noop), QueueFullError);

  const ids = tokenizer.encode('We know\'t, we know\'t.');
  const v = engine.embed(ids);
  assert.equal(v.length, 32);
  assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5);
  const out = pl.noGrad(() => model.forward(pl.tensor([ids], { dtype: 'i32' }), { outputHiddenStates: true }));
  const normed = (model as unknown as { norm: pl.Module & { forward(x: pl.Tensor): pl.Tensor } }).norm.forward(out.hiddenStates[2]);
  const mean = pl.mean(normed.reshape(ids.length, 32), 0).toFloat32Array();
  const n = Math.hypot(...mean);
  mean.forEach((m, i) => assert.ok(Math.abs(m / n - v[i]) < 1e-5));
  assert.notDeepEqual(engine.embed(ids.slice(0, 3)), v);
});

test('a throwing event handler does not starve the other requests', () => {
  const engine = new Engine(models.gpt2, tokenizer, { numBlocks: 16, blockSize: 4 });
  const params = samplingParams({ temperature: 0, maxTokens: 3 });
  const got: number[] = [];
  engine.add({ id: 'bad', promptIds: [1, 2], params }, (e) => {
    if (e.type === 'token') throw new Error('handler bug');
  });
  engine.add({ id: 'good', promptIds: [3, 4], params }, (e) => {
    if (e.type === 'token') got.push(e.tokenId);
  });
  assert.throws(() => engine.step(), /handler bug/);
  assert.equal(got.length, 1, 'the other request got its token in the same step');
  engine.abort('bad');
  while (engine.hasWork) engine.step();
  assert.deepEqual(got, alone(models.gpt2, tokenizer, { id: 'g', prompt: [3, 4], params }).ids);
});
