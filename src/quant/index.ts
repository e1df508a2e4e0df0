export {
  NF4_BLOCK, DQ_BLOCK, NF4_CODE, dynamicMap, nearestCode, quantizeNF4, dequantizeNF4, quantizeAbsmax, dequantizeAbsmax,
  quantizeInt8, int8Scales, type NF4Weight, type QuantizedAbsmax, type Int8Weight,
} from './formats.js';
export {
  QuantizedLinear, Int8Linear, NF4Linear, HalfLinear, QuantizationError, QUANT_METHODS, createQuantizedLinear, checkQuantMethod,
  quantizedLinearFactory, quantizedLayers, setActivationPrecision, type ActivationPrecision, type QuantMethod, type QuantTensors,
} from './layers.js';
export {
  quantizeFolder, quantizeWeights, linearWeightBytes, saveQuantized, loadQuantized, quantizedStateDict, weightBytes, quantizationConfig, folderQuantMethod,
  type QuantizedCheckpoint, type QuantizeProgress, type SaveQuantizedOptions, type QuantizedBuildOptions,
} from './io.js';
