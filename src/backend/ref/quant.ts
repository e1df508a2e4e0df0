// Dequantize-and-multiply with frozen quantized weights. The ref versions dequantize one weight at
// a time inside the plain matmul loops (16-bit weights are widened first, by the cast kernel): the
// math of the native kernels, with none of their tricks.
import { cast } from './memory.js';

/** W[n,k] of an int8 weight: w (N,K) times the row's scale. */
function int8At(w: Int8Array, scale: Float32Array, K: number, n: number, k: number): number {
  return w[n * K + k] * scale[n];
}

/** y (M,N) = x (M,K) · Wᵀ, W (N,K) int8 with per-row scales. */
export function int8Linear(x: Float32Array, w: Int8Array, scale: Float32Array, y: Float32Array, M: number, N: number, K: number): void {
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += x[m * K + k] * int8At(w, scale, K, n, k);
      y[m * N + n] = sum; // y is (M,N)
    }
  }
}

/** dx (M,K) = dy (M,N) · W. */
export function int8LinearBackward(dy: Float32Array, w: Int8Array, scale: Float32Array, dx: Float32Array, M: number, N: number, K: number): void {
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let sum = 0;
      for (let n = 0; n < N; n++) sum += dy[m * N + n] * int8At(w, scale, K, n, k);
      dx[m * K + k] = sum; // dx is (M,K)
    }
  }
}

/** Element e of a 4-bit blockwise weight: code[nibble e] · absmax[e/64], the first element of
 *  each byte in its high nibble. */
function nf4At(packed: Uint8Array, absmax: Float32Array, code: Float32Array, e: number): number {
  const byte = packed[e >> 1];
  const q = (e & 1) === 0 ? byte >> 4 : byte & 15;
  return Math.fround(code[q] * absmax[Math.floor(e / 64)]);
}

/** y (M,N) = x (M,K) · Wᵀ, W (N,K) flattened row-major into 4-bit codes. */
export function nf4Linear(x: Float32Array, packed: Uint8Array, absmax: Float32Array, code: Float32Array, y: Float32Array,
  M: number, N: number, K: number): void {
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += x[m * K + k] * nf4At(packed, absmax, code, n * K + k);
      y[m * N + n] = sum;
    }
  }
}

/** dx (M,K) = dy (M,N) · W. */
export function nf4LinearBackward(dy: Float32Array, packed: Uint8Array, absmax: Float32Array, code: Float32Array, dx: Float32Array,
  M: number, N: number, K: number): void {
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let sum = 0;
      for (let n = 0; n < N; n++) sum += dy[m * N + n] * nf4At(packed, absmax, code, n * K + k);
      dx[m * K + k] = sum;
    }
  }
}

export function nf4Dequantize(packed: Uint8Array, absmax: Float32Array, code: Float32Array, out: Float32Array, n: number): void {
  for (let e = 0; e < n; e++) out[e] = nf4At(packed, absmax, code, e);
}

/** W (N,K) of a 16-bit weight, widened to f32 (exactly) by the cast kernel. */
function widenHalf(w: Uint16Array, wDType: 'bf16' | 'f16', n: number): Float32Array {
  const W = new Float32Array(n);
  cast(w, wDType, W, 'f32', n);
  return W;
}

/** y (M,N) = x (M,K) · Wᵀ, W (N,K) stored as bf16 or f16. */
export function halfLinear(x: Float32Array, w: Uint16Array, wDType: 'bf16' | 'f16', y: Float32Array, M: number, N: number, K: number): void {
  const W = widenHalf(w, wDType, N * K);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += x[m * K + k] * W[n * K + k];
      y[m * N + n] = sum;
    }
  }
}

/** dx (M,K) = dy (M,N) · W. */
export function halfLinearBackward(dy: Float32Array, w: Uint16Array, wDType: 'bf16' | 'f16', dx: Float32Array, M: number, N: number, K: number): void {
  const W = widenHalf(w, wDType, N * K);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let sum = 0;
      for (let n = 0; n < N; n++) sum += dy[m * N + n] * W[n * K + k];
      dx[m * K + k] = sum;
    }
  }
}
