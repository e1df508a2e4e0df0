// Every op, grouped by family; each op's backward lives beside its forward.
export * from './creation.js';
export * from './movement.js';
export * from './elementwise.js';
export * from './reduce.js';
export * from './matmul.js';
export * from './norm.js';
export * from './loss.js';
export * from './attention.js';
export * from './conv.js';
