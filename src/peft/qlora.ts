// QLoRA (Dettmers et al., 2023): LoRA adapters in f32 on a frozen base whose linear layers are
// NF4-quantized. The base costs about a seventh of its f32 memory; gradients flow through the
// quantized layers (dequantize-and-multiply backward to the input) into the adapters.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LoadedModel } from '../io/index.js';
import { folderQuantMethod, loadQuantized, type QuantMethod, quantizeFolder } from '../quant/index.js';
import { type LoraConfig, loraFactory } from './lora.js';
import { attachAdapter, type LoraModelOptions } from './model.js';

export interface QLoraOptions extends LoraModelOptions {
  /** How to quantize a float base (default 'nf4'); a quantized folder keeps its own method. */
  method?: QuantMethod;
}

function configOf(dir: string): Record<string, unknown> {
  const file = existsSync(path.join(dir, 'config.json')) ? path.join(dir, 'config.json') : path.join(dir, 'checkpoint', 'config.json');
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
}

/**
 * Loads a base folder with quantized linear layers wrapped for LoRA — quantizing a float folder
 * layer by layer as it loads (no f32 linear weight is kept), or taking a quantized folder as
 * stored — then adds a fresh adapter (a LoraConfig) or loads a saved one (a folder path).
 */
export function loadQLoraModel(dir: string, adapter: LoraConfig | string, options: QLoraOptions = {}): LoadedModel & { method: QuantMethod } {
  const wrap = { wrap: loraFactory };
  const stored = existsSync(dir) ? folderQuantMethod(configOf(dir)) : null;
  const q = stored ? loadQuantized(dir, wrap) : quantizeFolder(dir, options.method ?? 'nf4', undefined, wrap);
  attachAdapter(q.model, adapter, options.name);
  return { model: q.model, tokenizer: q.tokenizer, generationConfig: q.generationConfig, method: q.method };
}
