// Batched matrix multiply.
import type { FloatArray } from '../backend.js';

/**
 * C_p (M,N) = (accumulate ? C_p : 0) + op(A_p)·op(B_p) for p < batch.
 * A_p is (M,K), or (K,M) when transA; B_p is (K,N), or (N,K) when transB; all row-major.
 */
export function matmul(a: FloatArray, b: FloatArray, c: FloatArray, M: number, N: number, K: number,
  transA: boolean, transB: boolean, batch: number, strideA: number, strideB: number, strideC: number,
  accumulate: boolean): void {
  for (let p = 0; p < batch; p++) {
    const aOff = p * strideA;
    const bOff = p * strideB;
    const cOff = p * strideC;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let sum = 0;
        for (let k = 0; k < K; k++) {
          // op(A)[i,k]: A is (K,M) when transA, else (M,K)
          const aik = transA ? a[aOff + k * M + i] : a[aOff + i * K + k];
          // op(B)[k,j]: B is (N,K) when transB, else (K,N)
          const bkj = transB ? b[bOff + j * K + k] : b[bOff + k * N + j];
          sum += aik * bkj;
        }
        // c is (M,N)
        c[cOff + i * N + j] = accumulate ? c[cOff + i * N + j] + sum : sum;
      }
    }
  }
}
