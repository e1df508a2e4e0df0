export { sampleToken, checkSampling, type SamplingOptions } from './sampling.js';
export { generate, type GenerateOptions } from './generate.js';
