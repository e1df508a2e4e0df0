// `plinth align-demo`: the whole alignment pipeline on the built-in tasks, measured. From a model
// pre-trained on the synthetic stories (pre-trained here first when no --model is given):
//   pre-trained, few-shot → SFT → reward model → PPO (programmatic reward) and DPO (preference pairs),
// each measured on held-out questions: exact-match accuracy of greedy answers, mean reward of
// sampled answers, KL to the SFT model (the reference of PPO and DPO), and time.
import path from 'node:path';
import type { Command } from 'commander';
import type { PairKind } from '../data/index.js';
import {
  dpo, pairsFromTasks, evaluateChat, evaluateFewShot, pairwiseAccuracy, ppo, promptsFromTasks, referenceLogProbs, RewardModel,
  ScalarHead, sft, frozenReference, sftExamplesFromTasks, taskScorer, rewardModelScorer, trainRewardModel, type EvalResult,
} from '../align/index.js';
import { getBackend, numThreads } from '../backend/index.js';
import { ArgumentError } from '../errors.js';
import { engineGenerator } from '../infer/index.js';
import { saveModel } from '../io/index.js';
import { manualSeed } from '../tensor/index.js';
import {
  ANSWER_TOKENS, copyModel, EVAL_SPLIT, frozenCopy, int, loadChatModel, num, parseKinds, pct, tasksFor, TRAIN_SPLIT,
} from './align-shared.js';
import { runPretrain } from './pretrain.js';

interface DemoOptions {
  model?: string;
  out: string;
  train: string;
  eval: string;
  kinds?: string;
  pairs: string;
  rambling: string;
  sftSteps: string;
  rmSteps: string;
  ppoIterations: string;
  ppoReward: string;
  ppoLr: string;
  dpoSteps: string;
  dpoLr: string;
  pretrainSteps: string;
  seed: string;
  json?: boolean;
}

interface Row {
  stage: string;
  accuracy: number;
  reward: number;
  kl: number;
  tokens: number;
  seconds: number;
  note?: string;
}

export async function runAlignDemo(o: DemoOptions): Promise<Row[]> {
  const say = (s: string) => { if (!o.json) console.log(s); };
  const seed = int(o.seed, 'seed', 0, 0);
  const t0 = performance.now();
  const rows: Row[] = [];
  const clock = () => performance.now();
  let modelDir = o.model;
  if (!modelDir) {
    // The quickstart preset with 256-token rows (8 per step, so the same tokens per step): a story
    // and its question need more than the quickstart's 128 positions. Three times the quickstart's
    // steps by default: only then does the model copy facts from its context well enough for SFT to
    // build on (a story's "the pink clock" predicted from its "a small pink clock").
    modelDir = path.join(o.out, 'pretrain');
    const steps = String(int(o.pretrainSteps, 'pretrain-steps', 2400));
    say(`pre-training a quickstart model with 256-token context for ${steps} steps → ${modelDir}`);
    const ts = clock();
    await runPretrain({ out: modelDir, preset: 'tiny', blockSize: '256', batchSize: '8', steps, stories: '20000', seed: String(seed), samples: '0', json: o.json });
    rows.push({ stage: 'pre-train', accuracy: NaN, reward: NaN, kl: NaN, tokens: NaN, seconds: (clock() - ts) / 1000 });
  }
  const cm = loadChatModel(modelDir);
  const { tokenizer, endId } = cm;
  const kinds = parseKinds(o.kinds);
  const pairKind = o.pairs as PairKind | 'both';
  const ppoReward = o.ppoReward;
  if (!['model', 'exact'].includes(ppoReward)) throw new ArgumentError(`--ppo-reward must be model or exact, got '${ppoReward}'`);
  if (!['correct', 'concise', 'both'].includes(pairKind)) throw new ArgumentError(`--pairs must be correct, concise or both, got '${o.pairs}'`);
  const train = tasksFor(cm, TRAIN_SPLIT, int(o.train, 'train', 8000), kinds);
  const heldOut = tasksFor(cm, EVAL_SPLIT, int(o.eval, 'eval', 240), kinds);
  say(`tasks: ${train.length} training and ${heldOut.length} held-out examples (${kinds.join(', ')}); ${getBackend()} backend, ${numThreads()} threads`);
  const stop = [endId];
  // Rollouts and evaluations run through the inference engine (one, reused: its pool fits the largest batch).
  const generator = engineGenerator();
  const record = (stage: string, r: EvalResult, seconds: number, note?: string) => {
    rows.push({ stage, accuracy: r.accuracy, reward: r.meanReward, kl: r.kl, tokens: r.sampledTokens, seconds, note });
    say(`  ${stage}: accuracy ${pct(r.accuracy)}, mean reward ${r.meanReward.toFixed(3)}${Number.isNaN(r.kl) ? '' : `, KL ${r.kl.toFixed(3)}`} (${Object.entries(r.byKind).map(([k, v]) => `${k} ${v.correct}/${v.n}`).join(', ')})`);
  };

  // 0. The pre-trained model, few-shot in plain text.
  manualSeed(seed);
  let ts = clock();
  const base = evaluateFewShot(cm.model, tokenizer, heldOut, train.slice(0, 200), { shots: 3, generator: engineGenerator() });
  record('pre-trained (few-shot)', base, (clock() - ts) / 1000, `${base.meanShots.toFixed(1)} shots on average`);

  // 1. SFT on the training questions' exact answers.
  say('SFT ...');
  ts = clock();
  const policy = copyModel(cm.model);
  const sftSteps = int(o.sftSteps, 'sft-steps', 1200);
  const rambling = num(o.rambling, 'rambling', 0.1);
  // One example per row: packed rows would put other stories' names and colours in front of each
  // question, and this small model then copies from the wrong story.
  sft(policy, sftExamplesFromTasks(tokenizer, train, { rambling }), {
    steps: sftSteps, batchSize: 16, pack: false, lr: 2e-3, padId: endId, seed,
    onStep: (m) => { if (m.step % Math.max(1, Math.round(sftSteps / 5)) === 0) say(`  step ${m.step}/${sftSteps} loss ${m.loss.toFixed(3)}`); },
  });
  saveModel(policy, path.join(o.out, 'sft'), { tokenizer });
  const sftSeconds = (clock() - ts) / 1000;
  manualSeed(seed);
  record('SFT', evaluateChat(policy, tokenizer, heldOut, { maxNewTokens: ANSWER_TOKENS, generator }), sftSeconds);
  const reference = frozenReference(frozenCopy(policy));

  // 2. Reward model from the SFT model, on preference pairs.
  say('reward model ...');
  ts = clock();
  const rm = new RewardModel(copyModel(policy));
  const trainPairs = pairsFromTasks(tokenizer, train, pairKind);
  const rmSteps = int(o.rmSteps, 'rm-steps', 100);
  trainRewardModel(rm, trainPairs, {
    steps: rmSteps, batchSize: 8, lr: 1e-3, padId: endId, seed,
    onStep: (m) => { if (m.step % Math.max(1, Math.round(rmSteps / 5)) === 0) say(`  step ${m.step}/${rmSteps} loss ${m.loss.toFixed(3)} batch accuracy ${pct(m.accuracy)}`); },
  });
  rm.save(path.join(o.out, 'reward'), tokenizer);
  const rmEval = pairwiseAccuracy(rm, pairsFromTasks(tokenizer, heldOut, pairKind), endId);
  rows.push({ stage: 'reward model', accuracy: rmEval.accuracy, reward: NaN, kl: NaN, tokens: NaN, seconds: (clock() - ts) / 1000, note: `pairwise accuracy on held-out ${pairKind} pairs, margin ${rmEval.margin.toFixed(2)}` });
  say(`  reward model: held-out pairwise accuracy ${pct(rmEval.accuracy)}, mean margin ${rmEval.margin.toFixed(2)}`);

  // 3. PPO against the reward model (or the programmatic reward), KL-penalised towards the SFT model.
  say('PPO ...');
  ts = clock();
  const ppoPolicy = copyModel(policy);
  const C = (policy.config.hidden_size ?? policy.config.n_embd) as number;
  const prompts = promptsFromTasks(tokenizer, train);
  const iterations = int(o.ppoIterations, 'ppo-iterations', 12);
  manualSeed(seed + 1);
  const scorer = ppoReward === 'model' ? rewardModelScorer(rm, prompts, endId) : taskScorer(tokenizer, train, stop);
  const ppoRun = ppo(ppoPolicy, new ScalarHead(C, { prefix: 'v_head' }), reference, prompts, scorer, {
    iterations, batchSize: 32, lr: num(o.ppoLr, 'ppo-lr', 1e-4), beta: 0.1, maxNewTokens: ANSWER_TOKENS, stopIds: stop, padId: endId, seed, generator,
    onIteration: (m) => say(`  iteration ${m.iteration}/${iterations} reward ${m.score.toFixed(3)} KL ${m.kl.toFixed(3)} length ${m.length.toFixed(1)} (${m.seconds.toFixed(1)} s)`),
  });
  saveModel(ppoPolicy, path.join(o.out, 'ppo'), { tokenizer });
  const ppoSeconds = (clock() - ts) / 1000;
  manualSeed(seed);
  const first = ppoRun.iterations[0];
  const last = ppoRun.iterations[ppoRun.iterations.length - 1];
  record('PPO', evaluateChat(ppoPolicy, tokenizer, heldOut, { maxNewTokens: ANSWER_TOKENS, reference, generator }), ppoSeconds,
    `${ppoReward === 'model' ? 'reward-model score' : 'programmatic reward'} in training ${first.score.toFixed(2)} → ${last.score.toFixed(2)}`);

  // 4. DPO on preference pairs, from the SFT model.
  say('DPO ...');
  ts = clock();
  const dpoPolicy = copyModel(policy);
  const dpoSteps = int(o.dpoSteps, 'dpo-steps', 100);
  // One pass over as many pairs as the steps take: the reference log-probabilities are computed for those only.
  const dpoPairs = trainPairs.slice(0, dpoSteps * 8);
  const refLogps = referenceLogProbs(reference, dpoPairs, endId);
  const beta = 0.1;
  const dpoRun = dpo(dpoPolicy, dpoPairs, refLogps, {
    steps: dpoSteps, batchSize: 8, beta, lr: num(o.dpoLr, 'dpo-lr', 3e-5), padId: endId, seed,
    onStep: (m) => { if (m.step % Math.max(1, Math.round(dpoSteps / 5)) === 0) say(`  step ${m.step}/${dpoSteps} loss ${m.loss.toFixed(3)} accuracy ${pct(m.accuracy)} margin ${m.margin.toFixed(3)}`); },
  });
  saveModel(dpoPolicy, path.join(o.out, 'dpo'), { tokenizer });
  const dpoSeconds = (clock() - ts) / 1000;
  manualSeed(seed);
  const lastDpo = dpoRun.steps[dpoRun.steps.length - 1];
  record('DPO', evaluateChat(dpoPolicy, tokenizer, heldOut, { maxNewTokens: ANSWER_TOKENS, reference, generator }), dpoSeconds, `${pairKind} pairs, final margin ${lastDpo.margin.toFixed(2)}`);
  // SFT's own KL to itself is 0 by definition; it is the reference of the rows below it.
  rows.find((r) => r.stage === 'SFT')!.kl = 0;

  const total = (clock() - t0) / 1000;
  if (o.json) {
    console.log(JSON.stringify({ rows, seconds: total, heldOut: heldOut.length, train: train.length }));
  } else {
    console.log(`\n${formatTable(rows)}\n`);
    console.log(`align-demo: ${total.toFixed(0)} s in all; models in ${o.out}/{sft,reward,ppo,dpo}`);
  }
  return rows;
}

/** The results as a Markdown table (what the README shows). */
export function formatTable(rows: Row[]): string {
  const f = (x: number, d: number) => (Number.isNaN(x) ? '-' : x.toFixed(d));
  const lines = [
    '| stage | exact-match accuracy | mean reward | KL to SFT | answer tokens (sampled) | time (s) | note |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.stage} | ${pct(r.accuracy)} | ${f(r.reward, 3)} | ${f(r.kl, 3)} | ${f(r.tokens, 1)} | ${r.seconds.toFixed(0)} | ${r.note ?? ''} |`),
  ];
  return lines.join('\n');
}

export function registerAlignDemoCommand(program: Command): void {
  program
    .command('align-demo')
    .description('SFT → reward model → PPO and DPO on the built-in story questions and word problems, with a table of measured effects')
    .option('--model <dir>', 'a model pre-trained on the synthetic stories (default: pre-train one first)')
    .option('--out <dir>', 'run folder for the models of every stage', 'runs/align-demo')
    .option('--train <n>', 'training questions', '8000')
    .option('--eval <n>', 'held-out questions', '240')
    .option('--kinds <list>', 'task kinds: holder, location, colour, arithmetic (default all)')
    .option('--pairs <kind>', 'preference pairs: correct (answer vs wrong), concise (answer vs rambling) or both', 'both')
    .option('--rambling <fraction>', 'fraction of SFT answers given in needless words (the habit DPO and PPO then remove)', '0.1')
    .option('--sft-steps <n>', 'SFT steps', '1200')
    .option('--rm-steps <n>', 'reward-model steps', '100')
    .option('--ppo-iterations <n>', 'PPO rollout batches', '12')
    .option('--ppo-reward <kind>', 'what scores PPO rollouts: exact (the programmatic reward) or model (the reward model)', 'exact')
    .option('--ppo-lr <x>', 'PPO learning rate', '1e-4')
    .option('--dpo-steps <n>', 'DPO steps', '100')
    .option('--dpo-lr <x>', 'DPO learning rate', '3e-5')
    .option('--pretrain-steps <n>', 'pre-training steps when no --model is given', '2400')
    .option('--seed <n>', 'random seed', '0')
    .option('--json', 'machine-readable output')
    .action(async (o: DemoOptions) => { await runAlignDemo(o); });
}
