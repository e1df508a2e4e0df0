// The engine thread: loads the model, owns the Engine, and steps it while there is work. Between
// steps it yields to its event loop (setImmediate), so add/abort messages that arrived during a
// step join the very next one — that is continuous batching across the thread boundary.
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { ArgumentError } from '../errors.js';
import { Engine, kvBytesPerBlock, QueueFullError, type EngineEvent, type EngineOptions } from '../infer/index.js';
import { type LoadedModel, loadCheckpoint } from '../io/index.js';
import type { CausalLM } from '../models/index.js';
import { loadAdapter, loraFactory } from '../peft/index.js';
// Importing quant registers the loader for quantized folders (int8, NF4, bf16/f16), which
// loadCheckpoint then opens.
import { folderQuantMethod, loadQuantized, setActivationPrecision } from '../quant/index.js';
import type { FromWorker, LoraModule, RejectKind, ToWorker, WorkerData } from './protocol.js';

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);
const kindOf = (e: unknown): RejectKind => (e instanceof QueueFullError ? 'queue_full' : e instanceof ArgumentError ? 'argument' : 'internal');

/**
 * With no pool size given, the engine takes a quarter of free memory (at most 2 GB) and touches it
 * all at start. A small model cannot use that much: cap the pool at every running sequence at full
 * context twice over (the second half keeps released prefixes cached).
 */
function poolOptions(model: CausalLM, o: EngineOptions): EngineOptions {
  if (o.numBlocks !== undefined || o.kvCacheBytes !== undefined) return o;
  const blockSize = o.blockSize ?? 16;
  const g = model.newCache(1, 1);
  const perBlock = kvBytesPerBlock(g.layers, g.kvHeads, blockSize, g.headDim);
  const useful = 2 * (o.maxRunning ?? 64) * Math.ceil(model.maxPositions / blockSize);
  const budget = Math.floor(Math.min(0.25 * freemem(), 2 ** 31) / perBlock);
  return { ...o, numBlocks: Math.max(1, Math.min(useful, budget)) };
}

/** The base folder, with every linear layer wrapped for LoRA (float or quantized) when adapters
 *  are served, and each adapter loaded under its name. */
function loadServed(dir: string, loras: LoraModule[]): LoadedModel {
  if (loras.length === 0) return loadCheckpoint(dir);
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const loaded = folderQuantMethod(config) ? loadQuantized(dir, { wrap: loraFactory }) : loadCheckpoint(dir, { linearFactory: loraFactory() });
  for (const l of loras) {
    try {
      loadAdapter(loaded.model, l.path, l.name);
    } catch (e) {
      throw new ArgumentError(`LoRA adapter '${l.name}' (${l.path}): ${(e as Error).message}`);
    }
  }
  return loaded;
}

let engine: Engine;
try {
  const { modelDir, engineOptions, loras, fastActivations } = workerData as WorkerData;
  const { model, tokenizer } = loadServed(modelDir, loras);
  if (fastActivations) setActivationPrecision(model, 'fast');
  if (!tokenizer) throw new ArgumentError(`${modelDir} has no tokenizer.json`);
  engine = new Engine(model, tokenizer, poolOptions(model, engineOptions));
  engine.warmup(); // the first requests' steps find their buffers ready
  const info = { modelType: model.config.model_type, vocabSize: model.vocabSize, maxPositions: model.maxPositions, adapters: [...engine.adapters] };
  post({ type: 'ready', info, stats: engine.stats() });
} catch (e) {
  post({ type: 'failed', message: (e as Error).message });
  process.exit(1);
}

// Events raised by step() or abort() are collected and sent as one message after the call.
let pending: EngineEvent[] = [];
const onEvent = (e: EngineEvent) => pending.push(e);
function flush(): void {
  if (pending.length === 0) return;
  post({ type: 'events', events: pending, stats: engine.stats() });
  pending = [];
}

let scheduled = false;
function loop(): void {
  scheduled = false;
  if (!engine.hasWork) return;
  try {
    engine.step();
  } catch (e) {
    // A failing step must not take the other requests' server down: fail everything in flight.
    const message = `engine step failed: ${(e as Error).message}`;
    for (const id of inFlight) pending.push({ type: 'error', requestId: id, message });
    flush();
    for (const id of inFlight) engine.abort(id);
    pending = [];
    inFlight.clear();
    return;
  }
  for (const e of pending) if (e.type !== 'token') inFlight.delete(e.requestId);
  flush();
  schedule();
}
function schedule(): void {
  if (!scheduled && engine.hasWork) {
    scheduled = true;
    setImmediate(loop);
  }
}

const inFlight = new Set<string>();
port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'add':
      try {
        engine.add(m.request, onEvent);
        inFlight.add(m.request.id);
        post({ type: 'added', requestId: m.request.id });
      } catch (e) {
        post({ type: 'rejected', requestId: m.request.id, kind: kindOf(e), message: (e as Error).message });
      }
      schedule();
      break;
    case 'abort':
      if (inFlight.delete(m.requestId)) engine.abort(m.requestId);
      flush();
      break;
    case 'embed':
      try {
        post({ type: 'embeddings', callId: m.callId, vectors: m.inputs.map((ids) => engine.embed(ids, m.adapter)) });
      } catch (e) {
        post({ type: 'callFailed', callId: m.callId, kind: kindOf(e), message: (e as Error).message });
      }
      break;
    case 'stats':
      post({ type: 'stats', callId: m.callId, stats: engine.stats() });
      break;
  }
});
