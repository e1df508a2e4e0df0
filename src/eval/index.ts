export { compareModels, type EvalBatch, type QualityResult } from './quality.js';
