// Hash tables over integers for the BPE hot path: byte strings to token ids, token pairs to merges,
// and the bounded cache of merged pieces. They store everything in typed arrays, so a lookup builds
// no string and allocates nothing.
import type { IdBuffer } from './model.js';

/** Multiplier of the polynomial hash h(x) = sum x[i]·M^(n-1-i) (mod 2^32); odd, so M^k never vanishes. */
export const HASH_MUL = 0x01000193;

/** Slot index of a 32-bit hash in a table of 2^bits slots (Fibonacci hashing uses the well-mixed high bits). */
function slotOf(h: number, shift: number): number {
  return Math.imul(h, 0x9e3779b1) >>> shift;
}

function log2Capacity(n: number): number {
  let bits = 4;
  while (1 << bits < n * 2) bits++;
  return bits;
}

export function hashBytes(b: Uint8Array, start: number, end: number): number {
  let h = 0;
  for (let i = start; i < end; i++) h = (Math.imul(h, HASH_MUL) + b[i]!) | 0;
  return h;
}

/**
 * A vocabulary of byte strings: token id → bytes, and bytes → token id. Ids may have holes (no
 * bytes); those are never found by a lookup. hash[id] and pow[id] = M^len make the hash of a
 * concatenation cheap: h(a‖b) = h(a)·M^len(b) + h(b).
 */
export class ByteVocab {
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly start: Int32Array;
  readonly present: Uint8Array;
  readonly hash: Int32Array;
  readonly pow: Int32Array;
  private readonly slots: Int32Array;
  private readonly slotHash: Int32Array;
  private readonly shift: number;
  private readonly mask: number;

  /** tokens[id] is the token's bytes, or null for an unused id. Duplicate byte strings keep the lowest id. */
  constructor(tokens: (Uint8Array | null)[]) {
    this.size = tokens.length;
    let total = 0;
    for (const t of tokens) if (t) total += t.length;
    this.bytes = new Uint8Array(total);
    this.start = new Int32Array(this.size + 1);
    this.present = new Uint8Array(this.size);
    this.hash = new Int32Array(this.size);
    this.pow = new Int32Array(this.size);
    const bits = log2Capacity(this.size);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.slots = new Int32Array(1 << bits);
    this.slotHash = new Int32Array(1 << bits);
    let off = 0;
    for (let id = 0; id < this.size; id++) {
      this.start[id] = off;
      const t = tokens[id];
      if (!t) continue;
      this.bytes.set(t, off);
      off += t.length;
      this.present[id] = 1;
      let p = 1;
      for (let i = 0; i < t.length; i++) p = Math.imul(p, HASH_MUL);
      this.pow[id] = p;
      const h = hashBytes(t, 0, t.length);
      this.hash[id] = h;
      if (this.find(t, 0, t.length, h) < 0) this.insert(id, h);
    }
    this.start[this.size] = off;
  }

  private insert(id: number, h: number): void {
    let i = slotOf(h, this.shift);
    while (this.slots[i] !== 0) i = (i + 1) & this.mask;
    this.slots[i] = id + 1;
    this.slotHash[i] = h;
  }

  length(id: number): number {
    return this.start[id + 1]! - this.start[id]!;
  }

  /** Id of the token whose bytes are b[off, off+len) (h = their hash), or -1. */
  find(b: Uint8Array, off: number, len: number, h: number): number {
    const slots = this.slots;
    const vb = this.bytes;
    const vs = this.start;
    for (let i = slotOf(h, this.shift); ; i = (i + 1) & this.mask) {
      const v = slots[i]!;
      if (v === 0) return -1;
      if (this.slotHash[i] !== h) continue;
      const id = v - 1;
      const s = vs[id]!;
      if (vs[id + 1]! - s !== len) continue;
      let j = 0;
      while (j < len && vb[s + j] === b[off + j]) j++;
      if (j === len) return id;
    }
  }

  /** Id of the token whose bytes are bytes(a) followed by bytes(b), or -1. */
  findConcat(a: number, b: number): number {
    const h = (Math.imul(this.hash[a]!, this.pow[b]!) + this.hash[b]!) | 0;
    const vb = this.bytes;
    const vs = this.start;
    const sa = vs[a]!;
    const la = vs[a + 1]! - sa;
    const sb = vs[b]!;
    const len = la + vs[b + 1]! - sb;
    for (let i = slotOf(h, this.shift); ; i = (i + 1) & this.mask) {
      const v = this.slots[i]!;
      if (v === 0) return -1;
      if (this.slotHash[i] !== h) continue;
      const id = v - 1;
      const s = vs[id]!;
      if (vs[id + 1]! - s !== len) continue;
      let j = 0;
      while (j < la && vb[s + j] === vb[sa + j]) j++;
      if (j < la) continue;
      while (j < len && vb[s + j] === vb[sb + j - la]) j++;
      if (j === len) return id;
    }
  }
}

/** Merge rules (a, b) → (rank, merged id), as listed in a merges file. */
export class PairTable {
  readonly count: number;
  private readonly ka: Int32Array;
  private readonly kb: Int32Array;
  private readonly rank: Int32Array;
  private readonly merged: Int32Array;
  private readonly shift: number;
  private readonly mask: number;

  constructor(capacity: number) {
    const bits = log2Capacity(Math.max(capacity, 1));
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.ka = new Int32Array(1 << bits).fill(-1);
    this.kb = new Int32Array(1 << bits);
    this.rank = new Int32Array(1 << bits);
    this.merged = new Int32Array(1 << bits);
    this.count = 0;
  }

  private slot(a: number, b: number): number {
    let i = slotOf((Math.imul(a, 0x85ebca6b) ^ b) | 0, this.shift);
    while (this.ka[i] !== -1 && (this.ka[i] !== a || this.kb[i] !== b)) i = (i + 1) & this.mask;
    return i;
  }

  /** Adds a rule; an earlier rule for the same pair wins, as in the Hugging Face tokenizers library. */
  set(a: number, b: number, rank: number, merged: number): void {
    const i = this.slot(a, b);
    if (this.ka[i] !== -1) return;
    this.ka[i] = a;
    this.kb[i] = b;
    this.rank[i] = rank;
    this.merged[i] = merged;
    (this as { count: number }).count++;
  }

  /** Slot of the rule for (a, b), or -1; read it with rankAt / mergedAt. */
  find(a: number, b: number): number {
    const i = this.slot(a, b);
    return this.ka[i] === -1 ? -1 : i;
  }

  rankAt(slot: number): number {
    return this.rank[slot]!;
  }

  mergedAt(slot: number): number {
    return this.merged[slot]!;
  }
}

/**
 * Bounded cache from a piece's bytes to its token ids. When an arena fills up the whole cache is
 * dropped: memory stays bounded, and text that repeats its words fills it again within a few pages.
 */
export class MergeCache {
  private readonly slots: Int32Array;
  private readonly shift: number;
  private readonly mask: number;
  private readonly maxEntries: number;
  private readonly eHash: Int32Array;
  private readonly eKey: Int32Array;
  private readonly eVal: Int32Array;
  private readonly keys: Uint8Array;
  private readonly vals: Int32Array;
  private entries = 0;
  private keyTop = 0;
  private valTop = 0;

  constructor(maxEntries = 1 << 15, keyBytes = 1 << 19) {
    const bits = log2Capacity(maxEntries);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.maxEntries = maxEntries;
    this.slots = new Int32Array(1 << bits);
    this.eHash = new Int32Array(maxEntries);
    this.eKey = new Int32Array(maxEntries + 1);
    this.eVal = new Int32Array(maxEntries + 1);
    this.keys = new Uint8Array(keyBytes);
    this.vals = new Int32Array(keyBytes);
  }

  clear(): void {
    this.slots.fill(0);
    this.entries = 0;
    this.keyTop = 0;
    this.valTop = 0;
  }

  /** Appends the cached ids of b[0, len) (hash h) to out and returns true, or returns false. */
  get(b: Uint8Array, len: number, h: number, out: IdBuffer): boolean {
    const keys = this.keys;
    for (let i = slotOf(h, this.shift); ; i = (i + 1) & this.mask) {
      const v = this.slots[i]!;
      if (v === 0) return false;
      const e = v - 1;
      if (this.eHash[e] !== h) continue;
      const ks = this.eKey[e]!;
      if (this.eKey[e + 1]! - ks !== len) continue;
      let j = 0;
      while (j < len && keys[ks + j] === b[j]) j++;
      if (j < len) continue;
      const vs = this.eVal[e]!;
      const nv = this.eVal[e + 1]! - vs;
      out.reserve(nv);
      out.data.set(this.vals.subarray(vs, vs + nv), out.length);
      out.length += nv;
      return true;
    }
  }

  /** Caches ids[from, ids.length) as the tokens of b[0, len). */
  put(b: Uint8Array, len: number, h: number, ids: IdBuffer, from: number): void {
    const nv = ids.length - from;
    if (len > this.keys.length >> 4) return;
    if (this.entries >= this.maxEntries || this.keyTop + len > this.keys.length || this.valTop + nv > this.vals.length) {
      this.clear();
    }
    const e = this.entries++;
    this.eHash[e] = h;
    this.eKey[e] = this.keyTop;
    this.keys.set(b.subarray(0, len), this.keyTop);
    this.keyTop += len;
    this.eKey[e + 1] = this.keyTop;
    this.eVal[e] = this.valTop;
    for (let k = from; k < ids.length; k++) this.vals[this.valTop++] = ids.data[k]!;
    this.eVal[e + 1] = this.valTop;
    let i = slotOf(h, this.shift);
    while (this.slots[i] !== 0) i = (i + 1) & this.mask;
    this.slots[i] = e + 1;
  }
}
