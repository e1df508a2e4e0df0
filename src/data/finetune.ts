// Fine-tuning data: a text file, or JSONL with one example per line — {"text"}, {"prompt",
// "response"} or {"messages"} (rendered with the tokenizer's chat template) — turned into one
// token stream with a flag per token saying whether the model is trained to predict it (response
// and assistant tokens yes, prompts no), and a seeded, resumable sampler of windows over it.
import { readFileSync } from 'node:fs';
import { Tensor } from '../tensor/index.js';
import { uniformAt } from '../backend/random.js';
import type { ChatMessage, Tokenizer } from '../tokenizers/index.js';
import type { Batch } from './sampler.js';
import { DataError } from './errors.js';

/** Token ids and, per token, 1 when it is a training target. */
export interface TokenStream {
  ids: Int32Array;
  targets: Uint8Array;
}

export interface FinetuneData {
  train: TokenStream;
  val: TokenStream | null;
  examples: number;
  /** 'text' (a plain file), or the JSONL shape of the examples. */
  kind: 'text' | 'jsonl';
}

interface Piece {
  ids: number[];
  target: boolean;
}

const ENCODE = { addSpecialTokens: false } as const;

function streamOf(examples: Piece[][]): TokenStream {
  const n = examples.reduce((s, e) => s + e.reduce((t, p) => t + p.ids.length, 0), 0);
  const ids = new Int32Array(n);
  const targets = new Uint8Array(n);
  let at = 0;
  for (const e of examples) {
    for (const p of e) {
      ids.set(p.ids, at);
      if (p.target) targets.fill(1, at, at + p.ids.length);
      at += p.ids.length;
    }
  }
  return { ids, targets };
}

/** One JSONL record as pieces: a separator, then the prompt (not a target) and the answer (a target). */
function example(o: Record<string, unknown>, tokenizer: Tokenizer, sep: number, eos: number, line: number, file: string): Piece[] {
  const start: Piece = { ids: [sep], target: false };
  const end: Piece = { ids: [eos], target: true };
  if (typeof o.text === 'string') return [start, { ids: tokenizer.encode(o.text, ENCODE), target: true }, end];
  if (typeof o.prompt === 'string' && typeof o.response === 'string') {
    return [start, { ids: tokenizer.encode(o.prompt, ENCODE), target: false }, { ids: tokenizer.encode(o.response, ENCODE), target: true }, end];
  }
  if (Array.isArray(o.messages)) {
    const chat = tokenizer.applyChatTemplate(o.messages as ChatMessage[]);
    if (!chat.assistantMask.some((m) => m === 1)) throw new DataError(`${file}:${line}: the chat template marks no assistant tokens to learn from`);
    const pieces: Piece[] = [start];
    for (let i = 0; i < chat.ids.length; i++) {
      const target = chat.assistantMask[i] === 1;
      const last = pieces[pieces.length - 1];
      if (i > 0 && last.target === target) last.ids.push(chat.ids[i]);
      else pieces.push({ ids: [chat.ids[i]], target });
    }
    return pieces;
  }
  throw new DataError(`${file}:${line}: expected {"text"}, {"prompt", "response"} or {"messages"}, got keys ${Object.keys(o).join(', ') || 'none'}`);
}

/**
 * Reads fine-tuning data. JSONL (by extension .jsonl) holds one example per line; anything else
 * is plain text, all of it a target. A share `valFraction` of the examples (of the tokens, for
 * text), taken from the end, is held out for validation when it fills at least one window.
 */
export function readFinetuneData(file: string, tokenizer: Tokenizer, options: { valFraction?: number; minValTokens?: number } = {}): FinetuneData {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const eos = tokenizer.specialId('eosToken') ?? tokenizer.specialId('bosToken');
  const sep = tokenizer.specialId('bosToken') ?? eos;
  if (eos === undefined || sep === undefined) throw new DataError('the tokenizer has neither an end-of-text nor a beginning-of-text token to separate examples with');
  const valFraction = options.valFraction ?? 0.05;
  const minVal = options.minValTokens ?? 1;

  if (!file.endsWith('.jsonl')) {
    const ids = Int32Array.from([sep, ...tokenizer.encode(text, ENCODE)]);
    const cut = ids.length - Math.floor(ids.length * valFraction);
    const all = (a: Int32Array): TokenStream => ({ ids: a, targets: new Uint8Array(a.length).fill(1) });
    const val = ids.length - cut >= minVal ? all(ids.slice(cut)) : null;
    return { train: all(val ? ids.slice(0, cut) : ids), val, examples: 1, kind: 'text' };
  }

  const examples: Piece[][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${file}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DataError(`${file}:${i + 1}: the line is not a JSON object`);
    examples.push(example(o as Record<string, unknown>, tokenizer, sep, eos, i + 1, file));
  }
  if (examples.length === 0) throw new DataError(`${file} holds no examples`);
  const nVal = Math.floor(examples.length * valFraction);
  const val = nVal > 0 ? streamOf(examples.slice(examples.length - nVal)) : null;
  const useVal = val !== null && val.ids.length >= minVal;
  return { train: streamOf(useVal ? examples.slice(0, examples.length - nVal) : examples), val: useVal ? val : null, examples: examples.length, kind: 'jsonl' };
}

export interface StreamSamplerState {
  draws: number;
}

/**
 * Batches of windows of T+1 tokens: random starts drawn from a counter-based stream (the whole
 * position is one integer), or, with shuffle off, consecutive windows from the start (evaluation).
 * Targets of tokens that are not training targets are −100, ignored by the loss.
 */
export class StreamSampler {
  private draws = 0;
  /** counts[i] = targets among the first i tokens, to skip windows with nothing to learn. */
  private readonly counts: Int32Array;

  constructor(private readonly stream: TokenStream, readonly batchSize: number, readonly blockSize: number,
    private readonly options: { seed?: number; shuffle?: boolean } = {}) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new DataError(`batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new DataError(`blockSize must be a positive integer, got ${blockSize}`);
    if (stream.ids.length < blockSize + 1) {
      throw new DataError(`the data has ${stream.ids.length} tokens, fewer than one window of block size + 1 = ${blockSize + 1}: use a smaller block size or more data`);
    }
    this.counts = new Int32Array(stream.ids.length + 1);
    for (let i = 0; i < stream.ids.length; i++) this.counts[i + 1] = this.counts[i] + stream.targets[i];
    if (this.counts[stream.ids.length] === 0) throw new DataError('the data has no target tokens to learn from');
  }

  private start(span: number): number {
    const T = this.blockSize;
    if (this.options.shuffle === false) return (this.draws++ * T) % (span + 1);
    // A window of prompt tokens alone would make a batch's loss 0/0: draw again (a bounded number
    // of times, so data that is almost all prompt still terminates).
    let s = 0;
    for (let tries = 0; tries < 64; tries++) {
      s = Math.floor(uniformAt(this.options.seed ?? 0, this.draws++) * (span + 1));
      if (this.counts[s + T + 1] - this.counts[s + 1] > 0) break;
    }
    return s;
  }

  next(): Batch {
    const { batchSize: B, blockSize: T } = this;
    const { ids, targets } = this.stream;
    const span = ids.length - T - 1;
    const inputs = new Int32Array(B * T);
    const labels = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = this.start(span);
      inputs.set(ids.subarray(start, start + T), b * T);
      for (let t = 0; t < T; t++) labels[b * T + t] = targets[start + t + 1] ? ids[start + t + 1] : -100;
    }
    return { inputs: new Tensor(inputs, [B, T], 'i32'), targets: new Tensor(labels, [B, T], 'i32') };
  }

  state(): StreamSamplerState {
    return { draws: this.draws };
  }

  setState(s: StreamSamplerState): void {
    this.draws = s.draws;
  }
}
