// The tokenizer users hold: added/special tokens that are never split, the model that encodes the
// text between them, the template that wraps a sequence in special tokens, offsets, batches with
// padding and truncation, chat templates, and saving to tokenizer.json.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import type { ChatMessage, ChatTemplateOptions } from './chat.js';
import { CHATML_TEMPLATE, renderChat } from './chat.js';
import type { Model } from './model.js';
import { IdBuffer } from './model.js';
import { utf8Encoder } from './unicode.js';

/** A token matched in raw text before the model runs, as in tokenizer.json's `added_tokens`. */
export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens (control tokens such as <|endoftext|>) can be skipped when decoding. */
  special: boolean;
  /** Absorb the whitespace to the left / right of the token. */
  lstrip?: boolean;
  rstrip?: boolean;
  singleWord?: boolean;
  normalized?: boolean;
}

/** tokenizer_config.json fields Plinth uses. */
export interface TokenizerConfig {
  bosToken?: string | null;
  eosToken?: string | null;
  padToken?: string | null;
  unkToken?: string | null;
  chatTemplate?: string | null;
  modelMaxLength?: number;
}

export interface EncodeOptions {
  /** Wrap the ids in the tokenizer's template ([CLS] … [SEP], <s> …); default true. */
  addSpecialTokens?: boolean;
  /**
   * Which special tokens are recognised in the text: 'all' (default), 'none' (encode them as
   * ordinary text), or a list. Non-special added tokens are always recognised.
   */
  allowedSpecial?: 'all' | 'none' | readonly string[];
}

export interface TokenEncoding {
  ids: number[];
  /** [start, end) of each token in the input string, in UTF-16 code units; [0, 0] for template tokens. */
  offsets: [number, number][];
}

export interface EncodeBatchOptions extends EncodeOptions {
  /** 'longest' pads to the longest sequence, 'max_length' to maxLength; true = 'longest'. Default: no padding. */
  padding?: boolean | 'longest' | 'max_length';
  /** Cut sequences to maxLength (the template's tokens are kept). */
  truncation?: boolean;
  maxLength?: number;
  padSide?: 'left' | 'right';
  /** Id used for padding; default: the pad token, else the end-of-text token. */
  padId?: number;
}

export interface BatchEncoding {
  ids: number[][];
  /** 1 for real tokens, 0 for padding. */
  attentionMask: number[][];
  offsets: [number, number][][];
}

export interface ChatEncoding {
  text: string;
  ids: number[];
  /** 1 for tokens of assistant turns (what SFT trains on), 0 elsewhere. */
  assistantMask: number[];
}

export interface TokenizerParts {
  model: Model;
  addedTokens?: AddedToken[];
  /** Ids put before / after every sequence when addSpecialTokens is on. */
  prefix?: number[];
  suffix?: number[];
  config?: TokenizerConfig;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

export class Tokenizer {
  readonly model: Model;
  readonly prefix: number[];
  readonly suffix: number[];
  readonly config: TokenizerConfig;
  private added: AddedToken[] = [];
  private addedById = new Map<number, string>();
  private addedByContent = new Map<string, AddedToken>();
  private specialIds = new Set<number>();
  private matcher: RegExp | null = null;
  // Reused output buffers (encoding is synchronous, so one pair per tokenizer suffices).
  private idBuf = new IdBuffer();
  private offBuf = new IdBuffer();

  constructor(parts: TokenizerParts) {
    this.model = parts.model;
    this.prefix = parts.prefix ?? [];
    this.suffix = parts.suffix ?? [];
    this.config = parts.config ?? {};
    this.registerAdded(parts.addedTokens ?? []);
  }

  private registerAdded(tokens: AddedToken[]): void {
    for (const t of tokens) {
      if (t.content === '') throw new ArgumentError(`added token ${t.id} has empty content`);
      this.added.push(t);
      this.addedById.set(t.id, t.content);
      this.addedByContent.set(t.content, t);
      if (t.special) this.specialIds.add(t.id);
    }
    // Longest first, so that of two tokens matching at one position the longer wins.
    const contents = [...this.addedByContent.keys()].sort((a, b) => b.length - a.length);
    this.matcher = contents.length > 0 ? new RegExp(contents.map(escapeRegExp).join('|'), 'g') : null;
  }

  /** Adds special tokens (ids after the current vocabulary); returns their ids. Existing ones keep theirs. */
  addSpecialTokens(contents: readonly string[]): number[] {
    const fresh: AddedToken[] = [];
    let next = this.vocabSize;
    const ids = contents.map((content) => {
      const id = this.tokenToId(content);
      if (id !== undefined) return id;
      const t: AddedToken = { id: next++, content, special: true };
      fresh.push(t);
      return t.id;
    });
    this.registerAdded(fresh);
    return ids;
  }

  /** Number of token ids: one more than the largest id (the embedding table's row count). */
  get vocabSize(): number {
    let n = this.model.size;
    for (const t of this.added) n = Math.max(n, t.id + 1);
    return n;
  }

  get addedTokens(): readonly AddedToken[] {
    return this.added;
  }

  tokenToId(token: string): number | undefined {
    return this.addedByContent.get(token)?.id ?? this.model.tokenToId(token);
  }

  idToToken(id: number): string | undefined {
    return this.addedById.get(id) ?? this.model.idToToken(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Id of a configured role token (bosToken, eosToken, padToken, unkToken), if the tokenizer has it. */
  specialId(role: 'bosToken' | 'eosToken' | 'padToken' | 'unkToken'): number | undefined {
    const t = this.config[role];
    return t ? this.tokenToId(t) : undefined;
  }

  clearCache(): void {
    this.model.clearCache();
  }

  encode(text: string, options?: EncodeOptions): number[] {
    this.idBuf.reset();
    this.encodeInto(text, options, this.idBuf, null);
    return this.idBuf.toArray();
  }

  /** encode() into an Int32Array, which is what tensors and token shards take. */
  encodeToInt32(text: string, options?: EncodeOptions): Int32Array {
    this.idBuf.reset();
    this.encodeInto(text, options, this.idBuf, null);
    return this.idBuf.data.slice(0, this.idBuf.length);
  }

  /** Number of tokens of text (no array is built). */
  count(text: string, options?: EncodeOptions): number {
    this.idBuf.reset();
    this.encodeInto(text, options, this.idBuf, null);
    return this.idBuf.length;
  }

  encodeWithOffsets(text: string, options?: EncodeOptions): TokenEncoding {
    this.idBuf.reset();
    this.offBuf.reset();
    this.encodeInto(text, options, this.idBuf, this.offBuf);
    const ids = this.idBuf.toArray();
    const o = this.offBuf.data;
    const offsets: [number, number][] = new Array(ids.length);
    for (let i = 0; i < ids.length; i++) offsets[i] = [o[2 * i]!, o[2 * i + 1]!];
    return { ids, offsets };
  }

  private encodeInto(text: string, options: EncodeOptions | undefined, ids: IdBuffer, offsets: IdBuffer | null): void {
    if (typeof text !== 'string') throw new ArgumentError(`encode expects a string, got ${typeof text}`);
    const addSpecial = options?.addSpecialTokens ?? true;
    if (addSpecial) for (const id of this.prefix) this.pushTemplate(id, ids, offsets);
    const allowed = options?.allowedSpecial ?? 'all';
    const allowedSet = Array.isArray(allowed) ? new Set(allowed) : null;
    let start = 0;
    const m = this.matcher;
    if (m !== null) {
      m.lastIndex = 0;
      for (let hit = m.exec(text); hit !== null; hit = m.exec(text)) {
        const tok = this.addedByContent.get(hit[0])!;
        const ok = !tok.special || allowed === 'all' || (allowedSet !== null && allowedSet.has(tok.content));
        if (!ok) {
          m.lastIndex = hit.index + 1;
          continue;
        }
        let s = hit.index;
        let e = s + hit[0].length;
        if (tok.lstrip) while (s > start && isSpace(text.charCodeAt(s - 1))) s--;
        if (tok.rstrip) while (e < text.length && isSpace(text.charCodeAt(e))) e++;
        if (s > start) this.model.encode(text, start, s, start === 0, ids, offsets);
        ids.push(tok.id);
        if (offsets) offsets.push2(hit.index, hit.index + hit[0].length);
        start = e;
        m.lastIndex = e;
      }
    }
    if (start < text.length) this.model.encode(text, start, text.length, start === 0, ids, offsets);
    if (addSpecial) for (const id of this.suffix) this.pushTemplate(id, ids, offsets);
  }

  private pushTemplate(id: number, ids: IdBuffer, offsets: IdBuffer | null): void {
    ids.push(id);
    if (offsets) offsets.push2(0, 0);
  }

  private checkIds(ids: ArrayLike<number>): void {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
      throw new ArgumentError('decode expects an array of token ids');
    }
  }

  /** Text of `ids`. Invalid UTF-8 (a multi-byte character cut between tokens) becomes U+FFFD; see decodeBytes. */
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string {
    this.checkIds(ids);
    return this.model.decode(this.dropSpecial(ids, options?.skipSpecialTokens ?? false), this.addedById);
  }

  /** The exact bytes of `ids` (byte-level models): lossless even when they are not valid UTF-8. */
  decodeBytes(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): Uint8Array {
    this.checkIds(ids);
    const kept = this.dropSpecial(ids, options?.skipSpecialTokens ?? false);
    if (this.model.decodeBytes) return this.model.decodeBytes(kept, this.addedById);
    return utf8Encoder.encode(this.model.decode(kept, this.addedById));
  }

  private dropSpecial(ids: ArrayLike<number>, skip: boolean): ArrayLike<number> {
    if (!skip || this.specialIds.size === 0) return ids;
    const out: number[] = [];
    for (let i = 0; i < ids.length; i++) if (!this.specialIds.has(ids[i]!)) out.push(ids[i]!);
    return out;
  }

  encodeBatch(texts: readonly string[], options: EncodeBatchOptions = {}): BatchEncoding {
    if (!Array.isArray(texts)) throw new ArgumentError('encodeBatch expects an array of strings');
    const { truncation = false, maxLength, padSide = 'right' } = options;
    const padding = options.padding === true ? 'longest' : options.padding || false;
    if ((truncation || padding === 'max_length') && !(Number.isInteger(maxLength) && maxLength! > 0)) {
      throw new ArgumentError(`truncation and padding: 'max_length' need a positive integer maxLength, got ${maxLength}`);
    }
    const addSpecial = options.addSpecialTokens ?? true;
    const reserved = addSpecial ? this.prefix.length + this.suffix.length : 0;
    if (truncation && maxLength! < reserved) {
      throw new ArgumentError(`maxLength ${maxLength} cannot hold the ${reserved} template tokens`);
    }
    const ids: number[][] = [];
    const offsets: [number, number][][] = [];
    for (const text of texts) {
      const enc = this.encodeWithOffsets(text, options);
      if (truncation && enc.ids.length > maxLength!) {
        // Cut the content, keep the template tokens at both ends.
        const keepHead = maxLength! - (addSpecial ? this.suffix.length : 0);
        const tail = enc.ids.length - (addSpecial ? this.suffix.length : 0);
        enc.ids.splice(keepHead, tail - keepHead);
        enc.offsets.splice(keepHead, tail - keepHead);
      }
      ids.push(enc.ids);
      offsets.push(enc.offsets);
    }
    const attentionMask = ids.map((row) => row.map(() => 1));
    if (padding) {
      const target = padding === 'max_length' ? maxLength! : Math.max(0, ...ids.map((r) => r.length));
      const padId = options.padId ?? this.specialId('padToken') ?? this.tokenToId('<|endoftext|>');
      if (padId === undefined) {
        throw new ArgumentError('padding needs a pad token: this tokenizer has none, pass padId');
      }
      for (let i = 0; i < ids.length; i++) {
        const n = target - ids[i]!.length;
        if (n <= 0) continue;
        const pads = new Array<number>(n).fill(padId);
        const zeros = new Array<number>(n).fill(0);
        const spans = Array.from({ length: n }, (): [number, number] => [0, 0]);
        if (padSide === 'left') {
          ids[i] = pads.concat(ids[i]!);
          attentionMask[i] = zeros.concat(attentionMask[i]!);
          offsets[i] = spans.concat(offsets[i]!);
        } else {
          ids[i]!.push(...pads);
          attentionMask[i]!.push(...zeros);
          offsets[i]!.push(...spans);
        }
      }
    }
    return { ids, attentionMask, offsets };
  }

  /**
   * Renders a conversation with the tokenizer's chat template (tokenizer_config.json's
   * chat_template, else ChatML) and encodes it, with the mask of the tokens of assistant turns.
   */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): ChatEncoding {
    const template = options.template ?? this.config.chatTemplate ?? CHATML_TEMPLATE;
    if (template === CHATML_TEMPLATE) {
      for (const t of ['<|im_start|>', '<|im_end|>']) {
        if (this.addedByContent.get(t)?.special !== true) {
          throw new ArgumentError(`the ChatML template needs the special token ${t}: add it with tokenizer.addSpecialTokens(['<|im_start|>', '<|im_end|>'])`);
        }
      }
    }
    const { text, spans, generationBlocks } = renderChat(template, messages, {
      bos_token: this.config.bosToken ?? '',
      eos_token: this.config.eosToken ?? '',
      ...options,
    });
    if (!generationBlocks) {
      // Without generation blocks only the content is known: extend it over the special tokens
      // that directly follow (the end-of-turn token the model must learn to produce).
      for (const span of spans) {
        for (;;) {
          const t = this.added.find((a) => a.special && text.startsWith(a.content, span[1]));
          if (!t) break;
          span[1] += t.content.length;
        }
      }
    }
    const enc = this.encodeWithOffsets(text, { addSpecialTokens: false });
    const assistantMask = enc.offsets.map(([s, e]) => {
      for (const [a, b] of spans) if (s < b && e > a) return 1;
      return 0;
    });
    return { text, ids: enc.ids, assistantMask };
  }

  /** The whole tokenizer.json document. */
  toJSON(): Record<string, unknown> {
    const parts = this.model.toJSON();
    const special = (id: number) => ({ SpecialToken: { id: this.idToToken(id), type_id: 0 } });
    const template =
      this.prefix.length + this.suffix.length === 0
        ? null
        : {
            type: 'TemplateProcessing',
            single: [...this.prefix.map(special), { Sequence: { id: 'A', type_id: 0 } }, ...this.suffix.map(special)],
            pair: [
              ...this.prefix.map(special),
              { Sequence: { id: 'A', type_id: 0 } },
              ...this.suffix.map(special),
              { Sequence: { id: 'B', type_id: 1 } },
              ...this.suffix.map((id) => ({ SpecialToken: { id: this.idToToken(id), type_id: 1 } })),
            ],
            special_tokens: Object.fromEntries(
              [...new Set([...this.prefix, ...this.suffix])].map((id) => {
                const t = this.idToToken(id)!;
                return [t, { id: t, ids: [id], tokens: [t] }];
              }),
            ),
          };
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [...this.added]
        .sort((a, b) => a.id - b.id)
        .map((t) => ({
          id: t.id,
          content: t.content,
          single_word: t.singleWord ?? false,
          lstrip: t.lstrip ?? false,
          rstrip: t.rstrip ?? false,
          normalized: t.normalized ?? false,
          special: t.special,
        })),
      normalizer: parts.normalizer,
      pre_tokenizer: parts.pre_tokenizer,
      post_processor: template,
      decoder: parts.decoder,
      model: parts.model,
    };
  }

  /** Writes tokenizer.json and tokenizer_config.json into dir (created if needed), each atomically. */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const c = this.config;
    const config: Record<string, unknown> = {
      tokenizer_class: 'PreTrainedTokenizerFast',
      model_max_length: c.modelMaxLength ?? 1e30,
      clean_up_tokenization_spaces: false,
      added_tokens_decoder: Object.fromEntries(
        this.added.map((t) => [
          String(t.id),
          { content: t.content, lstrip: t.lstrip ?? false, normalized: t.normalized ?? false, rstrip: t.rstrip ?? false, single_word: t.singleWord ?? false, special: t.special },
        ]),
      ),
    };
    if (c.bosToken) config.bos_token = c.bosToken;
    if (c.eosToken) config.eos_token = c.eosToken;
    if (c.padToken) config.pad_token = c.padToken;
    if (c.unkToken) config.unk_token = c.unkToken;
    if (c.chatTemplate) config.chat_template = c.chatTemplate;
    writeAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.toJSON(), null, 2));
    writeAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
  }
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

