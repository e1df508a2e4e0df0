export { sampleToken, checkSampling, samplingParams, Sampler, MAX_LOGPROBS, type SamplingOptions, type SamplingParams } from './sampling.js';
export { generate, type GenerateOptions } from './generate.js';
export { BlockPool, blockHash, kvBytesPerBlock, type BlockPoolStats } from './block_pool.js';
export { Scheduler, Sequence, type ScheduledChunk, type SchedulerOptions, type SchedulerStep, type SequenceStatus } from './scheduler.js';
export {
  Engine, QueueFullError, TextStream, type EngineEvent, type EngineOptions, type EngineStats, type GenerationRequest,
} from './engine.js';
export { engineGenerator, type EngineGeneratorOptions } from './rollouts.js';
