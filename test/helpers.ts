// Shared test helpers: run a body on every backend that can run here, compare tensors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { availableBackends, setBackend, type BackendName } from '../src/backend/index.js';
import type { Tensor } from '../src/tensor/index.js';

// Every test process, and the worker threads and child processes it starts, fills the recycled
// buffers of inference steps with NaN bits as they come back (see ScratchPool): a tensor kept past
// its step shows as NaN, where stale-but-plausible numbers could pass by luck.
process.env.PLINTH_POISON_SCRATCH = '1';

/** The backends to test: every available one (ref always, native where the addon builds). */
export const BACKENDS: BackendName[] = availableBackends();

/** Runs fn with the given backend active, restoring the previous one after. */
export function withBackend<T>(name: BackendName, fn: () => T): T {
  setBackend(name);
  try {
    return fn();
  } finally {
    setBackend(BACKENDS.includes('native') ? 'native' : 'ref');
  }
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Asserts max |actual − expected| ≤ tol, naming the first differing entries on failure. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  let worst = 0;
  const bad: string[] = [];
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    const nanMismatch = Number.isNaN(actual[i]) !== Number.isNaN(expected[i]);
    if (d > worst || nanMismatch) worst = nanMismatch ? Infinity : d;
    if ((d > tol || nanMismatch) && bad.length < 5) bad.push(`[${i}] got ${actual[i]} expected ${expected[i]}`);
  }
  assert.ok(bad.length === 0, `${what}: max abs diff ${worst} > ${tol}; first: ${bad.join('; ')}`);
}

export function tensorValues(t: Tensor): Float64Array {
  return Float64Array.from(t.toFloat32Array());
}

/** n values uniform in [−scale, scale) from a 32-bit LCG of `seed`: the same numbers on every backend and run. */
export function lcgUniform(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

/**
 * Tests that rerun the test file at `fileUrl` (its import.meta.url) in a child process for each capped
 * instruction set (PLINTH_ISA=avx2, =scalar), with `childFlag`=1 so the child knows it is one. CPU
 * detection is cached per process, so each capped ISA needs a process of its own.
 */
export function rerunOnEveryIsa(title: string, fileUrl: string, childFlag: string): void {
  describe(title, () => {
    for (const isa of ['avx2', 'scalar']) {
      test(`PLINTH_ISA=${isa}`, () => {
        const env: NodeJS.ProcessEnv = { ...process.env, PLINTH_ISA: isa, [childFlag]: '1' };
        delete env.NODE_TEST_CONTEXT; // the child reports on its own, not to this runner
        const r = spawnSync(process.execPath, [fileURLToPath(fileUrl)], { env, encoding: 'utf8' });
        assert.equal(r.status, 0, `the native checks failed with PLINTH_ISA=${isa}:\n${r.stdout}\n${r.stderr}`);
      });
    }
  });
}
