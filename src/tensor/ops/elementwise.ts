// Elementwise ops with broadcasting: arithmetic, comparisons, activations, where/maskedFill,
// dropout and the fused SwiGLU gate.
import type { BinaryOp, FloatArray, UnaryOp } from '../../backend/backend.js';
import { kernels } from '../../backend/index.js';
import { ArgumentError, ShapeError } from '../../errors.js';
import { needsGrad, record } from '../autograd.js';
import { reserve } from '../random.js';
import { formatShape, Tensor } from '../tensor.js';
import { broadcastShapes, broadcastStrides, checkFloat, fdata, sameShape } from './common.js';
import { full } from './creation.js';
import { sumToShape } from './reduce.js';

type Operand = Tensor | number;

function scalarLike(v: number, like: Tensor): Tensor {
  return full([], v, like.dtype);
}

// ---- unary -----------------------------------------------------------------------------------

function unaryOp(op: UnaryOp, x: Tensor, p0 = 0, p1 = 0): Tensor {
  checkFloat(op, x);
  const out = Tensor.empty(x.shape, x.dtype);
  const xd = fdata(x);
  if (out.size > 0) kernels().unary(op, xd, out.storage as FloatArray, out.size, p0, p1);
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      const dx = Tensor.empty(x.shape, x.dtype);
      if (dx.size > 0) kernels().unaryBackward(op, xd, out.storage as FloatArray, fdata(g), dx.storage as FloatArray, dx.size, p0, p1);
      return [dx];
    });
  }
  return out;
}

export const neg = (x: Tensor): Tensor => unaryOp('neg', x);
export const exp = (x: Tensor): Tensor => unaryOp('exp', x);
export const log = (x: Tensor): Tensor => unaryOp('log', x);
export const sqrt = (x: Tensor): Tensor => unaryOp('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unaryOp('rsqrt', x);
export const abs = (x: Tensor): Tensor => unaryOp('abs', x);
export const square = (x: Tensor): Tensor => unaryOp('square', x);
export const reciprocal = (x: Tensor): Tensor => unaryOp('reciprocal', x);
export const sin = (x: Tensor): Tensor => unaryOp('sin', x);
export const cos = (x: Tensor): Tensor => unaryOp('cos', x);
export const sign = (x: Tensor): Tensor => unaryOp('sign', x);
export const tanh = (x: Tensor): Tensor => unaryOp('tanh', x);
export const sigmoid = (x: Tensor): Tensor => unaryOp('sigmoid', x);
export const relu = (x: Tensor): Tensor => unaryOp('relu', x);
/** x·sigmoid(x). */
export const silu = (x: Tensor): Tensor => unaryOp('silu', x);

/** GELU: exact (erf) by default, or the tanh approximation (GPT-2's "gelu_new") with 'tanh'. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return unaryOp(approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', x);
}

/** min(max(x, min), max); null leaves a side open. */
export function clamp(x: Tensor, min: number | null, max: number | null = null): Tensor {
  return unaryOp('clamp', x, min ?? -Infinity, max ?? Infinity);
}

// ---- binary ----------------------------------------------------------------------------------

function binaryForward(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  checkFloat(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = Tensor.empty(shape, a.dtype);
  if (out.size > 0) {
    kernels().binary(op, a.view0() as FloatArray, broadcastStrides(a, shape), b.view0() as FloatArray,
      broadcastStrides(b, shape), out.storage as FloatArray, shape);
  }
  return out;
}

function toTensors(a: Operand, b: Operand): [Tensor, Tensor] {
  if (a instanceof Tensor && b instanceof Tensor) return [a, b];
  if (a instanceof Tensor) return [a, scalarLike(b as number, a)];
  if (b instanceof Tensor) return [scalarLike(a, b), b];
  throw new ArgumentError('elementwise ops need at least one tensor operand');
}

/** a + b, broadcasting. */
export function add(a: Operand, b: Operand): Tensor {
  if (a instanceof Tensor && typeof b === 'number') return unaryOp('addScalar', a, b);
  if (typeof a === 'number' && b instanceof Tensor) return unaryOp('addScalar', b, a);
  const [x, y] = toTensors(a, b);
  const out = binaryForward('add', x, y);
  if (needsGrad(x, y)) record(out, 'add', [x, y], (g) => [sumToShape(g, x.shape), sumToShape(g, y.shape)]);
  return out;
}

/** a − b, broadcasting. */
export function sub(a: Operand, b: Operand): Tensor {
  if (a instanceof Tensor && typeof b === 'number') return unaryOp('addScalar', a, -b);
  const [x, y] = toTensors(a, b);
  const out = binaryForward('sub', x, y);
  if (needsGrad(x, y)) record(out, 'sub', [x, y], (g) => [sumToShape(g, x.shape), sumToShape(neg(g), y.shape)]);
  return out;
}

/** a ⊙ b, broadcasting. */
export function mul(a: Operand, b: Operand): Tensor {
  if (a instanceof Tensor && typeof b === 'number') return unaryOp('mulScalar', a, b);
  if (typeof a === 'number' && b instanceof Tensor) return unaryOp('mulScalar', b, a);
  const [x, y] = toTensors(a, b);
  const out = binaryForward('mul', x, y);
  if (needsGrad(x, y)) {
    record(out, 'mul', [x, y], (g) => [
      x.requiresGrad ? sumToShape(mul(g, y.detach()), x.shape) : null,
      y.requiresGrad ? sumToShape(mul(g, x.detach()), y.shape) : null,
    ]);
  }
  return out;
}

/** a / b, broadcasting (true division, also by a number). */
export function div(a: Operand, b: Operand): Tensor {
  const [x, y] = toTensors(a, b);
  const out = binaryForward('div', x, y);
  if (needsGrad(x, y)) {
    record(out, 'div', [x, y], (g) => [
      x.requiresGrad ? sumToShape(div(g, y.detach()), x.shape) : null,
      // d(a/b)/db = −a/b² = −out/b
      y.requiresGrad ? sumToShape(neg(div(mul(g, out.detach()), y.detach())), y.shape) : null,
    ]);
  }
  return out;
}

/** a^b: a number exponent uses the scalar kernel; a tensor exponent broadcasts. */
export function pow(a: Operand, b: Operand): Tensor {
  if (a instanceof Tensor && typeof b === 'number') return unaryOp('powScalar', a, b);
  const [x, y] = toTensors(a, b);
  const out = binaryForward('pow', x, y);
  if (needsGrad(x, y)) {
    record(out, 'pow', [x, y], (g) => [
      // d(a^b)/da = b·a^(b−1); d(a^b)/db = a^b·ln a
      x.requiresGrad ? sumToShape(mul(g, mul(y.detach(), pow(x.detach(), sub(y.detach(), 1)))), x.shape) : null,
      y.requiresGrad ? sumToShape(mul(g, mul(out.detach(), log(x.detach()))), y.shape) : null,
    ]);
  }
  return out;
}

function extremum(op: 'maximum' | 'minimum', a: Operand, b: Operand): Tensor {
  const [x, y] = toTensors(a, b);
  const out = binaryForward(op, x, y);
  if (needsGrad(x, y)) {
    record(out, op, [x, y], (g) => {
      // The winner takes the gradient; ties split it evenly (as torch.maximum does).
      const xd = x.detach();
      const yd = y.detach();
      const wx = add(compare(op === 'maximum' ? 'gt' : 'lt', xd, yd), mul(compare('eq', xd, yd), 0.5));
      return [sumToShape(mul(g, wx), x.shape), sumToShape(mul(g, sub(1, wx)), y.shape)];
    });
  }
  return out;
}

export const maximum = (a: Operand, b: Operand): Tensor => extremum('maximum', a, b);
export const minimum = (a: Operand, b: Operand): Tensor => extremum('minimum', a, b);

function compare(op: BinaryOp, a: Operand, b: Operand): Tensor {
  const [x, y] = toTensors(a, b);
  return binaryForward(op, x, y);
}

/** Comparisons give 1 where true and 0 where false, in the operands' float dtype; no gradient. */
export const eq = (a: Operand, b: Operand): Tensor => compare('eq', a, b);
export const ne = (a: Operand, b: Operand): Tensor => compare('ne', a, b);
export const lt = (a: Operand, b: Operand): Tensor => compare('lt', a, b);
export const le = (a: Operand, b: Operand): Tensor => compare('le', a, b);
export const gt = (a: Operand, b: Operand): Tensor => compare('gt', a, b);
export const ge = (a: Operand, b: Operand): Tensor => compare('ge', a, b);

/** acc += g in place (acc contiguous, g broadcastable to it). Used to accumulate gradients. */
export function addInPlace(acc: Tensor, g: Tensor): void {
  checkFloat('addInPlace', acc, g);
  if (!acc.isContiguous()) throw new ShapeError('addInPlace: the accumulator must be contiguous');
  const shape = broadcastShapes('addInPlace', acc.shape, g.shape);
  if (!sameShape(shape, acc.shape)) throw new ShapeError(`addInPlace: cannot add ${formatShape(g.shape)} into ${formatShape(acc.shape)}`);
  if (acc.size === 0) return;
  const a = acc.view0() as FloatArray;
  kernels().binary('add', a, [...acc.strides], g.view0() as FloatArray, broadcastStrides(g, shape), a, shape);
}

// ---- selection -------------------------------------------------------------------------------

/** cond ? a : b elementwise with broadcasting; cond is any dtype (nonzero = true). */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const [x, y] = toTensors(a, b);
  checkFloat('where', x, y);
  const shape = broadcastShapes('where', cond.shape, broadcastShapes('where', x.shape, y.shape));
  const out = Tensor.empty(shape, x.dtype);
  if (out.size > 0) {
    kernels().where(cond.view0(), broadcastStrides(cond, shape), x.view0() as FloatArray, broadcastStrides(x, shape),
      y.view0() as FloatArray, broadcastStrides(y, shape), out.storage as FloatArray, shape);
  }
  if (needsGrad(x, y)) {
    record(out, 'where', [x, y], (g) => [
      x.requiresGrad ? sumToShape(where(cond, g, 0), x.shape) : null,
      y.requiresGrad ? sumToShape(where(cond, 0, g), y.shape) : null,
    ]);
  }
  return out;
}

/** x with `value` wherever mask is nonzero (mask broadcasts to x). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  const out = where(mask, value, x);
  if (!sameShape(out.shape, x.shape)) {
    throw new ShapeError(`maskedFill: mask ${formatShape(mask.shape)} must broadcast to the input ${formatShape(x.shape)}`);
  }
  return out;
}

// ---- fused activations and dropout -----------------------------------------------------------

/** SwiGLU gate: silu(gate) ⊙ up, one fused kernel. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  checkFloat('swiglu', gate, up);
  if (!sameShape(gate.shape, up.shape)) throw new ShapeError(`swiglu: gate ${formatShape(gate.shape)} and up ${formatShape(up.shape)} must have the same shape`);
  const gd = fdata(gate);
  const ud = fdata(up);
  const out = Tensor.empty(gate.shape, gate.dtype);
  if (out.size > 0) kernels().swiglu(gd, ud, out.storage as FloatArray, out.size);
  if (needsGrad(gate, up)) {
    record(out, 'swiglu', [gate, up], (g) => {
      const dgate = Tensor.empty(gate.shape, gate.dtype);
      const dup = Tensor.empty(up.shape, up.dtype);
      if (out.size > 0) kernels().swigluBackward(gd, ud, fdata(g), dgate.storage as FloatArray, dup.storage as FloatArray, out.size);
      return [dgate, dup];
    });
  }
  return out;
}

/** Zeroes each element with probability p and scales the rest by 1/(1−p); identity when not
 *  training. The mask comes from the global seeded stream. */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new ArgumentError(`dropout: probability must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  checkFloat('dropout', x);
  const mask = Tensor.empty(x.shape, x.dtype);
  const { seed, offset } = reserve(x.size);
  if (x.size > 0) kernels().dropoutMask(mask.storage as FloatArray, x.size, p, seed, offset);
  return mul(x, mask);
}
