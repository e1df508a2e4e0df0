// QLoRA: LoRA adapters on an NF4-quantized frozen base. Gradients flow through the quantized layers
// to every adapter, the loss curve tracks LoRA on the float base, merging dequantizes into a float
// layer, and a trained adapter saves in the PEFT format like any other.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { loadLoraModel, loadQLoraModel, loraLayers, mergeAdapter, saveAdapter } from '../../src/peft/index.js';
import { NF4Linear, quantizedLayers, weightBytes } from '../../src/quant/index.js';
import { train, type BatchSource } from '../../src/train/index.js';
import { assertClose } from '../helpers.js';

const config = { model_type: 'llama', vocab_size: 48, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, tie_word_embeddings: true };
const lora = { r: 4, alpha: 8, targetModules: 'all-linear' };

class PatternSource implements BatchSource {
  private draws = 0;
  next() {
    const B = 4;
    const T = 16;
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = Math.floor(pl.uniformAt(9, this.draws++) * 48);
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = ((start + t) * 7) % 48;
        targets[b * T + t] = ((start + t + 1) * 7) % 48;
      }
    }
    return { inputs: pl.tensor(inputs, { shape: [B, T] }), targets: pl.tensor(targets, { shape: [B, T] }) };
  }
  state() { return { draws: this.draws }; }
  setState(s: { draws: number }) { this.draws = s.draws; }
}

function baseFolder(): string {
  pl.manualSeed(31);
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-qlora-'));
  pl.saveModel(pl.createModel({ ...config, initializer_range: 0.1 }), dir);
  return dir;
}

test('QLoRA: NF4 base layers under LoRA, gradients through them to every adapter, a seventh of the memory', () => {
  const dir = baseFolder();
  pl.manualSeed(1);
  const { model } = loadQLoraModel(dir, lora);
  const q = quantizedLayers(model);
  assert.equal(q.length, 14);
  assert.ok(q.every((l) => l instanceof NF4Linear));
  assert.equal(loraLayers(model).filter((l) => l.adapters.has('default')).length, 14);
  const floatLinear = q.reduce((s, l) => s + l.inFeatures * l.outFeatures * 4, 0);
  const nf4 = q.reduce((s, l) => s + l.weightBytes(), 0);
  assert.ok(nf4 < floatLinear / 6.5, `NF4 linear weights take ${nf4} bytes, f32 ${floatLinear}`);
  assert.ok(weightBytes(model) > nf4);
  const b = new PatternSource().next();
  model.forward(b.inputs, { labels: b.targets }).loss!.backward();
  for (const l of loraLayers(model)) {
    const a = l.adapters.get('default')!;
    assert.ok(a.B.grad && (a.B.grad.toFloat32Array()).some((v) => v !== 0), `${l.prefix}: lora_B gets a gradient`);
  }
  for (const [n, p] of model.namedParameters()) if (!n.includes('lora_')) assert.equal(p.grad, null, `${n} is frozen`);
});

test('QLoRA and LoRA on the same base track each other; merging a quantized base keeps a float layer', () => {
  const dir = baseFolder();
  const run = (qlora: boolean) => {
    pl.manualSeed(2);
    const { model } = qlora ? loadQLoraModel(dir, lora) : loadLoraModel(dir, lora);
    const r = train({ model, train: new PatternSource(), config: { steps: 12, lr: 1e-2, warmupSteps: 2, weightDecay: 0 } });
    return { model, losses: r.metrics.map((m) => m.loss) };
  };
  const f = run(false);
  const q = run(true);
  assert.ok(f.losses[11] < 0.8 * f.losses[0], `LoRA loss ${f.losses[0]} → ${f.losses[11]}`);
  for (let i = 0; i < 12; i++) {
    assert.ok(Math.abs(q.losses[i] - f.losses[i]) <= 0.05 * f.losses[i], `step ${i + 1}: QLoRA loss ${q.losses[i]}, LoRA ${f.losses[i]}`);
  }
  const ids = pl.tensor([[1, 8, 15, 22]], { dtype: 'i32' });
  const model = q.model.eval();
  const before = model.forward(ids).logits.toFloat32Array();
  const adapterDir = saveAdapter(model, path.join(dir, 'adapter'));
  mergeAdapter(model);
  assert.equal(quantizedLayers(model).length, 0, 'merged layers are float');
  assertClose(model.forward(ids).logits.toFloat32Array(), before, 1e-3, 'merged QLoRA model');
  pl.manualSeed(3);
  const reloaded = loadQLoraModel(dir, adapterDir).model;
  assertClose(reloaded.forward(ids).logits.toFloat32Array(), before, 1e-5, 'adapter reloaded on a freshly quantized base');
});
