// The HTTP thread's handle on the engine. `ServingEngine` is what the server needs; `WorkerEngine`
// implements it with the engine in a worker thread (src/serve/worker.ts), so decoding never blocks
// the event loop that parses requests and streams tokens.
import { Worker } from 'node:worker_threads';
import { PlinthError } from '../errors.js';
import type { EngineEvent, EngineOptions, GenerationRequest } from '../infer/index.js';
import type { EngineStats, FromWorker, LoraModule, ModelInfo, RejectKind, ToWorker, WorkerData } from './protocol.js';

/** The engine turned a request down: bad arguments (400), a full queue (429) or an internal failure. */
export class EngineRejectedError extends PlinthError {
  constructor(message: string, readonly kind: RejectKind) {
    super(message);
  }
}

export interface ServingEngine {
  readonly info: ModelInfo;
  /** Queues a request; resolves once the engine has accepted it, rejects with EngineRejectedError. */
  add(request: GenerationRequest, onEvent: (e: EngineEvent) => void): Promise<void>;
  /** Stops a request and frees its blocks; its 'done' event (finishReason 'abort') still arrives. */
  abort(requestId: string): void;
  /** Embeddings through the base model, or through a LoRA adapter of info.adapters. */
  embed(inputs: number[][], adapter?: string | null): Promise<Float32Array[]>;
  stats(): Promise<EngineStats>;
  /** False once the engine has stopped (worker exited or closed). */
  readonly alive: boolean;
  /** Stats as of the last engine step (no round trip). */
  readonly lastStats: EngineStats | null;
  close(): Promise<void>;
}

interface Call {
  resolve: (v: never) => void;
  reject: (e: Error) => void;
}

export class WorkerEngine implements ServingEngine {
  info!: ModelInfo;
  lastStats: EngineStats | null = null;
  private readonly worker: Worker;
  private readonly listeners = new Map<string, (e: EngineEvent) => void>();
  private readonly adds = new Map<string, Call>();
  private readonly calls = new Map<number, Call>();
  private nextCall = 0;
  private failure: Error | null = null;

  private constructor(data: WorkerData) {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: data });
  }

  get alive(): boolean {
    return this.failure === null;
  }

  /** Starts the worker and waits until the model (with its LoRA adapters) is loaded. */
  static start(modelDir: string, engineOptions: EngineOptions = {}, loras: LoraModule[] = [], fastActivations = false): Promise<WorkerEngine> {
    const engine = new WorkerEngine({ modelDir, engineOptions, loras, fastActivations });
    return new Promise((resolve, reject) => {
      engine.worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          engine.info = m.info;
          engine.lastStats = m.stats;
          resolve(engine);
        } else if (m.type === 'failed') {
          reject(new EngineRejectedError(`cannot load the model: ${m.message}`, 'internal'));
        } else {
          engine.receive(m);
        }
      });
      engine.worker.on('error', (e) => {
        engine.fail(e);
        reject(e);
      });
      engine.worker.on('exit', (code) => engine.fail(new EngineRejectedError(`the engine worker exited (code ${code})`, 'internal')));
    });
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** The worker died: every pending call and request fails, later calls fail at once. */
  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const c of [...this.adds.values(), ...this.calls.values()]) c.reject(e);
    this.adds.clear();
    this.calls.clear();
    for (const [id, listener] of this.listeners) listener({ type: 'error', requestId: id, message: e.message });
    this.listeners.clear();
  }

  private receive(m: FromWorker): void {
    switch (m.type) {
      case 'added':
        this.adds.get(m.requestId)?.resolve(undefined as never);
        this.adds.delete(m.requestId);
        break;
      case 'rejected':
        this.listeners.delete(m.requestId);
        this.adds.get(m.requestId)?.reject(new EngineRejectedError(m.message, m.kind));
        this.adds.delete(m.requestId);
        break;
      case 'events':
        this.lastStats = m.stats;
        for (const e of m.events) {
          const listener = this.listeners.get(e.requestId);
          if (e.type !== 'token') this.listeners.delete(e.requestId);
          listener?.(e);
        }
        break;
      case 'embeddings':
      case 'stats':
      case 'callFailed': {
        const call = this.calls.get(m.callId);
        this.calls.delete(m.callId);
        if (m.type === 'callFailed') call?.reject(new EngineRejectedError(m.message, m.kind));
        else if (m.type === 'stats') {
          this.lastStats = m.stats;
          call?.resolve(m.stats as never);
        } else call?.resolve(m.vectors as never);
        break;
      }
    }
  }

  add(request: GenerationRequest, onEvent: (e: EngineEvent) => void): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.adds.set(request.id, { resolve, reject });
      this.listeners.set(request.id, onEvent);
      this.send({ type: 'add', request });
    });
  }

  abort(requestId: string): void {
    if (!this.failure) this.send({ type: 'abort', requestId });
  }

  private call<T>(make: (callId: number) => ToWorker): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const callId = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(callId, { resolve: resolve as (v: never) => void, reject });
      this.send(make(callId));
    });
  }

  embed(inputs: number[][], adapter: string | null = null): Promise<Float32Array[]> {
    return this.call((callId) => ({ type: 'embed', callId, inputs, adapter }));
  }

  stats(): Promise<EngineStats> {
    return this.call((callId) => ({ type: 'stats', callId }));
  }

  async close(): Promise<void> {
    this.failure ??= new EngineRejectedError('the engine is shut down', 'internal');
    await this.worker.terminate();
  }
}
