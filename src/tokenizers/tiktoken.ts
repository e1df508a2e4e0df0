// tiktoken rank files and the built-in OpenAI encodings.
//
// A rank file has one token per line: the token's bytes in base64, a space, its rank (= its id).
// The encodings' patterns and special tokens are part of their definition (as in tiktoken's
// openai_public.py); their ranks are read from data/tokenizers/<name>.tiktoken, which
// scripts/write-tiktoken-ranks.mjs writes from the js-tiktoken package.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { TokenizerFormatError } from './errors.js';
import { CL100K_PATTERN, O200K_PATTERN, R50K_PATTERN } from './pretokenize.js';

export interface TiktokenEncoding {
  pattern: string;
  specialTokens: Record<string, number>;
}

export const TIKTOKEN_ENCODINGS: Record<string, TiktokenEncoding> = {
  r50k_base: { pattern: R50K_PATTERN, specialTokens: { '<|endoftext|>': 50256 } },
  gpt2: { pattern: R50K_PATTERN, specialTokens: { '<|endoftext|>': 50256 } },
  cl100k_base: {
    pattern: CL100K_PATTERN,
    specialTokens: {
      '<|endoftext|>': 100257,
      '<|fim_prefix|>': 100258,
      '<|fim_middle|>': 100259,
      '<|fim_suffix|>': 100260,
      '<|endofprompt|>': 100276,
    },
  },
  o200k_base: { pattern: O200K_PATTERN, specialTokens: { '<|endoftext|>': 199999, '<|endofprompt|>': 200018 } },
};

const B64 = new Int8Array(128).fill(-1);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((c, i) => (B64[c.charCodeAt(0)] = i));

/**
 * Parses a .tiktoken rank file into id → bytes. It decodes base64 by hand into one arena (the
 * tokens are views into it): a Buffer per line would make loading cl100k several times slower.
 */
export function parseTiktokenRanks(text: string, source = 'rank file'): (Uint8Array | null)[] {
  const arena = new Uint8Array(Math.ceil(text.length * 0.75));
  const starts: number[] = [];
  const ranks: number[] = [];
  let top = 0;
  let line = 1;
  const bad = (i: number): never => {
    const from = text.lastIndexOf('\n', i - 1) + 1;
    const to = text.indexOf('\n', i);
    throw new TokenizerFormatError(`${source}, line ${line}: expected "<base64 token> <rank>", got ${JSON.stringify(text.slice(from, to < 0 ? undefined : to).slice(0, 80))}`);
  };
  for (let i = 0; i < text.length; ) {
    const c0 = text.charCodeAt(i);
    if (c0 === 10 || c0 === 13) {
      if (c0 === 10) line++;
      i++;
      continue;
    }
    // base64 token: groups of four symbols, '=' padding at the end
    const begin = top;
    let acc = 0;
    let bits = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 32) break;
      if (c === 61) continue; // '='
      const v = c < 128 ? B64[c]! : -1;
      if (v < 0) bad(i);
      acc = ((acc << 6) | v) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        arena[top++] = (acc >> bits) & 255;
      }
    }
    if (i >= text.length || text.charCodeAt(i) !== 32) bad(i);
    i++;
    let rank = 0;
    let digits = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 || c === 13) break;
      if (c < 48 || c > 57) bad(i);
      rank = rank * 10 + (c - 48);
      digits++;
    }
    if (digits === 0) bad(i);
    starts.push(begin, top);
    ranks.push(rank);
  }
  let size = 0;
  for (const r of ranks) size = Math.max(size, r + 1);
  const tokens: (Uint8Array | null)[] = new Array(size).fill(null);
  for (let k = 0; k < ranks.length; k++) {
    const r = ranks[k]!;
    if (tokens[r] !== null) throw new TokenizerFormatError(`${source}: rank ${r} appears twice`);
    tokens[r] = arena.subarray(starts[2 * k]!, starts[2 * k + 1]!);
  }
  return tokens;
}

/** Writes id → bytes as a .tiktoken rank file. */
export function formatTiktokenRanks(tokens: (Uint8Array | null)[]): string {
  const lines: string[] = [];
  tokens.forEach((t, id) => {
    if (t) lines.push(`${Buffer.from(t).toString('base64')} ${id}`);
  });
  return lines.join('\n') + '\n';
}

/** The folder holding the built-in rank files: <package root>/data/tokenizers. */
export function tokenizerDataDir(): string {
  // This module is dist/src/tokenizers/tiktoken.js once compiled: three levels below the root.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../data/tokenizers');
}

/** Rank file of a built-in encoding. */
export function builtinRanks(name: string): (Uint8Array | null)[] {
  if (!(name in TIKTOKEN_ENCODINGS)) {
    throw new ArgumentError(`unknown encoding ${JSON.stringify(name)}; built-in: ${Object.keys(TIKTOKEN_ENCODINGS).join(', ')}`);
  }
  const file = path.join(tokenizerDataDir(), `${name === 'gpt2' ? 'r50k_base' : name}.tiktoken`);
  if (!existsSync(file)) {
    throw new TokenizerFormatError(
      `the rank file for ${name} is missing (${file}); write it with "node scripts/write-tiktoken-ranks.mjs ${name}" (needs the js-tiktoken package)`,
    );
  }
  return parseTiktokenRanks(readFileSync(file, 'utf8'), file);
}
