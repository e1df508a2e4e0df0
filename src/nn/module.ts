// Module: a tree of layers whose parameters carry their Hugging Face state-dict names verbatim, so
// saving is a listing and loading is a lookup.
import { PlinthError } from '../errors.js';
import { formatShape, type Tensor } from '../tensor/index.js';
import type { LinearFactory } from './layers.js';

export class StateDictError extends PlinthError {}

export interface ModuleOptions {
  /** The Hugging Face state-dict path of this module ('' for the root), e.g. 'model.layers.0.mlp'. */
  prefix?: string;
  /** Builds the linear layers below this module (set once at the root, inherited by every child).
   *  Plain layers by default; LoRA and quantization supply their own, so layers are replaced at
   *  construction and never materialise weights they will not keep. */
  linearFactory?: LinearFactory;
}

export function joinName(prefix: string | undefined, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

export abstract class Module {
  readonly prefix: string;
  readonly linearFactory: LinearFactory | undefined;
  training = true;
  private readonly ownParams = new Map<string, Tensor>();
  private readonly children: Module[] = [];

  constructor(options: ModuleOptions = {}) {
    this.prefix = options.prefix ?? '';
    this.linearFactory = options.linearFactory;
  }

  /** Registers a parameter under `prefix.name`; returns it, requiring grad. */
  protected param(name: string, t: Tensor): Tensor {
    t.requiresGrad_(true);
    this.ownParams.set(joinName(this.prefix, name), t);
    return t;
  }

  /** Registers a child module; returns it. */
  protected add<M extends Module>(child: M): M {
    this.children.push(child);
    return child;
  }

  /** Puts `next` where the child `old` was (a LoRA layer swaps a quantized base for the float
   *  layer that merging produces). */
  protected replaceChild(old: Module, next: Module): void {
    const i = this.children.indexOf(old);
    if (i < 0) throw new StateDictError(`replaceChild: '${old.prefix}' is not a child of '${this.prefix}'`);
    this.children[i] = next;
  }

  /** This module and every module below it, parents before children. */
  modules(): Module[] {
    const out: Module[] = [];
    const visit = (m: Module) => {
      out.push(m);
      for (const c of m.children) visit(c);
    };
    visit(this);
    return out;
  }

  /** The path under which a child named `name` lives. */
  protected sub(name: string): ModuleOptions {
    return { prefix: joinName(this.prefix, name), linearFactory: this.linearFactory };
  }

  /** Every parameter with its Hugging Face name, in registration order; shared tensors once. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const visit = (m: Module) => {
      for (const [n, t] of m.ownParams) {
        if (!seen.has(t)) {
          seen.add(t);
          out.push([n, t]);
        }
      }
      for (const c of m.children) visit(c);
    };
    visit(this);
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  /**
   * Copies tensors into the parameters by name. Every missing, unexpected or misshapen tensor is
   * named in one error (strict by default); nothing is modified unless all of them fit.
   */
  loadStateDict(state: Map<string, Tensor>, options: { strict?: boolean } = {}): void {
    const strict = options.strict ?? true;
    const params = this.stateDict();
    const problems: string[] = [];
    for (const [name, p] of params) {
      const t = state.get(name);
      if (!t) {
        if (strict) problems.push(`missing tensor '${name}' (expected shape ${formatShape(p.shape)})`);
      } else if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
        problems.push(`tensor '${name}' has shape ${formatShape(t.shape)}, expected ${formatShape(p.shape)}`);
      }
    }
    if (strict) for (const name of state.keys()) if (!params.has(name)) problems.push(`unexpected tensor '${name}'`);
    if (problems.length) throw new StateDictError(`the weights do not match the model:\n  ${problems.join('\n  ')}`);
    for (const [name, p] of params) {
      const t = state.get(name);
      if (!t) continue;
      const src = t.dtype === p.dtype ? t : t.to(p.dtype);
      (p.storage as Float32Array).set(src.data() as Float32Array);
    }
  }

  train(mode = true): this {
    this.training = mode;
    for (const c of this.children) c.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }
}
