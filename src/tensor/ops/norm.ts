// Normalisation: LayerNorm and RMSNorm as fused row kernels with hand-written backward, and
// GroupNorm built from LayerNorm's kernel plus a per-channel affine.
import type { FloatArray } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkFloat, fdata } from './common.js';
import { zeros } from './creation.js';
import { add, mul } from './elementwise.js';
import { reshape } from './movement.js';

function rowsOf(op: string, x: Tensor, C: number, weight?: Tensor | null, bias?: Tensor | null): number {
  if (x.ndim === 0) throw new ShapeError(`${op}: input must have at least one dimension, got ${formatShape(x.shape)}`);
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p && p.size !== C) throw new ShapeError(`${op}: ${name} ${formatShape(p.shape)} must have ${C} elements`);
  }
  return C === 0 ? 0 : x.size / C;
}

/** y = (x − mean)/√(var + eps)·weight + bias over the last dim (biased variance). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  checkFloat('layerNorm', x, ...[weight, bias].filter((t): t is Tensor => !!t));
  const C = x.shape[x.ndim - 1];
  const rows = rowsOf('layerNorm', x, C, weight, bias);
  const xd = fdata(x);
  const wd = weight ? fdata(weight) : null;
  const out = Tensor.empty(x.shape, x.dtype);
  const meanBuf = Tensor.empty([rows], x.dtype);
  const rstdBuf = Tensor.empty([rows], x.dtype);
  kernels().layerNorm(xd, wd, bias ? fdata(bias) : null, out.storage as FloatArray,
    meanBuf.storage as FloatArray, rstdBuf.storage as FloatArray, rows, C, eps);
  const inputs = [x, weight, bias].filter((t): t is Tensor => !!t);
  if (needsGrad(...inputs)) {
    record(out, 'layerNorm', inputs, (g) => {
      const dx = Tensor.empty(x.shape, x.dtype);
      const dw = weight ? zeros([C], { dtype: x.dtype }) : null;
      const db = bias ? zeros([C], { dtype: x.dtype }) : null;
      kernels().layerNormBackward(xd, wd, meanBuf.storage as FloatArray, rstdBuf.storage as FloatArray, fdata(g),
        dx.storage as FloatArray, (dw?.storage ?? null) as FloatArray | null, (db?.storage ?? null) as FloatArray | null, rows, C);
      const grads: Tensor[] = [dx];
      if (weight && dw) grads.push(reshape(dw, weight.shape as number[]));
      if (bias && db) grads.push(reshape(db, bias.shape as number[]));
      return grads;
    });
  }
  return out;
}

/** y = x/√(mean(x²) + eps)·weight over the last dim. */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  checkFloat('rmsNorm', x, ...(weight ? [weight] : []));
  const C = x.shape[x.ndim - 1];
  const rows = rowsOf('rmsNorm', x, C, weight);
  const xd = fdata(x);
  const wd = weight ? fdata(weight) : null;
  const out = Tensor.empty(x.shape, x.dtype);
  const rstdBuf = Tensor.empty([rows], x.dtype);
  kernels().rmsNorm(xd, wd, out.storage as FloatArray, rstdBuf.storage as FloatArray, rows, C, eps);
  const inputs = weight ? [x, weight] : [x];
  if (needsGrad(...inputs)) {
    record(out, 'rmsNorm', inputs, (g) => {
      const dx = Tensor.empty(x.shape, x.dtype);
      const dw = weight ? zeros([C], { dtype: x.dtype }) : null;
      kernels().rmsNormBackward(xd, wd, rstdBuf.storage as FloatArray, fdata(g), dx.storage as FloatArray,
        (dw?.storage ?? null) as FloatArray | null, rows, C);
      return weight && dw ? [dx, reshape(dw, weight.shape as number[])] : [dx];
    });
  }
  return out;
}

/** GroupNorm over (B, C, …): statistics per (batch, group of C/G channels), then a per-channel affine. */
export function groupNorm(x: Tensor, groups: number, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  if (x.ndim < 2) throw new ShapeError(`groupNorm: input must be (B, C, …), got ${formatShape(x.shape)}`);
  const [B, C] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new ShapeError(`groupNorm: ${C} channels cannot be split into ${groups} groups`);
  }
  // (B, C, …) → (B, G, C/G·…): each row is one group of one sample
  const normed = reshape(layerNorm(reshape(x, [B, groups, -1]), null, null, eps), x.shape as number[]);
  const affine = [1, C, ...new Array<number>(x.ndim - 2).fill(1)];
  let y = weight ? mul(normed, reshape(weight, affine)) : normed;
  if (bias) y = add(y, reshape(bias, affine));
  return y;
}
