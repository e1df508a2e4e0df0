// Where documents come from: text files and folders, JSONL files, the built-in stories, or any
// iterable of strings. Every source streams: a document arrives as one or more pieces of bounded
// size, so a file larger than memory (or one document larger than memory) passes through a fixed
// amount of buffer.
//
// Conventions for files: a .txt or .md file is one document, unless it contains the line
// `<|endoftext|>`, which separates documents (the TinyStories convention); a document's
// surrounding whitespace is dropped. A .jsonl file holds one document per line, in its "text" field,
// taken verbatim.
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { DataError } from './errors.js';
import { corpusStories, type CorpusOptions } from './stories.js';

export const DOCUMENT_SEPARATOR = '<|endoftext|>';
export const TEXT_EXTENSIONS: readonly string[] = ['.txt', '.md', '.jsonl'];

/** A piece of a document: `first` on its first piece, `last` on its last (one piece may be both). */
export interface DocumentPiece {
  text: string;
  first: boolean;
  last: boolean;
}

export interface ReadLimits {
  /** Bytes read from a file at a time (default 1 MiB). */
  chunkBytes?: number;
  /** A document longer than this many characters is passed on in pieces (default 1 Mi). */
  maxPieceChars?: number;
}

/** Buffer high-water marks, for checking that streaming really is bounded. */
export interface ReadStats {
  maxBufferedChars: number;
}

export interface DocumentSource {
  /** What the documents are, for messages ("data/ (12 files)", "4,000 synthetic stories"). */
  readonly description: string;
  /** Total input bytes when known in advance (files), for progress; else null. */
  readonly totalBytes: number | null;
  /** Number of (non-empty) documents when known in advance (generated stories); else null. */
  readonly documents: number | null;
  /** Streams every document from the start; each call starts over. onBytes reports input consumed. */
  pieces(onBytes?: (n: number) => void): AsyncGenerator<DocumentPiece>;
  readonly stats: ReadStats;
}

/** The text files named by `inputs`: files as given, folders searched recursively (.txt, .md, .jsonl), sorted. */
export function findTextFiles(inputs: readonly string[]): string[] {
  if (inputs.length === 0) throw new DataError('no input files or folders given');
  const files: string[] = [];
  for (const input of inputs) {
    if (!existsSync(input)) throw new DataError(`${input} does not exist`);
    if (!statSync(input).isDirectory()) {
      files.push(input);
      continue;
    }
    const found = walk(input);
    if (found.length === 0) throw new DataError(`the folder ${input} holds no text files (${TEXT_EXTENSIONS.join(', ')})`);
    files.push(...found);
  }
  return files;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  // Sorted, so the document order (and with it the validation split) is the same on every machine.
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (TEXT_EXTENSIONS.includes(path.extname(name).toLowerCase())) out.push(p);
  }
  return out;
}

/**
 * Where to cut a long run of text at or before `max` characters: after a newline, else before a
 * space, so that words are not split; never between the two halves of a surrogate pair.
 */
export function safeCut(s: string, max: number): number {
  const nl = s.lastIndexOf('\n', max - 1);
  if (nl >= max / 2) return nl + 1;
  const sp = s.lastIndexOf(' ', max - 1);
  if (sp >= max / 2) return sp;
  const c = s.charCodeAt(max - 1);
  return c >= 0xd800 && c <= 0xdbff ? max - 1 : max;
}

function limitsOf(l: ReadLimits): Required<ReadLimits> {
  const chunkBytes = l.chunkBytes ?? 1 << 20;
  const maxPieceChars = l.maxPieceChars ?? 1 << 20;
  for (const [k, v] of [['chunkBytes', chunkBytes], ['maxPieceChars', maxPieceChars]] as const) {
    if (!Number.isInteger(v) || v < 16) throw new DataError(`${k} must be an integer >= 16, got ${v}`);
  }
  return { chunkBytes, maxPieceChars };
}

/** Documents read from text and JSONL files and folders. */
export function fileSource(inputs: readonly string[], limits: ReadLimits = {}): DocumentSource {
  const files = findTextFiles(inputs);
  const { chunkBytes, maxPieceChars } = limitsOf(limits);
  const stats: ReadStats = { maxBufferedChars: 0 };
  let totalBytes = 0;
  for (const f of files) totalBytes += statSync(f).size;
  const what = inputs.length === 1 ? inputs[0] : `${inputs.length} inputs`;
  return {
    description: `${what} (${files.length} file${files.length === 1 ? '' : 's'})`,
    totalBytes,
    documents: null,
    stats,
    async *pieces(onBytes) {
      for (const f of files) {
        if (path.extname(f).toLowerCase() === '.jsonl') yield* jsonlPieces(f, chunkBytes, maxPieceChars, stats, onBytes);
        else yield* textPieces(f, chunkBytes, maxPieceChars, stats, onBytes);
      }
    },
  };
}

/** The chunks of a file as text, decoded incrementally (a UTF-8 sequence may span two chunks). */
function* fileChunks(file: string, chunkBytes: number, onBytes?: (n: number) => void): Generator<string> {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(chunkBytes);
  const decoder = new TextDecoder('utf-8');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, chunkBytes, null);
      onBytes?.(n);
      if (n === 0) {
        const rest = decoder.decode();
        if (rest !== '') yield rest;
        return;
      }
      yield decoder.decode(buf.subarray(0, n), { stream: true });
    }
  } finally {
    closeSync(fd);
  }
}

function* textPieces(file: string, chunkBytes: number, maxPieceChars: number, stats: ReadStats, onBytes?: (n: number) => void): Generator<DocumentPiece> {
  let pending = '';
  let open = false; // whether the current document has passed on a piece yet
  function* emit(text: string, last: boolean): Generator<DocumentPiece> {
    if (!open) text = text.trimStart();
    if (last) text = text.trimEnd();
    if (text !== '') {
      yield { text, first: !open, last };
      open = !last;
    } else if (last && open) {
      yield { text: '', first: false, last: true };
      open = false;
    }
  }
  for (const chunk of fileChunks(file, chunkBytes, onBytes)) {
    pending += chunk;
    stats.maxBufferedChars = Math.max(stats.maxBufferedChars, pending.length);
    for (let k = pending.indexOf(DOCUMENT_SEPARATOR); k >= 0; k = pending.indexOf(DOCUMENT_SEPARATOR)) {
      yield* emit(pending.slice(0, k), true);
      pending = pending.slice(k + DOCUMENT_SEPARATOR.length);
    }
    // Keep enough of the tail that a separator split across chunks is still found.
    while (pending.length > maxPieceChars + DOCUMENT_SEPARATOR.length) {
      const cut = safeCut(pending, maxPieceChars);
      yield* emit(pending.slice(0, cut), false);
      pending = pending.slice(cut);
    }
  }
  yield* emit(pending, true);
}

function* jsonlPieces(file: string, chunkBytes: number, maxPieceChars: number, stats: ReadStats, onBytes?: (n: number) => void): Generator<DocumentPiece> {
  let pending = '';
  let line = 0;
  const parse = function* (raw: string): Generator<DocumentPiece> {
    line++;
    if (raw.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new DataError(`${file}:${line} is not valid JSON (${(e as Error).message})`);
    }
    const text = (value as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') throw new DataError(`${file}:${line} has no string "text" field`);
    if (text === '') return;
    yield* splitDocument(text, maxPieceChars);
  };
  for (const chunk of fileChunks(file, chunkBytes, onBytes)) {
    pending += chunk;
    stats.maxBufferedChars = Math.max(stats.maxBufferedChars, pending.length);
    let start = 0;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
      yield* parse(pending.slice(start, nl));
      start = nl + 1;
    }
    pending = pending.slice(start);
  }
  yield* parse(pending);
}

/** A whole document as pieces of at most maxPieceChars. */
function* splitDocument(text: string, maxPieceChars: number): Generator<DocumentPiece> {
  let first = true;
  while (text.length > maxPieceChars) {
    const cut = safeCut(text, maxPieceChars);
    yield { text: text.slice(0, cut), first, last: false };
    text = text.slice(cut);
    first = false;
  }
  yield { text, first, last: true };
}

/**
 * Documents from any (re-iterable) collection of strings, e.g. an array in a test; `count`, when
 * given, promises how many non-empty documents there are.
 */
export function documentSource(description: string, documents: () => Iterable<string> | AsyncIterable<string>,
  limits: ReadLimits & { count?: number } = {}): DocumentSource {
  const { maxPieceChars } = limitsOf(limits);
  const stats: ReadStats = { maxBufferedChars: 0 };
  return {
    description,
    totalBytes: null,
    documents: limits.count ?? null,
    stats,
    async *pieces(onBytes) {
      for await (const doc of documents()) {
        if (typeof doc !== 'string') throw new DataError(`${description}: a document is a ${typeof doc}, not a string`);
        onBytes?.(Buffer.byteLength(doc));
        if (doc !== '') yield* splitDocument(doc, maxPieceChars);
      }
    },
  };
}

/** The built-in synthetic stories (src/data/stories.ts), one document each. */
export function storySource(options: CorpusOptions): DocumentSource {
  const n = options.stories !== undefined ? `${options.stories} synthetic stories` : `${options.bytes} bytes of synthetic stories`;
  return documentSource(`${n} (seed ${options.seed ?? 0})`, function* () {
    for (const s of corpusStories(options)) yield s.text;
  }, { count: options.stories });
}
