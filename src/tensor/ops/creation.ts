// Creating tensors: from JavaScript data, constant fills, ranges and random draws.
import { kernels } from '../../backend/index.js';
import { ArgumentError, DTypeError, ShapeError } from '../../errors.js';
import { allocate, checkDType, type DType } from '../dtype.js';
import { fillNormal, fillUniform } from '../random.js';
import { formatShape, numel, type Shape, Tensor } from '../tensor.js';

export interface CreateOptions {
  dtype?: DType;
  requiresGrad?: boolean;
}

type Nested = number | boolean | Nested[];
export type TensorData = Nested | ArrayLike<number> | Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array;

function finish(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

function flatten(data: Nested, shape: number[], out: number[], dim = 0): void {
  if (dim === shape.length) {
    if (typeof data !== 'number' && typeof data !== 'boolean') throw new ShapeError(`tensor(): ragged nested array: expected a number at depth ${dim}`);
    out.push(Number(data));
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[dim]) {
    throw new ShapeError(`tensor(): ragged nested array: expected ${shape[dim]} entries at depth ${dim}`);
  }
  for (const x of data) flatten(x, shape, out, dim + 1);
}

/**
 * A tensor from nested arrays, a flat array or typed array (with `shape`), or a number (0-d).
 * The default dtype is f32, or the typed array's own (Int32Array → i32, Float64Array → f64).
 */
export function tensor(data: TensorData, opts: CreateOptions & { shape?: Shape } = {}): Tensor {
  let flat: ArrayLike<number>;
  let shape: number[];
  let dtype: DType | undefined = opts.dtype ? checkDType(opts.dtype) : undefined;
  if (ArrayBuffer.isView(data)) {
    flat = data as ArrayLike<number>;
    shape = opts.shape ? [...opts.shape] : [flat.length];
    if (!dtype) dtype = data instanceof Int32Array ? 'i32' : data instanceof Float64Array ? 'f64' : data instanceof Uint8Array ? 'u8' : 'f32';
    if (data instanceof Uint16Array && !opts.dtype) throw new DTypeError('tensor(): a Uint16Array holds f16 or bf16 bits; say which with { dtype }');
  } else if (typeof data === 'number' || typeof data === 'boolean') {
    flat = [Number(data)];
    shape = opts.shape ? [...opts.shape] : [];
  } else if (Array.isArray(data) && opts.shape) {
    const out: number[] = [];
    flatten(data as Nested, inferShape(data as Nested), out);
    flat = out;
    shape = [...opts.shape];
  } else if (Array.isArray(data)) {
    shape = inferShape(data as Nested);
    const out: number[] = [];
    flatten(data as Nested, shape, out);
    flat = out;
  } else {
    flat = Array.from(data as ArrayLike<number>);
    shape = opts.shape ? [...opts.shape] : [flat.length];
  }
  dtype ??= 'f32';
  if (numel(shape) !== flat.length) {
    throw new ShapeError(`tensor(): ${flat.length} values do not fill shape ${formatShape(shape)} (${numel(shape)} elements)`);
  }
  const t = Tensor.empty(shape, dtype);
  if (dtype === 'f16' || dtype === 'bf16') {
    if (data instanceof Uint16Array) (t.storage as Uint16Array).set(data);
    else {
      const f = Float32Array.from(flat);
      if (f.length) kernels().cast(f, 'f32', t.storage, dtype, f.length);
    }
  } else {
    (t.storage as Float32Array).set(flat);
  }
  return finish(t, opts);
}

/** A tensor with unspecified contents (like torch.empty). */
export function empty(shape: Shape, opts: CreateOptions = {}): Tensor {
  return finish(Tensor.empty(shape, opts.dtype ?? 'f32'), opts);
}

export function zeros(shape: Shape, opts: CreateOptions = {}): Tensor {
  return finish(Tensor.zeros(shape, opts.dtype ?? 'f32'), opts);
}

export function full(shape: Shape, value: number, dtypeOrOpts: DType | CreateOptions = {}): Tensor {
  const opts = typeof dtypeOrOpts === 'string' ? { dtype: dtypeOrOpts } : dtypeOrOpts;
  const t = Tensor.zeros(shape, opts.dtype ?? 'f32');
  if (t.size === 0 || value === 0) return finish(t, opts);
  if (t.dtype === 'f16' || t.dtype === 'bf16') {
    const f = new Float32Array([value]);
    const bits = new Uint16Array(1);
    kernels().cast(f, 'f32', bits, t.dtype, 1);
    kernels().fill(t.storage, bits[0], t.size);
  } else {
    kernels().fill(t.storage, value, t.size);
  }
  return finish(t, opts);
}

export function ones(shape: Shape, opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function zerosLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  return zeros(t.shape, { dtype: t.dtype, ...opts });
}

export function onesLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  return ones(t.shape, { dtype: t.dtype, ...opts });
}

/** Values start, start+step, … below end (like torch.arange). Default dtype: i32 for integer
 *  arguments, else f32. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0) throw new ArgumentError('arange(): step must not be zero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? (Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step) ? 'i32' : 'f32');
  const storage = allocate(dtype, n);
  for (let i = 0; i < n; i++) storage[i] = start + i * step;
  return finish(new Tensor(storage, [n], dtype), opts);
}

function randomFloat(shape: Shape, opts: CreateOptions, fill: (out: Float32Array | Float64Array) => void): Tensor {
  const dtype = opts.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f64') throw new DTypeError(`random tensors are f32 or f64, not ${dtype}`);
  const t = Tensor.empty(shape, dtype);
  fill(t.storage as Float32Array | Float64Array);
  return finish(t, opts);
}

/** Uniform in [0, 1), from the global seeded stream (see manualSeed). */
export function rand(shape: Shape, opts: CreateOptions = {}): Tensor {
  return randomFloat(shape, opts, (out) => fillUniform(out));
}

/** Uniform in [low, high). */
export function uniform(shape: Shape, low: number, high: number, opts: CreateOptions = {}): Tensor {
  return randomFloat(shape, opts, (out) => fillUniform(out, low, high));
}

/** Standard normal, from the global seeded stream. */
export function randn(shape: Shape, opts: CreateOptions & { mean?: number; std?: number } = {}): Tensor {
  return randomFloat(shape, opts, (out) => fillNormal(out, opts.mean ?? 0, opts.std ?? 1));
}

/** Uniform integers in [low, high), dtype i32. */
export function randint(low: number, high: number, shape: Shape): Tensor {
  const u = new Float64Array(numel(shape));
  fillUniform(u, low, high);
  const out = Tensor.empty(shape, 'i32');
  const s = out.storage as Int32Array;
  for (let i = 0; i < u.length; i++) s[i] = Math.min(high - 1, Math.floor(u[i]));
  return out;
}
