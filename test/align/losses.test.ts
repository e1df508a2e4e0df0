// The alignment objectives against PyTorch (test/fixtures/align/align.json, made by
// make_fixtures.py beside it): DPO and Bradley–Terry losses and their gradients (large margins of
// both signs included), sequence log-probabilities of masked labels and their gradient, PPO's
// clipped policy and value losses with gradients, and GAE on a fixed sequence. On every backend.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bradleyTerryLoss, dpoLoss, gae, ppoPolicyLoss, ppoValueLoss, sequenceLogProbs, tokenLogProbs } from '../../src/align/index.js';
import * as pl from '../../src/tensor/index.js';
import { assertClose, BACKENDS, withBackend } from '../helpers.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const fx = JSON.parse(readFileSync(path.resolve(here, '../../../test/fixtures/align/align.json'), 'utf8'));

const leaf = (v: number[], shape?: number[]) => pl.tensor(Float32Array.from(v), { shape: shape ?? [v.length] }).requiresGrad_();
const values = (t: pl.Tensor) => t.toFloat32Array();
const TOL = 1e-5;

for (const backend of BACKENDS) {
  describe(`alignment losses match PyTorch (${backend})`, () => {
    test('DPO loss, gradients and implicit rewards', () => withBackend(backend, () => {
      const d = fx.dpo;
      const pc = leaf(d.policy_chosen);
      const pr = leaf(d.policy_rejected);
      const out = dpoLoss(pc, pr, pl.tensor(Float32Array.from(d.ref_chosen)), pl.tensor(Float32Array.from(d.ref_rejected)), d.beta);
      out.loss.backward();
      assertClose([out.loss.item()], [d.loss], TOL, 'dpo loss');
      assertClose(values(pc.grad!), d.grad_policy_chosen, TOL, 'dpo grad chosen');
      assertClose(values(pr.grad!), d.grad_policy_rejected, TOL, 'dpo grad rejected');
      assertClose(out.chosenRewards, d.chosen_rewards, 1e-4, 'chosen rewards');
      assertClose(out.rejectedRewards, d.rejected_rewards, 1e-4, 'rejected rewards');
    }));

    test('Bradley–Terry loss and gradients', () => withBackend(backend, () => {
      const d = fx.bradley_terry;
      const c = leaf(d.chosen);
      const r = leaf(d.rejected);
      const loss = bradleyTerryLoss(c, r);
      loss.backward();
      assertClose([loss.item()], [d.loss], TOL, 'bt loss');
      assertClose(values(c.grad!), d.grad_chosen, TOL, 'bt grad chosen');
      assertClose(values(r.grad!), d.grad_rejected, TOL, 'bt grad rejected');
    }));

    test('token and sequence log-probabilities of masked labels, and the gradient', () => withBackend(backend, () => {
      const d = fx.sequence_logprobs;
      const logits = leaf(d.logits, [d.B, d.T, d.V]);
      const labels = pl.tensor(Int32Array.from(d.labels), { shape: [d.B, d.T] });
      assertClose(values(tokenLogProbs(logits, labels)), d.token_logprobs, TOL, 'token log-probs');
      const seq = sequenceLogProbs(logits, labels);
      assertClose(values(seq), d.sequence_logprobs, 1e-4, 'sequence log-probs');
      pl.sum(pl.mul(seq, pl.tensor(Float32Array.from(d.upstream)))).backward();
      assertClose(values(logits.grad!), d.grad_logits, TOL, 'grad logits');
    }));

    test('PPO clipped policy and value losses and their gradients', () => withBackend(backend, () => {
      const d = fx.ppo;
      const shape = [d.B, d.T];
      const f = (v: number[]) => pl.tensor(Float32Array.from(v), { shape });
      const logp = leaf(d.logp, shape);
      const pg = ppoPolicyLoss(logp, f(d.old_logp), f(d.advantages), f(d.mask), d.clip);
      pg.loss.backward();
      assertClose([pg.loss.item()], [d.policy_loss], TOL, 'policy loss');
      assertClose(values(logp.grad!), d.grad_logp, TOL, 'grad logp');
      assert.ok(pg.clipFraction > 0 && pg.clipFraction < 1, `some ratios clip, some do not (fraction ${pg.clipFraction})`);
      const v = leaf(d.values, shape);
      const vf = ppoValueLoss(v, f(d.old_values), f(d.returns), f(d.mask), d.clip);
      vf.backward();
      assertClose([vf.item()], [d.value_loss], TOL, 'value loss');
      assertClose(values(v.grad!), d.grad_values, TOL, 'grad values');
    }));
  });
}

test('GAE matches PyTorch on a fixed sequence', () => {
  const d = fx.gae;
  const g = gae(d.rewards, d.values, d.gamma, d.lambda);
  assertClose(g.advantages, d.advantages, 1e-6, 'advantages');
  assertClose(g.returns, d.returns, 1e-6, 'returns');
  // γ = λ = 1 and zero values: every advantage is the sum of the rewards still to come.
  const flat = gae([1, 2, 3], [0, 0, 0], 1, 1);
  assert.deepEqual(Array.from(flat.advantages), [6, 5, 3]);
});
