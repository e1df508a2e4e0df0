// The objectives of alignment, written in differentiable tensor ops (each inherits its gradient from
// the ops it is made of), and generalised advantage estimation, which needs none.
import { ArgumentError, ShapeError } from '../errors.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

/** log σ(x) = min(x, 0) − log(1 + e^−|x|), exact for large |x| of either sign. */
export function logSigmoid(x: Tensor): Tensor {
  return pl.sub(pl.minimum(x, 0), pl.log(pl.add(pl.exp(pl.neg(pl.abs(x))), 1)));
}

/** Mean of x over the entries where mask (same shape, 0/1) is 1. */
export function maskedMean(x: Tensor, mask: Tensor): Tensor {
  const n = Math.max(1, pl.sum(mask).item());
  return pl.div(pl.sum(pl.mul(x, mask)), n);
}

/** Bradley–Terry loss of a reward model on pairs: mean −log σ(r_chosen − r_rejected). */
export function bradleyTerryLoss(chosen: Tensor, rejected: Tensor): Tensor {
  return pl.neg(pl.mean(logSigmoid(pl.sub(chosen, rejected))));
}

export interface DPOOutput {
  /** mean −log σ(β[(π_c − ref_c) − (π_r − ref_r)]). */
  loss: Tensor;
  /** The implicit rewards β(log π(y|x) − log π_ref(y|x)) of each pair's responses (no gradient). */
  chosenRewards: Float32Array;
  rejectedRewards: Float32Array;
}

/**
 * DPO (Rafailov et al., 2023) from sequence log-probabilities (B) of the policy and of the
 * reference model for the chosen and the rejected response of each pair.
 */
export function dpoLoss(policyChosen: Tensor, policyRejected: Tensor, refChosen: Tensor, refRejected: Tensor, beta: number): DPOOutput {
  if (!(beta > 0)) throw new ArgumentError(`DPO beta must be positive, got ${beta}`);
  const chosen = pl.sub(policyChosen, refChosen); // log π/π_ref of y_w
  const rejected = pl.sub(policyRejected, refRejected);
  const loss = pl.neg(pl.mean(logSigmoid(pl.mul(pl.sub(chosen, rejected), beta))));
  return {
    loss,
    chosenRewards: pl.mul(chosen.detach(), beta).toFloat32Array(),
    rejectedRewards: pl.mul(rejected.detach(), beta).toFloat32Array(),
  };
}

/**
 * Generalised advantage estimation (Schulman et al., 2016) over one response of n tokens:
 *   δ_t = r_t + γ·V_{t+1} − V_t (V_n = 0),  A_t = δ_t + γλ·A_{t+1},  returns R_t = A_t + V_t.
 */
export function gae(rewards: ArrayLike<number>, values: ArrayLike<number>, gamma: number, lambda: number): { advantages: Float64Array; returns: Float64Array } {
  const n = rewards.length;
  if (values.length !== n) throw new ShapeError(`gae: ${n} rewards but ${values.length} values`);
  const advantages = new Float64Array(n);
  const returns = new Float64Array(n);
  let next = 0;
  for (let t = n - 1; t >= 0; t--) {
    const nextValue = t + 1 < n ? values[t + 1] : 0;
    const delta = rewards[t] + gamma * nextValue - values[t];
    next = delta + gamma * lambda * next;
    advantages[t] = next;
    returns[t] = next + values[t];
  }
  return { advantages, returns };
}

/**
 * PPO's clipped surrogate (Schulman et al., 2017) over response tokens (mask 1):
 * mean max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)) with ρ = exp(log π − log π_old).
 * Returns the loss and the fraction of tokens where the clip was active.
 */
export function ppoPolicyLoss(logProbs: Tensor, oldLogProbs: Tensor, advantages: Tensor, mask: Tensor, clip: number): { loss: Tensor; clipFraction: number } {
  const ratio = pl.exp(pl.sub(logProbs, oldLogProbs));
  const unclipped = pl.mul(pl.neg(advantages), ratio);
  const clipped = pl.mul(pl.neg(advantages), pl.clamp(ratio, 1 - clip, 1 + clip));
  const loss = maskedMean(pl.maximum(unclipped, clipped), mask);
  const active = pl.noGrad(() => maskedMean(pl.gt(pl.abs(pl.sub(ratio, 1)), clip).to('f32'), mask).item());
  return { loss, clipFraction: active };
}

/** PPO's clipped value loss: mean ½·max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²) over the mask. */
export function ppoValueLoss(values: Tensor, oldValues: Tensor, returns: Tensor, mask: Tensor, clip: number): Tensor {
  const clipped = pl.add(oldValues, pl.clamp(pl.sub(values, oldValues), -clip, clip));
  const a = pl.square(pl.sub(values, returns));
  const b = pl.square(pl.sub(clipped, returns));
  return pl.mul(maskedMean(pl.maximum(a, b), mask), 0.5);
}
