// The decode GEMV of each weight format alone, on the shapes of the benchmark Llama (bench/quant.ts):
// y (1,N) = x (1,K) · Wᵀ through matmul (f32), int8Linear, nf4Linear and halfLinear (bf16), called
// through the active backend as the layers call them. Each trial multiplies x by enough distinct
// copies of W (at least 64 MB of them) that the weights stream from memory, as they do in a decode
// step, rather than sitting in cache. Trials rotate over the formats, so a disturbance on the shared
// machine hits them alike.
//
//   npm run bench -- quantkernels [--trials=N] [--threads=T]
import * as pl from '../src/index.js';
import { kernels } from '../src/backend/index.js';
import { quantizeInt8, int8Scales, quantizeNF4, NF4_CODE } from '../src/quant/index.js';
import { arg, fmt, machineInfo, quietWaitLimit, report, summarise, timeTrial, type Trial, waitForQuiet } from './common.js';

/** [name, N, K, uses per decode step]: 8 layers of q, k, v, o, gate, up, down, and the lm_head. */
const SHAPES: [string, number, number, number][] = [
  ['q_proj/o_proj', 512, 512, 16], ['k_proj/v_proj', 256, 512, 16], ['gate_proj/up_proj', 1376, 512, 16],
  ['down_proj', 512, 1376, 8], ['lm_head', 32000, 512, 1],
];
const FORMATS = ['f32', 'int8', 'nf4', 'bf16'] as const;
type Format = (typeof FORMATS)[number];
const BYTES_PER_WEIGHT: Record<Format, number> = { f32: 4, int8: 1, nf4: 0.5 + 4 / 64, bf16: 2 };
const STREAM_BYTES = 64e6;

/** The weight in one format, and a maker of calls that each multiply by a fresh copy of it. */
function prepare(format: Format, w: Float32Array, N: number, K: number, x: Float32Array, y: Float32Array): () => () => void {
  const k = kernels();
  switch (format) {
    case 'f32': return () => {
      const c = w.slice();
      return () => k.matmul(x, c, y, 1, N, K, false, true, 1, 0, 0, 0, false);
    };
    case 'int8': {
      const q = quantizeInt8(w, N, K), scale = int8Scales(q.scb);
      return () => {
        const c = q.q.slice();
        return () => k.int8Linear(x, c, scale, y, 1, N, K);
      };
    }
    case 'nf4': {
      const q = quantizeNF4(w);
      return () => {
        const packed = q.packed.slice(), absmax = q.absmax.slice();
        return () => k.nf4Linear(x, packed, absmax, NF4_CODE, y, 1, N, K);
      };
    }
    case 'bf16': {
      const h = new Uint16Array(N * K);
      k.cast(w, 'f32', h, 'bf16', N * K);
      return () => {
        const c = h.slice();
        return () => k.halfLinear(x, c, 'bf16', y, 1, N, K);
      };
    }
  }
}

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 7);
  if (arg('threads')) pl.setNumThreads(Number(arg('threads')));
  pl.manualSeed(0);
  const rows: Record<string, unknown> = {};
  const stepUs: Record<Format, number> = { f32: 0, int8: 0, nf4: 0, bf16: 0 };
  for (const [name, N, K, uses] of SHAPES) {
    const x = pl.randn([K]).toFloat32Array(), y = new Float32Array(N);
    const w = pl.randn([N, K], { std: 0.02 }).toFloat32Array();
    const calls = {} as Record<Format, (() => void)[]>;
    for (const f of FORMATS) {
      // copies of one quantized weight in distinct memory stream like distinct weights
      const copies = Math.max(2, Math.ceil(STREAM_BYTES / (N * K * BYTES_PER_WEIGHT[f])));
      const make = prepare(f, w, N, K, x, y);
      calls[f] = Array.from({ length: copies }, make);
    }
    const t: Record<Format, Trial[]> = { f32: [], int8: [], nf4: [], bf16: [] };
    for (const f of FORMATS) for (const c of calls[f]) c(); // warm-up
    await waitForQuiet(quietWaitLimit());
    for (let round = 0; round < trials; round++) {
      for (const f of FORMATS) {
        const trial = await timeTrial(() => { for (const c of calls[f]) c(); });
        t[f].push(trial);
        if (!trial.clean) await waitForQuiet(Math.min(quietWaitLimit(), 2));
      }
    }
    const row: Record<string, unknown> = {};
    for (const f of FORMATS) {
      const m = summarise(t[f]);
      const us = (m.median_s / calls[f].length) * 1e6;
      stepUs[f] += us * uses;
      row[f] = { us_per_call: us, gb_per_s: (N * K * BYTES_PER_WEIGHT[f]) / (us * 1e3), n_clean: m.n_clean, n_trials: m.n_trials };
    }
    rows[`${name} ${N}x${K}`] = row;
    console.error(`${name} ${N}x${K}: ${FORMATS.map((f) => `${f} ${fmt((row[f] as { us_per_call: number }).us_per_call, 1)} us`).join(', ')}`);
  }
  const vsF32 = Object.fromEntries(FORMATS.map((f) => [f, stepUs.f32 / stepUs[f]]));
  report('quantkernels', {
    machine: machineInfo(), backend: pl.getBackend(), threads: pl.numThreads(),
    workload: 'decode GEMV (M = 1) per weight format on the benchmark Llama shapes, weights streamed from memory',
    shapes: rows, linear_us_per_decode_step: stepUs, speed_vs_f32: vsF32,
  }, `linear layers of one decode step: ${FORMATS.map((f) => `${f} ${fmt(stepUs[f] / 1000, 2)} ms (${fmt(vsF32[f]!, 2)}x)`).join(', ')}`);
}

await main();
