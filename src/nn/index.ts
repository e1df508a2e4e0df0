export { Module, StateDictError, joinName, type ModuleOptions } from './module.js';
export {
  Linear, Conv1D, Embedding, LayerNorm, RMSNorm, Dropout, linearLayer, plainLinear,
  type InitOptions, type LinearLayer, type LinearOptions, type LinearFactory,
} from './layers.js';
export { SwiGLUMLP, GeluMLP } from './mlp.js';
export {
  attend, causalMetadata, positionIds, KVCache, RotaryEmbedding, type AttentionMetadata, type PagedAttentionInputs, type RopeTables,
} from './attention.js';
