export { readSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors, writeFileAtomic, SafetensorsError, type SafetensorsFile } from './safetensors.js';
export { loadModel, loadCheckpoint, saveModel, readWeights, registerFolderLoader, CheckpointError, type LoadedModel, type SaveOptions, type FolderLoader } from './hf.js';
export { readGGUF, parseGGUF, writeGGUF, quantizeQ8_0, quantizeQ4_0, dequantize, fp32ToFp16, fp16ToFp32, GGMLType, GGUFValueType, GGUFError, gguf, type GGUFFile, type GGUFTensorInfo, type GGUFTensorOut, type GGUFValue } from './gguf.js';
export { exportGGUF, permuteRope, tokenizerMetadata, type GGUFExportType, type GGUFExportOptions, type GGUFExportSummary } from './gguf-export.js';
