// The server under load: `plinth serve` in a child process over the benchmark Llama (vocab 32000,
// hidden 512, 8 layers, 8 heads, 4 KV heads, intermediate 1376, random weights), streaming clients
// in this process speaking raw SSE over fetch.
//
//   npm run bench -- serve [--clients=1,8,32] [--load-clients=64] [--seconds=60] [--max-tokens=64] [--trials=3]
//   (BENCH_SERVE_SECONDS also sets the load test's length)
//
// 1. Latency: at each concurrency, every client streams requests (16 random prompt ids, 64 new
//    tokens, greedy, ignore_eos) back to back; time to first token (request sent → first content
//    chunk) and inter-token latency (gaps between content chunks) p50/p99 over all requests.
// 2. Load: 64 clients stream requests of varying length for 60 s; every request must end with
//    [DONE] and a finish_reason (errors = anything else), and the server's RSS is sampled each second.
//
// The server is another process, so "other cores" here is the machine's busy time minus this
// process's and the server's CPU time; a level is clean when others used < 0.10 cores.
// bench/infer.ts calls serverLatency() for its server figures.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pl from '../src/index.js';
import { arg, CLEAN_OTHER_CORES, fmt, machineInfo, report, waitForQuiet } from './common.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const TICKS_PER_SECOND = 100;

/** The benchmark Llama with random weights and the GPT-2 tokenizer (its first 32000 ids decode), in a temp folder. */
export function benchModelDir(): string {
  pl.manualSeed(0);
  const model = pl.createModel({
    model_type: 'llama', vocab_size: 32000, hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 8,
    num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000,
    tie_word_embeddings: false,
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-bench-serve-'));
  pl.saveModel(model, dir, { tokenizer: pl.loadTokenizer('r50k_base') });
  return dir;
}

// ---- the server process -------------------------------------------------------------------------

export interface RunningServer {
  url: string;
  child: ChildProcess;
  stop(): Promise<number | null>;
}

export async function startServer(modelDir: string, extraArgs: string[] = []): Promise<RunningServer> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--model', modelDir, '--port', '0', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/\S+?)\/v1/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`plinth serve exited (${code}): ${out}${err}`)));
  });
  return {
    url,
    child,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Resident memory of a process in MB (Linux), or NaN. */
function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** CPU seconds a process used (Linux /proc), or 0. */
function childCpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0)) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Cores used by processes other than this one and the server while fn ran. */
async function otherCoresDuring<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; other_cores: number; server_cpu_per_wall: number; seconds: number }> {
  const ownCpu = () => {
    const u = process.resourceUsage();
    return (u.userCPUTime + u.systemCPUTime) / 1e6;
  };
  const t0 = performance.now(), m0 = machineBusySeconds(), o0 = ownCpu(), c0 = childCpuSeconds(pid);
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const server = childCpuSeconds(pid) - c0;
  const others = machineBusySeconds() - m0 - (ownCpu() - o0) - server;
  return { result, other_cores: Math.max(0, others / seconds), server_cpu_per_wall: server / seconds, seconds };
}

// ---- a streaming client -------------------------------------------------------------------------

interface StreamResult {
  ok: boolean;
  error?: string;
  ttftMs: number;
  gapsMs: number[];
  completionTokens: number;
}

let promptSeed = 1;
/** Uniform random prompt ids (a fresh prompt each time, so no request hits the prefix cache). */
function randomPrompt(n: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    promptSeed = (Math.imul(promptSeed, 1664525) + 1013904223) >>> 0;
    ids.push(promptSeed % 32000);
  }
  return ids;
}

/** One streaming completion; checks the stream ends with a finish_reason, usage and [DONE]. */
async function streamOnce(url: string, promptLength: number, maxTokens: number): Promise<StreamResult> {
  const t0 = performance.now();
  const gapsMs: number[] = [];
  let ttftMs = NaN;
  let last = 0;
  let completionTokens = 0;
  let finish: string | null = null;
  let done = false;
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: randomPrompt(promptLength), max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
    });
    if (r.status !== 200) return { ok: false, error: `HTTP ${r.status}: ${await r.text()}`, ttftMs, gapsMs, completionTokens };
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const bytes of r.body!) {
      buffer += decoder.decode(bytes as Uint8Array, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith('data: ')) continue;
        const data = event.slice(6);
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const chunk = JSON.parse(data) as { choices: { text: string; finish_reason: string | null }[]; usage?: { completion_tokens: number } | null; error?: unknown };
        if (chunk.error) return { ok: false, error: JSON.stringify(chunk.error), ttftMs, gapsMs, completionTokens };
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
        const c = chunk.choices[0];
        if (!c) continue;
        if (c.finish_reason) finish = c.finish_reason;
        if (c.text) {
          const now = performance.now();
          if (Number.isNaN(ttftMs)) ttftMs = now - t0;
          else gapsMs.push(now - last);
          last = now;
        }
      }
    }
  } catch (e) {
    return { ok: false, error: (e as Error).message, ttftMs, gapsMs, completionTokens };
  }
  const ok = done && finish !== null && completionTokens === maxTokens;
  return { ok, error: ok ? undefined : `stream ended without [DONE]/finish_reason/usage (${finish}, ${completionTokens} tokens)`, ttftMs, gapsMs, completionTokens };
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

// ---- latency at fixed concurrency ---------------------------------------------------------------

export interface LatencyFigures {
  clients: number;
  requests: number;
  errors: number;
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  itl_p50_ms: number;
  itl_p99_ms: number;
  /** Generated tokens per second over all clients. */
  tokens_per_s: number;
  other_cores: number;
  clean: boolean;
  /** Runs of this level (a disturbed run is repeated, at most maxTrials in all). */
  n_trials: number;
  server_cpu_per_wall: number;
}

async function latencyLevel(server: RunningServer, clients: number, requestsPerClient: number, maxTokens: number, maxTrials: number): Promise<LatencyFigures> {
  const run = () =>
    Promise.all(
      Array.from({ length: clients }, async () => {
        const out: StreamResult[] = [];
        for (let i = 0; i < requestsPerClient; i++) out.push(await streamOnce(server.url, 16, maxTokens));
        return out;
      }),
    );
  let figures: LatencyFigures | null = null;
  for (let trial = 1; trial <= maxTrials; trial++) {
    await waitForQuiet();
    const m = await otherCoresDuring(server.child.pid!, run);
    const results = m.result.flat();
    const ok = results.filter((r) => r.ok);
    const tokens = ok.reduce((s, r) => s + r.completionTokens, 0);
    figures = {
      clients, requests: results.length, errors: results.length - ok.length,
      ttft_p50_ms: percentile(ok.map((r) => r.ttftMs), 50), ttft_p99_ms: percentile(ok.map((r) => r.ttftMs), 99),
      itl_p50_ms: percentile(ok.flatMap((r) => r.gapsMs), 50), itl_p99_ms: percentile(ok.flatMap((r) => r.gapsMs), 99),
      tokens_per_s: tokens / m.seconds, other_cores: m.other_cores, clean: m.other_cores < CLEAN_OTHER_CORES, n_trials: trial,
      server_cpu_per_wall: m.server_cpu_per_wall,
    };
    if (figures.clean) break;
  }
  return figures!;
}

/**
 * Time to first token and inter-token latency (p50/p99, ms) of `plinth serve` over modelDir at
 * each number of concurrent streaming clients (16-token prompts, 64 new tokens, greedy).
 */
export async function serverLatency(modelDir: string, clients: number[] = [1, 8, 32], options: { maxTokens?: number; /** runs of a disturbed level (default 3) */ maxTrials?: number; /** default: a 256 MB KV pool */ serverArgs?: string[] } = {}): Promise<LatencyFigures[]> {
  const server = await startServer(modelDir, options.serverArgs ?? ['--kv-cache-mb', '256']);
  try {
    // Warm up: the first requests page in weights and grow buffers.
    await Promise.all(Array.from({ length: 4 }, () => streamOnce(server.url, 16, 16)));
    const out: LatencyFigures[] = [];
    for (const c of clients) {
      out.push(await latencyLevel(server, c, Math.max(1, Math.ceil(8 / c)), options.maxTokens ?? 64, options.maxTrials ?? 3));
      console.error(`serve: ${JSON.stringify(out.at(-1))}`);
    }
    return out;
  } finally {
    await server.stop();
  }
}

// ---- load test ----------------------------------------------------------------------------------

export interface LoadFigures {
  clients: number;
  seconds: number;
  requests: number;
  errors: number;
  first_errors: string[];
  tokens_per_s: number;
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  itl_p50_ms: number;
  itl_p99_ms: number;
  /** Server RSS (MB) once the load is under way (after 10% of the time), at the end, and the largest sample;
   *  rss_samples_mb has every fifth one-second sample. */
  rss_start_mb: number;
  rss_end_mb: number;
  rss_max_mb: number;
  rss_samples_mb: number[];
  other_cores: number;
  server_cpu_per_wall: number;
  exit_code: number | null;
}

export async function loadTest(modelDir: string, clients: number, seconds: number, serverArgs: string[] = []): Promise<LoadFigures> {
  const server = await startServer(modelDir, serverArgs);
  const pid = server.child.pid!;
  const samples: { t: number; mb: number }[] = [];
  const t0 = performance.now();
  const sampler = setInterval(() => samples.push({ t: (performance.now() - t0) / 1000, mb: rssMb(pid) }), 1000);
  const results: StreamResult[] = [];
  let rng = 12345;
  const next = (lo: number, hi: number) => {
    rng = (Math.imul(rng, 1664525) + 1013904223) >>> 0;
    return lo + (rng % (hi - lo + 1));
  };
  await waitForQuiet();
  const m = await otherCoresDuring(pid, () =>
    Promise.all(
      Array.from({ length: clients }, async () => {
        while ((performance.now() - t0) / 1000 < seconds) results.push(await streamOnce(server.url, next(8, 64), next(16, 96)));
      }),
    ),
  );
  clearInterval(sampler);
  samples.push({ t: (performance.now() - t0) / 1000, mb: rssMb(pid) });
  const exitCode = await server.stop();
  const ok = results.filter((r) => r.ok);
  const start = samples.find((s) => s.t >= seconds * 0.1) ?? samples[0]!;
  return {
    clients, seconds: m.seconds, requests: results.length, errors: results.length - ok.length,
    first_errors: results.filter((r) => !r.ok).slice(0, 3).map((r) => r.error ?? ''),
    tokens_per_s: ok.reduce((s, r) => s + r.completionTokens, 0) / m.seconds,
    ttft_p50_ms: percentile(ok.map((r) => r.ttftMs), 50), ttft_p99_ms: percentile(ok.map((r) => r.ttftMs), 99),
    itl_p50_ms: percentile(ok.flatMap((r) => r.gapsMs), 50), itl_p99_ms: percentile(ok.flatMap((r) => r.gapsMs), 99),
    rss_start_mb: start.mb, rss_end_mb: samples.at(-1)!.mb, rss_max_mb: Math.max(...samples.map((s) => s.mb)),
    rss_samples_mb: samples.filter((_, i) => i % 5 === 0).map((s) => Math.round(s.mb)), other_cores: m.other_cores, server_cpu_per_wall: m.server_cpu_per_wall,
    exit_code: exitCode,
  };
}

async function main(): Promise<void> {
  const clients = (arg('clients') ?? '1,8,32').split(',').map(Number);
  const loadClients = Number(arg('load-clients') ?? 64);
  const seconds = Number(arg('seconds') ?? process.env.BENCH_SERVE_SECONDS ?? 60);
  // A KV pool big enough for every load-test client at once, small enough to be touched early.
  const serverArgs = ['--kv-cache-mb', '256', '--max-running', String(Math.max(64, loadClients))];
  const dir = benchModelDir();
  const latency = await serverLatency(dir, clients, { serverArgs, maxTokens: Number(arg('max-tokens') ?? 64), maxTrials: Number(arg('trials') ?? 3) });
  const load = await loadTest(dir, loadClients, seconds, serverArgs);
  const lat = latency.map((l) => `${l.clients} client${l.clients > 1 ? 's' : ''} TTFT ${fmt(l.ttft_p50_ms, 0)}/${fmt(l.ttft_p99_ms, 0)} ms ITL ${fmt(l.itl_p50_ms, 1)}/${fmt(l.itl_p99_ms, 1)} ms${l.clean ? '' : ' (disturbed)'}`);
  report('serve', { machine: machineInfo(), model: 'llama 32000x512, 8 layers, 8 heads, 4 kv heads, random weights', server_args: serverArgs, latency, load },
    `${lat.join('; ')}; load ${load.clients} clients ${fmt(load.seconds, 0)} s: ${load.requests} requests, ${load.errors} errors, ${fmt(load.tokens_per_s, 0)} tok/s, RSS ${fmt(load.rss_start_mb, 0)} → ${fmt(load.rss_end_mb, 0)} MB (max ${fmt(load.rss_max_mb, 0)})`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
