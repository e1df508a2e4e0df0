// `plinth sample`: continue a prompt with a trained model, streaming the text as it is produced.
import type { Command } from 'commander';
import { ArgumentError } from '../errors.js';
import { loadCheckpoint } from '../io/index.js';
import { generate } from '../infer/index.js';
import { manualSeed } from '../tensor/index.js';

interface SampleOptions {
  model: string;
  prompt: string;
  maxTokens: string;
  temperature: string;
  topK: string;
  topP: string;
  seed: string;
  numSamples: string;
  json?: boolean;
}

export function registerSampleCommand(program: Command): void {
  program
    .command('sample')
    .description('generate text from a checkpoint folder (temperature, top-k, top-p, seed)')
    .requiredOption('--model <dir>', 'checkpoint folder (Hugging Face layout with tokenizer.json)')
    .option('--prompt <text>', 'text to continue', '')
    .option('--max-tokens <n>', 'new tokens per sample', '100')
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', '0.8')
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', '0')
    .option('--top-p <p>', 'nucleus sampling threshold', '0.95')
    .option('--seed <n>', 'random seed', '0')
    .option('--num-samples <n>', 'number of samples', '1')
    .option('--json', 'machine-readable output')
    .action((o: SampleOptions) => {
      const { model, tokenizer, generationConfig } = loadCheckpoint(o.model);
      if (!tokenizer) throw new ArgumentError(`${o.model} has no tokenizer.json: cannot turn the prompt into ids`);
      manualSeed(Number(o.seed));
      // Documents start after a beginning-of-text token (or, GPT-2 style, an end-of-text one).
      const id = (v: unknown) => (typeof v === 'number' ? v : undefined);
      const eos = tokenizer.specialId('eosToken') ?? id(generationConfig.eos_token_id);
      const bos = tokenizer.specialId('bosToken') ?? id(generationConfig.bos_token_id) ?? eos;
      const prompt = [...(bos !== undefined ? [bos] : []), ...tokenizer.encode(o.prompt)];
      if (prompt.length === 0) throw new ArgumentError('the prompt is empty and the tokenizer has no beginning-of-text token: give --prompt');
      const samples: string[] = [];
      for (let s = 0; s < Number(o.numSamples); s++) {
        let shown = '';
        const ids: number[] = [];
        if (!o.json) process.stdout.write(o.prompt);
        generate(model, prompt, {
          maxNewTokens: Number(o.maxTokens), temperature: Number(o.temperature), topK: Number(o.topK), topP: Number(o.topP),
          stopIds: eos !== undefined ? [eos] : [],
          onToken: (id) => {
            ids.push(id);
            if (o.json) return;
            const text = tokenizer.decode(ids.filter((i) => i !== eos));
            // Print only whole characters: a multi-byte character may span tokens.
            if (!text.endsWith('\uFFFD')) {
              process.stdout.write(text.slice(shown.length));
              shown = text;
            }
          },
        });
        const text = tokenizer.decode(ids.filter((i) => i !== eos));
        samples.push(text);
        if (!o.json) process.stdout.write(`${text.slice(shown.length)}\n${s + 1 < Number(o.numSamples) ? '---\n' : ''}`);
      }
      if (o.json) console.log(JSON.stringify({ prompt: o.prompt, samples }));
    });
}
