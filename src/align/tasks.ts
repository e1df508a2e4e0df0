// From data to what the stages train on: built-in task examples and JSONL records as encoded
// conversations and pairs, and the programmatic reward as a PPO scorer.
import {
  preferencePairs, taskReward, type InstructionExample, type PairKind, type PreferenceExample, type PreferencePair, type TaskExample,
} from '../data/index.js';
import { ArgumentError } from '../errors.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { rewardScores, type EncodedPair, type RewardModel } from './reward.js';
import type { Scorer } from './ppo.js';
import { encodeConversation, encodePrompt, encodeResponse, type EncodedExample } from './sequences.js';

/**
 * Whether a task's conversation fits a context of maxPositions: its prompt with room for `reserve`
 * tokens of answer, and with its longest answer (the rambling one, when it has one).
 */
export function fitsContext(tokenizer: Tokenizer, maxPositions: number, reserve = 24): (e: { prompt: string; rambling?: string }) => boolean {
  return (e) => {
    const user = [{ role: 'user', content: e.prompt }];
    if (encodePrompt(tokenizer, user).length + reserve > maxPositions) return false;
    return e.rambling === undefined || encodeConversation(tokenizer, [...user, { role: 'assistant', content: ANSWER_PREFIX + e.rambling }]).ids.length <= maxPositions;
  };
}

/**
 * Answers of the built-in tasks are written after a space: in the stories every word follows one,
 * so " blue" is a token the pre-trained model knows while "blue" after the chat template's newline
 * falls apart into rare pieces ("b", "l", "ue"). Exact match ignores the space.
 */
export const ANSWER_PREFIX = ' ';

/**
 * SFT conversations of the built-in tasks. With `rambling` = f, a fraction f of the answers (spread
 * evenly over the examples) is the rambling version of the answer, as in instruction data written by
 * people, which states the answer in needless words about as often as not: the SFT model then
 * rambles at that rate, and preference training (concise pairs) or the programmatic reward of PPO (which prefers the answer alone)
 * has something to fix.
 */
export function sftExamplesFromTasks(tokenizer: Tokenizer, tasks: readonly TaskExample[], options: { rambling?: number } = {}): EncodedExample[] {
  const f = options.rambling ?? 0;
  if (!(f >= 0 && f <= 1)) throw new ArgumentError(`rambling must be a fraction in [0, 1], got ${f}`);
  // Example i rambles when the running count floor((i + 1)·f) steps up: exactly f of every stretch.
  return tasks.map((e, i) => {
    const answer = Math.floor((i + 1) * f) > Math.floor(i * f) ? e.rambling : e.answer;
    return encodeConversation(tokenizer, [{ role: 'user', content: e.prompt }, { role: 'assistant', content: ANSWER_PREFIX + answer }]);
  });
}

/** Preference pairs of the built-in tasks, encoded (answers after ANSWER_PREFIX). */
export function pairsFromTasks(tokenizer: Tokenizer, tasks: readonly TaskExample[], kind: PairKind | 'both'): EncodedPair[] {
  return encodePairs(tokenizer, preferencePairs(tasks, kind).map((p) => ({ ...p, chosen: ANSWER_PREFIX + p.chosen, rejected: ANSWER_PREFIX + p.rejected })));
}

export function sftExamplesFromRecords(tokenizer: Tokenizer, records: readonly InstructionExample[]): EncodedExample[] {
  return records.map((r) => encodeConversation(tokenizer, r.messages));
}

export function encodePairs(tokenizer: Tokenizer, pairs: readonly (PreferencePair | PreferenceExample)[]): EncodedPair[] {
  return pairs.map((p) => {
    const prompt = typeof p.prompt === 'string' ? [{ role: 'user', content: p.prompt }] : p.prompt;
    return { chosen: encodeResponse(tokenizer, prompt, p.chosen), rejected: encodeResponse(tokenizer, prompt, p.rejected) };
  });
}

export function promptsFromTasks(tokenizer: Tokenizer, tasks: readonly TaskExample[]): number[][] {
  return tasks.map((e) => encodePrompt(tokenizer, [{ role: 'user', content: e.prompt }]));
}

/** The programmatic reward of the built-in tasks (taskReward) as a PPO scorer over `tasks`. */
export function taskScorer(tokenizer: Tokenizer, tasks: readonly TaskExample[], stopIds: readonly number[]): Scorer {
  return (items) => items.map(({ prompt, response }) => taskReward(tasks[prompt], tokenizer.decode(response.filter((id) => !stopIds.includes(id)))));
}

/**
 * A reward model as a PPO scorer: it reads each whole conversation (prompt `prompts[i]` and the
 * response, ending at the end-of-turn token) and its score is the reward.
 */
export function rewardModelScorer(rm: RewardModel, prompts: readonly number[][], padId: number): Scorer {
  return (items) => rewardScores(rm, items.map(({ prompt, response }) => {
    const ids = [...prompts[prompt], ...response];
    return { ids, mask: ids.map(() => 0) };
  }), padId);
}
