// The seeded random number generator: one global stream (seed, offset) — counter-based, so
// the same seed gives the same numbers on every machine and backend, and its state is two integers
// that a checkpoint can save and restore for exact resume.
import { randomWordAt } from '../backend/random.js';

export interface RngState {
  seed: number;
  offset: number;
}

const state: RngState = { seed: 0, offset: 0 };

/** Seeds every random draw: initialisation, data order, dropout masks and sampling. */
export function manualSeed(seed: number): void {
  state.seed = seed >>> 0;
  state.offset = 0;
}

export function getRngState(): RngState {
  return { ...state };
}

export function setRngState(s: RngState): void {
  state.seed = s.seed >>> 0;
  state.offset = s.offset;
}

/** Reserves n consecutive counters of the global stream; returns (seed, first counter). */
export function reserve(n: number): RngState {
  const r = { seed: state.seed, offset: state.offset };
  state.offset = (state.offset + n) % 4294967296;
  return r;
}

/** out[i] = uniform in [low, high), 32-bit resolution. */
export function fillUniform(out: Float32Array | Float64Array, low = 0, high = 1): void {
  const { seed, offset } = reserve(out.length);
  const scale = (high - low) / 4294967296;
  for (let i = 0; i < out.length; i++) out[i] = low + randomWordAt(seed, offset + i) * scale;
}

/** out[i] = mean + std · N(0, 1), by the Box–Muller transform on pairs of uniforms. */
export function fillNormal(out: Float32Array | Float64Array, mean = 0, std = 1): void {
  const n = out.length;
  const { seed, offset } = reserve(n + (n & 1));
  for (let i = 0; i < n; i += 2) {
    const u1 = (randomWordAt(seed, offset + i) + 1) / 4294967296; // (0, 1]: log is finite
    const u2 = randomWordAt(seed, offset + i + 1) / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
  }
}

/** A uniform integer in [0, n), from the global stream. */
export function randomInt(n: number): number {
  const { seed, offset } = reserve(2);
  const x = randomWordAt(seed, offset) * 4294967296 + randomWordAt(seed, offset + 1);
  return Math.floor((x / 18446744073709551616) * n);
}

/** One uniform number in [0, 1) from the global stream. */
export function randomUniform(): number {
  const { seed, offset } = reserve(1);
  return randomWordAt(seed, offset) / 4294967296;
}
