// The Tensor: a strided view (shape, strides, offset) over flat typed-array storage, with an
// optional autograd record. Views share storage; ops that need a flat buffer call `contiguous()`.
import { kernels } from '../backend/index.js';
import { ArgumentError, DTypeError, IndexOutOfRangeError } from '../errors.js';
import { type GradFn, runBackward } from './autograd.js';
import { allocate, isFloat, type DType, type Storage } from './dtype.js';
import * as ops from './ops/index.js';

export type Shape = readonly number[];
type Scalar = number;
type Operand = Tensor | number;

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkedNumel(shape: Shape): number {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ArgumentError(`invalid shape ${formatShape(shape)}: dimensions must be non-negative integers`);
  }
  return numel(shape);
}

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export class Tensor {
  readonly shape: Shape;
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  readonly storage: Storage;
  /** Whether gradients flow to this tensor. Set it on leaves (parameters); ops set it on outputs. */
  requiresGrad = false;
  /** The accumulated gradient of a leaf after backward(). */
  grad: Tensor | null = null;
  /** How this tensor was computed (null for leaves and for tensors made without grad). */
  gradFn: GradFn | null = null;
  /** Keep .grad on this non-leaf tensor too (see retainGrad()). */
  retainsGrad = false;
  readonly size: number;

  constructor(storage: Storage, shape: Shape, dtype: DType, strides?: readonly number[], offset = 0) {
    this.storage = storage;
    this.shape = shape;
    this.dtype = dtype;
    this.strides = strides ?? contiguousStrides(shape);
    this.offset = offset;
    this.size = numel(shape);
  }

  /** A new contiguous tensor whose contents are unspecified (like torch.empty): for outputs that
   *  a kernel overwrites completely. */
  static empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    return new Tensor(allocate(dtype, checkedNumel(shape), false), shape, dtype);
  }

  /** A new contiguous zero-filled tensor. */
  static zeros(shape: Shape, dtype: DType = 'f32'): Tensor {
    return new Tensor(allocate(dtype, checkedNumel(shape)), shape, dtype);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i];
    }
    return true;
  }

  /**
   * The elements as a flat row-major typed array: the storage itself (or a subarray of it, no copy)
   * when the tensor is contiguous, else a fresh copy. Writing to it writes the tensor only in the
   * first case; use it to read, and to hand inputs to kernels.
   */
  data(): Storage {
    if (this.isContiguous()) {
      if (this.offset === 0 && this.storage.length === this.size) return this.storage;
      return this.storage.subarray(this.offset, this.offset + this.size);
    }
    const out = allocate(this.dtype, this.size, false);
    if (this.size > 0) kernels().copyStrided(this.storage.subarray(this.offset), out, [...this.shape], [...this.strides]);
    return out;
  }

  /** The storage from this tensor's first element (for strided kernels). */
  view0(): Storage {
    return this.offset === 0 ? this.storage : this.storage.subarray(this.offset);
  }

  /** The elements as a new Float32Array (converted from any dtype). */
  toFloat32Array(): Float32Array {
    const d = this.data();
    if (this.dtype === 'f32') return d === this.storage ? new Float32Array(d as Float32Array) : (d as Float32Array).slice();
    const out = new Float32Array(this.size);
    if (this.size > 0) kernels().cast(d, this.dtype, out, 'f32', this.size);
    return out;
  }

  /** The elements as nested JavaScript arrays (a number for a 0-d tensor). */
  toArray(): unknown {
    const flat = this.dtype === 'f16' || this.dtype === 'bf16' ? this.toFloat32Array() : this.data();
    if (this.shape.length === 0) return flat[0];
    const build = (dim: number, start: number): unknown[] => {
      const n = this.shape[dim];
      const out = new Array<unknown>(n);
      if (dim === this.shape.length - 1) {
        for (let i = 0; i < n; i++) out[i] = flat[start + i];
      } else {
        const step = numel(this.shape.slice(dim + 1));
        for (let i = 0; i < n; i++) out[i] = build(dim + 1, start + i * step);
      }
      return out;
    };
    return build(0, 0);
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ArgumentError(`item() needs a tensor with one element; this one has shape ${formatShape(this.shape)}`);
    if (this.dtype === 'f16' || this.dtype === 'bf16') return this.toFloat32Array()[0];
    return this.storage[this.offset];
  }

  /** Back-propagates from this tensor (a scalar, or any shape with an explicit `gradient`). */
  backward(gradient?: Tensor): void {
    runBackward(this, gradient, {
      add: (a, b) => ops.add(a, b),
      addInPlace: (acc, g) => ops.addInPlace(acc, g),
      clone: (t) => ops.clone(t),
      ones: (like) => ops.full(like.shape, 1, like.dtype),
    });
  }

  /** A tensor sharing this one's storage, cut off from the graph. */
  detach(): Tensor {
    return new Tensor(this.storage, this.shape, this.dtype, this.strides, this.offset);
  }

  /** Sets requiresGrad (on a leaf) and returns this, for chaining. */
  requiresGrad_(flag = true): this {
    if (flag && !isFloat(this.dtype)) throw new DTypeError(`requiresGrad needs a float tensor (f32 or f64), not ${this.dtype}`);
    this.requiresGrad = flag;
    return this;
  }

  /** Keep .grad on this intermediate tensor after backward(). */
  retainGrad(): this {
    this.retainsGrad = true;
    return this;
  }

  toString(): string {
    return `Tensor(shape=${formatShape(this.shape)}, dtype=${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- methods mirroring the op functions ------------------------------------------------------
  contiguous(): Tensor { return ops.contiguous(this); }
  clone(): Tensor { return ops.clone(this); }
  to(dtype: DType): Tensor { return ops.cast(this, dtype); }
  float(): Tensor { return ops.cast(this, 'f32'); }
  reshape(...shape: (number | number[])[]): Tensor { return ops.reshape(this, flatShape(shape)); }
  view(...shape: (number | number[])[]): Tensor { return ops.view(this, flatShape(shape)); }
  flatten(startDim = 0, endDim = -1): Tensor { return ops.flatten(this, startDim, endDim); }
  squeeze(dim?: number): Tensor { return ops.squeeze(this, dim); }
  unsqueeze(dim: number): Tensor { return ops.unsqueeze(this, dim); }
  transpose(dim0 = -2, dim1 = -1): Tensor { return ops.transpose(this, dim0, dim1); }
  get T(): Tensor { return ops.transpose(this, -2, -1); }
  permute(...dims: (number | number[])[]): Tensor { return ops.permute(this, flatShape(dims)); }
  slice(dim: number, start: number, end?: number, step = 1): Tensor { return ops.slice(this, dim, start, end, step); }
  narrow(dim: number, start: number, length: number): Tensor { return ops.slice(this, dim, start, start + length); }
  select(dim: number, index: number): Tensor { return ops.select(this, dim, index); }
  expand(...shape: (number | number[])[]): Tensor { return ops.expand(this, flatShape(shape)); }
  repeat(...reps: (number | number[])[]): Tensor { return ops.repeat(this, flatShape(reps)); }
  split(sizeOrSections: number | number[], dim = 0): Tensor[] { return ops.split(this, sizeOrSections, dim); }
  indexSelect(dim: number, index: Tensor): Tensor { return ops.indexSelect(this, dim, index); }
  gather(dim: number, index: Tensor): Tensor { return ops.gather(this, dim, index); }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return ops.scatterAdd(this, dim, index, src); }

  add(other: Operand): Tensor { return ops.add(this, other); }
  sub(other: Operand): Tensor { return ops.sub(this, other); }
  mul(other: Operand): Tensor { return ops.mul(this, other); }
  div(other: Operand): Tensor { return ops.div(this, other); }
  pow(exponent: Operand): Tensor { return ops.pow(this, exponent); }
  maximum(other: Operand): Tensor { return ops.maximum(this, other); }
  minimum(other: Operand): Tensor { return ops.minimum(this, other); }
  eq(other: Operand): Tensor { return ops.eq(this, other); }
  lt(other: Operand): Tensor { return ops.lt(this, other); }
  gt(other: Operand): Tensor { return ops.gt(this, other); }
  neg(): Tensor { return ops.neg(this); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  sqrt(): Tensor { return ops.sqrt(this); }
  rsqrt(): Tensor { return ops.rsqrt(this); }
  abs(): Tensor { return ops.abs(this); }
  square(): Tensor { return ops.square(this); }
  tanh(): Tensor { return ops.tanh(this); }
  sigmoid(): Tensor { return ops.sigmoid(this); }
  relu(): Tensor { return ops.relu(this); }
  gelu(approximate: 'tanh' | 'none' = 'none'): Tensor { return ops.gelu(this, approximate); }
  silu(): Tensor { return ops.silu(this); }
  clamp(min: number | null, max: number | null = null): Tensor { return ops.clamp(this, min, max); }
  maskedFill(mask: Tensor, value: Scalar): Tensor { return ops.maskedFill(this, mask, value); }

  sum(dim?: number | number[], keepdim = false): Tensor { return ops.sum(this, dim, keepdim); }
  mean(dim?: number | number[], keepdim = false): Tensor { return ops.mean(this, dim, keepdim); }
  max(dim?: number | number[], keepdim = false): Tensor { return ops.max(this, dim, keepdim); }
  min(dim?: number | number[], keepdim = false): Tensor { return ops.min(this, dim, keepdim); }
  argmax(dim?: number, keepdim = false): Tensor { return ops.argmax(this, dim, keepdim); }
  argmin(dim?: number, keepdim = false): Tensor { return ops.argmin(this, dim, keepdim); }
  var(dim?: number | number[], options: { correction?: number; keepdim?: boolean } = {}): Tensor { return ops.variance(this, dim, options); }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return ops.logsumexp(this, dim, keepdim); }
  softmax(dim = -1): Tensor { return ops.softmax(this, dim); }
  logSoftmax(dim = -1): Tensor { return ops.logSoftmax(this, dim); }
  matmul(other: Tensor): Tensor { return ops.matmul(this, other); }
}

function flatShape(args: (number | number[])[]): number[] {
  if (args.length === 1 && Array.isArray(args[0])) return args[0];
  return args as number[];
}

/** Normalises a possibly negative dimension index; names the op on error. */
export function normDim(op: string, dim: number, ndim: number): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(dim) || d < 0 || d >= Math.max(ndim, 1)) {
    throw new IndexOutOfRangeError(`${op}: dimension ${dim} is out of range for a tensor with ${ndim} dimensions`);
  }
  return d;
}
