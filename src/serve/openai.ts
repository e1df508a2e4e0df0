// The OpenAI request bodies: field-by-field validation with errors that name the field (400 with
// OpenAI's error body), prompts to token ids (chat through the tokenizer's chat template), and the
// sampling parameters the engine takes. Extra fields follow vLLM: top_k, min_p,
// repetition_penalty, ignore_eos, stop_token_ids. Fields this server does not implement (tools,
// JSON mode, echo, suffix, best_of) are refused by name with a 400.
import { ArgumentError, PlinthError } from '../errors.js';
import { samplingParams, type SamplingParams } from '../infer/index.js';
import type { ChatMessage, Tokenizer } from '../tokenizers/index.js';

/** An error the server answers with OpenAI's body: {error: {message, type, param, code}}. */
export class ApiError extends PlinthError {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const invalid = (param: string, message: string) => new ApiError(400, message, param, 'invalid_value');

type Body = Record<string, unknown>;

/** Reads an optional field; null counts as absent, as in OpenAI's API. */
function field(body: Body, key: string): unknown {
  const v = body[key];
  return v === null ? undefined : v;
}

function numberField(body: Body, key: string, min: number, max: number, integer = false): number | undefined {
  const v = field(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ApiError(400, `'${key}' must be a number, got ${JSON.stringify(v)}`, key, 'invalid_type');
  if (integer && !Number.isInteger(v)) throw new ApiError(400, `'${key}' must be an integer, got ${v}`, key, 'invalid_type');
  if (v < min || v > max) throw invalid(key, `'${key}' must be between ${min} and ${max}, got ${v}`);
  return v;
}

function booleanField(body: Body, key: string): boolean | undefined {
  const v = field(body, key);
  if (v !== undefined && typeof v !== 'boolean') throw new ApiError(400, `'${key}' must be a boolean, got ${JSON.stringify(v)}`, key, 'invalid_type');
  return v;
}

function stringField(body: Body, key: string): string | undefined {
  const v = field(body, key);
  if (v !== undefined && typeof v !== 'string') throw new ApiError(400, `'${key}' must be a string, got ${JSON.stringify(v)}`, key, 'invalid_type');
  return v;
}

export function checkBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the request body must be a JSON object', null, 'invalid_body');
  return body as Body;
}

/** The `model` field, when given, must name a served model. */
export function checkModel(body: Body, modelIds: readonly string[]): string {
  const model = stringField(body, 'model');
  if (model === undefined) return modelIds[0]!;
  if (!modelIds.includes(model)) throw new ApiError(400, `the model '${model}' does not exist; this server has: ${modelIds.join(', ')}`, 'model', 'model_not_found');
  return model;
}

function tokenArray(v: unknown, param: string, vocabSize: number): number[] | null {
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number')) return null;
  for (const id of v as number[]) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw invalid(param, `'${param}' holds token id ${id}, outside the vocabulary [0, ${vocabSize})`);
  }
  return v as number[];
}

/** Prompt text → ids the way `plinth sample` feeds a model: after its beginning-of-text token. */
export function encodePrompt(tokenizer: Tokenizer, generationConfig: Record<string, unknown>, text: string): number[] {
  const num = (v: unknown) => (typeof v === 'number' ? v : Array.isArray(v) && typeof v[0] === 'number' ? (v[0] as number) : undefined);
  const bos = tokenizer.specialId('bosToken') ?? num(generationConfig.bos_token_id) ?? tokenizer.specialId('eosToken');
  const ids = tokenizer.encode(text);
  return bos !== undefined && ids[0] !== bos ? [bos, ...ids] : ids;
}

/** /v1/completions `prompt`: a string, strings, token ids, or lists of token ids. */
export function completionPrompts(body: Body, tokenizer: Tokenizer, generationConfig: Record<string, unknown>, vocabSize: number): number[][] {
  const p = body.prompt;
  if (typeof p === 'string') return [encodePrompt(tokenizer, generationConfig, p)];
  const ids = tokenArray(p, 'prompt', vocabSize);
  if (ids) return [ids];
  if (Array.isArray(p) && p.length > 0) {
    if (p.every((x) => typeof x === 'string')) return (p as string[]).map((s) => encodePrompt(tokenizer, generationConfig, s));
    const lists = p.map((x) => tokenArray(x, 'prompt', vocabSize));
    if (lists.every((x) => x !== null)) return lists as number[][];
  }
  throw new ApiError(400, "'prompt' must be a string, a non-empty array of strings, of token ids, or of arrays of token ids", 'prompt', 'invalid_type');
}

/** /v1/chat/completions `messages` → ids through the chat template, ready for the assistant's turn. */
export function chatPrompt(body: Body, tokenizer: Tokenizer): number[] {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw new ApiError(400, "'messages' must be a non-empty array", 'messages', 'invalid_type');
  const converted: ChatMessage[] = messages.map((m: unknown, i) => {
    const param = `messages[${i}]`;
    if (typeof m !== 'object' || m === null) throw new ApiError(400, `${param} must be an object with role and content`, param, 'invalid_type');
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== 'string') throw new ApiError(400, `${param}.role must be a string`, `${param}.role`, 'invalid_type');
    // Content is a string, null (an assistant turn that only called tools), or text parts.
    let text: string;
    if (typeof content === 'string') text = content;
    else if (content === null || content === undefined) text = '';
    else if (Array.isArray(content) && content.every((c) => c?.type === 'text' && typeof c.text === 'string')) text = content.map((c) => c.text as string).join('');
    else throw new ApiError(400, `${param}.content must be a string or an array of text parts`, `${param}.content`, 'invalid_type');
    return { role, content: text };
  });
  try {
    return tokenizer.applyChatTemplate(converted, { add_generation_prompt: true }).ids;
  } catch (e) {
    if (e instanceof PlinthError) throw new ApiError(400, `cannot apply the chat template: ${e.message}`, 'messages', 'invalid_value');
    throw e;
  }
}

/** End-of-turn tokens of the common chat templates: a chat reply ends at whichever the vocabulary has. */
const END_OF_TURN = ['<|im_end|>', '<|eot_id|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '</s>'];

export function stopTokenIds(tokenizer: Tokenizer, generationConfig: Record<string, unknown>, chat: boolean): number[] {
  const ids = new Set<number>();
  const eos = generationConfig.eos_token_id;
  for (const v of Array.isArray(eos) ? eos : [eos]) if (typeof v === 'number') ids.add(v);
  if (chat) {
    for (const t of END_OF_TURN) {
      const id = tokenizer.tokenToId(t);
      if (id !== undefined && tokenizer.isSpecial(id)) ids.add(id);
    }
  }
  return [...ids];
}

export interface GenerationSpec {
  n: number;
  stream: boolean;
  includeUsage: boolean;
  /** Parameters shared by every choice; maxTokens is set per prompt, seed per choice. */
  params: SamplingParams;
  /** max_tokens as given, or null for "up to the context". */
  maxTokens: number | null;
}

const unsupported = (param: string, message: string) => new ApiError(400, message, param, 'unsupported_parameter');

/** Fields of OpenAI's API this server does not implement: a request that relies on one is refused
 *  by name rather than answered as if it had not been asked. */
function refuseUnsupported(body: Body, kind: 'chat' | 'completion'): void {
  const rf = field(body, 'response_format');
  if (rf !== undefined && !(typeof rf === 'object' && !Array.isArray(rf) && (rf as Body).type === 'text')) {
    throw unsupported('response_format', "'response_format' other than {\"type\": \"text\"} (JSON mode, JSON schemas) is not supported");
  }
  for (const key of ['tools', 'functions']) {
    const v = field(body, key);
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) throw unsupported(key, `'${key}': tool and function calling are not supported`);
  }
  for (const key of ['tool_choice', 'function_call']) {
    const v = field(body, key);
    if (v !== undefined && v !== 'none' && v !== 'auto') throw unsupported(key, `'${key}': tool and function calling are not supported`);
  }
  if (kind === 'completion') {
    if (booleanField(body, 'echo')) throw unsupported('echo', "'echo' is not supported");
    const suffix = stringField(body, 'suffix');
    if (suffix) throw unsupported('suffix', "'suffix' (insertion) is not supported");
    const bestOf = numberField(body, 'best_of', 1, 128, true);
    const n = numberField(body, 'n', 1, 128, true) ?? 1;
    if (bestOf !== undefined && bestOf !== n) throw unsupported('best_of', `'best_of' other than n is not supported (got best_of ${bestOf}, n ${n})`);
  }
}

/** OpenAI's `logit_bias`: {"token id": bias in [-100, 100]}. */
function logitBias(body: Body, vocabSize: number): [number, number][] {
  const v = field(body, 'logit_bias');
  if (v === undefined) return [];
  if (typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, "'logit_bias' must be an object mapping token ids to biases", 'logit_bias', 'invalid_type');
  return Object.entries(v as Body).map(([key, b]) => {
    const id = Number(key);
    if (!/^[0-9]+$/.test(key) || id >= vocabSize) throw invalid('logit_bias', `'logit_bias' key ${JSON.stringify(key)} is not a token id in [0, ${vocabSize})`);
    if (typeof b !== 'number' || !(b >= -100 && b <= 100)) throw invalid('logit_bias', `'logit_bias' for token ${key} must be a number in [-100, 100], got ${JSON.stringify(b)}`);
    return [id, b];
  });
}

/** The sampling fields shared by completions and chat. */
export function generationSpec(body: Body, kind: 'chat' | 'completion', defaultStopIds: number[], vocabSize: number): GenerationSpec {
  refuseUnsupported(body, kind);
  const n = numberField(body, 'n', 1, 128, true) ?? 1;
  const stream = booleanField(body, 'stream') ?? false;
  const streamOptions = field(body, 'stream_options');
  if (streamOptions !== undefined && (typeof streamOptions !== 'object' || Array.isArray(streamOptions))) {
    throw new ApiError(400, "'stream_options' must be an object", 'stream_options', 'invalid_type');
  }
  const includeUsage = streamOptions ? booleanField(streamOptions as Body, 'include_usage') ?? false : false;
  if (streamOptions !== undefined && !stream) throw invalid('stream_options', "'stream_options' is only allowed when 'stream' is true");

  // max_completion_tokens is the newer name in chat; both must be ≥ 1. Whether they fit the
  // context is checked per prompt.
  const maxCompletion = kind === 'chat' ? numberField(body, 'max_completion_tokens', 1, Number.MAX_SAFE_INTEGER, true) : undefined;
  const maxTokens = maxCompletion ?? numberField(body, 'max_tokens', 1, Number.MAX_SAFE_INTEGER, true) ?? (kind === 'completion' ? 16 : null);

  const v = field(body, 'stop');
  let stop: string[] = [];
  if (typeof v === 'string') stop = [v];
  else if (Array.isArray(v) && v.every((s) => typeof s === 'string')) stop = v as string[];
  else if (v !== undefined) throw new ApiError(400, "'stop' must be a string or an array of strings", 'stop', 'invalid_type');
  if (stop.some((s) => s.length === 0)) throw invalid('stop', "'stop' strings must not be empty");

  let logprobs: number | null = null;
  if (kind === 'chat') {
    const on = booleanField(body, 'logprobs') ?? false;
    const top = numberField(body, 'top_logprobs', 0, 20, true);
    if (top !== undefined && !on) throw invalid('top_logprobs', "'top_logprobs' needs 'logprobs': true");
    if (on) logprobs = top ?? 0;
  } else {
    logprobs = numberField(body, 'logprobs', 0, 20, true) ?? null;
  }

  const extraStops = field(body, 'stop_token_ids');
  if (extraStops !== undefined && !(Array.isArray(extraStops) && extraStops.every((x) => Number.isInteger(x) && x >= 0))) {
    throw new ApiError(400, "'stop_token_ids' must be an array of token ids", 'stop_token_ids', 'invalid_type');
  }
  const topK = numberField(body, 'top_k', -1, 1e9, true);
  const partial: Partial<SamplingParams> = {
    temperature: numberField(body, 'temperature', 0, 2),
    topP: numberField(body, 'top_p', 0, 1),
    topK: topK === -1 ? 0 : topK,
    minP: numberField(body, 'min_p', 0, 1),
    repetitionPenalty: numberField(body, 'repetition_penalty', 0, 10),
    presencePenalty: numberField(body, 'presence_penalty', -2, 2),
    frequencyPenalty: numberField(body, 'frequency_penalty', -2, 2),
    seed: numberField(body, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true) ?? null,
    stop,
    stopTokenIds: [...defaultStopIds, ...((extraStops as number[] | undefined) ?? [])],
    ignoreEos: booleanField(body, 'ignore_eos'),
    logprobs,
    logitBias: logitBias(body, vocabSize),
    maxTokens: 1,
  };
  if (partial.topP === 0) throw invalid('top_p', "'top_p' must be greater than 0");
  if (partial.repetitionPenalty === 0) throw invalid('repetition_penalty', "'repetition_penalty' must be greater than 0");
  for (const k of Object.keys(partial) as (keyof SamplingParams)[]) if (partial[k] === undefined) delete partial[k];
  let params: SamplingParams;
  try {
    params = samplingParams(partial);
  } catch (e) {
    if (e instanceof ArgumentError) throw new ApiError(400, e.message, null, 'invalid_value');
    throw e;
  }
  return { n, stream, includeUsage, params, maxTokens };
}

/** New tokens for a prompt: max_tokens if it fits the context (else 400), or what is left of it. */
export function maxTokensFor(spec: GenerationSpec, promptLength: number, contextLength: number, param: string): number {
  const room = contextLength - promptLength;
  if (room <= 0 || (spec.maxTokens !== null && spec.maxTokens > room)) {
    const asked = spec.maxTokens === null ? '' : ` plus ${spec.maxTokens} new tokens`;
    throw new ApiError(400, `this model's maximum context length is ${contextLength} tokens, but the request has ${promptLength} prompt tokens${asked}: shorten the prompt or lower max_tokens`, param, 'context_length_exceeded');
  }
  return spec.maxTokens ?? room;
}

/** /v1/embeddings `input` → token ids, one list per input. */
export function embeddingInputs(body: Body, tokenizer: Tokenizer, vocabSize: number, contextLength: number): number[][] {
  const input = body.input;
  let lists: number[][] | null = null;
  if (typeof input === 'string') lists = [tokenizer.encode(input)];
  else if (Array.isArray(input) && input.length > 0) {
    if (input.every((x) => typeof x === 'string')) lists = (input as string[]).map((s) => tokenizer.encode(s));
    else if (input.every((x) => typeof x === 'number')) lists = [tokenArray(input, 'input', vocabSize)!];
    else if (input.every((x) => Array.isArray(x))) lists = input.map((x) => tokenArray(x, 'input', vocabSize) ?? []);
  }
  if (!lists) throw new ApiError(400, "'input' must be a string, an array of strings, of token ids, or of arrays of token ids", 'input', 'invalid_type');
  lists.forEach((ids, i) => {
    if (ids.length === 0) throw invalid('input', `input ${i} is empty`);
    if (ids.length > contextLength) throw new ApiError(400, `input ${i} has ${ids.length} tokens; this model's maximum context length is ${contextLength}`, 'input', 'context_length_exceeded');
  });
  return lists;
}

export function encodingFormat(body: Body): 'float' | 'base64' {
  const f = stringField(body, 'encoding_format') ?? 'float';
  if (f !== 'float' && f !== 'base64') throw invalid('encoding_format', `'encoding_format' must be 'float' or 'base64', got '${f}'`);
  return f;
}
