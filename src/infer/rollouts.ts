// Alignment's generation through the engine: PPO rollouts and evaluation hand all their prompts to
// one Engine at once, so prompts of any length decode together (continuous batching over a paged
// cache) instead of in lockstep groups of equal length. The result is an align Generator: same
// contract as generateBatch — new ids per prompt, the stop id included when reached, at most
// maxNewTokens and never past the model's context.
//
// The policy's weights change between PPO iterations, so no keys or values may outlive a call. The
// generator keeps one engine (and its block pool, sized to the largest batch so far) from call to
// call, with prefix caching off: a block is always written before it is read, so nothing computed
// under old weights is ever seen. Building a fresh engine per call (prefix caching on within it)
// measured slower on the tiny preset: allocating and zeroing a pool per call and collecting the old
// one cost more than the shared prompt blocks saved.
import type { GenerateBatchOptions, Generator } from '../align/index.js';
import { ArgumentError, PlinthError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import { loraLayers } from '../peft/index.js';
import { noGrad, randomInt } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { Engine } from './engine.js';
import { samplingParams } from './sampling.js';

export interface EngineGeneratorOptions {
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Token budget per engine step (default 512, the engine's own): prompts beyond it are prefilled over
   *  several steps. Larger budgets ran no faster on the tiny preset. */
  maxBatchTokens?: number;
}

/** Rollouts need ids, not text: a tokenizer with no special tokens whose text is empty, so the
 *  engine stops only on the given stop ids and its incremental detokenizer does no work. */
const idsOnly = {
  specialId: () => undefined,
  tokenToId: () => undefined,
  decode: () => '',
} as unknown as Tokenizer;

/** A Generator that runs every prompt of a call through one engine (greedy at temperature 0, else
 *  sampled with a per-request seed drawn from the global seeded stream, so a run is reproducible).
 *  It holds its engine, and with it the last model and a pool for its largest batch, until it is
 *  dropped: one generator per run (PPO's loop, an evaluation) keeps the pool from call to call. */
export function engineGenerator(options: EngineGeneratorOptions = {}): Generator {
  const blockSize = options.blockSize ?? 16;
  const maxBatchTokens = options.maxBatchTokens ?? 512;
  let kept: { model: CausalLM; engine: Engine; maxRunning: number } | null = null;
  return (model: CausalLM, prompts: readonly number[][], o: GenerateBatchOptions): number[][] => {
    const temperature = o.temperature ?? 0;
    if (!(temperature >= 0)) throw new ArgumentError(`temperature must be >= 0, got ${temperature}`);
    const out: number[][] = prompts.map(() => []);
    // Prompts with room for at least one new token, with how many they may add.
    const jobs: { index: number; maxTokens: number }[] = [];
    let blocks = 0;
    prompts.forEach((p, i) => {
      if (p.length === 0) throw new ArgumentError(`prompt ${i} is empty`);
      const maxTokens = Math.min(o.maxNewTokens, model.maxPositions - p.length);
      if (maxTokens <= 0) return;
      jobs.push({ index: i, maxTokens });
      blocks += Math.ceil((p.length + maxTokens) / blockSize);
    });
    if (jobs.length === 0) return out;
    const maxRunning = o.maxBatch ?? Number.MAX_SAFE_INTEGER;
    let engine = kept !== null && kept.model === model && kept.maxRunning === maxRunning && kept.engine.numBlocks >= blocks ? kept.engine : null;
    if (engine === null) {
      // A policy with LoRA generates through its own adapter. The engine serves requests that name
      // no adapter from the base and switches the model's adapters off, so each layer's is put back.
      const lora = loraLayers(model);
      const active = lora.map((l) => l.active);
      engine = new Engine(model, idsOnly, {
        blockSize, numBlocks: blocks, maxBatchTokens: Math.max(maxBatchTokens, blockSize), maxRunning, enablePrefixCaching: false,
      });
      lora.forEach((l, i) => { if (l.merged === null) l.setAdapter(active[i]); });
      kept = { model, engine, maxRunning };
    }
    const run = engine;
    let failure: string | null = null;
    // Dropout off and no tape while generating; the caller's mode (training, with LoRA) comes back.
    const was = model.training;
    model.eval();
    try {
      for (const { index, maxTokens } of jobs) {
        const params = samplingParams({
          temperature, maxTokens, stopTokenIds: [...(o.stopIds ?? [])], ignoreEos: true,
          // Greedy requests draw nothing, so the global stream moves as it would under generateBatch.
          seed: temperature === 0 ? 0 : randomInt(2 ** 32),
        });
        run.add({ id: String(index), promptIds: prompts[index], params }, (e) => {
          if (e.type === 'token') out[index].push(e.tokenId);
          else if (e.type === 'error') failure ??= e.message;
        });
      }
      noGrad(() => {
        while (run.hasWork && failure === null) run.step();
      });
    } finally {
      model.train(was);
      // A failed call leaves no request behind for the next one.
      for (const { index } of jobs) run.abort(String(index));
    }
    if (failure !== null) throw new PlinthError(`generation failed: ${failure}`);
    return out;
  };
}
