// Element types. f32 is the compute type; f64 runs on the ref backend only (for gradient checks);
// i32 holds ids and indices; f16 and bf16 are storage types (bit patterns in a Uint16Array,
// converted with exact round-to-nearest-even); u8 holds bytes and boolean masks.
import type { AnyArray } from '../backend/backend.js';
import { DTypeError } from '../errors.js';
import { scratchBuffer } from './scratch.js';

export type DType = 'f32' | 'f64' | 'i32' | 'f16' | 'bf16' | 'u8';
export type FloatDType = 'f32' | 'f64';
export type Storage = AnyArray;

export const DTYPES: readonly DType[] = ['f32', 'f64', 'i32', 'f16', 'bf16', 'u8'];

// Below this many bytes a zero-filled typed array is as cheap as any; above it, skipping the fill
// (and the first-touch page faults of a fresh zeroed mapping) saves real time per op.
const UNINITIALIZED_MIN_BYTES = 16384;

/**
 * Storage for n elements: zero-filled, or with unspecified contents when `zeroed` is false (for
 * outputs a kernel overwrites completely).
 */
export function allocate(dtype: DType, n: number, zeroed = true): Storage {
  const bytes = n * bytesPerElement(dtype);
  // inside a ScratchPool run (an inference or training step), a recycled buffer
  const scratch = scratchBuffer(bytes);
  if (scratch) {
    const out = view(dtype, scratch, n);
    if (zeroed) out.fill(0);
    return out;
  }
  if (!zeroed && bytes >= UNINITIALIZED_MIN_BYTES) return view(dtype, Buffer.allocUnsafeSlow(bytes).buffer, n);
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'f64': return new Float64Array(n);
    case 'i32': return new Int32Array(n);
    case 'f16': case 'bf16': return new Uint16Array(n);
    case 'u8': return new Uint8Array(n);
    default: throw new DTypeError(`unknown dtype '${dtype as string}': expected one of ${DTYPES.join(', ')}`);
  }
}

/** The first n elements of buf as a typed array of dtype. */
function view(dtype: DType, buf: ArrayBuffer, n: number): Storage {
  switch (dtype) {
    case 'f32': return new Float32Array(buf, 0, n);
    case 'f64': return new Float64Array(buf, 0, n);
    case 'i32': return new Int32Array(buf, 0, n);
    case 'f16': case 'bf16': return new Uint16Array(buf, 0, n);
    case 'u8': return new Uint8Array(buf, 0, n);
    default: throw new DTypeError(`unknown dtype '${dtype as string}': expected one of ${DTYPES.join(', ')}`);
  }
}

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'f32' || dtype === 'f64';
}

export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case 'f64': return 8;
    case 'f32': case 'i32': return 4;
    case 'f16': case 'bf16': return 2;
    default: return 1;
  }
}

export function checkDType(dtype: string): DType {
  if ((DTYPES as readonly string[]).includes(dtype)) return dtype as DType;
  throw new DTypeError(`unknown dtype '${dtype}': expected one of ${DTYPES.join(', ')}`);
}
