// Token shards on disk: each split (train, val) is a sequence of raw little-endian token files
// (uint16 when every id fits, else uint32; no header, so a shard can be read at any offset), described
// by manifest.json. The manifest is written last and atomically, and every file it names carries
// the dataset's generation number, so a new prepare never overwrites a file an existing manifest
// points at: an interrupted prepare leaves the previous dataset (or none) intact.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { DataError } from './errors.js';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'plinth-token-shards';

export type TokenDType = 'uint16' | 'uint32';
export type SplitName = 'train' | 'val';
export type TokenArray = Uint16Array | Uint32Array;

export interface ShardInfo {
  /** File name, relative to the manifest's folder. */
  file: string;
  tokens: number;
}

export interface SplitInfo {
  tokens: number;
  documents: number;
  shards: ShardInfo[];
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: 1;
  /** Increases with every prepare into the same folder; part of every file name. */
  generation: number;
  /** Folder (relative to the manifest) holding tokenizer.json and tokenizer_config.json. */
  tokenizer: string;
  vocabSize: number;
  dtype: TokenDType;
  /** The token written before every document (so a model learns where documents begin and end). */
  separatorId: number;
  bosId: number | null;
  eosId: number | null;
  /**
   * How validation text was held out: 'documents' puts every k-th document in val (k ≈ 1/valFraction);
   * 'tail' (for inputs of few documents) puts the last valFraction of each document in val.
   */
  split: { mode: 'documents' | 'tail'; valFraction: number };
  splits: Record<SplitName, SplitInfo>;
  source: { description: string; documents: number; bytes: number };
}

export function dtypeForVocab(vocabSize: number): TokenDType {
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

export function bytesPerToken(dtype: TokenDType): number {
  return dtype === 'uint16' ? 2 : 4;
}

function newTokenArray(dtype: TokenDType, n: number): TokenArray {
  return dtype === 'uint16' ? new Uint16Array(n) : new Uint32Array(n);
}

// ---- writing -------------------------------------------------------------------------------------

/**
 * Appends tokens to one split's shards through a fixed buffer. A shard is written under a temporary
 * name and renamed when complete, so no file with a final name is ever partial.
 */
export class ShardWriter {
  readonly shards: ShardInfo[] = [];
  private readonly buf: TokenArray;
  private used = 0;
  private fd: number | null = null;
  private inShard = 0;
  private readonly temps = new Set<string>();
  private readonly maxId: number;

  constructor(private readonly dir: string, private readonly prefix: string, readonly dtype: TokenDType,
    vocabSize: number, private readonly shardTokens: number, bufferTokens: number) {
    if (!Number.isInteger(shardTokens) || shardTokens < 1) throw new DataError(`shardTokens must be a positive integer, got ${shardTokens}`);
    if (!Number.isInteger(bufferTokens) || bufferTokens < 1) throw new DataError(`bufferTokens must be a positive integer, got ${bufferTokens}`);
    this.buf = newTokenArray(dtype, Math.min(bufferTokens, shardTokens));
    this.maxId = vocabSize - 1;
  }

  get tokens(): number {
    let n = this.used;
    for (const s of this.shards) n += s.tokens;
    return n + this.inShard;
  }

  /** The largest number of tokens held in memory at once (the buffer's size). */
  get bufferTokens(): number {
    return this.buf.length;
  }

  write(ids: ArrayLike<number>): void {
    const maxId = this.maxId;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      // A typed-array store would wrap an out-of-range id silently; a shard must never hold one.
      if (!(id >= 0 && id <= maxId)) throw new DataError(`token id ${id} is outside the vocabulary (size ${maxId + 1})`);
      this.buf[this.used++] = id;
      if (this.used === this.buf.length || this.inShard + this.used === this.shardTokens) this.flush();
    }
  }

  private shardName(index: number): string {
    return `${this.prefix}-${String(index).padStart(5, '0')}.bin`;
  }

  private flush(): void {
    if (this.used === 0) return;
    if (this.fd === null) {
      const tmp = path.join(this.dir, this.shardName(this.shards.length) + '.tmp');
      this.temps.add(tmp);
      this.fd = openSync(tmp, 'w');
    }
    const bytes = new Uint8Array(this.buf.buffer, 0, this.used * this.buf.BYTES_PER_ELEMENT);
    for (let off = 0; off < bytes.length;) off += writeSync(this.fd, bytes, off, bytes.length - off);
    this.inShard += this.used;
    this.used = 0;
    if (this.inShard === this.shardTokens) this.closeShard();
  }

  private closeShard(): void {
    if (this.fd === null) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
    const name = this.shardName(this.shards.length);
    const tmp = path.join(this.dir, name + '.tmp');
    renameSync(tmp, path.join(this.dir, name));
    this.temps.delete(tmp);
    this.shards.push({ file: name, tokens: this.inShard });
    this.inShard = 0;
  }

  /** Writes what is buffered and completes the last shard; returns the shards. */
  finish(): ShardInfo[] {
    this.flush();
    this.closeShard();
    return this.shards;
  }

  /** Removes every file this writer made (after a failure). */
  abort(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    for (const t of this.temps) rmSync(t, { force: true });
    for (const s of this.shards) rmSync(path.join(this.dir, s.file), { force: true });
  }
}

// ---- reading -------------------------------------------------------------------------------------

/** Reads and checks dir/manifest.json and that every shard it names exists with the right size. */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (!existsSync(file)) throw new DataError(`${dir} has no ${MANIFEST_FILE} (prepare it with \`plinth prepare --out ${dir}\`)`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  } catch (e) {
    throw new DataError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (m?.format !== MANIFEST_FORMAT || m.version !== 1) throw new DataError(`${file} is not a ${MANIFEST_FORMAT} manifest (version 1)`);
  if (m.dtype !== 'uint16' && m.dtype !== 'uint32') throw new DataError(`${file}: unknown dtype ${JSON.stringify(m.dtype)}`);
  for (const split of ['train', 'val'] as const) {
    const s = m.splits?.[split];
    if (!s || !Array.isArray(s.shards)) throw new DataError(`${file} has no ${split} split`);
    let total = 0;
    for (const sh of s.shards) {
      const p = path.join(dir, sh.file);
      if (!existsSync(p)) throw new DataError(`${p} is missing (named by ${file})`);
      const want = sh.tokens * bytesPerToken(m.dtype);
      const have = statSync(p).size;
      if (have !== want) throw new DataError(`${p} has ${have} bytes; the manifest says ${sh.tokens} ${m.dtype} tokens (${want} bytes)`);
      total += sh.tokens;
    }
    if (total !== s.tokens) throw new DataError(`${file}: the ${split} shards hold ${total} tokens, not ${s.tokens}`);
  }
  return m;
}

/** The names prepare gives the files of a dataset (with their temporaries). */
const DATASET_FILE = /^((train|val)\.g\d+-\d{5}\.bin(\.tmp)?|tokenizer\.g\d+)$/;

/**
 * Removes from dir every dataset file or tokenizer folder that `keep` does not name: an older
 * dataset it replaced, and whatever an interrupted prepare left behind.
 */
export function removeUnreferenced(dir: string, keep: Manifest | null): void {
  const kept = new Set(keep ? [...keep.splits.train.shards, ...keep.splits.val.shards].map((s) => s.file) : []);
  if (keep) kept.add(keep.tokenizer);
  for (const name of readdirSync(dir)) {
    if (DATASET_FILE.test(name) && !kept.has(name)) rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/**
 * One split's tokens as a single sequence across its shards. Small splits are loaded whole;
 * larger ones are read window by window from the files (never more than a window in memory).
 */
export class TokenSplit {
  readonly length: number;
  readonly dtype: TokenDType;
  private readonly data: TokenArray | null;
  private readonly files: { path: string; start: number; tokens: number; fd: number | null }[] = [];

  private constructor(dtype: TokenDType, length: number, data: TokenArray | null) {
    this.dtype = dtype;
    this.length = length;
    this.data = data;
  }

  /** A split held in memory (tokens from anywhere: a test, a character-level corpus). */
  static fromTokens(tokens: TokenArray): TokenSplit {
    return new TokenSplit(tokens instanceof Uint16Array ? 'uint16' : 'uint32', tokens.length, tokens);
  }

  /**
   * A split of a prepared dataset. inMemory: load it whole (true), read windows from disk (false),
   * or load it when it is at most 256 MiB ('auto', the default).
   */
  static open(dir: string, split: SplitName, options: { manifest?: Manifest; inMemory?: boolean | 'auto' } = {}): TokenSplit {
    const m = options.manifest ?? readManifest(dir);
    const info = m.splits[split];
    const bpt = bytesPerToken(m.dtype);
    const load = options.inMemory === 'auto' || options.inMemory === undefined ? info.tokens * bpt <= 256 << 20 : options.inMemory;
    if (load) {
      const all = newTokenArray(m.dtype, info.tokens);
      let at = 0;
      for (const sh of info.shards) {
        readInto(path.join(dir, sh.file), new Uint8Array(all.buffer, at * bpt, sh.tokens * bpt), 0);
        at += sh.tokens;
      }
      return new TokenSplit(m.dtype, info.tokens, all);
    }
    const s = new TokenSplit(m.dtype, info.tokens, null);
    let start = 0;
    for (const sh of info.shards) {
      s.files.push({ path: path.join(dir, sh.file), start, tokens: sh.tokens, fd: null });
      start += sh.tokens;
    }
    return s;
  }

  get inMemory(): boolean {
    return this.data !== null;
  }

  /** Tokens [start, start + out.length) into out (of this split's dtype). */
  read(start: number, out: TokenArray): void {
    const n = out.length;
    if (!(Number.isInteger(start) && start >= 0 && start + n <= this.length)) {
      throw new DataError(`tokens [${start}, ${start + n}) are outside the split (${this.length} tokens)`);
    }
    if (this.data !== null) {
      out.set(this.data.subarray(start, start + n));
      return;
    }
    const bpt = out.BYTES_PER_ELEMENT;
    let done = 0;
    for (const f of this.files) {
      if (done === n) break;
      const from = start + done;
      if (from >= f.start + f.tokens) continue;
      const take = Math.min(n - done, f.start + f.tokens - from);
      f.fd ??= openSync(f.path, 'r');
      readInto(f.fd, new Uint8Array(out.buffer, out.byteOffset + done * bpt, take * bpt), (from - f.start) * bpt);
      done += take;
    }
  }

  /** Closes the shard files (reads reopen them). */
  close(): void {
    for (const f of this.files) {
      if (f.fd !== null) closeSync(f.fd);
      f.fd = null;
    }
  }
}

function readInto(fileOrFd: string | number, out: Uint8Array, position: number): void {
  const fd = typeof fileOrFd === 'number' ? fileOrFd : openSync(fileOrFd, 'r');
  try {
    for (let off = 0; off < out.length;) {
      const n = readSync(fd, out, off, out.length - off, position + off);
      if (n === 0) throw new DataError(`${typeof fileOrFd === 'string' ? fileOrFd : 'a shard'} ended early`);
      off += n;
    }
  } finally {
    if (typeof fileOrFd === 'string') closeSync(fd);
  }
}

