// Time to quality: character-level tinyshakespeare (first 90% train, last 10% validation) with
// W2 config (a) — the wall time until the validation loss reaches 1.88, for Plinth and for PyTorch
// training the same model the same way (AdamW, warm-up + cosine, clipping at 1.0, same evaluation).
//
//   npm run bench -- ttq [--target=1.88] [--max-steps=N]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pl from '../src/index.js';
import { arg, findTorchPython, fmt, machineInfo, report, runPeer } from './common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cfg = {
  data: path.join(root, 'test', 'fixtures', 'data', 'tinyshakespeare.txt'),
  layers: 4, heads: 4, width: 128, block: 128, batch: 16,
  lr: 1e-3, warmup: 100, max_steps: Number(arg('max-steps') ?? 5000),
  eval_every: 100, eval_batches: 20, target: Number(arg('target') ?? 1.88), threads: 2, seed: 0,
};

/** Random windows of a token array, from a seeded stream of its own. */
function sampler(data: Int32Array, seed: number) {
  let draws = 0;
  const { batch: B, block: T } = cfg;
  return () => {
    const x = new Int32Array(B * T);
    const y = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const i = Math.floor(pl.uniformAt(seed, draws++) * (data.length - T - 1));
      x.set(data.subarray(i, i + T), b * T);
      y.set(data.subarray(i + 1, i + 1 + T), b * T);
    }
    return { x: pl.tensor(x, { shape: [B, T] }), y: pl.tensor(y, { shape: [B, T] }) };
  };
}

function plinthRun() {
  const text = readFileSync(cfg.data, 'utf8');
  const chars = [...new Set(text)].sort();
  const ids = Int32Array.from(text, (c) => chars.indexOf(c));
  const n = Math.floor(0.9 * ids.length);
  const train = sampler(ids.subarray(0, n), 1);
  const valNext = sampler(ids.subarray(n), 2);
  const val = Array.from({ length: cfg.eval_batches }, valNext);
  pl.manualSeed(cfg.seed);
  const model = pl.createModel({ model_type: 'gpt2', vocab_size: chars.length, n_positions: cfg.block, n_embd: cfg.width, n_layer: cfg.layers, n_head: cfg.heads, bias: false });
  const params = model.parameters();
  const opt = new pl.AdamW([
    { params: params.filter((p) => p.ndim >= 2), weightDecay: 0.1 },
    { params: params.filter((p) => p.ndim < 2), weightDecay: 0 },
  ], { lr: cfg.lr, betas: [0.9, 0.99], eps: 1e-8 });
  const t0 = performance.now();
  const curve: [number, number, number][] = [];
  let reached: [number, number, number] | null = null;
  for (let step = 0; step < cfg.max_steps; step++) {
    opt.setLr(pl.cosineLr({ lr: cfg.lr, warmupSteps: cfg.warmup, totalSteps: cfg.max_steps }, step));
    const b = train();
    const { loss } = model.forward(b.x, { labels: b.y });
    opt.zeroGrad();
    loss!.backward();
    pl.clipGradNorm(params, 1.0);
    opt.step();
    if ((step + 1) % cfg.eval_every === 0) {
      model.eval();
      const vl = pl.noGrad(() => val.reduce((s, vb) => s + model.forward(vb.x, { labels: vb.y }).loss!.item(), 0) / val.length);
      model.train();
      curve.push([step + 1, (performance.now() - t0) / 1000, vl]);
      if (vl <= cfg.target) {
        reached = curve[curve.length - 1];
        break;
      }
    }
  }
  return { reached, curve };
}

const plinth = plinthRun();
const torch = findTorchPython() ? runPeer<{ reached: [number, number, number] | null; curve: unknown[] }>('ttq.py', cfg) : null;
const secs = (r: [number, number, number] | null | undefined) => (r ? `${fmt(r[1], 0)} s (step ${r[0]})` : 'not reached');
report('ttq', { machine: machineInfo(), config: cfg, plinth, torch, ratio: plinth.reached && torch?.reached ? torch.reached[1] / plinth.reached[1] : null },
  `val loss ${cfg.target}: plinth ${secs(plinth.reached)}${torch ? `, torch ${secs(torch.reached)}` : ''}`);
