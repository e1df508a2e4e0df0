// Generation for alignment: rollouts (sampled) and evaluation (greedy) over many prompts at once.
// Prompts of equal length share one KV cache and one forward pass per step; rows that have stopped
// keep being fed (their output is ignored), so a batch moves in lockstep without masks.
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';

export interface GenerateBatchOptions {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature?: number;
  /** Generation of a row ends after any of these ids (included in its output). */
  stopIds?: readonly number[];
  /** Rows per forward pass (default 32). */
  maxBatch?: number;
}

/** A function that produces responses for prompts; the default is generateBatch, an engine may stand in. */
export type Generator = (model: CausalLM, prompts: readonly number[][], options: GenerateBatchOptions) => number[][];

function pick(logits: Float32Array, offset: number, V: number, temperature: number): number {
  let best = offset;
  for (let v = offset + 1; v < offset + V; v++) if (logits[v] > logits[best]) best = v;
  if (temperature === 0) return best - offset;
  // Sample from softmax(logits / T), drawn from the global seeded stream.
  const max = logits[best];
  let total = 0;
  for (let v = offset; v < offset + V; v++) total += Math.exp((logits[v] - max) / temperature);
  let u = pl.randomUniform() * total;
  for (let v = offset; v < offset + V; v++) {
    u -= Math.exp((logits[v] - max) / temperature);
    if (u < 0) return v - offset;
  }
  return best - offset;
}

/** New ids for each prompt (stop id included when reached), in the prompts' order. */
export function generateBatch(model: CausalLM, prompts: readonly number[][], options: GenerateBatchOptions): number[][] {
  const temperature = options.temperature ?? 0;
  if (!(temperature >= 0)) throw new ArgumentError(`temperature must be >= 0, got ${temperature}`);
  const stop = new Set(options.stopIds ?? []);
  const maxBatch = options.maxBatch ?? 32;
  const out: number[][] = prompts.map(() => []);
  // Group prompts by length so each group decodes in lockstep from one cache.
  const groups = new Map<number, number[]>();
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new ArgumentError(`prompt ${i} is empty`);
    const g = groups.get(p.length);
    if (g) g.push(i);
    else groups.set(p.length, [i]);
  });
  const was = model.training;
  model.eval();
  pl.noGrad(() => {
    for (const [len, all] of groups) {
      const maxNew = Math.min(options.maxNewTokens, model.maxPositions - len);
      if (maxNew <= 0) continue;
      for (let s = 0; s < all.length; s += maxBatch) {
        const rows = all.slice(s, s + maxBatch);
        const B = rows.length;
        const cache = model.newCache(B, len + maxNew);
        const ids = new Int32Array(B * len);
        rows.forEach((r, b) => ids.set(prompts[r], b * len));
        let next = pl.tensor(ids, { shape: [B, len] });
        const done = new Array<boolean>(B).fill(false);
        for (let step = 0; step < maxNew; step++) {
          const logits = model.forward(next, { cache, lastOnly: true }).logits.data() as Float32Array; // (B, 1, V)
          const V = logits.length / B;
          const chosen = new Int32Array(B);
          let live = 0;
          for (let b = 0; b < B; b++) {
            const id = pick(logits, b * V, V, temperature);
            chosen[b] = id;
            if (done[b]) continue;
            out[rows[b]].push(id);
            if (stop.has(id)) done[b] = true;
            else live++;
          }
          if (live === 0) break;
          next = pl.tensor(chosen, { shape: [B, 1] });
        }
      }
    }
  });
  model.train(was);
  return out;
}
