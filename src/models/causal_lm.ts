// What every causal language model shares: the forward options and output, id validation, and the
// loss on already-shifted labels.
import { IndexOutOfRangeError, ShapeError, DTypeError } from '../errors.js';
import type { KVCache, Module } from '../nn/index.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

export interface ForwardOptions {
  /** Targets (B, T), i32, already shifted: labels[b][t] is the token that should follow
   *  inputIds[b][t]; −100 marks positions without a target. */
  labels?: Tensor | null;
  /** Append this call's keys and values to a KV cache and attend over everything cached. */
  cache?: KVCache | null;
  /** Return the residual stream after the embedding and after every block. */
  outputHiddenStates?: boolean;
  /** Compute logits for the last position only (generation). */
  lastOnly?: boolean;
}

export interface CausalLMOutput {
  /** (B, T, V), or (B, 1, V) with lastOnly. */
  logits: Tensor;
  /** Mean cross-entropy over positions with a label, when labels were given. */
  loss: Tensor | null;
  /** With outputHiddenStates: L + 1 tensors (B, T, C). */
  hiddenStates: Tensor[];
}

export interface CausalLM extends Module {
  readonly config: { model_type: string; vocab_size: number; [key: string]: unknown };
  readonly vocabSize: number;
  readonly maxPositions: number;
  forward(inputIds: Tensor, options?: ForwardOptions): CausalLMOutput;
  /** A KV cache sized for this model. */
  newCache(batch: number, maxLength?: number): KVCache;
}

/** Validates token ids (B, T) against the vocabulary; returns [B, T]. */
export function checkIds(ids: Tensor, vocabSize: number): [number, number] {
  if (ids.dtype !== 'i32') throw new DTypeError(`input ids must have dtype i32, not ${ids.dtype}`);
  if (ids.ndim !== 2) throw new ShapeError(`input ids must be (B, T), got ${pl.formatShape(ids.shape)}`);
  const d = ids.data() as Int32Array;
  for (let i = 0; i < d.length; i++) {
    if (d[i] < 0 || d[i] >= vocabSize) throw new IndexOutOfRangeError(`token id ${d[i]} is outside the vocabulary [0, ${vocabSize})`);
  }
  return [ids.shape[0], ids.shape[1]];
}

export function lossFromLogits(logits: Tensor, labels: Tensor | null | undefined): Tensor | null {
  if (!labels) return null;
  return pl.crossEntropy(logits, labels, { ignoreIndex: -100 });
}
