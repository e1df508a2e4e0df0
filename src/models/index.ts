// The model registry: Hugging Face `model_type` → the class that builds it from its config.json.
import { PlinthError } from '../errors.js';
import type { LinearFactory } from '../nn/index.js';
import type { CausalLM } from './causal_lm.js';
import { type GPT2Config, GPT2LMHeadModel } from './gpt2.js';
import { type LlamaConfig, LlamaForCausalLM } from './llama.js';

export { GPT2LMHeadModel, type GPT2Config } from './gpt2.js';
export { LlamaForCausalLM, type LlamaConfig } from './llama.js';
export type { CausalLM, CausalLMOutput, ForwardOptions } from './causal_lm.js';

export class UnsupportedModelError extends PlinthError {}

export type ModelConfig = GPT2Config | LlamaConfig;

export interface ModelOptions {
  /** false leaves the weights zero, to be loaded. */
  init?: boolean;
  /** Builds the linear layers (LoRA, quantized); plain float layers by default. */
  linearFactory?: LinearFactory;
}

const REGISTRY: Record<string, (config: never, options: ModelOptions) => CausalLM> = {
  gpt2: (c: GPT2Config, o) => new GPT2LMHeadModel(c, o),
  llama: (c: LlamaConfig, o) => new LlamaForCausalLM(c, o),
};

export function supportedModelTypes(): string[] {
  return Object.keys(REGISTRY);
}

/** Builds a model from a Hugging Face config; `init: false` leaves weights zero for loading. */
export function createModel(config: { model_type?: unknown; [key: string]: unknown }, options: ModelOptions = {}): CausalLM {
  const type = config.model_type;
  const make = typeof type === 'string' ? REGISTRY[type] : undefined;
  if (!make) {
    throw new UnsupportedModelError(`unsupported model_type ${JSON.stringify(type)}: supported are ${supportedModelTypes().join(', ')}`);
  }
  return make(config as never, options);
}
