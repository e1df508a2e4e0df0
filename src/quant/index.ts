export {
  NF4_BLOCK, DQ_BLOCK, NF4_CODE, dynamicMap, nearestCode, quantizeNF4, dequantizeNF4, quantizeAbsmax, dequantizeAbsmax,
  quantizeInt8, int8Scales, type NF4Weight, type QuantizedAbsmax, type Int8Weight,
} from './formats.js';
