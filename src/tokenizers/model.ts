// The part of a tokenizer that differs between BPE flavours and WordPiece: how a stretch of text
// that holds no added token becomes ids, how ids become text, and how it is written to tokenizer.json.

export interface Model {
  /** Hugging Face model type: 'BPE' or 'WordPiece'. */
  readonly type: string;
  /** One more than the largest id the model uses (ids may have holes). */
  readonly size: number;
  /**
   * Appends the ids of text[start, end) to `out`; with `offsets`, also each token's [start, end)
   * character span in `text`. `first` says whether this stretch starts the text (some normalizers
   * prepend a word marker only there).
   */
  encode(text: string, start: number, end: number, first: boolean, out: IdBuffer, offsets: IdBuffer | null): void;
  /**
   * Text of `ids`, where an id found in `added` stands for that literal text (added and special
   * tokens). Throws IndexOutOfRangeError for an id that is neither.
   */
  decode(ids: ArrayLike<number>, added: Map<number, string>): string;
  /** The exact bytes of `ids`, for byte-based models (decode() replaces invalid UTF-8 with U+FFFD). */
  decodeBytes?(ids: ArrayLike<number>, added: Map<number, string>): Uint8Array;
  /** Token string as it appears in tokenizer.json's vocabulary. */
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  /** The normalizer, pre_tokenizer, model and decoder sections of tokenizer.json. */
  toJSON(): { normalizer: unknown; pre_tokenizer: unknown; model: unknown; decoder: unknown };
  /** Drops caches (cold-start measurements); results never depend on them. */
  clearCache(): void;
}

/** A growable byte buffer for decoders. */
export class ByteSink {
  bytes = new Uint8Array(1024);
  length = 0;

  reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < this.length + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.bytes.subarray(0, this.length));
    this.bytes = nb;
  }

  push(b: Uint8Array): void {
    this.reserve(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }

  view(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

/**
 * Growable list of int32 (token ids, offsets) that encoders append to. A tokenizer reuses one across
 * calls, so encoding does not allocate while it runs: on a large text, growing a JavaScript array
 * push by push costs more than all the BPE work.
 */
export class IdBuffer {
  data: Int32Array;
  length = 0;

  constructor(capacity = 4096) {
    this.data = new Int32Array(capacity);
  }

  push(x: number): void {
    if (this.length === this.data.length) this.reserve(1);
    this.data[this.length++] = x;
  }

  push2(x: number, y: number): void {
    if (this.length + 2 > this.data.length) this.reserve(2);
    this.data[this.length++] = x;
    this.data[this.length++] = y;
  }

  reserve(n: number): void {
    if (this.length + n <= this.data.length) return;
    let cap = this.data.length * 2;
    while (cap < this.length + n) cap *= 2;
    const d = new Int32Array(cap);
    d.set(this.data.subarray(0, this.length));
    this.data = d;
  }

  /** Empties the buffer; one that grew past `keep` entries gives its memory back. */
  reset(keep = 1 << 22): void {
    this.length = 0;
    if (this.data.length > keep) this.data = new Int32Array(4096);
  }

  toArray(from = 0): number[] {
    const n = this.length - from;
    const a = new Array<number>(n);
    const d = this.data;
    for (let i = 0; i < n; i++) a[i] = d[from + i]!;
    return a;
  }
}
