// Row softmax and log-softmax, forward and backward.
import type { FloatArray } from '../backend.js';

/** out = softmax(x) (or logSoftmax when `log`) over each row of x (rows, C), max subtracted. */
export function softmax(x: FloatArray, out: FloatArray, rows: number, C: number, log: boolean): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C; // x and out are (rows, C)
    let max = -Infinity;
    for (let c = 0; c < C; c++) max = Math.max(max, x[o + c]);
    let sum = 0;
    for (let c = 0; c < C; c++) sum += Math.exp(x[o + c] - max);
    if (log) {
      // log softmax(x)_c = x_c − max − log Σ exp(x − max)
      const logSum = Math.log(sum);
      for (let c = 0; c < C; c++) out[o + c] = x[o + c] - max - logSum;
    } else {
      for (let c = 0; c < C; c++) out[o + c] = Math.exp(x[o + c] - max) / sum;
    }
  }
}

/** softmax: dx = y ⊙ (dy − Σ dy⊙y); logSoftmax: dx = dy − exp(y)·Σ dy. */
export function softmaxBackward(y: FloatArray, dy: FloatArray, dx: FloatArray, rows: number, C: number, log: boolean): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C; // y, dy, dx are (rows, C)
    if (log) {
      let sumDy = 0;
      for (let c = 0; c < C; c++) sumDy += dy[o + c];
      for (let c = 0; c < C; c++) dx[o + c] = dy[o + c] - Math.exp(y[o + c]) * sumDy;
    } else {
      let dot = 0;
      for (let c = 0; c < C; c++) dot += dy[o + c] * y[o + c];
      for (let c = 0; c < C; c++) dx[o + c] = y[o + c] * (dy[o + c] - dot);
    }
  }
}
