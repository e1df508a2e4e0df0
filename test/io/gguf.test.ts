// GGUF: f16 rounding and the Q8_0/Q4_0 block quantizers against hand-worked blocks (ties, clamping,
// all-zero blocks), write → read round trips, clear errors for corrupt files, and the export read
// back by llama.cpp itself (node-llama-cpp): same tokens, same logits at every position, same greedy
// continuation as Plinth for F32 Llama and GPT-2; quantized files decode to the blocks Plinth wrote.
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import {
  dequantize, fp16ToFp32, fp32ToFp16, GGMLType, gguf, GGUFError, type GGUFValue, parseGGUF, quantizeQ4_0, quantizeQ8_0, readGGUF, writeGGUF,
} from '../../src/io/gguf.js';
import { exportGGUF, permuteRope } from '../../src/io/gguf-export.js';
import type { Token } from 'node-llama-cpp';
import { assertClose } from '../helpers.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'plinth-gguf-'));

test('f32 → f16 rounds to nearest even, with subnormals and overflow', () => {
  const cases: [number, number][] = [
    [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [2 ** -14, 0x0400], [-0, 0x8000], [Infinity, 0x7c00],
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], // ties go to the even mantissa
  ];
  for (const [x, bits] of cases) assert.equal(fp32ToFp16(x), bits, `fp16(${x})`);
  assert.ok(Number.isNaN(fp16ToFp32(fp32ToFp16(NaN))));
  for (const h of [0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xc000]) assert.equal(fp32ToFp16(fp16ToFp32(h)), h);
});

test('Q8_0 blocks: d = absmax/127 as f16, q rounds half away from zero; an all-zero block is zero', () => {
  // absmax 127 makes d exactly 1, so q = round(x)
  const x = new Float32Array(64);
  x.set([127, -0.5, 0.5, 1.5, 2.5, -2.5, -126.4, 0.49], 0);
  const b = quantizeQ8_0(x);
  assert.equal(b.length, 68);
  const v = new DataView(b.buffer);
  assert.equal(v.getUint16(0, true), 0x3c00);
  assert.deepEqual([...new Int8Array(b.buffer, 2, 8)], [127, -1, 1, 2, 3, -3, -126, 0]);
  assert.deepEqual([...b.subarray(34)], new Array(34).fill(0), 'zero block: d = 0, q = 0');
  // a second scale: absmax 2.54 → d = 0.02 (f16 0x251f), 0.01 → 0.5 → 1 (first rounding in float32)
  const y = new Float32Array(32);
  y.set([2.54, 0.01, -1.27]);
  const c = quantizeQ8_0(y);
  assert.equal(new DataView(c.buffer).getUint16(0, true), fp32ToFp16(Math.fround(Math.fround(2.54) / 127)));
  assert.deepEqual([...new Int8Array(c.buffer, 2, 3)], [127, 1, -64]);
});

test('Q4_0 blocks: d = max/−8 from the signed largest value, q = min(15, trunc(x/d + 8.5)), low nibbles first', () => {
  // max = −8 → d = 1: q = trunc(x + 8.5) clamped to 15
  const x = new Float32Array(32);
  x.set([-8, 7, 7.4, -0.5, 0.49, 0.5, 1, -7.6]);
  x[16] = 3;
  x[17] = -3;
  const b = quantizeQ4_0(x);
  assert.equal(b.length, 18);
  assert.equal(new DataView(b.buffer).getUint16(0, true), 0x3c00);
  const lo = [...b.subarray(2)].map((q) => q & 15);
  const hi = [...b.subarray(2)].map((q) => q >> 4);
  assert.deepEqual(lo.slice(0, 8), [0, 15, 15, 8, 8, 9, 9, 0]);
  assert.deepEqual(hi.slice(0, 2), [11, 5], 'values 16.. go to the high nibbles');
  assert.deepEqual(lo.slice(8), new Array(8).fill(8));
  // positive max 8 → d = −1; −7.6 → trunc(16.1) = 16 → clamped to 15
  const y = new Float32Array(32);
  y.set([8, -7, -7.6, 1]);
  const c = quantizeQ4_0(y);
  assert.equal(new DataView(c.buffer).getUint16(0, true), 0xbc00);
  assert.deepEqual([...c.subarray(2, 6)].map((q) => q & 15), [0, 15, 15, 7]);
  // equal magnitudes: the first one sets the sign of d
  const z = new Float32Array(32);
  z.set([1, -1]);
  assert.equal(new DataView(quantizeQ4_0(z).buffer).getUint16(0, true), fp32ToFp16(-0.125));
  // all zero: d = 0/−8 = −0 (f16 0x8000) and every q is 8
  const zero = quantizeQ4_0(new Float32Array(32));
  assert.equal(new DataView(zero.buffer).getUint16(0, true), 0x8000);
  assert.deepEqual([...zero.subarray(2)], new Array(16).fill(0x88));
});

test('write → read round trip: typed metadata, shapes, aligned offsets, values within each format\'s error', () => {
  pl.manualSeed(5);
  const w = pl.randn([6, 64]).toFloat32Array();
  const md = new Map<string, GGUFValue>([
    ['general.architecture', gguf.str('llama')],
    ['a.u32', gguf.u32(4_000_000_000)],
    ['a.i32', gguf.i32(-7)],
    ['a.f32', gguf.f32(1e-5)],
    ['a.bool', gguf.bool(true)],
    ['a.strings', gguf.strings(['Ġthe', '', 'é 🙂'])],
    ['a.ints', gguf.i32s([1, -2, 3])],
    ['a.u64', { type: 10, value: 2n ** 60n }],
  ]);
  const types = [GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0];
  const enc = (t: number) => (t === GGMLType.F32 ? new Uint8Array(w.buffer) : t === GGMLType.F16 ? new Uint8Array(pl.tensor(w).to('f16').data().buffer) : t === GGMLType.Q8_0 ? quantizeQ8_0(w) : quantizeQ4_0(w));
  const tensors = types.map((t, i) => ({ name: `w${i}`, shape: [6, 64], type: t as GGMLType, data: () => enc(t) }));
  tensors.push({ name: 'norm', shape: [3], type: GGMLType.F32, data: () => new Uint8Array(new Float32Array([1, 2, 3]).buffer) });
  const dir = tmp();
  const file = path.join(dir, 'x.gguf');
  const size = writeGGUF(file, md, tensors);
  assert.deepEqual(readdirSync(dir), ['x.gguf'], 'no temporary file left behind');
  const g = readGGUF(file);
  assert.equal(size, readFileSync(file).length);
  assert.equal(g.version, 3);
  assert.equal(g.metadata.get('a.u32')!.value, 4_000_000_000);
  assert.equal(g.metadata.get('a.i32')!.value, -7);
  assert.equal(g.metadata.get('a.f32')!.value, Math.fround(1e-5));
  assert.equal(g.metadata.get('a.bool')!.value, true);
  assert.deepEqual(g.metadata.get('a.strings')!.value, ['Ġthe', '', 'é 🙂']);
  assert.deepEqual(g.metadata.get('a.ints')!.value, [1, -2, 3]);
  assert.equal(g.metadata.get('a.u64')!.value, 2n ** 60n);
  assert.deepEqual([...g.tensors.keys()], ['w0', 'w1', 'w2', 'w3', 'norm']);
  for (const t of g.tensors.values()) assert.equal(t.fileOffset % 32, 0, `${t.name} is 32-byte aligned`);
  assert.deepEqual(g.tensors.get('w3')!.shape, [6, 64]);
  const back = (name: string) => dequantize(g.tensors.get(name)!.data, g.tensors.get(name)!.type, w.length);
  assert.deepEqual(back('w0'), w);
  assertClose(back('w1'), w, 4 * 2 ** -11, 'f16');
  // per block: Q8_0 within d/2, Q4_0 within |d| (the top value clamps to 7·d), plus d's f16 rounding times q
  for (const [name, levels] of [['w2', 127], ['w3', 8]] as const) {
    const y = back(name);
    for (let b = 0; b < w.length / 32; b++) {
      const blk = w.subarray(b * 32, b * 32 + 32);
      const d = Math.max(...blk.map(Math.abs)) / levels;
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(y[b * 32 + j]! - blk[j]!);
        assert.ok(err <= (levels === 127 ? 0.5 : 1) * d + levels * d * 2 ** -11, `${name} block ${b}[${j}]: error ${err} vs d ${d}`);
      }
    }
  }
  assert.deepEqual([...dequantize(g.tensors.get('norm')!.data, GGMLType.F32, 3)], [1, 2, 3]);
});

test('corrupt files get clear errors', () => {
  const dir = tmp();
  const file = path.join(dir, 'ok.gguf');
  writeGGUF(file, new Map([['general.architecture', gguf.str('llama')]]), [{ name: 't', shape: [32], type: GGMLType.Q8_0, data: () => quantizeQ8_0(new Float32Array(32)) }]);
  const good = readFileSync(file);
  assert.throws(() => parseGGUF(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 'bad'), (e: Error) => e instanceof GGUFError && /not a GGUF file/.test(e.message));
  assert.throws(() => parseGGUF(good.subarray(0, good.length - 40), 'short'), (e: Error) => e instanceof GGUFError && /runs past the end/.test(e.message));
  assert.throws(() => parseGGUF(good.subarray(0, 30), 'cut'), (e: Error) => e instanceof GGUFError && /truncated/.test(e.message));
  const badType = Buffer.from(good);
  const at = badType.indexOf(Buffer.from('t\x01\x00\x00\x00', 'latin1')) + 13; // name, n_dims, ne[0] → type
  badType.writeUInt32LE(99, at);
  assert.throws(() => parseGGUF(badType, 'typed'), (e: Error) => e instanceof GGUFError && /ggml type 99/.test(e.message));
  const badRow = Buffer.from(good);
  badRow.writeBigUInt64LE(48n, at - 8);
  assert.throws(() => parseGGUF(badRow, 'rows'), (e: Error) => e instanceof GGUFError && /rows of 48 values, not whole Q8_0 blocks/.test(e.message));
  assert.throws(() => writeGGUF(path.join(dir, 'x.gguf'), new Map(), [{ name: 't', shape: [2, 30], type: GGMLType.Q4_0, data: () => new Uint8Array(0) }]), /blocks of 32/);
  assert.throws(() => writeGGUF(path.join(dir, 'y.gguf'), new Map([['k', gguf.u32(-1)]]), []), /does not fit/);
  assert.ok(!existsSync(path.join(dir, 'x.gguf')) && !existsSync(path.join(dir, 'y.gguf')));
});

test('rope permutation: rotate-half rows become interleaved pairs within each head', () => {
  // 2 heads of D = 4 over 1 column: head rows [a0 a1 b0 b1] → [a0 b0 a1 b1]
  assert.deepEqual([...permuteRope(new Float32Array([0, 1, 2, 3, 10, 11, 12, 13]), 2, 1)], [0, 2, 1, 3, 10, 12, 11, 13]);
});

// ---- export, and llama.cpp reading it ----------------------------------------------------------

const CONFIG = {
  model_type: 'llama', vocab_size: 300, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  // large weights make the logits far apart, so greedy choices do not hinge on rounding
  initializer_range: 0.3,
};
const TEXT = "Once upon a time there was a little fox who lived in a big forest. The fox liked apples, and the sun! It's 1234 o'clock, isn't it?\n\n".repeat(10);
const PROMPT = "The fox liked apples. It's 42!\nA big forest";

let tiny: Promise<{ model: pl.CausalLM; tokenizer: pl.Tokenizer }> | null = null;
function tinyModel(): Promise<{ model: pl.CausalLM; tokenizer: pl.Tokenizer }> {
  tiny ??= pl.trainTokenizer({ text: TEXT, vocabSize: 280 }).then((tokenizer) => {
    pl.manualSeed(3);
    return { model: pl.createModel(CONFIG), tokenizer };
  });
  return tiny;
}

let llamaCpp: Promise<import('node-llama-cpp').Llama> | null = null;
/** llama.cpp's CPU build through node-llama-cpp, loaded once for the file. */
function getLlamaCpp(): Promise<import('node-llama-cpp').Llama> {
  llamaCpp ??= import('node-llama-cpp').then(({ getLlama, LlamaLogLevel }) => getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }));
  return llamaCpp;
}

/** The model with every weight replaced by what the GGUF file stores (dequantized, rope order undone). */
function modelFromGGUF(file: string, like: pl.CausalLM): pl.CausalLM {
  const g = readGGUF(file);
  const out = pl.createModel(CONFIG, { init: false });
  const state = like.stateDict();
  const ggName = (hf: string) => hf
    .replace('model.embed_tokens', 'token_embd').replace('model.norm', 'output_norm').replace('lm_head', 'output')
    .replace(/model\.layers\.(\d+)\./, 'blk.$1.').replace('input_layernorm', 'attn_norm').replace('post_attention_layernorm', 'ffn_norm')
    .replace('self_attn.q_proj', 'attn_q').replace('self_attn.k_proj', 'attn_k').replace('self_attn.v_proj', 'attn_v').replace('self_attn.o_proj', 'attn_output')
    .replace('mlp.gate_proj', 'ffn_gate').replace('mlp.up_proj', 'ffn_up').replace('mlp.down_proj', 'ffn_down');
  const loaded = new Map<string, pl.Tensor>();
  for (const [hf, t] of state) {
    const info = g.tensors.get(ggName(hf));
    assert.ok(info, `${ggName(hf)} is in the file`);
    assert.deepEqual(info.shape, t.shape, `${ggName(hf)} shape`);
    let x = dequantize(info.data, info.type, t.size);
    const heads = hf.includes('q_proj') ? CONFIG.num_attention_heads : hf.includes('k_proj') ? CONFIG.num_key_value_heads : 0;
    if (heads) {
      // invert the permutation: applying it D/2·… times would too, but the inverse is direct
      const cols = t.shape[1]!;
      const D = t.shape[0]! / heads;
      const y = new Float32Array(x.length);
      for (let h = 0; h < heads; h++) for (let i = 0; i < D / 2; i++) for (let j = 0; j < 2; j++) {
        y.set(x.subarray((h * D + 2 * i + j) * cols, (h * D + 2 * i + j + 1) * cols), (h * D + j * (D / 2) + i) * cols);
      }
      x = y;
    }
    loaded.set(hf, pl.tensor(x, { shape: t.shape }));
  }
  out.loadStateDict(loaded);
  out.eval();
  return out;
}

test('export: llama.cpp names, shapes, metadata and the padded tokenizer vocabulary', async () => {
  const { model, tokenizer } = await tinyModel();
  const file = path.join(tmp(), 'tiny.gguf');
  const chat = new pl.Tokenizer({ model: tokenizer.model, addedTokens: [...tokenizer.addedTokens], config: { ...tokenizer.config, chatTemplate: pl.CHATML_TEMPLATE } });
  const summary = exportGGUF(model, chat, file, { type: 'q8_0' });
  const g = readGGUF(file);
  assert.equal(summary.tensors, g.tensors.size);
  assert.equal(g.metadata.get('general.architecture')!.value, 'llama');
  assert.equal(g.metadata.get('general.file_type')!.value, 7);
  assert.equal(g.metadata.get('llama.attention.head_count_kv')!.value, 2);
  assert.equal(g.metadata.get('llama.rope.dimension_count')!.value, 16);
  assert.equal(g.metadata.get('llama.attention.layer_norm_rms_epsilon')!.value, Math.fround(1e-5));
  assert.equal(g.metadata.get('tokenizer.ggml.pre')!.value, 'smaug-bpe');
  assert.equal(g.metadata.get('tokenizer.chat_template')!.value, pl.CHATML_TEMPLATE);
  assert.equal(g.metadata.get('tokenizer.ggml.add_bos_token')!.value, false);
  const tokens = g.metadata.get('tokenizer.ggml.tokens')!.value as string[];
  const types = g.metadata.get('tokenizer.ggml.token_type')!.value as number[];
  assert.equal(tokens.length, 300);
  assert.equal(tokens[tokenizer.vocabSize], `[PAD${tokenizer.vocabSize}]`);
  assert.equal(types[tokenizer.vocabSize], 5);
  assert.equal(tokens[tokenizer.specialId('eosToken')!], '<|endoftext|>');
  assert.equal(types[tokenizer.specialId('eosToken')!], 3);
  assert.equal(tokens[65], 'A');
  assert.equal(tokens[32], 'Ġ', 'byte-level symbols, as in tokenizer.json');
  assert.equal((g.metadata.get('tokenizer.ggml.merges')!.value as string[]).length, tokenizer.vocabSize - 256 - 3);
  assert.deepEqual(g.tensors.get('token_embd.weight')!.shape, [300, 64]);
  assert.equal(g.tensors.get('blk.1.ffn_down.weight')!.type, GGMLType.Q8_0);
  assert.equal(g.tensors.get('blk.1.ffn_norm.weight')!.type, GGMLType.F32, 'norms stay F32');
  assert.deepEqual(g.tensors.get('blk.0.attn_k.weight')!.shape, [32, 64]);
  const q = model.stateDict().get('model.layers.0.self_attn.q_proj.weight')!.toFloat32Array();
  assert.ok(Buffer.from(g.tensors.get('blk.0.attn_q.weight')!.data).equals(quantizeQ8_0(permuteRope(q, 4, 64))), 'q rows permuted, then quantized');
});

test('llama.cpp (node-llama-cpp) reads the export: same tokens, logits and greedy text as Plinth', async () => {
  const llama = await getLlamaCpp();
  const { model, tokenizer } = await tinyModel();
  const dir = tmp();
  const ids = tokenizer.encode(PROMPT) as Token[];
  const V = CONFIG.vocab_size;
  const maxDiff = (a: Float32Array, b: Map<number, number>, pos: number) => {
    let m = 0;
    for (const [t, v] of b) m = Math.max(m, Math.abs(v - a[pos * V + t]!));
    return m;
  };
  for (const type of ['f32', 'q8_0', 'q4_0'] as const) {
    const file = path.join(dir, `${type}.gguf`);
    exportGGUF(model, tokenizer, file, { type });
    const m = await llama.loadModel({ modelPath: file });
    try {
      assert.deepEqual([...m.tokenize(PROMPT)], ids, `${type}: llama.cpp tokenizes the prompt as Plinth does`);
      // an F32 KV cache, so the only differences left are float summation order
      const ctx = await m.createContext({ contextSize: 128, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
      const seq = ctx.getSequence();
      const res = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: { logits: true } }]));
      // what the file holds, run by Plinth: for F32 the model itself
      const reference = type === 'f32' ? model : modelFromGGUF(file, model);
      const expected = pl.noGrad(() => reference.forward(pl.tensor([ids], { dtype: 'i32' })).logits.toFloat32Array());
      const f32Logits = pl.noGrad(() => model.forward(pl.tensor([ids], { dtype: 'i32' })).logits.toFloat32Array());
      let worst = 0;
      let vsF32 = 0;
      const scale = f32Logits.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
      ids.forEach((_, p) => {
        const got = res[p]!.next.logits!;
        assert.equal(got.size, V);
        worst = Math.max(worst, maxDiff(expected, got, p));
        vsF32 = Math.max(vsF32, maxDiff(f32Logits, got, p));
      });
      if (type === 'f32') {
        assert.ok(worst < 1e-3, `f32: llama.cpp logits differ from Plinth's by ${worst}`);
        await seq.clearHistory();
        const llamaIds: number[] = [];
        for await (const t of seq.evaluate(ids, { temperature: 0 })) {
          llamaIds.push(t);
          if (llamaIds.length === 24) break;
        }
        assert.deepEqual(llamaIds, pl.generate(model, ids, { maxNewTokens: 24, temperature: 0 }), 'greedy continuation');
      } else {
        // llama.cpp also rounds the activations to 8 bits in its quantized dot products; the blocks
        // Plinth wrote must explain most of the gap to the f32 model
        // llama.cpp rounds the activations to 8 bits in its quantized dot products, an error as large as
        // Q8_0's own; misread blocks (scale, sign, nibble order) would be off by the logits' whole scale.
        assert.ok(worst < 0.1 * scale, `${type}: llama.cpp logits are ${worst} from those of the dequantized weights (logit scale ${scale})`);
        // 4-bit weights move the logits far more than 8-bit activations do: the file's blocks explain the gap
        if (type === 'q4_0') assert.ok(worst < 0.25 * vsF32, `q4_0: llama.cpp logits are ${worst} from the dequantized weights' and ${vsF32} from f32`);
      }
      await ctx.dispose();
    } finally {
      await m.dispose();
    }
  }
});

test('GPT-2 in llama.cpp: Conv1D weights transposed, fused qkv, missing biases written as zeros', async () => {
  const llama = await getLlamaCpp();
  const tokenizer = await pl.trainTokenizer({ text: TEXT, vocabSize: 280, pattern: 'gpt2' });
  const dir = tmp();
  for (const bias of [true, false]) {
    pl.manualSeed(4);
    const model = pl.createModel({ model_type: 'gpt2', vocab_size: 300, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4, initializer_range: 0.3, bias });
    const file = path.join(dir, `gpt2-${bias}.gguf`);
    exportGGUF(model, tokenizer, file);
    const g = readGGUF(file);
    assert.equal(g.metadata.get('tokenizer.ggml.pre')!.value, 'gpt-2');
    assert.deepEqual(g.tensors.get('blk.0.attn_qkv.weight')!.shape, [192, 64]);
    assert.deepEqual(g.tensors.get('blk.1.ffn_up.bias')!.shape, [256]);
    const m = await llama.loadModel({ modelPath: file });
    try {
      const ids = tokenizer.encode(PROMPT) as Token[];
      assert.deepEqual([...m.tokenize(PROMPT)], ids);
      const ctx = await m.createContext({ contextSize: 64, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
      const seq = ctx.getSequence();
      const res = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: { logits: true } }]));
      const expected = pl.noGrad(() => model.forward(pl.tensor([ids], { dtype: 'i32' })).logits.toFloat32Array());
      let worst = 0;
      ids.forEach((_, p) => {
        for (const [t, v] of res[p]!.next.logits!) worst = Math.max(worst, Math.abs(v - expected[p * 300 + t]!));
      });
      // ggml's GELU reads a float16 table, so the logits (about ±10 here) agree to ~1e-3 relative
      assert.ok(worst < 2e-2, `bias ${bias}: llama.cpp logits differ from Plinth's by ${worst}`);
      await seq.clearHistory();
      const llamaIds: number[] = [];
      for await (const t of seq.evaluate(ids, { temperature: 0 })) {
        llamaIds.push(t);
        if (llamaIds.length === 16) break;
      }
      assert.deepEqual(llamaIds, pl.generate(model, ids, { maxNewTokens: 16, temperature: 0 }), `bias ${bias}: greedy continuation`);
      await ctx.dispose();
    } finally {
      await m.dispose();
    }
  }
});

test('export refuses what llama.cpp could not run', async () => {
  const { model, tokenizer } = await tinyModel();
  const wordpiece = await pl.trainTokenizer({ text: TEXT, vocabSize: 120, model: 'wordpiece' });
  assert.throws(() => exportGGUF(model, wordpiece, path.join(tmp(), 'w.gguf')), (e: Error) => e instanceof GGUFError && /byte-level BPE tokenizers only/.test(e.message));
  const small = pl.createModel({ ...CONFIG, vocab_size: 100 });
  assert.throws(() => exportGGUF(small, tokenizer, path.join(tmp(), 's.gguf')), /280 tokens but the model's vocabulary only 100/);
  const dir = tmp();
  writeFileSync(path.join(dir, 'keep.txt'), 'x');
  assert.throws(() => exportGGUF(model, tokenizer, path.join(dir, 'q.gguf'), { type: 'q5' as never }), /unknown GGUF type/);
  assert.deepEqual(readdirSync(dir), ['keep.txt']);
});
