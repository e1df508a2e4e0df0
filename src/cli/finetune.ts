// `plinth finetune`: causal-LM fine-tuning of a saved model on a text or JSONL file — full weights,
// or a LoRA adapter (--lora) on a frozen base, which may be NF4-quantized (--qlora). The run
// folder gets checkpoints (resumable), metrics and a loss plot; the result is a PEFT adapter
// folder (LoRA) or a Hugging Face model folder (full fine-tuning).
import path from 'node:path';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ArgumentError } from '../errors.js';
import { readFinetuneData, StreamSampler } from '../data/finetune.js';
import { loadCheckpoint, saveModel } from '../io/index.js';
import type { CausalLM } from '../models/index.js';
import { type LoraConfig, loadLoraModel, loadQLoraModel, saveAdapter } from '../peft/index.js';
import { getBackend, numThreads } from '../backend/index.js';
import { quantizedLayers } from '../quant/index.js';
import { manualSeed } from '../tensor/index.js';
import { evaluate, train, type StepMetrics } from '../train/index.js';

export const DEFAULT_LORA: LoraConfig = { r: 8, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] };

/** Parses `r=8,alpha=16,dropout=0.05,targets=q_proj,v_proj` (names after targets= run to the end
 *  or the next key; targets=all-linear, or targets=/regex/ for a regular expression). */
export function parseLoraSpec(spec: string | true | undefined): LoraConfig {
  const c: LoraConfig = { ...DEFAULT_LORA };
  if (spec === undefined || spec === true || spec.trim() === '') return c;
  let targets: string[] | null = null;
  for (const part of spec.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (!targets) throw new ArgumentError(`--lora: '${part}' is not key=value (keys: r, alpha, dropout, targets, rslora)`);
      targets.push(part);
      continue;
    }
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    targets = null;
    const num = () => {
      const n = Number(value);
      if (value === '' || !Number.isFinite(n)) throw new ArgumentError(`--lora: ${key} must be a number, got '${value}'`);
      return n;
    };
    if (key === 'r') c.r = num();
    else if (key === 'alpha') c.alpha = num();
    else if (key === 'dropout') c.dropout = num();
    else if (key === 'rslora') c.useRslora = value === 'true' || value === '1';
    else if (key === 'targets') {
      if (value.startsWith('/') && value.endsWith('/') && value.length > 2) c.targetModules = value.slice(1, -1);
      else if (value === 'all-linear') c.targetModules = value;
      else {
        targets = value === '' ? [] : [value];
        c.targetModules = targets;
      }
    } else throw new ArgumentError(`--lora: unknown key '${key}' (keys: r, alpha, dropout, targets, rslora)`);
  }
  return c;
}

interface FinetuneOptions {
  model: string;
  data: string;
  lora?: string | true;
  qlora?: boolean;
  out: string;
  steps: string;
  lr?: string;
  batchSize: string;
  blockSize?: string;
  warmup?: string;
  evalEvery?: string;
  evalBatches: string;
  checkpointEvery?: string;
  seed: string;
  maxMinutes?: string;
  resume?: boolean;
  json?: boolean;
}

function int(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ArgumentError(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}

export interface FinetuneSummary {
  mode: 'lora' | 'qlora' | 'full';
  steps: number;
  loss: number;
  valLossBefore: number | null;
  valLoss: number | null;
  trainableParameters: number;
  parameters: number;
  seconds: number;
  interrupted: boolean;
  output: string;
}

export function runFinetune(o: FinetuneOptions): FinetuneSummary {
  const say = (s: string) => { if (!o.json) console.log(s); };
  const t0 = performance.now();
  const useLora = o.lora !== undefined || !!o.qlora;
  const lora = useLora ? parseLoraSpec(o.lora) : null;
  const mode = o.qlora ? 'qlora' : useLora ? 'lora' : 'full';
  const seed = int(o.seed, 'seed');
  manualSeed(seed);

  // 1. The model: a frozen base with a fresh adapter, or every weight trainable.
  const loaded = !lora ? loadCheckpoint(o.model) : o.qlora ? loadQLoraModel(o.model, lora) : loadLoraModel(o.model, lora);
  const model: CausalLM = loaded.model;
  model.train();
  const tokenizer = loaded.tokenizer;
  if (!tokenizer) throw new ArgumentError(`${o.model} has no tokenizer.json: fine-tuning needs the model's tokenizer`);
  const trainable = model.parameters().filter((p) => p.requiresGrad).reduce((s, p) => s + p.size, 0);
  // A quantized base's weights are not parameters: count them in.
  const total = model.numParameters() + quantizedLayers(model).reduce((s, l) => s + l.inFeatures * l.outFeatures, 0);
  say(`model: ${o.model} (${(total / 1e6).toFixed(2)} M parameters), ${mode === 'full' ? 'full fine-tuning' : `${mode === 'qlora' ? 'QLoRA (NF4 base)' : 'LoRA'} r=${lora!.r} alpha=${lora!.alpha} targets ${JSON.stringify(lora!.targetModules)}`}: ${trainable.toLocaleString()} trainable (${(100 * trainable / total).toFixed(2)}%); ${getBackend()} backend, ${numThreads()} threads`);

  // 2. The data.
  const B = int(o.batchSize, 'batch-size');
  const T = o.blockSize !== undefined ? int(o.blockSize, 'block-size') : Math.min(256, model.maxPositions);
  if (T > model.maxPositions) throw new ArgumentError(`--block-size ${T} exceeds the model's ${model.maxPositions} positions`);
  const data = readFinetuneData(o.data, tokenizer, { minValTokens: T + 1 });
  const val = data.val;
  say(`data: ${o.data}: ${data.kind === 'jsonl' ? `${data.examples} examples, ` : ''}${data.train.ids.length.toLocaleString()} training tokens (${data.train.targets.reduce((s, v) => s + v, 0).toLocaleString()} targets)${val ? `, ${val.ids.length.toLocaleString()} validation tokens` : ', no validation split (too little data)'}`);
  const trainSampler = new StreamSampler(data.train, B, T, { seed });
  const valSource = val ? () => new StreamSampler(val, B, T, { shuffle: false }) : undefined;
  const evalBatches = int(o.evalBatches, 'eval-batches');
  const valLossBefore = valSource && !o.resume ? evaluate(model, valSource(), evalBatches) : null;

  // 3. Training.
  const steps = int(o.steps, 'steps');
  const lr = o.lr !== undefined ? Number(o.lr) : lora ? 1e-3 : 1e-4;
  const tty = !o.json && process.stdout.isTTY;
  const bar = tty ? new cliProgress.SingleBar({ format: 'finetune [{bar}] {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {eta_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  let lastVal = valLossBefore?.toFixed(3) ?? '-';
  let started = false;
  const logEvery = Math.max(1, Math.round(steps / 20));
  const result = train({
    model, train: trainSampler, val: valSource, outDir: o.out, resume: o.resume, checkpointTrainableOnly: !!lora,
    tokenizer: lora ? null : tokenizer, generationConfig: loaded.generationConfig,
    maxSeconds: o.maxMinutes ? Number(o.maxMinutes) * 60 : undefined,
    config: {
      steps, lr, warmupSteps: o.warmup !== undefined ? int(o.warmup, 'warmup') : Math.min(50, Math.floor(steps / 10)),
      evalEvery: o.evalEvery !== undefined ? int(o.evalEvery, 'eval-every') : Math.max(1, Math.round(steps / 5)), evalBatches,
      checkpointEvery: o.checkpointEvery !== undefined ? int(o.checkpointEvery, 'checkpoint-every') : Math.max(1, Math.round(steps / 4)),
      // PEFT trains adapters without weight decay; full fine-tuning keeps pre-training's.
      weightDecay: lora ? 0 : 0.1, gradClip: 1.0,
    },
    onStep: (m: StepMetrics, n) => {
      if (bar && !started) {
        bar.start(n, m.step - 1, { loss: '-', val: lastVal, tps: '-' });
        started = true;
      }
      if (m.valLoss !== undefined) lastVal = m.valLoss.toFixed(3);
      bar?.update(m.step, { loss: m.loss.toFixed(3), val: lastVal, tps: Math.round(m.tokensPerSec) });
      if (o.json) console.log(JSON.stringify(m));
      else if (!bar && (m.step % logEvery === 0 || m.valLoss !== undefined)) {
        console.log(`step ${m.step}/${n}  loss ${m.loss.toFixed(3)}${m.valLoss !== undefined ? `  val ${m.valLoss.toFixed(3)}` : ''}  ${Math.round(m.tokensPerSec)} tok/s`);
      }
    },
  });
  bar?.stop();

  // 4. The result: an adapter folder PEFT loads, or a full model folder.
  model.eval();
  let output: string;
  if (lora) {
    output = saveAdapter(model, path.join(o.out, 'adapter'), { baseModel: path.resolve(o.model), config: lora });
    tokenizer.save(output);
  } else {
    output = path.join(o.out, 'model');
    saveModel(model, output, { tokenizer, generationConfig: loaded.generationConfig });
  }
  const summary: FinetuneSummary = {
    mode, steps: result.steps, loss: result.loss, valLossBefore, valLoss: result.valLoss, trainableParameters: trainable, parameters: total,
    seconds: (performance.now() - t0) / 1000, interrupted: result.interrupted, output,
  };
  if (o.json) {
    console.log(JSON.stringify(summary));
    return summary;
  }
  const vl = (v: number | null) => v?.toFixed(3) ?? '-';
  console.log(`\nfinetune (${mode}): ${result.steps} steps in ${summary.seconds.toFixed(0)} s — loss ${result.loss.toFixed(3)}, validation ${vl(valLossBefore)} → ${vl(result.valLoss)}${result.interrupted ? ' (stopped early; resume with --resume)' : ''}; ${lora ? 'adapter' : 'model'} in ${output}`);
  console.log('\nnext:');
  if (lora) {
    console.log(`  plinth lora merge --model ${o.model} --adapter ${output} --out ${path.join(o.out, 'merged')}`);
    console.log(`  plinth sample --model ${path.join(o.out, 'merged')} --prompt "..."`);
  } else {
    console.log(`  plinth sample --model ${output} --prompt "..."`);
  }
  return summary;
}

export function registerFinetuneCommand(program: Command): void {
  program
    .command('finetune')
    .description('fine-tune a saved model on a text or JSONL file: full weights, LoRA (--lora) or QLoRA (--qlora)')
    .requiredOption('--model <dir>', 'the model folder (Hugging Face layout, or a run folder)')
    .requiredOption('--data <file>', 'a text file, or JSONL with {"text"}, {"prompt","response"} or {"messages"} per line')
    .option('--lora [spec]', `train a LoRA adapter: r=8,alpha=16,dropout=0.05,targets=q_proj,v_proj (targets=all-linear, targets=/regex/; rslora=true)`)
    .option('--qlora', 'LoRA on an NF4-quantized frozen base (implies --lora)')
    .option('--out <dir>', 'run folder (checkpoint, metrics.jsonl, loss.svg, and adapter/ or model/)', 'runs/finetune')
    .option('--steps <n>', 'optimizer steps', '200')
    .option('--lr <x>', 'peak learning rate (default 1e-3 with LoRA, 1e-4 for full fine-tuning)')
    .option('--batch-size <n>', 'sequences per step', '8')
    .option('--block-size <n>', 'tokens per sequence (default: the model\'s context, at most 256)')
    .option('--warmup <n>', 'warm-up steps')
    .option('--eval-every <n>', 'steps between validation evaluations')
    .option('--eval-batches <n>', 'validation batches per evaluation', '8')
    .option('--checkpoint-every <n>', 'steps between checkpoints')
    .option('--seed <n>', 'random seed (adapter initialisation, data order, dropout)', '0')
    .option('--max-minutes <m>', 'stop cleanly (resumable) after this much training time')
    .option('--resume', 'continue the run in --out from its checkpoint')
    .option('--json', 'machine-readable output (JSON lines)')
    .action((o: FinetuneOptions) => {
      runFinetune(o);
    });
}
