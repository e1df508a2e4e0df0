// Alignment: supervised fine-tuning, reward models, PPO and DPO, and their measurement.
export {
  encodeConversation, encodePrompt, encodeResponse, collate, tokenLogProbs, sequenceLogProbs, lastHiddenState, selectRows,
  ScalarHead, trainableParameters, AlignmentDataError, frozenReference, baseReference,
  type EncodedExample, type SequenceBatch, type ReferenceModel,
} from './sequences.js';
export { logSigmoid, maskedMean, bradleyTerryLoss, dpoLoss, gae, ppoPolicyLoss, ppoValueLoss, type DPOOutput } from './losses.js';
export { generateBatch, type GenerateBatchOptions, type Generator } from './generation.js';
export { evaluateChat, evaluateFewShot, batchedSequenceLogProbs, endOfTurnId, type QuestionItem, type EvalOptions, type EvalResult } from './evaluate.js';
export { StageOptimizer, type OptimOptions } from './optim.js';
export { sft, packExamples, type SFTOptions, type SFTResult, type PackedRow } from './sft.js';
export { RewardModel, trainRewardModel, pairwiseAccuracy, rewardScores, REWARD_HEAD_FILE, type EncodedPair, type RewardTrainOptions } from './reward.js';
export { dpo, referenceLogProbs, type DPOOptions, type DPOStep } from './dpo.js';
export { ppo, type PPOOptions, type PPOIteration, type Scorer } from './ppo.js';
export { fitsContext, ANSWER_PREFIX, pairsFromTasks, sftExamplesFromTasks, sftExamplesFromRecords, encodePairs, promptsFromTasks, taskScorer, rewardModelScorer } from './tasks.js';
