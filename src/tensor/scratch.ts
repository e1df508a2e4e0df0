// Recycled storage for a computation repeated with the same shapes, as an inference or a training
// step is.
//
// Every op allocates its output, so one decoding step of 32 sequences through the benchmark Llama
// makes about 140 arrays and 14 MB; at 40 steps a second that churn keeps V8's garbage collector
// marking on a core the kernels need. While `pool.run(fn)` runs, every tensor storage made (by
// Tensor.empty, zeros, and the ops through them) comes from the pool's free buffers, and when fn
// returns all of it goes back to the pool: the next step, with the same shapes, allocates nothing.
//
// The contract: nothing made inside a run may be used after it. The engine reads what it needs
// from the step (token ids, log-probabilities) as numbers before the run ends; long-lived state
// (weights, the KV pools, caches) is made outside any run, and what a step must create to keep
// (a leaf's gradient buffer, optimizer moments on the first step) is made in outsideScratch().
// Within a run, releaseScratch() hands back a buffer known to be dead (autograd does so with each
// gradient it has passed on). With `poison` on, returned buffers are filled with NaN bits (ints
// read −1), so a tensor kept by mistake shows at once in tests.
//
// Buffers are kept in size classes (powers of two up to 4 KB, then quarter steps between powers of
// two), and a request takes the smallest free buffer up to 8 times its size, so a step with fewer
// rows than the largest seen reuses that step's buffers. The pool holds what its largest steps
// needed (for the engine, bounded by its token budget) and keeps it: a server that decodes for
// minutes between bursts of prompts must find the prefill buffers still warm. A pool given
// `keepRuns` drops the buffers of a size class unused for that many runs.

let active: ScratchPool | null = null;
let poisonByDefault = false;

/** Fill returned buffers with NaN bits in every pool made after this call (tests turn it on; so
 *  does the environment variable PLINTH_POISON_SCRATCH=1, for worker threads and child processes). */
export function setScratchPoison(on: boolean): void {
  poisonByDefault = on;
}

/** The size class of a request for `bytes` bytes. */
function sizeClass(bytes: number): number {
  if (bytes <= 64) return 64;
  if (bytes <= 4096) return 2 ** Math.ceil(Math.log2(bytes));
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / step) * step;
}

interface SizeClass {
  free: ArrayBuffer[];
  lastRun: number;
}

export interface ScratchPoolOptions {
  /** Runs a size class may go unused before its buffers are dropped (default: never). */
  keepRuns?: number;
  /** Fill buffers with NaN bits as they come back (default: off, unless setScratchPoison(true) or
   *  PLINTH_POISON_SCRATCH=1). */
  poison?: boolean;
}

export class ScratchPool {
  private readonly classes = new Map<number, SizeClass>();
  /** The keys of classes, ascending. */
  private sizes: number[] = [];
  private readonly taken = new Set<ArrayBuffer>();
  private readonly keepRuns: number;
  private readonly poison: boolean;
  private runs = 0;
  private running = false;

  constructor(options: ScratchPoolOptions = {}) {
    this.keepRuns = options.keepRuns ?? Infinity;
    this.poison = options.poison ?? (poisonByDefault || process.env.PLINTH_POISON_SCRATCH === '1');
  }

  /** Runs fn with every tensor storage drawn from this pool; all of it is returned when fn ends
   *  (normally or by throwing). Runs of other pools may nest inside; a pool may not run twice at once. */
  run<T>(fn: () => T): T {
    if (this.running) throw new Error('ScratchPool.run: this pool is already running');
    const outer = active;
    this.running = true;
    this.runs++;
    active = this;
    try {
      return fn();
    } finally {
      active = outer;
      this.running = false;
      this.giveBack();
    }
  }

  /** Bytes held in free buffers between runs. */
  get pooledBytes(): number {
    let n = 0;
    for (const [size, c] of this.classes) n += size * c.free.length;
    return n;
  }

  /** Buffers made (not reused) since the pool was created. */
  allocations = 0;

  /** A buffer of at least `bytes` bytes for the current run: a free one of its size class, else
   *  the smallest free one up to 8 times larger (a step with fewer rows than the largest seen
   *  reuses that step's buffers), else a new one. */
  take(bytes: number): ArrayBuffer {
    const size = sizeClass(bytes);
    let from: SizeClass | undefined;
    for (const s of this.sizes) {
      if (s < size) continue;
      if (s > 8 * size) break;
      const c = this.classes.get(s)!;
      if (c.free.length > 0) {
        from = c;
        break;
      }
    }
    let buf: ArrayBuffer;
    if (from) {
      from.lastRun = this.runs;
      buf = from.free.pop()!;
    } else {
      // malloc'd, not zero-filled (allocate() zeroes what must be zero): memory freed earlier is
      // reused warm, where a fresh zeroed mapping costs a page fault per 4 KB on first touch
      buf = Buffer.allocUnsafeSlow(size).buffer;
      this.allocations++;
      if (!this.classes.has(size)) {
        this.classes.set(size, { free: [], lastRun: this.runs });
        this.sizes = [...this.classes.keys()].sort((a, b) => a - b);
      }
      this.classes.get(size)!.lastRun = this.runs;
    }
    this.taken.add(buf);
    return buf;
  }

  /** Returns one buffer of the current run before the run ends (see releaseScratch); false, and
   *  nothing done, for a buffer this run did not take. */
  release(buf: ArrayBufferLike): boolean {
    if (!this.taken.delete(buf as ArrayBuffer)) return false;
    this.putBack(buf as ArrayBuffer);
    return true;
  }

  private putBack(buf: ArrayBuffer): void {
    if (this.poison) new Uint8Array(buf).fill(0xff);
    this.classes.get(buf.byteLength)!.free.push(buf);
  }

  private giveBack(): void {
    for (const buf of this.taken) this.putBack(buf);
    this.taken.clear();
    for (const [size, c] of this.classes) if (this.runs - c.lastRun >= this.keepRuns) this.classes.delete(size);
    if (this.sizes.length !== this.classes.size) this.sizes = [...this.classes.keys()].sort((a, b) => a - b);
  }
}

/** Runs fn with no pool active: what it makes is ordinary storage that outlives the run (a leaf's
 *  gradient buffer, optimizer state made on the first step). */
export function outsideScratch<T>(fn: () => T): T {
  const pool = active;
  active = null;
  try {
    return fn();
  } finally {
    active = pool;
  }
}

/**
 * Hands the storage of a tensor that is dead — no tensor over it will be read again — back to the
 * running pool before the run ends, so later ops of the same run reuse it (autograd does this with
 * each intermediate gradient once it has been passed on, which keeps a training step's peak memory
 * to what is live rather than all it made). Storage the running pool did not hand out is left
 * alone. Returns whether it was released.
 */
export function releaseScratch(storage: ArrayBufferView): boolean {
  return active ? active.release(storage.buffer) : false;
}

/** A buffer of at least `bytes` bytes from the running pool, or null outside any run. */
export function scratchBuffer(bytes: number): ArrayBuffer | null {
  return active ? active.take(bytes) : null;
}
