// Quantization (issue 6): decode speed and weight memory of the benchmark Llama (PEERS.md W3
// `llama`: vocab 32000, hidden 512, 8 layers, 8 heads, 4 KV heads, intermediate 1376, random
// weights, untied lm_head) in float32 and with its linear layers in int8, NF4, NF4 with double
// quantization and bf16 — the same weights, in one run — beside llama.cpp on Q8_0 and Q4_0 GGUF
// exports of those weights (through bench/infer.ts --gguf, in its own process). Two more variants
// round the activations too: int8+vnni (int8 weights × int8 activations in blocks of 32, integer
// dot products) and bf16+dot (bf16 × bf16 pair products), as setActivationPrecision(model, 'fast').
//
// Decode: a 16-token prompt is prefilled (untimed), then 256 greedy tokens through the model's
// contiguous KV cache (what generate() does, each step in a ScratchPool) are one trial. Trials
// rotate over the variants, so a disturbance on the shared machine hits them alike; each variant's
// median is over its clean trials.
// Prefill: one forward of a 512-token prompt (pp512) into a fresh KV cache is one trial, likewise.
//
//   npm run bench -- quant [--trials=N] [--skip=llama]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pl from '../src/index.js';
import { arg, fmt, machineInfo, quietWaitLimit, report, summarise, timeTrial, type Trial, waitForQuiet } from './common.js';
import { benchFiles, CONFIG } from './infer.js';

const PROMPT = 16;
const NEW = 256;
const PP = 512;

interface Variant {
  name: string;
  model: pl.CausalLM;
  weightBytes: number;
  linearBytes: number;
  trials: Trial[];
  ppTrials: Trial[];
  ids: number[];
}

function argmax(l: Float32Array): number {
  let best = 0;
  for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
  return best;
}

// Each variant's forwards run in a ScratchPool of its own, kept across trials, as generate() and the
// engine run theirs: a step's tensors come from buffers recycled from the step before.
const pools = new Map<pl.CausalLM, pl.ScratchPool>();
const poolOf = (model: pl.CausalLM) => pools.get(model) ?? pools.set(model, new pl.ScratchPool()).get(model)!;

/** Prefill (untimed) and the timed decode of NEW greedy tokens; returns the ids. */
async function decodeTrial(model: pl.CausalLM, prompt: number[]): Promise<{ trial: Trial; ids: number[] }> {
  const cache = model.newCache(1, PROMPT + NEW + 1);
  const scratch = poolOf(model);
  const step = (ids: number[][]) => scratch.run(() => argmax(model.forward(pl.tensor(ids, { dtype: 'i32' }), { cache, lastOnly: true }).logits.data() as Float32Array));
  const ids: number[] = [];
  let next = pl.noGrad(() => step([prompt]));
  ids.push(next);
  const trial = await timeTrial(() => pl.noGrad(() => {
    for (let i = 0; i < NEW; i++) {
      next = step([[next]]);
      ids.push(next);
    }
  }));
  return { trial, ids };
}

/** The timed forward of a PP-token prompt into a fresh cache (made untimed). */
async function prefillTrial(model: pl.CausalLM, pp: number[]): Promise<Trial> {
  const cache = model.newCache(1, PP + 1);
  const scratch = poolOf(model);
  return timeTrial(() => pl.noGrad(() => {
    scratch.run(() => {
      model.forward(pl.tensor([pp], { dtype: 'i32' }), { cache, lastOnly: true });
    });
  }));
}

/**
 * llama.cpp decode on Q8_0 and Q4_0 exports of the same weights: bench/infer.ts's llama.cpp worker
 * (its own process, UV_THREADPOOL_SIZE=1, 2 threads) on each file; `infer.ts --gguf` exports the
 * files first when they are missing.
 */
function llamaCpp(dir: string, trials: number): Record<string, { decode_tokens_per_s: number; n_clean?: number }> | { error: string } {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'infer.js');
  const files = { q8_0: path.join(path.dirname(dir), 'model-q8_0.gguf'), q4_0: path.join(path.dirname(dir), 'model-q4_0.gguf') };
  const out: Record<string, { decode_tokens_per_s: number; n_clean?: number }> = {};
  if (!existsSync(files.q8_0) || !existsSync(files.q4_0)) {
    const r = spawnSync(process.execPath, [script, '--gguf=q8_0,q4_0', `--trials=${trials}`], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) return { error: `bench/infer.ts --gguf failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
    const json = r.stdout.slice(r.stdout.indexOf('{'), r.stdout.lastIndexOf('}') + 1);
    const rows = (JSON.parse(json) as { llama_cpp: Record<string, { decode_tokens_per_s: number; decode?: { n_clean: number } }> }).llama_cpp;
    for (const [k, v] of Object.entries(rows)) out[k] = { decode_tokens_per_s: v.decode_tokens_per_s, n_clean: v.decode?.n_clean };
    return out;
  }
  for (const [type, file] of Object.entries(files)) {
    const r = spawnSync(process.execPath, [script, '--worker=llama', `--gguf-file=${file}`, `--trials=${trials}`, '--only-decode'], {
      encoding: 'utf8', env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, maxBuffer: 1 << 26,
    });
    if (r.status !== 0) return { error: `llama.cpp worker failed on ${type}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}` };
    const row = JSON.parse(r.stdout.trim().split('\n').pop()!) as { decode_tokens_per_s: number; decode: { n_clean: number } };
    out[type] = { decode_tokens_per_s: row.decode_tokens_per_s, n_clean: row.decode.n_clean };
  }
  return out;
}

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 5);
  const skip = (arg('skip') ?? '').split(',');
  // The float32 folder bench/infer.ts uses, so llama.cpp's exports hold the same weights.
  const dir = benchFiles([]).dir;
  pl.manualSeed(1234);
  const prompt = Array.from(pl.randint(0, CONFIG.vocab_size, [PROMPT]).data() as Int32Array);
  const pp = Array.from(pl.randint(0, CONFIG.vocab_size, [PP]).data() as Int32Array);

  const variants: Variant[] = [];
  const f32 = pl.loadModel(dir);
  variants.push({ name: 'f32', model: f32, weightBytes: pl.weightBytes(f32), linearBytes: pl.linearWeightBytes(f32), trials: [], ppTrials: [], ids: [] });
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const weights = pl.readWeights(dir);
  const quantizeSeconds: Record<string, number> = {};
  for (const method of ['int8', 'nf4', 'nf4-dq', 'bf16'] as const) {
    const t0 = performance.now();
    const model = pl.quantizeWeights(config, new Map(weights), method);
    quantizeSeconds[method] = (performance.now() - t0) / 1000;
    variants.push({ name: method, model, weightBytes: pl.weightBytes(model), linearBytes: pl.linearWeightBytes(model), trials: [], ppTrials: [], ids: [] });
  }
  for (const [name, method] of [['int8+vnni', 'int8'], ['bf16+dot', 'bf16']] as const) {
    const model = pl.quantizeWeights(config, new Map(weights), method);
    pl.setActivationPrecision(model, 'fast');
    variants.push({ name, model, weightBytes: pl.weightBytes(model), linearBytes: pl.linearWeightBytes(model), trials: [], ppTrials: [], ids: [] });
  }
  weights.clear();

  for (const v of variants) v.ids = (await decodeTrial(v.model, prompt)).ids; // warm-up
  // Rounds over the variants until each has `trials` clean trials (or 3x that many in all).
  let budget = 2 * quietWaitLimit();
  const wait = async () => {
    budget -= (await waitForQuiet(Math.min(quietWaitLimit(), Math.max(0, budget)))).waited_s;
  };
  await wait();
  const cleanOf = (v: Variant) => v.trials.filter((t) => t.clean).length;
  for (let round = 0; round < 3 * trials && variants.some((v) => cleanOf(v) < trials); round++) {
    for (const v of variants) {
      if (cleanOf(v) >= trials) continue;
      const { trial } = await decodeTrial(v.model, prompt);
      v.trials.push(trial);
      if (!trial.clean) await wait();
    }
  }
  for (const v of variants) await prefillTrial(v.model, pp); // warm-up
  const ppCleanOf = (v: Variant) => v.ppTrials.filter((t) => t.clean).length;
  for (let round = 0; round < 3 * trials && variants.some((v) => ppCleanOf(v) < trials); round++) {
    for (const v of variants) {
      if (ppCleanOf(v) >= trials) continue;
      const trial = await prefillTrial(v.model, pp);
      v.ppTrials.push(trial);
      if (!trial.clean) await wait();
    }
  }

  const rows: Record<string, unknown> = {};
  const tps: Record<string, number> = {};
  const ppTps: Record<string, number> = {};
  const base = variants[0]!;
  for (const v of variants) {
    const m = summarise(v.trials);
    const p = summarise(v.ppTrials);
    tps[v.name] = NEW / m.median_s;
    ppTps[v.name] = PP / p.median_s;
    const same = v.ids.filter((id, i) => id === base.ids[i]).length;
    rows[v.name] = {
      decode_tokens_per_s: tps[v.name], decode_vs_f32: tps[v.name]! / tps.f32!,
      weight_mb: v.weightBytes / 1e6, weight_vs_f32: v.weightBytes / base.weightBytes,
      linear_weight_mb: v.linearBytes / 1e6, linear_weight_vs_f32: v.linearBytes / base.linearBytes,
      greedy_ids_same_as_f32: `${same}/${v.ids.length}`,
      median_s: m.median_s, n_trials: m.n_trials, n_clean: m.n_clean, cpu_per_wall: m.cpu_per_wall, other_cores: m.other_cores,
      quantize_s: quantizeSeconds[v.name] ?? null,
      pp512_tokens_per_s: ppTps[v.name], pp512_vs_f32: ppTps[v.name]! / ppTps.f32!,
      pp512: { median_s: p.median_s, n_trials: p.n_trials, n_clean: p.n_clean },
    };
  }
  // Plinth's figures first (stderr), in case the llama.cpp side takes long on a busy machine.
  console.error(`plinth decode tok/s: ${variants.map((v) => `${v.name} ${fmt(tps[v.name]!, 1)}`).join(', ')}`);
  console.error(`plinth pp512 tok/s: ${variants.map((v) => `${v.name} ${fmt(ppTps[v.name]!, 0)}`).join(', ')}`);
  const llama = skip.includes('llama') ? null : llamaCpp(dir, trials);
  const q8 = llama && !('error' in llama) ? llama.q8_0?.decode_tokens_per_s : undefined;
  const q4 = llama && !('error' in llama) ? llama.q4_0?.decode_tokens_per_s : undefined;
  const figures = {
    machine: machineInfo(), backend: pl.getBackend(), threads: pl.numThreads(),
    workload: `benchmark Llama (55.98 M parameters), ${PROMPT}-token prompt, ${NEW} greedy decode tokens, contiguous KV cache; linear layers (incl. lm_head) quantized, embeddings and norms float32`,
    bars: 'int8 >= 1.5x and NF4 >= 2x f32 decode; int8 >= 1.0x llama.cpp Q8_0; NF4 >= 0.8x llama.cpp Q4_0',
    plinth: rows, llama_cpp: llama,
    ratios: {
      int8_vs_f32: tps.int8! / tps.f32!, nf4_vs_f32: tps.nf4! / tps.f32!, nf4_dq_vs_f32: tps['nf4-dq']! / tps.f32!,
      int8_vs_llama_cpp_q8_0: q8 ? tps.int8! / q8 : null, nf4_vs_llama_cpp_q4_0: q4 ? tps.nf4! / q4 : null,
      int8_vnni_vs_f32: tps['int8+vnni']! / tps.f32!, bf16_dot_vs_f32: tps['bf16+dot']! / tps.f32!,
      int8_vnni_vs_llama_cpp_q8_0: q8 ? tps['int8+vnni']! / q8 : null,
      pp512_int8_vnni_vs_f32: ppTps['int8+vnni']! / ppTps.f32!, pp512_bf16_dot_vs_f32: ppTps['bf16+dot']! / ppTps.f32!,
    },
  };
  const r = figures.ratios;
  report('quant', figures,
    `decode tok/s f32 ${fmt(tps.f32!, 0)}, int8 ${fmt(tps.int8!, 0)} (${fmt(r.int8_vs_f32, 2)}x), nf4 ${fmt(tps.nf4!, 0)} (${fmt(r.nf4_vs_f32, 2)}x), ` +
    `nf4-dq ${fmt(tps['nf4-dq']!, 0)}, bf16 ${fmt(tps.bf16!, 0)}, int8+vnni ${fmt(tps['int8+vnni']!, 0)} (${fmt(r.int8_vnni_vs_f32, 2)}x), ` +
    `bf16+dot ${fmt(tps['bf16+dot']!, 0)} (${fmt(r.bf16_dot_vs_f32, 2)}x); pp512 tok/s ${variants.map((v) => `${v.name} ${fmt(ppTps[v.name]!, 0)}`).join(', ')}; weights ${variants.map((v) => `${v.name} ${fmt(v.weightBytes / 1e6, 1)} MB`).join(', ')}` +
    (q8 && q4 ? `; llama.cpp Q8_0 ${fmt(q8, 0)} (int8 ${fmt(r.int8_vs_llama_cpp_q8_0!, 2)}x), Q4_0 ${fmt(q4, 0)} (nf4 ${fmt(r.nf4_vs_llama_cpp_q4_0!, 2)}x)` : ''));
}

await main();
