export { readSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors, writeFileAtomic, SafetensorsError, type SafetensorsFile } from './safetensors.js';
export { loadModel, loadCheckpoint, saveModel, readWeights, CheckpointError, type LoadedModel, type SaveOptions } from './hf.js';
