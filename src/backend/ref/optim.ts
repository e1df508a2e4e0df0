// The AdamW update, torch.optim.AdamW semantics.
import type { FloatArray } from '../backend.js';

/**
 * In place over n elements, step t ≥ 1:
 *   p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 *   p ← p − (lr/(1−β1^t))·m / (√v/√(1−β2^t) + eps)
 */
export function adamwStep(p: FloatArray, g: FloatArray, m: FloatArray, v: FloatArray, n: number,
  lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void {
  const bias1 = 1 - Math.pow(beta1, step);
  const bias2 = 1 - Math.pow(beta2, step);
  for (let i = 0; i < n; i++) {
    const gi = g[i];
    const mi = beta1 * m[i] + (1 - beta1) * gi;
    const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const decayed = p[i] * (1 - lr * weightDecay);
    p[i] = decayed - (lr / bias1) * mi / (Math.sqrt(vi) / Math.sqrt(bias2) + eps);
  }
}
