// Cross-entropy from logits, with ignore index and label smoothing, forward and backward.
import type { FloatArray } from '../backend.js';

/**
 * loss[r] = lse[r] − (1−ε)·logits[r,t] − (ε/V)·Σ_v logits[r,v] for rows whose target t is not
 * ignoreIndex; ignored rows get 0. lse is written for every row.
 */
export function crossEntropy(logits: FloatArray, targets: Int32Array, loss: FloatArray, lse: FloatArray,
  rows: number, V: number, ignoreIndex: number, labelSmoothing: number): void {
  const eps = labelSmoothing;
  for (let r = 0; r < rows; r++) {
    const o = r * V; // logits is (rows, V)
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[o + v]);
    let sumExp = 0;
    let sumLogits = 0;
    for (let v = 0; v < V; v++) {
      sumExp += Math.exp(logits[o + v] - max);
      sumLogits += logits[o + v];
    }
    const l = max + Math.log(sumExp);
    lse[r] = l;
    const t = targets[r];
    loss[r] = t === ignoreIndex ? 0 : l - (1 - eps) * logits[o + t] - (eps / V) * sumLogits;
  }
}

/** dlogits[r,v] = dloss[r]·(softmax(logits[r])[v] − (1−ε)·[v = t] − ε/V); ignored rows 0. */
export function crossEntropyBackward(logits: FloatArray, targets: Int32Array, lse: FloatArray, dloss: FloatArray,
  dlogits: FloatArray, rows: number, V: number, ignoreIndex: number, labelSmoothing: number): void {
  const eps = labelSmoothing;
  for (let r = 0; r < rows; r++) {
    const o = r * V; // logits and dlogits are (rows, V)
    const t = targets[r];
    if (t === ignoreIndex) {
      for (let v = 0; v < V; v++) dlogits[o + v] = 0;
      continue;
    }
    for (let v = 0; v < V; v++) {
      const p = Math.exp(logits[o + v] - lse[r]);
      dlogits[o + v] = dloss[r] * (p - (v === t ? 1 - eps : 0) - eps / V);
    }
  }
}
