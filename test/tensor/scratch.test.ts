// ScratchPool: tensors made during a run draw recycled storage, all of which returns when the run
// ends, so a step repeated with the same shapes allocates nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as pl from '../../src/index.js';
import { ScratchPool, Tensor } from '../../src/tensor/index.js';

/** A small computation with the shapes of one step: a few ops on (rows, 64) inputs. */
function step(rows: number): Tensor {
  const x = pl.ones([rows, 64]);
  return pl.add(pl.mul(x, 2), pl.zeros([rows, 64]));
}

test('a run repeated with the same shapes allocates nothing after the first', () => {
  const pool = new ScratchPool();
  pool.run(() => step(8));
  const first = pool.allocations;
  assert.ok(first >= 3, `the first run makes its buffers (${first})`);
  for (let i = 0; i < 5; i++) pool.run(() => step(8));
  assert.equal(pool.allocations, first, 'later runs reuse them');
  // one row fewer falls in the same size classes
  pool.run(() => step(7));
  assert.equal(pool.allocations, first);
  assert.ok(pool.pooledBytes >= 8 * 64 * 4 * 3, 'the buffers wait in the pool between runs');
});

test('results are right with recycled buffers: zeros are zero, values are fresh', () => {
  const pool = new ScratchPool({ poison: true });
  for (let i = 0; i < 3; i++) {
    const sum = pool.run(() => {
      const z = pl.zeros([4, 64]);
      assert.ok((z.data() as Float32Array).every((v) => v === 0), 'zeros() on a poisoned buffer is zero');
      return Array.from(step(4).data() as Float32Array).reduce((a, b) => a + b, 0);
    });
    assert.equal(sum, 4 * 64 * 2);
  }
});

test('with poison on, a tensor kept past its run reads NaN', () => {
  const pool = new ScratchPool({ poison: true });
  const kept = pool.run(() => step(2));
  assert.ok(Number.isNaN((kept.data() as Float32Array)[0]), 'the kept tensor was poisoned');
  const ids = pool.run(() => pl.tensor([1, 2, 3], { dtype: 'i32' }));
  assert.equal((ids.data() as Int32Array)[0], -1, 'int storage reads -1');
  // without poison the storage is simply reused
  const plain = new ScratchPool();
  const a = plain.run(() => pl.ones([16]));
  const b = plain.run(() => pl.full([16], 5));
  assert.equal(a.storage.buffer, b.storage.buffer, 'the second run got the first run\'s buffer');
});

test('tensors made outside any run, or after one, are ordinary', () => {
  const pool = new ScratchPool({ poison: true });
  const before = pl.ones([8]);
  pool.run(() => step(8));
  const after = pl.ones([8]);
  assert.deepEqual(Array.from(before.data() as Float32Array), new Array(8).fill(1));
  assert.deepEqual(Array.from(after.data() as Float32Array), new Array(8).fill(1));
});

test('a throwing run still returns its buffers; a pool cannot run inside itself; other pools nest', () => {
  const pool = new ScratchPool();
  assert.throws(() => pool.run(() => {
    step(8);
    throw new Error('boom');
  }), /boom/);
  const made = pool.allocations;
  pool.run(() => step(8));
  assert.equal(pool.allocations, made, 'the thrown run\'s buffers were returned');
  assert.throws(() => pool.run(() => pool.run(() => 0)), /already running/);
  const inner = new ScratchPool();
  pool.run(() => {
    inner.run(() => step(8));
    step(8); // back on the outer pool
  });
  assert.equal(pool.allocations, made, 'the outer pool resumed after the inner run');
  assert.ok(inner.allocations >= 3);
});

test('size classes unused for keepRuns runs are dropped', () => {
  const pool = new ScratchPool({ keepRuns: 2 });
  pool.run(() => pl.ones([100_000]));
  const big = pool.pooledBytes;
  assert.ok(big >= 400_000);
  pool.run(() => pl.ones([10]));
  assert.ok(pool.pooledBytes >= big, 'kept one run later');
  pool.run(() => pl.ones([10]));
  assert.ok(pool.pooledBytes < 1000, `dropped after two runs without it (${pool.pooledBytes} bytes left)`);
});

test('a smaller request takes the smallest free buffer up to 8 times its size', () => {
  const pool = new ScratchPool();
  pool.run(() => pl.ones([64 * 1024])); // a 256 KB buffer
  const made = pool.allocations;
  const small = pool.run(() => pl.ones([10 * 1024])); // 40 KB: within 8x, reuses it
  assert.equal(pool.allocations, made);
  assert.equal(small.storage.buffer.byteLength, 256 * 1024);
  pool.run(() => pl.ones([4 * 1024])); // 16 KB: 16x smaller, gets its own
  assert.equal(pool.allocations, made + 1);
  // two requests in one run: each gets a buffer of its own
  const [a, b] = pool.run(() => [pl.ones([64 * 1024]), pl.ones([64 * 1024])]);
  assert.notEqual(a.storage.buffer, b.storage.buffer);
});
