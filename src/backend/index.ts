// Backend selection and per-kernel dispatch.
//
// `native` is used when the addon loads, unless PLINTH_BACKEND=ref. A kernel the native backend
// lacks, or lacks for the dtype of its arguments (every f64 call, for example), runs on `ref` for
// that call only.
import { BackendError } from '../errors.js';
import type { AnyArray, Backend, KernelDType, KernelName } from './backend.js';
import { KERNEL_NAMES, kernelDType } from './backend.js';
import { refBackend } from './ref/index.js';
import { addonLoadError, createNativeBackend, loadAddon } from './native/index.js';

export type BackendName = 'ref' | 'native';
export type { Backend, KernelName, KernelDType, AnyArray, FloatArray, UnaryOp, BinaryOp, ReduceOp } from './backend.js';
export { KERNEL_NAMES } from './backend.js';

function isTyped(x: unknown): x is AnyArray {
  return ArrayBuffer.isView(x);
}

/** The dtype a call is dispatched on: f64 if any array is f64, else the first array's dtype. */
function callDType(args: unknown[]): KernelDType {
  let first: KernelDType | null = null;
  for (const a of args) {
    if (a instanceof Float64Array) return 'f64';
    if (first === null && isTyped(a)) first = kernelDType(a);
  }
  return first ?? 'f32';
}

function composeNative(): Backend {
  const addon = loadAddon();
  if (!addon) throw new BackendError(`the native backend is unavailable: ${addonLoadError()}; use the ref backend`);
  const native = createNativeBackend(addon);
  const out: Record<string, unknown> = { name: 'native', supports: native.supports };
  for (const k of KERNEL_NAMES) {
    const refFn = refBackend[k] as (...a: unknown[]) => unknown;
    const natFn = native[k] as ((...a: unknown[]) => unknown) | undefined;
    if (!natFn) {
      out[k] = refFn;
      continue;
    }
    out[k] = (...args: unknown[]) => {
      if (!native.supports(k, callDType(args))) return refFn(...args);
      try {
        return natFn(...args);
      } catch (e) {
        throw new BackendError(`native kernel ${(e as Error).message}`);
      }
    };
  }
  return out as unknown as Backend;
}

let active: Backend | null = null;
let nativeComposed: Backend | null = null;

function select(name: BackendName): Backend {
  if (name === 'ref') return refBackend;
  if (name === 'native') {
    nativeComposed ??= composeNative();
    return nativeComposed;
  }
  throw new BackendError(`unknown backend '${name as string}': expected 'ref' or 'native'`);
}

/** The kernels of the active backend. */
export function kernels(): Backend {
  if (active) return active;
  const env = process.env.PLINTH_BACKEND;
  if (env === 'ref' || env === 'native') active = select(env);
  else if (env) throw new BackendError(`PLINTH_BACKEND='${env}' is not a backend: expected 'ref' or 'native'`);
  else active = loadAddon() ? select('native') : refBackend;
  return active;
}

export function setBackend(name: BackendName): void {
  active = select(name);
}

export function getBackend(): BackendName {
  return kernels().name;
}

/** The backends that can run here: always 'ref', and 'native' when the addon loads. */
export function availableBackends(): BackendName[] {
  return loadAddon() ? ['ref', 'native'] : ['ref'];
}

/** Threads used by the native kernels (1 for ref). */
export function numThreads(): number {
  return getBackend() === 'native' ? (loadAddon()?.numThreads() ?? 1) : 1;
}

export function setNumThreads(n: number): void {
  loadAddon()?.setNumThreads(n);
}

export { refBackend, loadAddon };
