// Losses. Cross-entropy is one fused kernel from logits (log-sum-exp, label smoothing, ignored
// positions) with a hand-written backward; the reduction is ordinary ops on the per-row losses.
import type { FloatArray } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ArgumentError, IndexOutOfRangeError, ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkFloat, checkIndexDType, fdata } from './common.js';
import { div } from './elementwise.js';
import { reshape } from './movement.js';
import { sum } from './reduce.js';

export interface CrossEntropyOptions {
  /** Targets equal to this contribute no loss and no gradient (default −100). */
  ignoreIndex?: number;
  /** Mixes the one-hot target with the uniform distribution: (1−ε)·onehot + ε/V (default 0). */
  labelSmoothing?: number;
  /** 'mean' over the positions not ignored (default), 'sum', or 'none' (per-position losses). */
  reduction?: 'mean' | 'sum' | 'none';
}

/** Per-row cross-entropy losses of logits (N, V) against targets (N); the fused kernel. */
function crossEntropyRows(logits: Tensor, targets: Int32Array, ignoreIndex: number, eps: number): Tensor {
  const [N, V] = logits.shape;
  const ld = fdata(logits);
  const loss = Tensor.empty([N], logits.dtype);
  const lse = Tensor.empty([N], logits.dtype);
  kernels().crossEntropy(ld, targets, loss.storage as FloatArray, lse.storage as FloatArray, N, V, ignoreIndex, eps);
  if (needsGrad(logits)) {
    record(loss, 'crossEntropy', [logits], (g) => {
      const dlogits = Tensor.empty(logits.shape, logits.dtype);
      kernels().crossEntropyBackward(ld, targets, lse.storage as FloatArray, fdata(g), dlogits.storage as FloatArray, N, V, ignoreIndex, eps);
      return [dlogits];
    });
  }
  return loss;
}

/**
 * Cross-entropy between logits (…, V) — class scores in the last dim — and integer targets (…),
 * like torch.nn.functional.cross_entropy with the class dim last.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  checkFloat('crossEntropy', logits);
  checkIndexDType('crossEntropy', targets);
  const ignoreIndex = options.ignoreIndex ?? -100;
  const eps = options.labelSmoothing ?? 0;
  const reduction = options.reduction ?? 'mean';
  if (!(eps >= 0 && eps <= 1)) throw new ArgumentError(`crossEntropy: labelSmoothing must be in [0, 1], got ${eps}`);
  if (logits.ndim < 1) throw new ShapeError('crossEntropy: logits must have a class dimension');
  const V = logits.shape[logits.ndim - 1];
  const lead = logits.shape.slice(0, -1);
  if (targets.ndim !== lead.length || targets.shape.some((d, i) => d !== lead[i])) {
    throw new ShapeError(`crossEntropy: targets ${formatShape(targets.shape)} must match logits ${formatShape(logits.shape)} without its last (class) dimension`);
  }
  const t = targets.data() as Int32Array;
  let kept = 0;
  for (let i = 0; i < t.length; i++) {
    const v = t[i];
    if (v === ignoreIndex) continue;
    if (v < 0 || v >= V) throw new IndexOutOfRangeError(`crossEntropy: target ${v} is out of range [0, ${V}) (and is not the ignore index ${ignoreIndex})`);
    kept++;
  }
  const rows = crossEntropyRows(reshape(logits, [t.length, V]), t, ignoreIndex, eps);
  if (reduction === 'none') return reshape(rows, lead as number[]);
  const total = sum(rows);
  if (reduction === 'sum') return total;
  // All positions ignored: 0/0 = NaN, as PyTorch gives.
  return div(total, kept);
}
