// PEFT adapter folders: adapter_config.json + adapter_model.safetensors, exactly as Hugging Face
// PEFT's save_pretrained writes them for LoRA, so `PeftModel.from_pretrained` loads a Plinth adapter
// and Plinth loads PEFT's. Tensor names are `base_model.model.<module>.lora_A.weight` (and
// `.lora_B.weight`): PEFT's in-memory names with the adapter name removed.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PlinthError } from '../errors.js';
import { readSafetensors, writeFileAtomic, writeSafetensors } from '../io/index.js';
import type { Module } from '../nn/index.js';
import { formatShape, type Tensor } from '../tensor/index.js';
import { AdapterError, type LoraConfig, loraLayers, type LoRALinear, matchesTarget, setAdapter, validateLoraConfig } from './lora.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
const PREFIX = 'base_model.model.';

export class AdapterFormatError extends PlinthError {}

/** adapter_config.json as PEFT writes it for LoRA (every key its LoraConfig serialises). */
export interface PeftLoraConfigJson {
  peft_type: 'LORA';
  task_type: string | null;
  base_model_name_or_path: string | null;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string;
  fan_in_fan_out: boolean;
  bias: 'none' | 'all' | 'lora_only';
  use_rslora: boolean;
  use_dora: boolean;
  modules_to_save: string[] | null;
  init_lora_weights: boolean;
  inference_mode: boolean;
  layers_to_transform: number[] | number | null;
  layers_pattern: string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  revision: string | null;
  auto_mapping: unknown;
  layer_replication: unknown;
  loftq_config: Record<string, unknown>;
  megatron_config: unknown;
  megatron_core: string | null;
  [key: string]: unknown;
}

export interface SaveAdapterOptions {
  /** The adapter to save (default: the active one, else 'default'). */
  name?: string;
  /** Recorded as base_model_name_or_path (the base folder or hub name). */
  baseModel?: string | null;
  /** The config the adapter was made with: its target_modules are recorded as given (a regex
   *  stays a regex); without it, the module names the adapter covers. */
  config?: LoraConfig;
}

function adapterOf(l: LoRALinear, name: string) {
  return l.adapters.get(name);
}

/** The module names an adapter covers, as PEFT records them: the list of last name components
 *  (what 'all-linear' expands to), or the regular expression as given. */
function recordedTargets(config: LoraConfig | null, layers: LoRALinear[]): string[] | string {
  if (config && typeof config.targetModules === 'string' && config.targetModules !== 'all-linear') return config.targetModules;
  if (config && Array.isArray(config.targetModules)) return [...config.targetModules];
  return [...new Set(layers.map((l) => l.prefix.slice(l.prefix.lastIndexOf('.') + 1)))].sort();
}

/** Writes adapter `name` of `model` as a PEFT folder; returns the folder. */
export function saveAdapter(model: Module, dir: string, options: SaveAdapterOptions = {}): string {
  const all = loraLayers(model);
  const name = options.name ?? all.find((l) => l.active !== null)?.active ?? 'default';
  const layers = all.filter((l) => l.adapters.has(name));
  if (layers.length === 0) throw new AdapterError(`the model has no adapter '${name}' to save`);
  const first = adapterOf(layers[0], name)!;
  if (layers.some((l) => adapterOf(l, name)!.r !== first.r || adapterOf(l, name)!.alpha !== first.alpha)) {
    throw new AdapterError(`adapter '${name}' has different ranks or alphas across layers; the PEFT format needs rank_pattern for that, which Plinth does not write`);
  }
  const tensors = new Map<string, Tensor>();
  for (const l of layers) {
    const a = adapterOf(l, name)!;
    tensors.set(`${PREFIX}${l.prefix}.lora_A.weight`, a.A);
    tensors.set(`${PREFIX}${l.prefix}.lora_B.weight`, a.B);
  }
  const rslora = first.scaling !== first.alpha / first.r;
  const config: PeftLoraConfigJson = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: options.baseModel ?? null,
    bias: 'none',
    fan_in_fan_out: layers[0].fanInFanOut,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: first.alpha,
    lora_dropout: first.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: first.r,
    rank_pattern: {},
    revision: null,
    target_modules: recordedTargets(options.config ?? null, layers),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: rslora,
  };
  mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
  writeFileAtomic(path.join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  return dir;
}

/** Reads and checks adapter_config.json; returns it with the LoraConfig it describes. */
export function readAdapterConfig(dir: string): { json: PeftLoraConfigJson; config: LoraConfig } {
  const file = path.join(dir, ADAPTER_CONFIG_FILE);
  if (!existsSync(file)) throw new AdapterFormatError(`${dir} is not a PEFT adapter folder: it has no ${ADAPTER_CONFIG_FILE}`);
  let json: PeftLoraConfigJson;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as PeftLoraConfigJson;
  } catch (e) {
    throw new AdapterFormatError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null) throw new AdapterFormatError(`${file} is not a JSON object`);
  if (json.peft_type !== 'LORA') throw new AdapterFormatError(`${file}: peft_type is ${JSON.stringify(json.peft_type)}; only LORA adapters are supported`);
  if (json.use_dora) throw new AdapterFormatError(`${file}: DoRA adapters (use_dora) are not supported`);
  if (json.bias && json.bias !== 'none') throw new AdapterFormatError(`${file}: bias '${json.bias}' is not supported (only 'none')`);
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    if (json[key] && Object.keys(json[key]).length > 0) throw new AdapterFormatError(`${file}: per-module ${key} is not supported`);
  }
  if (json.layers_to_transform !== null && json.layers_to_transform !== undefined) throw new AdapterFormatError(`${file}: layers_to_transform is not supported`);
  if (json.modules_to_save && json.modules_to_save.length > 0) throw new AdapterFormatError(`${file}: modules_to_save (${json.modules_to_save.join(', ')}) is not supported`);
  const config: LoraConfig = {
    r: json.r, alpha: json.lora_alpha, dropout: json.lora_dropout ?? 0,
    targetModules: json.target_modules, useRslora: !!json.use_rslora,
  };
  try {
    validateLoraConfig(config);
  } catch (e) {
    throw new AdapterFormatError(`${file}: ${(e as Error).message}`);
  }
  return { json, config };
}

/**
 * Loads a PEFT LoRA folder into `model` (built or loaded with loraFactory) as adapter `name`, and
 * makes it the active, trainable adapter. Every tensor must name a LoRA layer of the model with the
 * right shape, and every layer its target_modules match must have tensors: any mismatch is named.
 */
export function loadAdapter(model: Module, dir: string, name = 'default'): LoraConfig {
  const { config } = readAdapterConfig(dir);
  const file = path.join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(file)) throw new AdapterFormatError(`${dir} has no ${ADAPTER_WEIGHTS_FILE}`);
  const tensors = readSafetensors(file).tensors;
  const layers = new Map(loraLayers(model).map((l) => [l.prefix, l]));
  if (layers.size === 0) throw new AdapterError('the model has no LoRA-wrapped linear layers: build or load it with linearFactory: loraFactory(...)');

  const problems: string[] = [];
  const found = new Map<LoRALinear, { A?: Tensor; B?: Tensor }>();
  for (const [key, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(key);
    if (!m) {
      problems.push(`unexpected tensor '${key}' (not a LoRA A or B weight)`);
      continue;
    }
    const layer = layers.get(m[1]);
    if (!layer) {
      problems.push(`tensor '${key}' names module '${m[1]}', which is not a linear layer of the base model`);
      continue;
    }
    const expected = m[2] === 'A' ? [config.r, layer.inFeatures] : [layer.outFeatures, config.r];
    if (t.ndim !== 2 || t.shape[0] !== expected[0] || t.shape[1] !== expected[1]) {
      problems.push(`tensor '${key}' has shape ${formatShape(t.shape)}, but the base layer needs ${formatShape(expected)} (r=${config.r}, in=${layer.inFeatures}, out=${layer.outFeatures})`);
      continue;
    }
    const e = found.get(layer) ?? {};
    e[m[2] as 'A' | 'B'] = t;
    found.set(layer, e);
  }
  for (const [prefix, layer] of layers) {
    const e = found.get(layer);
    if (e && (!e.A || !e.B)) problems.push(`module '${prefix}' has a lora_${e.A ? 'B' : 'A'} tensor missing`);
    else if (!e && matchesTarget(config, prefix)) problems.push(`module '${prefix}' is a target (${JSON.stringify(config.targetModules)}) but the adapter has no tensors for it`);
  }
  if (found.size === 0 && problems.length === 0) problems.push('the adapter holds no LoRA tensors');
  if (problems.length) throw new AdapterError(`adapter ${dir} does not fit the base model:\n  ${problems.join('\n  ')}`);

  for (const [layer, e] of found) {
    const a = layer.addAdapter(name, config);
    (a.A.storage as Float32Array).set(e.A!.toFloat32Array());
    (a.B.storage as Float32Array).set(e.B!.toFloat32Array());
  }
  setAdapter(model, name);
  return config;
}
