// GPT-2 (Radford et al., 2019): a decoder-only transformer with learned absolute positions,
// pre-LayerNorm residual blocks, a GELU (tanh) MLP, and an output head tied to the token embedding.
// Parameter names and layouts are those of Hugging Face's GPT2LMHeadModel (Conv1D weights (in, out)).
import { ArgumentError } from '../errors.js';
import {
  type AttentionMetadata, attend, causalMetadata, Embedding, linearLayer, type LinearFactory, type LinearLayer, KVCache, LayerNorm, Module, type ModuleOptions, positionIds,
} from '../nn/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { CausalLM, CausalLMOutput, ForwardOptions } from './causal_lm.js';
import { checkIds, logitInputs, lossFromLogits } from './causal_lm.js';

// ---- config ----------------------------------------------------------------------------------

export interface GPT2Config {
  model_type: 'gpt2';
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner?: number | null;
  activation_function?: string;
  layer_norm_epsilon?: number;
  initializer_range?: number;
  tie_word_embeddings?: boolean;
  resid_pdrop?: number;
  embd_pdrop?: number;
  attn_pdrop?: number;
  /** Plinth extension (nanoGPT's option): false drops every bias, LayerNorm's included. Default true. */
  bias?: boolean;
  [key: string]: unknown;
}

// ---- attention -------------------------------------------------------------------------------

class GPT2Attention extends Module {
  readonly c_attn: LinearLayer;
  readonly c_proj: LinearLayer;

  constructor(readonly config: GPT2Config, readonly layer: number, options: ModuleOptions & { std: number }) {
    super(options);
    const C = config.n_embd;
    this.c_attn = this.add(linearLayer(C, 3 * C, { transposed: true, ...this.sub('c_attn'), std: options.std, bias: config.bias }));
    // Residual projections are scaled by 1/√(2L) at initialisation (GPT-2 paper, §2.3).
    this.c_proj = this.add(linearLayer(C, C, { transposed: true, ...this.sub('c_proj'), std: options.std / Math.sqrt(2 * config.n_layer), bias: config.bias }));
  }

  forward(x: Tensor, meta: AttentionMetadata): Tensor {
    const [B, T, C] = x.shape;
    const H = this.config.n_head;
    const D = C / H;
    // qkv (B, T, 3C) → (B, T, 3, H, D) → (3, B, H, T, D), one copy; q, k, v are its contiguous slices
    const qkv = this.c_attn.forward(x).reshape(B, T, 3, H, D).permute(2, 0, 3, 1, 4).contiguous();
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i));
    const y = attend(this.layer, q, k, v, meta); // (B, H, T, D)
    return this.c_proj.forward(y.transpose(1, 2).reshape(B, T, C));
  }
}

// ---- MLP -------------------------------------------------------------------------------------

class GPT2MLP extends Module {
  readonly c_fc: LinearLayer;
  readonly c_proj: LinearLayer;

  constructor(config: GPT2Config, options: ModuleOptions & { std: number }) {
    super(options);
    const C = config.n_embd;
    const inner = config.n_inner ?? 4 * C;
    this.c_fc = this.add(linearLayer(C, inner, { transposed: true, ...this.sub('c_fc'), std: options.std, bias: config.bias }));
    this.c_proj = this.add(linearLayer(inner, C, { transposed: true, ...this.sub('c_proj'), std: options.std / Math.sqrt(2 * config.n_layer), bias: config.bias }));
  }

  // mlp(x) = c_proj(gelu_tanh(c_fc(x)))
  forward(x: Tensor): Tensor {
    return this.c_proj.forward(pl.gelu(this.c_fc.forward(x), 'tanh'));
  }
}

// ---- block -----------------------------------------------------------------------------------

class GPT2Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: GPT2Attention;
  readonly ln_2: LayerNorm;
  readonly mlp: GPT2MLP;

  constructor(config: GPT2Config, layer: number, options: ModuleOptions & { std: number }) {
    super(options);
    const eps = config.layer_norm_epsilon ?? 1e-5;
    this.ln_1 = this.add(new LayerNorm(config.n_embd, eps, { ...this.sub('ln_1'), bias: config.bias }));
    this.attn = this.add(new GPT2Attention(config, layer, { ...this.sub('attn'), std: options.std }));
    this.ln_2 = this.add(new LayerNorm(config.n_embd, eps, { ...this.sub('ln_2'), bias: config.bias }));
    this.mlp = this.add(new GPT2MLP(config, { ...this.sub('mlp'), std: options.std }));
  }

  // x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
  forward(x: Tensor, meta: AttentionMetadata): Tensor {
    x = pl.add(x, this.attn.forward(this.ln_1.forward(x), meta));
    return pl.add(x, this.mlp.forward(this.ln_2.forward(x)));
  }
}

// ---- model -----------------------------------------------------------------------------------

export class GPT2LMHeadModel extends Module implements CausalLM {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: GPT2Block[];
  readonly ln_f: LayerNorm;

  /** Builds the model; `init: false` leaves the weights zero, to be loaded. */
  constructor(readonly config: GPT2Config, options: { init?: boolean; linearFactory?: LinearFactory } = {}) {
    super({ prefix: '', linearFactory: options.linearFactory });
    if (config.n_embd % config.n_head !== 0) throw new ArgumentError(`gpt2: n_embd ${config.n_embd} is not divisible by n_head ${config.n_head}`);
    if (config.tie_word_embeddings === false) throw new ArgumentError('gpt2: only tied output embeddings are supported (tie_word_embeddings must be true)');
    const std = options.init === false ? 0 : config.initializer_range ?? 0.02;
    const t = 'transformer';
    this.wte = this.add(new Embedding(config.vocab_size, config.n_embd, { prefix: `${t}.wte`, std }));
    this.wpe = this.add(new Embedding(config.n_positions, config.n_embd, { prefix: `${t}.wpe`, std }));
    this.h = Array.from({ length: config.n_layer }, (_, i) => this.add(new GPT2Block(config, i, { prefix: `${t}.h.${i}`, std, linearFactory: this.linearFactory })));
    this.ln_f = this.add(new LayerNorm(config.n_embd, config.layer_norm_epsilon ?? 1e-5, { prefix: `${t}.ln_f`, bias: config.bias }));
  }

  get vocabSize(): number {
    return this.config.vocab_size;
  }

  get maxPositions(): number {
    return this.config.n_positions;
  }

  newCache(batch: number, maxLength = this.config.n_positions): KVCache {
    const H = this.config.n_head;
    return new KVCache(this.config.n_layer, batch, H, maxLength, this.config.n_embd / H);
  }

  forward(inputIds: Tensor, options: ForwardOptions = {}): CausalLMOutput {
    const [, T] = checkIds(inputIds, this.config.vocab_size);
    const cache = options.cache ?? null;
    const meta = causalMetadata(T, cache, options.paged ?? null, null);
    // x = wte[ids] + wpe[positions]   (B, T, C); positions are past..past+T−1 unless packed
    let x = pl.add(this.wte.forward(inputIds), this.wpe.forward(positionIds(meta, T, this.config.n_positions)));
    const hidden: Tensor[] = options.outputHiddenStates ? [x] : [];
    for (const block of this.h) {
      x = block.forward(x, meta);
      if (options.outputHiddenStates) hidden.push(x);
    }
    cache?.advance(T);
    // logits = ln_f(x) · wteᵀ   (B, T, V), over the rows that need them
    const logits = pl.matmul(this.ln_f.forward(logitInputs(x, options)), this.wte.weight.T);
    const out: CausalLMOutput = { logits, loss: lossFromLogits(logits, options.labels), hiddenStates: hidden };
    if (options.outputLastHiddenState) out.lastHiddenState = this.ln_f.forward(x);
    return out;
  }
}
