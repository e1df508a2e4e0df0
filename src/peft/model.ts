// Models with LoRA adapters: build or load a base with every linear layer wrapped, add or load an
// adapter, and write the merged result as a plain Hugging Face folder.
import { type LoadedModel, loadCheckpoint, saveModel, type SaveOptions } from '../io/index.js';
import { type CausalLM, createModel } from '../models/index.js';
import type { LinearFactory } from '../nn/index.js';
import { loadAdapter } from './adapter.js';
import { addAdapter, baseStateDict, type LoraConfig, loraFactory, mergeAdapter } from './lora.js';

export interface LoraModelOptions {
  /** Builds the base linear layers (a quantized layer for QLoRA); plain float by default. */
  base?: LinearFactory;
  /** The adapter's name (default 'default', as in PEFT). */
  name?: string;
}

/** A new model with random weights and a fresh adapter (tests, benchmarks). */
export function createLoraModel(config: { model_type?: unknown; [key: string]: unknown }, lora: LoraConfig, options: LoraModelOptions = {}): CausalLM {
  const model = createModel(config, { linearFactory: loraFactory(options.base) });
  addAdapter(model, lora, options.name);
  return model;
}

/**
 * Loads a base folder with every linear layer wrapped, then adds an adapter: a fresh one from a
 * LoraConfig (to train), or a saved PEFT folder (a path). The adapter is active and is the only
 * trainable part; the model is in training mode only if a fresh adapter was added.
 */
export function loadLoraModel(dir: string, adapter: LoraConfig | string, options: LoraModelOptions = {}): LoadedModel {
  const loaded = loadCheckpoint(dir, { linearFactory: loraFactory(options.base) });
  attachAdapter(loaded.model, adapter, options.name);
  return loaded;
}

/** Adds a fresh adapter (training mode) or loads a saved PEFT folder (evaluation mode). */
export function attachAdapter(model: CausalLM, adapter: LoraConfig | string, name?: string): void {
  if (typeof adapter === 'string') {
    loadAdapter(model, adapter, name);
    model.eval();
  } else {
    addAdapter(model, adapter, name);
    model.train();
  }
}

/** A plain model (no LoRA layers) holding W0 + (α/r)·B·A of the active adapter. */
export function mergedModel(model: CausalLM): CausalLM {
  mergeAdapter(model);
  const plain = createModel(model.config, { init: false });
  plain.loadStateDict(baseStateDict(model));
  return plain.eval();
}

/** Merges the active adapter and writes a Hugging Face folder any tool loads without PEFT. */
export function saveMergedModel(model: CausalLM, dir: string, options: SaveOptions = {}): void {
  saveModel(mergedModel(model), dir, options);
}
