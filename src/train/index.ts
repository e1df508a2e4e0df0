export { AdamW, type AdamWOptions, type ParamGroup } from './adamw.js';
export { clipGradNorm } from './clip.js';
export { cosineLr, type CosineSchedule } from './schedule.js';
export { lossCurveSvg, type CurvePoint } from './plot.js';
export { checkpointDir, saveTrainingCheckpoint, loadTrainingCheckpoint, ResumeError, TRAINABLE_FILE, type TrainerState } from './checkpoint.js';
export { train, trainStep, evaluate, makeOptimizer, type StepResult, type BatchSource, type TrainConfig, type TrainRun, type TrainResult, type StepMetrics } from './trainer.js';
