// AdamW (decoupled weight decay, torch.optim.AdamW semantics) with parameter groups. The moments
// are allocated once, on the first step; each step is one fused kernel call per parameter.
import type { FloatArray } from '../backend/backend.js';
import { kernels } from '../backend/index.js';
import { ArgumentError } from '../errors.js';
import { outsideScratch, Tensor } from '../tensor/index.js';

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export interface ParamGroup extends AdamWOptions {
  params: Tensor[];
}

interface ParamState {
  m: Tensor;
  v: Tensor;
  step: number;
}

type ResolvedGroup = Required<AdamWOptions> & { params: Tensor[] };

export class AdamW {
  readonly groups: ResolvedGroup[];
  readonly state = new Map<Tensor, ParamState>();

  /** params: a list of tensors (one group) or of groups, each with its own options. */
  constructor(params: Tensor[] | ParamGroup[], defaults: AdamWOptions = {}) {
    const base: Required<AdamWOptions> = {
      lr: defaults.lr ?? 1e-3,
      betas: defaults.betas ?? [0.9, 0.999],
      eps: defaults.eps ?? 1e-8,
      weightDecay: defaults.weightDecay ?? 0.01,
    };
    const groups: ParamGroup[] = params.length > 0 && params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    this.groups = groups.map((g) => {
      const r = { ...base, ...Object.fromEntries(Object.entries(g).filter(([, v]) => v !== undefined)) } as ResolvedGroup;
      const [b1, b2] = r.betas;
      if (!(r.lr >= 0)) throw new ArgumentError(`AdamW: learning rate must be >= 0, got ${r.lr}`);
      if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new ArgumentError(`AdamW: betas must be in [0, 1), got [${b1}, ${b2}]`);
      if (!(r.eps >= 0) || !(r.weightDecay >= 0)) throw new ArgumentError('AdamW: eps and weightDecay must be >= 0');
      for (const p of r.params) {
        if (!p.isContiguous() || p.dtype !== 'f32' && p.dtype !== 'f64') throw new ArgumentError('AdamW: parameters must be contiguous float tensors');
      }
      return r;
    });
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    const k = kernels();
    for (const g of this.groups) {
      for (const p of g.params) {
        if (!p.grad) continue; // as torch.optim: a parameter without a gradient (frozen, or unused) is left alone
        let s = this.state.get(p);
        if (!s) {
          s = outsideScratch(() => ({ m: Tensor.zeros(p.shape, p.dtype), v: Tensor.zeros(p.shape, p.dtype), step: 0 }));
          this.state.set(p, s);
        }
        s.step++;
        k.adamwStep(p.data() as FloatArray, p.grad.data() as FloatArray, s.m.storage as FloatArray, s.v.storage as FloatArray,
          p.size, g.lr, g.betas[0], g.betas[1], g.eps, g.weightDecay, s.step);
      }
    }
  }

  /** Zeroes gradients in place (their buffers are kept, so steady-state steps allocate nothing). */
  zeroGrad(): void {
    const k = kernels();
    for (const g of this.groups) for (const p of g.params) if (p.grad) k.fill(p.grad.storage, 0, p.grad.storage.length);
  }

  /** Sets the learning rate of every group (for schedules). */
  setLr(lr: number): void {
    for (const g of this.groups) g.lr = lr;
  }
}
