// `plinth export gguf`: a checkpoint folder → one GGUF file that llama.cpp (and the tools built on it)
// runs, weights as F32, F16, Q8_0 or Q4_0, with the tokenizer and chat template embedded.
import path from 'node:path';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ArgumentError } from '../errors.js';
import { exportGGUF, type GGUFExportType, loadCheckpoint } from '../io/index.js';

interface ExportOptions {
  model: string;
  out: string;
  type: string;
  name?: string;
  json?: boolean;
}

const TYPES: GGUFExportType[] = ['f32', 'f16', 'q8_0', 'q4_0'];

export function registerExportCommands(program: Command): void {
  const exp = program.command('export').description('write a model in another engine\'s format');
  exp
    .command('gguf')
    .description('export a Llama-style or GPT-2 checkpoint folder to GGUF for llama.cpp (f32, f16, q8_0, q4_0)')
    .requiredOption('--model <dir>', 'checkpoint folder (Hugging Face layout with tokenizer.json)')
    .requiredOption('--out <file>', 'GGUF file to write')
    .option('--type <type>', `weight type: ${TYPES.join(', ')}`, 'f32')
    .option('--name <name>', 'general.name stored in the file (default: the folder name)')
    .option('--json', 'machine-readable output')
    .action((o: ExportOptions) => {
      const type = o.type.toLowerCase() as GGUFExportType;
      if (!TYPES.includes(type)) throw new ArgumentError(`--type must be one of ${TYPES.join(', ')}, not '${o.type}'`);
      const { model, tokenizer } = loadCheckpoint(o.model);
      if (!tokenizer) throw new ArgumentError(`${o.model} has no tokenizer.json: llama.cpp needs the tokenizer inside the GGUF file`);
      const t0 = performance.now();
      const bar = o.json || !process.stderr.isTTY
        ? null
        : new cliProgress.SingleBar({ format: `gguf ${type} [{bar}] {value}/{total} tensors`, hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic);
      let started = false;
      const s = exportGGUF(model, tokenizer, o.out, {
        type,
        name: o.name ?? path.basename(path.resolve(o.model)),
        onProgress: (done, total) => {
          if (!bar) return;
          if (!started) {
            bar.start(total, 0);
            started = true;
          }
          bar.update(done);
        },
      });
      bar?.stop();
      const seconds = (performance.now() - t0) / 1000;
      if (o.json) {
        console.log(JSON.stringify({ ...s, seconds }));
      } else {
        console.log(`wrote ${s.path}: ${s.type.toUpperCase()}, ${s.tensors} tensors, ${(s.parameters / 1e6).toFixed(2)} M parameters, ${(s.bytes / 2 ** 20).toFixed(1)} MiB in ${seconds.toFixed(1)} s`);
      }
    });
}
