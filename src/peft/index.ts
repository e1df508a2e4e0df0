// Parameter-efficient fine-tuning: LoRA layers, adapters in the PEFT format, merged models.
export {
  LoRALinear, loraFactory, loraLayers, addAdapter, setAdapter, setAdapterSegments, markOnlyAdapterTrainable, withoutAdapters, mergeAdapter,
  unmergeAdapter, adapterNames, baseStateDict, matchesTarget, validateLoraConfig, AdapterError, type LoraConfig, type LoraAdapter, type AdapterSegment,
} from './lora.js';
export {
  saveAdapter, loadAdapter, readAdapterConfig, AdapterFormatError, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
  type PeftLoraConfigJson, type SaveAdapterOptions,
} from './adapter.js';
export { createLoraModel, loadLoraModel, attachAdapter, mergedModel, saveMergedModel, type LoraModelOptions } from './model.js';
export { loadQLoraModel, type QLoraOptions } from './qlora.js';
