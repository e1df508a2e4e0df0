// Tokenizer throughput on tinyshakespeare, r50k_base and cl100k_base: Plinth's encoder beside
// gpt-tokenizer, js-tiktoken, tiktoken (WASM) and @huggingface/tokenizers, warm and cold; and
// byte-level BPE training to a 4,096-token vocabulary. Bars: Plinth >= 1.0x the fastest peer in
// both modes for both encodings; training < 10 s.
//
//   npm run bench -- tokenizer [--trials=N] [--encodings=r50k_base,cl100k_base] [--peers=a,b]
//
// warm: one encoder instance, repeated runs (caches filled by the warm-up run).
// cold: before every run the encoder's cache is emptied (gpt-tokenizer's clearMergeCache, Plinth's
//       clearCache) or, for encoders without that call, a fresh instance is built; that reset is
//       not timed. Instance construction (loading the vocabulary) is reported separately as load_ms.
// A trial is a batch of runs lasting >= 0.25 s; MB/s counts UTF-8 bytes of the input.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenizer, trainTokenizer } from '../src/tokenizers/index.js';
import type { Tokenizer } from '../src/tokenizers/index.js';
import type { Trial } from './common.js';
import { arg, fmt, machineInfo, median, report, summarise, timeTrial, waitForQuiet } from './common.js';

const BAR_TRAIN_S = 10;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const corpusFile = path.join(root, 'test', 'fixtures', 'data', 'tinyshakespeare.txt');

/** An encoder under test: make() builds an instance; reset() makes an instance cold again. */
interface Encoder {
  name: string;
  make(): Promise<unknown> | unknown;
  encode(inst: unknown, text: string): ArrayLike<number>;
  /** Empties the instance's cache in place; absent when cold needs a fresh instance. */
  reset?(inst: unknown): void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function encoders(encoding: string, plinth: () => Tokenizer, hfJson: () => unknown): Encoder[] {
  return [
    {
      name: 'plinth',
      make: plinth,
      encode: (t, s) => (t as Tokenizer).encode(s),
      reset: (t) => (t as Tokenizer).clearCache(),
    },
    {
      name: 'gpt-tokenizer',
      // Each import of the module is one shared instance, so cold runs clear its cache instead.
      make: async () => (await import(`gpt-tokenizer/encoding/${encoding}`)) as Any,
      encode: (m, s) => (m as Any).encode(s),
      reset: (m) => (m as Any).clearMergeCache(),
    },
    {
      name: 'js-tiktoken',
      make: async () => {
        const { Tiktoken } = (await import('js-tiktoken/lite')) as Any;
        const ranks = (await import(`js-tiktoken/ranks/${encoding}`)) as Any;
        return new Tiktoken(ranks.default);
      },
      encode: (t, s) => (t as Any).encode(s, 'all'),
    },
    {
      name: 'tiktoken',
      make: async () => ((await import('tiktoken')) as Any).get_encoding(encoding),
      encode: (t, s) => (t as Any).encode(s, 'all'),
    },
    {
      name: '@huggingface/tokenizers',
      make: async () => {
        const { Tokenizer: HfTokenizer } = (await import('@huggingface/tokenizers')) as Any;
        return new HfTokenizer(hfJson(), {});
      },
      encode: (t, s) => (t as Any).encode(s, { add_special_tokens: false }).ids,
    },
  ];
}

interface ModeResult {
  mb_s: number;
  tokens_s: number;
  median_s: number;
  n_trials: number;
  n_clean: number;
  cpu_per_wall: number;
  runs_per_trial: number;
}

async function measure(enc: Encoder, text: string, mode: 'warm' | 'cold', trials: number): Promise<ModeResult & { tokens: number }> {
  const bytes = Buffer.byteLength(text);
  let inst = await enc.make();
  const first = enc.encode(inst, text);
  const tokens = first.length;
  // One run's time decides how many runs make a trial of >= 0.25 s.
  const t0 = performance.now();
  enc.encode(inst, text);
  const once = (performance.now() - t0) / 1000;
  const runs = Math.max(1, Math.ceil(0.25 / Math.max(once, 1e-4)));
  const fresh: unknown[] = [];
  await waitForQuiet();
  const all: Trial[] = [];
  let clean = 0;
  while (clean < trials && all.length < 3 * trials) {
    if (mode === 'cold' && !enc.reset) {
      fresh.length = 0;
      for (let r = 0; r < runs; r++) fresh.push(await enc.make());
    }
    let encodeSeconds = 0;
    const t = await timeTrial(() => {
      for (let r = 0; r < runs; r++) {
        if (mode === 'cold') {
          if (enc.reset) enc.reset(inst);
          else inst = fresh[r];
        }
        const a = performance.now();
        enc.encode(inst, text);
        encodeSeconds += (performance.now() - a) / 1000;
      }
    });
    all.push({ ...t, seconds: encodeSeconds / runs });
    if (t.clean) clean++;
    else await waitForQuiet();
  }
  const m = summarise(all);
  return {
    tokens,
    mb_s: bytes / 1e6 / m.median_s,
    tokens_s: tokens / m.median_s,
    median_s: m.median_s,
    n_trials: m.n_trials,
    n_clean: m.n_clean,
    cpu_per_wall: m.cpu_per_wall,
    runs_per_trial: runs,
  };
}

async function loadMs(enc: Encoder): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await enc.make();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

async function main(): Promise<void> {
  const trials = Number(arg('trials') ?? 5);
  const encodings = (arg('encodings') ?? 'r50k_base,cl100k_base').split(',');
  const only = arg('peers')?.split(',');
  const text = readFileSync(corpusFile, 'utf8');
  const figures: Record<string, unknown> = { machine: machineInfo(), corpus: { file: 'tinyshakespeare.txt', bytes: Buffer.byteLength(text) } };
  const summary: string[] = [];
  let allBarsMet = true;
  for (const encoding of encodings) {
    const hfJson = () => JSON.parse(JSON.stringify(loadTokenizer(encoding).toJSON()));
    const results: Record<string, unknown> = {};
    let reference: number | null = null;
    const best = { warm: 0, cold: 0 };
    let ours = { warm: 0, cold: 0 };
    for (const enc of encoders(encoding, () => loadTokenizer(encoding), hfJson)) {
      if (only && enc.name !== 'plinth' && !only.includes(enc.name)) continue;
      const slow = enc.name === '@huggingface/tokenizers' || enc.name === 'js-tiktoken';
      const n = slow ? Math.min(trials, 3) : trials;
      const warm = await measure(enc, text, 'warm', n);
      const cold = await measure(enc, text, 'cold', n);
      const load_ms = enc.name === 'gpt-tokenizer' ? null : await loadMs(enc);
      reference ??= warm.tokens;
      results[enc.name] = { tokens: warm.tokens, same_token_count: warm.tokens === reference, load_ms, warm, cold };
      if (enc.name === 'plinth') ours = { warm: warm.mb_s, cold: cold.mb_s };
      else {
        best.warm = Math.max(best.warm, warm.mb_s);
        best.cold = Math.max(best.cold, cold.mb_s);
      }
      console.error(`${encoding} ${enc.name}: warm ${fmt(warm.mb_s)} MB/s, cold ${fmt(cold.mb_s)} MB/s, ${warm.tokens} tokens`);
    }
    const ratio = { warm: ours.warm / best.warm, cold: ours.cold / best.cold };
    const met = ratio.warm >= 1 && ratio.cold >= 1;
    allBarsMet &&= met;
    figures[encoding] = { encoders: results, ratio_to_fastest_peer: ratio, bar_met: met };
    summary.push(`${encoding} warm ${fmt(ours.warm)} MB/s (${fmt(ratio.warm, 2)}x fastest peer), cold ${fmt(ours.cold)} MB/s (${fmt(ratio.cold, 2)}x)`);
  }
  // Training: byte-level BPE to 4,096 tokens on the same text.
  const trainTimes: number[] = [];
  for (let i = 0; i < Math.min(trials, 3); i++) {
    await waitForQuiet();
    const t0 = performance.now();
    const tok = await trainTokenizer({ text, vocabSize: 4096 });
    trainTimes.push((performance.now() - t0) / 1000);
    if (tok.vocabSize !== 4096) throw new Error(`trained vocabulary has ${tok.vocabSize} tokens, expected 4096`);
  }
  const trainS = median(trainTimes);
  figures.train = { vocab_size: 4096, seconds: trainS, trials: trainTimes, bar_s: BAR_TRAIN_S, bar_met: trainS < BAR_TRAIN_S };
  allBarsMet &&= trainS < BAR_TRAIN_S;
  figures.all_bars_met = allBarsMet;
  summary.push(`train 4096 in ${fmt(trainS, 2)} s`);
  report('tokenizer', figures, summary.join('; '));
}

await main();
