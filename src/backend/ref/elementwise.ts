// Elementwise kernels: unary ops and their derivatives, broadcasting binary ops, where.
import type { AnyArray, BinaryOp, FloatArray, UnaryOp } from '../backend.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = 1 / Math.SQRT2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const GELU_C = 0.044715;

/**
 * erf(x) in double precision. JS has none; the series
 *   erf(x) = 2/√π · e^(−x²) · Σ_n 2^n x^(2n+1) / (1·3·…·(2n+1))
 * has only positive terms (no cancellation), so its sum is accurate to a few ulps for any |x|.
 * Beyond |x| = 6, 1 − |erf(x)| < 2.2e-17 is below half an ulp of 1.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
  return x < 0 ? -r : r;
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** y = op(x) for one element. */
function unaryOne(op: UnaryOp, x: number, p0: number, p1: number): number {
  switch (op) {
    case 'neg': return -x;
    case 'exp': return Math.exp(x);
    case 'log': return Math.log(x);
    case 'sqrt': return Math.sqrt(x);
    case 'rsqrt': return 1 / Math.sqrt(x);
    case 'abs': return Math.abs(x);
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return sigmoid(x);
    case 'relu': return Math.max(x, 0); // Math.max keeps NaN, as torch.relu does
    // gelu_tanh: 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))
    case 'gelu_tanh': return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
    // gelu_erf: 0.5 x (1 + erf(x/√2))
    case 'gelu_erf': return 0.5 * x * (1 + erf(x * INV_SQRT_2));
    case 'silu': return x * sigmoid(x);
    case 'powScalar': return Math.pow(x, p0);
    case 'addScalar': return x + p0;
    case 'mulScalar': return x * p0;
    case 'clamp': return Math.min(Math.max(x, p0), p1);
    case 'sign': return Math.sign(x);
    case 'square': return x * x;
    case 'reciprocal': return 1 / x;
    case 'sin': return Math.sin(x);
    case 'cos': return Math.cos(x);
  }
}

/** dy/dx of op at x, given y = op(x). */
function unaryDerivative(op: UnaryOp, x: number, y: number, p0: number, p1: number): number {
  switch (op) {
    case 'neg': return -1;
    case 'exp': return y; // (e^x)' = e^x
    case 'log': return 1 / x;
    case 'sqrt': return 0.5 / y; // (√x)' = 1/(2√x)
    case 'rsqrt': return -0.5 * y * y * y; // (x^-½)' = −½ x^-3/2
    case 'abs': return Math.sign(x); // abs'(0) = 0, as in torch
    case 'tanh': return 1 - y * y;
    case 'sigmoid': return y * (1 - y);
    case 'relu': return x > 0 ? 1 : 0; // relu'(0) = 0, as in torch
    case 'gelu_tanh': {
      // u = √(2/π)(x + c x³): y' = ½(1 + tanh u) + ½ x (1 − tanh² u) √(2/π)(1 + 3c x²)
      const t = Math.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
    }
    // gelu_erf: y' = Φ(x) + x φ(x)
    case 'gelu_erf': return 0.5 * (1 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case 'silu': {
      // (x σ(x))' = σ(x) (1 + x (1 − σ(x)))
      const s = sigmoid(x);
      return s * (1 + x * (1 - s));
    }
    // torch defines the gradient of x^0 as 0 everywhere (also at x = 0, where p·x^(p−1) is NaN)
    case 'powScalar': return p0 === 0 ? 0 : p0 * Math.pow(x, p0 - 1);
    case 'addScalar': return 1;
    case 'mulScalar': return p0;
    case 'clamp': return x >= p0 && x <= p1 ? 1 : 0; // torch passes the gradient on the boundary
    case 'sign': return 0;
    case 'square': return 2 * x;
    case 'reciprocal': return -y * y; // (1/x)' = −1/x²
    case 'sin': return Math.cos(x);
    case 'cos': return -Math.sin(x);
  }
}

/** out = op(x), n elements; out may alias x. */
export function unary(op: UnaryOp, x: FloatArray, out: FloatArray, n: number, p0: number, p1: number): void {
  for (let i = 0; i < n; i++) out[i] = unaryOne(op, x[i], p0, p1);
}

/** dx = dy · op'(x), n elements. */
export function unaryBackward(op: UnaryOp, x: FloatArray, y: FloatArray, dy: FloatArray, dx: FloatArray,
  n: number, p0: number, p1: number): void {
  for (let i = 0; i < n; i++) dx[i] = dy[i] * unaryDerivative(op, x[i], y[i], p0, p1);
}

function binaryOne(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return a + b;
    case 'sub': return a - b;
    case 'mul': return a * b;
    case 'div': return a / b;
    case 'pow': return Math.pow(a, b);
    case 'maximum': return Math.max(a, b); // NaN propagates, as torch.maximum
    case 'minimum': return Math.min(a, b);
    case 'eq': return a === b ? 1 : 0;
    case 'ne': return a !== b ? 1 : 0;
    case 'lt': return a < b ? 1 : 0;
    case 'le': return a <= b ? 1 : 0;
    case 'gt': return a > b ? 1 : 0;
    case 'ge': return a >= b ? 1 : 0;
  }
}

/**
 * Walks the output row-major over `shape`, calling visit(i, offsets) where offsets[s] is the
 * element offset of operand s: Σ_j index_j · strides[s][j]. Broadcast dims have stride 0.
 */
function forEachBroadcast(shape: number[], strides: number[][], visit: (i: number, offsets: number[]) => void): void {
  const nd = shape.length;
  let total = 1;
  for (let d = 0; d < nd; d++) total *= shape[d];
  if (total === 0) return;
  const index = new Array<number>(nd).fill(0);
  const offsets = new Array<number>(strides.length).fill(0);
  for (let i = 0; i < total; i++) {
    visit(i, offsets);
    for (let d = nd - 1; d >= 0; d--) {
      index[d]++;
      for (let s = 0; s < strides.length; s++) offsets[s] += strides[s][d];
      if (index[d] < shape[d]) break;
      for (let s = 0; s < strides.length; s++) offsets[s] -= index[d] * strides[s][d];
      index[d] = 0;
    }
  }
}

/** out = op(a, b) over the broadcast `shape`; out is contiguous. */
export function binary(op: BinaryOp, a: FloatArray, aStrides: number[], b: FloatArray, bStrides: number[],
  out: FloatArray, shape: number[]): void {
  forEachBroadcast(shape, [aStrides, bStrides], (i, o) => {
    out[i] = binaryOne(op, a[o[0]], b[o[1]]);
  });
}

/** out = cond != 0 ? a : b over the broadcast `shape`. */
export function where(cond: AnyArray, cStrides: number[], a: FloatArray, aStrides: number[], b: FloatArray,
  bStrides: number[], out: FloatArray, shape: number[]): void {
  forEachBroadcast(shape, [cStrides, aStrides, bStrides], (i, o) => {
    out[i] = cond[o[0]] !== 0 ? a[o[1]] : b[o[2]];
  });
}
