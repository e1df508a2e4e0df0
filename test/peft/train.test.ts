// LoRA through the training loop: the loss falls with only the adapter training, the base is left
// untouched, checkpoints hold the adapter alone, and a resumed run continues the same curve.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { baseStateDict, createLoraModel } from '../../src/peft/index.js';
import { train, type BatchSource } from '../../src/train/index.js';

const config = { model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 };
const lora = { r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj', 'o_proj', 'lm_head'] };

class PatternSource implements BatchSource {
  private draws = 0;
  next() {
    const B = 4;
    const T = 12;
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let i = 0; i < B * T; i++) {
      const start = Math.floor(pl.uniformAt(3, this.draws + Math.floor(i / T)) * 100);
      inputs[i] = ((start + (i % T)) * 5) % 32;
      targets[i] = ((start + (i % T) + 1) * 5) % 32;
    }
    this.draws += B;
    return { inputs: pl.tensor(inputs, { shape: [B, T] }), targets: pl.tensor(targets, { shape: [B, T] }) };
  }
  state() { return { draws: this.draws }; }
  setState(s: { draws: number }) { this.draws = s.draws; }
}

const fresh = () => {
  pl.manualSeed(21);
  return createLoraModel(config, lora);
};
const cfg = { steps: 12, lr: 2e-2, warmupSteps: 2, weightDecay: 0, checkpointEvery: 5 };

test('a LoRA run lowers the loss, leaves the base untouched, and resumes exactly from an adapter-only checkpoint', () => {
  const model = fresh();
  const base = new Map([...baseStateDict(model)].map(([n, t]) => [n, t.toFloat32Array()]));
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-lora-train-'));
  const full = train({ model, train: new PatternSource(), config: cfg, outDir: dir, checkpointTrainableOnly: true });
  assert.ok(full.metrics[11].loss < 0.85 * full.metrics[0].loss, `loss ${full.metrics[0].loss} → ${full.metrics[11].loss}`);
  for (const [n, t] of baseStateDict(model)) assert.deepEqual(t.toFloat32Array(), base.get(n), `${n} is frozen`);
  assert.deepEqual(readdirSync(path.join(dir, 'checkpoint')).sort(), ['optimizer.safetensors', 'trainable.safetensors', 'trainer_state.json']);

  // Stop after the first step (a time budget of 0), then resume in a new model on the same base.
  const dir2 = mkdtempSync(path.join(tmpdir(), 'plinth-lora-train-'));
  train({ model: fresh(), train: new PatternSource(), config: { ...cfg, steps: 12 }, outDir: dir2, checkpointTrainableOnly: true, maxSeconds: 0 });
  const resumed = train({ model: fresh(), train: new PatternSource(), config: cfg, outDir: dir2, checkpointTrainableOnly: true, resume: true });
  assert.equal(resumed.steps, 12);
  const a = full.metrics.slice(1).map((m) => m.loss);
  const b = resumed.metrics.slice(1).map((m) => m.loss);
  assert.deepEqual(b, a, 'the resumed run continues the same loss curve');
});
