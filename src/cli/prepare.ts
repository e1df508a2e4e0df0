// `plinth prepare`: text files or folders (or, with no --input, the built-in synthetic stories) →
// a tokenizer → token shards with a validation split and a manifest, ready for `plinth pretrain`.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ArgumentError } from '../errors.js';
import { prepareShards, storySource, type PrepareProgress, type PrepareResult } from '../data/index.js';

interface PrepareCliOptions {
  input?: string[];
  out: string;
  tokenizer?: string;
  vocabSize: string;
  tokenizerModel: string;
  trainBytes: string;
  valFraction: string;
  shardTokens: string;
  stories: string;
  seed: string;
  json?: boolean;
}

function integer(name: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new ArgumentError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}

const PHASES: Record<PrepareProgress['phase'], string> = {
  scan: 'reading',
  tokenizer: 'training tokenizer',
  encode: 'encoding',
};

function megabytes(n: number): string {
  return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
}

function millions(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n.toLocaleString('en-US');
}

export async function runPrepare(opts: PrepareCliOptions): Promise<PrepareResult> {
  const valFraction = Number(opts.valFraction);
  if (!(valFraction >= 0 && valFraction < 1)) throw new ArgumentError(`--val-fraction must be in [0, 1), got ${JSON.stringify(opts.valFraction)}`);
  if (opts.tokenizerModel !== 'bpe' && opts.tokenizerModel !== 'sentencepiece') {
    throw new ArgumentError(`--tokenizer-model must be bpe or sentencepiece, got ${JSON.stringify(opts.tokenizerModel)}`);
  }
  const source = opts.input && opts.input.length > 0
    ? { input: opts.input }
    : { source: storySource({ seed: integer('seed', opts.seed, 0), stories: integer('stories', opts.stories, 1) }) };

  // The bar goes to stderr, so --json output on stdout stays machine-readable. It counts bytes where
  // the total is known, else documents.
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: '{phase} [{bar}] {percentage}% | {done} / {total}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : null;
  let phase = '';
  const onProgress = (p: PrepareProgress) => {
    const inBytes = p.totalBytes !== null;
    const total = p.totalBytes ?? p.totalDocuments;
    if (!bar || total === null) return;
    const done = Math.min(inBytes ? p.bytes : p.documents, total);
    const show = (n: number) => (inBytes ? megabytes(n) : `${n.toLocaleString('en-US')} documents`);
    if (PHASES[p.phase] !== phase) {
      if (phase) bar.stop();
      phase = PHASES[p.phase];
      bar.start(total, 0, { phase, done: show(0), total: show(total) });
    }
    bar.update(done, { phase, done: show(done), total: show(total) });
  };
  try {
    return await prepareShards({
      ...source,
      out: opts.out,
      tokenizer: opts.tokenizer,
      vocabSize: integer('vocab-size', opts.vocabSize, 1),
      tokenizerModel: opts.tokenizerModel,
      trainBytes: integer('train-bytes', opts.trainBytes, 1),
      valFraction,
      shardTokens: integer('shard-tokens', opts.shardTokens, 1),
      onProgress,
    });
  } finally {
    bar?.stop();
  }
}

export function registerPrepareCommand(program: Command): void {
  program
    .command('prepare')
    .description('Tokenize text files or folders (.txt, .md, .jsonl) into token shards with a validation split; with no --input, the built-in synthetic stories')
    .option('--input <paths...>', 'text files or folders (searched recursively)')
    .requiredOption('--out <dir>', 'output folder: manifest.json, shards and the tokenizer')
    .option('--tokenizer <dirOrName>', 'an existing tokenizer: a folder with tokenizer.json, or r50k_base, cl100k_base, ... (default: train one)')
    .option('--vocab-size <n>', 'vocabulary size of a trained tokenizer', '4096')
    .option('--tokenizer-model <kind>', 'trained tokenizer: bpe (byte-level, GPT-2 style) or sentencepiece (Llama style)', 'bpe')
    .option('--train-bytes <n>', 'train the tokenizer on this many bytes of text from the start of the corpus', String(64 << 20))
    .option('--val-fraction <f>', 'fraction held out for validation', '0.05')
    .option('--shard-tokens <n>', 'tokens per shard file', '100000000')
    .option('--stories <n>', 'without --input: number of synthetic stories', '20000')
    .option('--seed <n>', 'without --input: seed of the synthetic stories', '0')
    .option('--json', 'print the result as JSON')
    .action(async (opts: PrepareCliOptions) => {
      const r = await runPrepare(opts);
      const m = r.manifest;
      if (opts.json) {
        console.log(JSON.stringify({ out: r.dir, manifest: m, stats: r.stats }));
        return;
      }
      console.log(
        `prepared ${m.source.documents.toLocaleString('en-US')} documents (${megabytes(m.source.bytes)}) from ${m.source.description}: `
        + `${millions(m.splits.train.tokens)} train + ${millions(m.splits.val.tokens)} val tokens, ${m.dtype}, `
        + `vocabulary ${m.vocabSize.toLocaleString('en-US')}${r.stats.tokenizerTrained ? ' (trained)' : ''} → ${r.dir} in ${r.stats.seconds.toFixed(1)} s`,
      );
    });
}
