// Continuous batching with no prefill or decode phase (vLLM v1's scheduler): every sequence knows
// how many of its tokens (prompt + generated so far) have keys and values in the pool, and each
// step hands out a token budget — one token to every sequence that is decoding, then chunks of the
// prompts still being read — so long prompts are prefilled a chunk at a time between other
// sequences' decode steps. Waiting requests are admitted while blocks, budget and seats last; when
// blocks run out, the newest running sequence is preempted: its blocks go back to the pool and it
// waits at the front of the queue, to be recomputed from its prompt and the tokens it already
// generated (its full blocks usually survive in the prefix cache). Nothing here runs a model.
import { ArgumentError } from '../errors.js';
import { adapterRoot, BlockPool, blockHash } from './block_pool.js';

export type SequenceStatus = 'waiting' | 'running' | 'finished';

/** One request's token stream and its place in the paged KV cache. */
export class Sequence {
  /** Prompt, then every generated token. */
  readonly tokens: number[];
  readonly promptLength: number;
  /** Leading tokens whose keys and values are in the pool. */
  numComputed = 0;
  /** Block of positions j·blockSize..(j+1)·blockSize−1, for each j. */
  blockTable: number[] = [];
  /** Prompt tokens served from the prefix cache at first admission. */
  cachedPromptTokens = 0;
  status: SequenceStatus = 'waiting';
  /** Times this sequence was preempted. */
  preemptions = 0;
  private admitted = false;
  /** Hashes of the full blocks of `tokens`, extended lazily. */
  private readonly hashes: string[] = [];
  /** Full blocks of the block table already offered to the prefix cache. */
  registered = 0;

  /** The LoRA adapter the sequence runs with (null: the base model). Its keys and values differ
   *  from the base's for the same tokens, so its block hashes chain from a root of their own. */
  constructor(readonly id: string, prompt: readonly number[], readonly adapter: string | null = null) {
    if (prompt.length === 0) throw new ArgumentError(`request ${id}: the prompt is empty`);
    this.tokens = Array.from(prompt);
    this.promptLength = prompt.length;
  }

  get numGenerated(): number {
    return this.tokens.length - this.promptLength;
  }

  /** Chained hash of full block i of the token stream. */
  hashOf(i: number, blockSize: number): string {
    while (this.hashes.length <= i) {
      const j = this.hashes.length;
      this.hashes.push(blockHash(j === 0 ? adapterRoot(this.adapter) : this.hashes[j - 1], this.tokens, j * blockSize, (j + 1) * blockSize));
    }
    return this.hashes[i];
  }

  /** Marks the first admission (for usage accounting). */
  markAdmitted(): boolean {
    const first = !this.admitted;
    this.admitted = true;
    return first;
  }
}

/** Tokens start..start+count−1 of `seq` run this step; `sample` when they reach its last token. */
export interface ScheduledChunk {
  seq: Sequence;
  start: number;
  count: number;
  sample: boolean;
  /** Copy-on-write: block `from` must be copied to block `to` (every layer) before this step runs. */
  copy: [from: number, to: number] | null;
}

export interface SchedulerStep {
  chunks: ScheduledChunk[];
  numTokens: number;
  /** Block copies to apply, in order, before the model runs. */
  copies: [from: number, to: number][];
  /** Sequences sent back to the waiting queue this step. */
  preempted: Sequence[];
}

export interface SchedulerOptions {
  /** Token budget per step. */
  maxBatchTokens: number;
  /** Most sequences in one step. */
  maxRunning: number;
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  preemptions = 0;

  constructor(readonly pool: BlockPool, readonly options: SchedulerOptions) {
    if (!(options.maxBatchTokens >= 1)) throw new ArgumentError(`maxBatchTokens must be at least 1, got ${options.maxBatchTokens}`);
    if (!(options.maxRunning >= 1)) throw new ArgumentError(`maxRunning must be at least 1, got ${options.maxRunning}`);
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Blocks a sequence of `tokens` tokens needs. */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.pool.blockSize);
  }

  add(seq: Sequence): void {
    seq.status = 'waiting';
    this.waiting.push(seq);
  }

  /** Plans one step: which tokens of which sequences run, in which blocks. */
  schedule(): SchedulerStep {
    let budget = this.options.maxBatchTokens;
    const chunks = new Map<Sequence, ScheduledChunk>();
    const preempted: Sequence[] = [];
    // Running sequences, oldest first: those decoding (one token) before those still prefilling.
    for (const decoding of [true, false]) {
      for (const seq of [...this.running]) {
        if (budget === 0) break;
        if (seq.status !== 'running' || chunks.has(seq)) continue;
        const remaining = seq.tokens.length - seq.numComputed;
        if ((remaining === 1) !== decoding) continue;
        const count = Math.min(remaining, budget);
        let copy: [number, number] | null | false;
        while ((copy = this.reserve(seq, count)) === false) {
          const victim = this.running[this.running.length - 1];
          if (victim === seq) break;
          const c = chunks.get(victim);
          if (c) {
            budget += c.count;
            chunks.delete(victim);
          }
          this.preempt(victim);
          preempted.push(victim);
        }
        if (copy === false) {
          // seq is the newest itself: it waits until older sequences leave room (it fits the pool
          // alone, which Engine.add checks, so it runs at the latest once it is the only one).
          this.preempt(seq);
          preempted.push(seq);
          continue;
        }
        chunks.set(seq, { seq, start: seq.numComputed, count, sample: seq.numComputed + count === seq.tokens.length, copy });
        budget -= count;
      }
    }
    // Admit waiting sequences in order while they fit, unless this step already had to preempt.
    while (preempted.length === 0 && budget > 0 && this.waiting.length > 0 && this.running.length < this.options.maxRunning) {
      const chunk = this.admit(this.waiting[0], budget);
      if (!chunk) break;
      this.waiting.shift();
      chunks.set(chunk.seq, chunk);
      budget -= chunk.count;
    }
    const list = [...chunks.values()];
    const copies = list.flatMap((c) => (c.copy ? [c.copy] : []));
    return { chunks: list, numTokens: this.options.maxBatchTokens - budget, copies, preempted };
  }

  /** After the step ran: the chunks' keys and values are in the pool; full blocks join the prefix cache. */
  commit(step: SchedulerStep): void {
    const bs = this.pool.blockSize;
    for (const c of step.chunks) {
      const seq = c.seq;
      if (seq.status !== 'running') continue;
      seq.numComputed = c.start + c.count;
      const full = Math.floor(seq.numComputed / bs);
      // Without prefix caching no block is named, so its hash is never computed.
      if (!this.pool.enablePrefixCaching) continue;
      for (; seq.registered < full; seq.registered++) {
        this.pool.register(seq.blockTable[seq.registered], seq.hashOf(seq.registered, bs));
      }
    }
  }

  /** Removes a sequence (finished or aborted) and frees its blocks. */
  finish(seq: Sequence): void {
    if (seq.status === 'finished') return;
    const queue = seq.status === 'running' ? this.running : this.waiting;
    const i = queue.indexOf(seq);
    if (i >= 0) queue.splice(i, 1);
    this.freeBlocks(seq);
    seq.status = 'finished';
  }

  private preempt(seq: Sequence): void {
    const i = this.running.indexOf(seq);
    if (i >= 0) this.running.splice(i, 1);
    this.freeBlocks(seq);
    seq.numComputed = 0;
    seq.status = 'waiting';
    seq.preemptions++;
    this.preemptions++;
    this.waiting.unshift(seq);
  }

  private freeBlocks(seq: Sequence): void {
    // Last block first: released cached blocks are evicted oldest-released first, so a prefix's
    // early blocks (the ones most likely shared) outlive its tail.
    for (let j = seq.blockTable.length - 1; j >= 0; j--) this.pool.release(seq.blockTable[j]);
    seq.blockTable = [];
    seq.registered = 0;
  }

  /** The block at `index` of seq's table is shared or cached, so writing into it needs a private copy. */
  private needsCopy(seq: Sequence, index: number): boolean {
    if (index >= seq.blockTable.length) return false;
    const b = seq.blockTable[index];
    return this.pool.refs(b) > 1 || this.pool.isCached(b);
  }

  /**
   * Blocks for tokens numComputed..numComputed+count−1 of seq: a private copy of the block the
   * first one lands in when that block is shared, plus new blocks. Returns the copy to make (or
   * null), or false (nothing taken) when the pool has too few free blocks.
   */
  private reserve(seq: Sequence, count: number): [number, number] | null | false {
    const first = Math.floor(seq.numComputed / this.pool.blockSize);
    const cow = this.needsCopy(seq, first);
    const grow = Math.max(0, this.blocksFor(seq.numComputed + count) - seq.blockTable.length);
    if (this.pool.numFree < grow + (cow ? 1 : 0)) return false;
    let copy: [number, number] | null = null;
    if (cow) {
      const to = this.pool.allocate()!;
      copy = [seq.blockTable[first], to];
      this.pool.release(seq.blockTable[first]);
      seq.blockTable[first] = to;
      // The copy is private and holds the same tokens; it is offered to the cache again when full.
      seq.registered = Math.min(seq.registered, first);
    }
    for (let j = 0; j < grow; j++) seq.blockTable.push(this.pool.allocate()!);
    return copy;
  }

  /** Admits seq with the longest cached prefix of its tokens; null when its blocks do not fit. */
  private admit(seq: Sequence, budget: number): ScheduledChunk | null {
    const bs = this.pool.blockSize;
    const n = seq.tokens.length;
    const hits: number[] = [];
    if (this.pool.enablePrefixCaching) {
      for (let i = 0; i < Math.floor(n / bs); i++) {
        const b = this.pool.lookup(seq.hashOf(i, bs));
        if (b === undefined) break;
        hits.push(b);
      }
    }
    // At least the last token is recomputed: its logits choose the next token.
    const computed = Math.min(hits.length * bs, n - 1);
    const count = Math.min(n - computed, budget);
    const cow = computed < hits.length * bs;
    const takenFromFree = hits.filter((b) => this.pool.refs(b) === 0).length;
    const need = this.blocksFor(computed + count) - hits.length + (cow ? 1 : 0);
    if (this.pool.numFree - takenFromFree < need) return null;
    for (const b of hits) this.pool.acquire(b);
    seq.blockTable = hits;
    seq.registered = hits.length;
    seq.numComputed = computed;
    if (seq.markAdmitted()) seq.cachedPromptTokens = Math.min(computed, seq.promptLength);
    const copy = this.reserve(seq, count);
    if (copy === false) throw new ArgumentError('block pool accounting is inconsistent'); // checked above
    seq.status = 'running';
    this.running.push(seq);
    return { seq, start: computed, count, sample: computed + count === n, copy };
  }
}
