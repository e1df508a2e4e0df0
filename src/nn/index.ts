export { Module, StateDictError, joinName, type ModuleOptions } from './module.js';
export { Linear, Conv1D, Embedding, LayerNorm, RMSNorm, Dropout, type InitOptions } from './layers.js';
export { SwiGLUMLP, GeluMLP } from './mlp.js';
export { attend, KVCache, RotaryEmbedding, type AttentionMetadata, type RopeTables } from './attention.js';
