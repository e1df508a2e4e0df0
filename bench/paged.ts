// Paged attention against contiguous attention on the same keys and values, in the same run: the
// native pagedAttention over a pool whose blocks sit in shuffled order, and the native `attention`
// kernel over the same keys and values laid out contiguously (B, KVH, T, D).
//
//   npm run bench -- paged [--trials=N] [--threads=N] [--only=decode|prefill]
//
// Workloads (H = 8, KVH = 4, D = 64, block size 16, float32, scale 1/√D, causal):
// - decode: S sequences × 1 query token over a context of T keys, S ∈ {1, 32}, T ∈ {256, 2048};
//   contiguous: attention with B = S, Tq = 1, Tk = T, qOffset = T − 1.
// - prefill: one sequence's 512-token prompt (Tq = Tk = 512, qOffset 0), and a 256-token chunk
//   after 1792 cached tokens (Tq = 256, Tk = 2048).
// Each figure is the median time of one call under the timing rules of bench/common.ts. Decode
// attention reads every key and value once, so its rate is also given as GB/s of K and V read. On a
// busy machine (few clean trials) the process CPU time per call is the steadier figure: with
// --threads=1 it is the kernel's own time, whatever share of a core the scheduler gave it.
import { loadAddon, createNativeBackend, addonLoadError } from '../src/backend/native/index.js';
import type { Backend } from '../src/backend/backend.js';
import { arg, benchRepeated, brief, fmt, machineInfo, type RepeatedMeasurement, report } from './common.js';

function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((hi - lo) * s) / 2 ** 32;
  }
  return out;
}

/** Fisher–Yates with a fixed seed: the order of the blocks in the pool. */
function shuffled(n: number, seed: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = Math.floor((s / 2 ** 32) * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const H = 8, KVH = 4, D = 64, BS = 16;

interface Workload { name: string; S: number; Tq: number; T: number }

const WORKLOADS: Workload[] = [
  { name: 'decode', S: 1, Tq: 1, T: 256 },
  { name: 'decode', S: 1, Tq: 1, T: 2048 },
  { name: 'decode', S: 32, Tq: 1, T: 256 },
  { name: 'decode', S: 32, Tq: 1, T: 2048 },
  { name: 'prefill', S: 1, Tq: 512, T: 512 },
  { name: 'prefill', S: 1, Tq: 256, T: 2048 },
];

/** Both kernels' calls on one workload's data: contiguous k, v (S, KVH, T, D) and the same rows
 *  scattered into a pool of shuffled blocks (written by pagedKVWrite). */
function setup(K: Backend, w: Workload): { paged: () => void; contiguous: () => void } {
  const { S, Tq, T } = w;
  const scale = 1 / Math.sqrt(D);
  // q (S, H, Tq, D) for attention; paged reads the same bytes as (S·Tq, H, D), which for timing is as good
  const q = rand(S * H * Tq * D, 1, -2, 2);
  const k = rand(S * KVH * T * D, 2, -2, 2), v = rand(S * KVH * T * D, 3);
  const maxBlocks = Math.ceil(T / BS), numBlocks = S * maxBlocks;
  const blockTables = shuffled(numBlocks, 4);
  const kPool = new Float32Array(numBlocks * KVH * BS * D), vPool = new Float32Array(kPool.length);
  const kt = new Float32Array(T * KVH * D), vt = new Float32Array(kt.length), slots = new Int32Array(T);
  for (let s = 0; s < S; s++) {
    for (let t = 0; t < T; t++) {
      slots[t] = blockTables[s * maxBlocks + Math.floor(t / BS)] * BS + (t % BS);
      for (let kh = 0; kh < KVH; kh++) {
        const src = ((s * KVH + kh) * T + t) * D;
        kt.set(k.subarray(src, src + D), (t * KVH + kh) * D);
        vt.set(v.subarray(src, src + D), (t * KVH + kh) * D);
      }
    }
    K.pagedKVWrite(kt, vt, kPool, vPool, slots, T, KVH, D, BS, numBlocks);
  }
  const queryStart = Int32Array.from({ length: S + 1 }, (_, s) => s * Tq);
  const contextLens = new Int32Array(S).fill(T);
  const outP = new Float32Array(q.length), outC = new Float32Array(q.length), lse = new Float32Array(S * H * Tq);
  return {
    paged: () => K.pagedAttention(q, kPool, vPool, outP, blockTables, queryStart, contextLens, S, H, KVH, D, BS, maxBlocks, numBlocks, scale),
    contiguous: () => K.attention(q, k, v, outC, lse, S, H, KVH, Tq, T, D, scale, true, T - Tq),
  };
}

async function main(): Promise<void> {
  const addon = loadAddon();
  if (!addon) throw new Error(`paged bench needs the native addon: ${addonLoadError()}`);
  const threads = Number(arg('threads') ?? addon.numThreads());
  addon.setNumThreads(threads);
  const trials = Number(arg('trials') ?? 5);
  const only = arg('only');
  const K = createNativeBackend(addon) as Backend;
  const results: Record<string, unknown>[] = [];
  const lines: string[] = [];
  for (const w of WORKLOADS) {
    if (only && w.name !== only) continue;
    const { paged, contiguous } = setup(K, w);
    const opts = { trials, warmup: 3, minSeconds: 0.25 };
    const p = await benchRepeated(paged, opts);
    const c = await benchRepeated(contiguous, opts);
    const kvBytes = 2 * w.S * KVH * w.T * D * 4;
    const cpuPerCall = (m: RepeatedMeasurement) => m.trials.reduce((a, t) => a + t.cpu_seconds, 0) / (m.trials.length * m.reps);
    const ratio = p.per_call_s / c.per_call_s;
    results.push({
      workload: w.name, S: w.S, Tq: w.Tq, T: w.T,
      paged_us: p.per_call_s * 1e6, contiguous_us: c.per_call_s * 1e6, paged_over_contiguous: ratio,
      paged_kv_gb_s: kvBytes / p.per_call_s / 1e9, contiguous_kv_gb_s: kvBytes / c.per_call_s / 1e9,
      paged_cpu_us: cpuPerCall(p) * 1e6, contiguous_cpu_us: cpuPerCall(c) * 1e6,
      paged: brief(p), contiguous: brief(c),
    });
    lines.push(`${w.name} S=${w.S} Tq=${w.Tq} T=${w.T}: paged ${fmt(p.per_call_s * 1e6)} us vs contiguous ${fmt(c.per_call_s * 1e6)} us (${fmt(ratio, 2)}x; CPU ${fmt(cpuPerCall(p) / cpuPerCall(c), 2)}x)`);
  }
  report('paged', { machine: machineInfo(), threads, H, KVH, D, block_size: BS, results }, lines.join('; '));
}

await main();
