// Memory kernels: fill, strided copy, dtype conversion.
import type { AnyArray, KernelDType } from '../backend.js';

/** out[i] = value for i < n, any dtype. */
export function fill(out: AnyArray, value: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = value;
}

/**
 * dst[i0..ik] = src[Σ ij·srcStrides[j]] over `shape`, dst row-major contiguous. An odometer over
 * the output index walks the source offset forward, so any stride pattern (including 0) works.
 */
export function copyStrided(src: AnyArray, dst: AnyArray, shape: number[], srcStrides: number[]): void {
  const nd = shape.length;
  let total = 1;
  for (let d = 0; d < nd; d++) total *= shape[d];
  if (total === 0) return;
  const index = new Array<number>(nd).fill(0);
  let offset = 0;
  for (let i = 0; i < total; i++) {
    dst[i] = src[offset];
    // advance the odometer: the last dim moves fastest
    for (let d = nd - 1; d >= 0; d--) {
      index[d]++;
      offset += srcStrides[d];
      if (index[d] < shape[d]) break;
      offset -= index[d] * srcStrides[d];
      index[d] = 0;
    }
  }
}

// ---- 16-bit floats -------------------------------------------------------------------------------
// f16 is 1 sign, 5 exponent (bias 15), 10 mantissa bits; bf16 is 1 sign, 8 exponent (bias 127),
// 7 mantissa bits. Both are encoded here from a JS number (a double), which holds every f32 and f64
// exactly, so rounding happens once, to nearest with ties to even, whatever the source dtype.

interface Half { mantBits: number; bias: number }
const F16: Half = { mantBits: 10, bias: 15 };
const BF16: Half = { mantBits: 7, bias: 127 };

function roundHalfEven(m: number): number {
  let f = Math.floor(m);
  const d = m - f;
  if (d > 0.5 || (d === 0.5 && f % 2 === 1)) f++;
  return f;
}

/** The bit pattern of the 16-bit float nearest to x (round-to-nearest-even, overflow to ±Inf). */
function encodeHalf(x: number, fmt: Half): number {
  const { mantBits, bias } = fmt;
  const infBits = (2 * bias + 1) << mantBits;
  if (Number.isNaN(x)) return infBits | (1 << (mantBits - 1)); // the canonical quiet NaN
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const minNormalExp = 1 - bias;
  if (a < 2 ** minNormalExp) {
    // subnormal: a counted in units of the smallest subnormal 2^(1-bias-mantBits); rounding up to
    // 1 << mantBits gives exactly the bit pattern of the smallest normal
    return sign | roundHalfEven(a * 2 ** (mantBits - minNormalExp));
  }
  if (a === Infinity) return sign | infBits;
  // a = 2^e · (1 + f) with f in [0, 1); log2 may be off by one near powers of two, so correct it
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  if (e > bias) return sign | infBits;
  // scaling by powers of two and subtracting 1 are exact in double; a mantissa that rounds up to
  // 1 << mantBits carries into the exponent, and past the largest exponent into the Inf pattern
  const m = roundHalfEven((a / 2 ** e - 1) * 2 ** mantBits);
  return sign | (((e + bias) << mantBits) + m);
}

/** The exact value of a 16-bit float bit pattern. */
function decodeHalf(bits: number, fmt: Half): number {
  const { mantBits, bias } = fmt;
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits & 0x7fff) >>> mantBits;
  const mant = bits & ((1 << mantBits) - 1);
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  if (exp === 2 * bias + 1) return mant ? NaN : sign * Infinity;
  return sign * ((1 << mantBits) + mant) * 2 ** (exp - bias - mantBits);
}

/** NaN payloads survive f32 -> f16/bf16: the sign and top mantissa bits are kept, the quiet bit set. */
function nanFromF32Bits(bits: number, fmt: Half): number {
  const sign = (bits >>> 16) & 0x8000;
  const infBits = (2 * fmt.bias + 1) << fmt.mantBits;
  const payload = (bits & 0x7fffff) >>> (23 - fmt.mantBits);
  return sign | infBits | (1 << (fmt.mantBits - 1)) | payload;
}

/**
 * Element-type conversion of n elements, any pair of dtypes: each element is read as an exact
 * number, then written with the target's rounding (f16/bf16: nearest even; f32: nearest even;
 * i32/u8: truncation toward zero).
 */
export function cast(src: AnyArray, from: KernelDType, dst: AnyArray, to: KernelDType, n: number): void {
  const toHalf = to === 'f16' || to === 'bf16';
  const srcBits = toHalf && src instanceof Float32Array ? new Uint32Array(src.buffer, src.byteOffset, n) : null;
  for (let i = 0; i < n; i++) {
    let x: number;
    if (from === 'f16') x = decodeHalf(src[i], F16);
    else if (from === 'bf16') x = decodeHalf(src[i], BF16);
    else x = src[i];
    if (toHalf) {
      const fmt = to === 'f16' ? F16 : BF16;
      dst[i] = Number.isNaN(x) && srcBits ? nanFromF32Bits(srcBits[i], fmt) : encodeHalf(x, fmt);
    } else if (to === 'i32' || to === 'u8') {
      dst[i] = Math.trunc(x);
    } else {
      dst[i] = x;
    }
  }
}
