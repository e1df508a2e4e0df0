// Export of Llama-style and GPT-2 models to GGUF, named and laid out as llama.cpp's
// convert_hf_to_gguf.py does, with the byte-level BPE tokenizer embedded, so llama.cpp (and
// everything built on it) runs Plinth models.
//
// One difference from Hugging Face's layout matters for correctness: HF applies rotary embeddings
// "rotate-half" style (dimension i pairs with i + D/2), ggml's llama rope pairs adjacent dimensions
// (2i with 2i+1). convert_hf_to_gguf.py therefore permutes the rows of q_proj and k_proj within each
// head: new row 2i+j = old row j·D/2 + i. Attention scores are unchanged because q and k get the
// same permutation.
import type { CausalLM, GPT2Config, LlamaConfig } from '../models/index.js';
import { tensor, type Tensor } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { ByteLevelModel } from '../tokenizers/bytelevel.js';
import { O200K_PATTERN, scanCl100k, scanR50k } from '../tokenizers/pretokenize.js';
import { encodeTensorData, GGMLType, gguf, type GGUFTensorOut, type GGUFValue, GGUFError, writeGGUF } from './gguf.js';

export type GGUFExportType = 'f32' | 'f16' | 'q8_0' | 'q4_0';

const WEIGHT_TYPE: Record<GGUFExportType, GGMLType> = { f32: GGMLType.F32, f16: GGMLType.F16, q8_0: GGMLType.Q8_0, q4_0: GGMLType.Q4_0 };
/** general.file_type (llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q8_0. */
const FILE_TYPE: Record<GGUFExportType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 };

// llama.cpp token types (llama_token_type)
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_UNUSED = 5;

/** Rows of a (H·D, C) projection reordered per head from rotate-half to interleaved pairs. */
export function permuteRope(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const D = rows / heads;
  if (!Number.isInteger(D) || D % 2 !== 0) throw new GGUFError(`cannot permute ${rows} rows into ${heads} heads of even size`);
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const src = h * D + j * (D / 2) + i;
        const dst = h * D + 2 * i + j;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** llama.cpp's name for the pre-tokenizer (tokenizer.ggml.pre) that splits text as Plinth's pattern does. */
export function ggmlPreTokenizer(model: ByteLevelModel): string {
  const p = model.pre.pattern;
  if (model.addPrefixSpace) throw new GGUFError('llama.cpp\'s byte-level BPE pre-tokenizers do not add a prefix space; this tokenizer (add_prefix_space) cannot be embedded');
  // llama3's pre-tokenizer also takes a piece that is itself a token whole (ignore_merges); "smaug-bpe"
  // splits with the same expression and always runs the merges.
  if (model.pre.scan === scanCl100k) return model.bpe.ignoreMerges ? 'llama-bpe' : 'smaug-bpe';
  if (model.pre.scan === scanR50k && !model.bpe.ignoreMerges) return 'gpt-2';
  if (p === O200K_PATTERN && !model.bpe.ignoreMerges) return 'gpt-4o';
  throw new GGUFError(`llama.cpp has no pre-tokenizer matching the pattern ${JSON.stringify(p)}${model.bpe.ignoreMerges ? ' with ignore_merges' : ''}; GGUF export supports the r50k (GPT-2), cl100k and o200k patterns`);
}

/** The tokenizer.* metadata of a byte-level BPE tokenizer, its vocabulary padded to vocabSize. */
export function tokenizerMetadata(tokenizer: Tokenizer, vocabSize: number): Map<string, GGUFValue> {
  const model = tokenizer.model;
  if (!(model instanceof ByteLevelModel)) throw new GGUFError(`GGUF export embeds byte-level BPE tokenizers only, not ${model.type} ones`);
  if (tokenizer.vocabSize > vocabSize) throw new GGUFError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary only ${vocabSize}`);
  const tokens: string[] = [];
  const types: number[] = [];
  const added = new Map(tokenizer.addedTokens.map((t) => [t.id, t]));
  for (let id = 0; id < vocabSize; id++) {
    const a = added.get(id);
    const text = a ? a.content : model.idToToken(id);
    if (text === undefined) {
      // ids the tokenizer never produces (the model's vocabulary is often rounded up)
      tokens.push(`[PAD${id}]`);
      types.push(TOKEN_UNUSED);
    } else {
      tokens.push(text);
      types.push(a ? (a.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED) : TOKEN_NORMAL);
    }
  }
  const merges = model.mergeList().map(([x, y]) => `${model.idToToken(x)} ${model.idToToken(y)}`);
  const m = new Map<string, GGUFValue>([
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str(ggmlPreTokenizer(model))],
    ['tokenizer.ggml.tokens', gguf.strings(tokens)],
    ['tokenizer.ggml.token_type', gguf.i32s(types)],
    ['tokenizer.ggml.merges', gguf.strings(merges)],
  ]);
  const eos = tokenizer.specialId('eosToken');
  // Without a beginning-of-text token, documents start after an end-of-text one (GPT-2 style).
  const bos = tokenizer.specialId('bosToken') ?? eos;
  if (bos !== undefined) m.set('tokenizer.ggml.bos_token_id', gguf.u32(bos));
  if (eos !== undefined) m.set('tokenizer.ggml.eos_token_id', gguf.u32(eos));
  const pad = tokenizer.specialId('padToken');
  if (pad !== undefined) m.set('tokenizer.ggml.padding_token_id', gguf.u32(pad));
  const unk = tokenizer.specialId('unkToken');
  if (unk !== undefined) m.set('tokenizer.ggml.unknown_token_id', gguf.u32(unk));
  // encode() adds what the tokenizer's template says; llama.cpp must do the same
  m.set('tokenizer.ggml.add_bos_token', gguf.bool(bos !== undefined && tokenizer.prefix.includes(bos)));
  m.set('tokenizer.ggml.add_eos_token', gguf.bool(eos !== undefined && tokenizer.suffix.includes(eos)));
  if (tokenizer.config.chatTemplate) m.set('tokenizer.chat_template', gguf.str(tokenizer.config.chatTemplate));
  return m;
}

export interface GGUFExportOptions {
  type?: GGUFExportType;
  /** general.name (default "plinth"). */
  name?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface GGUFExportSummary {
  path: string;
  bytes: number;
  tensors: number;
  type: GGUFExportType;
  parameters: number;
}

function f32Data(t: Tensor): Float32Array {
  const d = t.contiguous().data();
  if (!(d instanceof Float32Array)) throw new GGUFError(`GGUF export expects float32 weights, got ${t.dtype}`);
  return d;
}

/** Where one Hugging Face module's tensors go in the GGUF file. */
interface Mapping {
  hf: string;
  gg: string;
  /** Rows to permute from rotate-half to interleaved rope order, in this many heads (Llama q/k). */
  heads?: number;
  /** GPT-2's Conv1D stores (in, out); ggml wants (out, in). */
  transposed?: boolean;
  /** llama.cpp requires this bias; a model without biases gets zeros of this size. */
  bias?: number;
}

function llamaLayout(c: LlamaConfig): { md: [string, GGUFValue][]; maps: Mapping[] } {
  const H = c.num_attention_heads;
  const KVH = c.num_key_value_heads ?? H;
  const D = c.head_dim ?? c.hidden_size / H;
  const md: [string, GGUFValue][] = [
    ['general.architecture', gguf.str('llama')],
    ['llama.vocab_size', gguf.u32(c.vocab_size)],
    ['llama.context_length', gguf.u32(c.max_position_embeddings ?? 2048)],
    ['llama.embedding_length', gguf.u32(c.hidden_size)],
    ['llama.block_count', gguf.u32(c.num_hidden_layers)],
    ['llama.feed_forward_length', gguf.u32(c.intermediate_size)],
    ['llama.attention.head_count', gguf.u32(H)],
    ['llama.attention.head_count_kv', gguf.u32(KVH)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(c.rms_norm_eps ?? 1e-6)],
    ['llama.rope.freq_base', gguf.f32(c.rope_theta ?? 10000)],
    ['llama.rope.dimension_count', gguf.u32(D)],
  ];
  if (D * H !== c.hidden_size) md.push(['llama.attention.key_length', gguf.u32(D)], ['llama.attention.value_length', gguf.u32(D)]);
  const maps: Mapping[] = [{ hf: 'model.embed_tokens', gg: 'token_embd' }];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    maps.push(
      { hf: `${p}.input_layernorm`, gg: `blk.${i}.attn_norm` },
      { hf: `${p}.self_attn.q_proj`, gg: `blk.${i}.attn_q`, heads: H },
      { hf: `${p}.self_attn.k_proj`, gg: `blk.${i}.attn_k`, heads: KVH },
      { hf: `${p}.self_attn.v_proj`, gg: `blk.${i}.attn_v` },
      { hf: `${p}.self_attn.o_proj`, gg: `blk.${i}.attn_output` },
      { hf: `${p}.post_attention_layernorm`, gg: `blk.${i}.ffn_norm` },
      { hf: `${p}.mlp.gate_proj`, gg: `blk.${i}.ffn_gate` },
      { hf: `${p}.mlp.up_proj`, gg: `blk.${i}.ffn_up` },
      { hf: `${p}.mlp.down_proj`, gg: `blk.${i}.ffn_down` },
    );
  }
  maps.push({ hf: 'model.norm', gg: 'output_norm' });
  // a tied head has no tensor of its own: llama.cpp then reads token_embd
  if (!c.tie_word_embeddings) maps.push({ hf: 'lm_head', gg: 'output' });
  return { md, maps };
}

function gpt2Layout(c: GPT2Config): { md: [string, GGUFValue][]; maps: Mapping[] } {
  const C = c.n_embd;
  const inner = c.n_inner ?? 4 * C;
  const md: [string, GGUFValue][] = [
    ['general.architecture', gguf.str('gpt2')],
    ['gpt2.vocab_size', gguf.u32(c.vocab_size)],
    ['gpt2.context_length', gguf.u32(c.n_positions)],
    ['gpt2.embedding_length', gguf.u32(C)],
    ['gpt2.block_count', gguf.u32(c.n_layer)],
    ['gpt2.feed_forward_length', gguf.u32(inner)],
    ['gpt2.attention.head_count', gguf.u32(c.n_head)],
    ['gpt2.attention.layer_norm_epsilon', gguf.f32(c.layer_norm_epsilon ?? 1e-5)],
  ];
  const maps: Mapping[] = [{ hf: 'transformer.wte', gg: 'token_embd' }, { hf: 'transformer.wpe', gg: 'position_embd' }];
  for (let i = 0; i < c.n_layer; i++) {
    const p = `transformer.h.${i}`;
    maps.push(
      { hf: `${p}.ln_1`, gg: `blk.${i}.attn_norm`, bias: C },
      { hf: `${p}.attn.c_attn`, gg: `blk.${i}.attn_qkv`, transposed: true, bias: 3 * C },
      { hf: `${p}.attn.c_proj`, gg: `blk.${i}.attn_output`, transposed: true, bias: C },
      { hf: `${p}.ln_2`, gg: `blk.${i}.ffn_norm`, bias: C },
      { hf: `${p}.mlp.c_fc`, gg: `blk.${i}.ffn_up`, transposed: true, bias: inner },
      { hf: `${p}.mlp.c_proj`, gg: `blk.${i}.ffn_down`, transposed: true, bias: C },
    );
  }
  // the head is tied to wte: llama.cpp reads token_embd
  maps.push({ hf: 'transformer.ln_f', gg: 'output_norm', bias: C });
  return { md, maps };
}

/** Writes a Llama-style or GPT-2 model and its tokenizer as a GGUF file llama.cpp loads. */
export function exportGGUF(model: CausalLM, tokenizer: Tokenizer, path: string, options: GGUFExportOptions = {}): GGUFExportSummary {
  const type = options.type ?? 'f32';
  if (!(type in WEIGHT_TYPE)) throw new GGUFError(`unknown GGUF type '${type}': choose f32, f16, q8_0 or q4_0`);
  const kind = model.config.model_type;
  if (kind !== 'llama' && kind !== 'gpt2') throw new GGUFError(`GGUF export supports Llama-style and GPT-2 models, not model_type '${kind}'`);
  const layout = kind === 'llama' ? llamaLayout(model.config as LlamaConfig) : gpt2Layout(model.config as GPT2Config);
  const state = model.stateDict();
  const toF16 = (x: Float32Array): Uint16Array => tensor(x).to('f16').data() as Uint16Array;

  const md = new Map<string, GGUFValue>([
    layout.md[0]!,
    ['general.name', gguf.str(options.name ?? 'plinth')],
    ['general.file_type', gguf.u32(FILE_TYPE[type])],
    ...layout.md.slice(1),
  ]);
  if (type === 'q8_0' || type === 'q4_0') md.set('general.quantization_version', gguf.u32(2));
  for (const [k, v] of tokenizerMetadata(tokenizer, model.config.vocab_size)) md.set(k, v);

  const tensors: GGUFTensorOut[] = [];
  const used = new Set<string>();
  let parameters = 0;
  for (const m of layout.maps) {
    for (const suffix of ['weight', 'bias']) {
      const name = `${m.hf}.${suffix}`;
      const t = state.get(name);
      if (!t) {
        if (suffix === 'weight') throw new GGUFError(`the model has no tensor '${name}'`);
        if (m.bias !== undefined) {
          const n = m.bias;
          tensors.push({ name: `${m.gg}.bias`, shape: [n], type: GGMLType.F32, data: () => new Uint8Array(4 * n) });
        }
        continue;
      }
      used.add(name);
      parameters += t.size;
      const transpose = m.transposed === true && suffix === 'weight';
      const shape = transpose ? [t.shape[1]!, t.shape[0]!] : [...t.shape];
      // 2-D weights take the requested type when their rows split into blocks; norms and biases stay F32
      const rowLen = shape[shape.length - 1]!;
      let tt: GGMLType = t.ndim === 2 ? WEIGHT_TYPE[type] : GGMLType.F32;
      if ((tt === GGMLType.Q8_0 || tt === GGMLType.Q4_0) && rowLen % 32 !== 0) tt = GGMLType.F16;
      const cols = t.ndim === 2 ? rowLen : 1;
      tensors.push({
        name: `${m.gg}.${suffix}`,
        shape,
        type: tt,
        data: () => {
          let x = f32Data(transpose ? t.T : t);
          if (m.heads) x = permuteRope(x, m.heads, cols);
          return encodeTensorData(x, tt, toF16);
        },
      });
    }
  }
  const extra = [...state.keys()].filter((k) => !used.has(k));
  if (extra.length > 0) throw new GGUFError(`GGUF export does not know where these tensors go: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`);
  const bytes = writeGGUF(path, md, tensors, { onProgress: options.onProgress });
  return { path, bytes, tensors: tensors.length, type, parameters };
}
