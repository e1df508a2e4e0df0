// The byte-level BPE tokenizer model (GPT-2, tiktoken encodings, Llama 3 style tokenizer.json):
// a pre-tokenizer pattern plus the BPE engine, and its tokenizer.json form.
import { IndexOutOfRangeError } from '../errors.js';
import { ByteLevelBpe } from './bpe.js';
import type { IdBuffer, Model } from './model.js';
import { ByteSink } from './model.js';
import { R50K_PATTERN, preTokenizer } from './pretokenize.js';
import type { PreTokenizer } from './pretokenize.js';
import { bytesToSymbols, symbolsToBytes, utf8Decoder, utf8Encoder } from './unicode.js';

export interface ByteLevelModelOptions {
  /** token id → bytes (null for unused ids). */
  tokens: (Uint8Array | null)[];
  /** Merge rules [left id, right id] in priority order; omitted for tiktoken-style ranks. */
  merges?: [number, number][];
  /** Pre-tokenizer pattern or built-in name ('gpt2', 'cl100k', 'o200k'). */
  pattern: string;
  /** Prepend a space to text that does not start with one (RoBERTa-style `add_prefix_space`). */
  addPrefixSpace?: boolean;
  /** tokenizer.json's `ignore_merges`: a piece that is a token is that token. */
  ignoreMerges?: boolean;
  unkId?: number;
  cacheSize?: number;
}

export class ByteLevelModel implements Model {
  readonly type = 'BPE';
  readonly bpe: ByteLevelBpe;
  readonly pre: PreTokenizer;
  readonly addPrefixSpace: boolean;
  /** True when merges come from ranks (tiktoken); false when from a merges list. */
  readonly fromRanks: boolean;
  private readonly merges: [number, number][] | null;
  private symbolIds: Map<string, number> | null = null;
  private addedBytes = new Map<string, Uint8Array>();

  constructor(opts: ByteLevelModelOptions) {
    this.bpe = new ByteLevelBpe(opts);
    this.pre = preTokenizer(opts.pattern);
    this.addPrefixSpace = opts.addPrefixSpace ?? false;
    this.fromRanks = opts.merges === undefined;
    this.merges = opts.merges ?? null;
  }

  get size(): number {
    return this.bpe.size;
  }

  encode(text: string, start: number, end: number, _first: boolean, out: IdBuffer, offsets: IdBuffer | null): void {
    if (this.addPrefixSpace && start < end && text.charCodeAt(start) !== 32) {
      // Encode " " + segment, then map spans back: the added space belongs to the first character.
      const shifted = ' ' + text.slice(start, end);
      const from = offsets ? offsets.length : 0;
      this.bpe.encode(this.pre, shifted, 0, shifted.length, out, offsets);
      if (offsets) {
        for (let k = from; k < offsets.length; k++) offsets.data[k] = Math.max(start, start + offsets.data[k]! - 1);
      }
      return;
    }
    this.bpe.encode(this.pre, text, start, end, out, offsets);
  }

  decodeBytes(ids: ArrayLike<number>, added: Map<number, string>): Uint8Array {
    const sink = new ByteSink();
    const vocab = this.bpe.vocab;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id >= 0 && id < vocab.size && vocab.present[id] === 1) {
        const s = vocab.start[id]!;
        const e = vocab.start[id + 1]!;
        sink.reserve(e - s);
        sink.bytes.set(vocab.bytes.subarray(s, e), sink.length);
        sink.length += e - s;
        continue;
      }
      const text = added.get(id);
      if (text === undefined) {
        throw new IndexOutOfRangeError(`cannot decode token id ${id}: it is not in the vocabulary (ids 0..${vocab.size - 1} and the added tokens)`);
      }
      let b = this.addedBytes.get(text);
      if (!b) {
        b = utf8Encoder.encode(text);
        this.addedBytes.set(text, b);
      }
      sink.push(b);
    }
    return sink.view();
  }

  decode(ids: ArrayLike<number>, added: Map<number, string>): string {
    return utf8Decoder.decode(this.decodeBytes(ids, added));
  }

  idToToken(id: number): string | undefined {
    return this.bpe.has(id) ? bytesToSymbols(this.bpe.tokenBytes(id)) : undefined;
  }

  tokenToId(token: string): number | undefined {
    if (this.symbolIds === null) {
      this.symbolIds = new Map();
      for (let id = 0; id < this.bpe.size; id++) if (this.bpe.has(id)) this.symbolIds.set(this.idToToken(id)!, id);
    }
    return this.symbolIds.get(token);
  }

  /** The merges list: the stored one, or for ranks the conversion tiktoken vocabularies get. */
  mergeList(): [number, number][] {
    if (this.merges) return this.merges;
    const out: [number, number][] = [];
    for (let id = 0; id < this.bpe.size; id++) {
      if (!this.bpe.has(id)) continue;
      const m = this.bpe.lastMerge(id);
      if (m) out.push(m);
    }
    return out;
  }

  toJSON(): { normalizer: unknown; pre_tokenizer: unknown; model: unknown; decoder: unknown } {
    const byteLevel = (useRegex: boolean) => ({
      type: 'ByteLevel',
      add_prefix_space: this.addPrefixSpace,
      trim_offsets: true,
      use_regex: useRegex,
    });
    const pre_tokenizer =
      this.pre.pattern === R50K_PATTERN
        ? byteLevel(true)
        : {
            type: 'Sequence',
            pretokenizers: [
              { type: 'Split', pattern: { Regex: this.pre.pattern }, behavior: 'Isolated', invert: false },
              byteLevel(false),
            ],
          };
    const vocab: Record<string, number> = {};
    for (let id = 0; id < this.bpe.size; id++) if (this.bpe.has(id)) vocab[this.idToToken(id)!] = id;
    const merges = this.mergeList().map(([a, b]) => `${this.idToToken(a)} ${this.idToToken(b)}`);
    return {
      normalizer: null,
      pre_tokenizer,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: this.bpe.ignoreMerges,
        vocab,
        merges,
      },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    };
  }

  clearCache(): void {
    this.bpe.clearCache();
  }
}

/**
 * Byte-level vocabulary (id → bytes) from tokenizer.json's token strings; if a token is not made of
 * GPT-2 byte symbols, returns that token instead, for the caller's error message.
 */
export function byteLevelTokens(vocab: Map<string, number>): (Uint8Array | null)[] | string {
  let size = 0;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  const tokens: (Uint8Array | null)[] = new Array(size).fill(null);
  for (const [tok, id] of vocab) {
    const b = symbolsToBytes(tok);
    if (b === null) return tok;
    tokens[id] = b;
  }
  return tokens;
}

