// Public API of the data layer: the synthetic story world, document sources, token shards and the
// batch sampler.
// The world model as a namespace (pl.world.applyEvent, pl.world.factsOf, ...): its names are generic.
export * as world from './world.js';
export { generateStory, generateCorpus, corpusStories, corpusStorySeed, type Story, type StoryOptions, type CorpusOptions } from './stories.js';
export { renderStory, type Sentence, type SentenceKind } from './templates.js';
export { RandomStream, deriveSeed, type StreamState } from './rng.js';
export {
  fileSource, storySource, documentSource, findTextFiles, DOCUMENT_SEPARATOR, TEXT_EXTENSIONS,
  type DocumentSource, type DocumentPiece, type ReadLimits,
} from './sources.js';
export {
  TokenSplit, ShardWriter, readManifest, dtypeForVocab, bytesPerToken, MANIFEST_FILE,
  type Manifest, type ShardInfo, type SplitInfo, type SplitName, type TokenDType, type TokenArray,
} from './shards.js';
export { prepareShards, type PrepareOptions, type PrepareResult, type PrepareProgress, type PrepareStats } from './prepare.js';
export { openDataset, type Dataset } from './dataset.js';
export { BatchSampler, type Batch, type SamplerOptions, type SamplerState } from './sampler.js';
export { DataError } from './errors.js';
export {
  taskExamples, preferencePairs, taskReward, normaliseAnswer, statedAnswer, statesAnswer, TASK_KINDS,
  type TaskExample, type TaskKind, type TaskOptions, type PreferencePair, type PairKind,
} from './tasks.js';
export {
  parseInstructionJsonl, parsePreferenceJsonl, readInstructionFile, readPreferenceFile,
  type InstructionExample, type PreferenceExample, type JsonlProblem, type JsonlOptions, type JsonlResult,
} from './instruct.js';
