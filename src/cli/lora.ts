// `plinth lora merge`: fold a PEFT LoRA adapter into its base model and write a plain Hugging Face
// folder (W = W0 + (α/r)·B·A), which any tool — and Plinth's server — loads without adapters.
import type { Command } from 'commander';
import { loadLoraModel, saveMergedModel } from '../peft/index.js';

interface MergeOptions {
  model: string;
  adapter: string;
  out: string;
  json?: boolean;
}

export function runLoraMerge(o: MergeOptions): void {
  const t0 = performance.now();
  const { model, tokenizer, generationConfig } = loadLoraModel(o.model, o.adapter);
  saveMergedModel(model, o.out, { tokenizer, generationConfig });
  const seconds = (performance.now() - t0) / 1000;
  if (o.json) console.log(JSON.stringify({ model: o.model, adapter: o.adapter, out: o.out, parameters: model.numParameters(), seconds }));
  else console.log(`lora merge: ${o.adapter} merged into ${o.model} → ${o.out} (${seconds.toFixed(1)} s)`);
}

export function registerLoraCommands(program: Command): void {
  const lora = program.command('lora').description('LoRA adapters (PEFT format)');
  lora
    .command('merge')
    .description('merge an adapter into its base model and write a full model folder')
    .requiredOption('--model <dir>', 'the base model folder')
    .requiredOption('--adapter <dir>', 'the adapter folder (adapter_config.json + adapter_model.safetensors)')
    .requiredOption('--out <dir>', 'where to write the merged model')
    .option('--json', 'machine-readable output')
    .action((o: MergeOptions) => runLoraMerge(o));
}
