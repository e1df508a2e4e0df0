// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Reading validates the header completely
// before touching data; writing is atomic (temp file + rename).
import { readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { PlinthError } from '../errors.js';
import { type DType, Tensor, numel } from '../tensor/index.js';

export class SafetensorsError extends PlinthError {}

const FROM_ST: Record<string, DType> = { F32: 'f32', F64: 'f64', I32: 'i32', F16: 'f16', BF16: 'bf16', U8: 'u8' };
const TO_ST: Record<DType, string> = { f32: 'F32', f64: 'F64', i32: 'I32', f16: 'F16', bf16: 'BF16', u8: 'U8' };
const BYTES: Record<DType, number> = { f32: 4, f64: 8, i32: 4, f16: 2, bf16: 2, u8: 1 };

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** Parses safetensors bytes. `name` is used in error messages. */
export function parseSafetensors(buf: Uint8Array, name = 'safetensors data'): SafetensorsFile {
  if (buf.length < 8) throw new SafetensorsError(`${name}: too short to hold a safetensors header (${buf.length} bytes)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > buf.length - 8 || headerLen > 100_000_000) {
    throw new SafetensorsError(`${name}: header length ${headerLen} exceeds the file size ${buf.length}`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + headerLen))) as Record<string, unknown>;
  } catch (e) {
    throw new SafetensorsError(`${name}: the header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsError(`${name}: the header is not a JSON object`);
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(header)) {
    if (key === '__metadata__') {
      metadata = value as Record<string, string>;
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = typeof info?.dtype === 'string' ? FROM_ST[info.dtype] : undefined;
    if (!dtype) throw new SafetensorsError(`${name}: tensor '${key}' has unsupported dtype ${JSON.stringify(info?.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${name}: tensor '${key}' has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0) || offs[1] < offs[0] || offs[1] > dataLen) {
      throw new SafetensorsError(`${name}: tensor '${key}' has invalid data_offsets ${JSON.stringify(offs)} (data section is ${dataLen} bytes)`);
    }
    const n = numel(shape as number[]);
    const bytes = offs[1] - offs[0];
    if (bytes !== n * BYTES[dtype]) {
      throw new SafetensorsError(`${name}: tensor '${key}' of shape [${(shape as number[]).join(', ')}] and dtype ${info.dtype} needs ${n * BYTES[dtype]} bytes, but its offsets span ${bytes}`);
    }
    const t = Tensor.empty(shape as number[], dtype);
    new Uint8Array(t.storage.buffer, t.storage.byteOffset, bytes).set(buf.subarray(dataStart + offs[0], dataStart + offs[1]));
    tensors.set(key, t);
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new SafetensorsError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parseSafetensors(buf, path);
}

/** Serialises tensors (sorted by name, 8-byte aligned header) into safetensors bytes. */
export function serializeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const entries = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const bytes = t.size * BYTES[t.dtype];
    header[name] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const [, t] of entries) {
    const d = t.data();
    out.set(new Uint8Array(d.buffer, d.byteOffset, t.size * BYTES[t.dtype]), at);
    at += t.size * BYTES[t.dtype];
  }
  return out;
}

/** Writes a file atomically: a temporary file in the same folder, flushed, then renamed over. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function writeSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
