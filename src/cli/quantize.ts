// `plinth quantize`: a float32 model folder → the same model with its linear layers in int8, NF4
// (optionally double-quantized) or bf16/f16, saved in the transformers + bitsandbytes layout.
// `plinth quant-eval`: the llama.cpp-style quality table (perplexity, mean KL divergence from the
// float32 model, top-1 agreement, weight memory) of every format on held-out tokens.
import path from 'node:path';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ArgumentError } from '../errors.js';
import { BatchSampler, openDataset } from '../data/index.js';
import { compareModels, type EvalBatch } from '../eval/index.js';
import { loadModel } from '../io/index.js';
import { checkQuantMethod, linearWeightBytes, QUANT_METHODS, quantizeFolder, saveQuantized, setActivationPrecision, weightBytes } from '../quant/index.js';

interface QuantizeOptions {
  model: string;
  to: string;
  out: string;
  json?: boolean;
}

const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;

export function runQuantize(o: QuantizeOptions): void {
  const method = checkQuantMethod(o.to);
  const t0 = performance.now();
  const tty = !o.json && process.stdout.isTTY;
  const bar = tty ? new cliProgress.SingleBar({ format: 'quantize [{bar}] {percentage}% | {layer}', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  bar?.start(100, 0, { layer: '' });
  const q = quantizeFolder(o.model, method, (p) => bar?.update(Math.round((100 * p.done) / Math.max(1, p.total)), { layer: p.layer }));
  bar?.stop();
  saveQuantized(q.model, method, o.out, { tokenizer: q.tokenizer, generationConfig: q.generationConfig });
  const after = weightBytes(q.model);
  const seconds = (performance.now() - t0) / 1000;
  if (o.json) {
    console.log(JSON.stringify({ out: o.out, method, bytes_before: q.floatBytes, bytes_after: after, ratio: q.floatBytes / after, seconds }));
    return;
  }
  console.log(`quantize: ${method} weights ${mb(q.floatBytes)} → ${mb(after)} (${(q.floatBytes / after).toFixed(2)}x smaller) in ${seconds.toFixed(1)} s; saved to ${o.out}`);
}

interface EvalOptions {
  model: string;
  data?: string;
  methods: string;
  batches: string;
  batchSize: string;
  blockSize: string;
  fastActivations?: boolean;
  json?: boolean;
}

export function runQuantEval(o: EvalOptions): void {
  const methods = o.methods.split(',').map((m) => checkQuantMethod(m.trim()));
  // A run folder (plinth pretrain) holds its tokens in data/ beside checkpoint/.
  const dataDir = o.data ?? path.join(o.model, 'data');
  if (!existsSync(dataDir)) throw new ArgumentError(`no dataset at ${dataDir}: give --data (a folder written by plinth prepare or pretrain)`);
  const reference = loadModel(o.model);
  const ds = openDataset(dataDir, { inMemory: 'auto' });
  const T = Math.min(Number(o.blockSize), reference.maxPositions);
  const sampler = new BatchSampler(ds.val, { batchSize: Number(o.batchSize), blockSize: T, shuffle: false });
  const batches: EvalBatch[] = [];
  for (let i = 0; i < Number(o.batches); i++) batches.push(sampler.next());
  ds.close();
  const models = Object.fromEntries(methods.map((m) => [m, quantizeFolder(o.model, m).model]));
  // '<format>+fast': the same weights with rounded activations, for the formats that have them
  for (const m of o.fastActivations ? methods : []) {
    const fast = quantizeFolder(o.model, m).model;
    if (setActivationPrecision(fast, 'fast') > 0) models[`${m}+fast`] = fast;
  }
  const r = compareModels(reference, models, batches);
  const rows = [
    { format: 'f32', ...r.reference, weight_bytes: weightBytes(reference), linear_bytes: linearWeightBytes(reference) },
    ...Object.entries(models).map(([m, model]) => ({ format: m, ...r.models[m], weight_bytes: weightBytes(model), linear_bytes: linearWeightBytes(model) })),
  ];
  if (o.json) {
    console.log(JSON.stringify({ tokens: r.reference.tokens, rows }));
    return;
  }
  console.log(`held-out tokens: ${r.reference.tokens.toLocaleString()} (${batches.length} batches of ${o.batchSize} x ${T})`);
  console.log('format     perplexity  Δppl%   mean KL     p99 KL     top-1 same  all weights  linear layers');
  for (const row of rows) {
    const dppl = (100 * (row.perplexity - r.reference.perplexity)) / r.reference.perplexity;
    console.log(`${row.format.padEnd(10)} ${row.perplexity.toFixed(4).padStart(10)}  ${dppl.toFixed(2).padStart(6)}  ${row.meanKL.toExponential(3).padStart(10)}  ${row.p99KL.toExponential(2).padStart(9)}  ${(100 * row.top1Agreement).toFixed(2).padStart(9)}%  ${mb(row.weight_bytes).padStart(11)}  ${mb(row.linear_bytes)} (${(rows[0].linear_bytes / row.linear_bytes).toFixed(2)}x)`);
  }
}

export function registerQuantizeCommands(program: Command): void {
  program
    .command('quantize')
    .description('quantize a float32 model folder: linear layers to int8, NF4 (nf4-dq: double-quantized) or bf16/f16')
    .requiredOption('--model <dir>', 'float32 model folder (or a run folder with checkpoint/)')
    .requiredOption('--to <format>', `target format: ${QUANT_METHODS.join(', ')}`)
    .requiredOption('--out <dir>', 'folder to write (config.json with quantization_config, model.safetensors, tokenizer)')
    .option('--json', 'machine-readable output')
    .action((o: QuantizeOptions) => runQuantize(o));
  program
    .command('quant-eval')
    .description('perplexity and mean KL divergence from float32 of each quantized format, on held-out tokens')
    .requiredOption('--model <dir>', 'float32 run folder (plinth pretrain) or model folder')
    .option('--data <dir>', 'dataset folder (default: <model>/data)')
    .option('--methods <list>', 'formats to compare', 'bf16,int8,nf4,nf4-dq')
    .option('--batches <n>', 'validation batches', '16')
    .option('--batch-size <n>', 'sequences per batch', '8')
    .option('--block-size <n>', 'tokens per sequence', '128')
    .option('--fast-activations', 'also rate int8 and bf16 with rounded activations (rows <format>+fast)')
    .option('--json', 'machine-readable output')
    .action((o: EvalOptions) => runQuantEval(o));
}
