// Pre-tokenization: splitting text into the pieces BPE merges within.
//
// Byte-level BPE never merges across a piece boundary, so the split is part of the vocabulary's
// definition. GPT-2 / r50k and cl100k split with the regular expressions below; each has a
// hand-written scanner that returns exactly the pieces the expression matches (the tests check this
// on a stress corpus), because the scanner reads char codes instead of building a match object and
// a substring per piece. Any other pattern runs as a JavaScript regular expression.
import { UnsupportedTokenizerError } from './errors.js';
import { CLS_L, CLS_N, CLS_WS, classAt } from './unicode.js';

export const R50K_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

export const CL100K_PATTERN =
  String.raw`('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

export const O200K_PATTERN = [
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)?`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)?`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
].join('|');

/** Built-in pattern names accepted wherever a pattern is. */
export const PATTERNS: Record<string, string> = {
  gpt2: R50K_PATTERN,
  r50k: R50K_PATTERN,
  cl100k: CL100K_PATTERN,
  o200k: O200K_PATTERN,
};

/** Returns the end of the piece that starts at `pos` (pos < end); pieces tile the text. */
export type Scanner = (s: string, pos: number, end: number) => number;

const OTHER = CLS_L | CLS_N | CLS_WS; // none of these bits set = [^\s\p{L}\p{N}]

// Classes of ASCII characters, read directly in the scanners' inner loops.
const ASCII = new Uint8Array(128);
for (let c = 0; c < 128; c++) ASCII[c] = classAt(String.fromCharCode(c), 0, 1);

/** Whitespace run from p; returns its end. Every \s character is in the BMP. */
function wsRun(s: string, p: number, end: number): number {
  let r = p + 1;
  while (r < end) {
    const c = s.charCodeAt(r);
    if (c < 128 ? (ASCII[c]! & CLS_WS) === 0 : (classAt(s, r, end) & CLS_WS) === 0) break;
    r++;
  }
  return r;
}

/** Run of code points having all bits `want` (or, with want 0, none of OTHER) from p. */
function run(s: string, p: number, end: number, want: number): number {
  while (p < end) {
    const c = s.charCodeAt(p);
    if (c < 128) {
      const k = ASCII[c]!;
      if (want === 0 ? (k & OTHER) !== 0 : (k & want) === 0) break;
      p++;
      continue;
    }
    const k = classAt(s, p, end);
    if (want === 0 ? (k & OTHER) !== 0 : (k & want) === 0) break;
    p += 1 + (k >> 8);
  }
  return p;
}

/** `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` */
export const scanR50k: Scanner = (s, p, end) => {
  const c = s.charCodeAt(p);
  if (c === 39 && p + 1 < end) {
    const d = s.charCodeAt(p + 1);
    if (d === 115 || d === 116 || d === 109 || d === 100) return p + 2; // 's 't 'm 'd
    if (p + 2 < end) {
      const e = s.charCodeAt(p + 2);
      if ((d === 114 || d === 118) && e === 101) return p + 3; // 're 've
      if (d === 108 && e === 108) return p + 3; // 'll
    }
  }
  let q = p;
  let k = classAt(s, p, end);
  if (c === 32 && p + 1 < end) {
    const k2 = classAt(s, p + 1, end);
    if ((k2 & CLS_WS) === 0) {
      q = p + 1;
      k = k2;
    }
  }
  if (k & CLS_L) return run(s, q, end, CLS_L);
  if (k & CLS_N) return run(s, q, end, CLS_N);
  if ((k & OTHER) === 0) return run(s, q, end, 0);
  // \s+(?!\S) gives back the last whitespace character to the next piece, unless the run is a
  // single character (then \s+ takes it) or reaches the end.
  const r = wsRun(s, p, end);
  return r === end || r - p === 1 ? r : r - 1;
};

function isLetterAfterApostrophe(d: number): boolean {
  d |= 32;
  return d === 115 || d === 116 || d === 109 || d === 100;
}

/** cl100k: contractions (any case), `[^\r\n\p{L}\p{N}]?\p{L}+`, `\p{N}{1,3}`, punctuation runs, newlines, whitespace. */
export const scanCl100k: Scanner = (s, p, end) => {
  const c = s.charCodeAt(p);
  if (c === 39 && p + 1 < end) {
    const d = s.charCodeAt(p + 1);
    if (isLetterAfterApostrophe(d)) return p + 2;
    if (p + 2 < end) {
      // OR-ing 32 folds exactly the ASCII capitals onto the small letters and nothing else onto them.
      const d2 = d | 32;
      const e = s.charCodeAt(p + 2) | 32;
      if ((d2 === 114 || d2 === 118) && e === 101) return p + 3; // 're 've
      if (d2 === 108 && e === 108) return p + 3; // 'll
    }
  }
  const k = classAt(s, p, end);
  if (k & CLS_L) return run(s, p, end, CLS_L);
  if ((k & CLS_N) === 0 && c !== 13 && c !== 10) {
    const w = 1 + (k >> 8);
    if (p + w < end && classAt(s, p + w, end) & CLS_L) return run(s, p + w, end, CLS_L);
  }
  if (k & CLS_N) {
    let q = p;
    for (let i = 0; i < 3 && q < end; i++) {
      const kk = classAt(s, q, end);
      if ((kk & CLS_N) === 0) break;
      q += 1 + (kk >> 8);
    }
    return q;
  }
  let q = p;
  let kq = k;
  if (c === 32 && p + 1 < end) {
    const k2 = classAt(s, p + 1, end);
    if ((k2 & OTHER) === 0) {
      q = p + 1;
      kq = k2;
    }
  }
  if ((kq & OTHER) === 0) {
    let r = run(s, q, end, 0);
    while (r < end) {
      const ch = s.charCodeAt(r);
      if (ch !== 13 && ch !== 10) break;
      r++;
    }
    return r;
  }
  // Whitespace at p. \s*[\r\n]+ ends after the run's last newline, if it has one.
  const r = wsRun(s, p, end);
  for (let i = r - 1; i >= p; i--) {
    const ch = s.charCodeAt(i);
    if (ch === 13 || ch === 10) return i + 1;
  }
  return r === end || r - p === 1 ? r : r - 1;
};

/**
 * A pre-tokenizer: a pattern, and either a scanner (built-in patterns) or a global regular
 * expression whose matches are the pieces (text no alternative matches is dropped, as in tiktoken).
 */
export interface PreTokenizer {
  readonly pattern: string;
  readonly scan: Scanner | null;
  readonly regex: RegExp;
}

/**
 * Oniguruma / Rust-regex patterns from tokenizer.json files use inline case-insensitive groups such as
 * `(?i:'s|'t|'re)`, which JavaScript before ES2025 lacks: expand their ASCII letters into classes.
 */
function translatePattern(pattern: string): string {
  return pattern.replace(/\(\?i:((?:[^()\\]|\\.)*)\)/g, (_m, body: string) => {
    let out = '(?:';
    for (let i = 0; i < body.length; i++) {
      const ch = body[i]!;
      if (ch === '\\') {
        out += ch + (body[i + 1] ?? '');
        i++;
      } else if (/[a-zA-Z]/.test(ch)) {
        out += `[${ch.toLowerCase()}${ch.toUpperCase()}]`;
      } else {
        out += ch;
      }
    }
    return out + ')';
  });
}

const CL100K_HF = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** Builds the pre-tokenizer for a pattern (a built-in name or a regular expression). */
export function preTokenizer(patternOrName: string): PreTokenizer {
  const pattern = PATTERNS[patternOrName] ?? patternOrName;
  let scan: Scanner | null = null;
  if (pattern === R50K_PATTERN) scan = scanR50k;
  else if (pattern === CL100K_PATTERN || pattern === CL100K_HF) scan = scanCl100k;
  let regex: RegExp;
  try {
    regex = new RegExp(translatePattern(pattern), 'gu');
  } catch (e) {
    throw new UnsupportedTokenizerError(
      `the pre-tokenizer pattern ${JSON.stringify(pattern)} is not a valid JavaScript regular expression: ${(e as Error).message}`,
    );
  }
  return { pattern, scan, regex };
}

/** Pieces of text[start, end) as [start, end) pairs, for callers off the hot path (training, tests). */
export function splitPieces(pre: PreTokenizer, text: string, start = 0, end = text.length): number[] {
  const out: number[] = [];
  if (pre.scan) {
    for (let p = start; p < end; ) {
      const q = pre.scan(text, p, end);
      out.push(p, q);
      p = q;
    }
    return out;
  }
  const sub = start === 0 && end === text.length ? text : text.slice(start, end);
  const re = pre.regex;
  re.lastIndex = 0;
  for (let m = re.exec(sub); m !== null; m = re.exec(sub)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    out.push(start + m.index, start + m.index + m[0].length);
  }
  return out;
}
