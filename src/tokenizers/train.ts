// Training BPE vocabularies: byte-level BPE (GPT-2 style), SentencePiece-style BPE (Llama 2 style)
// and WordPiece (BERT; trained with BPE merges over "##"-prefixed characters, as the Hugging Face
// trainer does).
//
// The merge loop keeps a count for every adjacent pair of symbols and, for every pair, the set of
// words it occurs in. A merge touches only those words: their old pairs are subtracted and their new
// pairs added, so each step costs the size of the affected words, not of the corpus. The most
// frequent pair comes from a max-heap whose entries may be stale (counts only ever decrease
// silently; every increase pushes a fresh entry): a popped entry whose count is out of date is
// pushed back with the current count. Ties go to the smaller (left id, right id), so the same input
// gives the same merges.
import { createReadStream, statSync } from 'node:fs';
import { ArgumentError } from '../errors.js';
import { ByteLevelModel } from './bytelevel.js';
import { preTokenizer, splitPieces } from './pretokenize.js';
import { SPACE_MARK, SentencePieceBpe, byteToken } from './sentencepiece.js';
import type { AddedToken } from './tokenizer.js';
import { Tokenizer } from './tokenizer.js';
import { CLS_PUNCT, CLS_WS, charClass, utf8Encoder } from './unicode.js';
import { WordPiece, bertNormalize } from './wordpiece.js';

export interface TrainTokenizerProgress {
  phase: 'count' | 'merge';
  done: number;
  total: number;
}

export interface TrainTokenizerOptions {
  /** 'bpe' (byte-level, default), 'sentencepiece' (Llama 2 style BPE with byte fallback) or 'wordpiece'. */
  model?: 'bpe' | 'sentencepiece' | 'wordpiece';
  /** Text files to read (streamed). */
  files?: string[];
  /** Text, or chunks of text from an iterable or async iterable (a stream). */
  text?: string | Iterable<string> | AsyncIterable<string>;
  /** Size of the final vocabulary, special tokens included. */
  vocabSize: number;
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
  /**
   * Special tokens. Defaults: bpe <|endoftext|> <|im_start|> <|im_end|>; sentencepiece <unk> <s> </s>
   * (always first) plus any given; wordpiece [PAD] [UNK] [CLS] [SEP] [MASK].
   */
  specialTokens?: string[];
  /** Byte-level pre-tokenizer pattern or built-in name (default 'cl100k'). */
  pattern?: string;
  /** WordPiece: lower-case and strip accents (default true). */
  lowercase?: boolean;
  onProgress?: (p: TrainTokenizerProgress) => void;
}

// ---------------------------------------------------------------------------------------------
// The merge loop.

interface MergeResult {
  merges: [number, number][];
  /** Symbol id each merge produced. */
  produced: number[];
}

/**
 * words[i] (symbol ids) occurs counts[i] times. Performs merges until `newSymbol` returns -1 (the
 * vocabulary is full) or no pair occurs minFrequency times. newSymbol(a, b) returns the id of the
 * merged symbol (it may be an existing one when two pairs spell the same token).
 */
export function learnMerges(
  words: Int32Array[],
  counts: number[],
  minFrequency: number,
  maxMerges: number,
  newSymbol: (a: number, b: number) => number,
  onProgress?: (done: number) => void,
): MergeResult {
  const SHIFT = 2 ** 21;
  const key = (a: number, b: number) => a * SHIFT + b;
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const addPairs = (w: Int32Array, wi: number, c: number, touched: Set<number> | null) => {
    for (let i = 0; i + 1 < w.length; i++) {
      const k = key(w[i]!, w[i + 1]!);
      pairCount.set(k, (pairCount.get(k) ?? 0) + c);
      if (c > 0) {
        let s = where.get(k);
        if (!s) where.set(k, (s = new Set()));
        s.add(wi);
        touched?.add(k);
      }
    }
  };
  words.forEach((w, wi) => addPairs(w, wi, counts[wi]!, null));

  // Max-heap on (count desc, key asc), in parallel arrays.
  const hc: number[] = [];
  const hk: number[] = [];
  const before = (c1: number, k1: number, c2: number, k2: number) => c1 > c2 || (c1 === c2 && k1 < k2);
  const push = (c: number, k: number) => {
    let i = hc.length;
    hc.push(c);
    hk.push(k);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(c, k, hc[p]!, hk[p]!)) break;
      hc[i] = hc[p]!;
      hk[i] = hk[p]!;
      i = p;
    }
    hc[i] = c;
    hk[i] = k;
  };
  const pop = () => {
    const c = hc.pop()!;
    const k = hk.pop()!;
    const n = hc.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let ch = 2 * i + 1;
      if (ch >= n) break;
      if (ch + 1 < n && before(hc[ch + 1]!, hk[ch + 1]!, hc[ch]!, hk[ch]!)) ch++;
      if (!before(hc[ch]!, hk[ch]!, c, k)) break;
      hc[i] = hc[ch]!;
      hk[i] = hk[ch]!;
      i = ch;
    }
    hc[i] = c;
    hk[i] = k;
  };
  for (const [k, c] of pairCount) push(c, k);

  const merges: [number, number][] = [];
  const produced: number[] = [];
  while (merges.length < maxMerges && hc.length > 0) {
    const c = hc[0]!;
    const k = hk[0]!;
    pop();
    const cur = pairCount.get(k) ?? 0;
    if (cur !== c) {
      if (cur > 0) push(cur, k);
      continue;
    }
    if (cur < minFrequency || cur <= 0) break;
    const a = Math.floor(k / SHIFT);
    const b = k - a * SHIFT;
    const id = newSymbol(a, b);
    if (id < 0) break;
    merges.push([a, b]);
    produced.push(id);
    const touched = new Set<number>();
    for (const wi of where.get(k)!) {
      const w = words[wi]!;
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) has = true;
      if (!has) continue;
      const cnt = counts[wi]!;
      addPairs(w, wi, -cnt, null);
      const nw: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          nw.push(id);
          i++;
        } else nw.push(w[i]!);
      }
      const next = Int32Array.from(nw);
      words[wi] = next;
      addPairs(next, wi, cnt, touched);
    }
    where.delete(k);
    pairCount.delete(k);
    for (const t of touched) {
      const tc = pairCount.get(t) ?? 0;
      if (tc > 0) push(tc, t);
    }
    if (onProgress && merges.length % 64 === 0) onProgress(merges.length);
  }
  onProgress?.(merges.length);
  return { merges, produced };
}

// ---------------------------------------------------------------------------------------------
// Reading the corpus into word counts.

async function* chunksOf(opts: TrainTokenizerOptions, onBytes: (n: number) => void): AsyncGenerator<string | null> {
  if (opts.files) {
    for (const f of opts.files) {
      for await (const chunk of createReadStream(f, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
        onBytes(Buffer.byteLength(chunk as string));
        yield chunk as string;
      }
      yield null; // document boundary: nothing carries over between files
    }
  }
  const t = opts.text;
  if (typeof t === 'string') {
    onBytes(Buffer.byteLength(t));
    yield t;
  } else if (t !== undefined) {
    for await (const chunk of t as AsyncIterable<string>) {
      if (typeof chunk !== 'string') throw new ArgumentError(`training text chunks must be strings, got ${typeof chunk}`);
      onBytes(Buffer.byteLength(chunk));
      yield chunk;
    }
  }
  yield null;
}

/**
 * Counts the words `split` finds, over all chunks. The last word of a chunk may continue in the next
 * one, so it is carried over instead of counted.
 */
async function countWords(
  opts: TrainTokenizerOptions,
  split: (text: string) => number[],
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let total = 0;
  if (opts.files) for (const f of opts.files) total += statSync(f).size;
  if (typeof opts.text === 'string') total += Buffer.byteLength(opts.text);
  let done = 0;
  let carry = '';
  for await (const chunk of chunksOf(opts, (n) => {
    done += n;
    opts.onProgress?.({ phase: 'count', done, total: Math.max(total, done) });
  })) {
    const text = carry + (chunk ?? '');
    if (text === '') continue;
    const spans = split(text);
    const last = chunk === null ? spans.length : spans.length - 2;
    for (let i = 0; i < last; i += 2) {
      const w = text.slice(spans[i]!, spans[i + 1]!);
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
    carry = chunk === null || spans.length === 0 ? '' : text.slice(spans[spans.length - 2]!);
  }
  return counts;
}

function checkOptions(opts: TrainTokenizerOptions): void {
  if (!opts || typeof opts !== 'object') throw new ArgumentError('trainTokenizer expects an options object');
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= 0) {
    throw new ArgumentError(`vocabSize must be a positive integer, got ${opts.vocabSize}`);
  }
  if (opts.files === undefined && opts.text === undefined) throw new ArgumentError('trainTokenizer needs files or text');
  if (opts.minFrequency !== undefined && !(Number.isInteger(opts.minFrequency) && opts.minFrequency >= 0)) {
    throw new ArgumentError(`minFrequency must be a non-negative integer, got ${opts.minFrequency}`);
  }
}

/** Trains a tokenizer on files and/or text. */
export async function trainTokenizer(opts: TrainTokenizerOptions): Promise<Tokenizer> {
  checkOptions(opts);
  const kind = opts.model ?? 'bpe';
  if (kind === 'bpe') return trainByteLevel(opts);
  if (kind === 'sentencepiece') return trainSentencePiece(opts);
  if (kind === 'wordpiece') return trainWordPiece(opts);
  throw new ArgumentError(`unknown tokenizer model ${JSON.stringify(kind)} (bpe, sentencepiece, wordpiece)`);
}

function tooSmall(vocabSize: number, base: number, what: string): never {
  throw new ArgumentError(`vocabSize ${vocabSize} is smaller than the base alphabet: ${what} = ${base} tokens`);
}

function mergeProgress(opts: TrainTokenizerOptions, total: number): (done: number) => void {
  return (done) => opts.onProgress?.({ phase: 'merge', done, total });
}

async function trainByteLevel(opts: TrainTokenizerOptions): Promise<Tokenizer> {
  const specials = opts.specialTokens ?? ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const base = 256 + specials.length;
  if (opts.vocabSize < base) tooSmall(opts.vocabSize, base, `256 bytes + ${specials.length} special tokens`);
  const pattern = opts.pattern ?? 'cl100k';
  const pre = preTokenizer(pattern);
  const wordCounts = await countWords(opts, (t) => splitPieces(pre, t));
  const words: Int32Array[] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Int32Array.from(utf8Encoder.encode(w)));
    counts.push(c);
  }
  const tokens: Uint8Array[] = [];
  for (let b = 0; b < 256; b++) tokens.push(Uint8Array.of(b));
  const byBytes = new Map<string, number>(tokens.map((t, id) => [t.join(','), id]));
  const maxMerges = opts.vocabSize - base;
  const { merges } = learnMerges(
    words,
    counts,
    opts.minFrequency ?? 2,
    Number.MAX_SAFE_INTEGER,
    (a, b) => {
      const bytes = new Uint8Array(tokens[a]!.length + tokens[b]!.length);
      bytes.set(tokens[a]!);
      bytes.set(tokens[b]!, tokens[a]!.length);
      const k = bytes.join(',');
      const have = byBytes.get(k);
      if (have !== undefined) return have;
      if (tokens.length - 256 >= maxMerges) return -1;
      tokens.push(bytes);
      byBytes.set(k, tokens.length - 1);
      return tokens.length - 1;
    },
    mergeProgress(opts, maxMerges),
  );
  const added: AddedToken[] = specials.map((content, i) => ({ id: tokens.length + i, content, special: true }));
  const model = new ByteLevelModel({ tokens, merges, pattern: pre.pattern });
  const has = (t: string) => specials.includes(t);
  return new Tokenizer({
    model,
    addedTokens: added,
    config: { eosToken: has('<|endoftext|>') ? '<|endoftext|>' : null, bosToken: null },
  });
}

/** Words for SentencePiece training: "▁"-initial runs, other whitespace characters alone. */
function spWords(text: string): number[] {
  const out: number[] = [];
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : -1;
    const boundary = c === -1 || c === 32 || (c < 128 && (charClass(c) & CLS_WS) !== 0);
    if (!boundary) continue;
    if (i > start) out.push(start, i);
    if (c !== -1 && c !== 32) {
      out.push(i, i + 1);
      start = i + 1;
    } else start = i;
  }
  return out;
}

async function trainSentencePiece(opts: TrainTokenizerOptions): Promise<Tokenizer> {
  const controls = ['<unk>', '<s>', '</s>'];
  const extra = (opts.specialTokens ?? []).filter((t) => !controls.includes(t));
  const base = controls.length + 256 + extra.length;
  if (opts.vocabSize < base) tooSmall(opts.vocabSize, base, `<unk> <s> </s> + 256 byte-fallback tokens + ${extra.length} special tokens`);
  const wordCounts = await countWords(opts, spWords);
  // Character alphabet, most frequent first; what does not fit is left to byte fallback.
  const charFreq = new Map<string, number>();
  const wordChars: string[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    const chars = [...w.replaceAll(' ', SPACE_MARK)];
    wordChars.push(chars);
    counts.push(c);
    for (const ch of chars) charFreq.set(ch, (charFreq.get(ch) ?? 0) + c);
  }
  const alphabet = [...charFreq.entries()]
    .sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .slice(0, opts.vocabSize - base)
    .map(([ch]) => ch);
  const pieces: string[] = [...controls];
  for (let b = 0; b < 256; b++) pieces.push(byteToken(b));
  const ids = new Map<string, number>();
  for (const ch of alphabet) {
    ids.set(ch, pieces.length);
    pieces.push(ch);
  }
  const words: Int32Array[] = wordChars.map((chars) => Int32Array.from(chars.map((ch) => ids.get(ch) ?? -1)));
  // Characters left out split words: merges never cross them.
  const splitWords: Int32Array[] = [];
  const splitCounts: number[] = [];
  words.forEach((w, i) => {
    let s = 0;
    for (let j = 0; j <= w.length; j++) {
      if (j < w.length && w[j]! >= 0) continue;
      if (j - s > 1) {
        splitWords.push(w.slice(s, j));
        splitCounts.push(counts[i]!);
      }
      s = j + 1;
    }
  });
  const maxMerges = opts.vocabSize - base - alphabet.length;
  const { merges } = learnMerges(
    splitWords,
    splitCounts,
    opts.minFrequency ?? 2,
    Number.MAX_SAFE_INTEGER,
    (a, b) => {
      const s = pieces[a]! + pieces[b]!;
      const have = ids.get(s);
      if (have !== undefined) return have;
      if (pieces.length >= opts.vocabSize - extra.length) return -1;
      ids.set(s, pieces.length);
      pieces.push(s);
      return pieces.length - 1;
    },
    mergeProgress(opts, maxMerges),
  );
  const model = new SentencePieceBpe({ pieces, merges, unkId: 0, byteFallback: true, fuseUnk: true, prepend: 'always', style: 'normalizer' });
  const added: AddedToken[] = controls.map((content, id) => ({ id, content, special: true }));
  extra.forEach((content, i) => added.push({ id: pieces.length + i, content, special: true }));
  return new Tokenizer({
    model,
    addedTokens: added,
    prefix: [1],
    config: { bosToken: '<s>', eosToken: '</s>', unkToken: '<unk>' },
  });
}

async function trainWordPiece(opts: TrainTokenizerOptions): Promise<Tokenizer> {
  const specials = opts.specialTokens ?? ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  for (const t of ['[UNK]', '[CLS]', '[SEP]']) {
    if (!specials.includes(t)) throw new ArgumentError(`WordPiece training needs ${t} among the special tokens`);
  }
  const lowercase = opts.lowercase ?? true;
  const norm = { cleanText: true, handleChineseChars: true, stripAccents: lowercase, lowercase };
  // Count whitespace-delimited runs of the raw text, then normalize and split each distinct run
  // into words: the normalizer works character by character, so it never joins two runs.
  const runs = await countWords(opts, (t) => {
    const out: number[] = [];
    let s = -1;
    for (let i = 0; i <= t.length; i++) {
      const ws = i === t.length || (charClass(t.charCodeAt(i)) & CLS_WS) !== 0;
      if (ws && s >= 0) {
        out.push(s, i);
        s = -1;
      } else if (!ws && s < 0) s = i;
    }
    return out;
  });
  const wordCounts = new Map<string, number>();
  for (const [run, c] of runs) {
    const n = bertNormalize(run, 0, run.length, norm).text;
    for (let i = 0; i < n.length; ) {
      const cp = n.codePointAt(i)!;
      const w = cp > 0xffff ? 2 : 1;
      const k = charClass(cp);
      if (k & CLS_WS) {
        i += w;
        continue;
      }
      let j = i + w;
      if (!(k & CLS_PUNCT)) {
        while (j < n.length) {
          const c2 = n.codePointAt(j)!;
          if (charClass(c2) & (CLS_WS | CLS_PUNCT)) break;
          j += c2 > 0xffff ? 2 : 1;
        }
      }
      const word = n.slice(i, j);
      wordCounts.set(word, (wordCounts.get(word) ?? 0) + c);
      i = j;
    }
  }
  const alphabetSet = new Set<string>();
  const wordSyms: string[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    const syms = [...w].map((ch, i) => (i === 0 ? ch : '##' + ch));
    syms.forEach((s) => alphabetSet.add(s));
    wordSyms.push(syms);
    counts.push(c);
  }
  const alphabet = [...alphabetSet].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const base = specials.length + alphabet.length;
  if (opts.vocabSize < base) tooSmall(opts.vocabSize, base, `${specials.length} special tokens + ${alphabet.length} characters`);
  const vocab: string[] = [...specials, ...alphabet];
  const ids = new Map<string, number>(vocab.map((t, i) => [t, i]));
  const words = wordSyms.map((syms) => Int32Array.from(syms.map((s) => ids.get(s)!)));
  const maxMerges = opts.vocabSize - base;
  learnMerges(
    words,
    counts,
    opts.minFrequency ?? 2,
    Number.MAX_SAFE_INTEGER,
    (a, b) => {
      const right = vocab[b]!;
      const s = vocab[a]! + (right.startsWith('##') ? right.slice(2) : right);
      const have = ids.get(s);
      if (have !== undefined) return have;
      if (vocab.length >= opts.vocabSize) return -1;
      ids.set(s, vocab.length);
      vocab.push(s);
      return vocab.length - 1;
    },
    mergeProgress(opts, maxMerges),
  );
  const model = new WordPiece({ vocab, unkToken: '[UNK]', lowercase, stripAccents: null });
  const added: AddedToken[] = specials.map((content, id) => ({ id, content, special: true }));
  return new Tokenizer({
    model,
    addedTokens: added,
    prefix: [ids.get('[CLS]')!],
    suffix: [ids.get('[SEP]')!],
    config: { padToken: specials.includes('[PAD]') ? '[PAD]' : null, unkToken: '[UNK]' },
  });
}
