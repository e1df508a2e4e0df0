// The basic layers, each named as in Hugging Face checkpoints.
import { ArgumentError } from '../errors.js';
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import { Module, type ModuleOptions } from './module.js';

/** How a new layer fills its weights: random (N(0, std), torch-style) or zeros (to be loaded). */
export interface InitOptions extends ModuleOptions {
  /** Standard deviation of the normal initialisation; 0 leaves the weights zero (for loading). */
  std?: number;
}

function normalOrZeros(shape: number[], std: number): Tensor {
  return std > 0 ? pl.randn(shape, { std }) : pl.zeros(shape);
}

/** What every linear layer offers, whatever holds its weights (float, quantized, with adapters). */
export interface LinearLayer extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  forward(x: Tensor): Tensor;
}

export interface LinearOptions extends InitOptions {
  bias?: boolean;
  /** GPT-2's Conv1D layout: the weight is stored (in, out). */
  transposed?: boolean;
}

export type LinearFactory = (inFeatures: number, outFeatures: number, options: LinearOptions) => LinearLayer;

/** The plain float layer: Linear, or Conv1D for the transposed layout. */
export function plainLinear(inFeatures: number, outFeatures: number, options: LinearOptions): LinearLayer {
  return options.transposed ? new Conv1D(inFeatures, outFeatures, options) : new Linear(inFeatures, outFeatures, options);
}

/** A linear layer as the model's factory builds it (options.linearFactory), plain by default. */
export function linearLayer(inFeatures: number, outFeatures: number, options: LinearOptions): LinearLayer {
  return (options.linearFactory ?? plainLinear)(inFeatures, outFeatures, options);
}

/** y = x·Wᵀ + b, W (out, in) — torch.nn.Linear. */
export class Linear extends Module implements LinearLayer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: InitOptions & { bias?: boolean } = {}) {
    super(options);
    this.weight = this.param('weight', normalOrZeros([outFeatures, inFeatures], options.std ?? 0.02));
    this.bias = options.bias ?? true ? this.param('bias', pl.zeros([outFeatures])) : null;
  }

  forward(x: Tensor): Tensor {
    return pl.linear(x, this.weight, this.bias);
  }
}

/** y = x·W + b, W (in, out) — the transposed layout GPT-2 checkpoints use ("Conv1D"). */
export class Conv1D extends Module implements LinearLayer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: InitOptions & { bias?: boolean } = {}) {
    super(options);
    this.weight = this.param('weight', normalOrZeros([inFeatures, outFeatures], options.std ?? 0.02));
    this.bias = options.bias ?? true ? this.param('bias', pl.zeros([outFeatures])) : null;
  }

  forward(x: Tensor): Tensor {
    const y = pl.matmul(x, this.weight);
    return this.bias ? pl.add(y, this.bias) : y;
  }
}

/** A lookup table of V vectors of size C. */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(readonly numEmbeddings: number, readonly dim: number, options: InitOptions = {}) {
    super(options);
    this.weight = this.param('weight', normalOrZeros([numEmbeddings, dim], options.std ?? 0.02));
  }

  forward(ids: Tensor): Tensor {
    return pl.embedding(this.weight, ids);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly dim: number, readonly eps = 1e-5, options: ModuleOptions & { bias?: boolean } = {}) {
    super(options);
    this.weight = this.param('weight', pl.ones([dim]));
    this.bias = options.bias ?? true ? this.param('bias', pl.zeros([dim])) : null;
  }

  forward(x: Tensor): Tensor {
    return pl.layerNorm(x, this.weight, this.bias, this.eps);
  }
}

export class RMSNorm extends Module {
  readonly weight: Tensor;

  constructor(readonly dim: number, readonly eps = 1e-6, options: ModuleOptions = {}) {
    super(options);
    this.weight = this.param('weight', pl.ones([dim]));
  }

  forward(x: Tensor): Tensor {
    return pl.rmsNorm(x, this.weight, this.eps);
  }
}

export class Dropout extends Module {
  constructor(readonly p: number, options: ModuleOptions = {}) {
    super(options);
    if (!(p >= 0 && p < 1)) throw new ArgumentError(`Dropout: probability must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    return this.p > 0 && this.training ? pl.dropout(x, this.p) : x;
  }
}
