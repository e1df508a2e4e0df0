// The tensor layer: Tensor, dtypes, the seeded RNG, autograd scopes and every op.
export { Tensor, numel, contiguousStrides, formatShape, type Shape } from './tensor.js';
export { type DType, type FloatDType, DTYPES, isFloat, bytesPerElement } from './dtype.js';
export { noGrad, isGradEnabled, type GradFn } from './autograd.js';
export { ScratchPool, outsideScratch, setScratchPoison, type ScratchPoolOptions } from './scratch.js';
export { manualSeed, getRngState, setRngState, randomInt, randomUniform, type RngState } from './random.js';
export { uniformAt, randomWordAt } from '../backend/random.js';
export * from './ops/index.js';
