// Direct preference optimisation: the policy learns from preference pairs directly, with loss
//   −log σ(β[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]).
// The reference log-probabilities are computed once, up front, so the reference model need not stay
// in memory while the policy trains.
import { RandomStream } from '../data/index.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';
import { batchedSequenceLogProbs } from './evaluate.js';
import { dpoLoss } from './losses.js';
import { StageOptimizer, type OptimOptions } from './optim.js';
import type { EncodedPair } from './reward.js';
import { collate, sequenceLogProbs, trainableParameters, type ReferenceModel } from './sequences.js';

export interface DPOOptions extends OptimOptions {
  batchSize: number;
  beta: number;
  padId: number;
  seed?: number;
  onStep?: (m: DPOStep) => void;
}

export interface DPOStep {
  step: number;
  loss: number;
  /** Fraction of pairs whose implicit reward ranks chosen above rejected. */
  accuracy: number;
  /** Mean β·log(π/π_ref) of the chosen and the rejected responses, and their difference. */
  chosenReward: number;
  rejectedReward: number;
  margin: number;
  lr: number;
}

/** Reference log-probabilities of every pair's chosen and rejected response. */
export function referenceLogProbs(reference: ReferenceModel, pairs: readonly EncodedPair[], padId: number): { chosen: Float64Array; rejected: Float64Array } {
  return {
    chosen: Float64Array.from(batchedSequenceLogProbs(reference, pairs.map((p) => p.chosen), padId)),
    rejected: Float64Array.from(batchedSequenceLogProbs(reference, pairs.map((p) => p.rejected), padId)),
  };
}

/**
 * Trains `policy` on the pairs against reference log-probabilities computed before training
 * (referenceLogProbs: from a frozen copy, or with LoRA from the base with adapters off).
 */
export function dpo(policy: CausalLM, pairs: readonly EncodedPair[], ref: { chosen: Float64Array; rejected: Float64Array }, o: DPOOptions): { steps: DPOStep[]; seconds: number } {
  const opt = new StageOptimizer(trainableParameters(policy), o);
  const rng = new RandomStream(o.seed ?? 0);
  const index = pairs.map((_, i) => i);
  let order: number[] = [];
  const steps: DPOStep[] = [];
  const t0 = performance.now();
  policy.train();
  for (let step = 1; step <= o.steps; step++) {
    if (order.length < o.batchSize) order = order.concat(rng.sample(index, index.length));
    const ids = order.splice(0, o.batchSize);
    const B = ids.length;
    const { result: out, lr } = opt.run(() => {
      // Chosen rows 0..B−1, rejected rows B..2B−1, in one forward pass.
      const b = collate([...ids.map((i) => pairs[i].chosen), ...ids.map((i) => pairs[i].rejected)], o.padId);
      const logp = sequenceLogProbs(policy.forward(b.inputs).logits, b.labels);
      const refC = pl.tensor(Float32Array.from(ids, (i) => ref.chosen[i]));
      const refR = pl.tensor(Float32Array.from(ids, (i) => ref.rejected[i]));
      const d = dpoLoss(pl.slice(logp, 0, 0, B), pl.slice(logp, 0, B, 2 * B), refC, refR, o.beta);
      d.loss.backward();
      return { loss: d.loss.item(), chosenRewards: d.chosenRewards, rejectedRewards: d.rejectedRewards }; // the rewards are copies
    });
    let acc = 0;
    let c = 0;
    let r = 0;
    for (let i = 0; i < B; i++) {
      c += out.chosenRewards[i];
      r += out.rejectedRewards[i];
      if (out.chosenRewards[i] > out.rejectedRewards[i]) acc++;
    }
    const m: DPOStep = { step, loss: out.loss, accuracy: acc / B, chosenReward: c / B, rejectedReward: r / B, margin: (c - r) / B, lr };
    steps.push(m);
    o.onStep?.(m);
  }
  policy.eval();
  return { steps, seconds: (performance.now() - t0) / 1000 };
}
