// `plinth reward`: a reward model (the model plus a scalar head on its last hidden state) trained
// with the Bradley–Terry loss on preference pairs (JSONL, or built-in pairs), with held-out
// pairwise accuracy.
import type { Command } from 'commander';
import { readPreferenceFile, type PairKind } from '../data/index.js';
import { encodePairs, type EncodedPair, pairsFromTasks, pairwiseAccuracy, RewardModel, trainRewardModel } from '../align/index.js';
import { mergedModel } from '../peft/index.js';
import { ArgumentError } from '../errors.js';
import { int, modelOptions, num, pct, startStage, type Stage, type StageCliOptions } from './align-shared.js';

export interface PreferenceCliOptions extends StageCliOptions {
  data?: string;
  onError: string;
  pairs: string;
  steps: string;
  batchSize: string;
  lr: string;
}

export function pairKindOf(v: string): PairKind | 'both' {
  if (v !== 'correct' && v !== 'concise' && v !== 'both') throw new ArgumentError(`--pairs must be correct, concise or both, got '${v}'`);
  return v;
}

/** The training pairs of a preference stage: from --data (bad lines reported) or the built-in tasks. */
export function trainingPairs(stage: Stage, o: PreferenceCliOptions): EncodedPair[] {
  if (o.data) {
    const { records, problems } = readPreferenceFile(o.data, { onError: o.onError === 'skip' ? 'skip' : 'reject' });
    for (const p of problems) stage.say(`skipped ${o.data} line ${p.line}: ${p.message}`);
    return encodePairs(stage.cm.tokenizer, records);
  }
  return pairsFromTasks(stage.cm.tokenizer, stage.trainTasks(), pairKindOf(o.pairs));
}

export function runReward(o: PreferenceCliOptions): void {
  const stage = startStage(o);
  const { say, seed, cm } = stage;
  const kind = pairKindOf(o.pairs);
  const pairs = trainingPairs(stage, o);
  const rm = new RewardModel(cm.model);
  const steps = int(o.steps, 'steps', 100);
  say(`reward model on ${pairs.length} pairs${o.data ? ` from ${o.data}` : ` (built-in, ${kind})`}: ${steps} steps`);
  trainRewardModel(rm, pairs, {
    steps, batchSize: int(o.batchSize, 'batch-size', 8), lr: num(o.lr, 'lr', 1e-3), padId: cm.endId, seed,
    onStep: (m) => stage.logStep(m.step, steps, m, () => `step ${m.step}/${steps}  loss ${m.loss.toFixed(3)}  batch accuracy ${pct(m.accuracy)}`),
  });
  const held = pairsFromTasks(cm.tokenizer, stage.heldOutTasks(), kind);
  const acc = pairwiseAccuracy(rm, held, cm.endId);
  (cm.lora ? new RewardModel(mergedModel(cm.model), rm.head) : rm).save(o.out, cm.tokenizer);
  const seconds = stage.seconds();
  if (o.json) console.log(JSON.stringify({ out: o.out, accuracy: acc.accuracy, margin: acc.margin, seconds }));
  else console.log(`reward: ${steps} steps in ${seconds.toFixed(0)} s — held-out pairwise accuracy ${pct(acc.accuracy)} (mean margin ${acc.margin.toFixed(2)}); reward model in ${o.out}`);
}

/** Options shared by the preference-pair commands (reward, dpo). */
export function preferenceOptions(cmd: Command, defaults: { steps: string; lr: string }): Command {
  return modelOptions(cmd)
    .option('--data <file>', 'preference JSONL: {"prompt", "chosen", "rejected"} per line (TRL shape)')
    .option('--on-error <mode>', 'bad JSONL lines: reject (stop) or skip (report and continue)', 'reject')
    .option('--pairs <kind>', 'built-in pairs: correct (answer vs a wrong one), concise (answer vs rambling) or both', 'correct')
    .option('--train <n>', 'built-in training questions (without --data)', '2000')
    .option('--eval <n>', 'held-out built-in questions', '120')
    .option('--kinds <list>', 'built-in task kinds: holder, location, colour, arithmetic')
    .option('--steps <n>', 'optimizer steps', defaults.steps)
    .option('--batch-size <n>', 'pairs per step', '8')
    .option('--lr <x>', 'peak learning rate', defaults.lr);
}

export function registerRewardCommand(program: Command): void {
  preferenceOptions(program.command('reward').description('train a reward model on preference pairs with the Bradley–Terry loss'), { steps: '100', lr: '1e-3' })
    .action((o: PreferenceCliOptions) => runReward(o));
}
