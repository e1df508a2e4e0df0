// The training loop: loss falls, schedules, accumulation, checkpoints, and exact resume — a run
// stopped by Ctrl-C and resumed has the same loss curve as an uninterrupted one.
import { mkdtempSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { train, cosineLr, type BatchSource } from '../../src/train/index.js';

const config = { model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64, rms_norm_eps: 1e-5 };

/** A repeating pattern corpus: windows at seeded random offsets; the position is the draw counter. */
class PatternSource implements BatchSource {
  private draws = 0;
  private readonly corpus: Int32Array;
  constructor(private readonly seed: number, private readonly B = 4, private readonly T = 12) {
    this.corpus = Int32Array.from({ length: 500 }, (_, i) => (i * 7 + (i % 5)) % 32);
  }
  next() {
    const inputs = new Int32Array(this.B * this.T);
    const targets = new Int32Array(this.B * this.T);
    for (let b = 0; b < this.B; b++) {
      const start = Math.floor(pl.uniformAt(this.seed, this.draws++) * (this.corpus.length - this.T - 1));
      inputs.set(this.corpus.subarray(start, start + this.T), b * this.T);
      targets.set(this.corpus.subarray(start + 1, start + 1 + this.T), b * this.T);
    }
    return { inputs: pl.tensor(inputs, { shape: [this.B, this.T] }), targets: pl.tensor(targets, { shape: [this.B, this.T] }) };
  }
  state() { return { draws: this.draws }; }
  setState(s: { draws: number }) { this.draws = s.draws; }
}

const cfg = { steps: 8, lr: 1e-2, warmupSteps: 2, gradClip: 1.0, evalEvery: 4, evalBatches: 2, checkpointEvery: 3 };

test('the schedule warms up linearly then decays by a cosine to minLr', () => {
  const s = { lr: 1, warmupSteps: 4, totalSteps: 14, minLr: 0.1 };
  assert.deepEqual([0, 1, 2, 3].map((i) => cosineLr(s, i)), [0.25, 0.5, 0.75, 1]);
  assert.equal(cosineLr(s, 4), 1);
  assert.ok(Math.abs(cosineLr(s, 9) - 0.55) < 1e-12);
  assert.equal(cosineLr(s, 14), 0.1);
});

test('training lowers the loss and writes checkpoint, metrics and plot', () => {
  pl.manualSeed(0);
  const model = pl.createModel(config);
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-train-'));
  const r = train({ model, train: new PatternSource(1), val: () => new PatternSource(99), config: { ...cfg, steps: 30 }, outDir: dir });
  assert.equal(r.steps, 30);
  assert.ok(r.metrics[29].loss < r.metrics[0].loss * 0.8, `loss ${r.metrics[0].loss} → ${r.metrics[29].loss}`);
  assert.ok(r.valLoss !== null && r.valLoss < r.metrics[0].loss);
  assert.ok(existsSync(path.join(dir, 'checkpoint', 'model.safetensors')));
  assert.ok(existsSync(path.join(dir, 'checkpoint', 'optimizer.safetensors')));
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'checkpoint', 'trainer_state.json'), 'utf8')).step, 30);
  assert.equal(readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 30);
  assert.ok(readFileSync(path.join(dir, 'loss.svg'), 'utf8').startsWith('<svg'));
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp') || f.includes('.old')), [], 'no temporary folders left');
  const loaded = pl.loadModel(path.join(dir, 'checkpoint'));
  const ids = pl.tensor([[1, 2, 3]], { dtype: 'i32' });
  assert.deepEqual(loaded.forward(ids).logits.toArray(), model.forward(ids).logits.toArray());
});

test('a run stopped by SIGINT and resumed continues the same loss curve exactly', () => {
  pl.manualSeed(5);
  const full = train({ model: pl.createModel(config), train: new PatternSource(3), val: () => new PatternSource(77), config: cfg, handleSigint: false });

  pl.manualSeed(5);
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-resume-'));
  const first = train({
    model: pl.createModel(config), train: new PatternSource(3), val: () => new PatternSource(77), config: cfg, outDir: dir,
    onStep: (m) => { if (m.step === 5) process.emit('SIGINT'); },
  });
  assert.equal(first.interrupted, true);
  assert.equal(first.steps, 5);

  pl.manualSeed(12345); // the checkpoint's RNG state must win over whatever the process holds
  const second = train({ model: pl.createModel(config), train: new PatternSource(3), val: () => new PatternSource(77), config: cfg, outDir: dir, resume: true });
  assert.equal(second.steps, 8);
  const resumed = second.metrics.map((m) => [m.step, m.loss, m.gradNorm, m.valLoss ?? null]);
  const uninterrupted = full.metrics.map((m) => [m.step, m.loss, m.gradNorm, m.valLoss ?? null]);
  assert.deepEqual(resumed, uninterrupted);
  const lines = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
  assert.deepEqual(lines, full.metrics.map((m) => m.loss));
});

test('gradient accumulation of k micro-batches of size B equals one batch of size kB', () => {
  class Fixed implements BatchSource {
    constructor(private readonly parts: number) {}
    private i = 0;
    private readonly src = new PatternSource(8, 4, 10);
    private readonly batch = this.src.next();
    next() {
      const n = 4 / this.parts;
      const j = this.i++ % this.parts;
      return { inputs: this.batch.inputs.slice(0, j * n, (j + 1) * n).contiguous(), targets: this.batch.targets.slice(0, j * n, (j + 1) * n).contiguous() };
    }
    state() { return this.i; }
    setState(s: number) { this.i = s; }
  }
  const run = (parts: number) => {
    pl.manualSeed(9);
    const model = pl.createModel(config);
    train({ model, train: new Fixed(parts), config: { steps: 2, lr: 1e-2, warmupSteps: 0, gradAccum: parts } });
    return model.parameters()[0].toFloat32Array();
  };
  const one = run(1);
  const two = run(2);
  let worst = 0;
  for (let i = 0; i < one.length; i++) worst = Math.max(worst, Math.abs(one[i] - two[i]));
  assert.ok(worst < 1e-5, `parameters differ by ${worst}`);
});
