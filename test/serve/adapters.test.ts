// LoRA adapters in the server, as `plinth serve --lora A=DIR --lora B=DIR` starts it: the official
// client sees the base and `base:A`, `base:B`; a request for `base:A` gives the greedy text of the
// model with A merged, beside requests for the base and B; an unknown adapter is a 400.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import * as pl from '../../src/index.js';
import { Engine, samplingParams } from '../../src/infer/index.js';
import { loadCheckpoint } from '../../src/io/index.js';
import { addAdapter, loadLoraModel, loraFactory, loraLayers, mergedModel, saveAdapter } from '../../src/peft/index.js';
import { createServer, type PlinthServer } from '../../src/serve/index.js';
import { encodePrompt, stopTokenIds } from '../../src/serve/openai.js';
import { tinyModelDir } from './fixture.js';

const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

let dir: string;
let adapterDirs: Record<'A' | 'B', string>;
let server: PlinthServer;
let base: string;
let client: OpenAI;

before(async () => {
  dir = await tinyModelDir();
  // Two adapters trained elsewhere, as PEFT folders: random B (not PEFT's zero) so they change the text.
  const { model } = loadCheckpoint(dir, { linearFactory: loraFactory() });
  pl.manualSeed(31);
  addAdapter(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] }, 'A');
  addAdapter(model, { r: 2, alpha: 4, targetModules: 'all-linear' }, 'B');
  for (const l of loraLayers(model)) for (const ad of l.adapters.values()) (ad.B.storage as Float32Array).set(pl.mul(pl.randn(ad.B.shape), 0.5).data() as Float32Array);
  const root = mkdtempSync(path.join(tmpdir(), 'plinth-adapters-'));
  adapterDirs = { A: saveAdapter(model, path.join(root, 'A'), { name: 'A' }), B: saveAdapter(model, path.join(root, 'B'), { name: 'B' }) };
  server = await createServer({ modelDir: dir, modelId: 'tiny', numBlocks: 64, loras: [{ name: 'A', path: adapterDirs.A }, { name: 'B', path: adapterDirs.B }] });
  base = await server.listen(0);
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
});

after(async () => {
  await server?.close();
});

/** The greedy text of the model with one adapter merged, run alone through an engine. */
function mergedText(adapter: 'A' | 'B', promptIds: number[], maxTokens: number, chat: boolean): string {
  const loaded = loadLoraModel(dir, adapterDirs[adapter], { name: adapter });
  const engine = new Engine(mergedModel(loaded.model), loaded.tokenizer!, { numBlocks: 32 });
  const params = samplingParams({ temperature: 0, maxTokens, ignoreEos: true, stopTokenIds: stopTokenIds(loaded.tokenizer!, loaded.generationConfig, chat) });
  let text = '';
  engine.add({ id: 'r', promptIds, params }, (e) => {
    if (e.type === 'error') assert.fail(e.message);
    text += e.text;
  });
  while (engine.hasWork) engine.step();
  return text;
}

const greedy = { temperature: 0, max_tokens: 10, ignore_eos: true } as const;

test('/v1/models lists the base and one base:NAME per adapter', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['tiny', 'tiny:A', 'tiny:B']);
  assert.equal((models.data[1] as unknown as { parent: string }).parent, 'tiny');
});

test('completions and chat for base:A give the merged model\'s greedy text, beside base and B requests', async () => {
  const complete = (model: string) => client.completions.create({ model, prompt: 'The cat', ...greedy } as OpenAI.CompletionCreateParamsNonStreaming).then((r) => r.choices[0]!.text);
  const [plain, a, b] = await Promise.all([complete('tiny'), complete('tiny:A'), complete('tiny:B')]);
  const { tokenizer, generationConfig } = loadCheckpoint(dir);
  const promptIds = encodePrompt(tokenizer!, generationConfig, 'The cat');
  assert.equal(a, mergedText('A', promptIds, 10, false));
  assert.equal(b, mergedText('B', promptIds, 10, false));
  assert.equal(new Set([plain, a, b]).size, 3, `base, A and B answer differently: ${JSON.stringify([plain, a, b])}`);

  const messages = [{ role: 'user' as const, content: 'Name a colour.' }];
  const chat = (model: string, stream = false) => client.chat.completions.create({ model, messages, ...greedy, stream } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  const [chatBase, chatA] = await Promise.all([chat('tiny'), chat('tiny:A')]);
  const chatIds = tokenizer!.applyChatTemplate(messages, { add_generation_prompt: true }).ids;
  assert.equal(chatA.choices[0]!.message.content, mergedText('A', chatIds, 10, true));
  assert.equal(chatA.model, 'tiny:A');
  assert.notEqual(chatA.choices[0]!.message.content, chatBase.choices[0]!.message.content);
});

test('embeddings through an adapter', async () => {
  const [plain, a] = await Promise.all(['tiny', 'tiny:A'].map((model) => client.embeddings.create({ model, input: 'red ball', encoding_format: 'float' })));
  assert.equal(a.model, 'tiny:A');
  assert.notDeepEqual(a.data[0]!.embedding, plain.data[0]!.embedding);
  const norm = Math.hypot(...a.data[0]!.embedding);
  assert.ok(Math.abs(norm - 1) < 1e-4);
});

test('an unknown adapter is a 400 naming the model, and the server keeps serving', async () => {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny:C', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(r.status, 400);
  const { error } = (await r.json()) as { error: { message: string; type: string; param: string; code: string } };
  assert.match(error.message, /'tiny:C' does not exist; this server has: tiny, tiny:A, tiny:B/);
  assert.deepEqual([error.type, error.param, error.code], ['invalid_request_error', 'model', 'model_not_found']);
  await assert.rejects(client.completions.create({ model: 'tiny:C', prompt: 'hi' }), (e: Error) => e instanceof OpenAI.BadRequestError);
  await assert.rejects(client.embeddings.create({ model: 'A', input: 'hi' }), (e: Error) => e instanceof OpenAI.BadRequestError);
  const ok = await client.completions.create({ model: 'tiny:B', prompt: 'still', ...greedy, max_tokens: 2 } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(ok.usage!.completion_tokens, 2);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /plinth_model_requests_total\{model="tiny:B"\} [1-9]/);
  assert.doesNotMatch(metrics, /model="tiny:C"/);
});

test('bad --lora options are named before anything loads', async () => {
  await assert.rejects(createServer({ modelDir: dir, loras: [{ name: 'A', path: dir }] }), /LoRA adapter 'A': .* has no adapter_config\.json/);
  await assert.rejects(createServer({ modelDir: dir, loras: [{ name: 'A', path: adapterDirs.A }, { name: 'A', path: adapterDirs.B }] }), /'A' is given twice/);
  await assert.rejects(createServer({ modelDir: dir, loras: [{ name: 'a:b', path: adapterDirs.A }] }), /must be letters, digits/);
  const r = spawnSync(process.execPath, [main, 'serve', '--model', dir, '--lora', 'A'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--lora must be NAME=ADAPTER_DIR, got 'A'/);
  assert.match(spawnSync(process.execPath, [main, 'serve', '--help'], { encoding: 'utf8' }).stdout, /--lora <name=dir>/);
});

test('plinth serve --lora A=DIR --lora B=DIR serves both adapters', async () => {
  const child = spawn(process.execPath, [main, 'serve', '--model', dir, '--port', '0', '--served-model-name', 'm', '--lora', `A=${adapterDirs.A}`, '--lora', `B=${adapterDirs.B}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/[^\s/]+)\/v1/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${out} ${err}`)));
  });
  assert.match(out, /adapters m:A, m:B/);
  const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
  assert.deepEqual(models.data.map((m) => m.id), ['m', 'm:A', 'm:B']);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `stdout: ${out}\nstderr: ${err}`);
});
