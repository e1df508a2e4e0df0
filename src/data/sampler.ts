// Batches of (inputs, targets) windows from a token split, in a seeded order that a checkpoint can
// resume exactly.
//
// An epoch cuts the split into non-overlapping windows of T+1 tokens, starting at a per-epoch random
// shift (so window boundaries move between epochs), and visits them in a per-epoch random order. The
// order is a keyed bijection of the window index (a Feistel network with cycle walking), so it needs
// no permutation array however large the split, and the whole position is (seed, epoch, cursor):
// three integers that restore the exact stream of batches.
import { Tensor } from '../tensor/index.js';
import { mix32, randomWordAt } from '../backend/random.js';
import { DataError } from './errors.js';
import type { TokenArray, TokenSplit } from './shards.js';

export interface SamplerState {
  seed: number;
  epoch: number;
  /** Windows of this epoch already handed out. */
  cursor: number;
}

export interface SamplerOptions {
  /** B: sequences per batch. */
  batchSize: number;
  /** T: tokens per sequence. */
  blockSize: number;
  /** Seeds the data order (default 0). */
  seed?: number;
  /** Random order and shifted windows (default true); false visits windows 0, 1, 2, ... (for evaluation). */
  shuffle?: boolean;
  /** Resume from a saved position. */
  state?: SamplerState;
}

export interface Batch {
  /** (B, T) i32 token ids. */
  inputs: Tensor;
  /** (B, T) i32: inputs shifted left by one (the next token at every position). */
  targets: Tensor;
}

export class BatchSampler {
  readonly batchSize: number;
  readonly blockSize: number;
  readonly shuffle: boolean;
  private seed: number;
  private epoch = 0;
  private cursor = 0;
  // Per-epoch layout, recomputed when the epoch changes.
  private shift = 0;
  private windows = 0;
  private keys = new Uint32Array(4);
  private bits = 0;
  /** One window of T+1 tokens, reused for every read. */
  private readonly window: TokenArray;

  constructor(private readonly split: TokenSplit, options: SamplerOptions) {
    const { batchSize: B, blockSize: T } = options;
    if (!Number.isInteger(B) || B < 1) throw new DataError(`batchSize must be a positive integer, got ${B}`);
    if (!Number.isInteger(T) || T < 1) throw new DataError(`blockSize must be a positive integer, got ${T}`);
    if (split.length < T + 1) {
      throw new DataError(`the split has ${split.length} tokens, fewer than one window of blockSize + 1 = ${T + 1}`);
    }
    this.batchSize = B;
    this.blockSize = T;
    this.shuffle = options.shuffle ?? true;
    this.seed = (options.seed ?? 0) >>> 0;
    this.window = split.dtype === 'uint16' ? new Uint16Array(T + 1) : new Uint32Array(T + 1);
    this.setState(options.state ?? { seed: this.seed, epoch: 0, cursor: 0 });
  }

  /** Windows per epoch (this epoch's; the per-epoch shift can change it by one). */
  get windowsPerEpoch(): number {
    return this.windows;
  }

  state(): SamplerState {
    return { seed: this.seed, epoch: this.epoch, cursor: this.cursor };
  }

  /** Continues from a position saved with state(). */
  setState(s: SamplerState): void {
    for (const k of ['seed', 'epoch', 'cursor'] as const) {
      if (!Number.isInteger(s?.[k]) || s[k] < 0) throw new DataError(`sampler state ${k} must be a non-negative integer, got ${s?.[k]}`);
    }
    this.seed = s.seed >>> 0;
    this.startEpoch(s.epoch);
    if (s.cursor > this.windows) throw new DataError(`sampler state cursor ${s.cursor} is past the ${this.windows} windows of epoch ${s.epoch}`);
    this.cursor = s.cursor;
  }

  /** Back to the first batch (of epoch 0). */
  reset(): void {
    this.setState({ seed: this.seed, epoch: 0, cursor: 0 });
  }

  private startEpoch(epoch: number): void {
    const T = this.blockSize;
    const N = this.split.length;
    this.epoch = epoch;
    this.cursor = 0;
    if (this.shuffle) {
      const key = mix32((this.seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0);
      for (let i = 0; i < 4; i++) this.keys[i] = randomWordAt(key, i);
      // Any shift in [0, min(T, N − T − 1)] still leaves at least one whole window.
      this.shift = randomWordAt(key, 4) % Math.min(T, N - T);
    } else {
      this.shift = 0;
    }
    this.windows = Math.floor((N - 1 - this.shift) / T);
    const b = Math.ceil(Math.log2(this.windows));
    this.bits = Math.max(2, b + (b & 1)); // even, so the network's two halves are equal
  }

  /** Window k of this epoch → which window of the split to read. */
  private permute(k: number): number {
    if (!this.shuffle) return k;
    const half = this.bits / 2;
    const mask = (1 << half) - 1;
    let x = k;
    // Cycle walking: the network permutes [0, 2^bits); repeat until the value lands in [0, windows).
    do {
      let l = x >>> half;
      let r = x & mask;
      for (let round = 0; round < 4; round++) {
        const f = mix32((r ^ this.keys[round]) >>> 0) & mask;
        [l, r] = [r, l ^ f];
      }
      x = ((l << half) | r) >>> 0;
    } while (x >= this.windows);
    return x;
  }

  /**
   * The next batch. Pass tensors to fill (each (B, T), i32, contiguous) to allocate nothing;
   * otherwise new ones are made.
   */
  next(out?: Batch): Batch {
    const B = this.batchSize;
    const T = this.blockSize;
    const inputs = out?.inputs ?? Tensor.empty([B, T], 'i32');
    const targets = out?.targets ?? Tensor.empty([B, T], 'i32');
    checkBatchTensor('inputs', inputs, B, T);
    checkBatchTensor('targets', targets, B, T);
    const x = inputs.data() as Int32Array;
    const y = targets.data() as Int32Array;
    const w = this.window;
    for (let b = 0; b < B; b++) {
      if (this.cursor === this.windows) this.startEpoch(this.epoch + 1);
      const start = this.shift + this.permute(this.cursor++) * T;
      this.split.read(start, w);
      x.set(w.subarray(0, T), b * T);
      y.set(w.subarray(1, T + 1), b * T);
    }
    return { inputs, targets };
  }
}

function checkBatchTensor(name: string, t: Tensor, B: number, T: number): void {
  if (t.dtype !== 'i32' || t.shape.length !== 2 || t.shape[0] !== B || t.shape[1] !== T || !t.isContiguous()) {
    throw new DataError(`${name} must be a contiguous (${B}, ${T}) i32 tensor, got a ${t.dtype} tensor of shape [${t.shape.join(', ')}]`);
  }
}
