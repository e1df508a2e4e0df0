// Choosing the next token from logits: greedy, or sampling with temperature, top-k and top-p
// (nucleus), drawn from the seeded global stream.
import { ArgumentError } from '../errors.js';
import { randomUniform } from '../tensor/index.js';

export interface SamplingOptions {
  /** 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP?: number;
}

export function checkSampling(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0)) throw new ArgumentError(`temperature must be >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new ArgumentError(`topK must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new ArgumentError(`topP must be in (0, 1], got ${o.topP}`);
}

function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Picks a token id from one row of logits (V). */
export function sampleToken(logits: Float32Array, o: SamplingOptions = {}): number {
  const temperature = o.temperature ?? 1;
  if (temperature === 0) return argmax(logits);
  const V = logits.length;
  // Candidates sorted by logit, cut by top-k.
  let order = Array.from({ length: V }, (_, i) => i);
  order.sort((a, b) => logits[b] - logits[a]);
  if (o.topK && o.topK < V) order = order.slice(0, o.topK);
  const max = logits[order[0]];
  const probs = order.map((i) => Math.exp((logits[i] - max) / temperature));
  let total = probs.reduce((s, p) => s + p, 0);
  if (o.topP !== undefined && o.topP < 1) {
    let cum = 0;
    let keep = probs.length;
    for (let j = 0; j < probs.length; j++) {
      cum += probs[j] / total;
      if (cum >= o.topP) {
        keep = j + 1;
        break;
      }
    }
    probs.length = keep;
    order.length = keep;
    total = probs.reduce((s, p) => s + p, 0);
  }
  const u = randomUniform() * total;
  let acc = 0;
  for (let j = 0; j < probs.length; j++) {
    acc += probs[j];
    if (u < acc) return order[j];
  }
  return order[order.length - 1];
}
