// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): scale every gradient by
// min(1, maxNorm / (‖g‖ + 1e-6)) where ‖g‖ is the L2 norm over all of them together.
import type { FloatArray } from '../backend/backend.js';
import { kernels } from '../backend/index.js';
import type { Tensor } from '../tensor/index.js';

/** Clips in place and returns the total norm before clipping. */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const k = kernels();
  const partial = new Float64Array(1);
  let sq = 0;
  for (const p of params) {
    if (!p.grad || p.grad.size === 0) continue;
    const out = p.grad.dtype === 'f64' ? partial : new Float32Array(1);
    k.reduce('sumSquares', p.grad.data() as FloatArray, out, 1, p.grad.size, 1);
    sq += out[0];
  }
  const norm = Math.sqrt(sq);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const p of params) {
      if (!p.grad || p.grad.size === 0) continue;
      const g = p.grad.data() as FloatArray;
      k.unary('mulScalar', g, g, g.length, coef, 0);
    }
  }
  return norm;
}
