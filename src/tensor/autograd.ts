// Reverse-mode automatic differentiation: every op that produces a tensor from inputs that require
// grad records a GradFn (the inputs and a backward closure); `backward()` walks them in reverse
// topological order, summing gradients that reach a tensor along several paths.
import { GradError } from '../errors.js';
import { outsideScratch, releaseScratch } from './scratch.js';
import type { Tensor } from './tensor.js';

/** The record an op leaves on its output: which inputs it read, and how to map the output's
 *  gradient to theirs (null for an input that needs none). Backward closures run under noGrad. */
export interface GradFn {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  backward(grad: Tensor): (Tensor | null)[];
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with gradient recording off (no graph is built; results do not require grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Whether an op on these inputs must record its gradient. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/** Marks `out` as produced by an op with the given backward. Returns out. */
export function record(out: Tensor, name: string, inputs: Tensor[], backward: (grad: Tensor) => (Tensor | null)[]): Tensor {
  out.requiresGrad = true;
  out.gradFn = { name, inputs, backward };
  return out;
}

/** Reverse-mode sweep from `root`, seeded with `seed` (ones for a scalar root). Gradients of leaf
 *  tensors (and of tensors that asked with retainGrad) accumulate into `.grad`. */
export interface BackwardHelpers {
  add(a: Tensor, b: Tensor): Tensor;
  /** acc += g in place (acc is a gradient buffer owned by its tensor). */
  addInPlace(acc: Tensor, g: Tensor): void;
  clone(t: Tensor): Tensor;
  ones(like: Tensor): Tensor;
}

export function runBackward(root: Tensor, seed: Tensor | undefined, h: BackwardHelpers): void {
  if (!root.requiresGrad) {
    throw new GradError('backward() was called on a tensor that does not require grad: no input of the ops that made it has requiresGrad set');
  }
  if (!seed) {
    if (root.size !== 1) {
      throw new GradError(`backward() needs a scalar output or an explicit gradient; this tensor has shape [${root.shape.join(', ')}]`);
    }
    seed = h.ones(root);
  } else if (seed.shape.length !== root.shape.length || seed.shape.some((d, i) => d !== root.shape[i])) {
    throw new GradError(`backward() gradient has shape [${seed.shape.join(', ')}] but the tensor has shape [${root.shape.join(', ')}]`);
  }

  // Reverse topological order by iterative depth-first search.
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i];
      if (child.requiresGrad && !visited.has(child)) {
        visited.add(child);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }

  // Pending gradients, and how many of them lie on each storage buffer (a backward may pass its
  // gradient on unchanged, or as a view, to several inputs). A gradient that has been passed on and
  // lies on no pending buffer is dead: inside a scratch run its buffer goes back to the pool at
  // once, so the sweep reuses it instead of holding every gradient until the step ends.
  const grads = new Map<Tensor, Tensor>();
  const pending = new Map<ArrayBufferLike, number>();
  const hold = (g: Tensor) => pending.set(g.storage.buffer, (pending.get(g.storage.buffer) ?? 0) + 1);
  const drop = (g: Tensor) => {
    const n = pending.get(g.storage.buffer)! - 1;
    if (n === 0) pending.delete(g.storage.buffer);
    else pending.set(g.storage.buffer, n);
  };
  const releaseIfDead = (g: Tensor) => {
    if (g !== seed && !pending.has(g.storage.buffer)) releaseScratch(g.storage);
  };
  grads.set(root, seed);
  hold(seed);
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    for (let n = order.length - 1; n >= 0; n--) {
      const t = order[n];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      drop(g);
      if (!t.gradFn || t.retainsGrad) {
        // A leaf owns its gradient buffer: later backward calls accumulate into it in place. It
        // outlives a training step's scratch run, so it is never drawn from one.
        if (t.grad) h.addInPlace(t.grad, g);
        else t.grad = outsideScratch(() => h.clone(g));
      }
      if (!t.gradFn) {
        releaseIfDead(g);
        continue;
      }
      const inputGrads = t.gradFn.backward(g);
      const inputs = t.gradFn.inputs;
      const replaced: Tensor[] = [];
      for (let i = 0; i < inputs.length; i++) {
        const gi = inputGrads[i];
        const x = inputs[i];
        if (!gi || !x.requiresGrad) continue;
        const acc = grads.get(x);
        const sum = acc ? h.add(acc, gi) : gi;
        grads.set(x, sum);
        hold(sum);
        if (acc) {
          drop(acc);
          replaced.push(acc);
        }
      }
      // only once every input has what it keeps (the same gradient may go to several)
      for (const d of replaced) releaseIfDead(d);
      for (const gi of inputGrads) if (gi) releaseIfDead(gi);
      releaseIfDead(g);
    }
  } finally {
    gradEnabled = prev;
  }
}
