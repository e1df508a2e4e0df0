// Movement: views (reshape, transpose, permute, slice, expand) that share storage where the layout
// allows, copies (contiguous, cat, repeat), and indexing (indexSelect, gather, scatterAdd, embedding).
import { kernels } from '../../backend/index.js';
import { ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { isFloat, type DType } from '../dtype.js';
import { contiguousStrides, formatShape, normDim, numel, type Shape, Tensor } from '../tensor.js';
import { checkFloat, checkIndexDType, fdata } from './common.js';
import { arange, zeros } from './creation.js';
import { sumToShape } from './reduce.js';

// ---- copies ----------------------------------------------------------------------------------

/** t itself when already contiguous, else a contiguous copy. */
export function contiguous(t: Tensor): Tensor {
  if (t.isContiguous()) return t;
  return clone(t);
}

/** A copy with its own contiguous storage; gradients pass straight through. */
export function clone(t: Tensor): Tensor {
  const out = Tensor.empty(t.shape, t.dtype);
  if (t.size > 0) {
    if (t.isContiguous()) (out.storage as Float32Array).set(t.data() as Float32Array);
    else kernels().copyStrided(t.view0(), out.storage, [...t.shape], [...t.strides]);
  }
  if (needsGrad(t)) record(out, 'clone', [t], (g) => [g]);
  return out;
}

/** Converts to another dtype. f32↔f64 keeps the graph; f16/bf16/i32/u8 are storage conversions. */
export function cast(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  const out = Tensor.empty(t.shape, dtype);
  if (t.size > 0) kernels().cast(t.data(), t.dtype, out.storage, dtype, t.size);
  if (isFloat(dtype) && isFloat(t.dtype) && needsGrad(t)) {
    const from = t.dtype;
    record(out, 'cast', [t], (g) => [cast(g, from)]);
  }
  return out;
}

// ---- views -----------------------------------------------------------------------------------

function resolveShape(op: string, t: Tensor, shape: readonly number[]): number[] {
  const out = [...shape];
  const infer = out.indexOf(-1);
  if (out.lastIndexOf(-1) !== infer) throw new ShapeError(`${op}: only one dimension can be -1 in ${formatShape(shape)}`);
  if (infer >= 0) {
    const rest = numel(out.filter((_, i) => i !== infer));
    if (rest === 0 || t.size % rest !== 0) throw new ShapeError(`${op}: cannot reshape ${formatShape(t.shape)} (${t.size} elements) into ${formatShape(shape)}`);
    out[infer] = t.size / rest;
  }
  for (const d of out) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${op}: invalid shape ${formatShape(shape)}`);
  }
  if (numel(out) !== t.size) throw new ShapeError(`${op}: cannot reshape ${formatShape(t.shape)} (${t.size} elements) into ${formatShape(shape)} (${numel(out)} elements)`);
  return out;
}

function viewOf(t: Tensor, shape: Shape, strides: readonly number[], offset: number, name: string,
  backward: (g: Tensor) => Tensor): Tensor {
  const out = new Tensor(t.storage, shape, t.dtype, strides, offset);
  if (needsGrad(t)) record(out, name, [t], (g) => [backward(g)]);
  return out;
}

/** Same elements in a new shape: a view when t is contiguous, else a copy. One dim may be -1. */
export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const s = resolveShape('reshape', t, shape);
  const src = contiguous(t);
  const inShape = t.shape;
  return viewOf(src, s, contiguousStrides(s), src.offset, 'reshape', (g) => reshape(g, inShape as number[]));
}

/** Like reshape, but never copies: a non-contiguous tensor is an error. */
export function view(t: Tensor, shape: readonly number[]): Tensor {
  if (!t.isContiguous()) {
    throw new ShapeError(`view: the tensor of shape ${formatShape(t.shape)} is not contiguous; use reshape() or call contiguous() first`);
  }
  return reshape(t, shape);
}

export function flatten(t: Tensor, startDim = 0, endDim = -1): Tensor {
  if (t.ndim === 0) return reshape(t, [1]);
  const s = normDim('flatten', startDim, t.ndim);
  const e = normDim('flatten', endDim, t.ndim);
  if (e < s) throw new ArgumentError(`flatten: endDim ${endDim} comes before startDim ${startDim}`);
  const shape = [...t.shape.slice(0, s), numel(t.shape.slice(s, e + 1)), ...t.shape.slice(e + 1)];
  return reshape(t, shape);
}

export function squeeze(t: Tensor, dim?: number): Tensor {
  if (dim === undefined) return reshape(t, t.shape.filter((d) => d !== 1));
  const d = normDim('squeeze', dim, t.ndim);
  if (t.shape[d] !== 1) return t;
  return reshape(t, t.shape.filter((_, i) => i !== d));
}

export function unsqueeze(t: Tensor, dim: number): Tensor {
  const d = normDim('unsqueeze', dim, t.ndim + 1);
  const shape = [...t.shape];
  shape.splice(d, 0, 1);
  const strides = [...t.strides];
  strides.splice(d, 0, d < t.ndim ? t.strides[d] * t.shape[d] : 1);
  const inShape = [...t.shape];
  return viewOf(t, shape, strides, t.offset, 'unsqueeze', (g) => reshape(g, inShape));
}

/** Reorders dimensions (a view): out dim i is t's dim dims[i]. */
export function permute(t: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== t.ndim) throw new ShapeError(`permute: ${dims.length} dims given for a tensor with ${t.ndim} dimensions`);
  const d = dims.map((x) => normDim('permute', x, t.ndim));
  if (new Set(d).size !== d.length) throw new ShapeError(`permute: dims ${formatShape(dims)} repeat a dimension`);
  const inverse = new Array<number>(d.length);
  d.forEach((x, i) => (inverse[x] = i));
  return viewOf(t, d.map((x) => t.shape[x]), d.map((x) => t.strides[x]), t.offset, 'permute', (g) => permute(g, inverse));
}

export function transpose(t: Tensor, dim0 = -2, dim1 = -1): Tensor {
  if (t.ndim < 2 && dim0 === -2 && dim1 === -1) return t;
  const a = normDim('transpose', dim0, t.ndim);
  const b = normDim('transpose', dim1, t.ndim);
  const dims = [...t.shape.keys()];
  dims[a] = b;
  dims[b] = a;
  return permute(t, dims);
}

/** Elements start, start+step, … below end along dim (Python slice rules, negatives count from
 *  the end), as a view. */
export function slice(t: Tensor, dim: number, start: number, end?: number, step = 1): Tensor {
  const d = normDim('slice', dim, t.ndim);
  const n = t.shape[d];
  if (!Number.isInteger(step) || step < 1) throw new ArgumentError(`slice: step must be a positive integer, got ${step}`);
  const clampIdx = (i: number) => Math.min(n, Math.max(0, i < 0 ? i + n : i));
  const s = clampIdx(start);
  const e = end === undefined ? n : clampIdx(end);
  const len = Math.max(0, Math.ceil((e - s) / step));
  const shape = [...t.shape];
  shape[d] = len;
  const strides = [...t.strides];
  strides[d] = t.strides[d] * step;
  const inShape = [...t.shape];
  return viewOf(t, shape, strides, t.offset + s * t.strides[d], 'slice', (g) => {
    const dx = zeros(inShape, { dtype: g.dtype });
    if (len === 0) return dx;
    const outer = numel(inShape.slice(0, d));
    const inner = numel(inShape.slice(d + 1));
    const gd = fdata(g);
    if (step === 1) {
      // dx (outer, n, inner) is zero except rows s..s+len of each outer slice, which are g's.
      const dst = dx.storage as Float32Array;
      const rows = len * inner;
      for (let o = 0; o < outer; o++) dst.set(gd.subarray(o * rows, (o + 1) * rows), (o * n + s) * inner);
    } else {
      const idx = arange(s, s + len * step, step);
      kernels().indexAdd(gd, idx.storage as Int32Array, dx.storage as Float32Array, outer, n, len, inner);
    }
    return dx;
  });
}

/** Index `index` along dim, removing that dim (a view). */
export function select(t: Tensor, dim: number, index: number): Tensor {
  const d = normDim('select', dim, t.ndim);
  const n = t.shape[d];
  const i = index < 0 ? index + n : index;
  if (!Number.isInteger(index) || i < 0 || i >= n) {
    throw new IndexOutOfRangeError(`select: index ${index} is out of range for dimension ${dim} of size ${n}`);
  }
  return squeeze(slice(t, d, i, i + 1), d);
}

/** Broadcasts size-1 dims (and new leading dims) to `shape` without copying; -1 keeps a size. */
export function expand(t: Tensor, shape: readonly number[]): Tensor {
  if (shape.length < t.ndim) throw new ShapeError(`expand: target ${formatShape(shape)} has fewer dims than ${formatShape(t.shape)}`);
  const lead = shape.length - t.ndim;
  const outShape = new Array<number>(shape.length);
  const strides = new Array<number>(shape.length);
  for (let i = 0; i < shape.length; i++) {
    const src = i >= lead ? t.shape[i - lead] : 1;
    const want = shape[i] === -1 ? src : shape[i];
    if (i < lead && shape[i] === -1) throw new ShapeError(`expand: -1 is not allowed for a new leading dimension in ${formatShape(shape)}`);
    if (src !== want && src !== 1) throw new ShapeError(`expand: cannot expand ${formatShape(t.shape)} to ${formatShape(shape)}`);
    outShape[i] = want;
    strides[i] = i < lead || (src === 1 && want !== 1) ? 0 : t.strides[i - lead];
  }
  const inShape = [...t.shape];
  return viewOf(t, outShape, strides, t.offset, 'expand', (g) => sumToShape(g, inShape));
}

/** Tiles t: repeat([2, 3]) of a (a, b) tensor is (2a, 3b) (torch.Tensor.repeat). */
export function repeat(t: Tensor, reps: readonly number[]): Tensor {
  if (reps.length < t.ndim) throw new ShapeError(`repeat: ${reps.length} repeat counts for a tensor with ${t.ndim} dims`);
  const src = reshape(t, [...new Array<number>(reps.length - t.ndim).fill(1), ...t.shape]);
  // (d0, d1, …) → (1, d0, 1, d1, …) → expand to (r0, d0, r1, d1, …) → (r0·d0, r1·d1, …)
  const interleaved: number[] = [];
  const expanded: number[] = [];
  src.shape.forEach((d, i) => {
    interleaved.push(1, d);
    expanded.push(reps[i], d);
  });
  return reshape(contiguous(expand(reshape(src, interleaved), expanded)), src.shape.map((d, i) => d * reps[i]));
}

// ---- joining and splitting -------------------------------------------------------------------

/** Concatenates along dim; all other dims must match. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new ArgumentError('cat: needs at least one tensor');
  const first = tensors[0];
  const d = normDim('cat', dim, first.ndim);
  for (const t of tensors) {
    if (t.dtype !== first.dtype) throw new DTypeError(`cat: tensors have different dtypes, ${first.dtype} and ${t.dtype}`);
    if (t.ndim !== first.ndim || t.shape.some((x, i) => i !== d && x !== first.shape[i])) {
      throw new ShapeError(`cat: shapes ${formatShape(first.shape)} and ${formatShape(t.shape)} differ outside dimension ${dim}`);
    }
  }
  const shape = [...first.shape];
  shape[d] = tensors.reduce((s, t) => s + t.shape[d], 0);
  const out = Tensor.empty(shape, first.dtype);
  const outer = numel(shape.slice(0, d));
  const inner = numel(shape.slice(d + 1));
  const rowOut = shape[d] * inner;
  const dst = out.storage as Float32Array;
  let at = 0;
  for (const t of tensors) {
    const src = t.data() as Float32Array;
    const row = t.shape[d] * inner;
    if (outer === 1) dst.set(src, at);
    else for (let o = 0; o < outer; o++) dst.set(src.subarray(o * row, (o + 1) * row), o * rowOut + at);
    at += row;
  }
  if (needsGrad(...tensors)) {
    record(out, 'cat', [...tensors], (g) => {
      const grads: Tensor[] = [];
      let s = 0;
      for (const t of tensors) {
        grads.push(contiguous(slice(g, d, s, s + t.shape[d])));
        s += t.shape[d];
      }
      return grads;
    });
  }
  return out;
}

/** Joins equally shaped tensors along a new dim. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new ArgumentError('stack: needs at least one tensor');
  const d = normDim('stack', dim, tensors[0].ndim + 1);
  return cat(tensors.map((t) => unsqueeze(t, d)), d);
}

/** Splits into chunks of `size` (the last may be smaller), or into the given section sizes. Views. */
export function split(t: Tensor, sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
  const d = normDim('split', dim, t.ndim);
  const n = t.shape[d];
  let sizes: number[];
  if (typeof sizeOrSections === 'number') {
    if (!Number.isInteger(sizeOrSections) || sizeOrSections < 1) throw new ArgumentError(`split: chunk size must be a positive integer, got ${sizeOrSections}`);
    sizes = [];
    for (let s = 0; s < n; s += sizeOrSections) sizes.push(Math.min(sizeOrSections, n - s));
  } else {
    sizes = [...sizeOrSections];
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== n) throw new ShapeError(`split: sections ${formatShape(sizes)} sum to ${total}, but dimension ${dim} has size ${n}`);
  }
  const out: Tensor[] = [];
  let s = 0;
  for (const size of sizes) {
    out.push(slice(t, d, s, s + size));
    s += size;
  }
  return out;
}

// ---- indexing --------------------------------------------------------------------------------

/** Throws unless every index lies in [0, bound). */
export function checkIndices(op: string, idx: Int32Array, bound: number, what = 'index'): void {
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    if (v < 0 || v >= bound) throw new IndexOutOfRangeError(`${op}: ${what} ${v} is out of range [0, ${bound})`);
  }
}

/** Slices of x along dim picked by a 1-D index tensor. */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  checkFloat('indexSelect', x);
  checkIndexDType('indexSelect', index);
  if (index.ndim > 1) throw new ShapeError(`indexSelect: index must be 1-D, got shape ${formatShape(index.shape)}`);
  const d = normDim('indexSelect', dim, x.ndim);
  const idx = index.data() as Int32Array;
  const X = x.shape[d];
  checkIndices('indexSelect', idx, X);
  const outer = numel(x.shape.slice(0, d));
  const inner = numel(x.shape.slice(d + 1));
  const shape = [...x.shape];
  shape[d] = idx.length;
  const out = Tensor.empty(shape, x.dtype);
  if (out.size > 0) kernels().indexSelect(fdata(x), idx, out.storage as Float32Array, outer, X, idx.length, inner);
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    record(out, 'indexSelect', [x], (g) => {
      const dx = zeros(inShape, { dtype: g.dtype });
      if (g.size > 0) kernels().indexAdd(fdata(g), idx, dx.storage as Float32Array, outer, X, idx.length, inner);
      return [dx];
    });
  }
  return out;
}

/** Rows of an embedding table: weight (V, C), ids of any shape → (…ids.shape, C). */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (weight.ndim !== 2) throw new ShapeError(`embedding: weight must be (V, C), got ${formatShape(weight.shape)}`);
  checkIndexDType('embedding', ids);
  const flat = reshape(ids, [ids.size]);
  const idx = flat.data() as Int32Array;
  checkIndices('embedding', idx, weight.shape[0], 'token id');
  return reshape(indexSelect(weight, 0, flat), [...ids.shape, weight.shape[1]]);
}

/** out[…, j, …] = x[…, index[…, j, …], …] along dim (torch.gather); index has x's rank and is no
 *  larger than x in the other dims. */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  checkFloat('gather', x);
  checkIndexDType('gather', index);
  const d = normDim('gather', dim, x.ndim);
  if (index.ndim !== x.ndim) throw new ShapeError(`gather: index ${formatShape(index.shape)} must have the same number of dims as input ${formatShape(x.shape)}`);
  for (let i = 0; i < x.ndim; i++) {
    if (i !== d && index.shape[i] > x.shape[i]) throw new ShapeError(`gather: index ${formatShape(index.shape)} is larger than input ${formatShape(x.shape)} in dimension ${i}`);
  }
  // Narrow x to the index's extent in the other dims, so both read as (outer, ·, inner).
  let src = x;
  for (let i = 0; i < x.ndim; i++) if (i !== d && index.shape[i] < x.shape[i]) src = slice(src, i, 0, index.shape[i]);
  const X = x.shape[d];
  const idx = index.data() as Int32Array;
  checkIndices('gather', idx, X);
  const outer = numel(index.shape.slice(0, d));
  const inner = numel(index.shape.slice(d + 1));
  const n = index.shape[d];
  const out = Tensor.empty(index.shape, x.dtype);
  if (out.size > 0) kernels().gather(fdata(src), idx, out.storage as Float32Array, outer, X, n, inner);
  if (needsGrad(src)) {
    const srcShape = [...src.shape];
    record(out, 'gather', [src], (g) => {
      const dx = zeros(srcShape, { dtype: g.dtype });
      if (g.size > 0) kernels().scatterAdd(fdata(g), idx, dx.storage as Float32Array, outer, X, n, inner);
      return [dx];
    });
  }
  return out;
}

/** A copy of x with src added at the positions index names along dim (torch.scatter_add). */
export function scatterAdd(x: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  checkFloat('scatterAdd', x, src);
  checkIndexDType('scatterAdd', index);
  const d = normDim('scatterAdd', dim, x.ndim);
  if (index.ndim !== x.ndim || src.ndim !== x.ndim) throw new ShapeError(`scatterAdd: input ${formatShape(x.shape)}, index ${formatShape(index.shape)} and src ${formatShape(src.shape)} must have the same number of dims`);
  for (let i = 0; i < x.ndim; i++) {
    if (index.shape[i] !== src.shape[i] || (i !== d && index.shape[i] !== x.shape[i])) {
      throw new ShapeError(`scatterAdd: index ${formatShape(index.shape)} must equal src ${formatShape(src.shape)} and match input ${formatShape(x.shape)} outside dimension ${dim}`);
    }
  }
  const X = x.shape[d];
  const idx = index.data() as Int32Array;
  checkIndices('scatterAdd', idx, X);
  const outer = numel(index.shape.slice(0, d));
  const inner = numel(index.shape.slice(d + 1));
  const n = index.shape[d];
  const out = Tensor.empty(x.shape, x.dtype);
  (out.storage as Float32Array).set(fdata(x));
  if (src.size > 0) kernels().scatterAdd(fdata(src), idx, out.storage as Float32Array, outer, X, n, inner);
  if (needsGrad(x, src)) {
    record(out, 'scatterAdd', [x, src], (g) => [g, gather(g, d, index)]);
  }
  return out;
}

