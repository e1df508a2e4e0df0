// Plinth's public API: `import * as pl from 'plinth'`.
export * from './tensor/index.js';
export { setBackend, getBackend, availableBackends, numThreads, setNumThreads, type BackendName } from './backend/index.js';
export * from './errors.js';
export * from './train/index.js';
export * from './nn/index.js';
export * from './models/index.js';
export * from './tokenizers/index.js';
export * from './io/index.js';
export * from './data/index.js';
export * from './infer/index.js';
export * from './peft/index.js';
export * from './align/index.js';
export * from './quant/index.js';
export * from './serve/index.js';
