// The OpenAI-compatible HTTP server. Routes parse and validate on this thread, hand token ids to
// the engine (in a worker thread), and stream its events back as server-sent events in OpenAI's
// chunk shapes. A client that goes away aborts its requests, which frees their KV blocks.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ArgumentError } from '../errors.js';
import type { EngineEvent, EngineOptions, SamplingParams } from '../infer/index.js';
import { ADAPTER_CONFIG_FILE } from '../peft/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { EngineRejectedError, WorkerEngine, type ServingEngine } from './engine-client.js';
import { ServerMetrics } from './metrics.js';
import type { EngineStats, LoraModule } from './protocol.js';
import {
  ApiError, chatPrompt, checkBody, checkModel, completionPrompts, embeddingInputs, encodingFormat, generationSpec,
  maxTokensFor, stopTokenIds, type GenerationSpec,
} from './openai.js';

export interface ServerOptions {
  /** The engine (a WorkerEngine in production). */
  engine: ServingEngine;
  tokenizer: Tokenizer;
  generationConfig?: Record<string, unknown>;
  /** The id clients put in `model` (default 'plinth'); each LoRA adapter of the engine is served as
   *  `<modelId>:<adapter>`. */
  modelId?: string;
  /** Largest request body in bytes (default 16 MB). */
  bodyLimit?: number;
}

type Kind = 'chat' | 'completion';

/** One sequence of a request: choice `index`, engine request `id`. */
interface Choice {
  index: number;
  id: string;
  text: string;
  tokens: number;
  logprobs: TokenLogprob[];
  finishReason: string | null;
  usage: { promptTokens: number; completionTokens: number; cachedPromptTokens: number } | null;
  lastTokenAt: number;
}

interface TokenLogprob {
  token: string;
  logprob: number;
  top: { token: string; logprob: number }[];
}

/** One server-sent event; a client that went away gets nothing (its request is being aborted). */
function sse(res: ServerResponse, data: unknown): void {
  if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
}

export class PlinthServer {
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  private readonly engine: ServingEngine;
  private readonly tokenizer: Tokenizer;
  private readonly generationConfig: Record<string, unknown>;
  readonly modelId: string;
  /** Every id `model` can name → the LoRA adapter it runs with (null: the base). */
  private readonly models: Map<string, string | null>;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(o: ServerOptions) {
    this.engine = o.engine;
    this.tokenizer = o.tokenizer;
    this.generationConfig = o.generationConfig ?? {};
    this.modelId = o.modelId ?? 'plinth';
    this.models = new Map([[this.modelId, null], ...this.engine.info.adapters.map((a): [string, string] => [`${this.modelId}:${a}`, a])]);
    this.metrics = new ServerMetrics(() => this.engine.stats().catch(() => this.engine.lastStats));
    this.app = Fastify({ logger: false, bodyLimit: o.bodyLimit ?? 16 * 1024 * 1024 });
    this.routes();
  }

  private routes(): void {
    const app = this.app;
    // Count every response once it is sent, streamed ones included (hooks skip hijacked replies).
    app.addHook('onRequest', (req, reply, done) => {
      reply.raw.once('close', () => this.metrics.requests.inc({ endpoint: req.routeOptions.url ?? 'unknown', status: String(reply.raw.statusCode) }));
      done();
    });
    app.setErrorHandler((e: unknown, _req, reply) => {
      let err: ApiError;
      if (e instanceof ApiError) err = e;
      else if (e instanceof EngineRejectedError) err = new ApiError(e.kind === 'queue_full' ? 429 : e.kind === 'argument' ? 400 : 500, e.message, null, e.kind);
      else {
        // Fastify's own errors (malformed JSON, body too large, wrong content type) carry a 4xx status.
        const fe = e as { statusCode?: number; message?: string; code?: string };
        const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
        err = new ApiError(status, status === 500 ? `internal error: ${fe.message}` : fe.message ?? 'bad request', null, fe.code ?? null);
      }
      reply.code(err.status).send(err.body());
    });
    app.setNotFoundHandler((req, reply) => {
      reply.code(404).send(new ApiError(404, `no route ${req.method} ${req.url}`, null, 'unknown_url').body());
    });

    app.get('/health', async (_req, reply) => {
      if (!this.engine.alive) return reply.code(503).send(new ApiError(503, 'the engine has stopped', null, 'engine_stopped').body());
      return { status: 'ok' };
    });
    // As vLLM lists them: an adapter's parent is the base it runs on.
    app.get('/v1/models', async () => ({
      object: 'list',
      data: [...this.models].map(([id, adapter]) => ({
        id, object: 'model', created: this.created, owned_by: 'plinth', root: id, parent: adapter === null ? null : this.modelId, max_model_len: this.engine.info.maxPositions,
      })),
    }));
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.post('/v1/completions', (req, reply) => this.track(this.generate('completion', req, reply)));
    app.post('/v1/chat/completions', (req, reply) => this.track(this.generate('chat', req, reply)));
    app.post('/v1/embeddings', (req) => this.embeddings(req));
  }

  /** In-flight generations, so close() can drain them. */
  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const remove = () => this.inFlight.delete(p);
    p.then(remove, remove);
    return p;
  }

  private async embeddings(req: FastifyRequest): Promise<unknown> {
    const body = checkBody(req.body);
    const model = checkModel(body, [...this.models.keys()]);
    const format = encodingFormat(body);
    const inputs = embeddingInputs(body, this.tokenizer, this.engine.info.vocabSize, this.engine.info.maxPositions);
    const vectors = await this.engine.embed(inputs, this.models.get(model));
    this.metrics.modelRequests.inc({ model });
    const tokens = inputs.reduce((s, ids) => s + ids.length, 0);
    this.metrics.promptTokens.inc(tokens);
    return {
      object: 'list',
      model,
      data: vectors.map((v, index) => ({
        object: 'embedding',
        index,
        embedding: format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
      })),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }

  private async generate(kind: Kind, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const start = performance.now();
    const body = checkBody(req.body);
    const model = checkModel(body, [...this.models.keys()]);
    const adapter = this.models.get(model)!;
    const { vocabSize, maxPositions } = this.engine.info;
    const prompts = kind === 'chat' ? [chatPrompt(body, this.tokenizer)] : completionPrompts(body, this.tokenizer, this.generationConfig, vocabSize);
    const spec = generationSpec(body, kind, stopTokenIds(this.tokenizer, this.generationConfig, kind === 'chat'), vocabSize);
    const param = kind === 'chat' ? 'messages' : 'prompt';
    const maxTokens = prompts.map((p) => maxTokensFor(spec, p.length, maxPositions, param));

    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(Date.now() / 1000);
    const choices: Choice[] = [];
    const requests = prompts.flatMap((promptIds, p) =>
      Array.from({ length: spec.n }, (_, i) => {
        const index = p * spec.n + i;
        choices.push({ index, id: `${id}-${index}`, text: '', tokens: 0, logprobs: [], finishReason: null, usage: null, lastTokenAt: 0 });
        // Choices of one request get consecutive seeds, so n > 1 gives n different samples.
        const params: SamplingParams = { ...spec.params, maxTokens: maxTokens[p]!, seed: spec.params.seed === null ? null : spec.params.seed + i };
        return { id: `${id}-${index}`, promptIds, params, adapter };
      }),
    );

    // Streaming writes go to the raw response; it is opened only once the engine accepted every
    // sequence, so a full queue or a bad request still gets a proper status code. Events that come
    // before (one choice's first tokens while another is being added) are sent when it opens.
    const res = reply.raw;
    let open = false;
    let remaining = choices.length;
    let failure: string | null = null;
    let settle!: () => void;
    const allDone = new Promise<void>((resolve) => (settle = resolve));
    const chunk = (choice: Record<string, unknown>, usage?: unknown) => ({
      id,
      object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created,
      model,
      ...(kind === 'chat' ? { system_fingerprint: null } : {}),
      choices: [choice],
      ...(spec.includeUsage ? { usage: usage ?? null } : {}),
    });

    const onEvent = (c: Choice) => (e: EngineEvent) => {
      const now = performance.now();
      if (e.type === 'token') {
        if (c.tokens === 0) this.metrics.ttft.observe((now - start) / 1000);
        else this.metrics.itl.observe((now - c.lastTokenAt) / 1000);
        c.lastTokenAt = now;
        c.tokens++;
        const lp = e.logprob === undefined ? null : this.logprob(e.tokenId, e.logprob, e.topLogprobs ?? []);
        if (lp) c.logprobs.push(lp);
        const offset = c.text.length;
        c.text += e.text;
        if (open && (e.text !== '' || lp)) sse(res, chunk(this.delta(kind, c.index, e.text, lp ? [lp] : null, offset)));
        return;
      }
      if (e.type === 'done') {
        c.usage = e.usage;
        c.finishReason = e.finishReason;
        this.metrics.generatedTokens.inc(e.usage.completionTokens);
        if (e.finishReason === 'abort') this.metrics.aborted.inc();
        if (c.index % spec.n === 0) this.metrics.promptTokens.inc(e.usage.promptTokens);
        if (open && e.text !== '') sse(res, chunk(this.delta(kind, c.index, e.text, null, c.text.length)));
        c.text += e.text;
        if (open) sse(res, chunk(finishChoice(c)));
      } else {
        failure = e.message;
      }
      if (--remaining === 0) settle();
    };

    const finishChoice = (c: Choice) =>
      kind === 'chat' ? { index: c.index, delta: {}, logprobs: null, finish_reason: c.finishReason } : { index: c.index, text: '', logprobs: null, finish_reason: c.finishReason };
    const abortAll = () => {
      for (const c of choices) if (c.finishReason === null) this.engine.abort(c.id);
    };
    const added = await Promise.allSettled(requests.map((r, i) => this.engine.add(r, onEvent(choices[i]!))));
    const rejected = added.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected) {
      for (let i = 0; i < added.length; i++) if (added[i]!.status === 'fulfilled') this.engine.abort(choices[i]!.id);
      throw rejected.reason;
    }
    this.metrics.modelRequests.inc({ model });
    // 'close' fires when the client goes away, and also after a completed response, when there is nothing left to abort.
    res.once('close', () => {
      if (remaining > 0) abortAll();
    });

    if (spec.stream) {
      reply.hijack();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      for (const c of choices) {
        if (kind === 'chat') sse(res, chunk({ index: c.index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
        if (c.text !== '' || c.logprobs.length > 0) sse(res, chunk(this.delta(kind, c.index, c.text, spec.params.logprobs === null ? null : c.logprobs, 0)));
        if (c.finishReason !== null) sse(res, chunk(finishChoice(c)));
      }
      open = true;
      await allDone;
      open = false;
      if (failure) sse(res, new ApiError(500, `generation failed: ${failure}`).body());
      else if (spec.includeUsage) sse(res, { ...chunk({}, this.usage(choices, spec)), choices: [] });
      res.end('data: [DONE]\n\n');
      return reply;
    }
    await allDone;
    if (failure) throw new ApiError(500, `generation failed: ${failure}`);
    return {
      id,
      object: kind === 'chat' ? 'chat.completion' : 'text_completion',
      created,
      model,
      ...(kind === 'chat' ? { system_fingerprint: null } : {}),
      choices: choices.map((c) =>
        kind === 'chat'
          ? { index: c.index, message: { role: 'assistant', content: c.text }, logprobs: (spec.params.logprobs === null ? null : this.logprobsBody(kind, c.logprobs, 0)), finish_reason: c.finishReason }
          : { index: c.index, text: c.text, logprobs: (spec.params.logprobs === null ? null : this.logprobsBody(kind, c.logprobs, 0)), finish_reason: c.finishReason },
      ),
      usage: this.usage(choices, spec),
    };
  }

  private logprob(tokenId: number, logprob: number, top: { tokenId: number; text: string; logprob: number }[]): TokenLogprob {
    return { token: this.tokenizer.decode([tokenId]), logprob, top: top.map((t) => ({ token: t.text, logprob: t.logprob })) };
  }

  /** Logprobs in the endpoint's shape: chat {content: [...]}, completions the four parallel arrays. */
  private logprobsBody(kind: Kind, lps: TokenLogprob[], textOffset: number): unknown {
    if (kind === 'chat') {
      const bytes = (s: string) => Array.from(Buffer.from(s, 'utf8'));
      return {
        content: lps.map((l) => ({ token: l.token, logprob: l.logprob, bytes: bytes(l.token), top_logprobs: l.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytes(t.token) })) })),
      };
    }
    const offsets: number[] = [];
    let at = textOffset;
    for (const l of lps) {
      offsets.push(at);
      at += l.token.length;
    }
    return {
      tokens: lps.map((l) => l.token),
      token_logprobs: lps.map((l) => l.logprob),
      top_logprobs: lps.map((l) => Object.fromEntries(l.top.map((t) => [t.token, t.logprob]))),
      text_offset: offsets,
    };
  }

  private delta(kind: Kind, index: number, text: string, lps: TokenLogprob[] | null, offset: number): Record<string, unknown> {
    const logprobs = lps ? this.logprobsBody(kind, lps, offset) : null;
    return kind === 'chat' ? { index, delta: { content: text }, logprobs, finish_reason: null } : { index, text, logprobs, finish_reason: null };
  }

  /** Prompt tokens count once per prompt, whatever n is; completion tokens add up over choices. */
  private usage(choices: Choice[], spec: GenerationSpec): unknown {
    let prompt = 0;
    let cached = 0;
    let completion = 0;
    for (const c of choices) {
      const u = c.usage ?? { promptTokens: 0, completionTokens: 0, cachedPromptTokens: 0 };
      if (c.index % spec.n === 0) {
        prompt += u.promptTokens;
        cached += u.cachedPromptTokens;
      }
      completion += u.completionTokens;
    }
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } };
  }

  get contextLength(): number {
    return this.engine.info.maxPositions;
  }

  /** Engine stats as of its last step. */
  get engineStats(): EngineStats | null {
    return this.engine.lastStats;
  }

  listen(port: number, host = '127.0.0.1'): Promise<string> {
    return this.app.listen({ port, host });
  }

  /** Stops accepting connections, lets in-flight requests finish, then stops the engine. */
  async close(): Promise<void> {
    const closing = this.app.close();
    await Promise.allSettled([...this.inFlight]);
    // Keep-alive connections that went idle after close() began would hold it open until the
    // client's own timeout: close them as they go idle.
    const sweep = setInterval(() => this.app.server.closeIdleConnections(), 20);
    try {
      await closing;
    } finally {
      clearInterval(sweep);
    }
    await this.engine.close();
  }
}

export interface ServeOptions extends EngineOptions {
  modelDir: string;
  modelId?: string;
  /** PEFT adapter folders attached to the base under their names, served as `<modelId>:<name>`. */
  loras?: LoraModule[];
  /** Quantized int8 / bf16 layers compute with rounded activations (setActivationPrecision 'fast'). */
  fastActivations?: boolean;
}

/** Adapter names must be unique and usable in a model id; each folder must hold a PEFT adapter. */
function checkLoras(loras: LoraModule[]): void {
  const seen = new Set<string>();
  for (const { name, path: dir } of loras) {
    if (!/^[\w.-]+$/.test(name)) throw new ArgumentError(`LoRA adapter name '${name}' must be letters, digits, '_', '.' or '-'`);
    if (seen.has(name)) throw new ArgumentError(`LoRA adapter name '${name}' is given twice`);
    seen.add(name);
    if (!existsSync(path.join(dir, ADAPTER_CONFIG_FILE))) throw new ArgumentError(`LoRA adapter '${name}': ${dir} has no ${ADAPTER_CONFIG_FILE} (a PEFT adapter folder, as plinth finetune --lora writes)`);
  }
}

/** Loads a model folder into an engine worker and builds the server around it (not yet listening). */
export async function createServer(o: ServeOptions): Promise<PlinthServer> {
  let dir = o.modelDir;
  if (!existsSync(path.join(dir, 'config.json')) && existsSync(path.join(dir, 'checkpoint', 'config.json'))) dir = path.join(dir, 'checkpoint');
  if (!existsSync(dir)) throw new ArgumentError(`model folder ${dir} does not exist`);
  if (!existsSync(path.join(dir, 'tokenizer.json'))) throw new ArgumentError(`${dir} has no tokenizer.json: the server needs the model's tokenizer`);
  const tokenizer = loadTokenizer(dir);
  const genFile = path.join(dir, 'generation_config.json');
  const generationConfig = existsSync(genFile) ? (JSON.parse(readFileSync(genFile, 'utf8')) as Record<string, unknown>) : {};
  const engineOptions: EngineOptions = { blockSize: o.blockSize, kvCacheBytes: o.kvCacheBytes, numBlocks: o.numBlocks, maxBatchTokens: o.maxBatchTokens, maxRunning: o.maxRunning, maxWaiting: o.maxWaiting, enablePrefixCaching: o.enablePrefixCaching };
  const loras = o.loras ?? [];
  checkLoras(loras);
  const engine = await WorkerEngine.start(dir, engineOptions, loras, o.fastActivations);
  return new PlinthServer({ engine, tokenizer, generationConfig, modelId: o.modelId ?? path.basename(path.resolve(o.modelDir)) });
}
