// SentencePiece-style BPE (Llama 2): spaces become "▁", a "▁" is prepended, BPE merges characters
// (not bytes) by the rank of listed merges, and a character missing from the vocabulary falls back
// to its UTF-8 bytes as <0xXX> tokens.
import { IndexOutOfRangeError } from '../errors.js';
import { mergeWithHeap, NO_MERGE } from './bpe.js';
import type { PairSource } from './bpe.js';
import type { IdBuffer, Model } from './model.js';
import { ByteSink } from './model.js';
import { PairTable } from './tables.js';
import { utf8Decoder, utf8Encoder } from './unicode.js';

export const SPACE_MARK = '\u2581';

export interface SentencePieceBpeOptions {
  /** id → piece; null for ids the model does not use. */
  pieces: (string | null)[];
  merges: [number, number][];
  unkId: number;
  byteFallback: boolean;
  fuseUnk: boolean;
  /** When "▁" is prepended: to every stretch between added tokens, to the first only, or never. */
  prepend: 'always' | 'first' | 'never';
  /** How tokenizer.json expresses the space handling: a Prepend+Replace normalizer, or Metaspace. */
  style: 'normalizer' | 'metaspace';
}

/** The byte-fallback piece of a byte: <0x0A> for a newline. */
export function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

export class SentencePieceBpe implements Model, PairSource {
  readonly type = 'BPE';
  readonly size: number;
  readonly opts: SentencePieceBpeOptions;
  private readonly ids = new Map<string, number>();
  private readonly charIds = new Map<number, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOf = new Map<number, number>();
  private readonly pairs: PairTable;
  private readonly pieceBytes: (Uint8Array | null)[];
  pairMerged = -1;

  constructor(opts: SentencePieceBpeOptions) {
    this.opts = opts;
    this.size = opts.pieces.length;
    this.pieceBytes = new Array(this.size).fill(null);
    opts.pieces.forEach((p, id) => {
      if (p === null) return;
      if (!this.ids.has(p)) this.ids.set(p, id);
      const cps = [...p];
      if (cps.length === 1) this.charIds.set(cps[0]!.codePointAt(0)!, id);
      const m = /^<0x([0-9A-F]{2})>$/.exec(p);
      if (m) {
        const b = parseInt(m[1]!, 16);
        this.byteIds[b] = id;
        this.byteOf.set(id, b);
        this.pieceBytes[id] = Uint8Array.of(b);
      } else {
        this.pieceBytes[id] = utf8Encoder.encode(p.replaceAll(SPACE_MARK, ' '));
      }
    });
    this.pairs = new PairTable(opts.merges.length);
    opts.merges.forEach(([a, b], rank) => {
      const merged = this.ids.get(opts.pieces[a]! + opts.pieces[b]!);
      if (merged !== undefined) this.pairs.set(a, b, rank, merged);
    });
  }

  pairRank(a: number, b: number): number {
    if (a < 0 || b < 0) return NO_MERGE;
    const s = this.pairs.find(a, b);
    if (s < 0) return NO_MERGE;
    this.pairMerged = this.pairs.mergedAt(s);
    return this.pairs.rankAt(s);
  }

  encode(text: string, start: number, end: number, first: boolean, out: IdBuffer, offsets: IdBuffer | null): void {
    // Symbols with their character spans in text.
    const sym: number[] = [];
    const symStart: number[] = [];
    const symEnd: number[] = [];
    // The Prepend normalizer always adds "▁"; the Metaspace pre-tokenizer only when the text does
    // not already start with one (a space).
    const prepend =
      (this.opts.prepend === 'always' || (this.opts.prepend === 'first' && first)) &&
      !(this.opts.style === 'metaspace' && text.charCodeAt(start) === 32);
    if (prepend) this.pushChar(0x2581, start, start, sym, symStart, symEnd);
    for (let i = start; i < end; ) {
      const cp = text.codePointAt(i)!;
      const w = cp > 0xffff ? 2 : 1;
      this.pushChar(cp === 32 ? 0x2581 : cp, i, i + w, sym, symStart, symEnd);
      i += w;
    }
    const ids = Int32Array.from(sym);
    const heads = mergeWithHeap(ids, ids.length, this);
    const unk = this.opts.unkId;
    let prevUnk = false;
    for (let k = 0; k < heads.length; k++) {
      const h = heads[k]!;
      const last = (k + 1 < heads.length ? heads[k + 1]! : ids.length) - 1;
      const id = ids[h]! < 0 ? unk : ids[h]!;
      if (id < 0) continue;
      if (this.opts.fuseUnk && id === unk && prevUnk) {
        if (offsets) offsets.data[offsets.length - 1] = symEnd[last]!;
        continue;
      }
      prevUnk = id === unk;
      out.push(id);
      if (offsets) offsets.push2(symStart[h]!, symEnd[last]!);
    }
  }

  private pushChar(cp: number, s: number, e: number, sym: number[], symStart: number[], symEnd: number[]): void {
    const id = this.charIds.get(cp);
    if (id !== undefined) {
      sym.push(id);
      symStart.push(s);
      symEnd.push(e);
      return;
    }
    if (this.opts.byteFallback) {
      const bytes = utf8Encoder.encode(String.fromCodePoint(cp));
      let ok = true;
      for (const b of bytes) if (this.byteIds[b]! < 0) ok = false;
      if (ok) {
        for (const b of bytes) {
          sym.push(this.byteIds[b]!);
          symStart.push(s);
          symEnd.push(e);
        }
        return;
      }
    }
    sym.push(-1);
    symStart.push(s);
    symEnd.push(e);
  }

  decodeBytes(ids: ArrayLike<number>, added: Map<number, string>): Uint8Array {
    const sink = new ByteSink();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const a = added.get(id);
      if (a !== undefined) {
        sink.push(utf8Encoder.encode(a));
        continue;
      }
      const b = id >= 0 && id < this.size ? this.pieceBytes[id] : null;
      if (!b) throw new IndexOutOfRangeError(`cannot decode token id ${id}: it is not in the vocabulary (ids 0..${this.size - 1})`);
      sink.push(b);
    }
    let v = sink.view();
    // The decoder's Strip step: drop the space that stood for the prepended "▁".
    if (this.opts.prepend !== 'never' && v.length > 0 && v[0] === 32) v = v.subarray(1);
    return v;
  }

  decode(ids: ArrayLike<number>, added: Map<number, string>): string {
    return utf8Decoder.decode(this.decodeBytes(ids, added));
  }

  idToToken(id: number): string | undefined {
    return this.opts.pieces[id] ?? undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  toJSON(): { normalizer: unknown; pre_tokenizer: unknown; model: unknown; decoder: unknown } {
    const vocab: Record<string, number> = {};
    this.opts.pieces.forEach((p, id) => {
      if (p !== null && vocab[p] === undefined) vocab[p] = id;
    });
    const model = {
      type: 'BPE',
      dropout: null,
      unk_token: this.opts.unkId >= 0 ? this.opts.pieces[this.opts.unkId] : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: this.opts.fuseUnk,
      byte_fallback: this.opts.byteFallback,
      ignore_merges: false,
      vocab,
      merges: this.opts.merges.map(([a, b]) => `${this.opts.pieces[a]} ${this.opts.pieces[b]}`),
    };
    if (this.opts.style === 'metaspace') {
      const scheme = this.opts.prepend;
      return {
        normalizer: null,
        pre_tokenizer: { type: 'Metaspace', replacement: SPACE_MARK, prepend_scheme: scheme, split: false },
        model,
        decoder: { type: 'Metaspace', replacement: SPACE_MARK, prepend_scheme: scheme, split: false },
      };
    }
    return {
      normalizer: {
        type: 'Sequence',
        normalizers: [
          ...(this.opts.prepend === 'never' ? [] : [{ type: 'Prepend', prepend: SPACE_MARK }]),
          { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK },
        ],
      },
      pre_tokenizer: null,
      model,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(this.opts.prepend === 'never' ? [] : [{ type: 'Strip', content: ' ', start: 1, stop: 0 }]),
        ],
      },
    };
  }

  clearCache(): void {}
}

