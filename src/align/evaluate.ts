// Measuring an aligned model on questions with exact answers: exact-match accuracy of the answer its
// greedy response states (alone, or after "the answer is" in a rambling one), the mean programmatic
// reward of sampled answers (1 for the answer alone, 0.5 for it in needless words), their length, and the KL divergence from a reference
// model estimated on those samples, E_{y~π}[log π(y|x) − log π_ref(y|x)]. A pre-trained model,
// which has never seen the chat format, is measured few-shot in plain text instead.
import { normaliseAnswer, statedAnswer, taskReward } from '../data/index.js';
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import * as pl from '../tensor/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { generateBatch, type Generator } from './generation.js';
import { collate, encodePrompt, frozenReference, sequenceLogProbs, type EncodedExample, type ReferenceModel } from './sequences.js';

export interface QuestionItem {
  prompt: string;
  answer: string;
  kind?: string;
}

export interface EvalOptions {
  maxNewTokens?: number;
  /** Score of a response (default: the programmatic reward, taskReward). */
  reward?: (item: QuestionItem, response: string) => number;
  /** Reference model for the KL estimate. */
  reference?: ReferenceModel | null;
  /** Sampled answers per question for the reward and KL (default 1; 0 skips sampling). */
  samples?: number;
  generator?: Generator;
}

export interface EvalResult {
  /** Exact-match accuracy of the answers the greedy responses state. */
  accuracy: number;
  /** Mean reward of sampled (temperature 1) answers. */
  meanReward: number;
  /** KL(π ‖ π_ref) per answer, estimated on the samples (NaN without a reference). */
  kl: number;
  /** Mean length of the greedy answers in tokens. */
  meanTokens: number;
  /** Mean length of the sampled answers in tokens (NaN without samples). */
  sampledTokens: number;
  byKind: Record<string, { n: number; correct: number }>;
  examples: { prompt: string; answer: string; response: string }[];
}

/** 1 when the answer a response states is exactly the item's answer. */
function statedCorrect(item: QuestionItem, response: string): number {
  return normaliseAnswer(statedAnswer(response)) === normaliseAnswer(item.answer) ? 1 : 0;
}

/** Exact-match accuracy (overall and per kind), mean length and the responses of greedy answers. */
function scoreGreedy(items: readonly QuestionItem[], greedy: number[][], decode: (ids: number[]) => string):
  Pick<EvalResult, 'accuracy' | 'meanTokens' | 'byKind' | 'examples'> {
  const byKind: EvalResult['byKind'] = {};
  let correct = 0;
  let tokens = 0;
  const examples: EvalResult['examples'] = [];
  greedy.forEach((ids, i) => {
    const response = decode(ids);
    const ok = statedCorrect(items[i], response);
    correct += ok;
    tokens += ids.length;
    const kind = items[i].kind ?? 'all';
    byKind[kind] ??= { n: 0, correct: 0 };
    byKind[kind].n++;
    byKind[kind].correct += ok;
    examples.push({ prompt: items[i].prompt, answer: items[i].answer, response });
  });
  return { accuracy: correct / items.length, meanTokens: tokens / items.length, byKind, examples };
}

/** The end-of-turn id of a chat tokenizer (ChatML's <|im_end|>, else end-of-text). */
export function endOfTurnId(tokenizer: Tokenizer): number {
  const id = tokenizer.tokenToId('<|im_end|>') ?? tokenizer.specialId('eosToken');
  if (id === undefined) throw new ArgumentError('the tokenizer has neither <|im_end|> nor an end-of-text token to end answers with');
  return id;
}

function stopIdsOf(tokenizer: Tokenizer): number[] {
  const ids = [endOfTurnId(tokenizer)];
  const eos = tokenizer.specialId('eosToken');
  if (eos !== undefined && !ids.includes(eos)) ids.push(eos);
  return ids;
}

function decodeAnswer(tokenizer: Tokenizer, ids: number[], stop: readonly number[]): string {
  return tokenizer.decode(ids.filter((i) => !stop.includes(i)));
}

/** Evaluates a chat model on questions: greedy accuracy, sampled reward, KL to a reference. */
export function evaluateChat(model: CausalLM, tokenizer: Tokenizer, items: readonly QuestionItem[], options: EvalOptions = {}): EvalResult {
  const generate = options.generator ?? generateBatch;
  const reward = options.reward ?? taskReward;
  const maxNewTokens = options.maxNewTokens ?? 16;
  const stop = stopIdsOf(tokenizer);
  const prompts = items.map((it) => encodePrompt(tokenizer, [{ role: 'user', content: it.prompt }]));
  const greedy = generate(model, prompts, { maxNewTokens, temperature: 0, stopIds: stop });
  const { accuracy, meanTokens, byKind, examples } = scoreGreedy(items, greedy, (ids) => decodeAnswer(tokenizer, ids, stop));
  const samples = options.samples ?? 1;
  let meanReward = NaN;
  let kl = NaN;
  let sampledTokens = NaN;
  if (samples > 0) {
    const rep = items.flatMap((it, i) => Array.from({ length: samples }, () => ({ it, prompt: prompts[i] })));
    const sampled = generate(model, rep.map((r) => r.prompt), { maxNewTokens, temperature: 1, stopIds: stop });
    meanReward = sampled.reduce((s, ids, j) => s + reward(rep[j].it, decodeAnswer(tokenizer, ids, stop)), 0) / sampled.length;
    sampledTokens = sampled.reduce((s, ids) => s + ids.length, 0) / sampled.length;
    if (options.reference) {
      const seqs = sampled.map((ids, j) => ({ ids: [...rep[j].prompt, ...ids], mask: [...rep[j].prompt.map(() => 0), ...ids.map(() => 1)] }));
      const a = batchedSequenceLogProbs(frozenReference(model), seqs, stop[0]);
      const b = batchedSequenceLogProbs(options.reference, seqs, stop[0]);
      kl = a.reduce((s, x, j) => s + x - b[j], 0) / a.length;
    }
  }
  return { accuracy, meanReward, kl, meanTokens, sampledTokens, byKind, examples };
}

/** log π(response | prompt) of each sequence under a model, without gradients, in batches. */
export function batchedSequenceLogProbs(model: ReferenceModel, seqs: readonly EncodedExample[], padId: number, batch = 32): number[] {
  const out: number[] = [];
  pl.noGrad(() => {
    for (let s = 0; s < seqs.length; s += batch) {
      const b = collate(seqs.slice(s, s + batch), padId);
      out.push(...sequenceLogProbs(model.logits(b.inputs), b.labels).toFloat32Array());
    }
  });
  return out;
}

/**
 * Few-shot accuracy of a model that only knows plain text: up to `shots` solved examples
 * ("<question>\nAnswer: <answer>"), as many as fit the context, then the question; the answer is
 * the generated text up to the end of the line.
 */
export function evaluateFewShot(model: CausalLM, tokenizer: Tokenizer, items: readonly QuestionItem[], shots: readonly QuestionItem[],
  options: { shots?: number; maxNewTokens?: number; separatorId?: number; reward?: EvalOptions['reward']; generator?: Generator } = {}): EvalResult & { meanShots: number } {
  const generate = options.generator ?? generateBatch;
  const reward = options.reward ?? taskReward;
  const maxNewTokens = options.maxNewTokens ?? 16;
  const k = options.shots ?? 3;
  const sep = options.separatorId ?? tokenizer.specialId('eosToken');
  const head = sep !== undefined ? [sep] : [];
  const encode = (s: string) => tokenizer.encode(s, { addSpecialTokens: false, allowedSpecial: 'none' });
  let shotsUsed = 0;
  const prompts = items.map((it, i) => {
    const question = encode(`${it.prompt}\nAnswer:`);
    let ids = [...head, ...question];
    // Shots of the same kind first, cycling through the pool from a per-question offset.
    const pool = shots.filter((s) => s.kind === it.kind);
    for (let j = 0; j < Math.min(k, pool.length); j++) {
      const shot = encode(`${pool[(i + j) % pool.length].prompt}\nAnswer: ${pool[(i + j) % pool.length].answer}\n\n`);
      if (ids.length + shot.length + maxNewTokens > model.maxPositions) break;
      ids = [...head, ...shot, ...ids.slice(head.length)];
      shotsUsed++;
    }
    return ids;
  });
  const newline = new Set<number>();
  for (let id = 0; id < tokenizer.vocabSize; id++) if (tokenizer.decode([id]).includes('\n')) newline.add(id);
  const stop = [...newline, ...(sep !== undefined ? [sep] : [])];
  const answer = (ids: number[]) => tokenizer.decode(ids.filter((i) => i !== sep)).split('\n')[0];
  const greedy = generate(model, prompts, { maxNewTokens, temperature: 0, stopIds: stop });
  const scored = scoreGreedy(items, greedy, answer);
  const sampled = generate(model, prompts, { maxNewTokens, temperature: 1, stopIds: stop });
  const meanReward = sampled.reduce((s, ids, i) => s + reward(items[i], answer(ids)), 0) / sampled.length;
  const sampledTokens = sampled.reduce((s, ids) => s + ids.length, 0) / sampled.length;
  return { ...scored, meanReward, kl: NaN, sampledTokens, meanShots: shotsUsed / items.length };
}
