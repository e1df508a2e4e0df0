// The training loop of a causal language model: AdamW with weight decay on 2-D weights only,
// warm-up then cosine decay, gradient accumulation, global-norm clipping, periodic evaluation and
// checkpoints (also on Ctrl-C), metrics as JSON lines, a loss plot, and exact resume.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { writeFileAtomic } from '../io/index.js';
import type { Batch } from '../data/index.js';
import type { CausalLM } from '../models/index.js';
import { getRngState, noGrad, ScratchPool } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { AdamW } from './adamw.js';
import { loadTrainingCheckpoint, saveTrainingCheckpoint, type TrainerState } from './checkpoint.js';
import { clipGradNorm } from './clip.js';
import { lossCurveSvg } from './plot.js';
import { cosineLr } from './schedule.js';

/** Where batches come from: a seeded, resumable stream (a data BatchSampler is one). */
export interface BatchSource {
  next(): Batch;
  /** A JSON-serialisable position; setState(state()) makes next() continue identically. */
  state(): unknown;
  setState(state: never): void;
}

export interface TrainConfig {
  steps: number;
  lr: number;
  minLr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  /** Max global gradient norm; 0 disables clipping. */
  gradClip?: number;
  /** Micro-batches per optimizer step. */
  gradAccum?: number;
  evalEvery?: number;
  evalBatches?: number;
  checkpointEvery?: number;
}

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  elapsed: number;
  valLoss?: number;
}

export interface TrainRun {
  model: CausalLM;
  train: BatchSource;
  /** A fresh validation stream for each evaluation (so every evaluation sees the same batches). */
  val?: () => BatchSource;
  config: TrainConfig;
  /** Run folder: checkpoint/, metrics.jsonl, loss.svg. Nothing is written without it. */
  outDir?: string;
  tokenizer?: Tokenizer | null;
  generationConfig?: Record<string, unknown>;
  /** Continue from the checkpoint in outDir. */
  resume?: boolean;
  /** Stop cleanly (checkpoint written, resumable) once training has run this long. */
  maxSeconds?: number;
  /** Checkpoint and stop cleanly on SIGINT (default true when outDir is set). */
  handleSigint?: boolean;
  /** Checkpoints hold only the trainable parameters (LoRA: the adapter, not the frozen base). */
  checkpointTrainableOnly?: boolean;
  /** Called after every step (progress display). */
  onStep?: (m: StepMetrics, total: number) => void;
  /** Called after every evaluation. */
  onEval?: (step: number, valLoss: number) => void;
}

export interface TrainResult {
  steps: number;
  loss: number;
  valLoss: number | null;
  interrupted: boolean;
  metrics: StepMetrics[];
  seconds: number;
}

function resolveConfig(c: TrainConfig): Required<TrainConfig> {
  const r: Required<TrainConfig> = {
    steps: c.steps,
    lr: c.lr,
    minLr: c.minLr ?? c.lr / 10,
    warmupSteps: c.warmupSteps ?? Math.min(100, Math.floor(c.steps / 10)),
    weightDecay: c.weightDecay ?? 0.1,
    betas: c.betas ?? [0.9, 0.95],
    eps: c.eps ?? 1e-8,
    gradClip: c.gradClip ?? 1.0,
    gradAccum: c.gradAccum ?? 1,
    evalEvery: c.evalEvery ?? 0,
    evalBatches: c.evalBatches ?? 8,
    checkpointEvery: c.checkpointEvery ?? 0,
  };
  if (!(Number.isInteger(r.steps) && r.steps > 0)) throw new ArgumentError(`steps must be a positive integer, got ${c.steps}`);
  if (!(r.lr > 0)) throw new ArgumentError(`learning rate must be positive, got ${c.lr}`);
  if (!(Number.isInteger(r.gradAccum) && r.gradAccum >= 1)) throw new ArgumentError(`gradAccum must be a positive integer, got ${c.gradAccum}`);
  return r;
}

/** Mean loss over `batches` batches of a fresh validation stream, without gradients; each batch's
 *  tensors come from `scratch` (the training loop passes its own, so evaluations reuse its buffers). */
export function evaluate(model: CausalLM, source: BatchSource, batches: number, scratch = new ScratchPool()): number {
  const was = model.training;
  model.eval();
  let total = 0;
  noGrad(() => {
    for (let i = 0; i < batches; i++) {
      total += scratch.run(() => {
        const b = source.next();
        return model.forward(b.inputs, { labels: b.targets }).loss!.item();
      });
    }
  });
  model.train(was);
  return total / batches;
}

/** What one optimizer step did: its mean loss, the tokens it read, the gradient norm before
 *  clipping (NaN when not clipping). */
export interface StepResult {
  loss: number;
  tokens: number;
  gradNorm: number;
}

/**
 * One optimizer step: gradients zeroed, `gradAccum` micro-batches of forward and backward, the
 * global gradient norm clipped to gradClip (when > 0), then the optimizer's update. Forward and
 * backward draw every activation and gradient from `scratch`, buffers recycled from the step
 * before; the parameters' gradient buffers and the optimizer's moments are made outside it, once.
 */
export function trainStep(model: CausalLM, opt: AdamW, next: () => Batch, options: { gradAccum?: number; gradClip?: number; scratch: ScratchPool }): StepResult {
  const accum = options.gradAccum ?? 1;
  opt.zeroGrad();
  let loss = 0;
  let tokens = 0;
  options.scratch.run(() => {
    for (let micro = 0; micro < accum; micro++) {
      const b = next();
      const l = model.forward(b.inputs, { labels: b.targets }).loss!;
      (accum > 1 ? l.mul(1 / accum) : l).backward();
      loss += l.item() / accum;
      tokens += b.inputs.size;
    }
  });
  const gradNorm = (options.gradClip ?? 0) > 0 ? clipGradNorm(model.parameters(), options.gradClip!) : NaN;
  opt.step();
  return { loss, tokens, gradNorm };
}

/** AdamW over the model's trainable parameters (frozen ones, such as a LoRA base, get no state),
 *  with weight decay on parameters of 2 or more dims only. */
export function makeOptimizer(model: CausalLM, c: Required<TrainConfig>): AdamW {
  const params = model.parameters().filter((p) => p.requiresGrad);
  return new AdamW([
    { params: params.filter((p) => p.ndim >= 2), weightDecay: c.weightDecay },
    { params: params.filter((p) => p.ndim < 2), weightDecay: 0 },
  ], { lr: c.lr, betas: c.betas, eps: c.eps });
}

export function train(run: TrainRun): TrainResult {
  const c = resolveConfig(run.config);
  const { model, outDir } = run;
  const opt = makeOptimizer(model, c);
  const metricsFile = outDir ? path.join(outDir, 'metrics.jsonl') : null;
  const metrics: StepMetrics[] = [];
  let startStep = 0;
  let valLoss: number | null = null;
  if (outDir) mkdirSync(outDir, { recursive: true });

  if (run.resume) {
    if (!outDir) throw new ArgumentError('resume needs the run folder (outDir)');
    const state = loadTrainingCheckpoint(outDir, model, opt);
    run.train.setState(state.data as never);
    startStep = state.step;
    valLoss = state.valLoss;
    // Keep the metrics of the steps the checkpoint covers; later lines belong to the lost future.
    if (metricsFile && existsSync(metricsFile)) {
      const kept = readFileSync(metricsFile, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as StepMetrics).step <= startStep);
      for (const l of kept) metrics.push(JSON.parse(l) as StepMetrics);
      writeFileAtomic(metricsFile, kept.map((l) => `${l}\n`).join(''));
    }
  } else if (metricsFile) {
    writeFileSync(metricsFile, '');
  }

  const checkpoint = (step: number) => {
    if (!outDir) return;
    const state: TrainerState = { step, rng: getRngState(), data: run.train.state(), options: { ...c }, valLoss };
    saveTrainingCheckpoint(outDir, model, opt, state, { tokenizer: run.tokenizer, generationConfig: run.generationConfig, trainableOnly: run.checkpointTrainableOnly });
    writeFileAtomic(path.join(outDir, 'loss.svg'), lossCurveSvg(
      metrics.map((m) => ({ step: m.step, loss: m.loss })),
      metrics.filter((m) => m.valLoss !== undefined).map((m) => ({ step: m.step, loss: m.valLoss! })),
    ));
  };

  let stop = false;
  const onSigint = () => {
    stop = true;
  };
  const handleSigint = run.handleSigint ?? !!outDir;
  if (handleSigint) process.on('SIGINT', onSigint);

  const t0 = performance.now();
  const scratch = new ScratchPool();
  let step = startStep;
  let lastLoss = NaN;
  model.train();
  try {
    while (step < c.steps && !stop) {
      const ts = performance.now();
      const lr = cosineLr({ lr: c.lr, minLr: c.minLr, warmupSteps: c.warmupSteps, totalSteps: c.steps }, step);
      opt.setLr(lr);
      const { loss, tokens, gradNorm } = trainStep(model, opt, () => run.train.next(), { gradAccum: c.gradAccum, gradClip: c.gradClip, scratch });
      step++;
      lastLoss = loss;
      const m: StepMetrics = { step, loss, lr, gradNorm, tokensPerSec: tokens / ((performance.now() - ts) / 1000), elapsed: (performance.now() - t0) / 1000 };
      if (run.val && c.evalEvery > 0 && (step % c.evalEvery === 0 || step === c.steps)) {
        valLoss = evaluate(model, run.val(), c.evalBatches, scratch);
        m.valLoss = valLoss;
        run.onEval?.(step, valLoss);
      }
      metrics.push(m);
      if (metricsFile) appendFileSync(metricsFile, `${JSON.stringify(m)}\n`);
      run.onStep?.(m, c.steps);
      if (c.checkpointEvery > 0 && step % c.checkpointEvery === 0 && step < c.steps) checkpoint(step);
      if (run.maxSeconds !== undefined && m.elapsed >= run.maxSeconds) stop = true;
    }
    checkpoint(step);
  } finally {
    if (handleSigint) process.off('SIGINT', onSigint);
  }
  return { steps: step, loss: lastLoss, valLoss, interrupted: stop, metrics, seconds: (performance.now() - t0) / 1000 };
}
