// Index kernels: select/add along an axis, gather/scatter-add with per-element indices.
import type { FloatArray } from '../backend.js';

/** x (outer,X,inner), idx (n): out (outer,n,inner) = x[:, idx[j], :]. */
export function indexSelect(x: FloatArray, idx: Int32Array, out: FloatArray, outer: number, X: number, n: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) {
      const src = (o * X + idx[j]) * inner; // x is (outer,X,inner)
      const dst = (o * n + j) * inner; // out is (outer,n,inner)
      for (let i = 0; i < inner; i++) out[dst + i] = x[src + i];
    }
  }
}

/** dx[:, idx[j], :] += dout[:, j, :]; repeated ids accumulate. */
export function indexAdd(dout: FloatArray, idx: Int32Array, dx: FloatArray, outer: number, X: number, n: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) {
      const dst = (o * X + idx[j]) * inner; // dx is (outer,X,inner)
      const src = (o * n + j) * inner; // dout is (outer,n,inner)
      for (let i = 0; i < inner; i++) dx[dst + i] += dout[src + i];
    }
  }
}

/** x (outer,X,inner); idx, out (outer,n,inner): out[o,j,i] = x[o, idx[o,j,i], i]. */
export function gather(x: FloatArray, idx: Int32Array, out: FloatArray, outer: number, X: number, n: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < inner; i++) {
        const e = (o * n + j) * inner + i; // idx, out are (outer,n,inner)
        out[e] = x[(o * X + idx[e]) * inner + i]; // x is (outer,X,inner)
      }
    }
  }
}

/** src, idx (outer,n,inner); out (outer,X,inner): out[o, idx[o,j,i], i] += src[o,j,i]. */
export function scatterAdd(src: FloatArray, idx: Int32Array, out: FloatArray, outer: number, X: number, n: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < inner; i++) {
        const e = (o * n + j) * inner + i; // src, idx are (outer,n,inner)
        out[(o * X + idx[e]) * inner + i] += src[e]; // out is (outer,X,inner)
      }
    }
  }
}
