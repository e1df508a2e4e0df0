// GGUF (version 3), the single-file format of llama.cpp and ggml: a header ("GGUF", version, tensor
// and key/value counts), typed metadata key/values, one info record per tensor (name, dimensions
// innermost first, ggml type, offset), padding to the alignment (32 bytes unless general.alignment
// says otherwise), then the tensor data, each tensor starting on an aligned offset. Everything is
// little-endian.
//
// Tensor types: F32, F16, and ggml's block formats Q8_0 and Q4_0 (32 weights per block with one f16
// scale), quantized exactly as ggml's reference quantizers do so files are bit-identical to
// llama.cpp's. Writing goes to a temporary file that is flushed and renamed over the target.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { PlinthError } from '../errors.js';

export class GGUFError extends PlinthError {}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** ggml tensor types Plinth writes and reads (ggml_type values). */
export const GGMLType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GGMLType = (typeof GGMLType)[keyof typeof GGMLType];

/** Weights per block and bytes per block of each type. */
const BLOCK: Record<GGMLType, { size: number; bytes: number }> = {
  [GGMLType.F32]: { size: 1, bytes: 4 },
  [GGMLType.F16]: { size: 1, bytes: 2 },
  [GGMLType.Q4_0]: { size: 32, bytes: 2 + 16 },
  [GGMLType.Q8_0]: { size: 32, bytes: 2 + 32 },
};

export function ggmlTypeName(t: number): string {
  return Object.entries(GGMLType).find(([, v]) => v === t)?.[0] ?? `type ${t}`;
}

/** Bytes of a tensor of n elements of type t (n must be a whole number of blocks). */
export function ggmlTensorBytes(t: GGMLType, n: number): number {
  const b = BLOCK[t];
  if (n % b.size !== 0) throw new GGUFError(`${ggmlTypeName(t)} needs a multiple of ${b.size} elements per row, got ${n}`);
  return (n / b.size) * b.bytes;
}

// ---- metadata values -------------------------------------------------------------------------

/** gguf_type values of metadata entries. */
export const GGUFValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
type ScalarType = Exclude<(typeof GGUFValueType)[keyof typeof GGUFValueType], 9>;

/** A typed metadata value: JavaScript numbers do not say whether they are u32, i32 or f32. */
export type GGUFValue =
  | { type: ScalarType; value: number | bigint | boolean | string }
  | { type: typeof GGUFValueType.ARRAY; itemType: ScalarType; value: (number | bigint | boolean | string)[] };

export const gguf = {
  u32: (value: number): GGUFValue => ({ type: GGUFValueType.UINT32, value }),
  i32: (value: number): GGUFValue => ({ type: GGUFValueType.INT32, value }),
  f32: (value: number): GGUFValue => ({ type: GGUFValueType.FLOAT32, value }),
  bool: (value: boolean): GGUFValue => ({ type: GGUFValueType.BOOL, value }),
  str: (value: string): GGUFValue => ({ type: GGUFValueType.STRING, value }),
  strings: (value: string[]): GGUFValue => ({ type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value }),
  i32s: (value: number[]): GGUFValue => ({ type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32, value }),
  f32s: (value: number[]): GGUFValue => ({ type: GGUFValueType.ARRAY, itemType: GGUFValueType.FLOAT32, value }),
};

// ---- f16 -------------------------------------------------------------------------------------

const f32Box = new Float32Array(1);
const u32Box = new Uint32Array(f32Box.buffer);

/** float32 → IEEE half bits, rounding to nearest even (as ggml's GGML_FP32_TO_FP16). */
export function fp32ToFp16(x: number): number {
  f32Box[0] = x;
  const w = u32Box[0]!;
  const sign = (w >>> 16) & 0x8000;
  const exp = (w >>> 23) & 0xff;
  const mant = w & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // subnormal half: the value in units of 2^-24, rounded to nearest even
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // a carry out of the mantissa correctly bumps the exponent (up to infinity)
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/** IEEE half bits → number. */
export function fp16ToFp32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ---- block quantizers ------------------------------------------------------------------------
// Every step is rounded to float32 (Math.fround) because ggml computes in float32; the results
// must be bit-identical to quantize_row_q8_0_ref / quantize_row_q4_0_ref.

const fr = Math.fround;

/** Q8_0: per block of 32, d = absmax/127 stored as f16, q = round(x/d) (half away from zero) as int8. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  if (!Number.isInteger(nb)) throw new GGUFError(`Q8_0 needs a multiple of 32 values, got ${x.length}`);
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j]!));
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    view.setUint16(i * 34, fp32ToFp16(d), true);
    for (let j = 0; j < 32; j++) {
      const v = fr(x[i * 32 + j]! * id);
      const q = v < 0 ? -Math.round(-v) : Math.round(v); // C's roundf
      view.setInt8(i * 34 + 2 + j, q);
    }
  }
  return out;
}

/**
 * Q4_0: per block of 32, d = max/−8 where max is the value of largest magnitude (the first such), and
 * q = min(15, trunc(x/d + 8.5)) in 0..15; byte j holds q[j] in its low nibble and q[j+16] in its high one.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  if (!Number.isInteger(nb)) throw new GGUFError(`Q4_0 needs a multiple of 32 values, got ${x.length}`);
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    view.setUint16(i * 18, fp32ToFp16(d), true);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[i * 32 + j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[i * 32 + 16 + j]! * id) + 8.5)));
      out[i * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/** The float32 values of n elements of tensor data of type t. */
export function dequantize(data: Uint8Array, t: GGMLType, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength < ggmlTensorBytes(t, n)) throw new GGUFError(`${ggmlTypeName(t)} data of ${n} elements needs ${ggmlTensorBytes(t, n)} bytes, got ${data.byteLength}`);
  switch (t) {
    case GGMLType.F32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case GGMLType.F16:
      for (let i = 0; i < n; i++) out[i] = fp16ToFp32(view.getUint16(i * 2, true));
      break;
    case GGMLType.Q8_0:
      for (let i = 0; i < n / 32; i++) {
        const d = fp16ToFp32(view.getUint16(i * 34, true));
        for (let j = 0; j < 32; j++) out[i * 32 + j] = view.getInt8(i * 34 + 2 + j) * d;
      }
      break;
    case GGMLType.Q4_0:
      for (let i = 0; i < n / 32; i++) {
        const d = fp16ToFp32(view.getUint16(i * 18, true));
        for (let j = 0; j < 16; j++) {
          const b = data[i * 18 + 2 + j]!;
          out[i * 32 + j] = ((b & 15) - 8) * d;
          out[i * 32 + 16 + j] = ((b >> 4) - 8) * d;
        }
      }
      break;
    default:
      throw new GGUFError(`cannot dequantize ggml ${ggmlTypeName(t)}`);
  }
  return out;
}

/** Encodes float32 values as tensor data of type t. */
export function encodeTensorData(x: Float32Array, t: GGMLType, toF16: (x: Float32Array) => Uint16Array): Uint8Array {
  switch (t) {
    case GGMLType.F32:
      return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case GGMLType.F16: {
      const h = toF16(x);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    case GGMLType.Q8_0:
      return quantizeQ8_0(x);
    case GGMLType.Q4_0:
      return quantizeQ4_0(x);
    default:
      throw new GGUFError(`cannot encode ggml ${ggmlTypeName(t)}`);
  }
}

// ---- writing ---------------------------------------------------------------------------------

/** A tensor to write: shape in row-major order (outermost first, as in PyTorch); data already encoded. */
export interface GGUFTensorOut {
  name: string;
  shape: number[];
  type: GGMLType;
  /** Produces the encoded bytes when the writer reaches this tensor, so only one is held at a time. */
  data: () => Uint8Array;
}

/** Growable little-endian byte writer for the header. */
class ByteWriter {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  length = 0;
  private readonly enc = new TextEncoder();

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.length));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }

  u8(v: number): void { this.reserve(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.reserve(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.reserve(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.reserve(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.reserve(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint): void { this.reserve(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint): void { this.reserve(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  str(s: string): void {
    const b = this.enc.encode(s);
    this.u64(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array { return this.buf.subarray(0, this.length); }
}

function writeScalar(w: ByteWriter, type: ScalarType, v: number | bigint | boolean | string, key: string): void {
  const num = (): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new GGUFError(`metadata '${key}': ${JSON.stringify(v)} is not a finite number`);
    return v;
  };
  const int = (lo: number, hi: number): number => {
    const n = num();
    if (!Number.isInteger(n) || n < lo || n > hi) throw new GGUFError(`metadata '${key}': ${n} does not fit the declared integer type`);
    return n;
  };
  switch (type) {
    case GGUFValueType.UINT8: return w.u8(int(0, 255));
    case GGUFValueType.INT8: return w.i8(int(-128, 127));
    case GGUFValueType.UINT16: return w.u16(int(0, 65535));
    case GGUFValueType.INT16: return w.i16(int(-32768, 32767));
    case GGUFValueType.UINT32: return w.u32(int(0, 2 ** 32 - 1));
    case GGUFValueType.INT32: return w.i32(int(-(2 ** 31), 2 ** 31 - 1));
    case GGUFValueType.FLOAT32: return w.f32(num());
    case GGUFValueType.FLOAT64: return w.f64(num());
    case GGUFValueType.UINT64: return w.u64(typeof v === 'bigint' ? v : int(0, Number.MAX_SAFE_INTEGER));
    case GGUFValueType.INT64: return w.i64(typeof v === 'bigint' ? v : int(-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
    case GGUFValueType.BOOL:
      if (typeof v !== 'boolean') throw new GGUFError(`metadata '${key}': ${JSON.stringify(v)} is not a boolean`);
      return w.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      if (typeof v !== 'string') throw new GGUFError(`metadata '${key}': ${JSON.stringify(v)} is not a string`);
      return w.str(v);
    default:
      throw new GGUFError(`metadata '${key}': unknown value type ${type as number}`);
  }
}

/** The header (everything before the tensor data, padding included) and each tensor's data offset. */
function serializeHeader(metadata: Map<string, GGUFValue>, tensors: GGUFTensorOut[], alignment: number): { header: Uint8Array; offsets: number[]; sizes: number[] } {
  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, v] of metadata) {
    w.str(key);
    w.u32(v.type);
    if (v.type === GGUFValueType.ARRAY) {
      w.u32(v.itemType);
      w.u64(v.value.length);
      for (const item of v.value) writeScalar(w, v.itemType, item, key);
    } else {
      writeScalar(w, v.type, v.value, key);
    }
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new GGUFError(`tensor '${t.name}' is written twice`);
    names.add(t.name);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.shape.length > 0 && t.shape[t.shape.length - 1]! % BLOCK[t.type].size !== 0) {
      throw new GGUFError(`tensor '${t.name}': rows of ${t.shape[t.shape.length - 1]} values cannot be stored as ${ggmlTypeName(t.type)} (blocks of ${BLOCK[t.type].size})`);
    }
    w.str(t.name);
    w.u32(t.shape.length);
    // ggml lists dimensions innermost first (ne[0] is the row length)
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]!);
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    sizes.push(ggmlTensorBytes(t.type, n));
    offset += sizes[sizes.length - 1]!;
    offset += (alignment - (offset % alignment)) % alignment;
  }
  w.pad(alignment);
  return { header: w.bytes(), offsets, sizes };
}

export interface WriteGGUFOptions {
  /** Called after each tensor is written with (tensors done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** Writes a GGUF file atomically; returns its size in bytes. */
export function writeGGUF(path: string, metadata: Map<string, GGUFValue>, tensors: GGUFTensorOut[], options: WriteGGUFOptions = {}): number {
  const alignEntry = metadata.get('general.alignment');
  const alignment = alignEntry ? Number(alignEntry.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) throw new GGUFError(`general.alignment must be a positive multiple of 8, got ${alignment}`);
  const { header, offsets, sizes } = serializeHeader(metadata, tensors, alignment);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  let size = 0;
  try {
    const writeAll = (b: Uint8Array) => {
      for (let at = 0; at < b.length; ) at += writeSync(fd, b, at, b.length - at);
      size += b.length;
    };
    writeAll(header);
    const zeros = new Uint8Array(alignment);
    tensors.forEach((t, i) => {
      const bytes = t.data();
      if (bytes.length !== sizes[i]) throw new GGUFError(`tensor '${t.name}': ${bytes.length} bytes of data, expected ${sizes[i]} for ${ggmlTypeName(t.type)} [${t.shape.join(', ')}]`);
      if (size - header.length !== offsets[i]) throw new GGUFError(`internal: tensor '${t.name}' lands at ${size - header.length}, expected ${offsets[i]}`);
      writeAll(bytes);
      writeAll(zeros.subarray(0, (alignment - (bytes.length % alignment)) % alignment));
      options.onProgress?.(i + 1, tensors.length);
    });
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  return size;
}

// ---- reading ---------------------------------------------------------------------------------

export interface GGUFTensorInfo {
  name: string;
  /** Row-major shape (outermost first): the reverse of ggml's ne. */
  shape: number[];
  type: GGMLType;
  /** Offset of the data from the start of the file. */
  fileOffset: number;
  /** The tensor's encoded bytes (a view into the file). */
  data: Uint8Array;
}

export interface GGUFFile {
  version: number;
  alignment: number;
  metadata: Map<string, GGUFValue>;
  tensors: Map<string, GGUFTensorInfo>;
}

class ByteReader {
  pos = 0;
  private readonly view: DataView;
  private readonly dec = new TextDecoder('utf-8', { fatal: true });

  constructor(readonly buf: Uint8Array, readonly name: string) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new GGUFError(`${this.name}: truncated at byte ${this.pos} while reading ${what} (${n} bytes needed, file is ${this.buf.length})`);
  }

  u8(): number { this.need(1, 'u8'); return this.view.getUint8(this.pos++); }
  i8(): number { this.need(1, 'i8'); return this.view.getInt8(this.pos++); }
  u16(): number { this.need(2, 'u16'); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(): number { this.need(2, 'i16'); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(): number { this.need(4, 'u32'); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(): number { this.need(4, 'i32'); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(): number { this.need(4, 'f32'); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(): number { this.need(8, 'f64'); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64big(): bigint { this.need(8, 'u64'); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64big(): bigint { this.need(8, 'i64'); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }
  /** A u64 count or size, which must be a safe integer and at most `max`. */
  count(what: string, max: number): number {
    const v = this.u64big();
    if (v > BigInt(Math.floor(max))) throw new GGUFError(`${this.name}: ${what} ${v} is impossibly large (at most ${max} here)`);
    return Number(v);
  }
  str(what: string): string {
    const n = this.count(`length of ${what}`, this.buf.length - this.pos);
    this.need(n, what);
    let s: string;
    try {
      s = this.dec.decode(this.buf.subarray(this.pos, this.pos + n));
    } catch {
      throw new GGUFError(`${this.name}: ${what} at byte ${this.pos} is not valid UTF-8`);
    }
    this.pos += n;
    return s;
  }
}

function readScalar(r: ByteReader, type: number, key: string): number | bigint | boolean | string {
  switch (type) {
    case GGUFValueType.UINT8: return r.u8();
    case GGUFValueType.INT8: return r.i8();
    case GGUFValueType.UINT16: return r.u16();
    case GGUFValueType.INT16: return r.i16();
    case GGUFValueType.UINT32: return r.u32();
    case GGUFValueType.INT32: return r.i32();
    case GGUFValueType.FLOAT32: return r.f32();
    case GGUFValueType.FLOAT64: return r.f64();
    case GGUFValueType.UINT64: { const v = r.u64big(); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case GGUFValueType.INT64: { const v = r.i64big(); return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case GGUFValueType.BOOL: {
      const b = r.u8();
      if (b > 1) throw new GGUFError(`${r.name}: metadata '${key}' has boolean byte ${b}`);
      return b === 1;
    }
    case GGUFValueType.STRING: return r.str(`metadata '${key}'`);
    default:
      throw new GGUFError(`${r.name}: metadata '${key}' has unknown value type ${type}`);
  }
}

/** Parses GGUF bytes (versions 2 and 3), validating every count, type and offset before use. */
export function parseGGUF(buf: Uint8Array, name = 'GGUF data'): GGUFFile {
  const r = new ByteReader(buf, name);
  if (buf.length < 4 || r.u32() !== MAGIC) throw new GGUFError(`${name} is not a GGUF file (it does not start with "GGUF")`);
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new GGUFError(`${name}: GGUF version ${version} is not supported (2 and 3 are)`);
  // every tensor info and key/value takes at least 8 bytes, which bounds both counts by the file size
  const nTensors = r.count('tensor count', buf.length / 8);
  const nKV = r.count('metadata count', buf.length / 8);
  const metadata = new Map<string, GGUFValue>();
  for (let i = 0; i < nKV; i++) {
    const key = r.str('metadata key');
    const type = r.u32();
    if (type === GGUFValueType.ARRAY) {
      const itemType = r.u32();
      if (itemType === GGUFValueType.ARRAY || itemType > 12) throw new GGUFError(`${name}: metadata '${key}' has unsupported array item type ${itemType}`);
      const n = r.count(`length of '${key}'`, buf.length - r.pos);
      const value: (number | bigint | boolean | string)[] = new Array(n);
      for (let j = 0; j < n; j++) value[j] = readScalar(r, itemType, key);
      metadata.set(key, { type, itemType: itemType as ScalarType, value });
    } else {
      metadata.set(key, { type: type as ScalarType, value: readScalar(r, type, key) });
    }
  }
  const alignEntry = metadata.get('general.alignment');
  const alignment = alignEntry ? Number(alignEntry.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0) throw new GGUFError(`${name}: invalid general.alignment ${String(alignEntry?.value)}`);
  const infos: { name: string; shape: number[]; type: GGMLType; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const tname = r.str('tensor name');
    const nDims = r.u32();
    if (nDims > 4) throw new GGUFError(`${name}: tensor '${tname}' has ${nDims} dimensions (ggml allows at most 4)`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(r.count(`dimension ${d} of '${tname}'`, buf.length * 2));
    const type = r.u32();
    if (!(type in BLOCK)) throw new GGUFError(`${name}: tensor '${tname}' has ggml type ${type}, which Plinth does not read (F32, F16, Q8_0, Q4_0)`);
    const rowLen = ne[0] ?? 1;
    if (rowLen % BLOCK[type as GGMLType].size !== 0) throw new GGUFError(`${name}: tensor '${tname}' has rows of ${rowLen} values, not whole ${ggmlTypeName(type)} blocks of ${BLOCK[type as GGMLType].size}`);
    const offset = r.count(`offset of '${tname}'`, buf.length);
    if (offset % alignment !== 0) throw new GGUFError(`${name}: tensor '${tname}' starts at offset ${offset}, not a multiple of the alignment ${alignment}`);
    infos.push({ name: tname, shape: ne.reverse(), type: type as GGMLType, offset });
  }
  const dataStart = r.pos + ((alignment - (r.pos % alignment)) % alignment);
  const tensors = new Map<string, GGUFTensorInfo>();
  for (const t of infos) {
    if (tensors.has(t.name)) throw new GGUFError(`${name}: tensor '${t.name}' appears twice`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = ggmlTensorBytes(t.type, n);
    const start = dataStart + t.offset;
    if (start + bytes > buf.length) throw new GGUFError(`${name}: tensor '${t.name}' (${ggmlTypeName(t.type)} [${t.shape.join(', ')}], ${bytes} bytes at ${start}) runs past the end of the file (${buf.length} bytes)`);
    tensors.set(t.name, { name: t.name, shape: t.shape, type: t.type, fileOffset: start, data: buf.subarray(start, start + bytes) });
  }
  return { version, alignment, metadata, tensors };
}

export function readGGUF(path: string): GGUFFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new GGUFError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parseGGUF(buf, path);
}

/** A metadata value as a plain JavaScript value (arrays as arrays). */
export function metadataValue(file: GGUFFile, key: string): unknown {
  return file.metadata.get(key)?.value;
}
