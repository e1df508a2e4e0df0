// Causal attention, forward + backward: Plinth's fused kernel, Plinth's materialised path (the
// T×T scores written out between native kernels), and PyTorch attention written out in ops, in
// the same run.
//
//   npm run bench -- attention [--trials=N] [--T=256,1024,2048] [--threads=N]
//
// Workload: B = 1, H = 8, D = 64, float32, causal, scale 1/√D. A trial is forward + backward,
// repeated to at least 0.25 s. The materialised path is the kernel sequence an unfused
// implementation runs, with its T×T buffers allocated once and reused:
//   S = QKᵀ;  S = S·scale + mask (additive causal mask, broadcast over heads);  P = softmax(S);
//   out = PV;  dP = dO Vᵀ;  dS = softmaxBackward(P, dP)·scale;  dQ = dS K;  dK = dSᵀ Q;  dV = Pᵀ dO.
// A third Plinth variant runs the materialised path's five matmuls alone: a lower bound on that
// path whatever its elementwise kernels cost.
// Each Plinth variant runs in a child process of its own, so that its peak RSS is its own:
// peak extra memory = peak RSS − RSS once the inputs and outputs exist. The PyTorch peer measures
// the same way.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { kernels, setBackend } from '../src/backend/index.js';
import { addonLoadError, createNativeBackend, loadAddon } from '../src/backend/native/index.js';
import type { KernelName } from '../src/backend/backend.js';
import { arg, benchRepeated, brief, findTorchPython, fmt, machineInfo, randn, report, runPeer } from './common.js';

const B = 1, H = 8, D = 64;
const VARIANTS = ['fused', 'materialised', 'matmuls'] as const;
type Variant = (typeof VARIANTS)[number];
const MATERIALISED_KERNELS: KernelName[] = ['matmul', 'unary', 'binary', 'softmax', 'softmaxBackward'];

interface VariantResult {
  variant: Variant;
  T: number;
  per_call_s: number;
  peak_extra_bytes: number;
  rss_before_bytes: number;
  peak_rss_bytes: number;
  [key: string]: unknown;
}

/** One variant at one T, in this (child) process. */
async function runVariant(variant: Variant, T: number, trials: number, threads: number): Promise<VariantResult> {
  const addon = loadAddon();
  if (!addon) throw new Error(`attention bench needs the native addon: ${addonLoadError()}`);
  addon.setNumThreads(threads);
  setBackend('native');
  const K = kernels();
  const BH = B * H, n = BH * T * D, scale = 1 / Math.sqrt(D);
  const q = randn(n, 1), k = randn(n, 2), v = randn(n, 3), dout = randn(n, 4);
  const out = new Float32Array(n), lse = new Float32Array(BH * T);
  const dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
  const rss0 = process.memoryUsage().rss;

  let step: () => void;
  if (variant === 'fused') {
    step = () => {
      K.attention(q, k, v, out, lse, B, H, H, T, T, D, scale, true, 0);
      K.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, H, H, T, T, D, scale, true, 0);
    };
  } else {
    const matmulsOnly = variant === 'matmuls';
    let S: Float32Array, P: Float32Array, dS: Float32Array, mask: Float32Array;
    step = () => {
      // allocated on first use, as part of the measured memory; S is reused for dP
      if (!S) {
        S = new Float32Array(BH * T * T);
        P = new Float32Array(BH * T * T);
        dS = new Float32Array(BH * T * T);
        mask = new Float32Array(T * T);
        for (let i = 0; i < T; i++) mask.fill(-Infinity, i * T + i + 1, (i + 1) * T);
      }
      const st = T * D, ss = T * T;
      K.matmul(q, k, S, T, T, D, false, true, BH, st, st, ss, false);
      if (!matmulsOnly) {
        K.unary('mulScalar', S, S, BH * ss, scale, 0);
        K.binary('add', S, [ss, T, 1], mask, [0, T, 1], S, [BH, T, T]);
        K.softmax(S, P, BH * T, T, false);
      }
      K.matmul(P, v, out, T, D, T, false, false, BH, ss, st, st, false);
      K.matmul(dout, v, S, T, T, D, false, true, BH, st, st, ss, false);
      if (!matmulsOnly) {
        K.softmaxBackward(P, S, dS, BH * T, T, false);
        K.unary('mulScalar', dS, dS, BH * ss, scale, 0);
      }
      K.matmul(dS, k, dq, T, D, T, false, false, BH, ss, st, st, false);
      K.matmul(dS, q, dk, T, D, T, true, false, BH, ss, st, st, false);
      K.matmul(P, dout, dv, T, D, T, true, false, BH, ss, st, st, false);
    };
  }
  const m = await benchRepeated(step, { trials });
  const peak = process.resourceUsage().maxRSS * 1024;
  const native = createNativeBackend(addon);
  const used: KernelName[] = variant === 'fused' ? ['attention', 'attentionBackward'] : variant === 'matmuls' ? ['matmul'] : MATERIALISED_KERNELS;
  return {
    variant, T, threads, per_call_s: m.per_call_s, reps: m.reps, ...brief(m),
    rss_before_bytes: rss0, peak_rss_bytes: peak, peak_extra_bytes: peak - rss0,
    // a kernel the addon lacks runs on ref, which says more about the addon than about the method
    native_kernels: Object.fromEntries(used.map((kn) => [kn, native.supports(kn, 'f32')])),
  };
}

function runChild(variant: Variant, T: number, trials: number, threads: number): VariantResult {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), `--variant=${variant}`, `--T=${T}`,
    `--trials=${trials}`, `--threads=${threads}`], { encoding: 'utf8', maxBuffer: 16 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`attention bench child ${variant} T=${T} failed (${r.status ?? r.signal})`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as VariantResult;
}

const MB = 1 << 20;

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 5);
  const addon = loadAddon();
  if (!addon) throw new Error(`attention bench needs the native addon: ${addonLoadError()}`);
  const threads = Number(arg('threads') ?? addon.numThreads());
  const variant = arg('variant') as Variant | undefined;
  if (variant) {
    console.log(JSON.stringify(await runVariant(variant, Number(arg('T')), trials, threads)));
    return;
  }
  const Ts = (arg('T') ?? '256,1024,2048').split(',').map(Number);
  const havePeer = findTorchPython() !== null;
  const rows: Record<string, unknown>[] = [];
  for (const T of Ts) {
    const fused = runChild('fused', T, trials, threads);
    const mat = runChild('materialised', T, trials, threads);
    const mm = runChild('matmuls', T, trials, threads);
    const row: Record<string, unknown> = { T, fused, materialised: mat, materialised_matmuls: mm,
      fused_speedup_vs_materialised: mat.per_call_s / fused.per_call_s,
      fused_speedup_vs_materialised_matmuls: mm.per_call_s / fused.per_call_s };
    let line = `T=${T}: fused ${fmt(fused.per_call_s * 1e3)} ms ${fmt(fused.peak_extra_bytes / MB)} MB, ` +
      `materialised ${fmt(mat.per_call_s * 1e3)} ms ${fmt(mat.peak_extra_bytes / MB)} MB (its matmuls ${fmt(mm.per_call_s * 1e3)} ms)`;
    if (havePeer) {
      const torch = runPeer<{ per_call_s: number; peak_extra_bytes: number }>('attention.py', { B, H, T, D, threads, trials });
      row.torch = torch;
      row.fused_speedup_vs_torch = torch.per_call_s / fused.per_call_s;
      line += `, torch ${fmt(torch.per_call_s * 1e3)} ms ${fmt(torch.peak_extra_bytes / MB)} MB`;
    }
    console.error(line);
    rows.push(row);
  }
  const at = (T: number) => rows.find((r) => r.T === T);
  const extra = (T: number) => (at(T)?.fused as VariantResult | undefined)?.peak_extra_bytes;
  const big = rows.filter((r) => (r.T as number) >= 1024);
  const bars = {
    fused_faster_than_materialised_at_T_ge_1024: big.length > 0 && big.every((r) => (r.fused_speedup_vs_materialised as number) > 1),
    fused_faster_than_materialised_matmuls_alone_at_T_ge_1024:
      big.length > 0 && big.every((r) => (r.fused_speedup_vs_materialised_matmuls as number) > 1),
    // linear memory doubles from T = 1024 to 2048; the T×T buffers quadruple
    fused_extra_memory_ratio_2048_over_1024: extra(2048) && extra(1024) ? extra(2048)! / extra(1024)! : null,
  };
  const ms = (x: { per_call_s: number }) => fmt(x.per_call_s * 1e3);
  const mb = (x: { peak_extra_bytes: number }) => fmt(x.peak_extra_bytes / MB);
  const summary = rows.map((r) => {
    const f = r.fused as VariantResult, m = r.materialised as VariantResult, mm = r.materialised_matmuls as VariantResult;
    const t = r.torch as { per_call_s: number; peak_extra_bytes: number } | undefined;
    return `T=${r.T} ${ms(f)}/${ms(m)} (matmuls ${ms(mm)})${t ? `/${ms(t)}` : ''} ms, ${mb(f)}/${mb(m)}${t ? `/${mb(t)}` : ''} MB`;
  }).join('; ');
  report('attention', { B, H, D, causal: true, threads, cpu: addon.cpu, peer: havePeer ? 'torch' : null, unit: 'seconds per forward+backward',
    ...machineInfo(), bars, rows },
  `fused/materialised${havePeer ? '/torch' : ''} forward+backward time and peak extra memory at ${threads} threads: ${summary}`);
}

await main();
