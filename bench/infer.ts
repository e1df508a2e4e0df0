// Inference (issue 5; PEERS.md W3 `llama`): the benchmark Llama (vocab 32000, hidden 512, 8 layers,
// 8 heads, 4 KV heads, intermediate 1376, random N(0, 0.02) weights) saved as a Plinth folder and
// exported to GGUF F32 — the same weights — then, in one run:
//
// - single-stream decode tokens/s: a 16-token prompt is prefilled (untimed), then 256 greedy decode
//   steps are timed. Plinth through its Engine (and through generate()'s contiguous cache),
//   PyTorch 1.13 with a KV cache (bench/peers/infer.py), llama.cpp through node-llama-cpp;
// - prompt processing tokens/s for a 512-token prompt (all three);
// - throughput of 32 concurrent requests (16-token prompts, 256 new tokens each) through the Engine;
// - server time to first token and inter-token latency at 1, 8 and 32 clients (bench/serve.ts).
//
// Each system runs in its own process (2 threads); llama.cpp's with UV_THREADPOOL_SIZE=1, without
// which its decode runs several times slower here. Prompts are the same random ids for everyone.
//
//   npm run bench -- infer [--trials=N] [--skip=torch,llama,server,concurrent]
//   (BENCH_TRIAL_BUDGET: seconds of trials after which disturbed ones are no longer replaced, default 240)
//   npm run bench -- infer --gguf=q8_0,q4_0     (issue 6: llama.cpp decode on quantized exports only)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pl from '../src/index.js';
import { ByteLevelModel } from '../src/tokenizers/bytelevel.js';
import { arg, brief, findTorchPython, fmt, machineInfo, type Measurement, quietWaitLimit, report, runPeer, summarise, timeTrial, type Trial, waitForQuiet } from './common.js';

/** The benchmark Llama of PEERS.md W3 (quant.ts measures the same weights). */
export const CONFIG = {
  model_type: 'llama', vocab_size: 32000, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8,
  num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000,
  tie_word_embeddings: false, initializer_range: 0.02,
};
const PROMPT = 16;
const NEW = 256;
const PP = 512;
const CONCURRENT = 32;

/** Fixed random prompts, the same for every system. */
function prompts(): { prompt: number[]; pp: number[]; concurrent: number[][] } {
  pl.manualSeed(1234);
  const ids = (n: number) => Array.from(pl.randint(0, CONFIG.vocab_size, [n]).data() as Int32Array);
  return { prompt: ids(PROMPT), pp: ids(PP), concurrent: Array.from({ length: CONCURRENT }, () => ids(PROMPT)) };
}

/** Seconds of trials after which a measurement stops adding trials to replace disturbed ones: on a
 *  saturated machine llama.cpp's spinning threads make one decode trial take minutes. */
const TRIAL_BUDGET_S = Number(process.env.BENCH_TRIAL_BUDGET ?? 240);

/** Like runTrials, with an untimed setup before every trial (the prefill before a decode). */
async function trialsAfterSetup(setup: () => void | Promise<void>, fn: () => void | Promise<void>, trials: number): Promise<Measurement> {
  await setup();
  await fn();
  let budget = 2 * quietWaitLimit();
  const wait = async () => {
    budget -= (await waitForQuiet(Math.min(quietWaitLimit(), Math.max(0, budget)))).waited_s;
  };
  await wait();
  const done: Trial[] = [];
  let clean = 0;
  let spent = 0;
  while (clean < trials && done.length < 3 * trials && !(spent > TRIAL_BUDGET_S && done.length >= trials)) {
    await setup();
    const t = await timeTrial(fn);
    spent += t.seconds;
    done.push(t);
    if (t.clean) clean++;
    else if (clean < trials) await wait();
  }
  return summarise(done);
}

// ---- the files --------------------------------------------------------------------------------

/**
 * The benchmark model as a Plinth folder (with the GPT-2 tokenizer, whose first 32000 ids all decode)
 * and its GGUF exports. llama.cpp needs a vocabulary of exactly 32000 tokens, so the GGUF files
 * carry the GPT-2 vocabulary cut at 32000 ids with the merges among them; the benchmark feeds ids.
 */
export function benchFiles(types: pl.GGUFExportType[]): { dir: string; gguf: Partial<Record<pl.GGUFExportType, string>> } {
  const root = path.join(tmpdir(), 'plinth-bench-infer');
  const dir = path.join(root, 'model');
  if (!existsSync(path.join(dir, 'model.safetensors'))) {
    mkdirSync(root, { recursive: true });
    pl.manualSeed(0);
    pl.saveModel(pl.createModel(CONFIG), dir, { tokenizer: pl.loadTokenizer('r50k_base') });
  }
  const gguf: Partial<Record<pl.GGUFExportType, string>> = {};
  let loaded: { model: pl.CausalLM; tokenizer: pl.Tokenizer } | null = null;
  for (const type of types) {
    const file = path.join(root, `model-${type}.gguf`);
    if (!existsSync(file)) {
      loaded ??= { model: pl.loadModel(dir), tokenizer: truncatedTokenizer(pl.loadTokenizer('r50k_base'), CONFIG.vocab_size) };
      pl.exportGGUF(loaded.model, loaded.tokenizer, file, { type, name: 'plinth-bench-llama' });
    }
    gguf[type] = file;
  }
  return { dir, gguf };
}

/** A byte-level BPE tokenizer keeping ids below n and the merges that produce them. */
function truncatedTokenizer(t: pl.Tokenizer, n: number): pl.Tokenizer {
  const m = t.model as ByteLevelModel;
  const tokens = Array.from({ length: n }, (_, id) => (m.bpe.has(id) ? m.bpe.tokenBytes(id) : null));
  const merges = m.mergeList().filter(([a, b]) => a < n && b < n).slice(0, n - 256);
  return new pl.Tokenizer({ model: new ByteLevelModel({ tokens, merges, pattern: 'gpt2' }), config: {} });
}

// ---- Plinth -----------------------------------------------------------------------------------

async function plinthWorker(dir: string, trials: number, skip: string[]): Promise<void> {
  const { model, tokenizer } = pl.loadCheckpoint(dir);
  if (!tokenizer) throw new Error(`${dir} has no tokenizer`);
  const p = prompts();
  const greedy = (maxTokens: number) => pl.samplingParams({ temperature: 0, maxTokens, ignoreEos: true });
  // Enough blocks for every concurrent request; no prefix caching, so repeated prompts are recomputed.
  const blocks = CONCURRENT * Math.ceil((PROMPT + NEW + 1) / 16) + 64;
  const engine = new pl.Engine(model, tokenizer, { numBlocks: blocks, enablePrefixCaching: false });
  let n = 0;
  const run = (prompt: number[], maxTokens: number, out?: number[]) => {
    const id = `r${n++}`;
    engine.add({ id, promptIds: prompt, params: greedy(maxTokens) }, (e) => {
      if (e.type === 'token') out?.push(e.tokenId);
      if (e.type === 'error') throw new Error(e.message);
    });
  };
  const drain = () => {
    while (engine.hasWork) engine.step();
  };

  // Single stream: the prefill step emits the first token; then NEW steps of one token each.
  let engineIds: number[] = [];
  const decode = await trialsAfterSetup(() => {
    engineIds = [];
    run(p.prompt, NEW + 1, engineIds);
    engine.step();
  }, drain, trials);

  // The same through generate()'s contiguous KV cache (model.forward one token at a time).
  const cacheLen = PROMPT + NEW + 1;
  let cache = model.newCache(1, cacheLen);
  let next = 0;
  const genIds: number[] = [];
  const argmax = (l: Float32Array) => {
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    return best;
  };
  const contiguous = await trialsAfterSetup(() => {
    cache = model.newCache(1, cacheLen);
    genIds.length = 0;
    next = pl.noGrad(() => argmax(model.forward(pl.tensor([p.prompt], { dtype: 'i32' }), { cache, lastOnly: true }).logits.data() as Float32Array));
    genIds.push(next);
  }, () => pl.noGrad(() => {
    for (let i = 0; i < NEW; i++) {
      next = argmax(model.forward(pl.tensor([[next]], { dtype: 'i32' }), { cache, lastOnly: true }).logits.data() as Float32Array);
      genIds.push(next);
    }
  }), trials);
  const prefill = await trialsAfterSetup(() => undefined, () => {
    run(p.prompt, 1);
    drain();
  }, 20);
  const pp = await trialsAfterSetup(() => undefined, () => {
    run(p.pp, 1);
    drain();
  }, trials);
  let concurrent: Measurement | null = null;
  if (!skip.includes('concurrent')) {
    concurrent = await trialsAfterSetup(() => undefined, () => {
      for (const q of p.concurrent) run(q, NEW + 1);
      drain();
    }, Math.max(3, Math.ceil(trials / 2)));
  }
  console.log(JSON.stringify({
    decode_tokens_per_s: NEW / decode.median_s, decode: brief(decode),
    generate_decode_tokens_per_s: NEW / contiguous.median_s, generate_decode: brief(contiguous),
    prefill_ms: prefill.median_s * 1000,
    pp_tokens_per_s: PP / pp.median_s, pp: brief(pp),
    concurrent_tokens_per_s: concurrent ? (CONCURRENT * (NEW + 1)) / concurrent.median_s : null, concurrent: concurrent ? brief(concurrent) : null,
    greedy_ids: engineIds, generate_matches_engine: genIds.every((id, i) => id === engineIds[i]),
    backend: pl.getBackend(), threads: pl.numThreads(),
  }));
}

// ---- llama.cpp --------------------------------------------------------------------------------

async function llamaWorker(file: string, trials: number, onlyDecode: boolean): Promise<void> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  type Token = import('node-llama-cpp').Token;
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ contextSize: 1024, batchSize: PP, threads: 2, sequences: 1 });
  const seq = context.getSequence();
  const p = prompts();
  let it: AsyncGenerator<Token, void, void | Token | Token[]> | null = null;
  let ids: number[] = [];
  const decode = await trialsAfterSetup(async () => {
    await it?.return();
    await seq.clearHistory();
    it = seq.evaluate(p.prompt as Token[], { temperature: 0 });
    ids = [(await it.next()).value as number];
  }, async () => {
    for (let i = 0; i < NEW; i++) ids.push((await it!.next()).value as number);
  }, trials);
  await it!.return();
  let pp: Measurement | null = null;
  if (!onlyDecode) {
    pp = await trialsAfterSetup(() => seq.clearHistory(), () => seq.evaluateWithoutGeneratingNewTokens(p.pp as Token[]), trials);
  }
  console.log(JSON.stringify({
    decode_tokens_per_s: NEW / decode.median_s, decode: brief(decode),
    pp_tokens_per_s: pp ? PP / pp.median_s : null, pp: pp ? brief(pp) : null,
    greedy_ids: ids, threads: 2, uv_threadpool_size: process.env.UV_THREADPOOL_SIZE ?? null,
  }));
}

/** Runs the llama.cpp side in a child process with UV_THREADPOOL_SIZE=1 (set before libuv starts). */
export function runLlamaCpp(file: string, trials: number, onlyDecode = false): Record<string, unknown> & { decode_tokens_per_s: number; pp_tokens_per_s: number | null; greedy_ids: number[] } {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker=llama', `--gguf-file=${file}`, `--trials=${trials}`, ...(onlyDecode ? ['--only-decode'] : [])], {
    encoding: 'utf8', maxBuffer: 16 << 20, env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
  });
  if (r.status !== 0) throw new Error(`llama.cpp worker failed: ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function runPlinth(dir: string, trials: number, skip: string[]): Record<string, unknown> & { decode_tokens_per_s: number; pp_tokens_per_s: number; concurrent_tokens_per_s: number | null; greedy_ids: number[] } {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker=plinth', `--dir=${dir}`, `--trials=${trials}`, `--skip=${skip.join(',')}`], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`plinth worker failed: ${r.stderr.trim().split('\n').slice(-8).join('\n')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** How many leading ids two greedy runs share (random weights make near-ties, so they part at some point). */
function agree(a: number[], b: number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 5);
  const worker = arg('worker');
  const skip = (arg('skip') ?? '').split(',').filter(Boolean);
  if (worker === 'plinth') return plinthWorker(arg('dir')!, trials, skip);
  if (worker === 'llama') return llamaWorker(arg('gguf-file')!, trials, process.argv.includes('--only-decode'));

  const quantTypes = arg('gguf')?.split(',') as pl.GGUFExportType[] | undefined;
  if (quantTypes) {
    // issue 6: llama.cpp decode on quantized exports of the same weights, beside its F32
    const files = benchFiles(['f32', ...quantTypes.filter((t) => t !== 'f32')]);
    const rows: Record<string, unknown> = {};
    for (const [type, file] of Object.entries(files.gguf)) rows[type] = runLlamaCpp(file, trials, true);
    const tps = (t: string) => (rows[t] as { decode_tokens_per_s: number }).decode_tokens_per_s;
    report('infer-gguf', { machine: machineInfo(), workload: `llama.cpp decode, ${PROMPT}-token prompt, ${NEW} greedy tokens, 2 threads`, llama_cpp: rows },
      Object.keys(rows).map((t) => `${t} ${fmt(tps(t), 0)} tok/s`).join(', '));
    return;
  }

  const files = benchFiles(['f32']);
  // each side's figures go to stderr as they arrive: on a busy machine the whole run takes long
  const progress = (name: string, x: unknown) => console.error(`${name}: ${JSON.stringify(x)}`);
  const plinth = runPlinth(files.dir, trials, skip);
  progress('plinth', plinth);
  const llama = skip.includes('llama') ? null : runLlamaCpp(files.gguf.f32!, trials);
  progress('llama.cpp', llama);
  const torch = skip.includes('torch') || !findTorchPython()
    ? null
    : runPeer<{ decode_tokens_per_s: number; pp_tokens_per_s: number; prefill_ms: number; greedy_ids: number[] }>('infer.py', {
      dir: files.dir, prompt_ids: prompts().prompt, pp_ids: prompts().pp, new_tokens: NEW, trials, threads: 2,
    });
  progress('torch', torch);
  let server: unknown = null;
  if (!skip.includes('server')) {
    // bench/serve.ts (the server benchmark) owns the server side; its latency levels run over this folder
    try {
      const serve = (await import(new URL('./serve.js', import.meta.url).href)) as { serverLatency(dir: string, clients: number[]): Promise<unknown> };
      server = await serve.serverLatency(files.dir, [1, 8, 32]);
    } catch (e) {
      // the other figures stand without the server's
      server = { error: (e as Error).message.split('\n').slice(0, 3).join(' | ') };
    }
    progress('server', server);
  }
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a && b ? a / b : null);
  const figures = {
    machine: machineInfo(),
    workload: { model: CONFIG, prompt_tokens: PROMPT, new_tokens: NEW, pp_tokens: PP, concurrent_requests: CONCURRENT, threads: 2 },
    bars: 'decode >= 1.0x llama.cpp F32 and >= 1.5x PyTorch; prompt processing >= 1.0x node-llama-cpp; 32 concurrent >= 5x single-stream',
    plinth, llama_cpp_f32: llama, torch,
    ratios: {
      decode_vs_llama_cpp: ratio(plinth.decode_tokens_per_s, llama?.decode_tokens_per_s),
      decode_vs_torch: ratio(plinth.decode_tokens_per_s, torch?.decode_tokens_per_s),
      pp_vs_llama_cpp: ratio(plinth.pp_tokens_per_s, llama?.pp_tokens_per_s),
      pp_vs_torch: ratio(plinth.pp_tokens_per_s, torch?.pp_tokens_per_s),
      concurrent_vs_single: ratio(plinth.concurrent_tokens_per_s, plinth.decode_tokens_per_s),
    },
    greedy_agreement: {
      plinth_llama_cpp: llama ? agree(plinth.greedy_ids, llama.greedy_ids) : null,
      plinth_torch: torch ? agree(plinth.greedy_ids, torch.greedy_ids) : null,
      of: NEW + 1,
    },
    server,
  };
  const r = figures.ratios;
  const parts = [
    `decode ${fmt(plinth.decode_tokens_per_s, 0)} tok/s vs llama.cpp ${llama ? `${fmt(llama.decode_tokens_per_s, 0)} (${fmt(r.decode_vs_llama_cpp!, 2)}x)` : '-'} vs torch ${torch ? `${fmt(torch.decode_tokens_per_s, 0)} (${fmt(r.decode_vs_torch!, 2)}x)` : '-'}`,
    `pp512 ${fmt(plinth.pp_tokens_per_s, 0)} tok/s vs llama.cpp ${llama?.pp_tokens_per_s ? `${fmt(llama.pp_tokens_per_s, 0)} (${fmt(r.pp_vs_llama_cpp!, 2)}x)` : '-'} vs torch ${torch ? `${fmt(torch.pp_tokens_per_s, 0)} (${fmt(r.pp_vs_torch!, 2)}x)` : '-'}`,
    plinth.concurrent_tokens_per_s ? `${CONCURRENT} concurrent ${fmt(plinth.concurrent_tokens_per_s, 0)} tok/s (${fmt(r.concurrent_vs_single!, 1)}x single)` : null,
  ];
  if (Array.isArray(server)) {
    parts.push(`server ttft p50 ${(server as { clients: number; ttft_p50_ms: number; itl_p50_ms: number }[]).map((s) => `${s.clients}:${fmt(s.ttft_p50_ms, 0)}ms`).join(' ')}, itl p50 ${(server as { clients: number; itl_p50_ms: number }[]).map((s) => `${s.clients}:${fmt(s.itl_p50_ms, 1)}ms`).join(' ')}`);
  }
  report('infer', figures, parts.filter(Boolean).join('; '));
}

// Other benchmarks import benchFiles and runLlamaCpp; run only as the entry point.
if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
