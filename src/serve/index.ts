// Public API of the serving layer.
export { PlinthServer, createServer, type ServerOptions, type ServeOptions } from './server.js';
export { WorkerEngine, EngineRejectedError, type ServingEngine } from './engine-client.js';
export { ApiError } from './openai.js';
export type { ModelInfo } from './protocol.js';
