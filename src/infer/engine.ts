// The engine: many generation requests stepped together over one paged KV cache. Each step the
// scheduler picks tokens (decode steps and prompt chunks) within a token budget; the engine packs
// them into one (1, N) batch — ids, positions, pool slots, block tables — and runs one model
// forward for all of them, so every layer's projections are one GEMM over all N tokens. Each
// sequence that reached its last token samples its next one from its own seeded stream, and its
// text is decoded incrementally, held back while it could still become a stop string.
import { freemem } from 'node:os';
import { ArgumentError, PlinthError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import type { PagedAttentionInputs } from '../nn/index.js';
import { adapterNames, type AdapterSegment, type LoRALinear, loraLayers, setAdapterSegments } from '../peft/index.js';
import { noGrad, randomInt, ScratchPool, Tensor, uniformAt } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { BlockPool, kvBytesPerBlock } from './block_pool.js';
import { Sampler, samplingParams, type SamplingParams } from './sampling.js';
import { Scheduler, Sequence, type SchedulerStep } from './scheduler.js';

export { samplingParams, type SamplingParams } from './sampling.js';

/** add() when the waiting queue is at its bound (a server answers 429). */
export class QueueFullError extends PlinthError {}

export interface GenerationRequest {
  id: string;
  promptIds: number[];
  params: SamplingParams;
  /** The LoRA adapter this request runs with (one of Engine.adapters); absent or null: the model as
   *  it is, i.e. the base (the engine switches adapters off when it is built), unless an adapter was
   *  made active on the model again since (as a LoRA policy's rollouts do). */
  adapter?: string | null;
}

export type EngineEvent =
  | {
    type: 'token'; requestId: string; tokenId: number;
    /** New text made safe to show: complete UTF-8, held back while it may be the start of a stop string. */
    text: string;
    logprob?: number;
    topLogprobs?: { tokenId: number; text: string; logprob: number }[];
  }
  | {
    type: 'done'; requestId: string; finishReason: 'stop' | 'length' | 'abort';
    /** The final flush: text held back until now. */
    text: string;
    usage: { promptTokens: number; completionTokens: number; cachedPromptTokens: number };
  }
  | { type: 'error'; requestId: string; message: string };

export interface EngineOptions {
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Memory budget for the block pool (default: 25% of free memory, at most 2 GB). */
  kvCacheBytes?: number;
  /** An exact pool size in blocks (overrides kvCacheBytes). */
  numBlocks?: number;
  /** Token budget per step (default 512). */
  maxBatchTokens?: number;
  /** Most sequences in a step (default 64). */
  maxRunning?: number;
  /** Bound of the waiting queue; add() beyond it throws QueueFullError (default unbounded). */
  maxWaiting?: number;
  /** Share full blocks between sequences with the same prefix (default true). */
  enablePrefixCaching?: boolean;
}

export interface EngineStats {
  running: number;
  waiting: number;
  blocksUsed: number;
  blocksTotal: number;
  /** Released blocks that still hold a cached prefix (reused on a hit, evicted when needed). */
  blocksCached: number;
  preemptions: number;
}

/** Tokens of the prompt decoded along with the output, so a tokenizer that drops a leading space
 *  (SentencePiece) or merges across the boundary decodes the first new token as it reads in context. */
const PROMPT_CONTEXT = 5;

/**
 * Output text built token by token (vLLM's incremental detokenization): decode a short window
 * ending at the new token and keep what it adds, only once the text no longer ends in an
 * incomplete UTF-8 character. Stop strings cut the text; text that could still become a stop
 * string is held back.
 */
export class TextStream {
  private readonly ids: number[];
  private prefixOffset = 0;
  private readOffset: number;
  private text = '';
  private emitted = 0;
  private readonly maxStop: number;

  constructor(private readonly tokenizer: Tokenizer, prompt: readonly number[], private readonly stops: readonly string[]) {
    this.ids = prompt.slice(Math.max(0, prompt.length - PROMPT_CONTEXT));
    this.readOffset = this.ids.length;
    this.maxStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  private decode(from: number, to: number): string {
    return this.tokenizer.decode(this.ids.slice(from, to), { skipSpecialTokens: true });
  }

  /** Appends a token; returns the newly safe text and whether a stop string was reached. */
  push(id: number): { text: string; stopped: boolean } {
    this.ids.push(id);
    const before = this.decode(this.prefixOffset, this.readOffset);
    const after = this.decode(this.prefixOffset, this.ids.length);
    if (after.length <= before.length || after.endsWith('\uFFFD')) return { text: '', stopped: false };
    const searchFrom = Math.max(0, this.text.length - this.maxStop + 1);
    this.text += after.slice(before.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    let safe = this.text.length;
    let stopAt = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, searchFrom);
      if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
    }
    if (stopAt >= 0) {
      this.text = this.text.slice(0, stopAt);
      safe = stopAt;
    } else {
      safe -= this.heldBack();
    }
    const out = this.text.slice(this.emitted, safe);
    this.emitted = safe;
    return { text: out, stopped: stopAt >= 0 };
  }

  /** Length of the longest end of the text that is the start of a stop string. */
  private heldBack(): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let L = Math.min(s.length - 1, this.text.length); L > hold; L--) {
        if (this.text.endsWith(s.slice(0, L))) {
          hold = L;
          break;
        }
      }
    }
    return hold;
  }

  /** Everything not yet emitted, including an incomplete character at the end (finish). */
  flush(): string {
    if (this.readOffset < this.ids.length) {
      const before = this.decode(this.prefixOffset, this.readOffset);
      this.text += this.decode(this.prefixOffset, this.ids.length).slice(before.length);
      this.readOffset = this.ids.length;
    }
    const out = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return out;
  }
}

interface Request {
  seq: Sequence;
  params: SamplingParams;
  seed: number;
  stopIds: Set<number>;
  stream: TextStream;
  onEvent: (e: EngineEvent) => void;
  adapter: string | null;
}

/** A grow-only Int32Array whose first n entries are handed out as a subarray. */
class IntBuffer {
  data = new Int32Array(64);

  reserve(n: number): Int32Array {
    if (this.data.length < n) this.data = new Int32Array(Math.max(n, 2 * this.data.length));
    return this.data;
  }
}

export class Engine {
  readonly blockSize: number;
  readonly numBlocks: number;
  private readonly pool: BlockPool;
  private readonly scheduler: Scheduler;
  private readonly kPools: Float32Array[];
  private readonly vPools: Float32Array[];
  /** Floats of one block in one layer's pool: (KVH, blockSize, D). */
  private readonly blockFloats: number;
  private readonly requests = new Map<string, Request>();
  private readonly sampler: Sampler;
  /** Storage of every step's tensors, recycled from step to step. */
  private readonly scratch = new ScratchPool();
  private readonly maxWaiting: number;
  private readonly eosIds: number[];
  /** The LoRA adapters requests can name: those the model has when the engine is built (adapterNames). */
  readonly adapters: readonly string[];
  private readonly loraLayers: LoRALinear[];
  /** LoRA layers of the output head: they see only the rows that need logits. */
  private readonly headLayers: LoRALinear[];
  /** Requests in flight that name an adapter; while none does, a step costs what it costs without LoRA. */
  private adapterRequests = 0;
  // The packed batch, reused every step.
  private readonly ids = new IntBuffer();
  private readonly positions = new IntBuffer();
  private readonly slots = new IntBuffer();
  private readonly blockTables = new IntBuffer();
  private readonly queryStart = new IntBuffer();
  private readonly contextLens = new IntBuffer();
  private readonly logitRows = new IntBuffer();

  constructor(readonly model: CausalLM, readonly tokenizer: Tokenizer, options: EngineOptions = {}) {
    this.blockSize = options.blockSize ?? 16;
    if (!Number.isInteger(this.blockSize) || this.blockSize < 1) throw new ArgumentError(`blockSize must be a positive integer, got ${options.blockSize}`);
    // The model's KV geometry, from the contiguous cache it would build.
    const geometry = model.newCache(1, 1);
    const L = geometry.layers;
    const KVH = geometry.kvHeads;
    const D = geometry.headDim;
    const perBlock = kvBytesPerBlock(L, KVH, this.blockSize, D);
    if (options.numBlocks !== undefined) {
      this.numBlocks = options.numBlocks;
    } else {
      const budget = options.kvCacheBytes ?? Math.min(0.25 * freemem(), 2 ** 31);
      if (!(budget > 0)) throw new ArgumentError(`kvCacheBytes must be positive, got ${options.kvCacheBytes}`);
      this.numBlocks = Math.floor(budget / perBlock);
    }
    if (!Number.isInteger(this.numBlocks) || this.numBlocks < 1) {
      throw new ArgumentError(`the KV cache must hold at least one block (${perBlock} bytes each); got ${this.numBlocks} blocks`);
    }
    this.blockFloats = KVH * this.blockSize * D;
    // Touched now (fill), not page by page as blocks are first written: steps keep a steady cost
    // and the process's memory is flat from the start.
    const newPool = () => new Float32Array(this.numBlocks * this.blockFloats).fill(0);
    this.kPools = Array.from({ length: L }, newPool);
    this.vPools = Array.from({ length: L }, newPool);
    this.pool = new BlockPool(this.numBlocks, this.blockSize, options.enablePrefixCaching ?? true);
    this.scheduler = new Scheduler(this.pool, { maxBatchTokens: options.maxBatchTokens ?? 512, maxRunning: options.maxRunning ?? 64 });
    this.maxWaiting = options.maxWaiting ?? Infinity;
    this.sampler = new Sampler(model.vocabSize);
    const eos = new Set<number>();
    const e = tokenizer.specialId('eosToken');
    if (e !== undefined) eos.add(e);
    const eot = tokenizer.tokenToId('<|endoftext|>');
    if (eot !== undefined) eos.add(eot);
    this.eosIds = [...eos];
    this.loraLayers = loraLayers(model);
    this.headLayers = this.loraLayers.filter((l) => l.prefix === 'lm_head');
    this.adapters = adapterNames(model);
    // A request without an adapter gets the base model, so an adapter left active on the model (as
    // loading one leaves it) is switched off; the requests choose theirs.
    for (const l of this.loraLayers) if (l.merged === null) l.setAdapter(null);
  }

  get hasWork(): boolean {
    return this.scheduler.hasWork;
  }

  stats(): EngineStats {
    const p = this.pool.stats();
    return {
      running: this.scheduler.running.length, waiting: this.scheduler.waiting.length,
      blocksUsed: p.used, blocksTotal: p.total, blocksCached: p.cached, preemptions: this.scheduler.preemptions,
    };
  }

  /**
   * Runs the largest steps the scheduler makes, once, on throwaway requests: a whole token budget
   * of prompts, then one token for each of up to maxRunning sequences. The first real requests
   * then find every step buffer and kernel scratch allocated and paged in, instead of paying for
   * it in their time to first token (vLLM's profiling run at start-up does the same). The engine
   * must be idle; it is idle again after, with every block free.
   */
  warmup(): void {
    if (this.hasWork) throw new ArgumentError('warmup: the engine has requests; warm it up before adding any');
    // each sequence: its prompt and two new tokens (the first from the prefill step, one decoded)
    const { maxBatchTokens, maxRunning } = this.scheduler.options;
    const tokens = Math.max(1, Math.min(maxBatchTokens, this.model.maxPositions - 2, this.numBlocks * this.blockSize - 2));
    let seqs = Math.max(1, Math.min(maxRunning, tokens));
    const promptLength = () => Math.max(1, Math.floor(tokens / seqs));
    while (seqs > 1 && seqs * this.scheduler.blocksFor(promptLength() + 2) > this.numBlocks) seqs--;
    const params = samplingParams({ temperature: 0, maxTokens: 2, ignoreEos: true });
    // a different prompt per sequence, so that no prefix-cache hit shrinks the first step
    for (let i = 0; i < seqs; i++) this.add({ id: `warmup-${i}`, promptIds: new Array<number>(promptLength()).fill(i % this.model.vocabSize), params }, () => {});
    while (this.hasWork) this.step();
  }

  /** Queues a request. Throws ArgumentError (bad ids or params, too long for the context or the
   *  KV cache, duplicate id) or QueueFullError. */
  add(request: GenerationRequest, onEvent: (e: EngineEvent) => void): void {
    const { id, promptIds } = request;
    if (typeof id !== 'string' || id === '') throw new ArgumentError('a request needs a non-empty string id');
    if (this.requests.has(id)) throw new ArgumentError(`request id ${id} is already in use`);
    const params = samplingParams(request.params);
    this.checkIds(promptIds, `request ${id}`);
    for (const [t] of params.logitBias) {
      if (t >= this.model.vocabSize) throw new ArgumentError(`request ${id}: logit bias for token id ${t}, outside the vocabulary [0, ${this.model.vocabSize})`);
    }
    const adapter = request.adapter ?? null;
    if (adapter !== null) this.checkAdapter(adapter, `request ${id}`);
    const total = promptIds.length + params.maxTokens;
    if (total > this.model.maxPositions) {
      throw new ArgumentError(`request ${id}: ${promptIds.length} prompt tokens + ${params.maxTokens} new tokens exceed the model's context of ${this.model.maxPositions}`);
    }
    if (this.scheduler.blocksFor(total) > this.numBlocks) {
      throw new ArgumentError(`request ${id}: ${total} tokens need ${this.scheduler.blocksFor(total)} KV blocks; the cache has ${this.numBlocks}`);
    }
    if (this.scheduler.waiting.length >= this.maxWaiting) throw new QueueFullError(`the queue is full (${this.maxWaiting} requests waiting)`);
    const seq = new Sequence(id, promptIds, adapter);
    const stopIds = new Set([...params.stopTokenIds, ...(params.ignoreEos ? [] : this.eosIds)]);
    const seed = params.seed ?? randomInt(2 ** 32);
    this.requests.set(id, { seq, params, seed, stopIds, stream: new TextStream(this.tokenizer, promptIds, params.stop), onEvent, adapter });
    if (adapter !== null) this.adapterRequests++;
    this.scheduler.add(seq);
  }

  /** Ends a request now: frees its blocks and emits done with finishReason 'abort'. Unknown ids are ignored. */
  abort(requestId: string): void {
    const r = this.requests.get(requestId);
    if (!r) return;
    this.finish(r);
    r.onEvent(this.doneEvent(r, 'abort', r.stream.flush()));
  }

  /** One scheduler step: one forward over every scheduled token, then sampling. Does nothing when idle. */
  step(): void {
    const plan = this.scheduler.schedule();
    if (plan.chunks.length === 0) return;
    for (const [from, to] of plan.copies) this.copyBlock(from, to);
    // Every tensor of the step comes from the scratch pool and goes back to it: a step allocates
    // nothing once the shapes have been seen. Events carry numbers and strings only.
    const events = this.scratch.run(() => this.compute(plan));
    // Every event is delivered even if a handler throws (the others' requests must not hang);
    // the first handler error is rethrown after.
    let failure: unknown = null;
    for (const [r, e] of events) {
      try {
        r.onEvent(e);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== null) throw failure;
  }

  /** The step's forward pass and sampling: the events to deliver. */
  private compute(plan: SchedulerStep): [Request, EngineEvent][] {
    const { inputs, paged, logitRows } = this.pack(plan);
    const lora = this.adapterRequests > 0;
    const events: [Request, EngineEvent][] = [];
    let logits: Float32Array;
    try {
      if (lora) this.adapterSegments(plan);
      logits = noGrad(() => this.model.forward(inputs, { paged, logitRows }).logits.data() as Float32Array);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const failed = plan.chunks.map((c) => this.requests.get(c.seq.id)!);
      for (const r of failed) this.finish(r);
      for (const r of failed) events.push([r, { type: 'error', requestId: r.seq.id, message }]);
      return events;
    } finally {
      if (lora) this.useAdapters(null, null);
    }
    this.scheduler.commit(plan);
    const V = this.model.vocabSize;
    const sampled = plan.chunks.filter((c) => c.sample).map((c) => this.requests.get(c.seq.id)!);
    const argmax = sampled.some((r) => Sampler.isGreedy(r.params)) ? this.sampler.argmaxRows(logits, sampled.length) : null;
    sampled.forEach((r, row) => {
      const greedy = argmax !== null && Sampler.isGreedy(r.params) ? argmax[row] : -1;
      this.emitToken(r, logits.subarray(row * V, (row + 1) * V), greedy, events);
    });
    return events;
  }

  /** Mean-pooled final hidden states (after the final norm) of one uncached pass, L2-normalised;
   *  through a LoRA adapter when one is named. */
  embed(ids: number[], adapter: string | null = null): Float32Array {
    this.checkIds(ids, 'embed');
    if (ids.length > this.model.maxPositions) throw new ArgumentError(`embed: ${ids.length} tokens exceed the model's context of ${this.model.maxPositions}`);
    if (adapter !== null) this.checkAdapter(adapter, 'embed');
    const h = noGrad(() => {
      const input = new Tensor(Int32Array.from(ids), [1, ids.length], 'i32');
      if (adapter === null) return this.model.forward(input, { outputLastHiddenState: true, logitRows: new Int32Array(0) }).lastHiddenState!;
      this.useAdapters([{ start: 0, end: ids.length, adapter }], null);
      try {
        return this.model.forward(input, { outputLastHiddenState: true, logitRows: new Int32Array(0) }).lastHiddenState!;
      } finally {
        this.useAdapters(null, null);
      }
    });
    const [, T, C] = h.shape;
    const x = h.data() as Float32Array;
    const sum = new Float64Array(C);
    for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) sum[c] += x[t * C + c];
    let norm = 0;
    for (let c = 0; c < C; c++) norm += (sum[c] / T) ** 2;
    const scale = norm > 0 ? 1 / (T * Math.sqrt(norm)) : 0;
    return Float32Array.from(sum, (s) => s * scale);
  }

  private checkIds(ids: unknown, what: string): asserts ids is number[] {
    if (!Array.isArray(ids) || ids.length === 0) throw new ArgumentError(`${what}: the prompt must be a non-empty list of token ids`);
    const V = this.model.vocabSize;
    for (const t of ids) {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new ArgumentError(`${what}: token id ${t} is outside the vocabulary [0, ${V})`);
    }
  }

  private checkAdapter(name: unknown, what: string): void {
    if (typeof name !== 'string' || !this.adapters.includes(name)) {
      const have = this.adapters.length > 0 ? `it has ${this.adapters.map((a) => `'${a}'`).join(', ')}` : 'it has none';
      throw new ArgumentError(`${what}: the model has no LoRA adapter ${JSON.stringify(name)} (${have})`);
    }
    const merged = this.loraLayers.find((l) => l.merged !== null);
    if (merged) throw new ArgumentError(`${what}: adapter '${merged.merged}' is merged into the model's weights; unmerge it to run adapters per request`);
  }

  /** Adapter segments for the packed rows of every LoRA layer, and for the output head's rows (the
   *  sampled ones); null goes back to the model's active adapter. */
  private useAdapters(rows: AdapterSegment[] | null, heads: AdapterSegment[] | null): void {
    setAdapterSegments(this.model, rows);
    for (const l of this.headLayers) l.setSegments(heads);
  }

  /** Each chunk's rows through its request's adapter; neighbouring chunks of one adapter share a segment. */
  private adapterSegments(plan: SchedulerStep): void {
    const rows: AdapterSegment[] = [];
    const heads: AdapterSegment[] = [];
    const extend = (segments: AdapterSegment[], start: number, end: number, adapter: string | null) => {
      const last = segments.at(-1);
      if (last && last.adapter === adapter) last.end = end;
      else segments.push({ start, end, adapter });
    };
    // Requests that name no adapter see the model as it is, as they do in steps without adapters.
    const active = this.loraLayers.find((l) => l.active !== null)?.active ?? null;
    let n = 0;
    let h = 0;
    for (const c of plan.chunks) {
      const adapter = this.requests.get(c.seq.id)!.adapter ?? active;
      extend(rows, n, n + c.count, adapter);
      n += c.count;
      if (c.sample) {
        extend(heads, h, h + 1, adapter);
        h++;
      }
    }
    // A step whose chunks all stop short of their last token computes no logits: the head sees no rows.
    this.useAdapters(rows, heads.length > 0 ? heads : null);
  }

  /** Block `from` → block `to` in every layer's key and value pools (copy-on-write). */
  private copyBlock(from: number, to: number): void {
    const n = this.blockFloats;
    for (const pool of [...this.kPools, ...this.vPools]) pool.copyWithin(to * n, from * n, (from + 1) * n);
  }

  /** The step's tokens packed back to back, with their positions, slots and block tables. */
  private pack(plan: SchedulerStep): { inputs: Tensor; paged: PagedAttentionInputs; logitRows: Int32Array } {
    const bs = this.blockSize;
    const N = plan.numTokens;
    const S = plan.chunks.length;
    let maxBlocks = 1;
    for (const c of plan.chunks) maxBlocks = Math.max(maxBlocks, c.seq.blockTable.length);
    const ids = this.ids.reserve(N);
    const positions = this.positions.reserve(N);
    const slots = this.slots.reserve(N);
    const tables = this.blockTables.reserve(S * maxBlocks);
    const queryStart = this.queryStart.reserve(S + 1);
    const contextLens = this.contextLens.reserve(S);
    const logitRows = this.logitRows.reserve(S);
    let n = 0;
    let rows = 0;
    plan.chunks.forEach((c, s) => {
      const { tokens, blockTable } = c.seq;
      queryStart[s] = n;
      contextLens[s] = c.start + c.count;
      for (let t = c.start; t < c.start + c.count; t++, n++) {
        ids[n] = tokens[t];
        positions[n] = t;
        slots[n] = blockTable[Math.floor(t / bs)] * bs + (t % bs);
      }
      for (let j = 0; j < maxBlocks; j++) tables[s * maxBlocks + j] = j < blockTable.length ? blockTable[j] : 0;
      if (c.sample) logitRows[rows++] = n - 1;
    });
    queryStart[S] = n;
    return {
      inputs: new Tensor(ids.subarray(0, N), [1, N], 'i32'),
      paged: {
        kPools: this.kPools, vPools: this.vPools, numBlocks: this.numBlocks, blockSize: bs,
        positions: positions.subarray(0, N), slots: slots.subarray(0, N),
        blockTables: tables.subarray(0, S * maxBlocks), maxBlocks,
        queryStart: queryStart.subarray(0, S + 1), contextLens: contextLens.subarray(0, S),
      },
      logitRows: logitRows.subarray(0, rows),
    };
  }

  /** Samples r's next token from its logits row (or takes `greedy`, its argmax, when >= 0), updates
   *  its text, and queues its events. */
  private emitToken(r: Request, logits: Float32Array, greedy: number, events: [Request, EngineEvent][]): void {
    const { seq, params } = r;
    const u = params.temperature === 0 ? 0 : uniformAt(r.seed, seq.numGenerated);
    const token = greedy >= 0 ? greedy : this.sampler.sample(logits, params, seq.tokens, seq.promptLength, u);
    seq.tokens.push(token);
    const event: EngineEvent & { type: 'token' } = { type: 'token', requestId: seq.id, tokenId: token, text: '' };
    if (params.logprobs !== null) {
      const lp = this.sampler.logprobsOf(logits, token, params.logprobs);
      event.logprob = lp.logprob;
      event.topLogprobs = lp.top.map((t) => ({ ...t, text: this.tokenizer.decode([t.tokenId]) }));
    }
    let finish: 'stop' | 'length' | null = null;
    if (r.stopIds.has(token)) {
      finish = 'stop';
    } else {
      const out = r.stream.push(token);
      event.text = out.text;
      if (out.stopped) finish = 'stop';
    }
    if (!finish && (seq.numGenerated >= params.maxTokens || seq.tokens.length >= this.model.maxPositions)) finish = 'length';
    events.push([r, event]);
    if (finish) {
      this.finish(r);
      events.push([r, this.doneEvent(r, finish, r.stream.flush())]);
    }
  }

  private finish(r: Request): void {
    this.scheduler.finish(r.seq);
    if (this.requests.delete(r.seq.id) && r.adapter !== null) this.adapterRequests--;
  }

  private doneEvent(r: Request, finishReason: 'stop' | 'length' | 'abort', text: string): EngineEvent {
    const { seq } = r;
    return {
      type: 'done', requestId: seq.id, finishReason, text,
      usage: { promptTokens: seq.promptLength, completionTokens: seq.numGenerated, cachedPromptTokens: seq.cachedPromptTokens },
    };
  }
}
