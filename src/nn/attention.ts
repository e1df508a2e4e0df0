// What every attention layer shares: the attention-metadata object (where this call's tokens sit,
// which mask, which cache), rotary tables, a contiguous KV cache, and `attend`, which applies rotary
// positions, appends to the cache and runs scaled dot-product attention. The same model code runs
// training and cached decoding: only the metadata differs.
import { ArgumentError, ShapeError } from '../errors.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

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
}

/** Precomputed rotary tables for positions 0..maxPositions−1; rows are sliced per call. */
export class RotaryEmbedding {
  private readonly table: RopeTables;

  constructor(readonly headDim: number, readonly maxPositions: number, readonly theta = 10000) {
    const positions = new Float64Array(maxPositions).map((_, i) => i);
    this.table = pl.ropeTables(positions, headDim, theta);
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

  /** Commits the positions written by the last forward pass. */
  advance(T: number): void {
    this.length += T;
  }

  reset(): void {
    this.length = 0;
  }
}

/**
 * Attention over heads: q (B, H, T, D), k and v (B, KVH, T, D), after the projections.
 * Applies rotary positions, appends to the cache, and attends (grouped-query when KVH < H).
 */
export function attend(layer: number, q: Tensor, k: Tensor, v: Tensor, meta: AttentionMetadata): Tensor {
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
