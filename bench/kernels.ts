// Elementwise and fused kernels: the native kernel (all threads) against the ref kernel (plain
// TypeScript, one thread) and the PyTorch op a model would use (bench/peers/kernels.py, 2 threads),
// at representative sizes: a GPT-2-small-sized activation (B·T = 4096 tokens, C = 768), its MLP
// hidden layer (4C), a 50257-token vocabulary, a 10M-parameter AdamW step.
//
//   npm run bench -- kernels [--trials=N] [--only=softmax,adamw] [--no-ref] [--no-torch]
//
// Each figure is the median time of one call under the timing rules of bench/common.ts.
import { loadAddon, createNativeBackend } from '../src/backend/native/index.js';
import { refBackend as R } from '../src/backend/ref/index.js';
import type { Backend } from '../src/backend/backend.js';
import { arg, benchRepeated, brief, findTorchPython, fmt, machineInfo, report, runPeer } from './common.js';

const flag = (name: string) => process.argv.includes(`--${name}`);

function rand(n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((hi - lo) * s) / 2 ** 32;
  }
  return out;
}

const f32 = (n: number) => new Float32Array(n);

/** A workload: builds its buffers once and returns the call to time on a backend. */
type Workload = (K: Backend) => () => void;

const BT = 4096, C = 768, V = 50257;

const WORKLOADS: Record<string, Workload> = {
  softmax: (K) => { const x = rand(BT * 1024, -4, 4), y = f32(BT * 1024); return () => K.softmax(x, y, BT, 1024, false); },
  softmax_backward: (K) => {
    const x = rand(BT * 1024, -4, 4), y = f32(BT * 1024), dy = rand(BT * 1024), dx = f32(BT * 1024);
    R.softmax(x, y, BT, 1024, false);
    return () => K.softmaxBackward(y, dy, dx, BT, 1024, false);
  },
  layer_norm: (K) => {
    const x = rand(BT * C), w = rand(C), b = rand(C), y = f32(BT * C), m = f32(BT), r = f32(BT);
    return () => K.layerNorm(x, w, b, y, m, r, BT, C, 1e-5);
  },
  layer_norm_backward: (K) => {
    const x = rand(BT * C), w = rand(C), y = f32(BT * C), m = f32(BT), r = f32(BT), dy = rand(BT * C), dx = f32(BT * C);
    const dw = f32(C), db = f32(C);
    R.layerNorm(x, w, null, y, m, r, BT, C, 1e-5);
    return () => K.layerNormBackward(x, w, m, r, dy, dx, dw, db, BT, C);
  },
  rms_norm: (K) => { const x = rand(BT * C), w = rand(C), y = f32(BT * C), r = f32(BT); return () => K.rmsNorm(x, w, y, r, BT, C, 1e-6); },
  rms_norm_backward: (K) => {
    const x = rand(BT * C), w = rand(C), y = f32(BT * C), r = f32(BT), dy = rand(BT * C), dx = f32(BT * C), dw = f32(C);
    R.rmsNorm(x, w, y, r, BT, C, 1e-6);
    return () => K.rmsNormBackward(x, w, r, dy, dx, dw, BT, C);
  },
  cross_entropy: (K) => {
    const rows = 1024, x = rand(rows * V, -4, 4), t = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % V);
    const loss = f32(rows), lse = f32(rows);
    return () => K.crossEntropy(x, t, loss, lse, rows, V, -100, 0);
  },
  cross_entropy_backward: (K) => {
    const rows = 1024, x = rand(rows * V, -4, 4), t = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % V);
    const loss = f32(rows), lse = f32(rows), dl = f32(rows).fill(1), dx = f32(rows * V);
    R.crossEntropy(x, t, loss, lse, rows, V, -100, 0);
    return () => K.crossEntropyBackward(x, t, lse, dl, dx, rows, V, -100, 0);
  },
  adamw: (K) => {
    const n = 10_000_000, p = rand(n), g = rand(n, -1e-3, 1e-3), m = f32(n), v = f32(n);
    let step = 0;
    return () => K.adamwStep(p, g, m, v, n, 6e-4, 0.9, 0.95, 1e-8, 0.1, ++step);
  },
  gelu_tanh: (K) => { const x = rand(BT * 4 * C, -4, 4), y = f32(BT * 4 * C); return () => K.unary('gelu_tanh', x, y, x.length, 0, 0); },
  gelu_tanh_backward: (K) => {
    const x = rand(BT * 4 * C, -4, 4), y = f32(x.length), dy = rand(x.length), dx = f32(x.length);
    return () => K.unaryBackward('gelu_tanh', x, y, dy, dx, x.length, 0, 0);
  },
  exp: (K) => { const x = rand(BT * 1024, -4, 4), y = f32(BT * 1024); return () => K.unary('exp', x, y, x.length, 0, 0); },
  add: (K) => { const a = rand(BT * C), b = rand(BT * C), c = f32(BT * C); return () => K.binary('add', a, [C, 1], b, [C, 1], c, [BT, C]); },
  bias_add: (K) => { const a = rand(BT * C), b = rand(C), c = f32(BT * C); return () => K.binary('add', a, [C, 1], b, [0, 1], c, [BT, C]); },
  sum_rows: (K) => { const x = rand(BT * C), y = f32(BT); return () => K.reduce('sum', x, y, BT, C, 1); },
  sum_cols: (K) => { const x = rand(BT * C), y = f32(C); return () => K.reduce('sum', x, y, 1, BT, C); },
  permute_heads: (K) => {
    // (B, T, H, D) → (B, H, T, D) with B = 8, T = 256, H = 12, D = 64
    const x = rand(8 * 256 * 12 * 64), y = f32(x.length);
    return () => K.copyStrided(x, y, [8, 12, 256, 64], [256 * 768, 64, 768, 1]);
  },
  transpose: (K) => { const x = rand(BT * C), y = f32(BT * C); return () => K.copyStrided(x, y, [C, BT], [1, C]); },
  cast_bf16: (K) => { const x = rand(10_000_000), y = new Uint16Array(x.length); return () => K.cast(x, 'f32', y, 'bf16', x.length); },
  swiglu: (K) => { const g = rand(BT * 1376, -4, 4), u = rand(g.length), y = f32(g.length); return () => K.swiglu(g, u, y, g.length); },
  swiglu_backward: (K) => {
    const g = rand(BT * 1376, -4, 4), u = rand(g.length), dy = rand(g.length), dg = f32(g.length), du = f32(g.length);
    return () => K.swigluBackward(g, u, dy, dg, du, g.length);
  },
  rope: (K) => {
    // 4096 positions, 8 heads of 64 (Llama-style), one sequence
    const x = rand(BT * 8 * 64), y = f32(x.length), cos = rand(BT * 32), sin = rand(BT * 32);
    return () => K.rope(x, cos, sin, y, 1, BT, 8, 64, false);
  },
  embedding: (K) => {
    const w = rand(V * C), ids = Int32Array.from({ length: BT }, (_, i) => (i * 7919) % V), y = f32(BT * C);
    return () => K.indexSelect(w, ids, y, 1, V, BT, C);
  },
  embedding_backward: (K) => {
    const dw = f32(V * C), ids = Int32Array.from({ length: BT }, (_, i) => (i * 7919) % V), dy = rand(BT * C);
    return () => K.indexAdd(dy, ids, dw, 1, V, BT, C);
  },
  dropout_mask: (K) => { const m = f32(10_000_000); let off = 0; return () => K.dropoutMask(m, m.length, 0.1, 7, (off += m.length)); },
  exp_one: (K) => { const x = rand(1), y = f32(1); return () => K.unary('exp', x, y, 1, 0, 0); },
};

async function main(): Promise<void> {
  const addon = loadAddon();
  if (!addon) throw new Error('kernels bench: the native addon is not built');
  const N = createNativeBackend(addon) as Backend;
  const trials = Number(arg('trials') ?? 5);
  const only = arg('only')?.split(',');
  const names = Object.keys(WORKLOADS).filter((k) => !only || only.includes(k));
  let torch: Record<string, { per_call_s: number; cpu_per_wall: number; n_clean: number }> | null = null;
  if (!flag('no-torch') && findTorchPython()) torch = runPeer('kernels.py', { threads: 2, trials, only: names });
  const rows: Record<string, unknown> = {};
  const lines: string[] = [];
  for (const name of names) {
    const nat = await benchRepeated(WORKLOADS[name]!(N), { trials, warmup: 2 });
    const ref = flag('no-ref') ? null : await benchRepeated(WORKLOADS[name]!(R), { trials: 3, warmup: 1 });
    const t = torch?.[name] ?? null;
    const us = (s: number) => s * 1e6;
    rows[name] = {
      native_us: us(nat.per_call_s), ref_us: ref && us(ref.per_call_s), torch_us: t && us(t.per_call_s),
      speedup_vs_ref: ref && ref.per_call_s / nat.per_call_s, ratio_vs_torch: t && t.per_call_s / nat.per_call_s,
      native: brief(nat), torch: t,
    };
    lines.push(`${name.padEnd(24)} native ${fmt(us(nat.per_call_s), 1).padStart(9)} us` +
      (ref ? `   ref ${fmt(us(ref.per_call_s), 0).padStart(9)} us (${fmt(ref.per_call_s / nat.per_call_s, 0)}x)` : '') +
      (t ? `   torch ${fmt(us(t.per_call_s), 1).padStart(9)} us (torch/native ${fmt(t.per_call_s / nat.per_call_s, 2)})` : ''));
  }
  report('kernels', { unit: 'us per call', native_threads: addon.numThreads(), isa: addon.cpu, kernels: rows,
    torch_version: torch?.torch ?? null, ...machineInfo() }, `\n${lines.join('\n')}`);
}

await main();
