// Model quality the llama.cpp way (its `perplexity` tool with --kl-divergence): perplexity on
// held-out text, and for a modified model (quantized, pruned, ...) the mean KL divergence of its
// next-token distributions from a reference model's, with how often both pick the same top token.
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

/** One batch of held-out text: inputs (B,T) and the next token at every position (B,T), i32. */
export interface EvalBatch {
  inputs: Tensor;
  targets: Tensor;
}

export interface QualityResult {
  /** exp(mean negative log-likelihood of the targets). */
  perplexity: number;
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  tokens: number;
  /** Mean over positions of KL(P_reference ‖ P_model), nats (0 for the reference itself). */
  meanKL: number;
  /** The 99th percentile of the per-position KL divergence. */
  p99KL: number;
  /** Fraction of positions where the model's most likely token is the reference's. */
  top1Agreement: number;
}

/**
 * Evaluates `models` against `reference` on the same batches: perplexity of each (and of the
 * reference), and KL(P_ref ‖ P_model) per position, P the softmax of the logits.
 */
export function compareModels(reference: CausalLM, models: Record<string, CausalLM>, batches: Iterable<EvalBatch>): { reference: QualityResult; models: Record<string, QualityResult> } {
  const names = Object.keys(models);
  const acc = new Map<string, { nll: number; kl: number[]; agree: number }>();
  for (const n of ['', ...names]) acc.set(n, { nll: 0, kl: [], agree: 0 });
  let tokens = 0;
  pl.noGrad(() => {
    for (const { inputs, targets } of batches) {
      const V = reference.config.vocab_size;
      const rows = inputs.size;
      const flatTargets = targets.reshape(rows);
      const refLogp = pl.logSoftmax(reference.forward(inputs).logits.reshape(rows, V), -1);
      const refP = pl.exp(refLogp);
      const refTop = pl.argmax(refLogp, -1).data() as Int32Array;
      tokens += rows;
      const score = (name: string, logp: Tensor) => {
        const a = acc.get(name)!;
        a.nll += pl.sum(pl.crossEntropy(logp, flatTargets, { reduction: 'none' })).item();
        if (name === '') return;
        const kl = pl.sum(pl.mul(refP, pl.sub(refLogp, logp)), -1).data() as Float32Array;
        for (const v of kl) a.kl.push(Math.max(0, v));
        const top = pl.argmax(logp, -1).data() as Int32Array;
        for (let i = 0; i < rows; i++) if (top[i] === refTop[i]) a.agree++;
      };
      score('', refLogp);
      for (const n of names) score(n, pl.logSoftmax(models[n].forward(inputs).logits.reshape(rows, V), -1));
    }
  });
  if (tokens === 0) throw new ArgumentError('compareModels: no evaluation batches');
  const result = (name: string): QualityResult => {
    const a = acc.get(name)!;
    const sorted = Float64Array.from(a.kl).sort();
    const meanKL = a.kl.reduce((s, v) => s + v, 0) / Math.max(1, a.kl.length);
    return {
      perplexity: Math.exp(a.nll / tokens), nll: a.nll / tokens, tokens,
      meanKL: name === '' ? 0 : meanKL,
      p99KL: name === '' ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))],
      top1Agreement: name === '' ? 1 : a.agree / tokens,
    };
  };
  return { reference: result(''), models: Object.fromEntries(names.map((n) => [n, result(n)])) };
}
