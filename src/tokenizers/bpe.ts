// Byte-level BPE, as GPT-2 and tiktoken define it: text is split into pieces by the pre-tokenizer,
// each piece is UTF-8 encoded, and its bytes are merged pairwise, lowest rank first, until no
// adjacent pair has a merge.
//
// Two sources of merges share one engine:
// - tiktoken rank files: any two adjacent parts merge if their concatenated bytes are a token, with
//   the token's rank (= its id) as priority; a piece that is itself a token is that token.
// - merges lists (tokenizer.json): only listed pairs merge, priority = position in the list.
import { IndexOutOfRangeError } from '../errors.js';
import { HASH_MUL, ByteVocab, MergeCache, PairTable } from './tables.js';
import type { PreTokenizer } from './pretokenize.js';
import { IdBuffer } from './model.js';

export const NO_MERGE = 0x7fffffff;

/** Pieces up to this many bytes merge by linear scans; longer ones through a heap (O(n log n)). */
const SMALL_PIECE = 96;

export interface ByteLevelBpeOptions {
  /** token id → bytes; null marks an unused id (special tokens live in the tokenizer, not here). */
  tokens: (Uint8Array | null)[];
  /** Merge rules as [left id, right id] in priority order; omitted for tiktoken-style ranks. */
  merges?: [number, number][];
  /** Look a whole piece up before merging (tiktoken always does; tokenizer.json's `ignore_merges`). */
  ignoreMerges?: boolean;
  /** Id emitted for a byte that has no token (a vocabulary missing some of the 256 bytes), if any. */
  unkId?: number;
  /** Capacity of the warm merge cache in pieces; 0 disables it. */
  cacheSize?: number;
}

export class ByteLevelBpe {
  readonly vocab: ByteVocab;
  readonly pairs: PairTable | null;
  readonly ignoreMerges: boolean;
  readonly byteIds = new Int32Array(256).fill(-1);
  readonly unkId: number;
  private cache: MergeCache | null;
  // Scratch buffers reused across calls: the hot path allocates nothing per piece.
  private buf = new Uint8Array(1024);
  private charStart = new Int32Array(1024);
  private charEnd = new Int32Array(1024);
  private parts = new Int32Array(SMALL_PIECE);
  private ranks = new Int32Array(SMALL_PIECE);
  private merged = new Int32Array(SMALL_PIECE);
  /** Set by pairRank: the id the pair merges into. */
  pairMerged = -1;
  // Ranks at or above this do not merge (only while converting ranks to a merges list).
  private maxRank = NO_MERGE;

  constructor(opts: ByteLevelBpeOptions) {
    this.vocab = new ByteVocab(opts.tokens);
    this.ignoreMerges = opts.merges === undefined || opts.ignoreMerges === true;
    this.unkId = opts.unkId ?? -1;
    const one = new Uint8Array(1);
    for (let b = 0; b < 256; b++) {
      one[0] = b;
      this.byteIds[b] = this.vocab.find(one, 0, 1, b);
    }
    if (opts.merges) {
      this.pairs = new PairTable(opts.merges.length);
      for (let r = 0; r < opts.merges.length; r++) {
        const [a, b] = opts.merges[r]!;
        const m = this.vocab.findConcat(a, b);
        if (m >= 0) this.pairs.set(a, b, r, m);
      }
    } else {
      this.pairs = null;
    }
    const cacheSize = opts.cacheSize ?? 1 << 15;
    this.cache = cacheSize > 0 ? new MergeCache(cacheSize) : null;
  }

  get size(): number {
    return this.vocab.size;
  }

  /** Drops the merge cache (for cold-start measurements; results never depend on it). */
  clearCache(): void {
    this.cache?.clear();
  }

  /** Rank of merging parts a and b (NO_MERGE if they do not merge); the result id goes to pairMerged. */
  pairRank(a: number, b: number): number {
    if (a < 0 || b < 0) return NO_MERGE;
    if (this.pairs === null) {
      const m = this.vocab.findConcat(a, b);
      this.pairMerged = m;
      return m < 0 || m >= this.maxRank ? NO_MERGE : m;
    }
    const s = this.pairs.find(a, b);
    if (s < 0) return NO_MERGE;
    this.pairMerged = this.pairs.mergedAt(s);
    return this.pairs.rankAt(s);
  }

  /**
   * For a tiktoken vocabulary: the two tokens whose merge creates token `id`, found by running BPE
   * on its bytes with the ranks below its own (how tiktoken vocabularies become merges lists), or
   * null for a single byte or a token no merge sequence reaches.
   */
  lastMerge(id: number): [number, number] | null {
    const bytes = this.tokenBytes(id);
    if (bytes.length < 2 || this.pairs !== null) return null;
    if (bytes.length * 3 > this.buf.length) this.grow(bytes.length * 3);
    this.buf.set(bytes);
    const out = new IdBuffer(8);
    this.maxRank = id;
    try {
      if (bytes.length <= SMALL_PIECE) this.mergeSmall(bytes.length, out);
      else this.mergeLarge(bytes.length, out);
    } finally {
      this.maxRank = NO_MERGE;
    }
    return out.length === 2 ? [out.data[0]!, out.data[1]!] : null;
  }

  private grow(n: number): void {
    let cap = this.buf.length;
    while (cap < n) cap *= 2;
    this.buf = new Uint8Array(cap);
    this.charStart = new Int32Array(cap);
    this.charEnd = new Int32Array(cap);
  }

  /**
   * Encodes text[start, end) (no special tokens in it) and appends the ids to `out`; with `offsets`,
   * also appends each token's [start, end) character span in `text`.
   */
  encode(pre: PreTokenizer, text: string, start: number, end: number, out: IdBuffer, offsets: IdBuffer | null): void {
    const scan = pre.scan;
    if (scan !== null) {
      if (offsets !== null) {
        for (let p = start; p < end; ) {
          const q = scan(text, p, end);
          this.encodePiece(text, p, q, out, offsets);
          p = q;
        }
        return;
      }
      // Most pieces are short ASCII words that are tokens themselves: hash and copy them in one
      // tight loop, look them up, and only fall back to the general path for the rest.
      const byteIds = this.byteIds;
      const vocab = this.vocab;
      const whole = this.ignoreMerges;
      for (let p = start; p < end; ) {
        const q = scan(text, p, end);
        const c0 = text.charCodeAt(p);
        if (q === p + 1 && c0 < 128 && byteIds[c0]! >= 0) {
          out.push(byteIds[c0]!);
          p = q;
          continue;
        }
        if (q - p > this.buf.length) this.grow(q - p);
        const buf = this.buf;
        let h = 0;
        let i = p;
        for (; i < q; i++) {
          const c = text.charCodeAt(i);
          if (c >= 128) break;
          buf[i - p] = c;
          h = (Math.imul(h, HASH_MUL) + c) | 0;
        }
        if (i < q) {
          this.encodePiece(text, p, q, out, null);
        } else {
          const id = whole ? vocab.find(buf, 0, q - p, h) : -1;
          if (id >= 0) out.push(id);
          else this.mergePiece(q - p, h, out);
        }
        p = q;
      }
      return;
    }
    const sub = start === 0 && end === text.length ? text : text.slice(start, end);
    const re = pre.regex;
    re.lastIndex = 0;
    for (let m = re.exec(sub); m !== null; m = re.exec(sub)) {
      const len = m[0].length;
      if (len === 0) {
        re.lastIndex++;
        continue;
      }
      this.encodePiece(text, start + m.index, start + m.index + len, out, offsets);
    }
  }

  /** UTF-8 encodes text[p, q) into buf (lone surrogates become U+FFFD, as TextEncoder does), merges, appends. */
  encodePiece(text: string, p: number, q: number, out: IdBuffer, offsets: IdBuffer | null): void {
    if ((q - p) * 3 > this.buf.length) this.grow((q - p) * 3);
    const buf = this.buf;
    const track = offsets !== null;
    let n = 0;
    let h = 0;
    for (let i = p; i < q; i++) {
      const c = text.charCodeAt(i);
      const n0 = n;
      let w = 1;
      if (c < 0x80) {
        buf[n++] = c;
        h = (Math.imul(h, HASH_MUL) + c) | 0;
      } else {
        let cp = c;
        if (c >= 0xd800 && c <= 0xdfff) {
          const d = i + 1 < q ? text.charCodeAt(i + 1) : 0;
          if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
            cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
            w = 2;
          } else {
            cp = 0xfffd;
          }
        }
        if (cp < 0x800) {
          buf[n++] = 0xc0 | (cp >> 6);
          buf[n++] = 0x80 | (cp & 63);
        } else if (cp < 0x10000) {
          buf[n++] = 0xe0 | (cp >> 12);
          buf[n++] = 0x80 | ((cp >> 6) & 63);
          buf[n++] = 0x80 | (cp & 63);
        } else {
          buf[n++] = 0xf0 | (cp >> 18);
          buf[n++] = 0x80 | ((cp >> 12) & 63);
          buf[n++] = 0x80 | ((cp >> 6) & 63);
          buf[n++] = 0x80 | (cp & 63);
        }
        for (let k = n0; k < n; k++) h = (Math.imul(h, HASH_MUL) + buf[k]!) | 0;
      }
      if (track) {
        for (let k = n0; k < n; k++) {
          this.charStart[k] = i;
          this.charEnd[k] = i + w;
        }
      }
      if (w === 2) i++;
    }
    const first = out.length;
    if (this.ignoreMerges) {
      const id = this.vocab.find(buf, 0, n, h);
      if (id >= 0) {
        out.push(id);
        if (track) offsets.push2(p, q);
        return;
      }
    }
    this.mergePiece(n, h, out);
    if (track) this.pushOffsets(out, first, offsets);
  }

  /** Tokens of buf[0, n) (hash h) by merging, through the cache. */
  private mergePiece(n: number, h: number, out: IdBuffer): void {
    if (n === 1) {
      this.emit(this.byteIds[this.buf[0]!]!, out);
      return;
    }
    const cache = this.cache;
    if (cache !== null && cache.get(this.buf, n, h, out)) return;
    const first = out.length;
    if (n <= SMALL_PIECE) this.mergeSmall(n, out);
    else this.mergeLarge(n, out);
    cache?.put(this.buf, n, h, out, first);
  }

  private pushOffsets(out: IdBuffer, first: number, offsets: IdBuffer): void {
    let b = 0;
    for (let t = first; t < out.length; t++) {
      const id = out.data[t]!;
      const len = id === this.unkId && this.vocab.present[id] === 0 ? 1 : this.vocab.length(id);
      offsets.push2(this.charStart[b]!, this.charEnd[b + len - 1]!);
      b += len;
    }
  }

  private emit(id: number, out: IdBuffer): void {
    if (id >= 0) out.push(id);
    else if (this.unkId >= 0) out.push(this.unkId);
  }

  /** Merges buf[0, n) with linear scans for the lowest rank (ties: leftmost), like tiktoken. */
  private mergeSmall(n: number, out: IdBuffer): void {
    const parts = this.parts;
    const ranks = this.ranks;
    const merged = this.merged;
    const buf = this.buf;
    for (let i = 0; i < n; i++) parts[i] = this.byteIds[buf[i]!]!;
    for (let i = 0; i < n - 1; i++) {
      ranks[i] = this.pairRank(parts[i]!, parts[i + 1]!);
      merged[i] = this.pairMerged;
    }
    while (n > 1) {
      let best = NO_MERGE;
      let at = -1;
      for (let i = 0; i < n - 1; i++) {
        if (ranks[i]! < best) {
          best = ranks[i]!;
          at = i;
        }
      }
      if (at < 0) break;
      parts[at] = merged[at]!;
      parts.copyWithin(at + 1, at + 2, n);
      ranks.copyWithin(at + 1, at + 2, n - 1);
      merged.copyWithin(at + 1, at + 2, n - 1);
      n--;
      if (at + 1 < n) {
        ranks[at] = this.pairRank(parts[at]!, parts[at + 1]!);
        merged[at] = this.pairMerged;
      }
      if (at > 0) {
        ranks[at - 1] = this.pairRank(parts[at - 1]!, parts[at]!);
        merged[at - 1] = this.pairMerged;
      }
    }
    for (let i = 0; i < n; i++) this.emit(parts[i]!, out);
  }

  private mergeLarge(n: number, out: IdBuffer): void {
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = this.byteIds[this.buf[i]!]!;
    const heads = mergeWithHeap(ids, n, this);
    for (let k = 0; k < heads.length; k++) this.emit(ids[heads[k]!]!, out);
  }

  /** Bytes of token `id`; throws for an id this model does not have. */
  tokenBytes(id: number): Uint8Array {
    if (!(id >= 0 && id < this.vocab.size) || this.vocab.present[id] === 0) {
      throw new IndexOutOfRangeError(`token id ${id} is not in the vocabulary (size ${this.vocab.size})`);
    }
    return this.vocab.bytes.subarray(this.vocab.start[id]!, this.vocab.start[id + 1]!);
  }

  has(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocab.size && this.vocab.present[id] === 1;
  }
}

/** Anything that can rank a pair of adjacent symbols; pairRank sets pairMerged to the merged id. */
export interface PairSource {
  pairRank(a: number, b: number): number;
  pairMerged: number;
}

/**
 * Merges symbols ids[0, n) in place, lowest rank first and leftmost among equal ranks, using a doubly
 * linked list of parts and a binary heap of (rank, position) candidates: O(n log n) for any length.
 * A popped candidate is stale, and skipped, unless its node is alive and its pair still has that
 * rank. Returns the start positions of the final parts; ids[start] holds each part's id.
 */
export function mergeWithHeap(ids: Int32Array, n: number, src: PairSource): number[] {
  const DEAD = -2;
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const rank = new Int32Array(n);
  const into = new Int32Array(n);
  const heapR = new Int32Array(3 * n + 1);
  const heapP = new Int32Array(3 * n + 1);
  let size = 0;
  const less = (r1: number, p1: number, r2: number, p2: number): boolean => r1 < r2 || (r1 === r2 && p1 < p2);
  const push = (r: number, p: number): void => {
    let i = size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(r, p, heapR[parent]!, heapP[parent]!)) break;
      heapR[i] = heapR[parent]!;
      heapP[i] = heapP[parent]!;
      i = parent;
    }
    heapR[i] = r;
    heapP[i] = p;
  };
  const popTop = (): void => {
    const r = heapR[--size]!;
    const p = heapP[size]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= size) break;
      if (c + 1 < size && less(heapR[c + 1]!, heapP[c + 1]!, heapR[c]!, heapP[c]!)) c++;
      if (!less(heapR[c]!, heapP[c]!, r, p)) break;
      heapR[i] = heapR[c]!;
      heapP[i] = heapP[c]!;
      i = c;
    }
    heapR[i] = r;
    heapP[i] = p;
  };
  const relink = (i: number): void => {
    const j = next[i]!;
    const r = j < 0 ? NO_MERGE : src.pairRank(ids[i]!, ids[j]!);
    rank[i] = r;
    into[i] = src.pairMerged;
    if (r !== NO_MERGE) push(r, i);
  };
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  for (let i = 0; i < n; i++) relink(i);
  while (size > 0) {
    const r = heapR[0]!;
    const i = heapP[0]!;
    popTop();
    if (ids[i] === DEAD || rank[i] !== r || r === NO_MERGE) continue;
    const j = next[i]!;
    ids[i] = into[i]!;
    ids[j] = DEAD;
    next[i] = next[j]!;
    if (next[j]! >= 0) prev[next[j]!] = i;
    relink(i);
    if (prev[i]! >= 0) relink(prev[i]!);
  }
  const heads: number[] = [];
  if (n > 0) for (let i = 0; i >= 0; i = next[i]!) heads.push(i);
  return heads;
}
