// What the alignment commands share: the start of a stage (seed, chat-ready model, task kinds,
// output), the built-in task splits, the held-out evaluation, copies of a model (policy and frozen
// reference), and number options.
import path from 'node:path';
import type { Command } from 'commander';
import { ArgumentError } from '../errors.js';
import { TASK_KINDS, taskExamples, type TaskExample, type TaskKind } from '../data/index.js';
import { baseReference, endOfTurnId, evaluateChat, fitsContext, frozenReference, type EvalOptions, type EvalResult, type ReferenceModel } from '../align/index.js';
import { engineGenerator } from '../infer/index.js';
import { loadCheckpoint, saveModel } from '../io/index.js';
import { loadLoraModel, saveAdapter, saveMergedModel, unmergeAdapter } from '../peft/index.js';
import { createModel, type CausalLM } from '../models/index.js';
import { manualSeed } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';

/** Split seeds of the built-in tasks: training data and held-out evaluation never share a story. */
export const TRAIN_SPLIT = 1;
export const EVAL_SPLIT = 2;

/** New tokens an answer may take in rollouts and evaluations: room for a rambling one (about 20). */
export const ANSWER_TOKENS = 40;

export function num(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new ArgumentError(`--${name} must be a number, got '${v}'`);
  return n;
}

export function int(v: string | undefined, name: string, fallback: number, min = 1): number {
  const n = num(v, name, fallback);
  if (!Number.isInteger(n) || n < min) throw new ArgumentError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export interface ChatModel {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** <|im_end|>: ends an answer, and pads batches (padding is never a target). */
  endId: number;
  /** Whether the model trains LoRA adapters over a frozen base. */
  lora: boolean;
}

export interface LoraOptions {
  lora?: boolean;
  loraR?: string;
  loraAlpha?: string;
}

/**
 * Loads a model folder whose tokenizer can render chats (ChatML's special tokens or its own
 * template). With --lora every linear layer gets a fresh adapter, which is then all that trains.
 */
export function loadChatModel(dir: string, o: LoraOptions = {}): ChatModel {
  const r = int(o.loraR, 'lora-r', 8);
  const { model, tokenizer } = o.lora
    ? loadLoraModel(dir, { r, alpha: num(o.loraAlpha, 'lora-alpha', 2 * r), targetModules: 'all-linear' })
    : loadCheckpoint(dir);
  if (!tokenizer) throw new ArgumentError(`${dir} has no tokenizer.json: alignment needs the tokenizer the model was trained with`);
  if (!tokenizer.config.chatTemplate && tokenizer.tokenToId('<|im_start|>') === undefined) {
    throw new ArgumentError(`the tokenizer of ${dir} has no chat template and no <|im_start|>/<|im_end|> tokens for ChatML`);
  }
  return { model, tokenizer, endId: endOfTurnId(tokenizer), lora: !!o.lora };
}

/** Writes the trained model as a plain folder (LoRA merged in) and, with LoRA, the adapter in <dir>/adapter. */
export function saveChatModel(cm: ChatModel, dir: string): void {
  if (cm.lora) {
    saveAdapter(cm.model, path.join(dir, 'adapter'));
    saveMergedModel(cm.model, dir, { tokenizer: cm.tokenizer });
    // Merging folds the adapter into the base weights; unmerge so the base is the reference again.
    unmergeAdapter(cm.model);
  } else {
    saveModel(cm.model, dir, { tokenizer: cm.tokenizer });
  }
}

/** The reference of PPO and DPO: with LoRA the frozen base under the adapters, else a frozen copy. */
export function referenceFor(cm: ChatModel): ReferenceModel {
  return cm.lora ? baseReference(cm.model) : frozenReference(frozenCopy(cm.model));
}

/** A trainable copy of a model (same config and weights). */
export function copyModel(model: CausalLM): CausalLM {
  const copy = createModel(model.config, { init: false });
  copy.loadStateDict(model.stateDict());
  return copy;
}

/** A copy that never trains: the reference of PPO and DPO. */
export function frozenCopy(model: CausalLM): CausalLM {
  const copy = copyModel(model);
  for (const p of copy.parameters()) p.requiresGrad = false;
  copy.eval();
  return copy;
}

export function parseKinds(v: string | undefined): TaskKind[] {
  if (!v) return [...TASK_KINDS];
  const kinds = v.split(',').map((s) => s.trim()) as TaskKind[];
  for (const k of kinds) if (!TASK_KINDS.includes(k)) throw new ArgumentError(`unknown task kind '${k}': choose from ${TASK_KINDS.join(', ')}`);
  return kinds;
}

/** Built-in task examples of a split that fit the model's context with room for an answer. */
export function tasksFor(cm: ChatModel, split: number, count: number, kinds: TaskKind[]): TaskExample[] {
  return taskExamples({ seed: split, count, kinds, accept: fitsContext(cm.tokenizer, cm.model.maxPositions) });
}

export function pct(x: number): string {
  return Number.isNaN(x) ? '-' : `${(100 * x).toFixed(1)}%`;
}

/** The options every stage command takes for its model and LoRA. */
export function modelOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--model <dir>', 'the model to start from (Hugging Face folder with tokenizer.json)')
    .requiredOption('--out <dir>', 'where to write the trained model')
    .option('--lora', 'train LoRA adapters on every linear layer instead of all weights (the frozen base is the reference)')
    .option('--lora-r <n>', 'LoRA rank', '8')
    .option('--lora-alpha <x>', 'LoRA alpha (default 2r)')
    .option('--seed <n>', 'random seed', '0')
    .option('--json', 'machine-readable output');
}

/** The options every stage command has (modelOptions and the command's own options add them). */
export interface StageCliOptions extends LoraOptions {
  model: string;
  out: string;
  train: string;
  eval: string;
  kinds?: string;
  seed: string;
  json?: boolean;
}

export interface Stage {
  seed: number;
  cm: ChatModel;
  kinds: TaskKind[];
  /** Prints a line unless --json. */
  say(line: string): void;
  /** A training step's metrics: every step as JSON with --json, else a line about ten times in all. */
  logStep(step: number, total: number, metrics: object, line: () => string): void;
  /** Seconds since the stage started. */
  seconds(): number;
  /** The built-in training questions (--train). */
  trainTasks(): TaskExample[];
  /** The held-out questions (--eval). */
  heldOutTasks(): TaskExample[];
  /** The trained model on the held-out questions, reseeded and through the engine. */
  evaluate(options?: EvalOptions): EvalResult;
}

/** The common start of a stage command: seeded, the chat model loaded (with LoRA when asked), kinds parsed. */
export function startStage(o: StageCliOptions): Stage {
  const t0 = performance.now();
  const seed = int(o.seed, 'seed', 0, 0);
  manualSeed(seed);
  const cm = loadChatModel(o.model, o);
  const kinds = parseKinds(o.kinds);
  const heldOutTasks = () => tasksFor(cm, EVAL_SPLIT, int(o.eval, 'eval', 120), kinds);
  return {
    seed, cm, kinds,
    say: (line) => { if (!o.json) console.log(line); },
    logStep: (step, total, metrics, line) => {
      if (o.json) console.log(JSON.stringify(metrics));
      else if (step % Math.max(1, Math.round(total / 10)) === 0) console.log(line());
    },
    seconds: () => (performance.now() - t0) / 1000,
    trainTasks: () => tasksFor(cm, TRAIN_SPLIT, int(o.train, 'train', 2000), kinds),
    heldOutTasks,
    evaluate: (options = {}) => {
      manualSeed(seed);
      return evaluateChat(cm.model, cm.tokenizer, heldOutTasks(), { maxNewTokens: ANSWER_TOKENS, generator: engineGenerator(), ...options });
    },
  };
}

