// A simple generation loop over one sequence: prefill the prompt into a KV cache, then one token
// per step. (The batched engine with a paged cache serves many requests at once.)
import type { CausalLM } from '../models/index.js';
import { noGrad, ScratchPool, tensor } from '../tensor/index.js';
import { checkSampling, sampleToken, type SamplingOptions } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Stop after emitting any of these ids (the id is included in the output). */
  stopIds?: number[];
  /** Called with each new id as it is produced. */
  onToken?: (id: number) => void;
}

/** Generates up to maxNewTokens ids after `prompt`; returns the new ids. */
export function generate(model: CausalLM, prompt: readonly number[], options: GenerateOptions = {}): number[] {
  checkSampling(options);
  const maxNew = Math.min(options.maxNewTokens ?? 64, model.maxPositions - prompt.length);
  if (prompt.length === 0 || maxNew <= 0) return [];
  const stop = new Set(options.stopIds ?? []);
  const out: number[] = [];
  noGrad(() => {
    const cache = model.newCache(1, prompt.length + maxNew);
    // each step's tensors are recycled for the next (see ScratchPool)
    const scratch = new ScratchPool();
    let next = Array.from(prompt);
    for (let i = 0; i < maxNew; i++) {
      const id = scratch.run(() => {
        const { logits } = model.forward(tensor([next], { dtype: 'i32' }), { cache, lastOnly: true });
        return sampleToken(logits.data() as Float32Array, options);
      });
      out.push(id);
      options.onToken?.(id);
      if (stop.has(id)) break;
      next = [id];
    }
  });
  return out;
}
