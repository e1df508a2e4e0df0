// LoRA fine-tuning against full fine-tuning of the same model, in the same run: training-step
// throughput (forward + backward + AdamW) and peak memory. The model is the benchmark Llama
// (vocab 32000, hidden 512, 8 layers, 8 heads, 4 key/value heads, intermediate 1376), random
// weights, 4 fixed random batches of 4 x 256 tokens. Modes:
//   full       every parameter trains (AdamW moments for all of them)
//   lora       r=8, alpha=16 on q_proj and v_proj (PEFT's usual default)
//   lora-all   r=16, alpha=32 on every linear layer but the output head
//   qlora      lora-all on an NF4 base
// Each mode runs in a fresh process, so its peak resident memory is its own.
//
//   npm run bench -- lora [--only=full,lora] [--trials=N] [--max-trials=N]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as pl from '../src/index.js';
import { addAdapter, loraFactory } from '../src/peft/index.js';
import { quantizedLayers, quantizedLinearFactory, weightBytes } from '../src/quant/index.js';
import { arg, brief, fmt, machineInfo, report, runTrials } from './common.js';

const CONFIG = {
  model_type: 'llama', vocab_size: 32000, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8,
  num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 256, rms_norm_eps: 1e-5, tie_word_embeddings: false,
};
const B = 4;
const T = 256;
const MODES = ['full', 'lora', 'lora-all', 'qlora'] as const;
type Mode = (typeof MODES)[number];

function build(mode: Mode): pl.CausalLM {
  pl.manualSeed(0);
  if (mode === 'full') return pl.createModel(CONFIG);
  if (mode !== 'qlora') {
    const model = pl.createModel(CONFIG, { linearFactory: loraFactory() });
    addAdapter(model, mode === 'lora' ? { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] } : { r: 16, alpha: 32, targetModules: 'all-linear' });
    return model;
  }
  // Quantize each random float weight as its layer is built (the output head stays float, as
  // transformers keeps it for 4-bit models).
  const nf4 = quantizedLinearFactory('nf4', (_name, N, K) => pl.randn([N, K], { std: 0.02 }).data() as Float32Array);
  const model = pl.createModel(CONFIG, {
    linearFactory: loraFactory((i, o, opts) => (opts.prefix === 'lm_head' ? pl.plainLinear(i, o, opts) : nf4(i, o, opts))),
  });
  addAdapter(model, { r: 16, alpha: 32, targetModules: 'all-linear' });
  return model;
}

async function worker(mode: Mode, trials: number, maxTrials: number): Promise<void> {
  const rssBefore = process.memoryUsage().rss / 2 ** 20;
  const model = build(mode);
  const params = model.parameters().filter((p) => p.requiresGrad);
  const opt = new pl.AdamW([
    { params: params.filter((p) => p.ndim >= 2), weightDecay: mode === 'full' ? 0.1 : 0 },
    { params: params.filter((p) => p.ndim < 2), weightDecay: 0 },
  ], { lr: 1e-4, betas: [0.9, 0.95], eps: 1e-8 });
  const batches = Array.from({ length: 4 }, () => ({ inputs: pl.randint(0, CONFIG.vocab_size, [B, T]), targets: pl.randint(0, CONFIG.vocab_size, [B, T]) }));
  let i = 0;
  let loss = NaN;
  // the trainer's own step (plinth pretrain and finetune run it), with its recycled step buffers
  const scratch = new pl.ScratchPool();
  const step = () => {
    loss = pl.trainStep(model, opt, () => batches[i++ % 4], { scratch }).loss;
  };
  const m = await runTrials(step, { trials, maxTrials, warmup: 2 });
  const trainable = params.reduce((s, p) => s + p.size, 0);
  const optimizerFloats = [...opt.state.values()].reduce((s, st) => s + st.m.size + st.v.size, 0);
  console.log(JSON.stringify({
    mode, ...brief(m), tokens_per_s: (B * T) / m.median_s,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024, rss_after_import_mb: rssBefore,
    weight_mb: weightBytes(model) / 2 ** 20, quantized_layers: quantizedLayers(model).length,
    trainable_params: trainable, optimizer_state_mb: (optimizerFloats * 4) / 2 ** 20,
    backend: pl.getBackend(), threads: pl.numThreads(), last_loss: loss,
  }));
}

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 10);
  const maxTrials = Number(arg('max-trials') ?? 3 * trials);
  const w = arg('worker');
  if (w) return worker(w as Mode, trials, maxTrials);
  const only = arg('only')?.split(',');
  const rows: Record<string, { tokens_per_s: number; peak_rss_mb: number; [k: string]: unknown }> = {};
  for (const mode of MODES.filter((m) => !only || only.includes(m))) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), `--worker=${mode}`, `--trials=${trials}`, `--max-trials=${maxTrials}`], { encoding: 'utf8', maxBuffer: 16 << 20 });
    if (r.status !== 0) throw new Error(`worker ${mode} failed: ${r.stderr}`);
    rows[mode] = JSON.parse(r.stdout.trim().split('\n').pop()!);
  }
  const full = rows.full;
  const summary = Object.entries(rows).map(([mode, r]) => {
    const rel = full && mode !== 'full' ? ` (${fmt(r.tokens_per_s / full.tokens_per_s, 2)}x speed, ${fmt(r.peak_rss_mb / full.peak_rss_mb, 2)}x memory of full)` : '';
    return `${mode} ${fmt(r.tokens_per_s, 0)} tok/s, peak RSS ${fmt(r.peak_rss_mb, 0)} MB${rel}`;
  });
  report('lora', {
    machine: machineInfo(), model: CONFIG, batch: B, block: T, modes: rows,
    speed_vs_full: full ? Object.fromEntries(Object.entries(rows).map(([k, r]) => [k, r.tokens_per_s / full.tokens_per_s])) : null,
    memory_vs_full: full ? Object.fromEntries(Object.entries(rows).map(([k, r]) => [k, r.peak_rss_mb / full.peak_rss_mb])) : null,
  }, summary.join('; '));
}

await main();
