// The OpenAI-compatible server end to end: the official `openai` client against a real server on
// 127.0.0.1 (ephemeral port) over a tiny random model, the engine in its worker thread.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { createServer, type PlinthServer } from '../../src/serve/index.js';
import { tinyModelDir } from './fixture.js';

let server: PlinthServer;
let base: string;
let client: OpenAI;
let model: string;

before(async () => {
  const dir = await tinyModelDir();
  server = await createServer({ modelDir: dir, modelId: 'tiny', numBlocks: 64, maxBatchTokens: 256 });
  base = await server.listen(0);
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
  model = 'tiny';
});

after(async () => {
  await server.close();
});

const greedy = { temperature: 0, max_tokens: 12, ignore_eos: true } as const;

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  assert.ok(line, `metric ${name} is missing`);
  return Number(line.split(' ').pop());
}

/** Waits until the engine has nothing running or waiting. */
async function idle(): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if ((await metric('plinth_requests_running')) === 0 && (await metric('plinth_requests_waiting')) === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('the engine did not go idle');
}

describe('endpoints', () => {
  test('/health, /v1/models', async () => {
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { status: 'ok' });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['tiny']);
  });

  test('completions: plain and streamed give the same greedy text; usage counts tokens', async () => {
    const plain = await client.completions.create({ model, prompt: 'The cat', ...greedy } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(plain.object, 'text_completion');
    assert.equal(plain.choices.length, 1);
    assert.equal(plain.choices[0]!.finish_reason, 'length');
    assert.equal(plain.usage!.completion_tokens, 12);
    assert.ok(plain.usage!.prompt_tokens > 0);
    assert.equal(plain.usage!.total_tokens, plain.usage!.prompt_tokens + 12);

    const stream = await client.completions.create({ model, prompt: 'The cat', ...greedy, stream: true, stream_options: { include_usage: true } } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    const finish: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'text_completion');
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        text += c.text;
        finish.push(c.finish_reason);
      }
    }
    assert.equal(text, plain.choices[0]!.text);
    assert.equal(finish.at(-1), 'length', 'finish_reason comes last');
    assert.ok(finish.slice(0, -1).every((f) => f === null));
    assert.deepEqual(usage, plain.usage);
  });

  test('chat: plain and streamed; role delta first, finish_reason last', async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Name a colour.' }];
    const plain = await client.chat.completions.create({ model, messages, ...greedy } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(plain.object, 'chat.completion');
    assert.equal(plain.choices[0]!.message.role, 'assistant');
    assert.equal(typeof plain.choices[0]!.message.content, 'string');
    assert.equal(plain.usage!.completion_tokens, 12);

    const stream = await client.chat.completions.create({ model, messages, ...greedy, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id));
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
    const last = chunks.at(-1)!.choices[0]!;
    assert.equal(last.finish_reason, 'length');
    assert.deepEqual(last.delta, {});
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), plain.choices[0]!.message.content);
  });

  test('embeddings: unit norm, same text gives the same vector, float and base64 agree', async () => {
    const r = await client.embeddings.create({ model, input: ['red ball', 'blue sky', 'red ball'] });
    assert.equal(r.data.length, 3);
    for (const d of r.data) {
      const norm = Math.hypot(...d.embedding);
      assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    }
    assert.deepEqual(r.data[0]!.embedding, r.data[2]!.embedding);
    assert.notDeepEqual(r.data[0]!.embedding, r.data[1]!.embedding);
    assert.ok(r.usage.prompt_tokens > 0);
    const plain = await client.embeddings.create({ model, input: 'red ball', encoding_format: 'float' });
    const fromBase64 = Float32Array.from(r.data[0]!.embedding);
    assert.deepEqual(Float32Array.from(plain.data[0]!.embedding), fromBase64);
    const ids = await client.embeddings.create({ model, input: [[5, 6, 7]], encoding_format: 'float' });
    assert.equal(ids.data[0]!.embedding.length, plain.data[0]!.embedding.length);
  });

  test('stop strings end the text before the stop string, with finish_reason stop', async () => {
    const full = await client.completions.create({ model, prompt: 'Alice gave', ...greedy, max_tokens: 30 } as OpenAI.CompletionCreateParamsNonStreaming);
    const text = full.choices[0]!.text;
    // Stop at a piece of the middle of the greedy text: the output is what came before it.
    const at = Math.floor(text.length / 2);
    const stop = text.slice(at, at + 3);
    const expected = text.slice(0, text.indexOf(stop));
    for (const s of [stop, ['zzzz-never', stop]]) {
      const r = await client.completions.create({ model, prompt: 'Alice gave', ...greedy, max_tokens: 30, stop: s } as OpenAI.CompletionCreateParamsNonStreaming);
      assert.equal(r.choices[0]!.text, expected);
      assert.equal(r.choices[0]!.finish_reason, 'stop');
    }
    const stream = await client.completions.create({ model, prompt: 'Alice gave', ...greedy, max_tokens: 30, stop, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
    assert.equal(streamed, expected);
  });

  test('n > 1 gives n choices; a seed reproduces the text, whatever runs beside it', async () => {
    const ask = (seed: number, n = 1) =>
      client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Tell a story.' }], temperature: 1, max_tokens: 16, seed, n, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const r = await ask(11, 3);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    assert.equal(new Set(r.choices.map((c) => c.message.content)).size, 3, 'three different samples');
    assert.equal(r.usage!.completion_tokens, 48);
    const [a, , b] = await Promise.all([ask(42), ask(43, 2), ask(42)]);
    assert.equal(a.choices[0]!.message.content, b.choices[0]!.message.content);
    // Choice 0 of an n = 3 request with seed 11 is the single sample with seed 11.
    assert.equal((await ask(11)).choices[0]!.message.content, r.choices[0]!.message.content);
  });

  test('streamed n > 1: each choice opens with its role and ends with its finish_reason', async () => {
    const body = { model, messages: [{ role: 'user' as const, content: 'Tell a story.' }], temperature: 1, max_tokens: 10, seed: 5, n: 3, ignore_eos: true };
    const plain = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const stream = await client.chat.completions.create({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    const seen = new Map<number, { role: boolean; text: string; finish: string | null }>();
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        const s = seen.get(c.index) ?? { role: false, text: '', finish: null };
        if (c.delta.role) {
          assert.equal(s.text, '', 'role comes before content');
          s.role = true;
        }
        assert.equal(s.finish, null, 'nothing after finish_reason');
        s.text += c.delta.content ?? '';
        s.finish = c.finish_reason ?? null;
        seen.set(c.index, s);
      }
    }
    assert.deepEqual([...seen.keys()].sort(), [0, 1, 2]);
    for (const [i, s] of seen) {
      assert.ok(s.role);
      assert.equal(s.finish, 'length');
      assert.equal(s.text, plain.choices[i]!.message.content);
    }
  });

  test('logprobs: chat top_logprobs and completions integer logprobs', async () => {
    const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }], ...greedy, max_tokens: 5, logprobs: true, top_logprobs: 3 } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const content = chat.choices[0]!.logprobs!.content!;
    assert.equal(content.length, 5);
    for (const t of content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      // Greedy: the chosen token is the most likely one.
      assert.ok(Math.abs(t.top_logprobs[0]!.logprob - t.logprob) < 1e-5);
      assert.ok(t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob);
    }
    assert.equal(content.map((t) => t.token).join(''), chat.choices[0]!.message.content);
    const comp = await client.completions.create({ model, prompt: 'The dog', ...greedy, max_tokens: 4, logprobs: 2 } as OpenAI.CompletionCreateParamsNonStreaming);
    const lp = comp.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, 4);
    assert.equal(lp.token_logprobs!.length, 4);
    assert.ok(lp.top_logprobs!.every((t) => Object.keys(t).length <= 2 && Object.keys(t).length >= 1));
    assert.deepEqual(lp.text_offset![0], 0);
  });
});

describe('reliability', () => {
  const post = (route: string, body: string) => fetch(`${base}/v1/${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  test('logit_bias: +100 forces a token, zero biases change nothing; a text response_format is accepted', async () => {
    const ask = (extra: Record<string, unknown>) =>
      client.completions.create({ model, prompt: [5, 6, 7], ...greedy, max_tokens: 4, logprobs: 0, ...extra } as OpenAI.CompletionCreateParamsNonStreaming);
    const plain = await ask({});
    const forced = await ask({ logit_bias: { 42: 100 } });
    const tokens = forced.choices[0]!.logprobs!.tokens!;
    assert.equal(tokens.length, 4);
    assert.ok(tokens.every((t) => t === tokens[0]), `every token is id 42: ${JSON.stringify(tokens)}`);
    assert.notDeepEqual(tokens, plain.choices[0]!.logprobs!.tokens, 'the bias changed the text');
    const zero = await ask({ logit_bias: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [i, 0])) });
    assert.equal(zero.choices[0]!.text, plain.choices[0]!.text);
    const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], ...greedy, max_tokens: 2, response_format: { type: 'text' } });
    assert.equal(chat.usage!.completion_tokens, 2);
  });

  test('bad requests get a 400 with an OpenAI error body, and the server keeps serving', async () => {
    const long = 'The cat sat on the mat. '.repeat(60);
    const cases: [string, unknown, RegExp][] = [
      ['completions', '{"prompt": "hi", ', /JSON/i],
      ['chat/completions', { messages: 'hello' }, /messages/],
      ['chat/completions', { messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' }, /temperature/],
      ['completions', { prompt: 'hi', max_tokens: '10' }, /max_tokens/],
      ['completions', { prompt: 'hi', stop: 5 }, /stop/],
      ['completions', { model: 'gpt-4', prompt: 'hi' }, /gpt-4/],
      ['completions', { prompt: long }, /context length/],
      ['completions', { prompt: 'hi', max_tokens: 0 }, /max_tokens/],
      ['completions', { prompt: 'hi', max_tokens: 1e9 }, /context length/],
      ['chat/completions', { messages: [{ role: 'user', content: 'hi' }], n: 0 }, /'n'/],
      ['chat/completions', { messages: [{ role: 'user', content: 'hi' }], n: 1000 }, /'n'/],
      ['completions', { prompt: [[1, 2, 99999]] }, /vocabulary/],
      ['embeddings', { input: '' }, /empty/],
      ['embeddings', { input: 42 }, /input/],
      ['completions', { prompt: 'hi', logit_bias: { abc: 1 } }, /logit_bias/],
      ['completions', { prompt: 'hi', logit_bias: { 5: 101 } }, /logit_bias/],
      ['completions', { prompt: 'hi', logit_bias: { 99999: 1 } }, /logit_bias/],
      // fields the server does not implement are refused by name, not ignored
      ['chat/completions', { messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_object' } }, /response_format/],
      ['chat/completions', { messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f' } }] }, /tool/],
      ['chat/completions', { messages: [{ role: 'user', content: 'hi' }], tool_choice: 'required' }, /tool/],
      ['completions', { prompt: 'hi', echo: true }, /echo/],
      ['completions', { prompt: 'hi', suffix: 'end' }, /suffix/],
      ['completions', { prompt: 'hi', best_of: 3 }, /best_of/],
    ];
    for (const [route, body, message] of cases) {
      const r = await post(route, typeof body === 'string' ? body : JSON.stringify(body));
      const json = (await r.json()) as { error: { message: string; type: string; param: unknown; code: unknown } };
      assert.equal(r.status, 400, `${route} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(json)}`);
      assert.match(json.error.message, message);
      assert.equal(json.error.type, 'invalid_request_error');
      assert.ok('param' in json.error && 'code' in json.error);
    }
    // The official client turns it into its BadRequestError.
    await assert.rejects(client.completions.create({ model: 'nope', prompt: 'hi' }), (e: Error) => e instanceof OpenAI.BadRequestError);
    const ok = await client.completions.create({ model, prompt: 'still', ...greedy, max_tokens: 2 } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(ok.usage!.completion_tokens, 2);
    assert.equal((await fetch(`${base}/v1/nothing`)).status, 404);
  });

  test('100 aborted streams leave the KV block pool as it was', async () => {
    await idle();
    const before = await metric('plinth_kv_blocks_used');
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const controller = new AbortController();
          const stream = await client.chat.completions.create(
            { model, messages: [{ role: 'user', content: `story ${round} ${i}` }], max_tokens: 100, ignore_eos: true, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming,
            { signal: controller.signal },
          );
          // A client that goes away: abort the request and stop reading.
          let n = 0;
          for await (const chunk of stream) {
            if (chunk.choices[0]?.delta.content && ++n === 2) {
              controller.abort();
              break;
            }
          }
        }),
      );
    }
    await idle();
    assert.equal(await metric('plinth_kv_blocks_used'), before);
    // How many finish before their client's abort arrives depends on the machine's load; some never do.
    assert.ok((await metric('plinth_aborted_requests_total')) >= 1, 'streams were aborted before they finished');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /plinth_time_to_first_token_seconds_count \d+/);
    assert.match(metrics, /plinth_inter_token_latency_seconds_bucket/);
    assert.match(metrics, /plinth_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} \d+/);
    assert.ok((await metric('plinth_kv_blocks_total')) === 64);
  });
});

test('a full queue answers 429 and the server keeps serving', async () => {
  const dir = await tinyModelDir();
  const small = await createServer({ modelDir: dir, numBlocks: 64, maxRunning: 1, maxWaiting: 1 });
  try {
    const url = await small.listen(0);
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => c.completions.create({ model: small.modelId, prompt: 'Once upon', max_tokens: 100, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming)),
    );
    const outcome = results.map((r) => (r.status === 'fulfilled' ? 200 : (r.reason as { status?: number }).status)).join(',');
    const limited = results.filter((r) => r.status === 'rejected' && r.reason instanceof OpenAI.RateLimitError);
    const ok = results.filter((r) => r.status === 'fulfilled');
    // One request runs and one waits — or, when the whole burst reaches the engine before its first
    // step, one waits and the rest find the queue full: either way most of the ten get a 429.
    assert.ok(limited.length >= 1 && ok.length >= 1 && limited.length + ok.length === 10, outcome);
    const after = await c.completions.create({ model: small.modelId, prompt: 'again', max_tokens: 2 } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(after.choices.length, 1);
  } finally {
    await small.close();
  }
});
