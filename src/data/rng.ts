// A local seeded random stream for data generation and data order. It is counter-based (the n-th
// draw depends only on (seed, n), via the backend's shared hash), so its whole state is two integers
// that a checkpoint can store, and it never touches the global stream that initialisation, dropout
// and sampling draw from: generating a corpus does not change a model's initial weights.
import { mix32, randomWordAt } from '../backend/random.js';
import { ArgumentError } from '../errors.js';

export interface StreamState {
  seed: number;
  counter: number;
}

export class RandomStream {
  seed: number;
  counter: number;

  constructor(seed: number, counter = 0) {
    this.seed = seed >>> 0;
    this.counter = counter;
  }

  /** The next 32-bit word. */
  word(): number {
    return randomWordAt(this.seed, this.counter++);
  }

  /** A uniform integer in [0, n), n ≤ 2^32 (rejection sampling, so no modulo bias). */
  int(n: number): number {
    if (!(n >= 1)) throw new ArgumentError(`cannot draw an integer from an empty range [0, ${n})`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const w = this.word();
      if (w < limit) return w % n;
    }
  }

  /** A uniform number in [0, 1). */
  uniform(): number {
    return this.word() / 4294967296;
  }

  chance(p: number): boolean {
    return this.uniform() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** An index drawn with probability proportional to weights[i]. */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let u = this.uniform() * total;
    for (let i = 0; i < weights.length; i++) {
      u -= weights[i];
      if (u < 0) return i;
    }
    return weights.length - 1;
  }

  /** min(k, items.length) distinct items in random order. */
  sample<T>(items: readonly T[], k: number): T[] {
    const pool = items.slice();
    k = Math.min(k, pool.length);
    for (let i = 0; i < k; i++) {
      const j = i + this.int(pool.length - i);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    return pool.slice(0, k);
  }

  state(): StreamState {
    return { seed: this.seed, counter: this.counter };
  }
}

/** An independent stream seed for sub-stream `index` of `seed` (story i of a corpus, say). */
export function deriveSeed(seed: number, index: number): number {
  return mix32((randomWordAt(seed >>> 0, index >>> 0) ^ 0x27d4eb2f) >>> 0);
}
