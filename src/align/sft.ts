// Supervised fine-tuning: next-token loss on the assistant's tokens only (prompt tokens are labelled
// −100), with short examples packed back to back into rows of the block size so a batch is mostly
// real tokens rather than padding.
import { RandomStream } from '../data/index.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';
import { StageOptimizer, type OptimOptions } from './optim.js';
import { AlignmentDataError, collate, trainableParameters, type EncodedExample, type SequenceBatch } from './sequences.js';

/** One packed row: whole examples back to back, never split. */
export interface PackedRow {
  inputs: Int32Array;
  labels: Int32Array;
  /** [start, end) of each example in the row. */
  spans: [number, number][];
}

/**
 * Packs examples into rows of at most blockSize tokens, first fit in the given order. Within a row,
 * labels[t] = ids[t+1] when that token is a target of the same example, else −100 (so no position
 * learns to predict the start of the next example). Unused positions are padding with label −100.
 */
export function packExamples(examples: readonly EncodedExample[], blockSize: number, padId: number): PackedRow[] {
  const rows: { ex: EncodedExample[]; length: number }[] = [];
  for (const e of examples) {
    if (e.ids.length > blockSize) throw new AlignmentDataError(`an example of ${e.ids.length} tokens does not fit the block size ${blockSize}`);
    let row = rows.find((r) => r.length + e.ids.length <= blockSize);
    if (!row) {
      row = { ex: [], length: 0 };
      rows.push(row);
    }
    row.ex.push(e);
    row.length += e.ids.length;
  }
  return rows.map((r) => {
    const inputs = new Int32Array(blockSize).fill(padId);
    const labels = new Int32Array(blockSize).fill(-100);
    const spans: [number, number][] = [];
    let at = 0;
    for (const e of r.ex) {
      inputs.set(e.ids, at);
      for (let t = 0; t + 1 < e.ids.length; t++) if (e.mask[t + 1]) labels[at + t] = e.ids[t + 1];
      spans.push([at, at + e.ids.length]);
      at += e.ids.length;
    }
    return { inputs, labels, spans };
  });
}

export interface SFTOptions extends OptimOptions {
  batchSize: number;
  /** Pack examples into rows of blockSize tokens (default the model's context); false pads each example. */
  pack?: boolean;
  blockSize?: number;
  seed?: number;
  padId: number;
  onStep?: (m: { step: number; loss: number; lr: number; tokens: number }) => void;
}

export interface SFTResult {
  steps: number;
  loss: number;
  losses: number[];
  /** Target (assistant) tokens per step on average, and all tokens including prompts and padding. */
  targetTokensPerStep: number;
  rowTokensPerStep: number;
  seconds: number;
}

/** Fine-tunes the trainable parameters of `model` on the examples. */
export function sft(model: CausalLM, examples: readonly EncodedExample[], o: SFTOptions): SFTResult {
  if (examples.length === 0) throw new AlignmentDataError('SFT needs at least one example');
  const blockSize = Math.min(o.blockSize ?? model.maxPositions, model.maxPositions);
  const rng = new RandomStream(o.seed ?? 0);
  const pack = o.pack ?? true;
  const opt = new StageOptimizer(trainableParameters(model), o);
  // An epoch is a shuffled pass; packed rows are rebuilt from each epoch's order.
  const queue: SequenceBatch[] = [];
  const refill = () => {
    const order = rng.sample(examples, examples.length);
    if (pack) {
      const rows = packExamples(order, blockSize, o.padId);
      for (let i = 0; i < rows.length; i += o.batchSize) {
        const part = rows.slice(i, i + o.batchSize);
        const B = part.length;
        const inputs = new Int32Array(B * blockSize);
        const labels = new Int32Array(B * blockSize);
        part.forEach((r, b) => {
          inputs.set(r.inputs, b * blockSize);
          labels.set(r.labels, b * blockSize);
        });
        const mask = Float32Array.from(labels, (l) => (l === -100 ? 0 : 1));
        queue.push({
          inputs: pl.tensor(inputs, { shape: [B, blockSize] }), labels: pl.tensor(labels, { shape: [B, blockSize] }),
          mask: pl.tensor(mask, { shape: [B, blockSize] }), lastIndex: [],
        });
      }
    } else {
      for (let i = 0; i < order.length; i += o.batchSize) queue.push(collate(order.slice(i, i + o.batchSize), o.padId));
    }
  };
  const t0 = performance.now();
  const losses: number[] = [];
  let targets = 0;
  let rowTokens = 0;
  model.train();
  for (let step = 1; step <= o.steps; step++) {
    if (queue.length === 0) refill();
    const b = queue.shift()!;
    const { result: [l, n], lr } = opt.run(() => {
      const loss = model.forward(b.inputs, { labels: b.labels }).loss!;
      loss.backward();
      return [loss.item(), pl.sum(b.mask).item()];
    });
    losses.push(l);
    targets += n;
    rowTokens += b.inputs.size;
    o.onStep?.({ step, loss: l, lr, tokens: n });
  }
  model.eval();
  const tail = losses.slice(-Math.max(1, Math.floor(losses.length / 10)));
  return {
    steps: o.steps, loss: tail.reduce((a, x) => a + x, 0) / tail.length, losses,
    targetTokensPerStep: targets / o.steps, rowTokensPerStep: rowTokens / o.steps, seconds: (performance.now() - t0) / 1000,
  };
}
