// The paged KV-cache kernels (pagedKVWrite, pagedAttention): the native kernels against the ref
// kernels on random batches — odd block sizes, every group size H/KVH, odd head dimensions, prime
// context lengths, decode and prefill rows mixed in one call, block tables in shuffled order, blocks
// shared between sequences, more heads per group than one work item holds, single long sequences
// that the native kernel splits across threads — on every instruction-set path; and on every
// backend, paged attention over a pool scattered from contiguous keys and values equals the
// contiguous `attention` kernel on them. Pool slots no sequence has written hold NaN, so reading
// one shows up in the output. Bad block ids, lengths and sizes throw.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { refBackend as R } from '../../src/backend/ref/index.js';
import { createNativeBackend, loadAddon } from '../../src/backend/native/index.js';
import { uniformAt } from '../../src/backend/random.js';
import type { Backend } from '../../src/backend/backend.js';
import { assertClose } from '../helpers.js';

const addon = loadAddon();
const native = addon ? (createNativeBackend(addon) as Backend) : null;
// Set in the child processes that rerun the native checks on a capped instruction set.
const ISA_CHILD = process.env.PLINTH_PAGED_ISA_CHILD === '1';

/** n uniform numbers in [lo, hi) from stream `seed`, as float32. */
function rand32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * uniformAt(seed, i);
  return out;
}

/** A permutation of 0..n−1 from stream `seed` (Fisher–Yates). */
function shuffled(n: number, seed: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(uniformAt(seed, i) * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** A sequence of a batch: its last nq of ctx tokens are queries; optionally its first
 *  `shareBlocks` blocks are those of sequence `shareWith` (a shared prefix). */
interface Seq { nq: number; ctx: number; shareWith?: number; shareBlocks?: number }
interface Case { name: string; H: number; KVH: number; D: number; bs: number; seqs: Seq[]; firstRow?: number }

interface Batch {
  q: Float32Array; kPool: Float32Array; vPool: Float32Array;
  blockTables: Int32Array; queryStart: Int32Array; contextLens: Int32Array;
  S: number; H: number; KVH: number; D: number; bs: number; maxBlocks: number; numBlocks: number; scale: number;
}

/** A pool with the sequences' blocks at shuffled ids (plus spare blocks no one uses), every slot
 *  a sequence holds filled with random keys and values, every other slot NaN. */
function makeBatch(c: Case, seed: number): Batch {
  const { H, KVH, D, bs, seqs } = c;
  const S = seqs.length;
  const nblocks = seqs.map((s) => Math.ceil(s.ctx / bs));
  const maxBlocks = Math.max(1, ...nblocks) + 1; // a spare table entry, −1, never read
  const numBlocks = nblocks.reduce((a, b) => a + b, 0) + 3;
  const ids = shuffled(numBlocks, seed);
  const blockTables = new Int32Array(S * maxBlocks).fill(-1);
  let next = 0;
  seqs.forEach((s, i) => {
    for (let b = 0; b < nblocks[i]; b++) {
      const shared = s.shareWith !== undefined && b < (s.shareBlocks ?? 0);
      blockTables[i * maxBlocks + b] = shared ? blockTables[s.shareWith! * maxBlocks + b] : ids[next++];
    }
  });
  const kPool = new Float32Array(numBlocks * KVH * bs * D).fill(NaN);
  const vPool = new Float32Array(kPool.length).fill(NaN);
  // scores of a few units, as in a trained model, so the softmax is neither flat nor one-hot
  const kv = rand32(2 * kPool.length, seed + 1, -2, 2);
  seqs.forEach((s, i) => {
    for (let pos = 0; pos < s.ctx; pos++) {
      const block = blockTables[i * maxBlocks + Math.floor(pos / bs)];
      for (let kh = 0; kh < KVH; kh++) {
        const o = ((block * KVH + kh) * bs + (pos % bs)) * D; // pools are (numBlocks, KVH, bs, D)
        if (!Number.isNaN(kPool[o])) continue; // written by the sequence it shares the block with
        kPool.set(kv.subarray(o, o + D), o);
        vPool.set(kv.subarray(kPool.length + o, kPool.length + o + D), o);
      }
    }
  });
  const queryStart = new Int32Array(S + 1);
  queryStart[0] = c.firstRow ?? 0;
  seqs.forEach((s, i) => (queryStart[i + 1] = queryStart[i] + s.nq));
  return {
    q: rand32(queryStart[S] * H * D, seed + 2, -2, 2), kPool, vPool, blockTables, queryStart,
    contextLens: Int32Array.from(seqs, (s) => s.ctx), S, H, KVH, D, bs, maxBlocks, numBlocks, scale: 1 / Math.sqrt(D),
  };
}

/** out (N, H, D) of pagedAttention on backend K; rows it does not own keep their 7s. */
function runPaged(K: Pick<Backend, 'pagedAttention'>, b: Batch): Float32Array {
  const out = new Float32Array(b.q.length).fill(7);
  K.pagedAttention(b.q, b.kPool, b.vPool, out, b.blockTables, b.queryStart, b.contextLens,
    b.S, b.H, b.KVH, b.D, b.bs, b.maxBlocks, b.numBlocks, b.scale);
  return out;
}

const decode = (...ctx: number[]): Seq[] => ctx.map((c) => ({ nq: 1, ctx: c }));

// Block sizes 3, 4, 5 and 16 put block edges everywhere in a 64-key chunk; D = 8, 24, 40 and 80
// leave partial SIMD vectors; group sizes 1, 2, 4, 8 and 72 (more than the 64 rows of one work
// item). Prefill chunks of 70 and 67 rows take several query tiles, the last with few rows (the
// dot-product path), and a one-sequence, one-kv-head decode is a single work item, which the
// native kernel splits over the threads and merges.
const CASES: Case[] = [
  { name: 'decode batch, prime contexts, GQA 8/4, D 64', H: 8, KVH: 4, D: 64, bs: 16, seqs: decode(1, 2, 17, 31, 97, 257) },
  {
    name: 'prompt, decode and prefill chunk, block size 3, MQA 2/1, D 24', H: 2, KVH: 1, D: 24, bs: 3,
    seqs: [{ nq: 37, ctx: 37 }, { nq: 1, ctx: 41 }, { nq: 13, ctx: 53 }],
  },
  {
    name: 'mixed batch with a shared prefix, GQA 4/2, D 8', H: 4, KVH: 2, D: 8, bs: 16,
    seqs: [{ nq: 70, ctx: 70 }, { nq: 1, ctx: 131 }, { nq: 5, ctx: 29, shareWith: 0, shareBlocks: 1 }, { nq: 1, ctx: 83, shareWith: 0, shareBlocks: 4 }],
  },
  { name: 'one long decode in one work item, GQA 8/1, D 128', H: 8, KVH: 1, D: 128, bs: 16, seqs: [{ nq: 1, ctx: 509 }, { nq: 3, ctx: 200 }] },
  { name: 'multi-head 4/4, block size 5, D 40, a 67-row chunk', H: 4, KVH: 4, D: 40, bs: 5, seqs: [{ nq: 67, ctx: 101 }, { nq: 1, ctx: 1 }] },
  { name: 'single decode over 1031 keys, 2/1, D 80', H: 2, KVH: 1, D: 80, bs: 16, seqs: decode(1031) },
  { name: '72 heads per kv head, block size 4, D 8', H: 72, KVH: 1, D: 8, bs: 4, seqs: [{ nq: 1, ctx: 11 }, { nq: 2, ctx: 9 }] },
  {
    name: 'rows before queryStart[0] and a sequence with no queries stay untouched, GQA 8/2, D 16', H: 8, KVH: 2, D: 16, bs: 4, firstRow: 2,
    seqs: [{ nq: 3, ctx: 7 }, { nq: 0, ctx: 5 }, { nq: 1, ctx: 13 }],
  },
];

/** Largest |x| over finite entries, at least 1: the scale of an absolute tolerance. */
function magnitude(a: ArrayLike<number>): number {
  let m = 1;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i])) m = Math.max(m, Math.abs(a[i]));
  return m;
}

// The native tests exist only where the addon is built; each capped instruction set reruns this
// file in a child process, whose own run asserts everything but the spawning.
if (native) describe('native paged kernels against ref', () => {
  test('the native addon provides pagedKVWrite and pagedAttention for f32', () => {
    assert.ok(native.supports('pagedKVWrite', 'f32') && native.supports('pagedAttention', 'f32'));
    if (ISA_CHILD && process.env.PLINTH_ISA === 'avx2') assert.equal(addon!.cpu.avx512f, false);
    if (ISA_CHILD && process.env.PLINTH_ISA === 'scalar') assert.equal(addon!.cpu.avx2fma, false);
  });

  for (const [ci, c] of CASES.entries()) {
    test(`pagedAttention: ${c.name}`, () => {
      const b = makeBatch(c, 100 + 10 * ci);
      const want = runPaged(R, b);
      const got = runPaged(native, b);
      for (let i = 0; i < want.length; i++) assert.ok(Number.isFinite(want[i]), 'ref read an unwritten slot');
      // native accumulates in float32 (over D, over the keys), ref in double
      assertClose(got, want, 1e-5 * magnitude(want), 'out');
    });
  }

  test('pagedKVWrite writes the same pools as ref, skipping slots < 0', () => {
    const N = 29, KVH = 3, D = 24, bs = 5, numBlocks = 9;
    const k = rand32(N * KVH * D, 1), v = rand32(N * KVH * D, 2);
    const slots = Int32Array.from(shuffled(numBlocks * bs, 3).slice(0, N));
    slots[4] = -1;
    slots[17] = -7;
    const pools = (K: Backend) => {
      const kp = new Float32Array(numBlocks * KVH * bs * D).fill(5), vp = kp.slice();
      K.pagedKVWrite(k, v, kp, vp, slots, N, KVH, D, bs, numBlocks);
      return [kp, vp];
    };
    const [wk, wv] = pools(R), [gk, gv] = pools(native);
    assert.deepEqual(gk, wk);
    assert.deepEqual(gv, wv);
    // a prefill-sized write takes the threaded path
    const M = 700, kl = rand32(M * 4 * 64, 4), vl = rand32(M * 4 * 64, 5);
    const sl = Int32Array.from(shuffled(50 * 16, 6).slice(0, M));
    const big = (K: Backend) => {
      const kp = new Float32Array(50 * 4 * 16 * 64), vp = kp.slice();
      K.pagedKVWrite(kl, vl, kp, vp, sl, M, 4, 64, 16, 50);
      return [kp, vp];
    };
    assert.deepEqual(big(native), big(R));
  });

  test('bad arguments throw instead of touching memory', () => {
    const b = makeBatch({ name: '', H: 4, KVH: 2, D: 8, bs: 4, seqs: [{ nq: 2, ctx: 9 }, { nq: 1, ctx: 5 }] }, 7);
    const call = (over: Partial<Batch>, out = new Float32Array(b.q.length)) => {
      const x = { ...b, ...over };
      native.pagedAttention(x.q, x.kPool, x.vPool, out, x.blockTables, x.queryStart, x.contextLens,
        x.S, x.H, x.KVH, x.D, x.bs, x.maxBlocks, x.numBlocks, x.scale);
    };
    call({}); // the unmodified batch is fine
    const table = (i: number, id: number) => { const t = b.blockTables.slice(); t[i] = id; return t; };
    const bad: [string, Partial<Batch>][] = [
      ['a block id past the pool', { blockTables: table(1, b.numBlocks) }],
      ['a negative block id', { blockTables: table(b.maxBlocks, -1) }],
      ['more query rows than context', { contextLens: Int32Array.of(1, 5) }],
      ['a negative context', { contextLens: Int32Array.of(9, -1) }],
      ['a context past maxBlocks·blockSize', { contextLens: Int32Array.of(9, b.maxBlocks * 4 + 1) }],
      ['queryStart decreasing', { queryStart: Int32Array.of(0, 2, 1) }],
      ['a negative queryStart', { queryStart: Int32Array.of(-1, 2, 3) }],
      ['queryStart too short', { queryStart: Int32Array.of(0, 2) }],
      ['contextLens too short', { contextLens: Int32Array.of(9) }],
      ['blockTables too short', { blockTables: b.blockTables.subarray(0, b.maxBlocks + 1) }],
      ['q too short', { q: b.q.subarray(0, b.q.length - 1) }],
      ['a pool too short', { vPool: b.vPool.subarray(1) }],
      ['H not a multiple of KVH', { H: 3 }],
      ['block size 0', { bs: 0 }],
      ['a negative size', { D: -8 }],
      ['a non-finite scale', { scale: NaN }],
    ];
    call({ blockTables: table(3, 12345) }); // an entry past the context (9 keys in 3 blocks of 4) is not read
    const untouched = new Float32Array(b.q.length).fill(3);
    call({ S: 0, queryStart: Int32Array.of(2) }, untouched); // no sequences: rows before queryStart[0] only
    assert.ok(untouched.every((x) => x === 3));
    for (const [what, over] of bad) {
      const out = new Float32Array(b.q.length).fill(3);
      assert.throws(() => call(over, out), /pagedAttention/, what);
      assert.ok(out.every((x) => x === 3), `${what}: out was written`);
    }
    assert.throws(() => call({}, new Float32Array(b.q.length - 1)), /out/);
    assert.throws(() => native.pagedAttention(b.q, b.kPool, b.vPool, new Float32Array(b.q.length), b.blockTables,
      b.queryStart, b.contextLens, b.S, b.H, b.KVH, b.D, b.bs, b.maxBlocks, b.numBlocks, 'x' as unknown as number));

    const kp = new Float32Array(2 * 1 * 4 * 8).fill(5), vp = kp.slice();
    const k = rand32(3 * 8, 1), v = rand32(3 * 8, 2);
    assert.throws(() => native.pagedKVWrite(k, v, kp, vp, Int32Array.of(0, 8, 3), 3, 1, 8, 4, 2), /outside the pool/);
    assert.ok(kp.every((x) => x === 5) && vp.every((x) => x === 5), 'a rejected write left the pools as they were');
    assert.throws(() => native.pagedKVWrite(k, v, kp, vp, Int32Array.of(0, 1), 3, 1, 8, 4, 2), /slots/);
    assert.throws(() => native.pagedKVWrite(k.subarray(1), v, kp, vp, Int32Array.of(0, 1, 2), 3, 1, 8, 4, 2), /k needs/);
    assert.throws(() => native.pagedKVWrite(k, v, kp.subarray(1), vp, Int32Array.of(0, 1, 2), 3, 1, 8, 4, 2), /kPool/);
    assert.throws(() => native.pagedKVWrite(k, v, kp, vp, Int32Array.of(0, 1, 2), 3, 1, 8, 0, 2), /blockSize/);
  });
});

// The capped instruction sets, and three threads on the best one: three parts put a part wholly
// inside a long item, so the split-K merge meets pieces with an unused slot between them. One
// scalar thread takes the unsplit path.
if (native && !ISA_CHILD) describe('native paged kernels on every instruction set', () => {
  for (const [isa, threads] of [['avx2', ''], ['scalar', '1'], ['', '3']]) {
    test(`${isa ? `PLINTH_ISA=${isa}` : 'best ISA'}${threads ? ` PLINTH_THREADS=${threads}` : ''}`, async () => {
      const env: NodeJS.ProcessEnv = { ...process.env, PLINTH_PAGED_ISA_CHILD: '1' };
      if (isa) env.PLINTH_ISA = isa;
      if (threads) env.PLINTH_THREADS = threads;
      delete env.NODE_TEST_CONTEXT; // the child reports on its own, not to this runner
      const r = await new Promise<{ status: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { env });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        child.on('close', (status) => resolve({ status, out }));
      });
      assert.equal(r.status, 0, `the native checks failed with ${isa || 'the best ISA'}, ${threads || 'default'} threads:\n${r.out}`);
    });
  }
});

// ---- every backend ----------------------------------------------------------------------------

const BACKENDS: [string, Backend][] = ISA_CHILD ? [] : [['ref', R as Backend]];
if (native && !ISA_CHILD) BACKENDS.push(['native', native]);

interface Contiguous { B: number; H: number; KVH: number; T: number; Tq: number; D: number; bs: number }

for (const [who, K] of BACKENDS) {
  describe(`${who}: paged attention equals contiguous attention`, () => {
    const CONTIGUOUS: Contiguous[] = [
      { B: 2, H: 8, KVH: 4, T: 45, Tq: 1, D: 16, bs: 4 },
      { B: 3, H: 4, KVH: 2, T: 37, Tq: 7, D: 24, bs: 16 },
      { B: 1, H: 8, KVH: 2, T: 70, Tq: 70, D: 8, bs: 3 },
      { B: 2, H: 2, KVH: 2, T: 23, Tq: 23, D: 32, bs: 5 },
    ];
    for (const [ci, c] of CONTIGUOUS.entries()) {
      test(`B=${c.B} H=${c.H}/${c.KVH} T=${c.T} Tq=${c.Tq} D=${c.D} blockSize=${c.bs}`, () => {
        const { B, H, KVH, T, Tq, D, bs } = c;
        const q = rand32(B * H * Tq * D, 50 + ci, -2, 2); // (B, H, Tq, D): the last Tq positions
        const k = rand32(B * KVH * T * D, 60 + ci, -2, 2), v = rand32(B * KVH * T * D, 70 + ci); // (B, KVH, T, D)
        const scale = 1 / Math.sqrt(D);
        const want = new Float32Array(q.length), lse = new Float32Array(B * H * Tq);
        K.attention(q, k, v, want, lse, B, H, KVH, Tq, T, D, scale, true, T - Tq);

        // scatter k, v into a shuffled pool: token-major (N, KVH, D) rows with a slot each, and one
        // extra row of NaN with slot −1 in the middle, which the write must skip
        const nb = Math.ceil(T / bs), maxBlocks = nb, numBlocks = B * nb + 2;
        const ids = shuffled(numBlocks, 80 + ci);
        const blockTables = Int32Array.from({ length: B * maxBlocks }, (_, i) => ids[i]);
        const N = B * T + 1, skip = T;
        const kt = new Float32Array(N * KVH * D).fill(NaN), vt = kt.slice();
        const slots = new Int32Array(N).fill(-1);
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T; t++) {
            const n = b * T + t + (b * T + t >= skip ? 1 : 0);
            slots[n] = blockTables[b * maxBlocks + Math.floor(t / bs)] * bs + (t % bs);
            for (let kh = 0; kh < KVH; kh++) {
              const src = ((b * KVH + kh) * T + t) * D;
              kt.set(k.subarray(src, src + D), (n * KVH + kh) * D);
              vt.set(v.subarray(src, src + D), (n * KVH + kh) * D);
            }
          }
        }
        const kPool = new Float32Array(numBlocks * KVH * bs * D), vPool = kPool.slice();
        K.pagedKVWrite(kt, vt, kPool, vPool, slots, N, KVH, D, bs, numBlocks);

        // queries packed token-major (B·Tq, H, D), sequence b owning rows b·Tq..(b+1)·Tq − 1
        const qp = new Float32Array(q.length);
        for (let b = 0; b < B; b++)
          for (let h = 0; h < H; h++)
            for (let i = 0; i < Tq; i++) {
              const src = ((b * H + h) * Tq + i) * D;
              qp.set(q.subarray(src, src + D), ((b * Tq + i) * H + h) * D);
            }
        const out = new Float32Array(q.length);
        K.pagedAttention(qp, kPool, vPool, out, blockTables, Int32Array.from({ length: B + 1 }, (_, b) => b * Tq),
          new Int32Array(B).fill(T), B, H, KVH, D, bs, maxBlocks, numBlocks, scale);
        const got = new Float32Array(q.length); // back to (B, H, Tq, D)
        for (let b = 0; b < B; b++)
          for (let h = 0; h < H; h++)
            for (let i = 0; i < Tq; i++) {
              const src = ((b * Tq + i) * H + h) * D;
              got.set(out.subarray(src, src + D), ((b * H + h) * Tq + i) * D);
            }
        // both kernels accumulate in float32 on native (in different orders), in double on ref
        assertClose(got, want, (who === 'ref' ? 1e-6 : 1e-5) * magnitude(want), 'out');
      });
    }

    test('bad block ids and lengths throw', () => {
      const b = makeBatch({ name: '', H: 2, KVH: 1, D: 8, bs: 4, seqs: [{ nq: 2, ctx: 9 }] }, 9);
      const call = (blockTables: Int32Array, contextLens: Int32Array) => K.pagedAttention(b.q, b.kPool, b.vPool,
        new Float32Array(b.q.length), blockTables, b.queryStart, contextLens, b.S, b.H, b.KVH, b.D, b.bs, b.maxBlocks, b.numBlocks, b.scale);
      call(b.blockTables, b.contextLens);
      const past = b.blockTables.slice(); past[2] = b.numBlocks;
      const negative = b.blockTables.slice(); negative[0] = -2;
      assert.throws(() => call(past, b.contextLens), /outside the pool/);
      assert.throws(() => call(negative, b.contextLens), /outside the pool/);
      assert.throws(() => call(b.blockTables, Int32Array.of(1)), /context/);
      const kp = new Float32Array(2 * 4 * 8), vp = kp.slice();
      assert.throws(() => K.pagedKVWrite(rand32(8, 1), rand32(8, 2), kp, vp, Int32Array.of(8), 1, 1, 8, 4, 2), /outside the pool/);
    });
  });
}
