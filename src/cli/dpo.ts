// `plinth dpo`: direct preference optimisation on preference pairs (JSONL, or built-in pairs), with
// reference log-probabilities computed once up front; measures held-out exact match, reward and
// KL to the starting model.
import type { Command } from 'commander';
import { dpo, referenceLogProbs } from '../align/index.js';
import { int, num, pct, referenceFor, saveChatModel, startStage } from './align-shared.js';
import { preferenceOptions, trainingPairs, type PreferenceCliOptions } from './reward.js';

interface DPOCliOptions extends PreferenceCliOptions {
  beta: string;
}

export function runDPO(o: DPOCliOptions): void {
  const stage = startStage(o);
  const { say, seed, cm } = stage;
  const pairs = trainingPairs(stage, o);
  const reference = referenceFor(cm);
  const ref = referenceLogProbs(reference, pairs, cm.endId);
  const steps = int(o.steps, 'steps', 60);
  say(`DPO on ${pairs.length} pairs${cm.lora ? ' with LoRA' : ''}: ${steps} steps`);
  const run = dpo(cm.model, pairs, ref, {
    steps, batchSize: int(o.batchSize, 'batch-size', 8), beta: num(o.beta, 'beta', 0.1), lr: num(o.lr, 'lr', 5e-4), padId: cm.endId, seed,
    onStep: (m) => stage.logStep(m.step, steps, m, () => `step ${m.step}/${steps}  loss ${m.loss.toFixed(3)}  accuracy ${pct(m.accuracy)}  margin ${m.margin.toFixed(3)}`),
  });
  saveChatModel(cm, o.out);
  const ev = stage.evaluate({ reference });
  const last = run.steps[run.steps.length - 1];
  const seconds = stage.seconds();
  if (o.json) console.log(JSON.stringify({ out: o.out, loss: last.loss, margin: last.margin, accuracy: ev.accuracy, meanReward: ev.meanReward, kl: ev.kl, seconds }));
  else console.log(`dpo: ${steps} steps in ${seconds.toFixed(0)} s — margin ${last.margin.toFixed(3)}; held-out exact match ${pct(ev.accuracy)}, mean reward ${ev.meanReward.toFixed(3)}, KL to the start ${ev.kl.toFixed(3)}; model in ${o.out}`);
}

export function registerDPOCommand(program: Command): void {
  preferenceOptions(program.command('dpo').description('direct preference optimisation on preference pairs (reference log-probs computed once)'), { steps: '60', lr: '5e-4' })
    .option('--beta <x>', 'DPO β: how far from the reference the policy may move', '0.1')
    .action((o: DPOCliOptions) => runDPO(o));
}
