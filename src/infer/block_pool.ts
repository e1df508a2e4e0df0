// The paged KV cache's bookkeeping, as in vLLM: a fixed pool of blocks (blockSize token slots
// each), handed out from a free list and shared by reference count. With prefix caching, a full
// block is named by a hash of its tokens chained to the previous block's hash, so two sequences
// with the same prefix share the same blocks; a released block keeps its contents and its name
// (an eviction candidate, least recently used first) until its memory is needed again.
//
// This file holds no keys or values: it decides which block a token goes to. The engine owns the
// pools (numBlocks, KVH, blockSize, D) per layer and copies blocks when the pool says so.
import { createHash } from 'node:crypto';
import { ArgumentError } from '../errors.js';

/** Hash of a full block: sha256 over the parent block's hash and the block's token ids, truncated
 *  to 128 bits, so a collision (which would silently share wrong keys and values) is negligible. */
export function blockHash(parent: string | null, tokens: ArrayLike<number>, start: number, end: number): string {
  const h = createHash('sha256');
  if (parent !== null) h.update(parent);
  h.update('|');
  const ids = new Int32Array(end - start);
  for (let i = start; i < end; i++) ids[i - start] = tokens[i];
  h.update(new Uint8Array(ids.buffer));
  return h.digest('hex').slice(0, 32);
}

/** The parent of a sequence's first block hash: none for the base model; for a LoRA adapter a
 *  string that is never a block hash (those are hex), so no block is shared across adapters. */
export function adapterRoot(adapter: string | null): string | null {
  return adapter === null ? null : `lora:${adapter}`;
}

/** The KV bytes one block takes: keys and values, every layer, float32. */
export function kvBytesPerBlock(layers: number, kvHeads: number, blockSize: number, headDim: number): number {
  return 2 * layers * kvHeads * blockSize * headDim * 4;
}

export interface BlockPoolStats {
  total: number;
  /** Blocks referenced by at least one sequence. */
  used: number;
  /** Free blocks that still hold a cached prefix block (evicted on demand). */
  cached: number;
  /** Blocks a new allocation can take: never-used, released, and cached ones. */
  free: number;
}

const NIL = -1;

/**
 * A fixed pool of block ids 0..numBlocks−1 with reference counts. Free blocks sit in one
 * doubly linked list: blocks without cached contents at the head (taken first), released cached
 * blocks appended at the tail, so allocation evicts the least recently released cached block.
 */
export class BlockPool {
  private readonly refCount: Int32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NIL;
  private tail = NIL;
  private freeCount = 0;
  private cachedFree = 0;
  /** Hash of each block's contents, when it holds a full prefix block registered in `byHash`. */
  private readonly hashes: (string | null)[];
  private readonly byHash = new Map<string, number>();

  constructor(readonly numBlocks: number, readonly blockSize: number, readonly enablePrefixCaching = true) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new ArgumentError(`a block pool needs at least one block, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new ArgumentError(`block size must be a positive integer, got ${blockSize}`);
    this.refCount = new Int32Array(numBlocks);
    this.prev = new Int32Array(numBlocks);
    this.next = new Int32Array(numBlocks);
    this.hashes = new Array<string | null>(numBlocks).fill(null);
    for (let b = 0; b < numBlocks; b++) this.pushTail(b);
  }

  stats(): BlockPoolStats {
    return { total: this.numBlocks, used: this.numBlocks - this.freeCount, cached: this.cachedFree, free: this.freeCount };
  }

  get numFree(): number {
    return this.freeCount;
  }

  refs(block: number): number {
    return this.refCount[block];
  }

  /** Whether the block holds a registered prefix block (its contents must not change). */
  isCached(block: number): boolean {
    return this.hashes[block] !== null;
  }

  /** Takes a free block (evicting its cached contents if it has any), with one reference; null when
   *  the pool is exhausted. */
  allocate(): number | null {
    const b = this.head;
    if (b === NIL) return null;
    this.unlink(b);
    this.forget(b);
    this.refCount[b] = 1;
    return b;
  }

  /** The cached block named `hash`, if any (no reference taken: see `acquire`). */
  lookup(hash: string): number | undefined {
    return this.enablePrefixCaching ? this.byHash.get(hash) : undefined;
  }

  /** One more reference to a block found by `lookup` (taking it off the free list if released). */
  acquire(block: number): void {
    if (this.refCount[block] === 0) {
      this.unlink(block);
      if (this.hashes[block] !== null) this.cachedFree--;
    }
    this.refCount[block]++;
  }

  /** Drops one reference; at zero the block is free again, keeping cached contents for reuse. */
  release(block: number): void {
    if (this.refCount[block] <= 0) throw new ArgumentError(`block ${block} released more often than it was taken`);
    if (--this.refCount[block] > 0) return;
    if (this.hashes[block] !== null) {
      this.pushTail(block);
      this.cachedFree++;
    } else {
      this.pushHead(block);
    }
  }

  /** Names a block that just became full with `hash`, so later sequences can share it. When
   *  another block already holds the same contents, this one stays private. */
  register(block: number, hash: string): void {
    if (!this.enablePrefixCaching || this.hashes[block] !== null || this.byHash.has(hash)) return;
    this.hashes[block] = hash;
    this.byHash.set(hash, block);
  }

  /** Drops every cached prefix block's name (e.g. after the weights changed). */
  resetPrefixCache(): void {
    for (const [, b] of this.byHash) {
      this.hashes[b] = null;
      if (this.refCount[b] === 0) {
        this.unlink(b);
        this.pushHead(b);
        this.cachedFree--;
      }
    }
    this.byHash.clear();
  }

  private forget(b: number): void {
    const h = this.hashes[b];
    if (h === null) return;
    this.byHash.delete(h);
    this.hashes[b] = null;
    this.cachedFree--;
  }

  private unlink(b: number): void {
    const p = this.prev[b];
    const n = this.next[b];
    if (p === NIL) this.head = n;
    else this.next[p] = n;
    if (n === NIL) this.tail = p;
    else this.prev[n] = p;
    this.freeCount--;
  }

  private pushTail(b: number): void {
    this.prev[b] = this.tail;
    this.next[b] = NIL;
    if (this.tail === NIL) this.head = b;
    else this.next[this.tail] = b;
    this.tail = b;
    this.freeCount++;
  }

  private pushHead(b: number): void {
    this.prev[b] = NIL;
    this.next[b] = this.head;
    if (this.head === NIL) this.tail = b;
    else this.prev[this.head] = b;
    this.head = b;
    this.freeCount++;
  }
}
