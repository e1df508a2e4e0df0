// Feed-forward blocks: the GELU MLP of GPT-2/BERT and the SwiGLU MLP of Llama.
import * as pl from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import { linearLayer, type InitOptions, type LinearLayer } from './layers.js';
import { Module } from './module.js';

/** down(silu(gate(x)) ⊙ up(x)), with Llama's names gate_proj, up_proj, down_proj. */
export class SwiGLUMLP extends Module {
  readonly gate_proj: LinearLayer;
  readonly up_proj: LinearLayer;
  readonly down_proj: LinearLayer;

  constructor(hidden: number, intermediate: number, options: InitOptions & { bias?: boolean; outStd?: number } = {}) {
    super(options);
    const bias = options.bias ?? false;
    this.gate_proj = this.add(linearLayer(hidden, intermediate, { ...this.sub('gate_proj'), std: options.std, bias }));
    this.up_proj = this.add(linearLayer(hidden, intermediate, { ...this.sub('up_proj'), std: options.std, bias }));
    this.down_proj = this.add(linearLayer(intermediate, hidden, { ...this.sub('down_proj'), std: options.outStd ?? options.std, bias }));
  }

  forward(x: Tensor): Tensor {
    return this.down_proj.forward(pl.swiglu(this.gate_proj.forward(x), this.up_proj.forward(x)));
  }
}

/** fc2(gelu(fc1(x))) with torch.nn.Linear layers named as the caller says (BERT: intermediate/output). */
export class GeluMLP extends Module {
  readonly fc1: LinearLayer;
  readonly fc2: LinearLayer;

  constructor(hidden: number, intermediate: number, options: InitOptions & { names?: [string, string]; approximate?: 'none' | 'tanh' } = {}) {
    super(options);
    const [n1, n2] = options.names ?? ['fc1', 'fc2'];
    this.fc1 = this.add(linearLayer(hidden, intermediate, { ...this.sub(n1), std: options.std }));
    this.fc2 = this.add(linearLayer(intermediate, hidden, { ...this.sub(n2), std: options.std }));
    this.approximate = options.approximate ?? 'none';
  }

  private readonly approximate: 'none' | 'tanh';

  forward(x: Tensor): Tensor {
    return this.fc2.forward(pl.gelu(this.fc1.forward(x), this.approximate));
  }
}
