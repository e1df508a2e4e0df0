// Dropout masks from the counter-based uniform stream shared by every backend.
import type { FloatArray } from '../backend.js';
import { uniformAt } from '../random.js';

/** out[i] = u_i ≥ p ? 1/(1−p) : 0 with u_i = uniformAt(seed, offset + i): inverted dropout. */
export function dropoutMask(out: FloatArray, n: number, p: number, seed: number, offset: number): void {
  const keepScale = 1 / (1 - p);
  for (let i = 0; i < n; i++) out[i] = uniformAt(seed, offset + i) >= p ? keepScale : 0;
}
