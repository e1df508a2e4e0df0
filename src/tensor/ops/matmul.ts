// Matrix multiplication: batched, with NumPy/PyTorch broadcasting of the batch dims. Transposed
// views are handed to the GEMM kernel as transpose flags, never copied.
import type { FloatArray } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { formatShape, numel, Tensor } from '../tensor.js';
import { broadcastShapes, checkFloat } from './common.js';
import { add } from './elementwise.js';
import { contiguous, reshape, transpose } from './movement.js';
import { sumToShape } from './reduce.js';

interface MatrixOperand {
  t: Tensor;
  trans: boolean;
}

/** Reads the last two dims of t as a row-major matrix or as the transpose of one; copies only
 *  when neither layout fits. */
function asMatrix(t: Tensor): MatrixOperand {
  const n = t.ndim;
  const R = t.shape[n - 2];
  const C = t.shape[n - 1];
  const sr = t.strides[n - 2];
  const sc = t.strides[n - 1];
  if ((sc === 1 || C === 1) && (sr === C || R === 1)) return { t, trans: false };
  if ((sr === 1 || R === 1) && (sc === R || C === 1)) return { t, trans: true };
  return { t: contiguous(t), trans: false };
}

/** Offsets of each matrix of t over the broadcast batch shape (t's batch strides, 0 where broadcast). */
function batchOffsets(t: Tensor, batch: readonly number[]): number[] {
  const nb = batch.length;
  const lead = nb - (t.ndim - 2);
  const strides = batch.map((d, i) => {
    const j = i - lead;
    return j < 0 || t.shape[j] === 1 ? 0 : t.strides[j];
  });
  const count = numel(batch);
  const offsets = new Array<number>(count);
  for (let p = 0; p < count; p++) {
    let rem = p;
    let off = t.offset;
    for (let i = nb - 1; i >= 0; i--) {
      off += (rem % batch[i]) * strides[i];
      rem = Math.floor(rem / batch[i]);
    }
    offsets[p] = off;
  }
  return offsets;
}

/** A single stride s with offsets[p] = offsets[0] + p·s, or null. */
function uniformStride(offsets: ArrayLike<number>): number | null {
  if (offsets.length < 2) return 0;
  const s = offsets[1] - offsets[0];
  if (s < 0) return null;
  for (let p = 2; p < offsets.length; p++) if (offsets[p] - offsets[p - 1] !== s) return null;
  return s;
}

function matmulND(a: Tensor, b: Tensor): Tensor {
  const M = a.shape[a.ndim - 2];
  const K = a.shape[a.ndim - 1];
  const N = b.shape[b.ndim - 1];
  if (b.shape[b.ndim - 2] !== K) {
    throw new ShapeError(`matmul: shapes ${formatShape(a.shape)} and ${formatShape(b.shape)} do not fit (inner dimensions ${K} and ${b.shape[b.ndim - 2]})`);
  }
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = Tensor.empty([...batch, M, N], a.dtype);
  if (out.size > 0) {
    const A = asMatrix(a);
    const B = asMatrix(b);
    const offA = batchOffsets(A.t, batch);
    const offB = batchOffsets(B.t, batch);
    const sA = uniformStride(offA);
    const sB = uniformStride(offB);
    const count = numel(batch);
    const c = out.storage as FloatArray;
    const k = kernels();
    if (K === 0) {
      k.fill(c, 0, c.length); // an empty sum
    } else if (sA !== null && sB !== null) {
      k.matmul(A.t.storage.subarray(offA[0]) as FloatArray, B.t.storage.subarray(offB[0]) as FloatArray, c,
        M, N, K, A.trans, B.trans, count, sA, sB, M * N, false);
    } else {
      for (let p = 0; p < count; p++) {
        k.matmul(A.t.storage.subarray(offA[p]) as FloatArray, B.t.storage.subarray(offB[p]) as FloatArray,
          c.subarray(p * M * N), M, N, K, A.trans, B.trans, 1, 0, 0, 0, false);
      }
    }
  }
  if (needsGrad(a, b)) {
    record(out, 'matmul', [a, b], (g) => [
      // dA = dC·Bᵀ, dB = Aᵀ·dC, summed over broadcast batch dims
      a.requiresGrad ? sumToShape(matmulND(g, transpose(b.detach(), -2, -1)), a.shape) : null,
      b.requiresGrad ? sumToShape(matmulND(transpose(a.detach(), -2, -1), g), b.shape) : null,
    ]);
  }
  return out;
}

/**
 * Matrix product with torch.matmul semantics: 1-D operands are promoted to a row (left) or a
 * column (right) and that dim removed from the result; batch dims broadcast.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkFloat('matmul', a, b);
  if (a.ndim === 0 || b.ndim === 0) throw new ShapeError(`matmul: operands must have at least one dimension, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  const a2 = a.ndim === 1 ? reshape(a, [1, a.shape[0]]) : a;
  const b2 = b.ndim === 1 ? reshape(b, [b.shape[0], 1]) : b;
  if (b2.ndim === 2 && a2.ndim > 2) {
    // (…, M, K) · (K, N): fold the batch dims into M — one large GEMM instead of many small ones,
    // and the weight gradient becomes one GEMM over all rows instead of a batched one plus a sum.
    const lead = a2.shape.slice(0, -1);
    const K = a2.shape[a2.ndim - 1];
    const y = matmulND(reshape(a2, [-1, K]), b2);
    const out = reshape(y, [...lead, y.shape[1]]);
    return b.ndim === 1 ? reshape(out, out.shape.slice(0, -1)) : out;
  }
  let out = matmulND(a2, b2);
  if (a.ndim === 1 && b.ndim === 1) out = reshape(out, []);
  else if (a.ndim === 1) out = reshape(out, [...out.shape.slice(0, -2), out.shape[out.ndim - 1]]);
  else if (b.ndim === 1) out = reshape(out, out.shape.slice(0, -1));
  return out;
}

/** y = x·Wᵀ + b, the torch.nn.Linear convention: x (…, in), W (out, in), b (out). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const K = x.shape[x.ndim - 1];
  if (weight.ndim === 2 && x.ndim >= 1 && weight.shape[1] === K && K > 0 && x.dtype === weight.dtype &&
      x.isContiguous() && weight.isContiguous() && !needsGrad(x, weight)) {
    // Inference on contiguous operands, as in every decode step: one GEMM on the storages, without
    // the transposed view, reshapes and batch bookkeeping of the general path.
    checkFloat('linear', x, weight);
    const N = weight.shape[0];
    const y = Tensor.empty([...x.shape.slice(0, -1), N], x.dtype);
    if (y.size > 0) {
      kernels().matmul(x.view0() as FloatArray, weight.view0() as FloatArray, y.storage as FloatArray,
        x.size / K, N, K, false, true, 1, 0, 0, 0, false);
    }
    return bias ? add(y, bias) : y;
  }
  const y = matmul(x, transpose(weight, -2, -1));
  return bias ? add(y, bias) : y;
}
