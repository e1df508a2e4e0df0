// Linear layers with rounded activations: int8 weights times x quantized to int8 in blocks of 32
// (llama.cpp's Q8_0), and bf16 weights times x rounded to bf16. Every f32 step of int8LinearQ8 is
// written out with Math.fround, in the order backend.ts defines, so this oracle and the native
// kernels agree bit for bit.
import { cast } from './memory.js';

export const Q8_BLOCK = 32;

/** Ties away from zero (C's roundf); |v| + 0.5 is exact in a double for any f32 v. */
function roundHalfAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}

/**
 * One row of x (K) quantized per block of 32: q (K) int8, d (⌈K/32⌉) the block scales.
 * d_b = absmax/127, q = clamp(round(x · (1/d_b)), ±127), all in f32.
 */
export function quantizeRowQ8(x: Float32Array, K: number, q: Int8Array, d: Float32Array): void {
  for (let b = 0; b * Q8_BLOCK < K; b++) {
    const k0 = b * Q8_BLOCK, k1 = Math.min(K, k0 + Q8_BLOCK);
    let amax = 0;
    for (let k = k0; k < k1; k++) if (Math.abs(x[k]) > amax) amax = Math.abs(x[k]); // NaN fails the test
    const db = Math.fround(amax / 127);
    const id = db !== 0 ? Math.fround(1 / db) : 0;
    for (let k = k0; k < k1; k++) {
      const r = roundHalfAway(Math.fround(x[k] * id));
      q[k] = Number.isNaN(r) ? 0 : Math.min(127, Math.max(-127, r));
    }
    d[b] = db;
  }
}

/** y (M,N) = scale[n] · Σ_b d_b · (Σ_{k in b} w[n,k]·q[m,k]), W (N,K) int8, x (M,K) quantized per row. */
export function int8LinearQ8(x: Float32Array, w: Int8Array, scale: Float32Array, y: Float32Array, M: number, N: number, K: number): void {
  const nb = Math.ceil(K / Q8_BLOCK);
  const q = new Int8Array(K), d = new Float32Array(nb);
  for (let m = 0; m < M; m++) {
    quantizeRowQ8(x.subarray(m * K, (m + 1) * K), K, q, d);
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        let s = 0; // exact: at most 32·128·127 in magnitude
        for (let k = b * Q8_BLOCK; k < Math.min(K, (b + 1) * Q8_BLOCK); k++) s += w[n * K + k] * q[k];
        acc = Math.fround(acc + Math.fround(d[b] * s));
      }
      y[m * N + n] = Math.fround(scale[n] * acc); // y is (M,N)
    }
  }
}

/** y (M,N) = Σ_k bf16(x[m,k]) · W[n,k], W (N,K) bf16 bit patterns; x rounded by the cast kernel. */
export function bf16LinearDot(x: Float32Array, w: Uint16Array, y: Float32Array, M: number, N: number, K: number): void {
  const xb = new Uint16Array(M * K), xr = new Float32Array(M * K), W = new Float32Array(N * K);
  cast(x, 'f32', xb, 'bf16', M * K);
  cast(xb, 'bf16', xr, 'f32', M * K);
  cast(w, 'bf16', W, 'f32', N * K);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += xr[m * K + k] * W[n * K + k];
      y[m * N + n] = sum;
    }
  }
}
