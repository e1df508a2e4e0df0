// Weight formats, exactly as bitsandbytes defines them (so a tensor quantized here dequantizes to
// the same floats there):
//
//   NF4     4-bit NormalFloat (QLoRA). The weight is flattened row-major and cut into blocks of 64;
//           each block keeps absmax = max |w| (f32) and each weight the index of the code value
//           nearest to w/absmax. Two indices per byte, the first element in the high nibble.
//   NF4-DQ  NF4 whose absmax values are themselves quantized ("double quantization"): their mean is
//           subtracted as an offset, and the rest is 8-bit blockwise-quantized with the dynamic map
//           in blocks of 256 (one f32 absmax per 256 blocks of 64 weights).
//   int8    LLM.int8()'s weight format without outliers: per output row absmax (SCB), q = round(127·w/absmax).
//
// Quantization runs once per weight (at load or `plinth quantize`), so it is plain TypeScript;
// the hot path (dequantize-and-multiply) is a backend kernel.
import { ArgumentError } from '../errors.js';

/** Weights per NF4 block (bitsandbytes' default for 4-bit). */
export const NF4_BLOCK = 64;
/** absmax values per block of the double quantization. */
export const DQ_BLOCK = 256;

/**
 * The 16 NF4 code values: quantiles of N(0,1) normalised to [-1, 1], with an exact zero and one
 * more positive than negative value (bitsandbytes' create_normal_map(offset=0.9677083), as its
 * get_4bit_type('nf4') lists them).
 */
export const NF4_CODE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

const f = Math.fround;

/**
 * torch.linspace(start, end, steps) in float32, rounded as PyTorch's CPU kernel rounds it (so the
 * dynamic map below is bit-identical to bitsandbytes'): the first half counts up from start, the
 * second down from end, each as one fused multiply-add; pairs of 8-lane vectors then step from
 * their first element by j·step, and the tail is scalar. Only the last bit of a few values depends
 * on this; a quantized file stores its map, so loading never relies on it.
 */
function linspaceF32(start: number, end: number, steps: number): number[] {
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const at = (i: number) => (i < half ? f(step * i + s) : f(e - step * (steps - i - 1))); // fma: one rounding
  const vectorEnd = Math.floor(steps / 16) * 16;
  const out: number[] = [];
  for (let i = 0; i < vectorEnd; i += 8) {
    const base = at(i);
    for (let j = 0; j < 8; j++) out.push(f(base + f(j * step)));
  }
  for (let i = vectorEnd; i < steps; i++) out.push(at(i));
  return out;
}

/**
 * bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each
 * exponent i < 7, 2^i evenly spaced fractions (midpoints of linspace(0.1, 1, 2^i + 1)) scaled by
 * 10^(i−6), with both signs; then 0 and 1; sorted. 256 values in [-0.993, 1], dense near zero.
 */
export function dynamicMap(): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspaceF32(0.1, 1, 2 ** i + 1);
    const scale = f(10 ** (i - 6));
    const means = b.slice(0, -1).map((v, j) => f(f(v + b[j + 1]) / 2));
    for (const m of means) data.push(f(scale * m));
    for (const m of means) data.push(f(-scale * m));
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}

let dynamicMapCache: Float32Array | null = null;
function sharedDynamicMap(): Float32Array {
  return (dynamicMapCache ??= dynamicMap());
}

/** Index of the code value nearest to v (the first one on a tie, like torch.argmin). `code` is sorted. */
export function nearestCode(code: Float32Array, v: number): number {
  // binary search for the first code value ≥ v, then compare with its left neighbour
  let lo = 0;
  let hi = code.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (code[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(f(v - code[lo - 1])) <= Math.abs(f(v - code[lo]))) return lo - 1;
  return lo;
}

/** Blockwise absmax quantization to the nearest code index (bitsandbytes quantize_blockwise /
 *  quantize_4bit): per block absmax = max |x|, each x → nearest code of clamp(x·(1/absmax), −1, 1).
 *  A block of zeros has absmax 0 and quantizes to the code index of 0. */
function quantizeBlocks(x: Float32Array, blockSize: number, code: Float32Array, emit: (i: number, q: number) => void): Float32Array {
  const n = x.length;
  const blocks = Math.ceil(n / blockSize);
  const absmax = new Float32Array(blocks);
  const zero = nearestCode(code, 0);
  for (let b = 0; b < blocks; b++) {
    const end = Math.min(n, (b + 1) * blockSize);
    let m = 0;
    for (let i = b * blockSize; i < end; i++) m = Math.max(m, Math.abs(x[i]));
    absmax[b] = m;
    const inv = f(1 / m);
    for (let i = b * blockSize; i < end; i++) {
      if (m === 0) {
        emit(i, zero);
        continue;
      }
      const s = Math.min(1, Math.max(-1, f(x[i] * inv)));
      emit(i, nearestCode(code, s));
    }
  }
  return absmax;
}

export interface NF4Weight {
  /** ceil(n/2) bytes: element 2j in the high nibble of byte j, element 2j+1 in the low nibble. */
  packed: Uint8Array;
  /** One f32 absmax per block of 64 (after double quantization, the dequantized values). */
  absmax: Float32Array;
  /** The number of weights. */
  n: number;
}

/** NF4 quantization of a flattened weight (bitsandbytes quantize_4bit, quant_type 'nf4', blocksize 64). */
export function quantizeNF4(w: Float32Array): NF4Weight {
  const packed = new Uint8Array(Math.ceil(w.length / 2));
  const absmax = quantizeBlocks(w, NF4_BLOCK, NF4_CODE, (i, q) => {
    packed[i >> 1] |= (i & 1) === 0 ? q << 4 : q;
  });
  return { packed, absmax, n: w.length };
}

/** The flattened weight an NF4 tensor stands for: code[q_i]·absmax[i/64]. */
export function dequantizeNF4(q: NF4Weight, out = new Float32Array(q.n)): Float32Array {
  for (let i = 0; i < q.n; i++) {
    const byte = q.packed[i >> 1];
    const idx = (i & 1) === 0 ? byte >> 4 : byte & 15;
    out[i] = f(NF4_CODE[idx] * q.absmax[Math.floor(i / NF4_BLOCK)]);
  }
  return out;
}

/** The double-quantized absmax of NF4-DQ: 8-bit codes, one f32 scale per 256 codes, one offset. */
export interface QuantizedAbsmax {
  /** One 8-bit index into the dynamic map per NF4 block. */
  codes: Uint8Array;
  /** absmax of each block of 256 mean-subtracted values. */
  nestedAbsmax: Float32Array;
  /** The mean of the original absmax values. */
  offset: number;
}

/** Double quantization (bitsandbytes quantize_4bit with compress_statistics=True):
 *  offset = mean(absmax); (absmax − offset) → 8-bit blockwise, blocks of 256, dynamic map. */
export function quantizeAbsmax(absmax: Float32Array): QuantizedAbsmax {
  // torch's float32 mean sums with pairwise/vectorised partial sums; a double sum rounded once is
  // at least as accurate, and the offset is stored, so dequantization does not depend on it.
  let s = 0;
  for (const v of absmax) s += v;
  const offset = f(s / absmax.length);
  const centred = absmax.map((v) => f(v - offset));
  const codes = new Uint8Array(absmax.length);
  const nestedAbsmax = quantizeBlocks(centred, DQ_BLOCK, sharedDynamicMap(), (i, q) => {
    codes[i] = q;
  });
  return { codes, nestedAbsmax, offset };
}

/** absmax = dynamic_map[code]·nestedAbsmax[i/256] + offset (bitsandbytes dequantize_blockwise + offset). */
export function dequantizeAbsmax(q: QuantizedAbsmax, out = new Float32Array(q.codes.length)): Float32Array {
  const map = sharedDynamicMap();
  for (let i = 0; i < q.codes.length; i++) out[i] = f(f(map[q.codes[i]] * q.nestedAbsmax[Math.floor(i / DQ_BLOCK)]) + q.offset);
  return out;
}

export interface Int8Weight {
  /** (N, K) row-major, round(127·w/absmax[n]). */
  q: Int8Array;
  /** Per-row absmax (bitsandbytes' SCB). W[n,k] ≈ q[n,k]·SCB[n]/127. */
  scb: Float32Array;
}

/** int8 weight-only quantization per output channel (bitsandbytes int8_vectorwise_quant with
 *  threshold 0): SCB = max_k |W[n,k]|, q = round(W·(127/SCB)) with torch.round's halves to even. */
export function quantizeInt8(w: Float32Array, N: number, K: number): Int8Weight {
  if (w.length !== N * K) throw new ArgumentError(`quantizeInt8: ${w.length} weights do not make a ${N} x ${K} matrix`);
  const q = new Int8Array(N * K);
  const scb = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let k = 0; k < K; k++) m = Math.max(m, Math.abs(w[n * K + k]));
    scb[n] = m;
    if (m === 0) continue;
    const s = f(127 / m);
    for (let k = 0; k < K; k++) q[n * K + k] = roundHalfEven(f(w[n * K + k] * s));
  }
  return { q, scb };
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The per-row scales the int8 kernels multiply by: SCB·(1/127), the factor bitsandbytes'
 *  int8_vectorwise_dequant uses. */
export function int8Scales(scb: Float32Array): Float32Array {
  return scb.map((v) => f(v * 7.874015718698502e-3));
}
