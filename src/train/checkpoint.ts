// Training checkpoints: the model as a Hugging Face folder plus the optimizer moments, the step,
// the RNG state and the data position — everything an exact resume needs. The whole folder is
// written beside the old one and swapped in by renames, so a crash at any moment leaves either
// the previous checkpoint or the new one, never a mixture.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { PlinthError } from '../errors.js';
import { CheckpointError, readSafetensors, readWeights, saveModel, writeFileAtomic, writeSafetensors } from '../io/index.js';
import type { CausalLM } from '../models/index.js';
import { type RngState, setRngState, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import type { AdamW } from './adamw.js';

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  rng: RngState;
  /** The training data source's position. */
  data: unknown;
  /** Options the run was started with (for a resume to continue the same schedule). */
  options: Record<string, unknown>;
  /** Best validation loss so far, and the last one. */
  valLoss: number | null;
}

export const CHECKPOINT_DIR = 'checkpoint';

/** The checkpoint folder of a run folder, recovering from a crash between the two renames. */
export function checkpointDir(runDir: string): string | null {
  const cur = path.join(runDir, CHECKPOINT_DIR);
  if (existsSync(path.join(cur, 'trainer_state.json'))) return cur;
  const old = path.join(runDir, `${CHECKPOINT_DIR}.old`);
  if (existsSync(path.join(old, 'trainer_state.json'))) return old;
  return null;
}

/** With trainableOnly, the weights file holds just the parameters that train (a LoRA adapter),
 *  not the frozen base the run started from and can reload. */
export const TRAINABLE_FILE = 'trainable.safetensors';

export function saveTrainingCheckpoint(runDir: string, model: CausalLM, optimizer: AdamW, state: TrainerState,
  extras: { tokenizer?: Tokenizer | null; generationConfig?: Record<string, unknown>; trainableOnly?: boolean } = {}): string {
  mkdirSync(runDir, { recursive: true });
  const tmp = path.join(runDir, `${CHECKPOINT_DIR}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  if (extras.trainableOnly) {
    mkdirSync(tmp, { recursive: true });
    writeSafetensors(path.join(tmp, TRAINABLE_FILE), new Map(model.namedParameters().filter(([, p]) => p.requiresGrad)), { format: 'pt' });
  } else {
    saveModel(model, tmp, { tokenizer: extras.tokenizer, generationConfig: extras.generationConfig });
  }
  // Optimizer moments by parameter name: m.<name>, v.<name>, and each parameter's step count.
  const moments = new Map<string, Tensor>();
  const steps: Record<string, number> = {};
  for (const [name, p] of model.namedParameters()) {
    const s = optimizer.state.get(p);
    if (!s) continue;
    moments.set(`m.${name}`, s.m);
    moments.set(`v.${name}`, s.v);
    steps[name] = s.step;
  }
  writeSafetensors(path.join(tmp, 'optimizer.safetensors'), moments, { steps: JSON.stringify(steps) });
  writeFileAtomic(path.join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 2));
  const cur = path.join(runDir, CHECKPOINT_DIR);
  const old = path.join(runDir, `${CHECKPOINT_DIR}.old`);
  rmSync(old, { recursive: true, force: true });
  if (existsSync(cur)) renameSync(cur, old);
  renameSync(tmp, cur);
  rmSync(old, { recursive: true, force: true });
  return cur;
}

/** Restores the model weights, optimizer moments and RNG from a run folder; returns the state. */
export function loadTrainingCheckpoint(runDir: string, model: CausalLM, optimizer: AdamW): TrainerState {
  const dir = checkpointDir(runDir);
  if (!dir) throw new CheckpointError(`no checkpoint to resume in ${runDir} (expected ${path.join(runDir, CHECKPOINT_DIR, 'trainer_state.json')})`);
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  } catch (e) {
    throw new CheckpointError(`${dir}/trainer_state.json is unreadable: ${(e as Error).message}`);
  }
  if (existsSync(path.join(dir, TRAINABLE_FILE))) {
    const saved = readSafetensors(path.join(dir, TRAINABLE_FILE)).tensors;
    const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad);
    const missing = trainable.filter(([n]) => !saved.has(n)).map(([n]) => n);
    if (missing.length || saved.size !== trainable.length) {
      throw new ResumeError(`${dir}/${TRAINABLE_FILE} holds ${saved.size} tensors but the model trains ${trainable.length}${missing.length ? ` (missing ${missing.slice(0, 3).join(', ')})` : ''}: resume with the same model and adapter settings`);
    }
    model.loadStateDict(saved, { strict: false });
  } else {
    model.loadStateDict(readWeights(dir));
  }
  const opt = readSafetensors(path.join(dir, 'optimizer.safetensors'));
  const steps = JSON.parse(opt.metadata.steps ?? '{}') as Record<string, number>;
  for (const [name, p] of model.namedParameters()) {
    const m = opt.tensors.get(`m.${name}`);
    const v = opt.tensors.get(`v.${name}`);
    if (!m || !v) continue;
    if (m.size !== p.size || v.size !== p.size) throw new ResumeError(`optimizer moments for '${name}' do not match the parameter's size`);
    optimizer.state.set(p, { m, v, step: steps[name] ?? state.step });
  }
  setRngState(state.rng);
  return state;
}

export class ResumeError extends PlinthError {}
