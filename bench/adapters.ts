// Per-request LoRA adapters in the engine: what serving adapters costs beside the base model, in
// one run. The benchmark Llama (vocab 32000, hidden 512, 8 layers, 8 heads, 4 key/value heads,
// intermediate 1376, random weights) with two adapters, r=8 and alpha=16 on q_proj and v_proj
// (PEFT's usual default), B random. 32 concurrent requests (16-token prompts, NEW greedy tokens,
// prefix caching off) through one Engine, tokens generated per second, for:
//   plain        the model without LoRA layers (what `plinth serve` runs without --lora)
//   base         the LoRA-wrapped model, no request names an adapter
//   one          every request on adapter a
//   half         requests alternate between the base and a
//   two          requests alternate between a and b (a segment per request: the worst packing)
// and single-stream decode, plain versus adapter a.
//
//   npm run bench -- adapters [--trials=N (rounds, default 5)] [--new=N]
import * as pl from '../src/index.js';
import { Engine, samplingParams } from '../src/infer/index.js';
import { addAdapter, loraFactory, loraLayers } from '../src/peft/index.js';
import type { Tokenizer } from '../src/tokenizers/index.js';
import { arg, brief, fmt, machineInfo, report, summarise, timeTrial, type Trial, waitForQuiet } from './common.js';

const CONFIG = {
  model_type: 'llama', vocab_size: 32000, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8,
  num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 512, rms_norm_eps: 1e-5, tie_word_embeddings: false,
};
const CONCURRENT = 32;
const PROMPT = 16;

/** Token ids are all the engine reads; text is not measured here. */
const idTokenizer = { specialId: () => undefined, tokenToId: () => undefined, decode: () => '' } as unknown as Tokenizer;

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 5);
  const NEW = Number(arg('new') ?? 64);
  pl.manualSeed(0);
  const plain = pl.createModel(CONFIG);
  const wrapped = pl.createModel(CONFIG, { linearFactory: loraFactory() });
  wrapped.loadStateDict(plain.stateDict());
  for (const name of ['a', 'b']) addAdapter(wrapped, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] }, name);
  for (const l of loraLayers(wrapped)) for (const ad of l.adapters.values()) (ad.B.storage as Float32Array).set(pl.mul(pl.randn(ad.B.shape), 0.02).data() as Float32Array);
  wrapped.eval();
  const prompts = Array.from({ length: CONCURRENT }, () => Array.from(pl.randint(0, CONFIG.vocab_size, [PROMPT]).data() as Int32Array));
  const params = samplingParams({ temperature: 0, maxTokens: NEW, ignoreEos: true });
  const engines = new Map<pl.CausalLM, Engine>();
  const engineFor = (model: pl.CausalLM) => {
    if (!engines.has(model)) engines.set(model, new Engine(model, idTokenizer, { numBlocks: 4 * CONCURRENT * Math.ceil((PROMPT + NEW) / 16), enablePrefixCaching: false }));
    return engines.get(model)!;
  };
  let next = 0;
  const run = (model: pl.CausalLM, adapters: (string | null)[], n = CONCURRENT) => {
    const engine = engineFor(model);
    for (let i = 0; i < n; i++) engine.add({ id: `r${next++}`, promptIds: prompts[i]!, params, adapter: adapters[i % adapters.length] }, () => {});
    while (engine.hasWork) engine.step();
  };

  const modes: [string, pl.CausalLM, (string | null)[], number][] = [
    ['plain', plain, [null], CONCURRENT], ['base', wrapped, [null], CONCURRENT], ['one', wrapped, ['a'], CONCURRENT],
    ['half', wrapped, [null, 'a'], CONCURRENT], ['two', wrapped, ['a', 'b'], CONCURRENT],
    ['single_plain', plain, [null], 1], ['single_adapter', wrapped, ['a'], 1],
  ];
  // The modes take turns, one trial each per round, so a disturbance on this shared machine falls
  // on all of them alike and the ratios hold even when few trials are clean.
  for (const [, model, adapters, n] of modes) run(model, adapters, n);
  const done = new Map<string, Trial[]>(modes.map(([mode]) => [mode, []]));
  for (let round = 0; round < trials; round++) {
    await waitForQuiet();
    for (const [mode, model, adapters, n] of modes) done.get(mode)!.push(await timeTrial(() => run(model, adapters, n)));
  }
  const figures: Record<string, unknown> = {};
  const tps: Record<string, number> = {};
  for (const [mode, , , n] of modes) {
    const m = summarise(done.get(mode)!);
    tps[mode] = (n * NEW) / m.median_s;
    figures[mode] = { tokens_per_s: tps[mode], ...brief(m) };
    console.error(`${mode}: ${fmt(tps[mode])} tok/s (n_clean ${m.n_clean}/${m.n_trials})`);
  }
  const ratio = (mode: string, of: string) => fmt(tps[mode]! / tps[of]!, 2);
  report('adapters', { machine: machineInfo(), workload: `${CONCURRENT} requests x ${PROMPT}-token prompts x ${NEW} greedy tokens; adapters r=8 on q_proj, v_proj`, ...figures },
    `32 concurrent tok/s: plain ${fmt(tps.plain!)}, wrapped base ${ratio('base', 'plain')}x, one adapter ${ratio('one', 'plain')}x, base+adapter ${ratio('half', 'plain')}x, two adapters ${ratio('two', 'plain')}x of plain; single stream adapter ${ratio('single_adapter', 'single_plain')}x of plain (${fmt(tps.single_plain!)} tok/s)`);
}

await main();
