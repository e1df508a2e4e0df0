// Choosing the next token from logits: greedy, or sampling with temperature, top-k and top-p
// (nucleus), drawn from the seeded global stream (sampleToken, for the simple loop); and the
// engine's per-request sampling (Sampler): penalties, min-p, a per-request counter-based stream,
// logprobs.
import { kernels } from '../backend/index.js';
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

// ---- the engine's per-request sampling ---------------------------------------------------------

/** How one request turns logits into tokens and when it stops (the OpenAI/vLLM parameters). */
export interface SamplingParams {
  /** 0 = greedy; default 1. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Nucleus: keep the most likely tokens whose probability reaches p; 1 = off. */
  topP: number;
  /** Drop tokens less likely than minP times the most likely one; 0 = off. */
  minP: number;
  /** HF/vLLM semantics: logits of tokens seen (prompt + output) are divided by it when positive,
   *  multiplied when negative; 1 = off. */
  repetitionPenalty: number;
  /** OpenAI semantics, over generated tokens: logit −= presence·[count > 0] + frequency·count. */
  presencePenalty: number;
  frequencyPenalty: number;
  /** Per-request random stream: same seed and prompt → same text, whatever else runs. null = drawn
   *  from the global seeded stream. */
  seed: number | null;
  /** New tokens at most. */
  maxTokens: number;
  /** Stop strings (not included in the output text). */
  stop: string[];
  /** Stop token ids, besides the tokenizer's end-of-text id unless ignoreEos. */
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** null = none; k ≥ 0: the sampled token's logprob plus the k most likely alternatives. */
  logprobs: number | null;
  /** OpenAI's logit_bias: [token id, bias] pairs, each bias in [−100, 100] added to that token's
   *  logit before the penalties and sampling (−100 bans a token, 100 forces it). Logprobs stay
   *  those of the model. */
  logitBias: [number, number][];
}

export const MAX_LOGPROBS = 20;

/** Probability buckets by float bits >>> 20 (positive floats up to 1 fall below 1024). */
const BUCKETS = 2048;

/** Parameters with defaults filled in, validated (ArgumentError names the bad field). */
export function samplingParams(partial: Partial<SamplingParams> = {}): SamplingParams {
  const p: SamplingParams = {
    temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0,
    seed: null, maxTokens: 16, stop: [], stopTokenIds: [], ignoreEos: false, logprobs: null, logitBias: [],
  };
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) (p as unknown as Record<string, unknown>)[k] = v;
  const num = (name: keyof SamplingParams, ok: (x: number) => boolean, what: string) => {
    const x = p[name];
    if (typeof x !== 'number' || !Number.isFinite(x) || !ok(x)) throw new ArgumentError(`${name} must be ${what}, got ${JSON.stringify(x)}`);
  };
  num('temperature', (x) => x >= 0, 'a number >= 0');
  num('topK', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0 (0 = off)');
  num('topP', (x) => x > 0 && x <= 1, 'in (0, 1]');
  num('minP', (x) => x >= 0 && x <= 1, 'in [0, 1]');
  num('repetitionPenalty', (x) => x > 0, 'a number > 0 (1 = off)');
  num('presencePenalty', (x) => x >= -2 && x <= 2, 'in [-2, 2]');
  num('frequencyPenalty', (x) => x >= -2 && x <= 2, 'in [-2, 2]');
  num('maxTokens', (x) => Number.isInteger(x) && x >= 1, 'an integer >= 1');
  if (p.seed !== null) num('seed', (x) => Number.isInteger(x), 'an integer or null');
  if (p.logprobs !== null) num('logprobs', (x) => Number.isInteger(x) && x >= 0 && x <= MAX_LOGPROBS, `null or an integer in [0, ${MAX_LOGPROBS}]`);
  if (!Array.isArray(p.stop) || p.stop.some((s) => typeof s !== 'string' || s === '')) throw new ArgumentError('stop must be a list of non-empty strings');
  if (!Array.isArray(p.stopTokenIds) || p.stopTokenIds.some((s) => !Number.isInteger(s) || s < 0)) throw new ArgumentError('stopTokenIds must be a list of token ids');
  if (typeof p.ignoreEos !== 'boolean') throw new ArgumentError('ignoreEos must be a boolean');
  if (!Array.isArray(p.logitBias) || p.logitBias.some((e) => !Array.isArray(e) || !Number.isInteger(e[0]) || e[0] < 0 || typeof e[1] !== 'number' || !(e[1] >= -100 && e[1] <= 100))) {
    throw new ArgumentError('logitBias must be a list of [token id, bias] pairs with biases in [-100, 100]');
  }
  p.logitBias = p.logitBias.map(([id, b]) => [id, b]);
  p.stop = [...p.stop];
  p.stopTokenIds = [...p.stopTokenIds];
  return p;
}

/**
 * Scratch space for sampling over a vocabulary of V, reused across tokens and requests so a step
 * allocates nothing per sequence.
 */
export class Sampler {
  private readonly work: Float32Array;
  private readonly probs: Float32Array;
  private readonly logprobs: Float32Array;
  private readonly counts: Int32Array;
  private readonly keys: Float64Array;
  private readonly bits: Uint32Array;
  private readonly bucketMass = new Float64Array(BUCKETS);
  private readonly bucketCount = new Int32Array(BUCKETS);
  private argmax = new Int32Array(64);

  constructor(readonly V: number) {
    if (V >= 1 << 20) throw new ArgumentError(`sampling supports vocabularies below 2^20 tokens, got ${V}`);
    this.work = new Float32Array(V);
    this.probs = new Float32Array(V);
    this.logprobs = new Float32Array(V);
    this.counts = new Int32Array(V);
    this.keys = new Float64Array(V);
    this.bits = new Uint32Array(this.probs.buffer);
  }

  /**
   * The next token from one row of logits (V), for a sequence whose tokens are `tokens` (the
   * first promptLength of them the prompt), with uniform draw u in [0, 1).
   * Order, as vLLM: penalties, temperature, min-p, top-k, top-p, then the draw.
   */
  sample(logits: Float32Array, p: SamplingParams, tokens: readonly number[], promptLength: number, u: number): number {
    const V = this.V;
    let x = logits;
    const penalties = p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
    if (penalties || p.logitBias.length > 0) {
      x = this.work;
      x.set(logits.subarray(0, V));
      for (const [id, b] of p.logitBias) x[id] += b;
      if (penalties) this.applyPenalties(x, p, tokens, promptLength);
    }
    if (p.temperature === 0) return argmax(x);
    // probs = softmax(x / T), by the backend's kernels (exp over the whole vocabulary is the cost).
    const K = kernels();
    const probs = this.probs;
    if (p.temperature !== 1) {
      K.unary('mulScalar', x, this.work, V, 1 / p.temperature, 0);
      x = this.work;
    }
    K.softmax(x, probs, 1, V, false);
    let total = 0;
    let kept = V;
    if (p.minP > 0) {
      // min-p: keep p_i ≥ minP · p_max.
      let pmax = 0;
      for (let i = 0; i < V; i++) if (probs[i] > pmax) pmax = probs[i];
      const floor = p.minP * pmax;
      kept = 0;
      for (let i = 0; i < V; i++) {
        if (probs[i] < floor) probs[i] = 0;
        else kept++;
      }
    }
    for (let i = 0; i < V; i++) total += probs[i];
    if ((p.topK > 0 && p.topK < kept) || p.topP < 1) return this.sampleSorted(p, kept, total, u);
    let target = u * total;
    let last = 0;
    for (let i = 0; i < V; i++) {
      if (probs[i] === 0) continue;
      last = i;
      target -= probs[i];
      if (target < 0) return i;
    }
    return last;
  }

  /** Candidates in decreasing probability, cut by top-k and top-p, then the draw over what is left. */
  private sampleSorted(p: SamplingParams, kept: number, total: number, u: number): number {
    const V = this.V;
    const probs = this.probs;
    const bits = this.bits;
    // Sort only the tokens that can make the cut. Bucket the probabilities by their float bits
    // (exponent and 3 mantissa bits: buckets 2^(1/8) apart) and walk down from the top bucket until
    // the tokens above hold k tokens (top-k) or a topP share of the mass (top-p); the kept tokens
    // all lie in those buckets.
    const mass = this.bucketMass.fill(0);
    const counts = this.bucketCount.fill(0);
    for (let i = 0; i < V; i++) {
      if (probs[i] === 0) continue;
      const b = bits[i] >>> 20;
      mass[b] += probs[i];
      counts[b]++;
    }
    const k = p.topK > 0 && p.topK < kept ? p.topK : 0;
    const target = p.topP < 1 ? p.topP * total : Infinity;
    let bucket = BUCKETS - 1;
    for (let n = 0, m = 0; bucket > 0; bucket--) {
      n += counts[bucket];
      m += mass[bucket];
      if (k > 0 ? n >= k : m >= target) break;
    }
    const minBits = bucket * 2 ** 20;
    // Key = the float's bit pattern (monotonic for positive floats) · 2^20 + id: one native numeric sort.
    let n = 0;
    for (let i = 0; i < V; i++) if (probs[i] > 0 && bits[i] >= minBits) this.keys[n++] = bits[i] * 1048576 + i;
    const keys = this.keys.subarray(0, n).sort();
    const at = (j: number) => keys[n - 1 - j] % 1048576; // j-th most likely id
    let count = k > 0 ? Math.min(k, n) : n;
    if (k > 0) {
      total = 0;
      for (let j = 0; j < count; j++) total += probs[at(j)];
    }
    if (p.topP < 1) {
      let cum = 0;
      for (let j = 0; j < count; j++) {
        cum += probs[at(j)];
        if (cum >= p.topP * total) {
          count = j + 1;
          break;
        }
      }
      total = 0;
      for (let j = 0; j < count; j++) total += probs[at(j)];
    }
    let rest = u * total;
    for (let j = 0; j < count; j++) {
      rest -= probs[at(j)];
      if (rest < 0) return at(j);
    }
    return at(count - 1);
  }

  /** Whether sample() with these parameters is the plain argmax of the logits (greedy, no penalties
   *  or biases), which argmaxRows gives for many rows at once. */
  static isGreedy(p: SamplingParams): boolean {
    return p.temperature === 0 && p.repetitionPenalty === 1 && p.presencePenalty === 0 && p.frequencyPenalty === 0 && p.logitBias.length === 0;
  }

  /** The argmax of each of the first `rows` rows of logits (rows, V), by one backend kernel: a
   *  batch of greedy sequences costs one call instead of a JavaScript scan of V per sequence. */
  argmaxRows(logits: Float32Array, rows: number): Int32Array {
    if (this.argmax.length < rows) this.argmax = new Int32Array(Math.max(rows, 2 * this.argmax.length));
    kernels().reduce('argmax', logits, this.argmax, rows, this.V, 1);
    return this.argmax;
  }

  private applyPenalties(x: Float32Array, p: SamplingParams, tokens: readonly number[], promptLength: number): void {
    const counts = this.counts;
    if (p.repetitionPenalty !== 1) {
      // Each token seen anywhere (prompt or output) once: mark with −1, penalise, clear.
      const r = p.repetitionPenalty;
      for (const t of tokens) {
        if (counts[t] === -1) continue;
        counts[t] = -1;
        x[t] = x[t] > 0 ? x[t] / r : x[t] * r;
      }
      for (const t of tokens) counts[t] = 0;
    }
    if (p.presencePenalty !== 0 || p.frequencyPenalty !== 0) {
      for (let i = promptLength; i < tokens.length; i++) counts[tokens[i]]++;
      for (let i = promptLength; i < tokens.length; i++) {
        const t = tokens[i];
        const c = counts[t];
        if (c === 0) continue;
        x[t] -= p.presencePenalty + p.frequencyPenalty * c;
        counts[t] = 0;
      }
    }
  }

  /**
   * log_softmax of the raw logits (the model's distribution, before penalties and temperature):
   * the logprob of `token` and the k most likely tokens, most likely first.
   */
  logprobsOf(logits: Float32Array, token: number, k: number): { logprob: number; top: { tokenId: number; logprob: number }[] } {
    const V = this.V;
    const lp = this.logprobs;
    kernels().softmax(logits.subarray(0, V), lp, 1, V, true);
    const top: { tokenId: number; logprob: number }[] = [];
    for (let i = 0; i < V && k > 0; i++) {
      const v = lp[i];
      if (top.length === k && v <= top[k - 1].logprob) continue;
      let j = top.length < k ? top.length : k - 1;
      if (top.length < k) top.push({ tokenId: i, logprob: v });
      while (j > 0 && top[j - 1].logprob < v) {
        top[j] = top[j - 1];
        j--;
      }
      top[j] = { tokenId: i, logprob: v };
    }
    return { logprob: lp[token], top };
  }
}
