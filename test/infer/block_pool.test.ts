// The block pool without a model: accounting, reference counts, prefix-cache names, LRU eviction
// of released cached blocks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockPool, blockHash, kvBytesPerBlock } from '../../src/infer/index.js';
import { ArgumentError } from '../../src/errors.js';

test('allocation, reference counts and release keep the pool accounted', () => {
  const pool = new BlockPool(4, 16);
  assert.deepEqual(pool.stats(), { total: 4, used: 0, cached: 0, free: 4 });
  const blocks = [pool.allocate(), pool.allocate(), pool.allocate(), pool.allocate()];
  assert.deepEqual(new Set(blocks).size, 4);
  assert.equal(pool.allocate(), null, 'an exhausted pool gives nothing');
  assert.deepEqual(pool.stats(), { total: 4, used: 4, cached: 0, free: 0 });
  pool.acquire(blocks[0]!);
  assert.equal(pool.refs(blocks[0]!), 2);
  pool.release(blocks[0]!);
  assert.equal(pool.stats().used, 4, 'still referenced once');
  pool.release(blocks[0]!);
  assert.equal(pool.stats().used, 3);
  assert.throws(() => pool.release(blocks[0]!), ArgumentError);
  assert.equal(pool.allocate(), blocks[0], 'the freed block is handed out again');
  assert.throws(() => new BlockPool(0, 16), ArgumentError);
  assert.equal(kvBytesPerBlock(8, 4, 16, 64), 2 * 8 * 4 * 16 * 64 * 4);
});

test('block hashes chain through the parent and depend on every token', () => {
  const toks = [1, 2, 3, 4, 5, 6, 7, 8];
  const h0 = blockHash(null, toks, 0, 4);
  assert.equal(h0, blockHash(null, [1, 2, 3, 4], 0, 4));
  assert.notEqual(h0, blockHash(null, [1, 2, 3, 5], 0, 4));
  const h1 = blockHash(h0, toks, 4, 8);
  assert.notEqual(h1, blockHash(null, toks, 4, 8), 'same tokens after another prefix: another name');
  assert.notEqual(h1, blockHash(blockHash(null, [9, 2, 3, 4], 0, 4), toks, 4, 8));
});

test('released named blocks stay cached until needed, evicted least recently released first', () => {
  const pool = new BlockPool(3, 4);
  const a = pool.allocate()!;
  const b = pool.allocate()!;
  pool.register(a, 'A');
  pool.register(b, 'B');
  assert.equal(pool.lookup('A'), a);
  pool.release(a);
  pool.release(b);
  assert.deepEqual(pool.stats(), { total: 3, used: 0, cached: 2, free: 3 });
  // A hit takes the block back off the free list.
  assert.equal(pool.lookup('B'), b);
  pool.acquire(b);
  assert.deepEqual(pool.stats(), { total: 3, used: 1, cached: 1, free: 2 });
  pool.release(b); // now released after a: a is the older eviction candidate
  // The never-named block goes first, then a (released before b), then b.
  const c = pool.allocate()!;
  assert.ok(c !== a && c !== b);
  assert.equal(pool.allocate(), a);
  assert.equal(pool.lookup('A'), undefined, 'evicted: its name is gone');
  assert.equal(pool.lookup('B'), b);
  assert.equal(pool.allocate(), b);
  assert.equal(pool.lookup('B'), undefined);
  assert.deepEqual(pool.stats(), { total: 3, used: 3, cached: 0, free: 0 });
});

test('a second block with the same contents stays private; disabled caching names nothing', () => {
  const pool = new BlockPool(4, 4);
  const a = pool.allocate()!;
  const b = pool.allocate()!;
  pool.register(a, 'X');
  pool.register(b, 'X');
  assert.equal(pool.isCached(a), true);
  assert.equal(pool.isCached(b), false);
  pool.release(b);
  assert.equal(pool.stats().cached, 0);
  const off = new BlockPool(2, 4, false);
  const c = off.allocate()!;
  off.register(c, 'Y');
  assert.equal(off.lookup('Y'), undefined);
  assert.equal(off.isCached(c), false);
  pool.resetPrefixCache();
  assert.equal(pool.lookup('X'), undefined);
});
