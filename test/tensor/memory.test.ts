// Memory stays flat over a long training-style loop: 1,000 iterations of forward, backward and an
// AdamW update; resident memory after warm-up may not keep growing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { BACKENDS, withBackend } from '../helpers.js';

for (const backend of BACKENDS) {
  test(`resident memory is flat over 1,000 training iterations (${backend})`, () => withBackend(backend, () => {
    pl.manualSeed(0);
    const B = 32, C = 64, H = 128, V = 10;
    const x = pl.randn([B, C]);
    const y = pl.randint(0, V, [B]);
    const w1 = pl.randn([C, H], { std: 0.1 }).requiresGrad_();
    const w2 = pl.randn([H, V], { std: 0.1 }).requiresGrad_();
    const g = pl.ones([H]).requiresGrad_();
    const opt = new pl.AdamW([w1, w2, g], { lr: 1e-3 });
    const samples: number[] = [];
    let first = 0;
    let last = 0;
    for (let it = 0; it < 1000; it++) {
      opt.zeroGrad();
      const h = pl.layerNorm(pl.matmul(x, w1), g, null).gelu('tanh');
      const loss = pl.crossEntropy(pl.matmul(h, w2), y);
      loss.backward();
      pl.clipGradNorm([w1, w2, g], 1.0);
      opt.step();
      if (it === 0) first = loss.item();
      last = loss.item();
      if (it >= 200 && it % 100 === 0) samples.push(process.memoryUsage().rss);
    }
    assert.ok(last < first, `the loop trains (loss ${first} → ${last})`);
    const growth = (samples[samples.length - 1] - samples[0]) / 2 ** 20;
    // Garbage collection makes RSS wander by a few MB; a leak of even one step's tensors
    // (~100 KB × 800 steps) would exceed this bound.
    assert.ok(growth < 24, `RSS grew by ${growth.toFixed(1)} MB between iteration 200 and 1,000: ${samples.map((s) => (s / 2 ** 20).toFixed(1)).join(', ')} MB`);
  }));
}
