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

/** Parses a .tiktoken rank file into id → bytes. */
export function parseTiktokenRanks(text: string, source = 'rank file'): (Uint8Array | null)[] {
  const tokens: (Uint8Array | null)[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const sp = line.indexOf(' ');
    const rank = sp > 0 ? Number(line.slice(sp + 1)) : NaN;
    if (!(Number.isInteger(rank) && rank >= 0) || !/^[A-Za-z0-9+/]*={0,2}$/.test(line.slice(0, sp))) {
      throw new TokenizerFormatError(`${source}, line ${i + 1}: expected "<base64 token> <rank>", got ${JSON.stringify(line.slice(0, 80))}`);
    }
    while (tokens.length <= rank) tokens.push(null);
    if (tokens[rank] !== null) throw new TokenizerFormatError(`${source}, line ${i + 1}: rank ${rank} appears twice`);
    tokens[rank] = new Uint8Array(Buffer.from(line.slice(0, sp), 'base64'));
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
