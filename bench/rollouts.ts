// Alignment's generation, generateBatch (lockstep groups of equal-length prompts, a contiguous
// cache per group) against engineGenerator (every prompt at once through the paged engine), in one
// run on one model:
//   rollout   one PPO rollout batch: 64 prompts of the built-in tasks, sampled at temperature 1,
//             at most 12 new tokens, ending at <|im_end|>
//   eval      a greedy evaluation of 120 held-out questions (evaluateChat without samples)
// The model is the tiny preset (hidden 128, 4 layers, 4 heads, 2 KV heads, context 256 as
// align-demo pre-trains it) with random weights and a tokenizer trained on task text, so every
// response runs the full 12 tokens; --model=<dir> measures a trained chat model instead (its
// answers stop early, as in a real run). Two engine variants: `engine`, one generator for every
// call as PPO and the CLI use it (its engine and pool kept from call to call), and `engine_fresh`,
// a new generator per call (a new engine and pool every time).
//
//   npm run bench -- rollouts [--model=<dir>] [--rounds=N]
import { evaluateChat, generateBatch, endOfTurnId, fitsContext, promptsFromTasks, type Generator } from '../src/align/index.js';
import { taskExamples } from '../src/data/index.js';
import { engineGenerator } from '../src/infer/index.js';
import { loadCheckpoint } from '../src/io/index.js';
import * as pl from '../src/index.js';
import type { Tokenizer } from '../src/tokenizers/index.js';
import { arg, brief, fmt, machineInfo, type Measurement, median, report, summarise, timeTrial, type Trial, waitForQuiet } from './common.js';

const ROLLOUT_PROMPTS = 64;
const EVAL_QUESTIONS = 120;
const MAX_NEW = 12;

/** The summary plus the median CPU seconds of a trial (this process, every thread): on a machine
 *  others keep busy, wall time mostly measures them, and CPU time is the steadier comparison. */
function figures(m: Measurement): Record<string, unknown> {
  return { ...brief(m), median_cpu_s: median(m.trials.map((t) => t.cpu_seconds)) };
}

async function chatModel(): Promise<{ model: pl.CausalLM; tokenizer: Tokenizer; source: string }> {
  const dir = arg('model');
  if (dir) {
    const { model, tokenizer } = loadCheckpoint(dir);
    if (!tokenizer) throw new Error(`${dir} has no tokenizer.json`);
    return { model, tokenizer, source: dir };
  }
  const text = taskExamples({ seed: 9, count: 400 }).map((e) => `${e.prompt} ${e.answer}\n`).join('');
  const tokenizer = await pl.trainTokenizer({ text, vocabSize: 2048 });
  pl.manualSeed(0);
  const model = pl.createModel({
    model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-5, tie_word_embeddings: true,
  });
  return { model, tokenizer, source: 'tiny preset, random weights' };
}

async function main(): Promise<void> {
  const rounds = Number(arg('rounds') ?? 7);
  const { model, tokenizer, source } = await chatModel();
  const accept = fitsContext(tokenizer, model.maxPositions);
  const train = taskExamples({ seed: 1, count: ROLLOUT_PROMPTS, accept });
  const heldOut = taskExamples({ seed: 2, count: EVAL_QUESTIONS, accept });
  const prompts = promptsFromTasks(tokenizer, train);
  const stopIds = [endOfTurnId(tokenizer)];
  const lengths = prompts.map((p) => p.length);
  const generators: Record<string, Generator> = {
    generateBatch, engine: engineGenerator(), engine_fresh: (m, p, o) => engineGenerator()(m, p, o),
  };
  let newTokens = 0;
  const workloads: Record<string, (generate: Generator) => void> = {
    rollout: (generate) => {
      pl.manualSeed(1);
      newTokens = generate(model, prompts, { maxNewTokens: MAX_NEW, temperature: 1, stopIds }).reduce((s, r) => s + r.length, 0);
    },
    eval: (generate) => {
      evaluateChat(model, tokenizer, heldOut, { maxNewTokens: MAX_NEW, samples: 0, generator: generate });
    },
  };
  // Rounds of one trial of every (generator, workload), interleaved, so the load of a shared
  // machine falls on all of them alike; each ratio is the median of the rounds' ratios.
  const trials: Record<string, Trial[]> = {};
  for (const generate of Object.values(generators)) for (const run of Object.values(workloads)) run(generate);
  for (let round = 0; round < rounds; round++) {
    await waitForQuiet();
    for (const [g, generate] of Object.entries(generators)) {
      for (const [w, run] of Object.entries(workloads)) (trials[`${g}_${w}`] ??= []).push(await timeTrial(() => run(generate)));
    }
    console.error(`round ${round + 1}/${rounds}: ${Object.entries(trials).map(([k, t]) => `${k} ${fmt(t[round].seconds, 3)} s`).join(', ')}`);
  }
  const results: Record<string, unknown> = {};
  const seconds: Record<string, number> = {};
  for (const [k, t] of Object.entries(trials)) {
    const m = summarise(t);
    results[k] = figures(m);
    seconds[k] = m.median_s;
  }
  const ratio = (a: string, b: string) => median(trials[a].map((t, i) => t.seconds / trials[b][i].seconds));
  const rolloutRatio = ratio('generateBatch_rollout', 'engine_rollout');
  const evalRatio = ratio('generateBatch_eval', 'engine_eval');
  report('rollouts', {
    ...machineInfo(), backend: pl.getBackend(), threads: pl.numThreads(), model: source,
    prompt_tokens: { min: Math.min(...lengths), max: Math.max(...lengths), distinct: new Set(lengths).size },
    max_new_tokens: MAX_NEW, rollout_prompts: ROLLOUT_PROMPTS, rollout_new_tokens: newTokens, eval_questions: EVAL_QUESTIONS, rounds, ...results,
    speedup_rollout: rolloutRatio, speedup_eval: evalRatio,
    fresh_over_kept_rollout: ratio('engine_fresh_rollout', 'engine_rollout'), fresh_over_kept_eval: ratio('engine_fresh_eval', 'engine_eval'),
  }, `rollout of ${ROLLOUT_PROMPTS} prompts: generateBatch ${fmt(seconds.generateBatch_rollout, 2)} s, engine ${fmt(seconds.engine_rollout, 2)} s (${fmt(rolloutRatio, 2)}x); `
    + `${EVAL_QUESTIONS}-question greedy eval: generateBatch ${fmt(seconds.generateBatch_eval, 2)} s, engine ${fmt(seconds.engine_eval, 2)} s (${fmt(evalRatio, 2)}x); `
    + `a fresh engine per call: rollout ${fmt(seconds.engine_fresh_rollout, 2)} s, eval ${fmt(seconds.engine_fresh_eval, 2)} s`);
}

await main();
