// Instruction and preference data as JSONL, one example per line:
//   instruction: {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}
//                (the OpenAI chat shape) or {"prompt": ..., "response": ...};
//   preference:  {"prompt": ..., "chosen": ..., "rejected": ...} (TRL's shape; prompt may also be a
//                list of messages, chosen and rejected a list holding the assistant's message).
// A line that is not such a record is a problem reported with its line number; `onError` says
// whether problems are skipped (and listed) or the whole file is rejected.
import { readFileSync } from 'node:fs';
import type { ChatMessage } from '../tokenizers/index.js';
import { DataError } from './errors.js';

export interface InstructionExample {
  messages: ChatMessage[];
}

export interface PreferenceExample {
  /** The conversation before the response (usually one user message). */
  prompt: ChatMessage[];
  chosen: string;
  rejected: string;
}

export interface JsonlProblem {
  /** 1-based line number in the file. */
  line: number;
  message: string;
}

export interface JsonlOptions {
  /** 'skip' drops bad lines and lists them in `problems`; 'reject' (default) throws on the first file with any. */
  onError?: 'skip' | 'reject';
  /** Named in error messages (default 'input'). */
  source?: string;
}

export interface JsonlResult<T> {
  records: T[];
  problems: JsonlProblem[];
}

class LineError extends Error {}

function fail(message: string): never {
  throw new LineError(message);
}

function message(v: unknown, where: string): ChatMessage {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${where} is not an object with role and content`);
  const m = v as Record<string, unknown>;
  if (typeof m.role !== 'string' || m.role === '') fail(`${where} has no string "role"`);
  if (typeof m.content !== 'string') fail(`${where} has no string "content"`);
  return { role: m.role, content: m.content };
}

function messages(v: unknown, field: string): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) fail(`"${field}" must be a non-empty array of messages`);
  return v.map((m, i) => message(m, `${field}[${i}]`));
}

/** A response given as a string or as a list ending with the assistant's message. */
function response(v: unknown, field: string): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const ms = messages(v, field);
    const last = ms[ms.length - 1];
    if (last.role !== 'assistant') fail(`"${field}" must end with an assistant message`);
    return last.content;
  }
  return fail(`"${field}" must be a string or a list of messages`);
}

function asObject(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('the line is not a JSON object');
  return v as Record<string, unknown>;
}

function instruction(v: unknown): InstructionExample {
  const o = asObject(v);
  if ('messages' in o) {
    const ms = messages(o.messages, 'messages');
    if (!ms.some((m) => m.role === 'assistant')) fail('"messages" has no assistant message to learn from');
    return { messages: ms };
  }
  if (typeof o.prompt === 'string' && typeof o.response === 'string') {
    return { messages: [{ role: 'user', content: o.prompt }, { role: 'assistant', content: o.response }] };
  }
  return fail('expected {"messages": [...]} or {"prompt": "...", "response": "..."}');
}

function preference(v: unknown): PreferenceExample {
  const o = asObject(v);
  if (!('prompt' in o) || !('chosen' in o) || !('rejected' in o)) fail('expected {"prompt", "chosen", "rejected"}');
  const prompt = typeof o.prompt === 'string' ? [{ role: 'user', content: o.prompt }] : messages(o.prompt, 'prompt');
  const chosen = response(o.chosen, 'chosen');
  const rejected = response(o.rejected, 'rejected');
  if (chosen === rejected) fail('"chosen" and "rejected" are identical: the pair says nothing');
  return { prompt, chosen, rejected };
}

/** Parses JSONL text line by line with `parse`; blank lines are ignored. */
function parseJsonl<T>(text: string, parse: (v: unknown) => T, options: JsonlOptions): JsonlResult<T> {
  const records: T[] = [];
  const problems: JsonlProblem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      problems.push({ line: i + 1, message: `invalid JSON (${(e as Error).message})` });
      continue;
    }
    try {
      records.push(parse(value));
    } catch (e) {
      if (!(e instanceof LineError)) throw e;
      problems.push({ line: i + 1, message: e.message });
    }
  }
  const source = options.source ?? 'input';
  if (problems.length > 0 && (options.onError ?? 'reject') === 'reject') {
    const shown = problems.slice(0, 5).map((p) => `  line ${p.line}: ${p.message}`).join('\n');
    const more = problems.length > 5 ? `\n  ... and ${problems.length - 5} more` : '';
    throw new DataError(`${source}: ${problems.length} bad line${problems.length > 1 ? 's' : ''} (skip them with onError 'skip'):\n${shown}${more}`);
  }
  if (records.length === 0) throw new DataError(`${source}: no usable examples${problems.length ? ` (${problems.length} bad lines)` : ''}`);
  return { records, problems };
}

export function parseInstructionJsonl(text: string, options: JsonlOptions = {}): JsonlResult<InstructionExample> {
  return parseJsonl(text, instruction, options);
}

export function parsePreferenceJsonl(text: string, options: JsonlOptions = {}): JsonlResult<PreferenceExample> {
  return parseJsonl(text, preference, options);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read ${file}: ${(e as Error).message}`);
  }
}

export function readInstructionFile(file: string, options: JsonlOptions = {}): JsonlResult<InstructionExample> {
  return parseInstructionJsonl(readText(file), { source: file, ...options });
}

export function readPreferenceFile(file: string, options: JsonlOptions = {}): JsonlResult<PreferenceExample> {
  return parsePreferenceJsonl(readText(file), { source: file, ...options });
}
