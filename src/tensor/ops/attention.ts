// Attention: scaled dot-product attention (fused, FlashAttention-style, for causal and
// bidirectional attention; written out in ops for an explicit mask) with grouped-query heads, and
// rotary position embeddings.
import type { FloatArray } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ArgumentError, DTypeError, ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkFloat, fdata } from './common.js';
import { add, mul, where } from './elementwise.js';
import { reshape, transpose, unsqueeze } from './movement.js';
import { matmul } from './matmul.js';
import { softmax } from './reduce.js';

export interface AttentionOptions {
  /** Query i attends to keys up to its own absolute position (default false). */
  causal?: boolean;
  /** Explicit mask broadcastable to (B, H, Tq, Tk): u8 (nonzero = may attend) or an additive float mask. */
  mask?: Tensor | null;
  /** Score scale (default 1/√D). */
  scale?: number;
  /** Absolute position of the first query, for causal attention over a KV cache (default Tk − Tq). */
  qOffset?: number;
}

function checkShapes(q: Tensor, k: Tensor, v: Tensor): [number, number, number, number, number, number] {
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) {
    throw new ShapeError(`scaledDotProductAttention: q, k, v must be (B, H, T, D); got ${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  }
  const [B, H, Tq, D] = q.shape;
  const [Bk, KVH, Tk, Dk] = k.shape;
  if (Bk !== B || Dk !== D || v.shape[0] !== B || v.shape[1] !== KVH || v.shape[2] !== Tk || v.shape[3] !== D) {
    throw new ShapeError(`scaledDotProductAttention: k ${formatShape(k.shape)} and v ${formatShape(v.shape)} do not fit q ${formatShape(q.shape)}`);
  }
  if (KVH < 1 || H % KVH !== 0) {
    throw new ShapeError(`scaledDotProductAttention: ${H} query heads cannot share ${KVH} key/value heads evenly`);
  }
  return [B, H, KVH, Tq, Tk, D];
}

/**
 * softmax(q·kᵀ·scale + mask)·v for q (B, H, Tq, D) and k, v (B, KVH, Tk, D), where query head h
 * uses key/value head ⌊h/(H/KVH)⌋ — grouped-query attention without repeating K and V.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  checkFloat('scaledDotProductAttention', q, k, v);
  const [B, H, KVH, Tq, Tk, D] = checkShapes(q, k, v);
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const causal = options.causal ?? false;
  const qOffset = options.qOffset ?? Tk - Tq;
  if (options.mask) {
    if (causal) throw new ArgumentError('scaledDotProductAttention: give either causal or an explicit mask, not both');
    return maskedAttention(q, k, v, options.mask, scale, [B, H, KVH, Tq, Tk, D]);
  }
  if (causal && (!Number.isInteger(qOffset) || qOffset < 0)) {
    throw new ArgumentError(`scaledDotProductAttention: qOffset must be a non-negative integer, got ${qOffset}`);
  }
  const qd = fdata(q);
  const kd = fdata(k);
  const vd = fdata(v);
  const out = Tensor.empty([B, H, Tq, D], q.dtype);
  const lse = Tensor.empty([B, H, Tq], q.dtype);
  if (out.size > 0) {
    kernels().attention(qd, kd, vd, out.storage as FloatArray, lse.storage as FloatArray, B, H, KVH, Tq, Tk, D, scale, causal, qOffset);
  }
  if (needsGrad(q, k, v)) {
    record(out, 'scaledDotProductAttention', [q, k, v], (g) => {
      const dq = Tensor.empty(q.shape, q.dtype);
      const dk = Tensor.empty(k.shape, k.dtype);
      const dv = Tensor.empty(v.shape, v.dtype);
      if (out.size > 0) {
        kernels().attentionBackward(qd, kd, vd, out.storage as FloatArray, lse.storage as FloatArray, fdata(g),
          dq.storage as FloatArray, dk.storage as FloatArray, dv.storage as FloatArray, B, H, KVH, Tq, Tk, D, scale, causal, qOffset);
      }
      return [dq, dk, dv];
    });
  }
  return out;
}

/** The materialised path, in primitives (so it inherits their gradients): used for explicit masks. */
function maskedAttention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: number,
  [B, H, KVH, Tq, Tk, D]: number[]): Tensor {
  const rep = H / KVH;
  // q (B,H,Tq,D) → (B,KVH,rep,Tq,D); k, v (B,KVH,Tk,D) → (B,KVH,1,Tk,D), broadcast over rep
  const qg = reshape(q, [B, KVH, rep, Tq, D]);
  const kg = unsqueeze(k, 2);
  const vg = unsqueeze(v, 2);
  let scores = reshape(mul(matmul(qg, transpose(kg, -2, -1)), scale), [B, H, Tq, Tk]);
  if (mask.dtype === 'u8' || mask.dtype === 'i32') scores = where(mask, scores, -Infinity);
  else if (mask.dtype === 'f32' || mask.dtype === 'f64') scores = add(scores, mask);
  else throw new DTypeError(`scaledDotProductAttention: mask dtype ${mask.dtype} is not u8, i32 or float`);
  const p = reshape(softmax(scores, -1), [B, KVH, rep, Tq, Tk]);
  return reshape(matmul(p, vg), [B, H, Tq, D]);
}

/** cos and sin tables (T, D/2) for rotary embeddings at the given positions:
 *  angle[t, j] = positions[t] · θ^(−2j/D). */
export function ropeTables(positions: ArrayLike<number>, headDim: number, theta = 10000, dtype: 'f32' | 'f64' = 'f32'): { cos: Tensor; sin: Tensor } {
  if (headDim % 2 !== 0) throw new ShapeError(`rope: head dimension ${headDim} must be even`);
  const half = headDim / 2;
  const T = positions.length;
  const cos = Tensor.empty([T, half], dtype);
  const sin = Tensor.empty([T, half], dtype);
  const c = cos.storage as FloatArray;
  const s = sin.storage as FloatArray;
  for (let j = 0; j < half; j++) {
    const invFreq = 1 / Math.pow(theta, (2 * j) / headDim);
    for (let t = 0; t < T; t++) {
      const a = positions[t] * invFreq;
      c[t * half + j] = Math.cos(a);
      s[t * half + j] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * Rotary position embedding (Hugging Face rotate_half convention) of x (B, H, T, D), or of
 * x (B, T, H, D) with layout 'BTHD', using cos/sin tables (T, D/2) from ropeTables.
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, layout: 'BHTD' | 'BTHD' = 'BHTD'): Tensor {
  checkFloat('rope', x, cos, sin);
  if (x.ndim !== 4) throw new ShapeError(`rope: x must be 4-D (${layout}), got ${formatShape(x.shape)}`);
  const [B, A, C, D] = x.shape;
  const [N, T, G] = layout === 'BHTD' ? [B * A, C, 1] : [B, A, C];
  if (cos.ndim !== 2 || cos.shape[0] !== T || cos.shape[1] * 2 !== D || sin.shape[0] !== T || sin.shape[1] * 2 !== D) {
    throw new ShapeError(`rope: tables ${formatShape(cos.shape)} / ${formatShape(sin.shape)} must be (T=${T}, D/2=${D / 2}) for x ${formatShape(x.shape)}`);
  }
  const cd = fdata(cos);
  const sd = fdata(sin);
  const out = Tensor.empty(x.shape, x.dtype);
  if (out.size > 0) kernels().rope(fdata(x), cd, sd, out.storage as FloatArray, N, T, G, D, false);
  if (needsGrad(x)) {
    record(out, 'rope', [x], (g) => {
      const dx = Tensor.empty(x.shape, x.dtype);
      if (dx.size > 0) kernels().rope(fdata(g), cd, sd, dx.storage as FloatArray, N, T, G, D, true);
      return [dx];
    });
  }
  return out;
}
