// Helpers shared by the op families: dtype checks, broadcasting, reducing a gradient back to the
// shape of a broadcast operand.
import type { FloatArray } from '../../backend/backend.js';
import { DTypeError, ShapeError } from '../../errors.js';
import { isFloat } from '../dtype.js';
import { formatShape, type Shape, Tensor } from '../tensor.js';

/** Throws unless t has a float compute dtype (f32, or f64 for gradient checks). */
export function checkFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (!isFloat(t.dtype)) {
      throw new DTypeError(`${op} does not take dtype ${t.dtype}: it computes in f32 (or f64); convert with .to('f32')`);
    }
  }
  for (let i = 1; i < ts.length; i++) {
    if (ts[i].dtype !== ts[0].dtype) throw new DTypeError(`${op}: operands have different dtypes, ${ts[0].dtype} and ${ts[i].dtype}`);
  }
}

export function checkIndexDType(op: string, t: Tensor): void {
  if (t.dtype !== 'i32') throw new DTypeError(`${op}: indices must have dtype i32, not ${t.dtype}`);
}

/** The contiguous float data of t, for a kernel input. */
export function fdata(t: Tensor): FloatArray {
  return t.data() as FloatArray;
}

/** The broadcast shape of a and b (NumPy rules), or a ShapeError naming the op and both shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${formatShape(a)} and ${formatShape(b)} cannot be broadcast together`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read t as if it had the (broadcast) shape `shape`: 0 on broadcast dims. */
export function broadcastStrides(t: Tensor, shape: Shape): number[] {
  const n = shape.length;
  const out = new Array<number>(n).fill(0);
  const lead = n - t.shape.length;
  for (let i = 0; i < t.shape.length; i++) {
    out[lead + i] = t.shape[i] === 1 && shape[lead + i] !== 1 ? 0 : t.strides[i];
  }
  return out;
}

export function sameShape(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
