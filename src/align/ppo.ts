// PPO for language models (Ziegler et al., 2019; Ouyang et al., 2022). Each iteration:
//   1. the policy samples a response to each prompt of a batch;
//   2. a scorer (the programmatic reward, or a reward model) scores each whole response;
//   3. per-token rewards r_t = −β·(log π(y_t) − log π_ref(y_t)), plus the score at the last token;
//   4. a value head on the policy's hidden states gives V_t; GAE(γ, λ) gives advantages and returns;
//   5. several epochs of minibatch updates on the clipped policy loss plus the clipped value loss.
// KL(π ‖ π_ref) per response is tracked from the samples, Σ_t log π(y_t) − log π_ref(y_t).
import { RandomStream } from '../data/index.js';
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import { generateBatch, type Generator } from './generation.js';
import { gae, ppoPolicyLoss, ppoValueLoss } from './losses.js';
import { StageOptimizer } from './optim.js';
import { collate, lastHiddenState, ScalarHead, tokenLogProbs, trainableParameters, type EncodedExample, type ReferenceModel } from './sequences.js';

/** Scores whole responses: one number per (prompt index, response ids). */
export type Scorer = (items: { prompt: number; response: number[] }[]) => number[];

export interface PPOOptions {
  /** Rollout batches. */
  iterations: number;
  /** Prompts per rollout batch. */
  batchSize: number;
  /** Passes over each rollout batch (default 4), each in `miniBatches` updates (default 2). */
  ppoEpochs?: number;
  miniBatches?: number;
  lr: number;
  warmupSteps?: number;
  gradClip?: number;
  /** KL penalty coefficient β (default 0.05). */
  beta?: number;
  gamma?: number;
  lambda?: number;
  /** Policy ratio clip ε (default 0.2) and value clip (default 0.2). */
  clip?: number;
  valueClip?: number;
  /** Weight of the value loss (default 0.1). */
  valueCoef?: number;
  maxNewTokens: number;
  temperature?: number;
  stopIds: readonly number[];
  padId: number;
  seed?: number;
  generator?: Generator;
  onIteration?: (m: PPOIteration) => void;
}

export interface PPOIteration {
  iteration: number;
  /** Mean score of the sampled responses. */
  score: number;
  /** Mean KL(π ‖ π_ref) per response, from the samples. */
  kl: number;
  /** Mean response length in tokens. */
  length: number;
  policyLoss: number;
  valueLoss: number;
  clipFraction: number;
  seconds: number;
}

/** Rows `index` of a (rows, width) array, in that order. */
function rows<A extends Int32Array | Float32Array>(flat: A, index: readonly number[], width: number): A {
  const out = new (flat.constructor as new (n: number) => A)(index.length * width);
  index.forEach((r, i) => out.set(flat.subarray(r * width, (r + 1) * width), i * width));
  return out;
}

/** Trains `policy` (and its value head) against `score`; `reference` stays frozen. */
export function ppo(policy: CausalLM, valueHead: ScalarHead, reference: ReferenceModel, prompts: readonly number[][], score: Scorer, o: PPOOptions): { iterations: PPOIteration[]; seconds: number } {
  if (prompts.length === 0) throw new ArgumentError('PPO needs prompts');
  const epochs = o.ppoEpochs ?? 4;
  const minis = o.miniBatches ?? 2;
  const beta = o.beta ?? 0.05;
  const gamma = o.gamma ?? 1;
  const lambda = o.lambda ?? 0.95;
  const clip = o.clip ?? 0.2;
  const valueClip = o.valueClip ?? 0.2;
  const valueCoef = o.valueCoef ?? 0.1;
  const generate = o.generator ?? generateBatch;
  const opt = new StageOptimizer(trainableParameters(policy, valueHead), {
    steps: o.iterations * epochs * minis, lr: o.lr, warmupSteps: o.warmupSteps ?? 0, gradClip: o.gradClip,
  });
  const rng = new RandomStream(o.seed ?? 0);
  const index = prompts.map((_, i) => i);
  let order: number[] = [];
  const history: PPOIteration[] = [];
  const t0 = performance.now();
  for (let it = 1; it <= o.iterations; it++) {
    const ti = performance.now();
    if (order.length < o.batchSize) order = order.concat(rng.sample(index, index.length));
    const batch = order.splice(0, o.batchSize);
    const B = batch.length;

    // 1–2. Roll out and score.
    const responses = generate(policy, batch.map((i) => prompts[i]), { maxNewTokens: o.maxNewTokens, temperature: o.temperature ?? 1, stopIds: o.stopIds });
    const scores = score(batch.map((p, j) => ({ prompt: p, response: responses[j] })));
    const seqs: EncodedExample[] = batch.map((p, j) => ({
      ids: [...prompts[p], ...responses[j]],
      mask: [...prompts[p].map(() => 0), ...responses[j].map(() => 1)],
    }));
    const b = collate(seqs, o.padId);
    const T = b.inputs.shape[1];
    const mask = b.mask.data() as Float32Array;

    // 3–4. Old log-probs and values, reference log-probs, rewards, GAE.
    const { oldLogp, oldValues, refLogp } = pl.noGrad(() => {
      const { logits, hidden } = lastHiddenState(policy, b.inputs);
      return {
        oldLogp: tokenLogProbs(logits, b.labels).toFloat32Array(),
        oldValues: valueHead.forward(hidden).toFloat32Array(),
        refLogp: tokenLogProbs(reference.logits(b.inputs), b.labels).toFloat32Array(),
      };
    });
    const advantages = new Float32Array(B * T);
    const returns = new Float32Array(B * T);
    let klSum = 0;
    let lengthSum = 0;
    for (let r = 0; r < B; r++) {
      const pos: number[] = [];
      for (let t = 0; t < T; t++) if (mask[r * T + t]) pos.push(r * T + t);
      const rewards = pos.map((k) => -beta * (oldLogp[k] - refLogp[k]));
      if (pos.length > 0) rewards[rewards.length - 1] += scores[r];
      const g = gae(rewards, pos.map((k) => oldValues[k]), gamma, lambda);
      pos.forEach((k, j) => {
        advantages[k] = g.advantages[j];
        returns[k] = g.returns[j];
        klSum += oldLogp[k] - refLogp[k];
      });
      lengthSum += pos.length;
    }
    // Whiten advantages over the response tokens of the batch.
    let n = 0;
    let mean = 0;
    for (let k = 0; k < B * T; k++) if (mask[k]) { mean += advantages[k]; n++; }
    mean /= Math.max(1, n);
    let v = 0;
    for (let k = 0; k < B * T; k++) if (mask[k]) v += (advantages[k] - mean) ** 2;
    const std = Math.sqrt(v / Math.max(1, n)) + 1e-8;
    for (let k = 0; k < B * T; k++) advantages[k] = mask[k] ? (advantages[k] - mean) / std : 0;

    // 5. PPO epochs over minibatches of rows.
    const inputs = b.inputs.data() as Int32Array;
    const labels = b.labels.data() as Int32Array;
    let policyLoss = 0;
    let valueLoss = 0;
    let clipFraction = 0;
    const size = Math.ceil(B / minis);
    policy.train();
    for (let e = 0; e < epochs; e++) {
      const perm = rng.sample(Array.from({ length: B }, (_, i) => i), B);
      for (let s = 0; s < B; s += size) {
        const part = perm.slice(s, s + size);
        const m = part.length;
        const sub = <A extends Int32Array | Float32Array>(a: A) => rows(a, part, T);
        const { result } = opt.run(() => {
          const mt = pl.tensor(sub(mask), { shape: [m, T] });
          const { logits, hidden } = lastHiddenState(policy, pl.tensor(sub(inputs), { shape: [m, T] }));
          const logp = tokenLogProbs(logits, pl.tensor(sub(labels), { shape: [m, T] }));
          const values = valueHead.forward(hidden);
          const pg = ppoPolicyLoss(logp, pl.tensor(sub(oldLogp), { shape: [m, T] }), pl.tensor(sub(advantages), { shape: [m, T] }), mt, clip);
          const vf = ppoValueLoss(values, pl.tensor(sub(oldValues), { shape: [m, T] }), pl.tensor(sub(returns), { shape: [m, T] }), mt, valueClip);
          const loss: Tensor = pl.add(pg.loss, pl.mul(vf, valueCoef));
          loss.backward();
          return { policy: pg.loss.item(), value: vf.item(), clipFraction: pg.clipFraction };
        });
        policyLoss += result.policy;
        valueLoss += result.value;
        clipFraction += result.clipFraction;
      }
    }
    policy.eval();
    const updates = epochs * Math.ceil(B / size);
    const m: PPOIteration = {
      iteration: it, score: scores.reduce((a, x) => a + x, 0) / B, kl: klSum / B, length: lengthSum / B,
      policyLoss: policyLoss / updates, valueLoss: valueLoss / updates, clipFraction: clipFraction / updates,
      seconds: (performance.now() - ti) / 1000,
    };
    history.push(m);
    o.onIteration?.(m);
  }
  return { iterations: history, seconds: (performance.now() - t0) / 1000 };
}
