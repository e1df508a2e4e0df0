// Counter-based random numbers shared by every backend: the n-th number of a stream depends only
// on (seed, n), computed with 32-bit integer arithmetic, so the native kernels reproduce it bit for
// bit and a stream can be resumed or split without carrying state.

/** A 32-bit integer finaliser (the "lowbias32" hash): a bijection on [0, 2^32). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** A 32-bit random word for position `counter` (taken mod 2^32) of stream `seed` (taken mod 2^32). */
export function randomWordAt(seed: number, counter: number): number {
  const k = mix32((seed ^ 0x9e3779b9) >>> 0);
  const h = mix32(((counter >>> 0) ^ k) >>> 0);
  return mix32((h + k) >>> 0);
}

/** A uniform number in [0, 1) with 24 random bits, exactly representable in float32. */
export function uniformAt(seed: number, counter: number): number {
  return (randomWordAt(seed, counter) >>> 8) * (1 / 16777216);
}
