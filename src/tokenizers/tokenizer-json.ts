// Reading Hugging Face tokenizer.json (and tokenizer_config.json) into a Tokenizer. Writing is
// Tokenizer.toJSON / save. Supported: BPE (byte-level, as GPT-2 / Llama 3; SentencePiece style with
// "▁" and byte fallback, as Llama 2) and WordPiece (BERT). Anything else is refused by name.
import { ByteLevelModel, byteLevelTokens } from './bytelevel.js';
import { TokenizerFormatError, UnsupportedTokenizerError } from './errors.js';
import type { Model } from './model.js';
import { R50K_PATTERN } from './pretokenize.js';
import { SPACE_MARK, SentencePieceBpe } from './sentencepiece.js';
import type { AddedToken, TokenizerConfig } from './tokenizer.js';
import { Tokenizer } from './tokenizer.js';
import { WordPiece } from './wordpiece.js';

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function fail(where: string, what: string): never {
  throw new TokenizerFormatError(`malformed tokenizer.json: ${where} ${what}`);
}

function readVocab(model: Json): Map<string, number> {
  if (!isObject(model.vocab)) fail('model.vocab', 'must be an object of token → id');
  const vocab = new Map<string, number>();
  for (const [tok, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) fail(`model.vocab[${JSON.stringify(tok)}]`, `must be a non-negative integer id, got ${JSON.stringify(id)}`);
    vocab.set(tok, id as number);
  }
  return vocab;
}

function readMerges(model: Json, vocab: Map<string, number>): [number, number][] {
  const raw = model.merges ?? [];
  if (!Array.isArray(raw)) fail('model.merges', 'must be an array');
  return raw.map((m: unknown, i: number): [number, number] => {
    let pair: unknown[];
    if (typeof m === 'string') {
      const sp = m.indexOf(' ', 1);
      pair = sp < 0 ? [m] : [m.slice(0, sp), m.slice(sp + 1)];
    } else pair = Array.isArray(m) ? m : [];
    if (pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      fail(`model.merges[${i}]`, `must be "left right" or [left, right], got ${JSON.stringify(m)}`);
    }
    const a = vocab.get(pair[0] as string);
    const b = vocab.get(pair[1] as string);
    if (a === undefined || b === undefined) fail(`model.merges[${i}]`, `${JSON.stringify(m)} names a token that is not in the vocabulary`);
    return [a, b];
  });
}

/** Flattens a pre-tokenizer / normalizer / decoder that may be a Sequence into its steps. */
function steps(x: unknown, listKey: string): Json[] {
  if (x === null || x === undefined) return [];
  if (!isObject(x) || typeof x.type !== 'string') fail('component', `must be an object with a "type", got ${JSON.stringify(x)?.slice(0, 80)}`);
  if (x.type === 'Sequence') {
    const list = x[listKey];
    if (!Array.isArray(list)) fail(`Sequence.${listKey}`, 'must be an array');
    return list.flatMap((y: unknown) => steps(y, listKey));
  }
  return [x];
}

function byteLevelModel(model: Json, json: Json, vocab: Map<string, number>, cacheSize?: number): Model {
  if (json.normalizer !== null && json.normalizer !== undefined) {
    throw new UnsupportedTokenizerError(`byte-level BPE with a normalizer (${(json.normalizer as Json).type}) is not supported`);
  }
  let pattern: string | null = null;
  let addPrefixSpace = false;
  for (const s of steps(json.pre_tokenizer, 'pretokenizers')) {
    if (s.type === 'ByteLevel') {
      addPrefixSpace = s.add_prefix_space === true;
      if (s.use_regex !== false) pattern = R50K_PATTERN;
    } else if (s.type === 'Split') {
      const p = isObject(s.pattern) ? (s.pattern.Regex ?? s.pattern.String) : undefined;
      if (typeof p !== 'string') fail('pre_tokenizer Split.pattern', 'must be {"Regex": ...} or {"String": ...}');
      if (s.behavior !== 'Isolated' || s.invert === true) {
        throw new UnsupportedTokenizerError(`pre_tokenizer Split with behavior ${s.behavior}${s.invert ? ' (inverted)' : ''} is not supported (only Isolated)`);
      }
      if (pattern !== null) throw new UnsupportedTokenizerError('more than one splitting pre-tokenizer is not supported');
      pattern = isObject(s.pattern) && s.pattern.Regex !== undefined ? p : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    } else {
      throw new UnsupportedTokenizerError(`pre_tokenizer ${s.type} is not supported with byte-level BPE`);
    }
  }
  const tokens = byteLevelTokens(vocab);
  if (typeof tokens === 'string') fail('model.vocab', `token ${JSON.stringify(tokens)} is not a byte-level token (GPT-2 byte symbols)`);
  const unk = typeof model.unk_token === 'string' ? vocab.get(model.unk_token) : undefined;
  return new ByteLevelModel({
    tokens,
    merges: readMerges(model, vocab),
    pattern: pattern ?? '[\\s\\S]+',
    addPrefixSpace,
    ignoreMerges: model.ignore_merges === true,
    unkId: unk,
    cacheSize,
  });
}

function sentencePieceModel(model: Json, json: Json, vocab: Map<string, number>): Model {
  let prepend: 'always' | 'first' | 'never' = 'never';
  let style: 'normalizer' | 'metaspace' = 'normalizer';
  let replaces = false;
  for (const n of steps(json.normalizer, 'normalizers')) {
    if (n.type === 'Prepend' && n.prepend === SPACE_MARK) prepend = 'always';
    else if (n.type === 'Replace' && isObject(n.pattern) && n.pattern.String === ' ' && n.content === SPACE_MARK) replaces = true;
    else throw new UnsupportedTokenizerError(`normalizer ${n.type} is not supported with SentencePiece-style BPE`);
  }
  for (const p of steps(json.pre_tokenizer, 'pretokenizers')) {
    if (p.type !== 'Metaspace' || (p.replacement ?? SPACE_MARK) !== SPACE_MARK) {
      throw new UnsupportedTokenizerError(`pre_tokenizer ${p.type} is not supported with SentencePiece-style BPE`);
    }
    if (p.split === true) throw new UnsupportedTokenizerError('pre_tokenizer Metaspace with split: true is not supported');
    style = 'metaspace';
    replaces = true;
    const scheme = p.prepend_scheme ?? (p.add_prefix_space === false ? 'never' : 'always');
    if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') fail('pre_tokenizer Metaspace.prepend_scheme', `unknown value ${JSON.stringify(scheme)}`);
    prepend = scheme;
  }
  if (!replaces) throw new UnsupportedTokenizerError('BPE without a byte-level or "▁" (SentencePiece) pre-tokenization is not supported');
  let size = 0;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  const pieces: (string | null)[] = new Array(size).fill(null);
  for (const [tok, id] of vocab) pieces[id] = tok;
  const unk = typeof model.unk_token === 'string' ? vocab.get(model.unk_token) : undefined;
  return new SentencePieceBpe({
    pieces,
    merges: readMerges(model, vocab),
    unkId: unk ?? -1,
    byteFallback: model.byte_fallback === true,
    fuseUnk: model.fuse_unk === true,
    prepend,
    style,
  });
}

function wordPieceModel(model: Json, json: Json, vocab: Map<string, number>): Model {
  const norm = steps(json.normalizer, 'normalizers');
  const bert = norm.find((n) => n.type === 'BertNormalizer');
  for (const n of norm) if (n.type !== 'BertNormalizer') throw new UnsupportedTokenizerError(`normalizer ${n.type} is not supported with WordPiece`);
  for (const p of steps(json.pre_tokenizer, 'pretokenizers')) {
    if (p.type !== 'BertPreTokenizer') throw new UnsupportedTokenizerError(`pre_tokenizer ${p.type} is not supported with WordPiece`);
  }
  let size = 0;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  const list: (string | null)[] = new Array(size).fill(null);
  for (const [tok, id] of vocab) list[id] = tok;
  if (typeof model.unk_token !== 'string') fail('model.unk_token', 'must be a string for WordPiece');
  return new WordPiece({
    vocab: list,
    unkToken: model.unk_token,
    prefix: typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '##',
    maxInputCharsPerWord: typeof model.max_input_chars_per_word === 'number' ? model.max_input_chars_per_word : 100,
    lowercase: bert ? bert.lowercase !== false : false,
    stripAccents: bert ? ((bert.strip_accents as boolean | null | undefined) ?? null) : false,
    cleanText: bert ? bert.clean_text !== false : false,
    handleChineseChars: bert ? bert.handle_chinese_chars !== false : false,
  });
}

function readAdded(json: Json): AddedToken[] {
  const raw = json.added_tokens ?? [];
  if (!Array.isArray(raw)) fail('added_tokens', 'must be an array');
  return raw.map((t: unknown, i: number) => {
    if (!isObject(t) || !Number.isInteger(t.id) || typeof t.content !== 'string' || t.content === '') {
      fail(`added_tokens[${i}]`, 'must have an integer id and a non-empty string content');
    }
    return {
      id: t.id as number,
      content: t.content as string,
      special: t.special === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      singleWord: t.single_word === true,
      normalized: t.normalized === true,
    };
  });
}

function readTemplate(json: Json, idOf: (t: string) => number | undefined): { prefix: number[]; suffix: number[] } {
  const prefix: number[] = [];
  const suffix: number[] = [];
  const need = (tok: unknown, where: string): number => {
    const id = typeof tok === 'string' ? idOf(tok) : undefined;
    if (id === undefined) fail(where, `names token ${JSON.stringify(tok)}, which is not in the vocabulary`);
    return id;
  };
  for (const p of steps(json.post_processor, 'processors')) {
    if (p.type === 'ByteLevel') continue;
    if (p.type === 'BertProcessing' || p.type === 'RobertaProcessing') {
      prefix.push(need(Array.isArray(p.cls) ? p.cls[0] : undefined, `post_processor ${p.type}.cls`));
      suffix.push(need(Array.isArray(p.sep) ? p.sep[0] : undefined, `post_processor ${p.type}.sep`));
    } else if (p.type === 'TemplateProcessing') {
      if (!Array.isArray(p.single)) fail('post_processor TemplateProcessing.single', 'must be an array');
      const specials = isObject(p.special_tokens) ? p.special_tokens : {};
      let seen = false;
      for (const piece of p.single as unknown[]) {
        if (isObject(piece) && isObject(piece.Sequence)) {
          seen = true;
          continue;
        }
        if (!isObject(piece) || !isObject(piece.SpecialToken)) fail('post_processor TemplateProcessing.single', `has an unknown piece ${JSON.stringify(piece)}`);
        const name = piece.SpecialToken.id as string;
        const entry = specials[name];
        const ids = isObject(entry) && Array.isArray(entry.ids) ? (entry.ids as number[]) : [need(name, 'post_processor TemplateProcessing')];
        (seen ? suffix : prefix).push(...ids);
      }
    } else {
      throw new UnsupportedTokenizerError(`post_processor ${p.type} is not supported`);
    }
  }
  return { prefix, suffix };
}

function tokenField(x: unknown): string | null {
  if (typeof x === 'string') return x;
  if (isObject(x) && typeof x.content === 'string') return x.content;
  return null;
}

/** tokenizer_config.json fields (special token names, chat template, maximum length). */
export function readTokenizerConfig(config: unknown): TokenizerConfig {
  if (!isObject(config)) return {};
  let chat: string | null = null;
  if (typeof config.chat_template === 'string') chat = config.chat_template;
  else if (Array.isArray(config.chat_template)) {
    const named = config.chat_template as { name?: string; template?: string }[];
    chat = (named.find((t) => t.name === 'default') ?? named[0])?.template ?? null;
  }
  return {
    bosToken: tokenField(config.bos_token),
    eosToken: tokenField(config.eos_token),
    padToken: tokenField(config.pad_token),
    unkToken: tokenField(config.unk_token),
    chatTemplate: chat,
    modelMaxLength: typeof config.model_max_length === 'number' ? config.model_max_length : undefined,
  };
}

/** Builds a tokenizer from a parsed tokenizer.json (and optionally tokenizer_config.json). */
export function tokenizerFromJSON(json: unknown, config?: unknown, options: { cacheSize?: number } = {}): Tokenizer {
  if (!isObject(json)) fail('document', 'must be a JSON object');
  if (!isObject(json.model)) fail('model', 'is missing');
  const model = json.model;
  const type = model.type ?? (model.merges !== undefined ? 'BPE' : model.continuing_subword_prefix !== undefined ? 'WordPiece' : undefined);
  if (typeof type !== 'string') fail('model.type', 'is missing');
  let m: Model;
  if (type === 'BPE') {
    const vocab = readVocab(model);
    const pre = steps(json.pre_tokenizer, 'pretokenizers');
    const byteLevel = pre.some((p) => p.type === 'ByteLevel') || (isObject(json.decoder) && json.decoder.type === 'ByteLevel');
    m = byteLevel ? byteLevelModel(model, json, vocab, options.cacheSize) : sentencePieceModel(model, json, vocab);
  } else if (type === 'WordPiece') {
    m = wordPieceModel(model, json, readVocab(model));
  } else {
    throw new UnsupportedTokenizerError(`tokenizer model type ${JSON.stringify(type)} is not supported (supported: BPE, WordPiece)`);
  }
  const added = readAdded(json);
  const byContent = new Map(added.map((t) => [t.content, t.id]));
  const { prefix, suffix } = readTemplate(json, (t) => byContent.get(t) ?? m.tokenToId(t));
  const cfg = readTokenizerConfig(config);
  if (m.type === 'WordPiece' && !cfg.padToken && byContent.has('[PAD]')) cfg.padToken = '[PAD]';
  return new Tokenizer({ model: m, addedTokens: added, prefix, suffix, config: cfg });
}
