// A reward model: a transformer with a scalar head on its last non-pad hidden state, trained on
// preference pairs with the Bradley–Terry loss −log σ(r(chosen) − r(rejected)). Saved as the
// backbone's Hugging Face folder plus reward_head.safetensors.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { RandomStream } from '../data/index.js';
import { CheckpointError, loadCheckpoint, readSafetensors, saveModel, writeSafetensors } from '../io/index.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { bradleyTerryLoss } from './losses.js';
import { StageOptimizer, type OptimOptions } from './optim.js';
import { collate, ScalarHead, selectRows, trainableParameters, type EncodedExample } from './sequences.js';

export const REWARD_HEAD_FILE = 'reward_head.safetensors';

export interface EncodedPair {
  chosen: EncodedExample;
  rejected: EncodedExample;
}

export class RewardModel {
  readonly head: ScalarHead;

  constructor(readonly backbone: CausalLM, head?: ScalarHead) {
    const C = (backbone.config.hidden_size ?? backbone.config.n_embd) as number;
    this.head = head ?? new ScalarHead(C);
  }

  /** Scores (B) of sequences, read at each row's last real token. Differentiable. */
  score(examples: readonly EncodedExample[], padId: number): Tensor {
    const b = collate(examples, padId);
    // lastOnly: the language-model head is not needed, only the hidden states.
    const out = this.backbone.forward(b.inputs, { outputHiddenStates: true, lastOnly: true });
    const hidden = out.hiddenStates[out.hiddenStates.length - 1]; // (B, T, C)
    return this.head.forward(selectRows(hidden, b.lastIndex));
  }

  parameters(): Tensor[] {
    return trainableParameters(this.backbone, this.head);
  }

  train(mode = true): void {
    this.backbone.train(mode);
    this.head.train(mode);
  }

  save(dir: string, tokenizer?: Tokenizer | null): void {
    saveModel(this.backbone, dir, { tokenizer });
    writeSafetensors(path.join(dir, REWARD_HEAD_FILE), this.head.stateDict(), { format: 'pt' });
  }

  static load(dir: string): { model: RewardModel; tokenizer: Tokenizer | null } {
    const file = path.join(dir, REWARD_HEAD_FILE);
    if (!existsSync(file)) throw new CheckpointError(`${dir} is not a reward model: it has no ${REWARD_HEAD_FILE}`);
    const { model, tokenizer } = loadCheckpoint(dir);
    const rm = new RewardModel(model);
    rm.head.loadStateDict(readSafetensors(file).tensors);
    rm.head.eval();
    return { model: rm, tokenizer };
  }
}

export interface RewardTrainOptions extends OptimOptions {
  batchSize: number;
  padId: number;
  seed?: number;
  onStep?: (m: { step: number; loss: number; accuracy: number; lr: number }) => void;
}

/** Trains the reward model on pairs; returns the per-step losses and batch accuracies. */
export function trainRewardModel(rm: RewardModel, pairs: readonly EncodedPair[], o: RewardTrainOptions): { losses: number[]; accuracies: number[]; seconds: number } {
  const opt = new StageOptimizer(rm.parameters(), o);
  const rng = new RandomStream(o.seed ?? 0);
  let order: EncodedPair[] = [];
  const losses: number[] = [];
  const accuracies: number[] = [];
  const t0 = performance.now();
  rm.train();
  for (let step = 1; step <= o.steps; step++) {
    if (order.length < o.batchSize) order = order.concat(rng.sample(pairs, pairs.length));
    const batch = order.splice(0, o.batchSize);
    const B = batch.length;
    const { result: [loss, acc], lr } = opt.run(() => {
      // Chosen and rejected in one forward pass: rows 0..B−1 and B..2B−1.
      const r = rm.score([...batch.map((p) => p.chosen), ...batch.map((p) => p.rejected)], o.padId);
      const rc = pl.slice(r, 0, 0, B);
      const rr = pl.slice(r, 0, B, 2 * B);
      const l = bradleyTerryLoss(rc, rr);
      l.backward();
      const d = pl.sub(rc.detach(), rr.detach()).toFloat32Array();
      return [l.item(), d.reduce((s, x) => s + (x > 0 ? 1 : 0), 0) / B];
    });
    losses.push(loss);
    accuracies.push(acc);
    o.onStep?.({ step, loss, accuracy: acc, lr });
  }
  rm.train(false);
  return { losses, accuracies, seconds: (performance.now() - t0) / 1000 };
}

/** Fraction of pairs the model ranks right, and the mean margin r(chosen) − r(rejected). */
export function pairwiseAccuracy(rm: RewardModel, pairs: readonly EncodedPair[], padId: number, batch = 32): { accuracy: number; margin: number } {
  let right = 0;
  let margin = 0;
  pl.noGrad(() => {
    for (let s = 0; s < pairs.length; s += batch) {
      const part = pairs.slice(s, s + batch);
      const r = rm.score([...part.map((p) => p.chosen), ...part.map((p) => p.rejected)], padId).toFloat32Array();
      for (let i = 0; i < part.length; i++) {
        const d = r[i] - r[part.length + i];
        margin += d;
        if (d > 0) right++;
      }
    }
  });
  return { accuracy: right / pairs.length, margin: margin / pairs.length };
}

/** Scores of sequences without gradients, in batches. */
export function rewardScores(rm: RewardModel, seqs: readonly EncodedExample[], padId: number, batch = 32): number[] {
  const out: number[] = [];
  pl.noGrad(() => {
    for (let s = 0; s < seqs.length; s += batch) out.push(...rm.score(seqs.slice(s, s + batch), padId).toFloat32Array());
  });
  return out;
}
