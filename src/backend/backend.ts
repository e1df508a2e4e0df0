// The kernel boundary: one small typed interface over flat buffers.
//
// Backends know nothing of autograd, modules, views or dtype promotion. Every array argument is a
// flat, contiguous typed array that starts at element 0 of the logical buffer (callers pass
// `subarray` views to express offsets). Outputs are written, never allocated. Unless a kernel says
// it accumulates, it overwrites its outputs completely.
//
// Float arrays are Float32Array on every backend; the `ref` backend also accepts Float64Array
// everywhere a FloatArray appears (the tensor layer's `f64` dtype, used for finite-difference
// gradient checks). Index arrays (ids, targets, gather indices, argmax results) are Int32Array.
// Kernels do not validate index ranges: the tensor layer checks them first and raises a PlinthError.

export type FloatArray = Float32Array | Float64Array;
/** Storage of every dtype: f32, f64, i32, f16/bf16 bit patterns (Uint16Array), u8. */
export type AnyArray = Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array;

export type KernelDType = 'f32' | 'f64' | 'i32' | 'f16' | 'bf16' | 'u8';

/**
 * Unary elementwise ops. `p0`/`p1` are op parameters:
 * powScalar: y = x^p0; addScalar: y = x + p0; mulScalar: y = x * p0; clamp: y = min(max(x, p0), p1)
 * (use ±Infinity for an open side). Everything else ignores them.
 * gelu_tanh: 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))); gelu_erf: 0.5 x (1 + erf(x/√2)).
 */
export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'tanh' | 'sigmoid' | 'relu'
  | 'gelu_tanh' | 'gelu_erf' | 'silu' | 'powScalar' | 'addScalar' | 'mulScalar' | 'clamp'
  | 'sign' | 'square' | 'reciprocal' | 'sin' | 'cos';

/**
 * Binary elementwise ops with broadcasting. Comparison ops write 1 or 0.
 * pow: a^b; maximum/minimum: elementwise max/min.
 */
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';

export type ReduceOp = 'sum' | 'max' | 'min' | 'argmax' | 'argmin' | 'sumSquares';

export interface Backend {
  readonly name: 'ref' | 'native';
  /** Whether this backend implements `kernel` for arrays of `dtype`. */
  supports(kernel: KernelName, dtype: KernelDType): boolean;

  // ---- memory --------------------------------------------------------------------------------
  /** out[i] = value for i < n. Any dtype. */
  fill(out: AnyArray, value: number, n: number): void;
  /**
   * Strided gather into a contiguous array (the kernel behind `contiguous()` and `expand`):
   * dst[i0,...,ik] = src[Σ ij * srcStrides[j]] over `shape`, dst row-major contiguous.
   * src and dst have the same dtype. Strides may be 0 (broadcast) but never negative.
   */
  copyStrided(src: AnyArray, dst: AnyArray, shape: number[], srcStrides: number[]): void;
  /** Element-type conversion, n elements: f32<->f16, f32<->bf16 (round-to-nearest-even),
   *  f32<->i32 (truncation toward zero), f32<->f64, u8->f32. `from`/`to` name the dtypes. */
  cast(src: AnyArray, from: KernelDType, dst: AnyArray, to: KernelDType, n: number): void;

  // ---- elementwise ---------------------------------------------------------------------------
  /** out = op(x), n elements. out may alias x. */
  unary(op: UnaryOp, x: FloatArray, out: FloatArray, n: number, p0: number, p1: number): void;
  /** dx = dy * op'(x) (y = op(x) is given too, for ops whose derivative is cheapest from y).
   *  Writes dx, n elements. */
  unaryBackward(op: UnaryOp, x: FloatArray, y: FloatArray, dy: FloatArray, dx: FloatArray, n: number, p0: number, p1: number): void;
  /**
   * out = op(a, b) over `shape` (the broadcast output shape, out contiguous), where element
   * (i0..ik) of a is a[Σ ij * aStrides[j]] and likewise for b (stride 0 on broadcast dims).
   * out may alias a (or b) when that operand is contiguous with exactly out's shape (in-place add).
   */
  binary(op: BinaryOp, a: FloatArray, aStrides: number[], b: FloatArray, bStrides: number[], out: FloatArray, shape: number[]): void;
  /** out = cond != 0 ? a : b over `shape`, with broadcasting strides as in `binary`. cond is any dtype. */
  where(cond: AnyArray, cStrides: number[], a: FloatArray, aStrides: number[], b: FloatArray, bStrides: number[], out: FloatArray, shape: number[]): void;

  // ---- reductions ----------------------------------------------------------------------------
  /**
   * x is (outer, R, inner); out is (outer, inner): out[o,i] = op over r of x[o,r,i].
   * sum, sumSquares (Σx²), max, min write values into a FloatArray;
   * argmax/argmin write the index r (first occurrence on ties) into an Int32Array.
   */
  reduce(op: ReduceOp, x: FloatArray, out: FloatArray | Int32Array, outer: number, R: number, inner: number): void;

  // ---- matmul --------------------------------------------------------------------------------
  /**
   * Batched GEMM: for each p < batch,
   *   C_p (M,N) = (accumulate ? C_p : 0) + op(A_p) · op(B_p)
   * with op(A_p) (M,K): A_p is (M,K) row-major, or (K,M) row-major when transA;
   * op(B_p) (K,N): B_p is (K,N) row-major, or (N,K) row-major when transB.
   * A_p starts at a[p * strideA], B_p at b[p * strideB], C_p at c[p * strideC]; a stride of 0
   * broadcasts one matrix over the batch. C never aliases A or B.
   */
  matmul(a: FloatArray, b: FloatArray, c: FloatArray, M: number, N: number, K: number,
    transA: boolean, transB: boolean, batch: number, strideA: number, strideB: number, strideC: number,
    accumulate: boolean): void;

  // ---- fused row kernels ---------------------------------------------------------------------
  /** x, out (rows, C): out = softmax(x) (or logSoftmax when `log`) over each row, max-subtracted. */
  softmax(x: FloatArray, out: FloatArray, rows: number, C: number, log: boolean): void;
  /** From y = softmax(x) (or logSoftmax when `log`) and dy: softmax dx = y ⊙ (dy − Σ dy⊙y);
   *  logSoftmax dx = dy − exp(y) Σ dy. Writes dx (rows, C). */
  softmaxBackward(y: FloatArray, dy: FloatArray, dx: FloatArray, rows: number, C: number, log: boolean): void;
  /**
   * LayerNorm over rows of x (rows, C): out = (x − mean)·rstd·w + b, biased variance,
   * rstd = 1/√(var + eps). w and b are (C) or null (then 1 and 0). Saves mean, rstd (rows).
   */
  layerNorm(x: FloatArray, w: FloatArray | null, b: FloatArray | null, out: FloatArray,
    mean: FloatArray, rstd: FloatArray, rows: number, C: number, eps: number): void;
  /** Writes dx (rows, C); accumulates into dw and db (C) when they are non-null. */
  layerNormBackward(x: FloatArray, w: FloatArray | null, mean: FloatArray, rstd: FloatArray, dy: FloatArray,
    dx: FloatArray, dw: FloatArray | null, db: FloatArray | null, rows: number, C: number): void;
  /** RMSNorm: out = x·rstd·w with rstd = 1/√(mean(x²) + eps); w (C) or null. Saves rstd (rows). */
  rmsNorm(x: FloatArray, w: FloatArray | null, out: FloatArray, rstd: FloatArray, rows: number, C: number, eps: number): void;
  /** Writes dx (rows, C); accumulates into dw (C) when non-null. */
  rmsNormBackward(x: FloatArray, w: FloatArray | null, rstd: FloatArray, dy: FloatArray,
    dx: FloatArray, dw: FloatArray | null, rows: number, C: number): void;
  /**
   * Cross-entropy from logits (rows, V) and targets (rows). For each row with
   * target != ignoreIndex, with ε = labelSmoothing:
   *   loss[r] = lse[r] − (1−ε)·logits[r, t] − (ε/V)·Σ_v logits[r, v];
   * ignored rows get loss 0. Writes loss (rows) and lse (rows, the log-sum-exp, saved for backward).
   */
  crossEntropy(logits: FloatArray, targets: Int32Array, loss: FloatArray, lse: FloatArray,
    rows: number, V: number, ignoreIndex: number, labelSmoothing: number): void;
  /** dlogits[r, v] = dloss[r] · (softmax(logits[r])[v] − (1−ε)·[v == t] − ε/V); ignored rows 0. Writes dlogits. */
  crossEntropyBackward(logits: FloatArray, targets: Int32Array, lse: FloatArray, dloss: FloatArray,
    dlogits: FloatArray, rows: number, V: number, ignoreIndex: number, labelSmoothing: number): void;
  /** SwiGLU gate: out = silu(gate) ⊙ up, n elements. */
  swiglu(gate: FloatArray, up: FloatArray, out: FloatArray, n: number): void;
  /** Writes dgate and dup. */
  swigluBackward(gate: FloatArray, up: FloatArray, dy: FloatArray, dgate: FloatArray, dup: FloatArray, n: number): void;

  // ---- attention -----------------------------------------------------------------------------
  /**
   * Scaled dot-product attention, fused (the Tq×Tk score matrix is never materialised).
   * q (B,H,Tq,D); k, v (B,KVH,Tk,D); out (B,H,Tq,D); lse (B,H,Tq) saved for backward
   * (log-sum-exp of the scaled, masked scores of each query row).
   * Query head h uses key/value head floor(h / (H/KVH)).
   * causal: query i sits at absolute position qOffset + i and sees keys 0..qOffset+i;
   * otherwise every query sees every key (qOffset ignored).
   */
  attention(q: FloatArray, k: FloatArray, v: FloatArray, out: FloatArray, lse: FloatArray,
    B: number, H: number, KVH: number, Tq: number, Tk: number, D: number,
    scale: number, causal: boolean, qOffset: number): void;
  /** Backward of `attention`, recomputing scores from lse. Writes dq, dk, dv (dk, dv are (B,KVH,Tk,D),
   *  summed over the query heads that share them). */
  attentionBackward(q: FloatArray, k: FloatArray, v: FloatArray, out: FloatArray, lse: FloatArray, dout: FloatArray,
    dq: FloatArray, dk: FloatArray, dv: FloatArray,
    B: number, H: number, KVH: number, Tq: number, Tk: number, D: number,
    scale: number, causal: boolean, qOffset: number): void;
  /**
   * Rotary embedding, Hugging Face rotate_half convention. x, out (N, T, G, D) where G groups
   * (heads) share the position of their token; cos, sin (T, D/2): for j < D/2,
   *   out[j]       = x[j]·cos[t,j] − x[j+D/2]·sin[t,j]
   *   out[j+D/2]   = x[j+D/2]·cos[t,j] + x[j]·sin[t,j]
   * inverse: rotate by −angle (sin negated), which is also the backward. out may alias x.
   */
  rope(x: FloatArray, cos: FloatArray, sin: FloatArray, out: FloatArray, N: number, T: number, G: number, D: number, inverse: boolean): void;

  /**
   * Writes one step's keys and values into a paged KV pool (vLLM's reshape_and_cache).
   * k, v (N, KVH, D) for N tokens; kPool, vPool (numBlocks, KVH, blockSize, D);
   * token n goes to block ⌊slots[n]/blockSize⌋, offset slots[n] mod blockSize; slots[n] < 0 skips it.
   */
  pagedKVWrite(k: FloatArray, v: FloatArray, kPool: FloatArray, vPool: FloatArray, slots: Int32Array,
    N: number, KVH: number, D: number, blockSize: number, numBlocks: number): void;
  /**
   * Causal attention of packed queries over a paged KV pool (PagedAttention), prefill chunks and
   * decode steps alike. q, out (N, H, D): the N query tokens of S sequences packed back to back;
   * sequence s owns rows queryStart[s]..queryStart[s+1]−1 (queryStart has S+1 entries), which are the
   * last tokens of its contextLens[s] tokens, all already written to the pool. Its keys at positions
   * j·blockSize..(j+1)·blockSize−1 live in block blockTables[s·maxBlocks + j] of kPool, vPool
   * (numBlocks, KVH, blockSize, D). A query at absolute position p sees keys 0..p.
   * Query head h uses key/value head ⌊h/(H/KVH)⌋.
   */
  pagedAttention(q: FloatArray, kPool: FloatArray, vPool: FloatArray, out: FloatArray,
    blockTables: Int32Array, queryStart: Int32Array, contextLens: Int32Array,
    S: number, H: number, KVH: number, D: number, blockSize: number, maxBlocks: number, numBlocks: number,
    scale: number): void;

  // ---- indexing ------------------------------------------------------------------------------
  /** x (outer, X, inner), idx (n): out (outer, n, inner) = x[:, idx[j], :]. Embedding lookup is outer=1. */
  indexSelect(x: FloatArray, idx: Int32Array, out: FloatArray, outer: number, X: number, n: number, inner: number): void;
  /** Backward of indexSelect (embedding backward): dx[:, idx[j], :] += dout[:, j, :], accumulating,
   *  repeated ids summed. dx (outer, X, inner), dout (outer, n, inner). */
  indexAdd(dout: FloatArray, idx: Int32Array, dx: FloatArray, outer: number, X: number, n: number, inner: number): void;
  /** x (outer, X, inner), idx and out (outer, n, inner): out[o,j,i] = x[o, idx[o,j,i], i]. */
  gather(x: FloatArray, idx: Int32Array, out: FloatArray, outer: number, X: number, n: number, inner: number): void;
  /** src and idx (outer, n, inner), out (outer, X, inner): out[o, idx[o,j,i], i] += src[o,j,i], accumulating. */
  scatterAdd(src: FloatArray, idx: Int32Array, out: FloatArray, outer: number, X: number, n: number, inner: number): void;

  // ---- convolution helpers -------------------------------------------------------------------
  /**
   * im2col for one image: x (C, H, W) → cols (C·kh·kw, outH·outW), row index (c·kh + i)·kw + j,
   * zero padding `pad`, stride `stride`; outH = ⌊(H + 2pad − kh)/stride⌋ + 1, likewise outW.
   */
  im2col(x: FloatArray, cols: FloatArray, C: number, H: number, W: number, kh: number, kw: number,
    stride: number, pad: number, outH: number, outW: number): void;
  /** Adjoint of im2col: accumulates cols back into dx (C, H, W). */
  col2im(cols: FloatArray, dx: FloatArray, C: number, H: number, W: number, kh: number, kw: number,
    stride: number, pad: number, outH: number, outW: number): void;

  // ---- randomness ----------------------------------------------------------------------------
  /**
   * Dropout mask: out[i] = (u_i ≥ p) ? 1/(1−p) : 0, where u_i = uniformAt(seed, offset + i) is the
   * counter-based uniform of src/backend/random.ts, so every backend writes identical masks.
   */
  dropoutMask(out: FloatArray, n: number, p: number, seed: number, offset: number): void;

  // ---- optimizer -----------------------------------------------------------------------------
  /**
   * One AdamW step, torch.optim.AdamW semantics, in place over n elements (t = step ≥ 1):
   *   p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
   *   p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps)
   */
  adamwStep(p: FloatArray, g: FloatArray, m: FloatArray, v: FloatArray, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;

  // ---- quantized weights (frozen; multiplied without materialising the float matrix) ---------
  /**
   * y (M,N) = x (M,K) · Wᵀ with W (N,K) stored as int8 per output channel:
   * W[n,k] = w[n·K + k] · scale[n]. Writes y.
   */
  int8Linear(x: Float32Array, w: Int8Array, scale: Float32Array, y: Float32Array, M: number, N: number, K: number): void;
  /** dx (M,K) = dy (M,N) · W, W as in int8Linear (the backward through a frozen int8 layer). Writes dx. */
  int8LinearBackward(dy: Float32Array, w: Int8Array, scale: Float32Array, dx: Float32Array, M: number, N: number, K: number): void;
  /**
   * y (M,N) = x (M,K) · Wᵀ with W (N,K) in 4-bit blockwise form (bitsandbytes NF4): element
   * e = n·K + k of the row-major flattened W has code index q = packed[⌊e/2⌋] >> 4 for even e and
   * packed[⌊e/2⌋] & 15 for odd e, and value code[q] · absmax[⌊e/64⌋]. code has 16 entries. Writes y.
   */
  nf4Linear(x: Float32Array, packed: Uint8Array, absmax: Float32Array, code: Float32Array, y: Float32Array,
    M: number, N: number, K: number): void;
  /** dx (M,K) = dy (M,N) · W, W as in nf4Linear. Writes dx. */
  nf4LinearBackward(dy: Float32Array, packed: Uint8Array, absmax: Float32Array, code: Float32Array, dx: Float32Array,
    M: number, N: number, K: number): void;
  /** out[e] = code[q_e] · absmax[⌊e/64⌋] for e < n, with q_e as in nf4Linear. */
  nf4Dequantize(packed: Uint8Array, absmax: Float32Array, code: Float32Array, out: Float32Array, n: number): void;
  /**
   * y (M,N) = x (M,K) · Wᵀ with W (N,K) stored as 16-bit floats: w holds the bit patterns of
   * `wDType` ('bf16' or 'f16'), each widened exactly to f32 (as `cast` does). Writes y.
   */
  halfLinear(x: Float32Array, w: Uint16Array, wDType: 'bf16' | 'f16', y: Float32Array, M: number, N: number, K: number): void;
  /** dx (M,K) = dy (M,N) · W, W as in halfLinear. Writes dx. */
  halfLinearBackward(dy: Float32Array, w: Uint16Array, wDType: 'bf16' | 'f16', dx: Float32Array, M: number, N: number, K: number): void;

  // ---- rounded activations (opt-in, inference: changes numerics, no backward) ----------------
  /**
   * y (M,N) ≈ x (M,K) · Wᵀ, W as in int8Linear, with each row of x quantized to int8 in blocks of
   * 32 along K (llama.cpp's Q8_0; the last block of a row holds K mod 32 elements when that is not
   * 0). In f32, for the elements x_k of block b of a row:
   *   d_b = a_b / 127 with a_b = max |x_k| (NaN ignored), i_b = d_b ≠ 0 ? 1 / d_b : 0,
   *   q_k = clamp(round(x_k · i_b), −127, 127), round with ties away from zero, NaN → 0;
   * then S_b = Σ_k w[n,k]·q_k exactly (an integer), and
   *   acc = 0; for b = 0, 1, …: acc = acc + d_b·S_b (the product rounded to f32, then the sum);
   *   y[m,n] = scale[n] · acc.
   * Every step is one f32 operation, so every backend gives the same bits. Writes y.
   */
  int8LinearQ8(x: Float32Array, w: Int8Array, scale: Float32Array, y: Float32Array, M: number, N: number, K: number): void;
  /**
   * y (M,N) ≈ x (M,K) · Wᵀ with W (N,K) bf16 bit patterns (as halfLinear 'bf16') and x rounded to
   * bf16 (nearest even, as `cast`; subnormal x may flush to zero): y[m,n] = Σ_k bf16(x[m,k])·W[n,k],
   * products exact, summed in f32 in an order of the backend's choosing (pairs along K with
   * vdpbf16ps). Writes y.
   */
  bf16LinearDot(x: Float32Array, w: Uint16Array, y: Float32Array, M: number, N: number, K: number): void;
}

export type KernelName = Exclude<keyof Backend, 'name' | 'supports'>;

export const KERNEL_NAMES: readonly KernelName[] = [
  'fill', 'copyStrided', 'cast',
  'unary', 'unaryBackward', 'binary', 'where',
  'reduce', 'matmul',
  'softmax', 'softmaxBackward', 'layerNorm', 'layerNormBackward', 'rmsNorm', 'rmsNormBackward',
  'crossEntropy', 'crossEntropyBackward', 'swiglu', 'swigluBackward',
  'attention', 'attentionBackward', 'rope', 'pagedKVWrite', 'pagedAttention',
  'indexSelect', 'indexAdd', 'gather', 'scatterAdd',
  'im2col', 'col2im', 'dropoutMask', 'adamwStep',
  'int8Linear', 'int8LinearBackward', 'nf4Linear', 'nf4LinearBackward', 'nf4Dequantize',
  'halfLinear', 'halfLinearBackward', 'int8LinearQ8', 'bf16LinearDot',
];

/** The dtype of a kernel argument, from its typed-array class. */
export function kernelDType(a: AnyArray): KernelDType {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Float64Array) return 'f64';
  if (a instanceof Int32Array) return 'i32';
  if (a instanceof Uint16Array) return 'bf16';
  return 'u8';
}
