// The scheduler with a fake "model step" and no model: a fake KV pool stores each token's id at
// its slot, and each sequence's next token is a hash of the context read back through its block
// table — so a wrong slot, block table, shared prefix or copy-on-write changes the token stream.
// Streams must equal those computed alone, under chunked prefill, preemption and prefix caching.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockPool, Scheduler, Sequence, type SchedulerStep } from '../../src/infer/index.js';

const V = 50;

/** The fake model: next token from the whole context (FNV-1a over the ids). */
function nextToken(context: ArrayLike<number>): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < context.length; i++) h = Math.imul(h ^ (context[i] + 1), 0x01000193) >>> 0;
  return h % V;
}

function alone(prompt: number[], maxNew: number): number[] {
  const toks = [...prompt];
  for (let i = 0; i < maxNew; i++) toks.push(nextToken(toks));
  return toks.slice(prompt.length);
}

class FakeEngine {
  readonly kv: Int32Array;
  readonly sched: Scheduler;
  readonly maxNew = new Map<Sequence, number>();
  readonly plans: SchedulerStep[] = [];
  readonly done: Sequence[] = [];
  corrupt = 0;

  constructor(readonly pool: BlockPool, maxBatchTokens: number, maxRunning = 64) {
    this.kv = new Int32Array(pool.numBlocks * pool.blockSize).fill(-1);
    this.sched = new Scheduler(pool, { maxBatchTokens, maxRunning });
  }

  add(id: string, prompt: number[], maxNew: number): Sequence {
    const seq = new Sequence(id, prompt);
    this.maxNew.set(seq, maxNew);
    this.sched.add(seq);
    return seq;
  }

  slot(seq: Sequence, t: number): number {
    const bs = this.pool.blockSize;
    return seq.blockTable[Math.floor(t / bs)] * bs + (t % bs);
  }

  step(): SchedulerStep {
    const plan = this.sched.schedule();
    this.plans.push(plan);
    const bs = this.pool.blockSize;
    for (const [from, to] of plan.copies) this.kv.copyWithin(to * bs, from * bs, (from + 1) * bs);
    for (const c of plan.chunks) for (let t = c.start; t < c.start + c.count; t++) this.kv[this.slot(c.seq, t)] = c.seq.tokens[t];
    this.sched.commit(plan);
    for (const c of plan.chunks) {
      if (!c.sample) continue;
      const seq = c.seq;
      const ctx = Array.from({ length: c.start + c.count }, (_, t) => this.kv[this.slot(seq, t)]);
      if (ctx.some((x, t) => x !== seq.tokens[t])) this.corrupt++;
      seq.tokens.push(nextToken(ctx));
      if (seq.numGenerated >= this.maxNew.get(seq)!) {
        this.sched.finish(seq);
        this.done.push(seq);
      }
    }
    return plan;
  }

  run(): void {
    for (let i = 0; this.sched.hasWork; i++) {
      assert.ok(i < 10000, 'the scheduler makes progress');
      this.step();
    }
  }
}

function prompts(n: number, seed: number): number[][] {
  let s = seed;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % 1000;
  return Array.from({ length: n }, () => Array.from({ length: 1 + (rnd() % 23) }, () => rnd() % V));
}

test('chunked prefill within the token budget, decode steps first', () => {
  const e = new FakeEngine(new BlockPool(64, 4), 4);
  const a = e.add('a', [1, 2], 6);
  e.step(); // a's prompt
  const b = e.add('b', Array.from({ length: 13 }, (_, i) => i % V), 3);
  const plan = e.step();
  assert.deepEqual(plan.chunks.map((c) => [c.seq.id, c.start, c.count, c.sample]), [['a', 2, 1, true], ['b', 0, 3, false]]);
  e.run();
  for (const p of e.plans) assert.ok(p.numTokens <= 4 && p.numTokens === p.chunks.reduce((n, c) => n + c.count, 0));
  assert.deepEqual(a.tokens.slice(2), alone([1, 2], 6));
  assert.deepEqual(b.tokens.slice(13), alone(b.tokens.slice(0, 13), 3));
  assert.equal(e.corrupt, 0);
  assert.equal(e.pool.stats().used, 0);
});

test('many sequences under a tiny pool: preempted and recomputed, never failed, same streams as alone', () => {
  const pool = new BlockPool(12, 4);
  const e = new FakeEngine(pool, 10);
  const ps = prompts(20, 7);
  const seqs = ps.map((p, i) => e.add(`r${i}`, p, 1 + ((i * 7) % 17)));
  e.run();
  assert.ok(e.sched.preemptions > 0, 'the pool was too small for everyone at once');
  assert.equal(e.corrupt, 0);
  seqs.forEach((s, i) => assert.deepEqual(s.tokens.slice(ps[i].length), alone(ps[i], 1 + ((i * 7) % 17)), `sequence ${i}`));
  assert.equal(e.done.length, 20);
  assert.equal(pool.stats().used, 0, 'every block returned');
  for (const p of e.plans) assert.ok(p.numTokens <= 10);
});

test('prefix caching shares full blocks by reference and survives release', () => {
  const pool = new BlockPool(32, 4);
  const e = new FakeEngine(pool, 64);
  const shared = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
  const a = e.add('a', [...shared, 1], 4);
  e.step();
  const b = e.add('b', [...shared, 2, 3], 4);
  e.step();
  assert.equal(b.cachedPromptTokens, 8, 'two full blocks of the shared prefix hit');
  assert.deepEqual(b.blockTable.slice(0, 2), a.blockTable.slice(0, 2));
  assert.equal(pool.refs(a.blockTable[0]), 2);
  e.run();
  assert.deepEqual(a.tokens.slice(11), alone([...shared, 1], 4));
  assert.deepEqual(b.tokens.slice(12), alone([...shared, 2, 3], 4));
  assert.equal(pool.stats().used, 0);
  assert.ok(pool.stats().cached >= 2, 'released prefix blocks stay cached');
  // A later request with the same prefix still hits; with caching off, nothing is shared.
  const c = e.add('c', [...shared, 4], 2);
  e.run();
  assert.equal(c.cachedPromptTokens, 8);
  const off = new FakeEngine(new BlockPool(32, 4, false), 64);
  off.add('a', [...shared, 1], 2);
  off.run();
  const d = off.add('d', [...shared, 1], 2);
  off.run();
  assert.equal(d.cachedPromptTokens, 0);
  assert.equal(e.corrupt + off.corrupt, 0);
});

test('copy-on-write when a fully cached prompt must rewrite its last token', () => {
  const pool = new BlockPool(16, 4);
  const e = new FakeEngine(pool, 64);
  const prompt = [1, 2, 3, 4, 5, 6, 7, 8]; // exactly two blocks
  const first = e.add('first', prompt, 3);
  e.run();
  const cachedLast = pool.lookup(first.hashOf(1, 4))!;
  assert.ok(cachedLast !== undefined);
  const a = e.add('a', prompt, 3);
  const b = e.add('b', prompt, 3);
  const plan = e.step();
  assert.equal(a.cachedPromptTokens, 7, 'all but the last token come from the cache');
  assert.deepEqual(plan.chunks.map((c) => [c.start, c.count]), [[7, 1], [7, 1]]);
  assert.equal(plan.copies.length, 2, 'each sequence writes into its own copy');
  for (const [from, to] of plan.copies) {
    assert.equal(from, cachedLast);
    assert.notEqual(to, cachedLast);
  }
  assert.notEqual(a.blockTable[1], b.blockTable[1]);
  assert.equal(a.blockTable[0], b.blockTable[0], 'the first block stays shared');
  assert.equal(pool.refs(a.blockTable[0]), 2);
  assert.equal(pool.lookup(first.hashOf(1, 4)), cachedLast, 'the cached block keeps its name and contents');
  e.run();
  assert.deepEqual(a.tokens.slice(8), alone(prompt, 3));
  assert.deepEqual(b.tokens.slice(8), alone(prompt, 3));
  assert.equal(e.corrupt, 0);
  assert.equal(pool.stats().used, 0);
});

test('finishing waiting and running sequences midway returns every block', () => {
  const pool = new BlockPool(10, 4);
  const e = new FakeEngine(pool, 6, 3);
  const seqs = prompts(12, 3).map((p, i) => e.add(`r${i}`, p, 20));
  e.step();
  e.step();
  assert.ok(e.sched.running.length > 0 && e.sched.waiting.length > 0);
  for (const s of seqs) e.sched.finish(s);
  assert.equal(e.sched.hasWork, false);
  assert.equal(pool.stats().used, 0);
  assert.equal(pool.stats().free, 10);
});

test('when blocks run out the newest sequence is preempted, even when it is the one that needs a block', () => {
  // Older needs a block: the newer one makes room.
  let e = new FakeEngine(new BlockPool(4, 2), 64);
  let a = e.add('a', [1, 2, 3, 4], 5);
  let b = e.add('b', [5, 6, 7, 8], 5);
  e.step();
  let plan = e.step();
  assert.deepEqual(plan.preempted, [b]);
  assert.deepEqual(plan.chunks.map((c) => c.seq), [a]);
  assert.equal(b.status, 'waiting');
  assert.equal(b.numComputed, 0);
  e.run();
  assert.deepEqual(b.tokens.slice(4), alone([5, 6, 7, 8], 5));
  // Newer needs a block: it steps back itself rather than evicting the older one.
  e = new FakeEngine(new BlockPool(4, 2), 64);
  a = e.add('a', [1, 2, 3], 5);
  b = e.add('b', [5, 6, 7, 8], 5);
  e.step();
  plan = e.step();
  assert.deepEqual(plan.preempted, [b]);
  assert.deepEqual(plan.chunks.map((c) => [c.seq.id, c.start]), [['a', 3]]);
  e.run();
  assert.deepEqual(a.tokens.slice(3), alone([1, 2, 3], 5));
  assert.deepEqual(b.tokens.slice(4), alone([5, 6, 7, 8], 5));
  assert.equal(e.corrupt, 0);
  assert.equal(e.pool.stats().used, 0);
});
