// The messages between the HTTP thread and the engine worker. The worker owns the model and the
// engine; the HTTP thread parses, validates, streams and keeps metrics. Token events of one engine
// step travel together in one message, so a step costs one postMessage however many requests run.
import type { EngineEvent, EngineOptions, EngineStats, GenerationRequest } from '../infer/index.js';

export type { EngineStats };

export interface ModelInfo {
  modelType: string;
  vocabSize: number;
  maxPositions: number;
  /** The LoRA adapters requests can name. */
  adapters: string[];
}

/** A PEFT adapter folder served under a name. */
export interface LoraModule {
  name: string;
  path: string;
}

export interface WorkerData {
  modelDir: string;
  engineOptions: EngineOptions;
  /** Adapters attached to the base at load. */
  loras: LoraModule[];
  /** Quantized int8 / bf16 layers compute with rounded activations (setActivationPrecision 'fast'). */
  fastActivations?: boolean;
}

/** Why the engine turned a request or call down; the server maps it to an HTTP status. */
export type RejectKind = 'argument' | 'queue_full' | 'internal';

export type ToWorker =
  | { type: 'add'; request: GenerationRequest }
  | { type: 'abort'; requestId: string }
  | { type: 'embed'; callId: number; inputs: number[][]; adapter: string | null }
  | { type: 'stats'; callId: number };

export type FromWorker =
  | { type: 'ready'; info: ModelInfo; stats: EngineStats }
  | { type: 'failed'; message: string }
  | { type: 'added'; requestId: string }
  | { type: 'rejected'; requestId: string; kind: RejectKind; message: string }
  | { type: 'events'; events: EngineEvent[]; stats: EngineStats }
  | { type: 'embeddings'; callId: number; vectors: Float32Array[] }
  | { type: 'stats'; callId: number; stats: EngineStats }
  | { type: 'callFailed'; callId: number; kind: RejectKind; message: string };
