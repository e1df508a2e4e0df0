// Reductions over any set of dims (sum, mean, max, min, argmax, var, logsumexp) and the row-wise
// softmax family.
import type { ReduceOp } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ArgumentError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { normDim, numel, type Shape, Tensor } from '../tensor.js';
import { checkFloat, fdata, sameShape } from './common.js';
import { div, eq, log, mul, sub, where } from './elementwise.js';
import { contiguous, expand, reshape, transpose } from './movement.js';

function normDims(op: string, x: Tensor, dim: number | readonly number[] | undefined): number[] {
  if (dim === undefined) return [...x.shape.keys()];
  const list = typeof dim === 'number' ? [dim] : [...dim];
  const dims = [...new Set(list.map((d) => normDim(op, d, x.ndim)))];
  return dims.sort((a, b) => a - b);
}

function keptShape(shape: Shape, dims: readonly number[]): number[] {
  return shape.map((d, i) => (dims.includes(i) ? 1 : d));
}

function outShape(shape: Shape, dims: readonly number[], keepdim: boolean): number[] {
  return keepdim ? keptShape(shape, dims) : shape.filter((_, i) => !dims.includes(i));
}

/**
 * Runs a value reduction (sum, sumSquares, max, min) over `dims` of x, one run of adjacent dims per
 * kernel call, returning a contiguous tensor of the keepdim shape.
 */
function reduceValues(op: ReduceOp, x: Tensor, dims: readonly number[]): Tensor {
  let cur = contiguous(x);
  let shape = [...x.shape];
  let i = dims.length - 1;
  while (i >= 0) {
    let a = dims[i];
    const b = dims[i];
    while (i > 0 && dims[i - 1] === a - 1) a = dims[--i];
    i--;
    const outer = numel(shape.slice(0, a));
    const R = numel(shape.slice(a, b + 1));
    const inner = numel(shape.slice(b + 1));
    const next = shape.map((d, j) => (j >= a && j <= b ? 1 : d));
    const out = Tensor.empty(next, x.dtype);
    if (out.size > 0) {
      kernels().reduce(op, fdata(cur), out.storage as Float32Array, outer, R, inner);
    }
    // After the first run, further reductions of max/min reduce values; sumSquares sums them.
    if (op === 'sumSquares') op = 'sum';
    cur = out;
    shape = next;
  }
  return cur;
}

/** Sums a broadcast gradient back to `shape` (the inverse of broadcasting to g's shape). */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  if (dims.length === 0) return reshape(g, shape as number[]);
  return reshape(reduceValues('sum', g, dims), shape as number[]);
}

/** Sum over dims (all by default). */
export function sum(x: Tensor, dim?: number | readonly number[], keepdim = false): Tensor {
  checkFloat('sum', x);
  const dims = normDims('sum', x, dim);
  const out = reshape(reduceValues('sum', x, dims).detach(), outShape(x.shape, dims, keepdim));
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    const kept = keptShape(x.shape, dims);
    record(out, 'sum', [x], (g) => [contiguous(expand(reshape(g, kept), inShape))]);
  }
  return out;
}

/** Mean over dims (all by default). */
export function mean(x: Tensor, dim?: number | readonly number[], keepdim = false): Tensor {
  const dims = normDims('mean', x, dim);
  const n = numel(dims.map((d) => x.shape[d]));
  return mul(sum(x, dims, keepdim), 1 / n);
}

function extremum(op: 'max' | 'min', x: Tensor, dim: number | readonly number[] | undefined, keepdim: boolean): Tensor {
  checkFloat(op, x);
  const dims = normDims(op, x, dim);
  if (x.size === 0) throw new ArgumentError(`${op}: cannot reduce an empty tensor`);
  const kept = reduceValues(op, x, dims).detach();
  const out = reshape(kept, outShape(x.shape, dims, keepdim));
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    // The gradient is shared evenly among the elements that attain the extremum (like torch.amax).
    record(out, op, [x], (g) => {
      const hit = eq(x.detach(), expand(kept, inShape));
      const count = sum(hit, dims, true);
      return [mul(hit, expand(div(reshape(g, kept.shape as number[]), count), inShape))];
    });
  }
  return out;
}

/** Maximum over dims (all by default); the gradient goes to the maximal elements. */
export function max(x: Tensor, dim?: number | readonly number[], keepdim = false): Tensor {
  return extremum('max', x, dim, keepdim);
}

export function min(x: Tensor, dim?: number | readonly number[], keepdim = false): Tensor {
  return extremum('min', x, dim, keepdim);
}

function argExtremum(op: 'argmax' | 'argmin', x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
  checkFloat(op, x);
  if (x.size === 0) throw new ArgumentError(`${op}: cannot reduce an empty tensor`);
  const src = dim === undefined ? reshape(x, [x.size]) : contiguous(x);
  const d = dim === undefined ? 0 : normDim(op, dim, x.ndim);
  const outer = numel(src.shape.slice(0, d));
  const inner = numel(src.shape.slice(d + 1));
  const out = Tensor.empty(dim === undefined ? [] : outShape(x.shape, [d], keepdim), 'i32');
  kernels().reduce(op, fdata(src), out.storage as Int32Array, outer, src.shape[d], inner);
  return out;
}

/** Index of the first maximum along dim (over the flattened tensor when dim is omitted); i32. */
export function argmax(x: Tensor, dim?: number, keepdim = false): Tensor {
  return argExtremum('argmax', x, dim, keepdim);
}

export function argmin(x: Tensor, dim?: number, keepdim = false): Tensor {
  return argExtremum('argmin', x, dim, keepdim);
}

/** Variance over dims with Bessel's correction by default (correction 1), like torch.var. */
export function variance(x: Tensor, dim?: number | readonly number[], options: { correction?: number; keepdim?: boolean } = {}): Tensor {
  const dims = normDims('var', x, dim);
  const n = numel(dims.map((d) => x.shape[d]));
  const correction = options.correction ?? 1;
  const centered = sub(x, mean(x, dims, true));
  return div(sum(mul(centered, centered), dims, options.keepdim ?? false), Math.max(0, n - correction));
}

/** log Σ exp(x) over dims, stable: the max is subtracted first (and carries no gradient). */
export function logsumexp(x: Tensor, dim: number | readonly number[], keepdim = false): Tensor {
  const dims = normDims('logsumexp', x, dim);
  const m = max(x.detach(), dims, true);
  const finite = where(eq(m, Infinity), 0, where(eq(m, -Infinity), 0, m));
  const s = log(sum(x.sub(finite).exp(), dims, true)).add(finite);
  return keepdim ? s : reshape(s, outShape(x.shape, dims, false));
}

// ---- softmax ---------------------------------------------------------------------------------

function softmaxFamily(x: Tensor, dim: number, logOut: boolean): Tensor {
  const name = logOut ? 'logSoftmax' : 'softmax';
  checkFloat(name, x);
  const d = normDim(name, dim, x.ndim);
  const last = x.ndim - 1;
  if (d !== last) return transpose(softmaxFamily(transpose(x, d, last), last, logOut), d, last);
  const src = contiguous(x);
  const C = x.ndim === 0 ? 1 : x.shape[last];
  const rows = C === 0 ? 0 : x.size / C;
  const out = Tensor.empty(x.shape, x.dtype);
  if (out.size > 0) kernels().softmax(fdata(src), out.storage as Float32Array, rows, C, logOut);
  if (needsGrad(x)) {
    record(out, name, [x], (g) => {
      const dx = Tensor.empty(x.shape, x.dtype);
      if (dx.size > 0) kernels().softmaxBackward(out.storage as Float32Array, fdata(g), dx.storage as Float32Array, rows, C, logOut);
      return [dx];
    });
  }
  return out;
}

/** exp(x) / Σ exp(x) along dim. */
export function softmax(x: Tensor, dim = -1): Tensor {
  return softmaxFamily(x, dim, false);
}

/** x − logsumexp(x) along dim. */
export function logSoftmax(x: Tensor, dim = -1): Tensor {
  return softmaxFamily(x, dim, true);
}
