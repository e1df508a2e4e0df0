// `plinth serve`: an OpenAI-compatible HTTP server over a checkpoint folder. SIGTERM (or Ctrl-C)
// stops accepting connections, lets the requests in flight finish, and exits 0.
import type { Command } from 'commander';
import { ArgumentError } from '../errors.js';
import { createServer } from '../serve/index.js';
import { FAST_ACTIVATIONS_HELP } from './generate.js';

interface ServeCliOptions {
  model?: string;
  port: string;
  host: string;
  servedModelName?: string;
  kvCacheMb?: string;
  maxBatchTokens?: string;
  maxQueue?: string;
  maxRunning?: string;
  lora?: string[];
  fastActivations?: boolean;
}

/** `--lora NAME=DIR`, repeatable. */
function collectLora(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function parseLora(spec: string): { name: string; path: string } {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new ArgumentError(`--lora must be NAME=ADAPTER_DIR, got '${spec}'`);
  return { name: spec.slice(0, eq), path: spec.slice(eq + 1) };
}

function int(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new ArgumentError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve a checkpoint with an OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/embeddings)')
    .option('--model <dir>', 'checkpoint folder (Hugging Face layout with tokenizer.json), e.g. runs/<name>/checkpoint')
    .option('--port <n>', 'port to listen on (0 = any free port)', '8000')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--served-model-name <id>', 'the model id clients use (default: the folder name)')
    .option('--kv-cache-mb <n>', 'memory for the KV block pool in MB (default: 25% of free memory, at most 2 GB)')
    .option('--max-batch-tokens <n>', 'tokens per engine step (default 512)')
    .option('--max-running <n>', 'sequences decoded together (default 64)')
    .option('--max-queue <n>', 'requests waiting beyond the running ones; more get 429', '256')
    .option('--lora <name=dir>', 'serve a PEFT LoRA adapter folder on the base as model "<id>:<name>" (repeatable; requests pick one per request)', collectLora)
    .option('--fast-activations', FAST_ACTIVATIONS_HELP)
    .action(async (o: ServeCliOptions) => {
      if (!o.model) throw new ArgumentError('--model is required: a checkpoint folder such as runs/<name>/checkpoint (`plinth pretrain` makes one)');
      const port = int(o.port, 'port', 0)!;
      const kvMb = int(o.kvCacheMb, 'kv-cache-mb', 1);
      const server = await createServer({
        modelDir: o.model,
        modelId: o.servedModelName,
        kvCacheBytes: kvMb === undefined ? undefined : kvMb * 1024 * 1024,
        maxBatchTokens: int(o.maxBatchTokens, 'max-batch-tokens', 1),
        maxRunning: int(o.maxRunning, 'max-running', 1),
        maxWaiting: int(o.maxQueue, 'max-queue', 0),
        loras: (o.lora ?? []).map(parseLora),
        fastActivations: o.fastActivations,
      });
      const address = await server.listen(port, o.host);
      const s = server.engineStats;
      const adapters = o.lora ? `, adapters ${o.lora.map((l) => `${server.modelId}:${parseLora(l).name}`).join(', ')}` : '';
      console.log(`plinth serve: ${server.modelId} on ${address}/v1 (context ${server.contextLength} tokens${s ? `, ${s.blocksTotal} KV blocks` : ''}${adapters})`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        console.log(`plinth serve: ${signal}: finishing the requests in flight`);
        server.close().then(
          () => process.exit(0),
          (e: unknown) => {
            console.error(`plinth serve: ${(e as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
