// Paged KV cache kernels (vLLM's PagedAttention): keys and values live in fixed-size blocks of a
// shared pool, and each sequence's block table maps its positions to blocks.
import { ArgumentError } from '../../errors.js';
import type { FloatArray } from '../backend.js';

/** k, v (N, KVH, D) → kPool, vPool (numBlocks, KVH, blockSize, D) at the slots of the N tokens. */
export function pagedKVWrite(k: FloatArray, v: FloatArray, kPool: FloatArray, vPool: FloatArray, slots: Int32Array,
  N: number, KVH: number, D: number, blockSize: number, numBlocks: number): void {
  for (let n = 0; n < N; n++) {
    const slot = slots[n];
    if (slot < 0) continue;
    const block = Math.floor(slot / blockSize);
    const offset = slot % blockSize;
    if (block >= numBlocks) throw new ArgumentError(`pagedKVWrite: slot ${slot} is outside the pool of ${numBlocks} blocks`);
    for (let kh = 0; kh < KVH; kh++) {
      const src = (n * KVH + kh) * D; // k, v are (N, KVH, D)
      const dst = ((block * KVH + kh) * blockSize + offset) * D; // pools are (numBlocks, KVH, blockSize, D)
      for (let d = 0; d < D; d++) {
        kPool[dst + d] = k[src + d];
        vPool[dst + d] = v[src + d];
      }
    }
  }
}

/**
 * For query row i of sequence s (absolute position p = contextLens[s] − (queryStart[s+1] − i)),
 * head h, key/value head kh = ⌊h/(H/KVH)⌋, over keys j = 0..p:
 *   s_j = scale·q·k_j;  out = Σ_j softmax(s)_j v_j
 */
export function pagedAttention(q: FloatArray, kPool: FloatArray, vPool: FloatArray, out: FloatArray,
  blockTables: Int32Array, queryStart: Int32Array, contextLens: Int32Array,
  S: number, H: number, KVH: number, D: number, blockSize: number, maxBlocks: number, numBlocks: number,
  scale: number): void {
  const groupSize = H / KVH;
  for (let s = 0; s < S; s++) {
    const ctx = contextLens[s];
    const scores = new Float64Array(ctx);
    for (let i = queryStart[s]; i < queryStart[s + 1]; i++) {
      const p = ctx - (queryStart[s + 1] - i); // absolute position of query row i
      if (p < 0) throw new ArgumentError(`pagedAttention: sequence ${s} has more query tokens than context (${ctx})`);
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / groupSize);
        const qo = (i * H + h) * D; // q, out are (N, H, D)
        let max = -Infinity;
        for (let j = 0; j <= p; j++) {
          const block = blockTables[s * maxBlocks + Math.floor(j / blockSize)];
          if (block < 0 || block >= numBlocks) throw new ArgumentError(`pagedAttention: block ${block} of sequence ${s} is outside the pool of ${numBlocks} blocks`);
          const ko = ((block * KVH + kh) * blockSize + (j % blockSize)) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * kPool[ko + d];
          scores[j] = scale * dot;
          if (scores[j] > max) max = scores[j];
        }
        let sum = 0;
        for (let j = 0; j <= p; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j <= p; j++) {
            const block = blockTables[s * maxBlocks + Math.floor(j / blockSize)];
            acc += scores[j] * vPool[((block * KVH + kh) * blockSize + (j % blockSize)) * D + d];
          }
          out[qo + d] = acc / sum;
        }
      }
    }
  }
}
