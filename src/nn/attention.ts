// What every attention layer shares: the attention-metadata object (where this call's tokens sit,
// which mask, which cache), rotary tables, a contiguous KV cache, and `attend`, which applies rotary
// positions, appends to the cache and runs scaled dot-product attention. The same model code runs
// training, cached decoding and packed batches over a paged KV pool: only the metadata differs.
import { type FloatArray, kernels } from '../backend/index.js';
import { ArgumentError, ShapeError } from '../errors.js';
import * as pl from '../tensor/index.js';
import { Tensor } from '../tensor/index.js';

export interface RopeTables {
  cos: Tensor;
  sin: Tensor;
}

export interface AttentionMetadata {
  /** Queries see only earlier positions (decoder) or every position (encoder). */
  causal: boolean;
  /** Absolute position of this call's first token (tokens already in the cache). */
  pastLength: number;
  /** Rotary tables (T, D/2) for this call's positions, or null for models without rotary positions. */
  rope: RopeTables | null;
  /** The KV cache this call appends to, or null (training, or a single uncached pass). */
  cache: KVCache | null;
  /** An explicit mask broadcastable to (B, H, Tq, Tk) (u8: nonzero may attend; float: additive). */
  mask?: Tensor | null;
  /** A packed batch over a paged KV pool (then B = 1, T = N packed tokens, and cache is null). */
  paged?: PagedAttentionInputs | null;
}

/**
 * The N tokens of S sequences packed into one (1, N) call over a paged KV pool (vLLM's
 * PagedAttention): sequence s owns rows queryStart[s]..queryStart[s+1]−1, the last tokens of its
 * contextLens[s] tokens. Each array has exactly its logical length (callers pass subarrays).
 */
export interface PagedAttentionInputs {
  /** Per layer, the key and value pools (numBlocks, KVH, blockSize, D). */
  kPools: Float32Array[];
  vPools: Float32Array[];
  numBlocks: number;
  blockSize: number;
  /** (N) absolute position of each token: rotary angles and learned position embeddings. */
  positions: Int32Array;
  /** (N) pool slot (block·blockSize + offset) each token's key and value are written to. */
  slots: Int32Array;
  /** (S, maxBlocks) block of each sequence's j-th blockSize positions. */
  blockTables: Int32Array;
  maxBlocks: number;
  /** (S+1) first packed row of each sequence, then N. */
  queryStart: Int32Array;
  /** (S) tokens of each sequence in the pool after this call's writes. */
  contextLens: Int32Array;
}

/** Precomputed rotary tables for positions 0..maxPositions−1; rows are sliced per call. */
export class RotaryEmbedding {
  private readonly table: RopeTables;

  constructor(readonly headDim: number, readonly maxPositions: number, readonly theta = 10000) {
    const positions = new Float64Array(maxPositions).map((_, i) => i);
    this.table = pl.ropeTables(positions, headDim, theta);
  }

  /** Tables for arbitrary positions (N): rows gathered from the precomputed table. */
  gather(positions: Int32Array): RopeTables {
    const idx = new Tensor(positions, [positions.length], 'i32');
    for (const p of positions) {
      if (p < 0 || p >= this.maxPositions) throw new ArgumentError(`position ${p} is outside the model's positions [0, ${this.maxPositions}) (max_position_embeddings)`);
    }
    return { cos: pl.indexSelect(this.table.cos, 0, idx), sin: pl.indexSelect(this.table.sin, 0, idx) };
  }

  /** Tables for positions start..start+T−1 (contiguous row views, no copy). */
  at(start: number, T: number): RopeTables {
    if (start + T > this.maxPositions) {
      throw new ArgumentError(`position ${start + T - 1} is beyond the model's maximum of ${this.maxPositions - 1} (max_position_embeddings)`);
    }
    return { cos: this.table.cos.slice(0, start, start + T), sin: this.table.sin.slice(0, start, start + T) };
  }
}

/**
 * A contiguous KV cache: per layer, K and V buffers (B, KVH, maxT, D) allocated once. A forward
 * pass writes its T new positions after the `length` already cached; `advance` commits them.
 */
export class KVCache {
  readonly k: Tensor[];
  readonly v: Tensor[];
  length = 0;

  constructor(readonly layers: number, readonly batch: number, readonly kvHeads: number, readonly maxLength: number, readonly headDim: number) {
    this.k = Array.from({ length: layers }, () => pl.zeros([batch, kvHeads, maxLength, headDim]));
    this.v = Array.from({ length: layers }, () => pl.zeros([batch, kvHeads, maxLength, headDim]));
  }

  /** Writes k, v (B, KVH, T, D) at positions [length, length+T) of `layer`; returns all cached
   *  keys and values so far (B, KVH, length+T, D). */
  append(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const [B, KVH, T, D] = k.shape;
    if (B !== this.batch || KVH !== this.kvHeads || D !== this.headDim) {
      throw new ShapeError(`KV cache holds (${this.batch}, ${this.kvHeads}, ·, ${this.headDim}); got keys ${pl.formatShape(k.shape)}`);
    }
    if (this.length + T > this.maxLength) {
      throw new ArgumentError(`KV cache is full: ${this.length} + ${T} tokens exceed its ${this.maxLength} positions`);
    }
    for (const [src, buf] of [[k, this.k[layer]], [v, this.v[layer]]] as const) {
      const s = src.data() as Float32Array;
      const dst = buf.storage as Float32Array;
      for (let bh = 0; bh < B * KVH; bh++) {
        dst.set(s.subarray(bh * T * D, (bh + 1) * T * D), (bh * this.maxLength + this.length) * D);
      }
    }
    const end = this.length + T;
    return [this.k[layer].slice(2, 0, end), this.v[layer].slice(2, 0, end)];
  }

  /** This cache as a paged pool of B blocks of maxLength positions (block b holds sequence b), for
   *  a call writing T positions after `length`: the paged kernels then write the new keys and
   *  values in place and attend over the cache without copying it. */
  paged(T: number): PagedAttentionInputs {
    const B = this.batch;
    const L = this.length;
    if (L + T > this.maxLength) {
      throw new ArgumentError(`KV cache is full: ${L} + ${T} tokens exceed its ${this.maxLength} positions`);
    }
    // the same for every layer of a forward pass: built once
    if (this.pagedCall?.length === L && this.pagedCall.T === T) return this.pagedCall.inputs;
    const positions = new Int32Array(B * T);
    const slots = new Int32Array(B * T);
    const queryStart = new Int32Array(B + 1);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        positions[b * T + t] = L + t;
        slots[b * T + t] = b * this.maxLength + L + t;
      }
      queryStart[b + 1] = (b + 1) * T;
    }
    const inputs: PagedAttentionInputs = {
      kPools: this.k.map((x) => x.storage as Float32Array),
      vPools: this.v.map((x) => x.storage as Float32Array),
      numBlocks: B,
      blockSize: this.maxLength,
      positions,
      slots,
      blockTables: Int32Array.from({ length: B }, (_, b) => b),
      maxBlocks: 1,
      queryStart,
      contextLens: new Int32Array(B).fill(L + T),
    };
    this.pagedCall = { length: L, T, inputs };
    return inputs;
  }

  private pagedCall: { length: number; T: number; inputs: PagedAttentionInputs } | null = null;

  /** Commits the positions written by the last forward pass. */
  advance(T: number): void {
    this.length += T;
  }

  reset(): void {
    this.length = 0;
  }
}

/**
 * The metadata of a causal decoder call over T new tokens: after a contiguous cache's contents, or
 * at the positions of a paged batch, or from position 0. `rotary` is null for models without
 * rotary positions.
 */
export function causalMetadata(T: number, cache: KVCache | null, paged: PagedAttentionInputs | null,
  rotary: RotaryEmbedding | null): AttentionMetadata {
  if (cache && paged) throw new ArgumentError('a forward pass takes either a KV cache or a paged batch, not both');
  if (paged && paged.positions.length !== T) {
    throw new ShapeError(`paged batch: ${paged.positions.length} positions for ${T} input tokens`);
  }
  const past = cache?.length ?? 0;
  const rope = rotary ? (paged ? rotary.gather(paged.positions) : rotary.at(past, T)) : null;
  return { causal: true, pastLength: past, rope, cache, paged };
}

/** Absolute positions (T) of a call's tokens, i32, each below maxPositions: for learned position
 *  embeddings. */
export function positionIds(meta: AttentionMetadata, T: number, maxPositions: number): Tensor {
  const ids = meta.paged ? new Tensor(meta.paged.positions, [T], 'i32') : pl.arange(meta.pastLength, meta.pastLength + T, 1, { dtype: 'i32' });
  const d = ids.data() as Int32Array;
  for (let i = 0; i < T; i++) {
    if (d[i] >= maxPositions) throw new ArgumentError(`position ${d[i]} is beyond the model's ${maxPositions} positions`);
  }
  return ids;
}

/**
 * Attention over heads: q (B, H, T, D), k and v (B, KVH, T, D), after the projections.
 * Applies rotary positions, appends to the cache, and attends (grouped-query when KVH < H).
 */
export function attend(layer: number, q: Tensor, k: Tensor, v: Tensor, meta: AttentionMetadata): Tensor {
  if (meta.paged) return pagedAttend(layer, q, k, v, meta.rope, meta.paged);
  // inference over a contiguous cache: the same kernels, over the cache viewed as a paged pool
  const grad = pl.isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad);
  if (meta.cache && meta.causal && !meta.mask && !grad) return pagedAttend(layer, q, k, v, meta.rope, meta.cache.paged(q.shape[2]));
  if (meta.rope) {
    q = pl.rope(q, meta.rope.cos, meta.rope.sin);
    k = pl.rope(k, meta.rope.cos, meta.rope.sin);
  }
  if (meta.cache) [k, v] = meta.cache.append(layer, k, v);
  return pl.scaledDotProductAttention(q, k, v, {
    causal: meta.causal && !meta.mask,
    qOffset: meta.pastLength,
    mask: meta.mask ?? null,
  });
}

/**
 * attend() over a paged pool: q (B, H, T, D), k and v (B, KVH, T, D) are views of the projections'
 * token-major (B·T, H·D) outputs, so transposing back is free. Its N = B·T token rows are a packed
 * batch (B = 1) or B sequences of T tokens (a contiguous cache). Writes this call's keys and values
 * into layer `layer`'s pools, then attends each query over its sequence's blocks.
 * Returns (B, H, T, D), a view of a token-major (B, T, H, D) result (so the output projection's
 * reshape is free too). Inference only: no gradient.
 */
function pagedAttend(layer: number, q: Tensor, k: Tensor, v: Tensor, rope: RopeTables | null, p: PagedAttentionInputs): Tensor {
  const [B, H, T, D] = q.shape;
  const N = B * T;
  const KVH = k.shape[1];
  let qt = q.transpose(1, 2); // (B, T, H, D)
  let kt = k.transpose(1, 2); // (B, T, KVH, D)
  if (rope) {
    qt = pl.rope(qt, rope.cos, rope.sin, 'BTHD');
    kt = pl.rope(kt, rope.cos, rope.sin, 'BTHD');
  }
  const kPool = p.kPools[layer];
  const vPool = p.vPools[layer];
  const S = p.contextLens.length;
  const K = kernels();
  K.pagedKVWrite(kt.data() as FloatArray, v.transpose(1, 2).data() as FloatArray, kPool, vPool, p.slots, N, KVH, D, p.blockSize, p.numBlocks);
  const out = Tensor.empty([B, T, H, D], q.dtype);
  K.pagedAttention(qt.data() as FloatArray, kPool, vPool, out.storage as FloatArray, p.blockTables, p.queryStart, p.contextLens,
    S, H, KVH, D, p.blockSize, p.maxBlocks, p.numBlocks, 1 / Math.sqrt(D));
  return out.transpose(1, 2);
}
