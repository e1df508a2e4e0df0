// `plinth ppo`: PPO on the built-in questions, scored by the programmatic reward (1 for the exact answer, 0.5 for it in needless words) or
// by a reward model trained with `plinth reward`; KL-penalised towards the starting model (with
// LoRA, its frozen base). Measures held-out exact match, mean reward and KL.
import type { Command } from 'commander';
import {
  ppo, promptsFromTasks, RewardModel, rewardModelScorer, ScalarHead, taskScorer, type Scorer,
} from '../align/index.js';
import { engineGenerator } from '../infer/index.js';
import { ANSWER_TOKENS, int, modelOptions, num, pct, referenceFor, saveChatModel, startStage, type StageCliOptions } from './align-shared.js';

interface PPOCliOptions extends StageCliOptions {
  rewardModel?: string;
  iterations: string;
  batchSize: string;
  epochs: string;
  lr: string;
  beta: string;
  maxNewTokens: string;
}

export function runPPO(o: PPOCliOptions): void {
  const stage = startStage(o);
  const { say, seed, cm } = stage;
  const train = stage.trainTasks();
  const prompts = promptsFromTasks(cm.tokenizer, train);
  const stop = [cm.endId];
  let score: Scorer = taskScorer(cm.tokenizer, train, stop);
  if (o.rewardModel) {
    score = rewardModelScorer(RewardModel.load(o.rewardModel).model, prompts, cm.endId);
  }
  const reference = referenceFor(cm);
  const C = (cm.model.config.hidden_size ?? cm.model.config.n_embd) as number;
  const iterations = int(o.iterations, 'iterations', 12);
  say(`PPO on ${prompts.length} prompts scored by ${o.rewardModel ? `the reward model in ${o.rewardModel}` : 'the programmatic reward (1 for the exact answer, 0.5 for it in needless words)'}${cm.lora ? ', LoRA' : ''}: ${iterations} iterations`);
  const run = ppo(cm.model, new ScalarHead(C, { prefix: 'v_head' }), reference, prompts, score, {
    iterations, batchSize: int(o.batchSize, 'batch-size', 16), ppoEpochs: int(o.epochs, 'epochs', 4), lr: num(o.lr, 'lr', 2e-4),
    beta: num(o.beta, 'beta', 0.05), maxNewTokens: int(o.maxNewTokens, 'max-new-tokens', ANSWER_TOKENS), stopIds: stop, padId: cm.endId, seed,
    generator: engineGenerator(),
    onIteration: (m) => {
      if (o.json) console.log(JSON.stringify(m));
      else console.log(`iteration ${m.iteration}/${iterations}  reward ${m.score.toFixed(3)}  KL ${m.kl.toFixed(3)}  length ${m.length.toFixed(1)}  clipped ${pct(m.clipFraction)}`);
    },
  });
  saveChatModel(cm, o.out);
  const ev = stage.evaluate({ reference });
  const first = run.iterations[0];
  const last = run.iterations[run.iterations.length - 1];
  const seconds = stage.seconds();
  if (o.json) console.log(JSON.stringify({ out: o.out, trainingReward: [first.score, last.score], accuracy: ev.accuracy, meanReward: ev.meanReward, kl: ev.kl, seconds }));
  else console.log(`ppo: ${iterations} iterations in ${seconds.toFixed(0)} s — training reward ${first.score.toFixed(3)} → ${last.score.toFixed(3)}; held-out exact match ${pct(ev.accuracy)}, mean reward ${ev.meanReward.toFixed(3)}, KL to the start ${ev.kl.toFixed(3)}; model in ${o.out}`);
}

export function registerPPOCommand(program: Command): void {
  modelOptions(program.command('ppo').description('PPO with a KL penalty to the starting model, scored by the programmatic reward or a reward model'))
    .option('--reward-model <dir>', 'score with this reward model (from plinth reward) instead of the programmatic reward')
    .option('--train <n>', 'built-in training prompts', '2000')
    .option('--eval <n>', 'held-out built-in questions', '120')
    .option('--kinds <list>', 'built-in task kinds: holder, location, colour, arithmetic')
    .option('--iterations <n>', 'rollout batches', '12')
    .option('--batch-size <n>', 'prompts per rollout batch', '16')
    .option('--epochs <n>', 'PPO epochs per rollout batch', '4')
    .option('--lr <x>', 'learning rate', '2e-4')
    .option('--beta <x>', 'KL penalty coefficient β', '0.05')
    .option('--max-new-tokens <n>', 'longest sampled response', String(ANSWER_TOKENS))
    .action((o: PPOCliOptions) => runPPO(o));
}
