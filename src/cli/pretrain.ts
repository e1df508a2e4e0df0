// `plinth pretrain`: text (or, by default, the built-in synthetic stories) → a tokenizer → token
// shards → a Llama-style model trained from scratch, with a progress bar, checkpoints, a loss plot,
// and samples at the end. With no options it is the quickstart behind `npm start`.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ArgumentError } from '../errors.js';
import { BatchSampler, MANIFEST_FILE, openDataset, prepareShards, storySource } from '../data/index.js';
import { generate } from '../infer/index.js';
import { createModel, type LlamaConfig } from '../models/index.js';
import { getBackend, numThreads } from '../backend/index.js';
import { manualSeed } from '../tensor/index.js';
import { checkpointDir, train, type StepMetrics } from '../train/index.js';

/** Model and training presets: sizes that train in minutes (tiny) to hours (base) on a laptop CPU. */
export const PRESETS = {
  tiny: { hidden: 128, layers: 4, heads: 4, kvHeads: 2, intermediate: 352, block: 128, batch: 16, steps: 800, lr: 3e-3, vocab: 2048 },
  small: { hidden: 256, layers: 6, heads: 8, kvHeads: 4, intermediate: 688, block: 256, batch: 16, steps: 4000, lr: 1.5e-3, vocab: 4096 },
  base: { hidden: 512, layers: 8, heads: 8, kvHeads: 4, intermediate: 1376, block: 512, batch: 16, steps: 20000, lr: 6e-4, vocab: 8192 },
} as const;
export type PresetName = keyof typeof PRESETS;

interface PretrainOptions {
  data?: string[];
  out: string;
  preset: string;
  config?: string;
  steps?: string;
  batchSize?: string;
  blockSize?: string;
  lr?: string;
  warmup?: string;
  evalEvery?: string;
  evalBatches?: string;
  checkpointEvery?: string;
  vocabSize?: string;
  tokenizer?: string;
  stories: string;
  seed: string;
  maxMinutes?: string;
  samples: string;
  resume?: boolean;
  json?: boolean;
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new ArgumentError(`--${name} must be a number, got '${v}'`);
  return n;
}

export async function runPretrain(o: PretrainOptions): Promise<void> {
  if (!(o.preset in PRESETS)) throw new ArgumentError(`unknown preset '${o.preset}': choose ${Object.keys(PRESETS).join(', ')}`);
  const fileConfig = o.config ? (JSON.parse(readFileSync(o.config, 'utf8')) as Record<string, number>) : {};
  const p = { ...PRESETS[o.preset as PresetName], ...fileConfig };
  const steps = num(o.steps, 'steps') ?? p.steps;
  const B = num(o.batchSize, 'batch-size') ?? p.batch;
  const T = num(o.blockSize, 'block-size') ?? p.block;
  const seed = num(o.seed, 'seed') ?? 0;
  const say = (s: string) => { if (!o.json) console.log(s); };
  const t0 = performance.now();

  // 1. Data: token shards (and the tokenizer) under <out>/data, prepared once.
  const dataDir = path.join(o.out, 'data');
  if (!(o.resume && existsSync(path.join(dataDir, MANIFEST_FILE)))) {
    const source = o.data?.length ? undefined : storySource({ stories: num(o.stories, 'stories'), seed });
    say(o.data?.length ? `preparing ${o.data.join(', ')} → ${dataDir}` : `generating ${o.stories} synthetic stories and preparing them → ${dataDir}`);
    const bar = o.json || !process.stdout.isTTY ? null : new cliProgress.SingleBar({ format: 'prepare  [{bar}] {percentage}% | {phase}', hideCursor: true }, cliProgress.Presets.shades_classic);
    bar?.start(100, 0, { phase: '' });
    const r = await prepareShards({
      out: dataDir, input: o.data, source, tokenizer: o.tokenizer, vocabSize: num(o.vocabSize, 'vocab-size') ?? p.vocab,
      onProgress: (pr) => {
        const fraction = pr.totalDocuments ? pr.documents / pr.totalDocuments : pr.totalBytes ? pr.bytes / pr.totalBytes : 0;
        bar?.update(Math.round(100 * fraction), { phase: pr.phase });
      },
    });
    bar?.stop();
    say(`data: ${r.manifest.splits.train.tokens.toLocaleString()} training and ${r.manifest.splits.val.tokens.toLocaleString()} validation tokens, vocabulary ${r.tokenizer.vocabSize}`);
  }
  const ds = openDataset(dataDir, { inMemory: 'auto' });

  // 2. The model: Llama-style (RMSNorm, rotary, SwiGLU, grouped-query attention).
  manualSeed(seed);
  const config: LlamaConfig = {
    model_type: 'llama', vocab_size: ds.tokenizer.vocabSize, hidden_size: p.hidden, intermediate_size: p.intermediate,
    num_hidden_layers: p.layers, num_attention_heads: p.heads, num_key_value_heads: p.kvHeads, max_position_embeddings: T,
    rms_norm_eps: 1e-5, rope_theta: 10000, initializer_range: 0.02, tie_word_embeddings: true,
    bos_token_id: ds.manifest.bosId, eos_token_id: ds.manifest.eosId ?? ds.manifest.separatorId,
  };
  const model = createModel(config);
  say(`model: ${(model.numParameters() / 1e6).toFixed(2)} M parameters (${p.layers} layers, ${p.hidden} wide, ${p.heads} heads, ${p.kvHeads} kv heads); ${getBackend()} backend, ${numThreads()} threads`);

  // 3. Training, with a progress bar (or log lines when the output is not a terminal).
  const trainSampler = new BatchSampler(ds.train, { batchSize: B, blockSize: T, seed });
  const val = () => new BatchSampler(ds.val, { batchSize: B, blockSize: T, shuffle: false });
  const tty = !o.json && process.stdout.isTTY;
  const bar = tty ? new cliProgress.SingleBar({ format: 'train    [{bar}] {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {eta_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  let lastVal = '-';
  let started = false;
  const logEvery = Math.max(1, Math.round(steps / 20));
  const result = train({
    model, train: trainSampler, val, outDir: o.out, tokenizer: ds.tokenizer, resume: o.resume,
    maxSeconds: o.maxMinutes ? Number(o.maxMinutes) * 60 : undefined,
    generationConfig: { bos_token_id: config.bos_token_id, eos_token_id: config.eos_token_id, temperature: 0.8, top_p: 0.95 },
    config: {
      steps, lr: num(o.lr, 'lr') ?? p.lr, warmupSteps: num(o.warmup, 'warmup') ?? Math.min(100, Math.floor(steps / 10)),
      evalEvery: num(o.evalEvery, 'eval-every') ?? Math.max(1, Math.round(steps / 10)), evalBatches: num(o.evalBatches, 'eval-batches') ?? 8,
      checkpointEvery: num(o.checkpointEvery, 'checkpoint-every') ?? Math.max(1, Math.round(steps / 4)), weightDecay: 0.1, gradClip: 1.0,
    },
    onStep: (m: StepMetrics, total) => {
      if (bar && !started) {
        bar.start(total, m.step - 1, { loss: '-', val: lastVal, tps: '-' });
        started = true;
      }
      if (m.valLoss !== undefined) lastVal = m.valLoss.toFixed(3);
      bar?.update(m.step, { loss: m.loss.toFixed(3), val: lastVal, tps: Math.round(m.tokensPerSec) });
      if (o.json) console.log(JSON.stringify(m));
      else if (!bar && (m.step % logEvery === 0 || m.valLoss !== undefined)) {
        console.log(`step ${m.step}/${total}  loss ${m.loss.toFixed(3)}${m.valLoss !== undefined ? `  val ${m.valLoss.toFixed(3)}` : ''}  ${Math.round(m.tokensPerSec)} tok/s`);
      }
    },
  });
  bar?.stop();
  const ckpt = checkpointDir(o.out) ?? path.join(o.out, 'checkpoint');

  // 4. Samples from the trained model.
  const samples: string[] = [];
  // Documents were written after a separator token (bos, else eos): prompts start with it, and a
  // sample ends where the model starts the next document.
  const sep = ds.manifest.separatorId;
  const eos = ds.manifest.eosId ?? sep;
  model.eval();
  manualSeed(seed + 1);
  for (const start of ['There was', 'Once upon a time', 'The', 'A little later,'].slice(0, num(o.samples, 'samples') ?? 3)) {
    const prompt = [sep, ...ds.tokenizer.encode(start)];
    const ids = generate(model, prompt, { maxNewTokens: Math.min(96, T - prompt.length), temperature: 0.8, topP: 0.95, stopIds: [eos, sep] });
    samples.push(start + ds.tokenizer.decode(ids.filter((i) => i !== eos && i !== sep)));
  }
  ds.close();
  const seconds = (performance.now() - t0) / 1000;
  if (o.json) {
    console.log(JSON.stringify({ checkpoint: ckpt, steps: result.steps, loss: result.loss, valLoss: result.valLoss, interrupted: result.interrupted, seconds, samples }));
    return;
  }
  console.log('\nsamples:');
  for (const s of samples) console.log(`  » ${s.replace(/\s+/g, ' ').trim()}`);
  console.log(`\npretrain: ${result.steps} steps in ${seconds.toFixed(0)} s — loss ${result.loss.toFixed(3)}, validation ${result.valLoss?.toFixed(3) ?? '-'}${result.interrupted ? ' (stopped early; resume with --resume)' : ''}; checkpoint in ${ckpt}, loss plot in ${path.join(o.out, 'loss.svg')}`);
  console.log('\nnext:');
  console.log(`  plinth sample --model ${ckpt} --prompt "There was a girl named"`);
  if (result.interrupted) console.log(`  plinth pretrain --out ${o.out} --resume`);
  console.log(`  plinth pretrain --data your-text-folder --out runs/mine --preset small`);
}

export function registerPretrainCommand(program: Command): void {
  program
    .command('pretrain')
    .description('train a Llama-style model from scratch on text files (default: the built-in synthetic stories)')
    .option('--data <paths...>', 'text files or folders (.txt, .md, .jsonl with "text"); default: synthetic stories')
    .option('--out <dir>', 'run folder (data, checkpoint, metrics.jsonl, loss.svg)', 'runs/quickstart')
    .option('--preset <name>', `model and training preset: ${Object.keys(PRESETS).join(', ')}`, 'tiny')
    .option('--config <file>', 'JSON file overriding preset fields (hidden, layers, heads, kvHeads, intermediate, block, batch, steps, lr, vocab)')
    .option('--steps <n>', 'optimizer steps')
    .option('--batch-size <n>', 'sequences per step')
    .option('--block-size <n>', 'tokens per sequence')
    .option('--lr <x>', 'peak learning rate')
    .option('--warmup <n>', 'warm-up steps')
    .option('--eval-every <n>', 'steps between validation evaluations')
    .option('--eval-batches <n>', 'validation batches per evaluation')
    .option('--checkpoint-every <n>', 'steps between checkpoints')
    .option('--vocab-size <n>', 'vocabulary size of the trained tokenizer')
    .option('--tokenizer <name|dir>', 'use an existing tokenizer instead of training one')
    .option('--stories <n>', 'synthetic stories to generate when no --data is given', '8000')
    .option('--seed <n>', 'random seed (data order, initialisation, sampling)', '0')
    .option('--max-minutes <m>', 'stop cleanly (resumable) after this much training time')
    .option('--samples <n>', 'samples to print at the end', '3')
    .option('--resume', 'continue the run in --out from its checkpoint')
    .option('--json', 'machine-readable output (JSON lines)')
    .action((o: PretrainOptions) => runPretrain(o));
}
