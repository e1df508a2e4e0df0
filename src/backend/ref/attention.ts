// Scaled dot-product attention, one query row at a time, forward and backward.
//
// For query row i of head h (key/value head kh = ⌊h/(H/KVH)⌋), over its visible keys j:
//   s_j = scale·q_i·k_j;  lse_i = log Σ_j exp(s_j);  p_j = exp(s_j − lse_i);  out_i = Σ_j p_j v_j
// Causal rows see keys 0..qOffset+i (their absolute position); others see all Tk keys.
import type { FloatArray } from '../backend.js';

/** The number of keys query row i sees. */
function visibleKeys(i: number, Tk: number, causal: boolean, qOffset: number): number {
  return causal ? Math.max(0, Math.min(Tk, qOffset + i + 1)) : Tk;
}

/** q (B,H,Tq,D); k, v (B,KVH,Tk,D); out (B,H,Tq,D); lse (B,H,Tq). */
export function attention(q: FloatArray, k: FloatArray, v: FloatArray, out: FloatArray, lse: FloatArray,
  B: number, H: number, KVH: number, Tq: number, Tk: number, D: number,
  scale: number, causal: boolean, qOffset: number): void {
  const groupSize = H / KVH;
  const scores = new Float64Array(Tk);
  const probs = new Float64Array(Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / groupSize);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * H + h) * Tq + i) * D; // q, out are (B,H,Tq,D)
        const row = (b * H + h) * Tq + i; // lse is (B,H,Tq)
        const n = visibleKeys(i, Tk, causal, qOffset);
        // scores of the visible keys, and their max for a stable exp
        let max = -Infinity;
        for (let j = 0; j < n; j++) {
          const ko = ((b * KVH + kh) * Tk + j) * D; // k, v are (B,KVH,Tk,D)
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          scores[j] = scale * dot;
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += Math.exp(scores[j] - max);
        const l = max + Math.log(sum); // −Infinity for a row that sees no key
        lse[row] = l;
        for (let j = 0; j < n; j++) probs[j] = Math.exp(scores[j] - l);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += probs[j] * v[((b * KVH + kh) * Tk + j) * D + d];
          out[qo + d] = acc;
        }
      }
    }
  }
}

/**
 * Recomputes p_j from the scores, then with dp_j = dout_i·v_j and Δ_i = Σ_j p_j dp_j = dout_i·out_i:
 *   ds_j = p_j (dp_j − Δ_i);  dq_i = scale Σ_j ds_j k_j;  dk_j += scale ds_j q_i;  dv_j += p_j dout_i
 * dk and dv sum over every query row and every query head sharing the key/value head.
 */
export function attentionBackward(q: FloatArray, k: FloatArray, v: FloatArray, out: FloatArray, lse: FloatArray,
  dout: FloatArray, dq: FloatArray, dk: FloatArray, dv: FloatArray,
  B: number, H: number, KVH: number, Tq: number, Tk: number, D: number,
  scale: number, causal: boolean, qOffset: number): void {
  const groupSize = H / KVH;
  const probs = new Float64Array(Tk);
  const dscores = new Float64Array(Tk);
  // dk, dv of one batch element, (KVH,Tk,D), accumulated in double
  const dkAcc = new Float64Array(KVH * Tk * D);
  const dvAcc = new Float64Array(KVH * Tk * D);
  for (let b = 0; b < B; b++) {
    dkAcc.fill(0);
    dvAcc.fill(0);
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / groupSize);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * H + h) * Tq + i) * D; // q, out, dout, dq are (B,H,Tq,D)
        const n = visibleKeys(i, Tk, causal, qOffset);
        let delta = 0;
        for (let d = 0; d < D; d++) delta += dout[qo + d] * out[qo + d];
        // The row's log-normaliser is recomputed from the scores in double rather than read from
        // lse: a float32 lse carries a relative error of |lse|·2⁻²⁴ into every p_j of the row,
        // which alone would make dq worse than the plain path's.
        let max = -Infinity;
        for (let j = 0; j < n; j++) {
          const ko = ((b * KVH + kh) * Tk + j) * D; // k, v are (B,KVH,Tk,D)
          let dot = 0;
          let dp = 0;
          for (let d = 0; d < D; d++) {
            dot += q[qo + d] * k[ko + d];
            dp += dout[qo + d] * v[ko + d];
          }
          probs[j] = scale * dot;
          dscores[j] = dp;
          max = Math.max(max, probs[j]);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += Math.exp(probs[j] - max);
        const l = max + Math.log(sum);
        for (let j = 0; j < n; j++) {
          probs[j] = Math.exp(probs[j] - l);
          dscores[j] = probs[j] * (dscores[j] - delta);
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += dscores[j] * k[((b * KVH + kh) * Tk + j) * D + d];
          dq[qo + d] = scale * acc;
        }
        for (let j = 0; j < n; j++) {
          const ao = (kh * Tk + j) * D; // dkAcc, dvAcc are (KVH,Tk,D)
          for (let d = 0; d < D; d++) {
            dkAcc[ao + d] += scale * dscores[j] * q[qo + d];
            dvAcc[ao + d] += probs[j] * dout[qo + d];
          }
        }
      }
    }
    const bo = b * KVH * Tk * D; // dk, dv are (B,KVH,Tk,D)
    for (let e = 0; e < KVH * Tk * D; e++) {
      dk[bo + e] = dkAcc[e];
      dv[bo + e] = dvAcc[e];
    }
  }
}
