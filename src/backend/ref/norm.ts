// LayerNorm and RMSNorm over the rows of x (rows, C), forward and backward.
import type { FloatArray } from '../backend.js';

/** out = (x − mean)·rstd·w + b, rstd = 1/√(var + eps) with the biased variance. Saves mean, rstd (rows). */
export function layerNorm(x: FloatArray, w: FloatArray | null, b: FloatArray | null, out: FloatArray,
  mean: FloatArray, rstd: FloatArray, rows: number, C: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C; // x and out are (rows, C)
    let m = 0;
    for (let c = 0; c < C; c++) m += x[o + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) {
      const d = x[o + c] - m;
      v += d * d;
    }
    v /= C;
    const s = 1 / Math.sqrt(v + eps);
    for (let c = 0; c < C; c++) {
      const norm = (x[o + c] - m) * s;
      out[o + c] = norm * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
    mean[r] = m;
    rstd[r] = s;
  }
}

/**
 * With n = (x − mean)·rstd and dn = dy·w:
 *   dx = rstd·(dn − mean(dn) − n·mean(dn⊙n));  dw += Σ_rows dy⊙n;  db += Σ_rows dy.
 */
export function layerNormBackward(x: FloatArray, w: FloatArray | null, mean: FloatArray, rstd: FloatArray, dy: FloatArray,
  dx: FloatArray, dw: FloatArray | null, db: FloatArray | null, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C; // x, dy, dx are (rows, C)
    const m = mean[r];
    const s = rstd[r];
    let dnMean = 0;
    let dnNormMean = 0;
    for (let c = 0; c < C; c++) {
      const n = (x[o + c] - m) * s;
      const dn = dy[o + c] * (w ? w[c] : 1);
      dnMean += dn;
      dnNormMean += dn * n;
    }
    dnMean /= C;
    dnNormMean /= C;
    for (let c = 0; c < C; c++) {
      const n = (x[o + c] - m) * s;
      const dn = dy[o + c] * (w ? w[c] : 1);
      dx[o + c] = s * (dn - dnMean - n * dnNormMean);
      if (dw) dw[c] += dy[o + c] * n;
      if (db) db[c] += dy[o + c];
    }
  }
}

/** out = x·rstd·w, rstd = 1/√(mean(x²) + eps). Saves rstd (rows). */
export function rmsNorm(x: FloatArray, w: FloatArray | null, out: FloatArray, rstd: FloatArray,
  rows: number, C: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C; // x and out are (rows, C)
    let ms = 0;
    for (let c = 0; c < C; c++) ms += x[o + c] * x[o + c];
    ms /= C;
    const s = 1 / Math.sqrt(ms + eps);
    for (let c = 0; c < C; c++) out[o + c] = x[o + c] * s * (w ? w[c] : 1);
    rstd[r] = s;
  }
}

/** With n = x·rstd and dn = dy·w: dx = rstd·(dn − n·mean(dn⊙n));  dw += Σ_rows dy⊙n. */
export function rmsNormBackward(x: FloatArray, w: FloatArray | null, rstd: FloatArray, dy: FloatArray,
  dx: FloatArray, dw: FloatArray | null, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C; // x, dy, dx are (rows, C)
    const s = rstd[r];
    let dnNormMean = 0;
    for (let c = 0; c < C; c++) dnNormMean += dy[o + c] * (w ? w[c] : 1) * x[o + c] * s;
    dnNormMean /= C;
    for (let c = 0; c < C; c++) {
      const n = x[o + c] * s;
      const dn = dy[o + c] * (w ? w[c] : 1);
      dx[o + c] = s * (dn - n * dnNormMean);
      if (dw) dw[c] += dy[o + c] * n;
    }
  }
}
