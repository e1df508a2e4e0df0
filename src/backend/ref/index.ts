// The `ref` backend: every kernel in plain TypeScript, written to be read. It is the oracle the
// native kernels are tested against and the first place to learn each kernel's math. Float
// kernels take Float32Array or Float64Array and accumulate in JS numbers (double).
import type { Backend, KernelDType, KernelName } from '../backend.js';
import { cast, copyStrided, fill } from './memory.js';
import { binary, unary, unaryBackward, where } from './elementwise.js';
import { reduce } from './reduce.js';
import { matmul } from './matmul.js';
import { softmax, softmaxBackward } from './softmax.js';
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from './norm.js';
import { crossEntropy, crossEntropyBackward } from './loss.js';
import { swiglu, swigluBackward } from './activation.js';
import { attention, attentionBackward } from './attention.js';
import { rope } from './rope.js';
import { pagedAttention, pagedKVWrite } from './paged.js';
import { gather, indexAdd, indexSelect, scatterAdd } from './indexing.js';
import { col2im, im2col } from './conv.js';
import { dropoutMask } from './random.js';
import { adamwStep } from './optim.js';
import { halfLinear, halfLinearBackward, int8Linear, int8LinearBackward, nf4Dequantize, nf4Linear, nf4LinearBackward } from './quant.js';
import { bf16LinearDot, int8LinearQ8 } from './quantdot.js';

/** fill and copyStrided move any dtype, cast converts between every pair; the rest are float kernels. */
function supports(kernel: KernelName, dtype: KernelDType): boolean {
  if (kernel === 'fill' || kernel === 'copyStrided' || kernel === 'cast') return true;
  if (kernel === 'nf4Dequantize') return dtype === 'u8';
  return dtype === 'f32' || dtype === 'f64';
}

export const refBackend: Backend = {
  name: 'ref',
  supports,
  fill, copyStrided, cast,
  unary, unaryBackward, binary, where,
  reduce, matmul,
  softmax, softmaxBackward, layerNorm, layerNormBackward, rmsNorm, rmsNormBackward,
  crossEntropy, crossEntropyBackward, swiglu, swigluBackward,
  attention, attentionBackward, rope, pagedKVWrite, pagedAttention,
  indexSelect, indexAdd, gather, scatterAdd,
  im2col, col2im, dropoutMask, adamwStep,
  int8Linear, int8LinearBackward, nf4Linear, nf4LinearBackward, nf4Dequantize,
  halfLinear, halfLinearBackward, int8LinearQ8, bf16LinearDot,
};
