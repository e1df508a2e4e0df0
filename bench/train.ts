// Training throughput (PEERS.md W2 plus a Llama-style model): forward + backward + AdamW in
// float32 on 4 fixed random batches, Plinth against PyTorch running the same model in the same run.
// Each side runs every config in a fresh process, so peak resident memory is the config's own.
//
//   npm run bench -- train [--only=a,b,c,d] [--trials=N]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as pl from '../src/index.js';
import { arg, brief, findTorchPython, fmt, machineInfo, type Measurement, report, runPeer, runTrials } from './common.js';

interface ModelSpec { family: 'gpt2' | 'llama'; vocab: number; layers: number; heads: number; kv_heads?: number; width: number; intermediate?: number }
interface Config { name: string; model: ModelSpec; block: number; batch: number }

const CONFIGS: Config[] = [
  { name: 'a', model: { family: 'gpt2', vocab: 65, layers: 4, heads: 4, width: 128 }, block: 128, batch: 16 },
  { name: 'b', model: { family: 'gpt2', vocab: 65, layers: 6, heads: 6, width: 384 }, block: 256, batch: 8 },
  { name: 'c', model: { family: 'gpt2', vocab: 50257, layers: 4, heads: 4, width: 256 }, block: 256, batch: 4 },
  { name: 'd', model: { family: 'llama', vocab: 32000, layers: 8, heads: 8, kv_heads: 4, width: 512, intermediate: 1376 }, block: 256, batch: 4 },
];

function buildModel(c: Config): pl.CausalLM {
  const m = c.model;
  if (m.family === 'gpt2') {
    return pl.createModel({ model_type: 'gpt2', vocab_size: m.vocab, n_positions: c.block, n_embd: m.width, n_layer: m.layers, n_head: m.heads, bias: false, initializer_range: 0.02 });
  }
  return pl.createModel({
    model_type: 'llama', vocab_size: m.vocab, hidden_size: m.width, intermediate_size: m.intermediate!, num_hidden_layers: m.layers,
    num_attention_heads: m.heads, num_key_value_heads: m.kv_heads, max_position_embeddings: c.block, rms_norm_eps: 1e-5, tie_word_embeddings: false,
  });
}

/** Runs one config in this process and prints its figures (the worker side). */
async function worker(c: Config, trials: number): Promise<void> {
  const rssAfterImport = process.memoryUsage().rss / 2 ** 20;
  pl.manualSeed(0);
  const model = buildModel(c);
  const params = model.parameters();
  const opt = new pl.AdamW([
    { params: params.filter((p) => p.ndim >= 2), weightDecay: 0.1 },
    { params: params.filter((p) => p.ndim < 2), weightDecay: 0 },
  ], { lr: 6e-4, betas: [0.9, 0.95], eps: 1e-8 });
  const batches = Array.from({ length: 4 }, () => ({ inputs: pl.randint(0, c.model.vocab, [c.batch, c.block]), targets: pl.randint(0, c.model.vocab, [c.batch, c.block]) }));
  let i = 0;
  let loss = NaN;
  // the trainer's own step (plinth pretrain and finetune run it), with its recycled step buffers
  const scratch = new pl.ScratchPool();
  const step = () => {
    loss = pl.trainStep(model, opt, () => batches[i++ % 4], { scratch }).loss;
  };
  const m: Measurement = await runTrials(step, { trials, warmup: 3 });
  const nonEmbedding = model.numParameters() - (c.model.family === 'gpt2' ? c.block * c.model.width : 0);
  const flopPerToken = 6 * nonEmbedding + 12 * c.model.layers * c.model.width * c.block;
  const tokensPerS = (c.batch * c.block) / m.median_s;
  console.log(JSON.stringify({
    ...brief(m), tokens_per_s: tokensPerS, gflops: (flopPerToken * tokensPerS) / 1e9,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024, rss_after_import_mb: rssAfterImport,
    params: model.numParameters(), backend: pl.getBackend(), threads: pl.numThreads(), last_loss: loss,
  }));
}

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 20);
  const workerName = arg('worker');
  if (workerName) return worker(CONFIGS.find((c) => c.name === workerName)!, trials);
  const only = arg('only')?.split(',');
  const rows: Record<string, unknown>[] = [];
  const summary: string[] = [];
  for (const c of CONFIGS.filter((x) => !only || only.includes(x.name))) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), `--worker=${c.name}`, `--trials=${trials}`], { encoding: 'utf8', maxBuffer: 16 << 20 });
    if (r.status !== 0) throw new Error(`plinth worker ${c.name} failed: ${r.stderr}`);
    const plinth = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tokens_per_s: number; peak_rss_mb: number };
    let torch: { tokens_per_s: number; peak_rss_mb: number } | null = null;
    if (findTorchPython()) torch = runPeer('train.py', { model: c.model, block: c.block, batch: c.batch, trials, threads: 2 });
    const ratio = torch ? plinth.tokens_per_s / torch.tokens_per_s : null;
    rows.push({ config: c.name, ...c, plinth, torch, speed_ratio: ratio, memory_ratio: torch ? plinth.peak_rss_mb / torch.peak_rss_mb : null });
    summary.push(`${c.name} ${fmt(plinth.tokens_per_s, 0)} tok/s${torch ? ` vs torch ${fmt(torch.tokens_per_s, 0)} (${fmt(ratio!, 2)}x), RSS ${fmt(plinth.peak_rss_mb, 0)} vs ${fmt(torch.peak_rss_mb, 0)} MB` : ''}`);
  }
  report('train', { machine: machineInfo(), bar: 'tokens/s >= 1.0x PyTorch and peak RSS <= PyTorch', configs: rows }, summary.join('; '));
}

await main();
