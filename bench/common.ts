// Shared benchmark machinery, following the timing rules of the peer workloads:
//
// - A trial is one timed unit of work. Every trial records how many cores *other* processes used
//   meanwhile: busy ticks of the whole machine (/proc/stat) minus this process's own CPU time
//   (rusage, which covers the native thread pool too). A trial is clean when others used < 0.10 cores.
// - Before measuring, and after each disturbed trial, we wait (at most BENCH_QUIET_WAIT seconds,
//   default 30, and at most twice that in all per measurement) for an idle machine.
// - Trials run until `trials` clean ones are in, or `maxTrials` (3x by default) in all. The median is
//   over clean trials when there are at least 3, else over all trials (n_clean says which).
// - cpu_per_wall = process CPU time / wall time over the trials, so hidden threads show.
//
// Peer scripts (bench/peers/*.py) apply the same rules in Python (bench/peers/common.py); runPeer
// starts them with a Python that can import torch and returns the JSON they print.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLEAN_OTHER_CORES = 0.1;
const TICKS_PER_SECOND = 100; // USER_HZ, the unit of /proc/stat on Linux
const QUIET_WINDOW_S = 0.5;

/** Busy ticks of all CPUs since boot (user, nice, system, irq, softirq, steal), or null off Linux. */
function machineBusyTicks(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // fields: user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
  } catch {
    return null;
  }
}

/** CPU seconds used by this process (all threads). */
function processCpuSeconds(): number {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1e6;
}

interface Sample { wall: number; busy: number | null; cpu: number }

function sample(): Sample {
  return { wall: performance.now() / 1000, busy: machineBusyTicks(), cpu: processCpuSeconds() };
}

/** Cores used by other processes between two samples (0 when /proc/stat is unavailable). */
function otherCores(a: Sample, b: Sample): number {
  const wall = b.wall - a.wall;
  if (a.busy === null || b.busy === null || wall <= 0) return 0;
  const machine = (b.busy - a.busy) / TICKS_PER_SECOND;
  return Math.max(0, (machine - (b.cpu - a.cpu)) / wall);
}

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

export function quietWaitLimit(): number {
  const v = Number(process.env.BENCH_QUIET_WAIT);
  return Number.isFinite(v) && v >= 0 ? v : 30;
}

/** Waits until other processes use < 0.10 cores over a short window, or the wait limit passes.
 *  Returns the seconds waited and the last window's load by others. */
export async function waitForQuiet(limitSeconds = quietWaitLimit()): Promise<{ waited_s: number; other_cores: number }> {
  const start = performance.now() / 1000;
  let load = 0;
  for (;;) {
    const a = sample();
    await sleep(QUIET_WINDOW_S);
    load = otherCores(a, sample());
    const waited = performance.now() / 1000 - start;
    if (load < CLEAN_OTHER_CORES || waited >= limitSeconds) return { waited_s: waited, other_cores: load };
  }
}

export interface Trial {
  seconds: number;
  cpu_seconds: number;
  other_cores: number;
  clean: boolean;
}

/** Times one call of fn, with the cores other processes used meanwhile. */
export async function timeTrial(fn: () => void | Promise<void>): Promise<Trial> {
  const a = sample();
  await fn();
  const b = sample();
  const other = otherCores(a, b);
  return { seconds: b.wall - a.wall, cpu_seconds: b.cpu - a.cpu, other_cores: other, clean: other < CLEAN_OTHER_CORES };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface TrialOptions {
  /** Clean trials wanted. */
  trials: number;
  /** Trials in all before giving up on clean ones (default 3 x trials). */
  maxTrials?: number;
  /** Untimed calls before the first trial (default 1). */
  warmup?: number;
}

export interface Measurement {
  /** Median trial seconds: over clean trials when n_clean >= 3, else over all trials. */
  median_s: number;
  n_trials: number;
  n_clean: number;
  /** Process CPU seconds / wall seconds over all trials. */
  cpu_per_wall: number;
  /** Median cores used by other processes during the trials. */
  other_cores: number;
  trials: Trial[];
}

/** Runs trials of fn under the timing rules and summarises them. */
export async function runTrials(fn: () => void | Promise<void>, opts: TrialOptions): Promise<Measurement> {
  const maxTrials = opts.maxTrials ?? 3 * opts.trials;
  for (let i = 0; i < (opts.warmup ?? 1); i++) await fn();
  // Each wait is capped by the limit, and all waits of one measurement by twice the limit, so a
  // machine that never goes idle costs minutes, not an hour (the trials then say n_clean).
  let budget = 2 * quietWaitLimit();
  const wait = async (): Promise<void> => {
    budget -= (await waitForQuiet(Math.min(quietWaitLimit(), Math.max(0, budget)))).waited_s;
  };
  await wait();
  const trials: Trial[] = [];
  let clean = 0;
  while (clean < opts.trials && trials.length < maxTrials) {
    const t = await timeTrial(fn);
    trials.push(t);
    if (t.clean) clean++;
    else if (clean < opts.trials && trials.length < maxTrials) await wait();
  }
  return summarise(trials);
}

export function summarise(trials: Trial[]): Measurement {
  const cleanTrials = trials.filter((t) => t.clean);
  const pool = cleanTrials.length >= 3 ? cleanTrials : trials;
  const wall = trials.reduce((s, t) => s + t.seconds, 0);
  const cpu = trials.reduce((s, t) => s + t.cpu_seconds, 0);
  return {
    median_s: median(pool.map((t) => t.seconds)),
    n_trials: trials.length,
    n_clean: cleanTrials.length,
    cpu_per_wall: wall > 0 ? cpu / wall : 0,
    other_cores: median(trials.map((t) => t.other_cores)),
    trials,
  };
}

/** The repetitions of fn that make one trial last at least minSeconds (doubling from 1). */
export function calibrateReps(fn: () => void, minSeconds = 0.25): number {
  fn();
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    const s = (performance.now() - t0) / 1000;
    if (s >= minSeconds) return reps;
    // aim a little past the target so the next round usually suffices
    reps = s > 0 ? Math.max(reps * 2, Math.ceil((reps * minSeconds * 1.2) / s)) : reps * 2;
  }
}

export interface RepeatedMeasurement extends Measurement {
  reps: number;
  /** Median seconds of one call. */
  per_call_s: number;
}

/** Trials of `reps` back-to-back calls of a short synchronous fn, each trial >= minSeconds.
 *  `warmup` counts untimed calls of fn (not trials) before calibration. */
export async function benchRepeated(fn: () => void, opts: TrialOptions & { minSeconds?: number }): Promise<RepeatedMeasurement> {
  for (let i = 0; i < (opts.warmup ?? 1); i++) fn();
  const reps = calibrateReps(fn, opts.minSeconds ?? 0.25);
  const m = await runTrials(() => {
    for (let i = 0; i < reps; i++) fn();
  }, { ...opts, warmup: 0 });
  return { ...m, reps, per_call_s: m.median_s / reps };
}

// ---- peers ------------------------------------------------------------------------------------

const repoRoot = (() => {
  // this file runs from dist/bench/common.js; sources and peers live at the repository root
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '..', '..');
})();

let torchPython: string | null | undefined;

/** A Python that can `import torch`: `python3` on PATH first, then the system one; null if none. */
export function findTorchPython(): string | null {
  if (torchPython !== undefined) return torchPython;
  torchPython = null;
  for (const exe of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(exe, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    if (r.status === 0) {
      torchPython = exe;
      break;
    }
  }
  return torchPython;
}

/** The environment a PyTorch peer runs in: passive OpenMP waiting, so its threads do not spin
 *  against OpenBLAS's, and the same quiet-wait limit. */
function peerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', BENCH_QUIET_WAIT: String(quietWaitLimit()) };
}

export class PeerUnavailable extends Error {}

/**
 * Runs bench/peers/<script> with the JSON-encoded config as its only argument and returns the JSON
 * object it prints on its last stdout line. Throws PeerUnavailable when no Python has torch.
 */
export function runPeer<T = Record<string, unknown>>(script: string, config: unknown): T {
  const py = findTorchPython();
  if (!py) throw new PeerUnavailable('no python3 with torch found (tried python3, /usr/bin/python3)');
  const file = path.join(repoRoot, 'bench', 'peers', script);
  const r = spawnSync(py, [file, JSON.stringify(config)], { env: peerEnv(), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`peer ${script} failed (${r.status ?? r.signal}): ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

// ---- output -----------------------------------------------------------------------------------

/** Drops per-trial arrays so the printed JSON stays readable. */
export function brief(m: Measurement): Omit<Measurement, 'trials'> {
  const { trials: _trials, ...rest } = m;
  return rest;
}

/** Prints the figures as one JSON object (`{"bench": name, ...}`) and then a one-line summary. */
export function report(name: string, figures: Record<string, unknown>, summary: string): void {
  console.log(JSON.stringify({ bench: name, ...figures }, null, 2));
  console.log(`${name}: ${summary}`);
}

/** Machine facts worth recording with every result. */
export function machineInfo(): Record<string, unknown> {
  return { node: process.version, bench_quiet_wait_s: quietWaitLimit(), clean_other_cores: CLEAN_OTHER_CORES };
}

export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}

/** The value of a `--name=value` command-line argument, or undefined. */
export function arg(name: string): string | undefined {
  const p = `--${name}=`;
  return process.argv.find((a) => a.startsWith(p))?.slice(p.length);
}

/** n standard normal samples (Box-Muller), seeded so runs are comparable. */
export function randn(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 1) / 4294967297;
  };
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}
