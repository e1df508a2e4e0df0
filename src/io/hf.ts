// Hugging Face model folders: config.json + model.safetensors (or shards with
// model.safetensors.index.json), generation_config.json, and the tokenizer files. Loading builds
// the model named by config.json's model_type and never executes anything from the folder.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PlinthError } from '../errors.js';
import { type CausalLM, createModel, type ModelOptions } from '../models/index.js';
import type { Tensor } from '../tensor/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { readSafetensors, writeFileAtomic, writeSafetensors } from './safetensors.js';

export class CheckpointError extends PlinthError {}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CheckpointError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Every tensor of the folder's weights, from one file or from the shards its index names. */
export function readWeights(dir: string): Map<string, Tensor> {
  const single = path.join(dir, 'model.safetensors');
  if (existsSync(single)) return readSafetensors(single).tensors;
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (!existsSync(indexFile)) throw new CheckpointError(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
  const index = readJson(indexFile) as { weight_map?: Record<string, string> };
  if (!index.weight_map || typeof index.weight_map !== 'object') throw new CheckpointError(`${indexFile} has no weight_map`);
  const out = new Map<string, Tensor>();
  for (const shard of new Set(Object.values(index.weight_map))) {
    if (shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) throw new CheckpointError(`${indexFile} names a shard outside the folder: ${shard}`);
    for (const [name, t] of readSafetensors(path.join(dir, shard)).tensors) out.set(name, t);
  }
  for (const name of Object.keys(index.weight_map)) {
    if (!out.has(name)) throw new CheckpointError(`${indexFile} maps '${name}' to a shard that does not hold it`);
  }
  return out;
}

export interface LoadedModel {
  model: CausalLM;
  tokenizer: Tokenizer | null;
  generationConfig: Record<string, unknown>;
}

/** Loads a Hugging Face folder: the model (weights checked name by name), its tokenizer if present. */
export function loadModel(dir: string, options: Pick<ModelOptions, 'linearFactory'> = {}): CausalLM {
  return loadCheckpoint(dir, options).model;
}

/** A loader for folders whose layers live in a folder above io (quantized models: src/quant
 *  registers one); it returns null for a folder it does not handle. */
export type FolderLoader = (dir: string, config: Record<string, unknown>) => LoadedModel | null;
const folderLoaders: FolderLoader[] = [];

export function registerFolderLoader(loader: FolderLoader): void {
  folderLoaders.push(loader);
}

/** Loads a folder; `linearFactory` builds its linear layers (quantized, with LoRA adapters). */
export function loadCheckpoint(dir: string, options: Pick<ModelOptions, 'linearFactory'> = {}): LoadedModel {
  if (!existsSync(dir)) throw new CheckpointError(`model folder ${dir} does not exist`);
  // A training run folder holds its model in checkpoint/.
  if (!existsSync(path.join(dir, 'config.json')) && existsSync(path.join(dir, 'checkpoint', 'config.json'))) dir = path.join(dir, 'checkpoint');
  const config = readJson(path.join(dir, 'config.json'));
  for (const load of folderLoaders) {
    const loaded = load(dir, config);
    if (loaded) return loaded;
  }
  const model = createModel(config, { init: false, linearFactory: options.linearFactory });
  model.loadStateDict(readWeights(dir));
  model.eval();
  const tokenizer = existsSync(path.join(dir, 'tokenizer.json')) ? loadTokenizer(dir) : null;
  const genFile = path.join(dir, 'generation_config.json');
  return { model, tokenizer, generationConfig: existsSync(genFile) ? readJson(genFile) : {} };
}

export interface SaveOptions {
  tokenizer?: Tokenizer | null;
  generationConfig?: Record<string, unknown>;
  /** Split the weights into shards of at most this many bytes (default 2 GB). */
  maxShardBytes?: number;
}

/** Writes a folder Hugging Face tools load: config.json, weights (sharded when large),
 *  generation_config.json, and the tokenizer. Every file is written atomically. */
export function saveModel(model: CausalLM, dir: string, options: SaveOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  const state = model.stateDict();
  const maxBytes = options.maxShardBytes ?? 2 * 1024 ** 3;
  const shards: Map<string, Tensor>[] = [new Map()];
  let size = 0;
  for (const [name, t] of state) {
    const bytes = t.size * 4;
    if (size > 0 && size + bytes > maxBytes) {
      shards.push(new Map());
      size = 0;
    }
    shards[shards.length - 1].set(name, t);
    size += bytes;
  }
  const meta = { format: 'pt' };
  if (shards.length === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), shards[0], meta);
  } else {
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      writeSafetensors(path.join(dir, file), s, meta);
      for (const name of s.keys()) weightMap[name] = file;
    });
    const total = [...state.values()].reduce((a, t) => a + t.size * 4, 0);
    writeFileAtomic(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  const architectures = { gpt2: 'GPT2LMHeadModel', llama: 'LlamaForCausalLM' }[model.config.model_type];
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify({ architectures: architectures ? [architectures] : undefined, ...model.config, torch_dtype: 'float32' }, null, 2));
  writeFileAtomic(path.join(dir, 'generation_config.json'), JSON.stringify({ _from_model_config: true, ...(options.generationConfig ?? {}) }, null, 2));
  options.tokenizer?.save(dir);
}
