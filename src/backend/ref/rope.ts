// Rotary position embedding, Hugging Face rotate_half convention.
import type { FloatArray } from '../backend.js';

/**
 * x, out (N,T,G,D); cos, sin (T,D/2). For j < D/2, with angle θ = (t, j):
 *   out[j] = x[j]·cos θ − x[j+D/2]·sin θ;  out[j+D/2] = x[j+D/2]·cos θ + x[j]·sin θ
 * inverse rotates by −θ; a rotation's inverse is its transpose, so this is also the backward.
 */
export function rope(x: FloatArray, cos: FloatArray, sin: FloatArray, out: FloatArray,
  N: number, T: number, G: number, D: number, inverse: boolean): void {
  const half = D / 2;
  for (let n = 0; n < N; n++) {
    for (let t = 0; t < T; t++) {
      for (let g = 0; g < G; g++) {
        const o = ((n * T + t) * G + g) * D; // x, out are (N,T,G,D)
        for (let j = 0; j < half; j++) {
          const c = cos[t * half + j]; // cos, sin are (T,D/2)
          const s = inverse ? -sin[t * half + j] : sin[t * half + j];
          const x1 = x[o + j];
          const x2 = x[o + j + half];
          out[o + j] = x1 * c - x2 * s;
          out[o + j + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}
