// What every causal language model shares: the forward options and output, id validation, and the
// loss on already-shifted labels.
import { IndexOutOfRangeError, ShapeError, DTypeError } from '../errors.js';
import type { KVCache, Module, PagedAttentionInputs } from '../nn/index.js';
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
  /** A packed batch of many sequences' tokens, inputIds (1, N), over a paged KV pool (the engine). */
  paged?: PagedAttentionInputs | null;
  /** Compute logits only for these rows of the (1, N) input (the engine: each sampling sequence's
   *  last token); generalises lastOnly. May be empty. */
  logitRows?: Int32Array | null;
  /** Also return the final hidden state after the final norm (embeddings). */
  outputLastHiddenState?: boolean;
}

export interface CausalLMOutput {
  /** (B, T, V), or (B, 1, V) with lastOnly. */
  logits: Tensor;
  /** Mean cross-entropy over positions with a label, when labels were given. */
  loss: Tensor | null;
  /** With outputHiddenStates: L + 1 tensors (B, T, C). */
  hiddenStates: Tensor[];
  /** With outputLastHiddenState: (B, T, C) after the final norm. */
  lastHiddenState?: Tensor;
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

/** The rows of the residual stream x (B, T, C) that need logits: all, the last, or logitRows. */
export function logitInputs(x: Tensor, options: ForwardOptions): Tensor {
  const T = x.shape[1];
  if (options.logitRows) {
    const rows = options.logitRows;
    for (const r of rows) if (r < 0 || r >= T) throw new IndexOutOfRangeError(`logit row ${r} is outside the ${T} input positions`);
    return pl.indexSelect(x, 1, new pl.Tensor(rows, [rows.length], 'i32'));
  }
  return options.lastOnly ? x.slice(1, T - 1) : x;
}

export function lossFromLogits(logits: Tensor, labels: Tensor | null | undefined): Tensor | null {
  if (!labels) return null;
  return pl.crossEntropy(logits, labels, { ignoreIndex: -100 });
}
