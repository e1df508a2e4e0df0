// Llama (Touvron et al., 2023): a decoder-only transformer with RMSNorm before each sub-layer,
// rotary position embeddings on queries and keys, grouped-query attention, a SwiGLU MLP and an
// untied output head. Parameter names are those of Hugging Face's LlamaForCausalLM.
import { ArgumentError } from '../errors.js';
import {
  type AttentionMetadata, attend, causalMetadata, Embedding, KVCache, linearLayer, type LinearFactory, type LinearLayer, Module, type ModuleOptions, RMSNorm, RotaryEmbedding, SwiGLUMLP,
} from '../nn/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { CausalLM, CausalLMOutput, ForwardOptions } from './causal_lm.js';
import { checkIds, logitInputs, lossFromLogits } from './causal_lm.js';

// ---- config ----------------------------------------------------------------------------------

export interface LlamaConfig {
  model_type: 'llama';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  max_position_embeddings?: number;
  initializer_range?: number;
  tie_word_embeddings?: boolean;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  hidden_act?: string;
  [key: string]: unknown;
}

function headDim(c: LlamaConfig): number {
  return c.head_dim ?? c.hidden_size / c.num_attention_heads;
}

// ---- attention -------------------------------------------------------------------------------

class LlamaAttention extends Module {
  readonly q_proj: LinearLayer;
  readonly k_proj: LinearLayer;
  readonly v_proj: LinearLayer;
  readonly o_proj: LinearLayer;
  private readonly H: number;
  private readonly KVH: number;
  private readonly D: number;

  constructor(config: LlamaConfig, readonly layer: number, options: ModuleOptions & { std: number }) {
    super(options);
    this.H = config.num_attention_heads;
    this.KVH = config.num_key_value_heads ?? this.H;
    this.D = headDim(config);
    const C = config.hidden_size;
    const bias = config.attention_bias ?? false;
    const std = options.std;
    this.q_proj = this.add(linearLayer(C, this.H * this.D, { ...this.sub('q_proj'), std, bias }));
    this.k_proj = this.add(linearLayer(C, this.KVH * this.D, { ...this.sub('k_proj'), std, bias }));
    this.v_proj = this.add(linearLayer(C, this.KVH * this.D, { ...this.sub('v_proj'), std, bias }));
    this.o_proj = this.add(linearLayer(this.H * this.D, C, { ...this.sub('o_proj'), std: std / Math.sqrt(2 * config.num_hidden_layers), bias }));
  }

  forward(x: Tensor, meta: AttentionMetadata): Tensor {
    const [B, T] = x.shape;
    const { H, KVH, D } = this;
    // (B, T, H·D) → (B, T, H, D) → (B, H, T, D); rotary positions are applied inside attend
    const q = this.q_proj.forward(x).reshape(B, T, H, D).transpose(1, 2);
    const k = this.k_proj.forward(x).reshape(B, T, KVH, D).transpose(1, 2);
    const v = this.v_proj.forward(x).reshape(B, T, KVH, D).transpose(1, 2);
    const y = attend(this.layer, q, k, v, meta); // (B, H, T, D)
    return this.o_proj.forward(y.transpose(1, 2).reshape(B, T, H * D));
  }
}

// ---- decoder layer ---------------------------------------------------------------------------

class LlamaDecoderLayer extends Module {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: LlamaAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly mlp: SwiGLUMLP;

  constructor(config: LlamaConfig, layer: number, options: ModuleOptions & { std: number }) {
    super(options);
    const eps = config.rms_norm_eps ?? 1e-6;
    const std = options.std;
    this.input_layernorm = this.add(new RMSNorm(config.hidden_size, eps, this.sub('input_layernorm')));
    this.self_attn = this.add(new LlamaAttention(config, layer, { ...this.sub('self_attn'), std }));
    this.post_attention_layernorm = this.add(new RMSNorm(config.hidden_size, eps, this.sub('post_attention_layernorm')));
    this.mlp = this.add(new SwiGLUMLP(config.hidden_size, config.intermediate_size, {
      ...this.sub('mlp'), std, outStd: std / Math.sqrt(2 * config.num_hidden_layers), bias: config.mlp_bias ?? false,
    }));
  }

  // x = x + attn(rms(x)); x = x + mlp(rms(x))
  forward(x: Tensor, meta: AttentionMetadata): Tensor {
    x = pl.add(x, this.self_attn.forward(this.input_layernorm.forward(x), meta));
    return pl.add(x, this.mlp.forward(this.post_attention_layernorm.forward(x)));
  }
}

// ---- model -----------------------------------------------------------------------------------

export class LlamaForCausalLM extends Module implements CausalLM {
  readonly embed_tokens: Embedding;
  readonly layers: LlamaDecoderLayer[];
  readonly norm: RMSNorm;
  readonly lm_head: LinearLayer | null;
  private readonly rotary: RotaryEmbedding;

  /** Builds the model; `init: false` leaves the weights zero, to be loaded. */
  constructor(readonly config: LlamaConfig, options: { init?: boolean; linearFactory?: LinearFactory } = {}) {
    super({ prefix: '', linearFactory: options.linearFactory });
    const H = config.num_attention_heads;
    const KVH = config.num_key_value_heads ?? H;
    if (H % KVH !== 0) throw new ArgumentError(`llama: ${H} attention heads cannot share ${KVH} key/value heads evenly`);
    if (!config.head_dim && config.hidden_size % H !== 0) throw new ArgumentError(`llama: hidden_size ${config.hidden_size} is not divisible by ${H} heads`);
    const std = options.init === false ? 0 : config.initializer_range ?? 0.02;
    this.embed_tokens = this.add(new Embedding(config.vocab_size, config.hidden_size, { prefix: 'model.embed_tokens', std }));
    this.layers = Array.from({ length: config.num_hidden_layers }, (_, i) => this.add(new LlamaDecoderLayer(config, i, { prefix: `model.layers.${i}`, std, linearFactory: this.linearFactory })));
    this.norm = this.add(new RMSNorm(config.hidden_size, config.rms_norm_eps ?? 1e-6, { prefix: 'model.norm' }));
    this.lm_head = config.tie_word_embeddings ? null : this.add(linearLayer(config.hidden_size, config.vocab_size, { prefix: 'lm_head', std, bias: false, linearFactory: this.linearFactory }));
    this.rotary = new RotaryEmbedding(headDim(config), this.maxPositions, config.rope_theta ?? 10000);
  }

  get vocabSize(): number {
    return this.config.vocab_size;
  }

  get maxPositions(): number {
    return this.config.max_position_embeddings ?? 2048;
  }

  newCache(batch: number, maxLength = this.maxPositions): KVCache {
    const c = this.config;
    return new KVCache(c.num_hidden_layers, batch, c.num_key_value_heads ?? c.num_attention_heads, maxLength, headDim(c));
  }

  forward(inputIds: Tensor, options: ForwardOptions = {}): CausalLMOutput {
    const [, T] = checkIds(inputIds, this.config.vocab_size);
    const cache = options.cache ?? null;
    const meta = causalMetadata(T, cache, options.paged ?? null, this.rotary);
    let x = this.embed_tokens.forward(inputIds); // (B, T, C)
    const hidden: Tensor[] = options.outputHiddenStates ? [x] : [];
    for (const layer of this.layers) {
      x = layer.forward(x, meta);
      if (options.outputHiddenStates) hidden.push(x);
    }
    cache?.advance(T);
    // logits = lm_head(norm(x))   (B, T, V), over the rows that need them
    const h = this.norm.forward(logitInputs(x, options));
    const logits = this.lm_head ? this.lm_head.forward(h) : pl.matmul(h, this.embed_tokens.weight.T);
    const out: CausalLMOutput = { logits, loss: lossFromLogits(logits, options.labels), hiddenStates: hidden };
    if (options.outputLastHiddenState) out.lastHiddenState = this.norm.forward(x);
    return out;
  }
}
