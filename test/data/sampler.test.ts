// The batch sampler: windows that are slices of the split, a seeded order covering every window once
// per epoch, exact resume from a saved position, no allocation when given tensors, the same batches
// from memory and from disk, and clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BatchSampler, type Batch } from '../../src/data/sampler.js';
import { TokenSplit } from '../../src/data/shards.js';
import { prepareShards } from '../../src/data/prepare.js';
import { storySource } from '../../src/data/sources.js';
import { DataError } from '../../src/data/errors.js';
import { Tensor } from '../../src/tensor/index.js';

/** A split whose token i is i mod 65536, so every token names its own position. */
function counting(n: number): TokenSplit {
  const t = new Uint16Array(n);
  for (let i = 0; i < n; i++) t[i] = i & 0xffff;
  return TokenSplit.fromTokens(t);
}

const rows = (t: Tensor) => {
  const d = t.data() as Int32Array;
  const [B, T] = t.shape;
  return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * T, (b + 1) * T)));
};
const snapshot = (b: Batch) => ({ x: rows(b.inputs), y: rows(b.targets) });

test('each row is a window of the split: targets are the inputs shifted by one', () => {
  const T = 16;
  const s = new BatchSampler(counting(5000), { batchSize: 4, blockSize: T, seed: 1 });
  for (let step = 0; step < 30; step++) {
    const { inputs, targets } = s.next();
    assert.equal(inputs.dtype, 'i32');
    assert.deepEqual(inputs.shape, [4, T]);
    for (const [x, y] of rows(inputs).map((r, b) => [r, rows(targets)[b]])) {
      for (let t = 0; t < T; t++) {
        assert.equal(x[t], x[0] + t, 'inputs are consecutive tokens');
        assert.equal(y[t], x[t] + 1, 'targets are the next tokens');
      }
    }
  }
});

test('seeded order: the same seed gives the same batches, another seed others; every window once per epoch', () => {
  const split = counting(10_007);
  const run = (seed: number) => {
    const s = new BatchSampler(split, { batchSize: 3, blockSize: 10, seed });
    return Array.from({ length: 20 }, () => snapshot(s.next()));
  };
  assert.deepEqual(run(5), run(5));
  assert.notDeepEqual(run(5), run(6));

  const T = 10;
  const s = new BatchSampler(split, { batchSize: 1, blockSize: T, seed: 9 });
  const starts: number[] = [];
  const epochOf = () => s.state().epoch;
  while (epochOf() === 0 && starts.length < 2000) {
    const first = (s.next().inputs.data() as Int32Array)[0];
    if (s.state().epoch === 0) starts.push(first);
  }
  const shift = Math.min(...starts) % T;
  const sorted = [...starts].sort((a, b) => a - b);
  assert.equal(new Set(starts).size, starts.length, 'no window twice in an epoch');
  sorted.forEach((v, i) => assert.equal(v, shift + i * T, 'windows tile the split from the shift'));
  assert.ok(shift + (sorted.length + 1) * T + 1 > 10_007, 'and cover it to the end');
  assert.notDeepEqual(starts, sorted, 'in shuffled order');
});

test('a sampler restored from a saved state continues with exactly the same batches, across epochs', () => {
  const split = counting(3000);
  const options = { batchSize: 7, blockSize: 12, seed: 42 };
  const straight = new BatchSampler(split, options);
  const all = Array.from({ length: 100 }, () => snapshot(straight.next())); // about 2.7 epochs
  assert.ok(straight.state().epoch >= 2);
  for (const at of [0, 1, 13, 35, 36, 71]) {
    const a = new BatchSampler(split, options);
    for (let i = 0; i < at; i++) a.next();
    const saved = JSON.parse(JSON.stringify(a.state()));
    const b = new BatchSampler(split, { ...options, state: saved });
    for (let i = at; i < 100; i++) assert.deepEqual(snapshot(b.next()), all[i], `batch ${i} after resuming at ${at}`);
  }
  const c = new BatchSampler(split, options);
  c.next();
  c.reset();
  assert.deepEqual(snapshot(c.next()), all[0]);
});

test('unshuffled order visits windows from the start, for evaluation', () => {
  const s = new BatchSampler(counting(100), { batchSize: 2, blockSize: 8, shuffle: false });
  assert.deepEqual(rows(s.next().inputs).map((r) => r[0]), [0, 8]);
  assert.deepEqual(rows(s.next().inputs).map((r) => r[0]), [16, 24]);
  assert.equal(s.windowsPerEpoch, 12);
});

test('given tensors are filled in place: no new tensors per step', () => {
  const s = new BatchSampler(counting(2000), { batchSize: 2, blockSize: 8, seed: 3 });
  const ref = new BatchSampler(counting(2000), { batchSize: 2, blockSize: 8, seed: 3 });
  const out = { inputs: Tensor.empty([2, 8], 'i32'), targets: Tensor.empty([2, 8], 'i32') };
  for (let i = 0; i < 5; i++) {
    const b = s.next(out);
    assert.equal(b.inputs, out.inputs);
    assert.equal(b.targets, out.targets);
    assert.deepEqual(snapshot(b), snapshot(ref.next()));
  }
  assert.throws(() => s.next({ inputs: Tensor.empty([2, 9], 'i32'), targets: out.targets }), DataError);
  assert.throws(() => s.next({ inputs: Tensor.empty([2, 8], 'f32'), targets: out.targets }), DataError);
});

test('batches read from disk equal batches from memory, on a prepared dataset with many shards', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'plinth-sampler-'));
  try {
    await prepareShards({ source: storySource({ seed: 1, stories: 150 }), out: dir, vocabSize: 300, shardTokens: 3000 });
    const mem = TokenSplit.open(dir, 'train', { inMemory: true });
    const disk = TokenSplit.open(dir, 'train', { inMemory: false });
    assert.ok(mem.inMemory && !disk.inMemory);
    const a = new BatchSampler(mem, { batchSize: 4, blockSize: 64, seed: 7 });
    const b = new BatchSampler(disk, { batchSize: 4, blockSize: 64, seed: 7 });
    for (let i = 0; i < 40; i++) assert.deepEqual(snapshot(b.next()), snapshot(a.next()));
    disk.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('clear errors: a split shorter than one window, bad sizes, bad states', () => {
  assert.throws(() => new BatchSampler(counting(16), { batchSize: 1, blockSize: 16 }), (e: Error) => e instanceof DataError && /16 tokens/.test(e.message));
  assert.ok(new BatchSampler(counting(17), { batchSize: 3, blockSize: 16 }).next());
  assert.throws(() => new BatchSampler(counting(100), { batchSize: 0, blockSize: 4 }), DataError);
  assert.throws(() => new BatchSampler(counting(100), { batchSize: 1, blockSize: 2.5 }), DataError);
  assert.throws(() => new BatchSampler(counting(100), { batchSize: 1, blockSize: 4, state: { seed: 0, epoch: -1, cursor: 0 } }), DataError);
  assert.throws(() => new BatchSampler(counting(100), { batchSize: 1, blockSize: 4, state: { seed: 0, epoch: 0, cursor: 1000 } }), DataError);
  assert.throws(() => counting(10).read(5, new Uint16Array(6)), DataError);
});
