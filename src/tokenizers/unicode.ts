// Unicode character classes for the pre-tokenizers, GPT-2's byte-to-symbol table, and UTF-8 helpers.
//
// The pre-tokenizer patterns are defined by JavaScript `u`-mode regular expressions (what js-tiktoken
// and gpt-tokenizer run), so every class here is computed by those same expressions: `\s`, `\p{L}`,
// `\p{N}`. A lone surrogate is a code point of its own that belongs to none of them.

export const CLS_L = 1; // \p{L}
export const CLS_N = 2; // \p{N}
export const CLS_WS = 4; // \s
export const CLS_UPPERISH = 8; // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] (o200k)
export const CLS_LOWERISH = 16; // [\p{Ll}\p{Lm}\p{Lo}\p{M}] (o200k)
export const CLS_PUNCT = 32; // BERT punctuation: ASCII punctuation or \p{P}
export const CLS_CJK = 64; // CJK ideographs BERT splits one by one

const RE_L = /^\p{L}$/u;
const RE_N = /^\p{N}$/u;
const RE_WS = /^\s$/u;
const RE_UPPERISH = /^[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]$/u;
const RE_LOWERISH = /^[\p{Ll}\p{Lm}\p{Lo}\p{M}]$/u;
const RE_P = /^\p{P}$/u;

function isAsciiPunct(cp: number): boolean {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
}

// BERT's _is_chinese_char ranges.
function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function computeClass(cp: number): number {
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;
  const s = String.fromCodePoint(cp);
  let c = 0;
  if (RE_L.test(s)) c |= CLS_L;
  if (RE_N.test(s)) c |= CLS_N;
  if (RE_WS.test(s)) c |= CLS_WS;
  if (RE_UPPERISH.test(s)) c |= CLS_UPPERISH;
  if (RE_LOWERISH.test(s)) c |= CLS_LOWERISH;
  if (isAsciiPunct(cp) || RE_P.test(s)) c |= CLS_PUNCT;
  if (isCjk(cp)) c |= CLS_CJK;
  return c;
}

// Classes of the Basic Multilingual Plane, filled on first use (bit 128 marks a computed entry):
// testing all 65,536 code points up front would cost every process ~100 ms it rarely needs.
const BMP = new Uint8Array(65536);
for (let cp = 0; cp < 128; cp++) BMP[cp] = computeClass(cp) | 128;
const ASTRAL = new Map<number, number>();

/** The class bits of a code point (any value 0..0x10FFFF, surrogates included). */
export function charClass(cp: number): number {
  if (cp < 65536) {
    const c = BMP[cp]!;
    if (c !== 0) return c & 127;
    const k = computeClass(cp);
    BMP[cp] = k | 128;
    return k;
  }
  let k = ASTRAL.get(cp);
  if (k === undefined) {
    k = computeClass(cp);
    ASTRAL.set(cp, k);
  }
  return k;
}

/**
 * Class of the code point starting at s[i] (i < end), with its width in code units in bit 8:
 * `k & 255` is the class, `1 + (k >> 8)` the width. A high surrogate whose partner lies at or
 * beyond `end` is a lone surrogate, as it is to a regular expression run on s.slice(.., end).
 */
export function classAt(s: string, i: number, end: number): number {
  const c = s.charCodeAt(i);
  if (c < 128) return BMP[c]! & 127;
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return charClass(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000) | 256;
  }
  return charClass(c);
}

/**
 * GPT-2's bytes_to_unicode: every byte gets a printable symbol, so that byte-level tokens can be
 * written as strings in vocab.json / tokenizer.json. Printable Latin-1 bytes map to themselves;
 * the others, in byte order, to U+0100 onwards.
 */
export const BYTE_TO_SYMBOL: string[] = (() => {
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCharCode(printable ? b : next++);
  }
  return table;
})();

export const SYMBOL_TO_BYTE: Map<string, number> = new Map(BYTE_TO_SYMBOL.map((s, b) => [s, b]));

/** A byte-level token string (GPT-2 symbols) to its bytes, or null if a symbol is not one of the 256. */
export function symbolsToBytes(token: string): Uint8Array | null {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = SYMBOL_TO_BYTE.get(token[i]!);
    if (b === undefined) return null;
    out[i] = b;
  }
  return out;
}

export function bytesToSymbols(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_SYMBOL[bytes[i]!];
  return s;
}

export const utf8Encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text like any other, and must survive decode(encode(x)).
export const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });
