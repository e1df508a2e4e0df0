// Linear layers whose weights are stored quantized (int8, NF4, NF4 with double quantization) or in
// a 16-bit float (bf16, f16). They are frozen: the autograd op passes gradients to the input (and
// to a bias, if the layer has a trainable one), never to the weight — which is what QLoRA needs
// from its base layers. Built by `quantizedLinearFactory`, so a model is constructed quantized and
// never holds the float weights it will not keep.
import { kernels } from '../backend/index.js';
import { ArgumentError, DTypeError, ShapeError } from '../errors.js';
import { Module, type LinearFactory, type LinearLayer, type LinearOptions } from '../nn/index.js';
import * as pl from '../tensor/index.js';
import { type Tensor, Tensor as TensorClass } from '../tensor/index.js';
import { isGradEnabled, needsGrad, record } from '../tensor/autograd.js';
import {
  dequantizeAbsmax, dequantizeNF4, dynamicMap, int8Scales, NF4_BLOCK, NF4_CODE, quantizeAbsmax, quantizeInt8, quantizeNF4,
  DQ_BLOCK, type QuantizedAbsmax,
} from './formats.js';

export type QuantMethod = 'int8' | 'nf4' | 'nf4-dq' | 'bf16' | 'f16';
export const QUANT_METHODS: readonly QuantMethod[] = ['int8', 'nf4', 'nf4-dq', 'bf16', 'f16'];

export class QuantizationError extends ArgumentError {}

/**
 * What a quantized layer rounds its input to before the dot products: 'f32' (exact, the default),
 * 'int8' (blocks of 32, llama.cpp's Q8_0; int8 weights, integer dot products) or 'bf16' (bf16
 * weights, bf16 pair products). Rounded activations are used only where no gradient can flow.
 */
export type ActivationPrecision = 'f32' | 'int8' | 'bf16';

/** The weight tensors of a quantized layer, by name under the layer's prefix (bitsandbytes' names). */
export type QuantTensors = Map<string, Tensor>;

/**
 * y = x·Wᵀ (+ b) with a frozen W: `forward` and `backward` are the dequantize-and-multiply kernels
 * for x (M,K) → y (M,N) and dy (M,N) → dx (M,K).
 */
function frozenLinear(x: Tensor, N: number, K: number, bias: Tensor | null,
  forward: (x: Float32Array, y: Float32Array, M: number) => void,
  backward: (dy: Float32Array, dx: Float32Array, M: number) => void,
  rounded: ((x: Float32Array, y: Float32Array, M: number) => void) | null = null): Tensor {
  if (x.dtype !== 'f32') throw new DTypeError(`quantized linear: the input must be f32, got ${x.dtype}`);
  if (x.shape[x.ndim - 1] !== K) throw new ShapeError(`quantized linear: input has ${x.shape[x.ndim - 1]} features, the layer takes ${K}`);
  const M = x.size / K;
  const y = TensorClass.empty([...x.shape.slice(0, -1), N]);
  (rounded && !needsGrad(x) ? rounded : forward)(x.data() as Float32Array, y.storage as Float32Array, M);
  if (needsGrad(x)) {
    record(y, 'quantizedLinear', [x], (g) => {
      const dx = TensorClass.empty(x.shape);
      backward(g.data() as Float32Array, dx.storage as Float32Array, M);
      return [dx];
    });
  }
  return bias ? pl.add(y, bias) : y;
}

/** What every quantized linear layer offers beyond LinearLayer: its stored tensors and bytes. */
export abstract class QuantizedLinear extends Module implements LinearLayer {
  abstract readonly method: QuantMethod;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: LinearOptions) {
    super(options);
    if (options.transposed) throw new QuantizationError(`${this.prefix}: quantizing GPT-2's transposed (Conv1D) layout is not supported; quantize a Linear layout model`);
    // The bias stays float and frozen (QLoRA trains only adapters); it is loaded like any parameter.
    this.bias = options.bias ?? true ? this.param('bias', pl.zeros([outFeatures])).requiresGrad_(false) : null;
  }

  /** Quantizes a float weight (N,K) row-major into this layer. */
  abstract quantize(w: Float32Array): void;
  /** The stored tensors, named as saved (`weight`, `weight.absmax`, ... or `SCB`). */
  abstract tensors(): QuantTensors;
  /** Takes the stored tensors (as read from a quantized folder). */
  abstract load(t: QuantTensors): void;
  /** The float weight (N,K) the stored one stands for (for merging adapters, and for tests). */
  abstract dequantize(): Float32Array;
  abstract forward(x: Tensor): Tensor;

  /** The precision the input is rounded to (see ActivationPrecision); set it with setActivations. */
  activations: ActivationPrecision = 'f32';

  /** The rounded-activation precision this layer's format offers, if any. */
  get fastActivations(): ActivationPrecision | null {
    return null;
  }

  setActivations(p: ActivationPrecision): void {
    if (p !== 'f32' && p !== this.fastActivations) {
      throw new QuantizationError(`${this.prefix}: ${this.method} weights take f32${this.fastActivations ? ` or ${this.fastActivations}` : ''} activations, not ${p}`);
    }
    this.activations = p;
  }

  /** Whether this forward may round the input: the option is on and no gradient can flow (no
   *  gradient recording, or a layer in eval mode), so training always sees the exact product. */
  protected roundsInput(): boolean {
    return this.activations !== 'f32' && (!isGradEnabled() || !this.training);
  }

  /** Bytes of the stored weight (with its scales), without the bias. */
  weightBytes(): number {
    let b = 0;
    for (const t of this.tensors().values()) b += t.size * pl.bytesPerElement(t.dtype);
    return b;
  }

  protected need(t: QuantTensors, name: string, dtype: string, size: number): Tensor {
    const x = t.get(name);
    if (!x) throw new QuantizationError(`${this.prefix}: missing tensor '${this.prefix}.${name}'`);
    if (x.dtype !== dtype || x.size !== size) {
      throw new QuantizationError(`${this.prefix}.${name}: expected ${size} values of ${dtype}, got ${x.size} of ${x.dtype} (shape [${x.shape.join(', ')}])`);
    }
    return x;
  }
}

/** int8 weight, per output channel (bitsandbytes' Linear8bitLt storage: `weight` int8, `SCB` f32).
 *  safetensors holds the int8 bytes as U8 (the tensor layer has no i8 dtype). */
export class Int8Linear extends QuantizedLinear {
  readonly method = 'int8';
  private q: Int8Array = new Int8Array(0);
  private scb: Float32Array = new Float32Array(0);
  private scale: Float32Array = new Float32Array(0);

  quantize(w: Float32Array): void {
    const r = quantizeInt8(w, this.outFeatures, this.inFeatures);
    this.set(r.q, r.scb);
  }

  private set(q: Int8Array, scb: Float32Array): void {
    this.q = q;
    this.scb = scb;
    this.scale = int8Scales(scb);
  }

  tensors(): QuantTensors {
    const N = this.outFeatures, K = this.inFeatures;
    return new Map([
      ['weight', new TensorClass(new Uint8Array(this.q.buffer, this.q.byteOffset, this.q.length), [N, K], 'u8')],
      ['SCB', new TensorClass(this.scb, [N], 'f32')],
    ]);
  }

  load(t: QuantTensors): void {
    const N = this.outFeatures, K = this.inFeatures;
    const w = this.need(t, 'weight', 'u8', N * K).data() as Uint8Array;
    this.set(new Int8Array(w.buffer, w.byteOffset, w.length), this.need(t, 'SCB', 'f32', N).data() as Float32Array);
  }

  dequantize(): Float32Array {
    const K = this.inFeatures;
    const out = new Float32Array(this.q.length);
    for (let i = 0; i < out.length; i++) out[i] = this.q[i] * this.scale[Math.floor(i / K)];
    return out;
  }

  override get fastActivations(): ActivationPrecision {
    return 'int8';
  }

  forward(x: Tensor): Tensor {
    const N = this.outFeatures, K = this.inFeatures;
    const k = kernels();
    return frozenLinear(x, N, K, this.bias,
      (xs, y, M) => k.int8Linear(xs, this.q, this.scale, y, M, N, K),
      (dy, dx, M) => k.int8LinearBackward(dy, this.q, this.scale, dx, M, N, K),
      this.roundsInput() ? (xs, y, M) => k.int8LinearQ8(xs, this.q, this.scale, y, M, N, K) : null);
  }
}

/** NF4 weight (bitsandbytes Linear4bit, quant_type nf4, blocksize 64), with or without double
 *  quantization of the absmax. The kernels take the absmax expanded to f32 once at load time
 *  (4 bytes per 64 weights), while the stored form keeps bitsandbytes' 8-bit codes. */
export class NF4Linear extends QuantizedLinear {
  readonly method: 'nf4' | 'nf4-dq';
  private packed: Uint8Array = new Uint8Array(0);
  private absmax: Float32Array = new Float32Array(0);
  private dq: QuantizedAbsmax | null = null;

  constructor(inFeatures: number, outFeatures: number, options: LinearOptions, readonly doubleQuant: boolean) {
    super(inFeatures, outFeatures, options);
    this.method = doubleQuant ? 'nf4-dq' : 'nf4';
  }

  private get n(): number {
    return this.inFeatures * this.outFeatures;
  }

  quantize(w: Float32Array): void {
    const q = quantizeNF4(w);
    this.packed = q.packed;
    if (this.doubleQuant) {
      this.dq = quantizeAbsmax(q.absmax);
      this.absmax = dequantizeAbsmax(this.dq);
    } else {
      this.absmax = q.absmax;
    }
  }

  tensors(): QuantTensors {
    const blocks = this.absmax.length;
    const state: Record<string, unknown> = {
      quant_type: 'nf4', blocksize: NF4_BLOCK, dtype: 'float32', shape: [this.outFeatures, this.inFeatures],
    };
    const out: QuantTensors = new Map([['weight', new TensorClass(this.packed, [this.packed.length, 1], 'u8')]]);
    if (this.dq) {
      out.set('weight.absmax', new TensorClass(this.dq.codes, [blocks], 'u8'));
      out.set('weight.quant_map', new TensorClass(NF4_CODE.slice(), [16], 'f32'));
      out.set('weight.nested_absmax', new TensorClass(this.dq.nestedAbsmax, [this.dq.nestedAbsmax.length], 'f32'));
      out.set('weight.nested_quant_map', new TensorClass(dynamicMap(), [256], 'f32'));
      Object.assign(state, { nested_blocksize: DQ_BLOCK, nested_dtype: 'float32', nested_offset: this.dq.offset });
    } else {
      out.set('weight.absmax', new TensorClass(this.absmax, [blocks], 'f32'));
      out.set('weight.quant_map', new TensorClass(NF4_CODE.slice(), [16], 'f32'));
    }
    // bitsandbytes packs the non-tensor state as JSON bytes under this name
    const json = new TextEncoder().encode(JSON.stringify(state));
    out.set('weight.quant_state.bitsandbytes__nf4', new TensorClass(json, [json.length], 'u8'));
    return out;
  }

  load(t: QuantTensors): void {
    const blocks = Math.ceil(this.n / NF4_BLOCK);
    const packed = this.need(t, 'weight', 'u8', Math.ceil(this.n / 2)).data() as Uint8Array;
    const map = this.need(t, 'weight.quant_map', 'f32', 16).data() as Float32Array;
    if (map.some((v, i) => v !== NF4_CODE[i])) throw new QuantizationError(`${this.prefix}.weight.quant_map is not the NF4 code table`);
    const stateBytes = t.get('weight.quant_state.bitsandbytes__nf4');
    if (!stateBytes) throw new QuantizationError(`${this.prefix}: missing tensor '${this.prefix}.weight.quant_state.bitsandbytes__nf4'`);
    let state: { blocksize?: unknown; shape?: unknown; nested_offset?: unknown; nested_blocksize?: unknown };
    try {
      state = JSON.parse(new TextDecoder().decode(stateBytes.data() as Uint8Array)) as typeof state;
    } catch (e) {
      throw new QuantizationError(`${this.prefix}.weight.quant_state is not valid JSON: ${(e as Error).message}`);
    }
    if (state.blocksize !== NF4_BLOCK) throw new QuantizationError(`${this.prefix}: NF4 blocksize ${String(state.blocksize)} is not supported (only ${NF4_BLOCK})`);
    const shape = state.shape as number[] | undefined;
    if (!Array.isArray(shape) || shape[0] !== this.outFeatures || shape[1] !== this.inFeatures) {
      throw new QuantizationError(`${this.prefix}: quantized shape ${JSON.stringify(shape)} does not match the layer (${this.outFeatures}, ${this.inFeatures})`);
    }
    this.packed = packed;
    if (this.doubleQuant) {
      if (state.nested_blocksize !== DQ_BLOCK || typeof state.nested_offset !== 'number') {
        throw new QuantizationError(`${this.prefix}: double quantization needs nested_blocksize ${DQ_BLOCK} and a nested_offset in the quant_state`);
      }
      const nestedMap = this.need(t, 'weight.nested_quant_map', 'f32', 256).data() as Float32Array;
      const expected = dynamicMap();
      if (nestedMap.some((v, i) => v !== expected[i])) throw new QuantizationError(`${this.prefix}.weight.nested_quant_map is not the dynamic map`);
      this.dq = {
        codes: this.need(t, 'weight.absmax', 'u8', blocks).data() as Uint8Array,
        nestedAbsmax: this.need(t, 'weight.nested_absmax', 'f32', Math.ceil(blocks / DQ_BLOCK)).data() as Float32Array,
        offset: state.nested_offset,
      };
      this.absmax = dequantizeAbsmax(this.dq);
    } else {
      this.absmax = this.need(t, 'weight.absmax', 'f32', blocks).data() as Float32Array;
    }
  }

  dequantize(): Float32Array {
    return dequantizeNF4({ packed: this.packed, absmax: this.absmax, n: this.n });
  }

  /** Bytes as stored: packed codes, the (8-bit or f32) absmax, the nested absmax; the tables
   *  (16 and 256 floats, shared by every layer) and the JSON state are not counted. */
  override weightBytes(): number {
    const blocks = this.absmax.length;
    return this.packed.length + (this.dq ? blocks + 4 * this.dq.nestedAbsmax.length + 4 : 4 * blocks);
  }

  forward(x: Tensor): Tensor {
    const N = this.outFeatures, K = this.inFeatures;
    const k = kernels();
    return frozenLinear(x, N, K, this.bias,
      (xs, y, M) => k.nf4Linear(xs, this.packed, this.absmax, NF4_CODE, y, M, N, K),
      (dy, dx, M) => k.nf4LinearBackward(dy, this.packed, this.absmax, NF4_CODE, dx, M, N, K));
  }
}

/** A weight stored as bf16 or f16 (exact round-to-nearest-even conversion); computed in f32 by
 *  kernels that widen it as they read it, so decoding reads half the bytes of an f32 weight. */
export class HalfLinear extends QuantizedLinear {
  readonly method: 'bf16' | 'f16';
  private w: Uint16Array;

  constructor(inFeatures: number, outFeatures: number, options: LinearOptions, dtype: 'bf16' | 'f16') {
    super(inFeatures, outFeatures, options);
    this.method = dtype;
    this.w = new Uint16Array(inFeatures * outFeatures);
  }

  quantize(w: Float32Array): void {
    kernels().cast(w, 'f32', this.w, this.method, w.length);
  }

  tensors(): QuantTensors {
    return new Map([['weight', new TensorClass(this.w, [this.outFeatures, this.inFeatures], this.method)]]);
  }

  load(t: QuantTensors): void {
    this.w = this.need(t, 'weight', this.method, this.w.length).data() as Uint16Array;
  }

  dequantize(): Float32Array {
    const out = new Float32Array(this.w.length);
    kernels().cast(this.w, this.method, out, 'f32', this.w.length);
    return out;
  }

  override get fastActivations(): ActivationPrecision | null {
    return this.method === 'bf16' ? 'bf16' : null;
  }

  forward(x: Tensor): Tensor {
    const N = this.outFeatures, K = this.inFeatures;
    const k = kernels();
    return frozenLinear(x, N, K, this.bias,
      (xs, y, M) => k.halfLinear(xs, this.w, this.method, y, M, N, K),
      (dy, dx, M) => k.halfLinearBackward(dy, this.w, this.method, dx, M, N, K),
      this.roundsInput() ? (xs, y, M) => k.bf16LinearDot(xs, this.w, y, M, N, K) : null);
  }
}

/** A new (empty) quantized layer of the given method. */
export function createQuantizedLinear(method: QuantMethod, inFeatures: number, outFeatures: number, options: LinearOptions): QuantizedLinear {
  switch (method) {
    case 'int8': return new Int8Linear(inFeatures, outFeatures, options);
    case 'nf4': return new NF4Linear(inFeatures, outFeatures, options, false);
    case 'nf4-dq': return new NF4Linear(inFeatures, outFeatures, options, true);
    case 'bf16': case 'f16': return new HalfLinear(inFeatures, outFeatures, options, method);
    default: throw new QuantizationError(`unknown quantization '${method as string}': choose ${QUANT_METHODS.join(', ')}`);
  }
}

export function checkQuantMethod(m: string): QuantMethod {
  if ((QUANT_METHODS as readonly string[]).includes(m)) return m as QuantMethod;
  throw new QuantizationError(`unknown quantization '${m}': choose ${QUANT_METHODS.join(', ')}`);
}

/**
 * A LinearFactory that builds every linear layer quantized (weights empty until `quantize` or
 * `load`). With `weightOf`, each layer is quantized as it is built from the float weight the
 * callback hands over (by its Hugging Face name), so only one float weight is alive at a time.
 */
export function quantizedLinearFactory(method: QuantMethod, weightOf?: (name: string, N: number, K: number) => Float32Array): LinearFactory {
  return (inFeatures, outFeatures, options) => {
    const layer = createQuantizedLinear(method, inFeatures, outFeatures, options);
    if (weightOf) layer.quantize(weightOf(`${layer.prefix}.weight`, outFeatures, inFeatures));
    return layer;
  };
}

/** Every quantized linear layer of a model. */
export function quantizedLayers(model: Module): QuantizedLinear[] {
  return model.modules().filter((m): m is QuantizedLinear => m instanceof QuantizedLinear);
}

/**
 * 'fast': every quantized layer whose format has a rounded-activation kernel uses it for inference
 * (int8 weights: int8 activations; bf16 weights: bf16 activations); NF4 and f16 layers stay exact.
 * 'exact': every layer back to f32 activations. Returns the number of layers that round their input.
 */
export function setActivationPrecision(model: Module, mode: 'exact' | 'fast'): number {
  let n = 0;
  for (const layer of quantizedLayers(model)) {
    const p = mode === 'fast' ? layer.fastActivations : null;
    layer.setActivations(p ?? 'f32');
    if (p) n++;
  }
  return n;
}
