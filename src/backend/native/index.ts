// Loads the native addon (built by node-gyp into build/Release) and exposes it as a Backend.
// The addon exports one function per kernel with exactly the Backend method's arguments, and a
// `kernels` table of the dtypes each native kernel takes.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, KernelDType, KernelName } from '../backend.js';
import { KERNEL_NAMES } from '../backend.js';

export interface NativeAddon {
  kernels: Record<string, string>;
  cpu: { avx2fma: boolean; avx512f: boolean; avx512bf16: boolean; avx512vnni: boolean };
  numThreads(): number;
  setNumThreads(n: number): void;
  noop(): void;
  [kernel: string]: unknown;
}

function findAddonPath(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'build', 'Release', 'plinth.node');
    if (existsSync(candidate)) return candidate;
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'binding.gyp'))) return null;
    dir = path.dirname(dir);
  }
  return null;
}

let cached: NativeAddon | null | undefined;
let loadError = '';

/** The addon, or null when it was not built (loadError() then says why). */
export function loadAddon(): NativeAddon | null {
  if (cached !== undefined) return cached;
  const file = findAddonPath();
  if (!file) {
    loadError = 'the native addon was not built (build/Release/plinth.node is missing)';
    cached = null;
    return null;
  }
  try {
    cached = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    loadError = `the native addon failed to load: ${(e as Error).message}`;
    cached = null;
  }
  return cached;
}

export function addonLoadError(): string {
  return loadError;
}

/** A Backend made of the addon's kernels. Kernels the addon lacks are absent (the dispatcher
 *  falls back to `ref` for them). */
export function createNativeBackend(addon: NativeAddon): Partial<Backend> & Pick<Backend, 'name' | 'supports'> {
  const table = new Map<string, Set<string>>();
  for (const [k, dtypes] of Object.entries(addon.kernels)) table.set(k, new Set(dtypes.split(',')));
  const backend: Record<string, unknown> = {
    name: 'native',
    supports(kernel: KernelName, dtype: KernelDType): boolean {
      return table.get(kernel)?.has(dtype) ?? false;
    },
  };
  for (const k of KERNEL_NAMES) {
    const fn = addon[k];
    if (typeof fn === 'function') backend[k] = fn;
  }
  return backend as Partial<Backend> & Pick<Backend, 'name' | 'supports'>;
}
