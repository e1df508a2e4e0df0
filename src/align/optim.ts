// The optimizer side every stage shares: AdamW over the trainable parameters (weight decay on
// matrices only), warm-up then cosine decay, global-norm clipping.
import { ArgumentError } from '../errors.js';
import { ScratchPool, type Tensor } from '../tensor/index.js';
import { AdamW, clipGradNorm, cosineLr } from '../train/index.js';

export interface OptimOptions {
  steps: number;
  lr: number;
  warmupSteps?: number;
  weightDecay?: number;
  /** Max global gradient norm (default 1; 0 disables clipping). */
  gradClip?: number;
}

export class StageOptimizer {
  readonly adamw: AdamW;
  private step = 0;
  private readonly scratch = new ScratchPool();

  constructor(readonly params: Tensor[], readonly o: OptimOptions) {
    if (!(Number.isInteger(o.steps) && o.steps > 0)) throw new ArgumentError(`steps must be a positive integer, got ${o.steps}`);
    if (!(o.lr > 0)) throw new ArgumentError(`learning rate must be positive, got ${o.lr}`);
    if (params.length === 0) throw new ArgumentError('nothing to train: no parameter requires grad');
    const wd = o.weightDecay ?? 0;
    this.adamw = new AdamW([
      { params: params.filter((p) => p.ndim >= 2), weightDecay: wd },
      { params: params.filter((p) => p.ndim < 2), weightDecay: 0 },
    ], { lr: o.lr, betas: [0.9, 0.95], eps: 1e-8 });
  }

  /**
   * One update: gradients zeroed, `pass` (a batch's forward and backward) run with its tensors
   * drawn from buffers recycled from the update before, then clipping and the scheduled step.
   * Nothing `pass` makes may be used after it: it returns what it measured as numbers or copies.
   */
  run<T>(pass: () => T): { result: T; lr: number; gradNorm: number } {
    this.adamw.zeroGrad();
    const result = this.scratch.run(pass);
    return { result, ...this.update() };
  }

  /** Clips, steps with the scheduled learning rate; returns the rate and the pre-clip gradient norm. */
  private update(): { lr: number; gradNorm: number } {
    const o = this.o;
    const lr = cosineLr({ lr: o.lr, minLr: o.lr / 10, warmupSteps: o.warmupSteps ?? Math.min(20, Math.floor(o.steps / 10)), totalSteps: o.steps }, this.step);
    this.adamw.setLr(lr);
    const clip = o.gradClip ?? 1;
    const gradNorm = clipGradNorm(this.params, clip > 0 ? clip : Infinity);
    this.adamw.step();
    this.step++;
    return { lr, gradNorm };
  }
}
