// Conversations as token sequences with a mask of the tokens to learn (the assistant's), batches of
// them padded on the right, and what every stage reads from a batch: per-token and per-sequence
// log-probabilities of the masked tokens, and a scalar head on hidden states.
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../models/index.js';
import { Linear, Module } from '../nn/index.js';
import { withoutAdapters } from '../peft/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { ChatMessage, Tokenizer } from '../tokenizers/index.js';

export class AlignmentDataError extends ArgumentError {}

/** A tokenised conversation: ids and, per id, 1 when the model should learn to produce it. */
export interface EncodedExample {
  ids: number[];
  mask: number[];
}

/** Encodes a conversation with the tokenizer's chat template; the assistant's tokens are the target. */
export function encodeConversation(tokenizer: Tokenizer, messages: ChatMessage[]): EncodedExample {
  const enc = tokenizer.applyChatTemplate(messages);
  if (!enc.assistantMask.some((m) => m === 1)) {
    throw new AlignmentDataError('the chat template produced no assistant tokens: it must mark the assistant turns ({% generation %} blocks, or a template that renders assistant content)');
  }
  return { ids: enc.ids, mask: enc.assistantMask };
}

/** The prompt for the assistant's next turn (what generation starts from). */
export function encodePrompt(tokenizer: Tokenizer, messages: ChatMessage[]): number[] {
  return tokenizer.applyChatTemplate(messages, { add_generation_prompt: true }).ids;
}

/** prompt + response, with only the response (and its end-of-turn token) as target. */
export function encodeResponse(tokenizer: Tokenizer, prompt: ChatMessage[], response: string): EncodedExample {
  return encodeConversation(tokenizer, [...prompt, { role: 'assistant', content: response }]);
}

/**
 * A batch of sequences padded on the right: inputs (B, T) and shifted labels (B, T) where
 * labels[b][t] = ids[t+1] if that token is a target, else −100. Right padding needs no attention
 * mask: a causal model's positions never see the padding after them.
 */
export interface SequenceBatch {
  inputs: Tensor;
  labels: Tensor;
  /** (B, T) 1 where labels[b][t] is a target. */
  mask: Tensor;
  /** Per row, the index of its last real input token. */
  lastIndex: number[];
}

export function collate(examples: readonly EncodedExample[], padId: number): SequenceBatch {
  if (examples.length === 0) throw new ArgumentError('cannot collate an empty batch');
  const B = examples.length;
  const T = Math.max(...examples.map((e) => e.ids.length - 1));
  if (T < 1) throw new AlignmentDataError('every sequence needs at least two tokens');
  const inputs = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(-100);
  const mask = new Float32Array(B * T);
  const lastIndex: number[] = [];
  examples.forEach((e, b) => {
    const n = e.ids.length - 1;
    for (let t = 0; t < n; t++) {
      inputs[b * T + t] = e.ids[t];
      if (e.mask[t + 1]) {
        labels[b * T + t] = e.ids[t + 1];
        mask[b * T + t] = 1;
      }
    }
    lastIndex.push(n - 1);
  });
  return {
    inputs: pl.tensor(inputs, { shape: [B, T] }),
    labels: pl.tensor(labels, { shape: [B, T] }),
    mask: pl.tensor(mask, { shape: [B, T] }),
    lastIndex,
  };
}

/** log π(label | prefix) at every position (B, T), 0 where the label is −100; differentiable. */
export function tokenLogProbs(logits: Tensor, labels: Tensor): Tensor {
  // Cross-entropy per position with no reduction is −log softmax gathered at the label: one fused kernel.
  return pl.neg(pl.crossEntropy(logits, labels, { reduction: 'none' }));
}

/** Σ over target positions of log π: the log-probability of each row's response (B). */
export function sequenceLogProbs(logits: Tensor, labels: Tensor): Tensor {
  return pl.sum(tokenLogProbs(logits, labels), 1);
}

/** The residual stream after the last block (B, T, C): what scalar heads read. */
export function lastHiddenState(model: CausalLM, inputs: Tensor): { logits: Tensor; hidden: Tensor } {
  const out = model.forward(inputs, { outputHiddenStates: true });
  return { logits: out.logits, hidden: out.hiddenStates[out.hiddenStates.length - 1] };
}

/** Rows of x (B, T, C) at one index per row → (B, C). */
export function selectRows(x: Tensor, index: readonly number[]): Tensor {
  const [B, T, C] = x.shape;
  const flat = Int32Array.from(index, (t, b) => b * T + t);
  return pl.indexSelect(pl.reshape(x, [B * T, C]), 0, pl.tensor(flat));
}

/**
 * A scalar head on hidden states: r = w·rms(h) + b. The hidden state is the residual stream before
 * the model's final norm, so the head normalises it itself (without a learned scale, which w has).
 */
export class ScalarHead extends Module {
  readonly score: Linear;

  constructor(readonly hiddenSize: number, options: { prefix?: string } = {}) {
    super({ prefix: options.prefix ?? '' });
    // Zero weights: a new head scores everything 0 (PPO's value head starts without opinions).
    this.score = this.add(new Linear(hiddenSize, 1, { prefix: options.prefix ? `${options.prefix}.score` : 'score', std: 0 }));
  }

  /** h (…, C) → (…). */
  forward(h: Tensor): Tensor {
    const y = this.score.forward(pl.rmsNorm(h, null, 1e-5));
    return pl.squeeze(y, -1);
  }
}

/**
 * The reference model of PPO and DPO, as the logits it gives: a frozen copy of the starting policy,
 * or, when the policy trains LoRA adapters, the policy itself with its adapters switched off (the
 * frozen base), so no second copy of the weights is held.
 */
export interface ReferenceModel {
  logits(inputs: Tensor): Tensor;
}

/** A model that never trains, as a reference. */
export function frozenReference(model: CausalLM): ReferenceModel {
  return { logits: (inputs) => pl.noGrad(() => model.forward(inputs).logits) };
}

/** The base under a LoRA policy's adapters, as a reference. */
export function baseReference(policy: CausalLM): ReferenceModel {
  return { logits: (inputs) => pl.noGrad(() => withoutAdapters(policy, () => policy.forward(inputs).logits)) };
}

/** Parameters that train: every parameter of the modules that requires grad (frozen ones do not). */
export function trainableParameters(...modules: Module[]): Tensor[] {
  return modules.flatMap((m) => m.parameters()).filter((p) => p.requiresGrad);
}
