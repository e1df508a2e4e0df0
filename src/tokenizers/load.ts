// loadTokenizer: a built-in encoding by name, a .tiktoken rank file, or a Hugging Face tokenizer folder.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { ByteLevelModel } from './bytelevel.js';
import { TokenizerFormatError } from './errors.js';
import { TIKTOKEN_ENCODINGS, builtinRanks, parseTiktokenRanks } from './tiktoken.js';
import { Tokenizer } from './tokenizer.js';
import { tokenizerFromJSON } from './tokenizer-json.js';

export interface LoadTokenizerOptions {
  /** For a .tiktoken file: its pre-tokenizer pattern or built-in name ('gpt2', 'cl100k', 'o200k'). */
  pattern?: string;
  /** For a .tiktoken file: special tokens and their ids. */
  specialTokens?: Record<string, number>;
  /** Capacity of the BPE merge cache in pieces (0 disables it). */
  cacheSize?: number;
}

function fromRanks(tokens: (Uint8Array | null)[], pattern: string, specials: Record<string, number>, cacheSize?: number): Tokenizer {
  const model = new ByteLevelModel({ tokens, pattern, cacheSize });
  const addedTokens = Object.entries(specials).map(([content, id]) => ({ id, content, special: true }));
  const eos = '<|endoftext|>' in specials ? '<|endoftext|>' : null;
  return new Tokenizer({ model, addedTokens, config: { eosToken: eos } });
}

function readJson(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerFormatError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Loads a tokenizer: 'r50k_base' (GPT-2), 'cl100k_base' or 'o200k_base' (when its rank file is
 * present); a .tiktoken rank file (with options.pattern); or a folder holding tokenizer.json (and
 * optionally tokenizer_config.json), or a tokenizer.json file.
 */
export function loadTokenizer(nameOrPath: string, options: LoadTokenizerOptions = {}): Tokenizer {
  if (typeof nameOrPath !== 'string' || nameOrPath === '') throw new ArgumentError('loadTokenizer expects an encoding name or a path');
  const builtin = TIKTOKEN_ENCODINGS[nameOrPath];
  if (builtin && !existsSync(nameOrPath)) {
    return fromRanks(builtinRanks(nameOrPath), builtin.pattern, builtin.specialTokens, options.cacheSize);
  }
  if (!existsSync(nameOrPath)) {
    throw new ArgumentError(
      `${JSON.stringify(nameOrPath)} is neither a built-in encoding (${Object.keys(TIKTOKEN_ENCODINGS).join(', ')}) nor an existing file or folder`,
    );
  }
  if (statSync(nameOrPath).isDirectory()) {
    const json = path.join(nameOrPath, 'tokenizer.json');
    if (!existsSync(json)) throw new TokenizerFormatError(`${nameOrPath} has no tokenizer.json`);
    const cfgFile = path.join(nameOrPath, 'tokenizer_config.json');
    const config = existsSync(cfgFile) ? readJson(cfgFile) : undefined;
    return tokenizerFromJSON(readJson(json), config, options);
  }
  if (nameOrPath.endsWith('.tiktoken')) {
    if (!options.pattern) throw new ArgumentError(`loading ${nameOrPath} needs options.pattern (e.g. 'cl100k' or a regular expression)`);
    return fromRanks(parseTiktokenRanks(readFileSync(nameOrPath, 'utf8'), nameOrPath), options.pattern, options.specialTokens ?? {}, options.cacheSize);
  }
  const cfgFile = path.join(path.dirname(nameOrPath), 'tokenizer_config.json');
  return tokenizerFromJSON(readJson(nameOrPath), existsSync(cfgFile) ? readJson(cfgFile) : undefined, options);
}
