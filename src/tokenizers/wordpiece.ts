// WordPiece (BERT): the BERT normalizer (control characters dropped, CJK ideographs isolated,
// accents stripped, lower-casing), words split at whitespace and punctuation, and each word cut
// greedily into the longest vocabulary pieces, "##" marking pieces that continue a word. A word with
// no such cut is [UNK].
import { IndexOutOfRangeError } from '../errors.js';
import type { IdBuffer, Model } from './model.js';
import { CLS_CJK, CLS_PUNCT, CLS_WS, charClass } from './unicode.js';

export interface WordPieceOptions {
  /** id → token; null for unused ids. */
  vocab: (string | null)[];
  unkToken: string;
  prefix?: string;
  maxInputCharsPerWord?: number;
  lowercase?: boolean;
  /** Default (null): strip accents when lower-casing, as BERT does. */
  stripAccents?: boolean | null;
  cleanText?: boolean;
  handleChineseChars?: boolean;
}

const RE_CONTROL = /^[\p{Cc}\p{Cf}\p{Co}\p{Cs}]$/u;
const RE_MN = /\p{Mn}/gu;

export interface Normalized {
  text: string;
  /** For each UTF-16 unit of text, the [start, end) it came from in the original string. */
  from: number[];
  to: number[];
}

/** BERT's normalizer with an alignment back to the original string. */
export function bertNormalize(
  text: string,
  start: number,
  end: number,
  opts: { cleanText: boolean; handleChineseChars: boolean; stripAccents: boolean; lowercase: boolean },
): Normalized {
  let out = '';
  const from: number[] = [];
  const to: number[] = [];
  const emit = (s: string, a: number, b: number) => {
    out += s;
    for (let k = 0; k < s.length; k++) {
      from.push(a);
      to.push(b);
    }
  };
  for (let i = start; i < end; ) {
    const cp = text.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    let ch = text.slice(i, i + w);
    const cls = charClass(cp);
    if (opts.cleanText) {
      if (cp === 0 || cp === 0xfffd || (cp !== 9 && cp !== 10 && cp !== 13 && RE_CONTROL.test(ch))) {
        i += w;
        continue;
      }
      if (cls & CLS_WS) ch = ' ';
    }
    if (opts.lowercase) ch = ch.toLowerCase();
    if (opts.stripAccents) ch = ch.normalize('NFD').replace(RE_MN, '');
    if (opts.handleChineseChars && cls & CLS_CJK) emit(` ${ch} `, i, i + w);
    else emit(ch, i, i + w);
    i += w;
  }
  return { text: out, from, to };
}

export class WordPiece implements Model {
  readonly type = 'WordPiece';
  readonly size: number;
  readonly opts: Required<Omit<WordPieceOptions, 'stripAccents'>> & { stripAccents: boolean | null };
  private readonly ids = new Map<string, number>();
  private readonly unkId: number;

  constructor(opts: WordPieceOptions) {
    this.opts = {
      prefix: '##',
      maxInputCharsPerWord: 100,
      lowercase: true,
      stripAccents: null,
      cleanText: true,
      handleChineseChars: true,
      ...opts,
    };
    this.size = opts.vocab.length;
    opts.vocab.forEach((t, id) => {
      if (t !== null && !this.ids.has(t)) this.ids.set(t, id);
    });
    this.unkId = this.ids.get(opts.unkToken) ?? -1;
  }

  encode(text: string, start: number, end: number, _first: boolean, out: IdBuffer, offsets: IdBuffer | null): void {
    const o = this.opts;
    const norm = bertNormalize(text, start, end, {
      cleanText: o.cleanText,
      handleChineseChars: o.handleChineseChars,
      stripAccents: o.stripAccents ?? o.lowercase,
      lowercase: o.lowercase,
    });
    const s = norm.text;
    // Words: runs of non-space, non-punctuation characters; each punctuation character alone.
    for (let i = 0; i < s.length; ) {
      const cp = s.codePointAt(i)!;
      const w = cp > 0xffff ? 2 : 1;
      const cls = charClass(cp);
      if (cls & CLS_WS) {
        i += w;
        continue;
      }
      let j = i + w;
      if (!(cls & CLS_PUNCT)) {
        while (j < s.length) {
          const c2 = s.codePointAt(j)!;
          const k = charClass(c2);
          if (k & (CLS_WS | CLS_PUNCT)) break;
          j += c2 > 0xffff ? 2 : 1;
        }
      }
      this.encodeWord(s, i, j, norm, out, offsets);
      i = j;
    }
  }

  private encodeWord(s: string, i: number, j: number, norm: Normalized, out: IdBuffer, offsets: IdBuffer | null): void {
    const chars = [...s.slice(i, j)];
    const mark = out.length;
    if (chars.length <= this.opts.maxInputCharsPerWord) {
      let pos = 0;
      let unit = i;
      while (pos < chars.length) {
        let endPos = chars.length;
        let found = -1;
        let piece = '';
        while (endPos > pos) {
          piece = chars.slice(pos, endPos).join('');
          const id = this.ids.get(pos > 0 ? this.opts.prefix + piece : piece);
          if (id !== undefined) {
            found = id;
            break;
          }
          endPos--;
        }
        if (found < 0) break;
        out.push(found);
        if (offsets) offsets.push2(norm.from[unit]!, norm.to[unit + piece.length - 1]!);
        unit += piece.length;
        pos = endPos;
      }
      if (pos === chars.length) return;
    }
    out.length = mark;
    if (offsets) offsets.length = mark * 2;
    if (this.unkId >= 0) {
      out.push(this.unkId);
      if (offsets) offsets.push2(norm.from[i]!, norm.to[j - 1]!);
    }
  }

  decode(ids: ArrayLike<number>, added: Map<number, string>): string {
    let text = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const tok = added.get(id) ?? (id >= 0 && id < this.size ? this.opts.vocab[id] : null);
      if (tok === null || tok === undefined) {
        throw new IndexOutOfRangeError(`cannot decode token id ${id}: it is not in the vocabulary (ids 0..${this.size - 1})`);
      }
      if (i > 0 && !tok.startsWith(this.opts.prefix)) text += ' ';
      text += tok.startsWith(this.opts.prefix) && i > 0 ? tok.slice(this.opts.prefix.length) : tok;
    }
    // The WordPiece decoder's cleanup: undo the spaces the split put before punctuation.
    return text
      .replaceAll(' .', '.')
      .replaceAll(' ?', '?')
      .replaceAll(' !', '!')
      .replaceAll(' ,', ',')
      .replaceAll(" ' ", "'")
      .replaceAll(" n't", "n't")
      .replaceAll(" 'm", "'m")
      .replaceAll(" 's", "'s")
      .replaceAll(" 've", "'ve")
      .replaceAll(" 're", "'re");
  }

  idToToken(id: number): string | undefined {
    return this.opts.vocab[id] ?? undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  toJSON(): { normalizer: unknown; pre_tokenizer: unknown; model: unknown; decoder: unknown } {
    const vocab: Record<string, number> = {};
    this.opts.vocab.forEach((t, id) => {
      if (t !== null && vocab[t] === undefined) vocab[t] = id;
    });
    return {
      normalizer: {
        type: 'BertNormalizer',
        clean_text: this.opts.cleanText,
        handle_chinese_chars: this.opts.handleChineseChars,
        strip_accents: this.opts.stripAccents,
        lowercase: this.opts.lowercase,
      },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      model: {
        type: 'WordPiece',
        unk_token: this.opts.unkToken,
        continuing_subword_prefix: this.opts.prefix,
        max_input_chars_per_word: this.opts.maxInputCharsPerWord,
        vocab,
      },
      decoder: { type: 'WordPiece', prefix: this.opts.prefix, cleanup: true },
    };
  }

  clearCache(): void {}
}
