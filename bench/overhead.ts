// Per-op overhead: one 1-element add round trip from JavaScript, against PyTorch's 1-element add
// from Python. Bar: <= 5 us per op.
//
//   npm run bench -- overhead [--trials=N]
//
// It measures the public tensor API (`pl.add(a, b)` from src/index.ts) when that exists, else the
// raw native `binary` kernel call, else the bare cost of crossing into the addon (`noop`); the
// `path` field says which.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAddon } from '../src/backend/native/index.js';
import { arg, benchRepeated, brief, findTorchPython, fmt, machineInfo, report, runPeer } from './common.js';

const BAR_US = 5;

interface PublicApi {
  tensor(data: number[]): unknown;
  add(a: unknown, b: unknown): unknown;
}

/** The public API if it is built and has tensor() and add(); imported by path so this benchmark
 *  compiles before src/index.ts exists. */
async function publicApi(): Promise<PublicApi | null> {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');
  try {
    const pl = (await import(file)) as Partial<PublicApi>;
    return typeof pl.tensor === 'function' && typeof pl.add === 'function' ? (pl as PublicApi) : null;
  } catch {
    return null;
  }
}

async function candidate(): Promise<{ path: string; fn: () => void }> {
  const pl = await publicApi();
  if (pl) {
    const a = pl.tensor([1.5]), b = pl.tensor([2.5]);
    return { path: 'pl.add', fn: () => void pl.add(a, b) };
  }
  const addon = loadAddon();
  if (addon && typeof addon.binary === 'function') {
    const binary = addon.binary as (op: string, a: Float32Array, as: number[], b: Float32Array, bs: number[], out: Float32Array, shape: number[]) => void;
    const a = new Float32Array([1.5]), b = new Float32Array([2.5]), out = new Float32Array(1);
    const stride = [1], shape = [1];
    return { path: 'addon.binary', fn: () => binary('add', a, stride, b, stride, out, shape) };
  }
  if (addon) return { path: 'addon.noop', fn: () => addon.noop() };
  throw new Error('overhead bench: neither the public API nor the native addon is available');
}

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 7);
  const { path: measured, fn } = await candidate();
  const plinth = await benchRepeated(fn, { trials, warmup: 20000 });
  const plinthUs = plinth.per_call_s * 1e6;
  let torchUs: number | null = null;
  let torch: Record<string, unknown> | null = null;
  if (findTorchPython()) {
    const peer = runPeer('overhead.py', { threads: 1, trials });
    torchUs = (peer.per_call_s as number) * 1e6;
    torch = peer;
  }
  report('overhead', { unit: 'us/op', path: measured, plinth_us: plinthUs, torch_us: torchUs, bar_us: BAR_US,
    meets_bar: plinthUs <= BAR_US, plinth: brief(plinth), torch, ...machineInfo() },
  `1-element add via ${measured}: ${fmt(plinthUs, 2)} us/op (bar ${BAR_US} us)` +
    (torchUs !== null ? `, torch.add ${fmt(torchUs, 2)} us/op` : ''));
}

await main();
