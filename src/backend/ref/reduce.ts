// Reductions over the middle axis of x (outer, R, inner).
import type { FloatArray, ReduceOp } from '../backend.js';

/** out[o,i] = op over r of x[o,r,i]; argmax/argmin write the first index of the extreme. */
export function reduce(op: ReduceOp, x: FloatArray, out: FloatArray | Int32Array, outer: number, R: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      // x[o, r, i] is at (o·R + r)·inner + i
      const base = o * R * inner + i;
      if (op === 'sum' || op === 'sumSquares') {
        let acc = 0;
        for (let r = 0; r < R; r++) {
          const v = x[base + r * inner];
          acc += op === 'sum' ? v : v * v;
        }
        out[o * inner + i] = acc;
      } else if (op === 'max' || op === 'min') {
        let best = op === 'max' ? -Infinity : Infinity;
        for (let r = 0; r < R; r++) {
          const v = x[base + r * inner];
          best = op === 'max' ? Math.max(best, v) : Math.min(best, v); // NaN propagates, as in torch
        }
        out[o * inner + i] = best;
      } else {
        // argmax/argmin: NaN counts as the extreme, as in torch; ties keep the first index
        let best = x[base];
        let bestR = 0;
        for (let r = 1; r < R; r++) {
          const v = x[base + r * inner];
          if (Number.isNaN(best)) break;
          const better = op === 'argmax' ? v > best : v < best;
          if (better || Number.isNaN(v)) {
            best = v;
            bestR = r;
          }
        }
        out[o * inner + i] = bestR;
      }
    }
  }
}
