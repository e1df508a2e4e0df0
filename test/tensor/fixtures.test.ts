// The PyTorch op fixtures (test/fixtures/ops): every op's outputs and gradients match within the
// stated tolerance (max abs diff ≤ 1e-5 × max(1, max |expected|)), on every backend. Every
// fixture file present is run; a file for an op this test does not know fails.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as pl from '../../src/index.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { BACKENDS, assertClose, maxAbs, withBackend } from '../helpers.js';

const dir = path.join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'ops');
const spec = JSON.parse(readFileSync(path.join(dir, 'ops.json'), 'utf8')) as {
  ops: Record<string, { file: string; params: Record<string, number> }>;
};

type T = pl.Tensor;
type Inputs = Map<string, T>;
type Run = (x: Inputs, params: Record<string, number>) => Record<string, T | number>;

const leaf = (x: Inputs, name: string): T => x.get(name)!.clone().requiresGrad_();

/** Backward with upstream gradient `dy` from a main output y: d(sum(y·dy))/dinput. */
function vjp(y: T, dy: T): void {
  y.backward(dy);
}

const RUNNERS: Record<string, Run> = {
  layer_norm: (x, p) => {
    const [xi, w, b] = [leaf(x, 'x'), leaf(x, 'weight'), leaf(x, 'bias')];
    const y = pl.layerNorm(xi, w, b, p.eps);
    vjp(y, x.get('dy')!);
    return { y, dx: xi.grad!, dweight: w.grad!, dbias: b.grad! };
  },
  rms_norm: (x, p) => {
    const [xi, w] = [leaf(x, 'x'), leaf(x, 'weight')];
    const y = pl.rmsNorm(xi, w, p.eps);
    vjp(y, x.get('dy')!);
    return { y, dx: xi.grad!, dweight: w.grad! };
  },
  gelu_tanh: (x) => {
    const xi = leaf(x, 'x');
    const y = pl.gelu(xi, 'tanh');
    vjp(y, x.get('dy')!);
    return { y, dx: xi.grad! };
  },
  silu: (x) => {
    const xi = leaf(x, 'x');
    const y = pl.silu(xi);
    vjp(y, x.get('dy')!);
    return { y, dx: xi.grad! };
  },
  swiglu: (x) => {
    const [g, u] = [leaf(x, 'gate'), leaf(x, 'up')];
    const y = pl.swiglu(g, u);
    vjp(y, x.get('dy')!);
    return { y, dgate: g.grad!, dup: u.grad! };
  },
  softmax: (x) => {
    const xi = leaf(x, 'x');
    const y = pl.softmax(xi, -1);
    vjp(y, x.get('dy')!);
    return { y, dx: xi.grad! };
  },
  cross_entropy: (x, p) => {
    const logits = leaf(x, 'logits');
    const loss = pl.crossEntropy(logits, x.get('targets')!, { ignoreIndex: p.ignore_index });
    loss.backward();
    return { loss, dlogits: logits.grad! };
  },
  attention: (x, p) => attention(x, p, 0),
  gqa_attention: (x, p) => attention(x, p, 0),
  attention_kv_cache: (x, p) => attention(x, p, p.past_length),
  rope: (x, p) => {
    const xi = leaf(x, 'x');
    const positions = x.get('positions')!.data() as Int32Array;
    const D = xi.shape[3];
    const { cos, sin } = pl.ropeTables(positions, D, p.theta);
    const y = pl.rope(xi, cos, sin);
    vjp(y, x.get('dy')!);
    // The fixture's tables are (T, D) with the half-table repeated (HF layout).
    return { y, dx: xi.grad!, cos: pl.cat([cos, cos], 1), sin: pl.cat([sin, sin], 1) };
  },
  embedding: (x) => {
    const w = leaf(x, 'weight');
    const y = pl.embedding(w, x.get('ids')!);
    vjp(y, x.get('dy')!);
    return { y, dweight: w.grad! };
  },
  matmul: (x) => {
    const [a, b] = [leaf(x, 'a'), leaf(x, 'b')];
    const c = pl.matmul(a, b);
    vjp(c, x.get('dc')!);
    return { c, da: a.grad!, db: b.grad! };
  },
  adamw: (x, p) => {
    const param = x.get('param')!.clone();
    param.grad = x.get('grad')!.clone();
    const opt = new pl.AdamW([param], { lr: p.lr, betas: [p.beta1, p.beta2], eps: p.eps, weightDecay: p.weight_decay });
    const st = { m: x.get('exp_avg')!.clone(), v: x.get('exp_avg_sq')!.clone(), step: p.step - 1 };
    opt.state.set(param, st);
    opt.step();
    return { param_out: param, exp_avg_out: st.m, exp_avg_sq_out: st.v };
  },
  clip_grad_norm: (x, p) => {
    const gs = ['g0', 'g1', 'g2'].map((n) => {
      const t = pl.zeros(x.get(n)!.shape);
      t.grad = x.get(n)!.clone();
      return t;
    });
    const norm = pl.clipGradNorm(gs, p.max_norm);
    return { g0_out: gs[0].grad!, g1_out: gs[1].grad!, g2_out: gs[2].grad!, total_norm: norm };
  },
};

function attention(x: Inputs, p: Record<string, number>, qOffset: number): Record<string, T> {
  const [q, k, v] = [leaf(x, 'q'), leaf(x, 'k'), leaf(x, 'v')];
  const out = pl.scaledDotProductAttention(q, k, v, { causal: true, scale: p.scale, qOffset });
  vjp(out, x.get('dout')!);
  return { out, dq: q.grad!, dk: k.grad!, dv: v.grad! };
}

const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();

test('every op fixture file is described in ops.json', () => {
  assert.ok(files.length >= 15, `expected the op fixtures, found ${files.length}`);
  const described = new Set(Object.values(spec.ops).map((o) => o.file));
  for (const f of files) assert.ok(described.has(f), `${f} is not described in ops.json`);
});

for (const file of files) {
  const op = Object.keys(spec.ops).find((k) => spec.ops[k].file === file) ?? file.replace('.safetensors', '');
  for (const backend of BACKENDS) {
    test(`op fixture ${op} on ${backend}`, () => {
      const run = RUNNERS[op];
      assert.ok(run, `no runner for op fixture '${op}' — add one to this test`);
      const { tensors } = readSafetensors(path.join(dir, file));
      const params = spec.ops[op]?.params ?? {};
      const produced = withBackend(backend, () => run(tensors, params));
      const expectedNames = Object.keys(produced);
      assert.ok(expectedNames.length > 0);
      for (const name of expectedNames) {
        const expected = tensors.get(name);
        assert.ok(expected, `fixture ${file} has no tensor '${name}'`);
        const got = produced[name];
        const gotValues = typeof got === 'number' ? [got] : Array.from(got.toFloat32Array());
        const exp = expected.toFloat32Array();
        assertClose(gotValues, exp, 1e-5 * Math.max(1, maxAbs(exp)), `${op}.${name} (${backend})`);
      }
    });
  }
}
