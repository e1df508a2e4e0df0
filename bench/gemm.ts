// W1 dense fp32 GEMM plus the two transposed products a Linear layer's backward needs:
// Plinth's native matmul against PyTorch (torch.matmul into a preallocated C) in the same run.
//
//   npm run bench -- gemm [--trials=N] [--only=NAME,...] [--threads=N]
//
// GFLOP/s = 2·M·N·K / median seconds per call. Each shape runs Plinth then PyTorch back to back,
// so both see the same machine.
import { loadAddon, addonLoadError } from '../src/backend/native/index.js';
import { arg, benchRepeated, brief, findTorchPython, fmt, machineInfo, randn, report, runPeer } from './common.js';

interface Shape { name: string; M: number; K: number; N: number; transA: boolean; transB: boolean }

const SHAPES: Shape[] = [
  ...[128, 256, 512, 1024, 2048].map((n) => ({ name: String(n), M: n, K: n, N: n, transA: false, transB: false })),
  // the transformer MLP: (B·T, C) · (C, 4C) with B·T = 4096 tokens, C = 384
  { name: 'mlp', M: 4096, K: 384, N: 1536, transA: false, transB: false },
  // its backward: dA = dC · B^T and dB = A^T · dC
  { name: 'mlp_dA', M: 4096, K: 1536, N: 384, transA: false, transB: true },
  { name: 'mlp_dB', M: 384, K: 4096, N: 1536, transA: true, transB: false },
];

type MatmulFn = (a: Float32Array, b: Float32Array, c: Float32Array, M: number, N: number, K: number,
  transA: boolean, transB: boolean, batch: number, strideA: number, strideB: number, strideC: number,
  accumulate: boolean) => void;

async function main(): Promise<void> {
  const addon = loadAddon();
  if (!addon) throw new Error(`gemm bench needs the native addon: ${addonLoadError()}`);
  const trials = Number(arg('trials') ?? 7);
  const only = arg('only')?.split(',');
  const threads = Number(arg('threads') ?? addon.numThreads());
  addon.setNumThreads(threads);
  const matmul = addon.matmul as MatmulFn;
  const havePeer = findTorchPython() !== null;

  const rows: Record<string, unknown>[] = [];
  for (const s of SHAPES.filter((x) => !only || only.includes(x.name))) {
    const { M, K, N, transA, transB } = s;
    const flop = 2 * M * N * K;
    const a = randn(M * K, 1), b = randn(K * N, 2), c = new Float32Array(M * N);
    const plinth = await benchRepeated(() => matmul(a, b, c, M, N, K, transA, transB, 1, 0, 0, 0, false), { trials });
    const row: Record<string, unknown> = { shape: s.name, M, K, N, transA, transB, threads,
      plinth_gflops: flop / plinth.per_call_s / 1e9, plinth: brief(plinth) };
    if (havePeer) {
      const peer = runPeer<{ per_call_s: number }>('gemm.py', { M, K, N, transA, transB, threads, trials });
      row.torch_gflops = flop / peer.per_call_s / 1e9;
      row.ratio = (row.plinth_gflops as number) / (row.torch_gflops as number);
      row.torch = peer;
    }
    console.error(`${s.name.padEnd(7)} M=${M} K=${K} N=${N}${transA ? ' transA' : ''}${transB ? ' transB' : ''}: ` +
      `plinth ${fmt(row.plinth_gflops as number)} GFLOP/s` +
      (havePeer ? `, torch ${fmt(row.torch_gflops as number)} GFLOP/s, ratio ${fmt(row.ratio as number, 2)}` : ''));
    rows.push(row);
  }
  const summary = rows.map((r) => `${r.shape} ${fmt(r.plinth_gflops as number, 0)}` +
    (havePeer ? `/${fmt(r.torch_gflops as number, 0)} (${fmt(r.ratio as number, 2)}x)` : '')).join(', ');
  report('gemm', { unit: 'GFLOP/s', threads, cpu: addon.cpu, peer: havePeer ? 'torch' : null, ...machineInfo(), shapes: rows },
    `plinth/torch GFLOP/s at ${threads} threads: ${summary}`);
}

await main();
