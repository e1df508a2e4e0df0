// Quantized model folders: quantize a float folder layer by layer, save in the layout transformers
// + bitsandbytes use (config.json with a quantization_config; `weight`, `weight.absmax`,
// `weight.quant_map`, `weight.nested_absmax`, `weight.nested_quant_map`,
// `weight.quant_state.bitsandbytes__nf4` for NF4; `weight` + `SCB` for int8; a bf16/f16 `weight`
// for the 16-bit formats), and load such a folder without ever building float linear weights.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readWeights, registerFolderLoader, writeFileAtomic, writeSafetensors } from '../io/index.js';
import { type CausalLM, createModel } from '../models/index.js';
import { Conv1D, Linear, type LinearFactory, type Module } from '../nn/index.js';
import type { Tensor } from '../tensor/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { checkQuantMethod, type QuantMethod, QuantizationError, QuantizedLinear, quantizedLayers, quantizedLinearFactory } from './layers.js';

function readConfig(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) throw new QuantizationError(`${dir} has no config.json`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new QuantizationError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** A run folder keeps its model in checkpoint/. */
function modelDir(dir: string): string {
  if (!existsSync(dir)) throw new QuantizationError(`model folder ${dir} does not exist`);
  if (!existsSync(path.join(dir, 'config.json')) && existsSync(path.join(dir, 'checkpoint', 'config.json'))) return path.join(dir, 'checkpoint');
  return dir;
}

/** transformers' BitsAndBytesConfig for the 4- and 8-bit methods; none for the 16-bit ones
 *  (those are plain checkpoints whose linear weights are bf16/f16, named by torch_dtype). */
export function quantizationConfig(method: QuantMethod): Record<string, unknown> | null {
  if (method === 'bf16' || method === 'f16') return null;
  const four = method !== 'int8';
  return {
    quant_method: 'bitsandbytes', load_in_4bit: four, load_in_8bit: !four,
    bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: method === 'nf4-dq', bnb_4bit_compute_dtype: 'float32',
    bnb_4bit_quant_storage: 'uint8', llm_int8_threshold: 0.0, llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: [], llm_int8_enable_fp32_cpu_offload: false,
  };
}

/** The method a folder's config.json declares, or null for a float32 folder. */
export function folderQuantMethod(config: Record<string, unknown>): QuantMethod | null {
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  if (qc) {
    if (qc.quant_method !== 'bitsandbytes') throw new QuantizationError(`quantization_config.quant_method '${String(qc.quant_method)}' is not supported (only bitsandbytes)`);
    if (qc.load_in_8bit) return 'int8';
    if (qc.load_in_4bit) {
      if (qc.bnb_4bit_quant_type !== 'nf4') throw new QuantizationError(`4-bit type '${String(qc.bnb_4bit_quant_type)}' is not supported (only nf4)`);
      return qc.bnb_4bit_use_double_quant ? 'nf4-dq' : 'nf4';
    }
    throw new QuantizationError('quantization_config sets neither load_in_4bit nor load_in_8bit');
  }
  if (config.torch_dtype === 'bfloat16') return 'bf16';
  if (config.torch_dtype === 'float16') return 'f16';
  return null;
}

export interface QuantizedCheckpoint {
  model: CausalLM;
  method: QuantMethod;
  tokenizer: Tokenizer | null;
  generationConfig: Record<string, unknown>;
}

export interface QuantizeProgress {
  /** Bytes of float weights consumed so far, of `total`. */
  done: number;
  total: number;
  layer: string;
}

/** Wraps the quantized layers as they are built (LoRA adapters on a quantized base: QLoRA). */
export interface QuantizedBuildOptions {
  wrap?: (factory: LinearFactory) => LinearFactory;
}

/**
 * Builds `config`'s model quantized from float weights (a name → tensor map, as read from a
 * folder): each linear layer takes its float weight out of the map as it is built, quantizes it
 * and drops it, so no float linear weight is ever copied into the model. Other parameters
 * (embeddings, norms, biases) stay float. The map is left without the linear weights.
 */
export function quantizeWeights(config: Record<string, unknown>, weights: Map<string, Tensor>, method: QuantMethod,
  onProgress?: (p: QuantizeProgress) => void, options: QuantizedBuildOptions = {}): CausalLM {
  let total = 0;
  for (const t of weights.values()) total += t.size * 4;
  let done = 0;
  const take = (name: string, N: number, K: number): Float32Array => {
    const t = weights.get(name);
    if (!t) throw new QuantizationError(`missing tensor '${name}' (expected shape [${N}, ${K}])`);
    if (t.shape.length !== 2 || t.shape[0] !== N || t.shape[1] !== K) {
      throw new QuantizationError(`tensor '${name}' has shape [${t.shape.join(', ')}], expected [${N}, ${K}]`);
    }
    weights.delete(name);
    done += t.size * 4;
    onProgress?.({ done, total, layer: name });
    return t.toFloat32Array();
  };
  const factory = quantizedLinearFactory(method, take);
  const model = createModel(config, { init: false, linearFactory: options.wrap ? options.wrap(factory) : factory });
  model.loadStateDict(weights);
  model.eval();
  onProgress?.({ done: total, total, layer: '' });
  return model;
}

/** Loads a float folder and quantizes it layer by layer (quantizeWeights). */
export function quantizeFolder(dir: string, method: QuantMethod, onProgress?: (p: QuantizeProgress) => void, options: QuantizedBuildOptions = {}): QuantizedCheckpoint & { floatBytes: number } {
  dir = modelDir(dir);
  const config = readConfig(dir);
  const already = folderQuantMethod(config);
  if (already) throw new QuantizationError(`${dir} is already quantized (${already}); quantize the float32 model`);
  const weights = readWeights(dir);
  let floatBytes = 0;
  for (const t of weights.values()) floatBytes += t.size * 4;
  const model = quantizeWeights(config, weights, method, onProgress, options);
  return { model, method, floatBytes, ...folderExtras(dir) };
}

function folderExtras(dir: string): { tokenizer: Tokenizer | null; generationConfig: Record<string, unknown> } {
  const tokenizer = existsSync(path.join(dir, 'tokenizer.json')) ? loadTokenizer(dir) : null;
  const gen = path.join(dir, 'generation_config.json');
  return { tokenizer, generationConfig: existsSync(gen) ? (JSON.parse(readFileSync(gen, 'utf8')) as Record<string, unknown>) : {} };
}

/** Every tensor a quantized model saves: its float parameters and each layer's stored tensors. */
export function quantizedStateDict(model: Module): Map<string, Tensor> {
  const out = model.stateDict();
  for (const layer of quantizedLayers(model)) for (const [name, t] of layer.tensors()) out.set(`${layer.prefix}.${name}`, t);
  return out;
}

/** Bytes of a model's weights as held in memory: quantized layers as stored, the rest float32. */
export function weightBytes(model: Module): number {
  const layers = quantizedLayers(model);
  let bytes = layers.reduce((s, l) => s + l.weightBytes(), 0);
  for (const t of model.parameters()) bytes += t.size * 4;
  return bytes;
}

/** Bytes of a model's linear-layer weights: quantized layers as stored, plain ones as float32
 *  (a tied output head, which reuses the embedding, counts nothing). */
export function linearWeightBytes(model: Module): number {
  let bytes = 0;
  for (const m of model.modules()) {
    if (m instanceof QuantizedLinear) bytes += m.weightBytes();
    else if (m instanceof Linear || m instanceof Conv1D) bytes += m.weight.size * 4;
  }
  return bytes;
}

export interface SaveQuantizedOptions {
  tokenizer?: Tokenizer | null;
  generationConfig?: Record<string, unknown>;
}

/** Writes a quantized model folder (config.json, model.safetensors, generation_config.json, tokenizer). */
export function saveQuantized(model: CausalLM, method: QuantMethod, dir: string, options: SaveQuantizedOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), quantizedStateDict(model), { format: 'pt' });
  const architectures = { gpt2: 'GPT2LMHeadModel', llama: 'LlamaForCausalLM' }[model.config.model_type];
  const qc = quantizationConfig(method);
  const torchDtype = method === 'bf16' ? 'bfloat16' : method === 'f16' ? 'float16' : 'float32';
  const config = { architectures: architectures ? [architectures] : undefined, ...model.config, torch_dtype: torchDtype, ...(qc ? { quantization_config: qc } : {}) };
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileAtomic(path.join(dir, 'generation_config.json'), JSON.stringify({ _from_model_config: true, ...(options.generationConfig ?? {}) }, null, 2));
  options.tokenizer?.save(dir);
}

/** Loads a quantized folder: the model is built with empty quantized layers that take their stored
 *  tensors; float32 linear weights are never created. */
export function loadQuantized(dir: string, options: QuantizedBuildOptions = {}): QuantizedCheckpoint {
  dir = modelDir(dir);
  const config = readConfig(dir);
  const method = folderQuantMethod(config);
  if (!method) throw new QuantizationError(`${dir} is not quantized (no quantization_config, torch_dtype ${String(config.torch_dtype ?? 'float32')}); use loadModel, or quantize it first`);
  const factory = quantizedLinearFactory(checkQuantMethod(method));
  const model = createModel(config, { init: false, linearFactory: options.wrap ? options.wrap(factory) : factory });
  const tensors = readWeights(dir);
  for (const layer of quantizedLayers(model)) {
    const own = new Map<string, Tensor>();
    for (const [name, t] of tensors) {
      if (name.startsWith(`${layer.prefix}.`) && name !== `${layer.prefix}.bias`) {
        own.set(name.slice(layer.prefix.length + 1), t);
        tensors.delete(name);
      }
    }
    layer.load(own);
  }
  model.loadStateDict(tensors);
  model.eval();
  return { model, method, ...folderExtras(dir) };
}

// loadModel / loadCheckpoint (and so sample, chat, the engine and the server) open quantized folders too.
registerFolderLoader((dir, config) => (folderQuantMethod(config) ? loadQuantized(dir) : null));
