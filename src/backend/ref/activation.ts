// SwiGLU gate, forward and backward.
import type { FloatArray } from '../backend.js';

/** out = silu(gate) ⊙ up, silu(g) = g·σ(g). */
export function swiglu(gate: FloatArray, up: FloatArray, out: FloatArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** dgate = dy·up·σ(g)(1 + g(1 − σ(g)));  dup = dy·silu(g). */
export function swigluBackward(gate: FloatArray, up: FloatArray, dy: FloatArray, dgate: FloatArray, dup: FloatArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    const u = up[i];
    const d = dy[i];
    const s = 1 / (1 + Math.exp(-g));
    dgate[i] = d * u * s * (1 + g * (1 - s));
    dup[i] = d * g * s;
  }
}
