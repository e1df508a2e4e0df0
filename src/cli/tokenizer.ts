// `plinth tokenizer train` (learn a vocabulary from text files) and `plinth tokenize` (text on
// standard input to token ids or a token count).
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { ArgumentError } from '../errors.js';
import { loadTokenizer, trainTokenizer } from '../tokenizers/index.js';
import type { TrainTokenizerProgress } from '../tokenizers/index.js';

interface TrainCliOptions {
  input: string[];
  vocabSize: string;
  out: string;
  model: string;
  minFrequency: string;
  specialTokens?: string;
  pattern?: string;
  json?: boolean;
}

interface TokenizeCliOptions {
  tokenizer: string;
  count?: boolean;
  json?: boolean;
  specialTokens?: boolean;
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new ArgumentError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function train(opts: TrainCliOptions): Promise<void> {
  const vocabSize = positiveInt('vocab-size', opts.vocabSize);
  const minFrequency = Number(opts.minFrequency);
  if (!Number.isInteger(minFrequency) || minFrequency < 0) throw new ArgumentError(`--min-frequency must be a non-negative integer, got ${opts.minFrequency}`);
  if (!['bpe', 'sentencepiece', 'wordpiece'].includes(opts.model)) {
    throw new ArgumentError(`--model must be bpe, sentencepiece or wordpiece, got ${JSON.stringify(opts.model)}`);
  }
  let bytes = 0;
  for (const f of opts.input) {
    try {
      bytes += statSync(f).size;
    } catch {
      throw new ArgumentError(`cannot read input file ${f}`);
    }
  }
  // The bar goes to stderr, so --json output on stdout stays machine-readable.
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: '{phase} [{bar}] {percentage}% | {value}/{total}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : null;
  let phase = '';
  const onProgress = (p: TrainTokenizerProgress) => {
    if (!bar) return;
    const label = p.phase === 'count' ? 'counting words (bytes)' : 'merging (merges)';
    if (label !== phase) {
      if (phase) bar.stop();
      phase = label;
      bar.start(p.total, 0, { phase: label });
    }
    bar.setTotal(Math.max(p.total, p.done));
    bar.update(p.done, { phase: label });
  };
  const t0 = performance.now();
  const tok = await trainTokenizer({
    model: opts.model as 'bpe' | 'sentencepiece' | 'wordpiece',
    files: opts.input,
    vocabSize,
    minFrequency,
    specialTokens: opts.specialTokens === undefined ? undefined : opts.specialTokens.split(',').filter((s) => s !== ''),
    pattern: opts.pattern,
    onProgress,
  });
  bar?.stop();
  tok.save(opts.out);
  const seconds = (performance.now() - t0) / 1000;
  const summary = { model: opts.model, vocab_size: tok.vocabSize, input_bytes: bytes, seconds, out: opts.out };
  if (opts.json) console.log(JSON.stringify(summary));
  else console.log(`trained a ${opts.model} tokenizer: ${tok.vocabSize} tokens from ${(bytes / 1e6).toFixed(2)} MB in ${seconds.toFixed(2)} s, saved to ${opts.out}`);
}

async function tokenize(opts: TokenizeCliOptions): Promise<void> {
  const tok = loadTokenizer(opts.tokenizer);
  const text = await readStdin();
  const encodeOpts = { addSpecialTokens: false, allowedSpecial: opts.specialTokens ? ('all' as const) : ('none' as const) };
  if (opts.count) {
    const n = tok.count(text, encodeOpts);
    console.log(opts.json ? JSON.stringify({ tokens: n, bytes: Buffer.byteLength(text) }) : String(n));
    return;
  }
  const ids = tok.encode(text, encodeOpts);
  console.log(opts.json ? JSON.stringify({ ids }) : ids.join(' '));
}

export function registerTokenizerCommands(program: Command): void {
  const group = program.command('tokenizer').description('Train and inspect tokenizers');
  group
    .command('train')
    .description('Train a tokenizer on text files and save it (tokenizer.json + tokenizer_config.json)')
    .requiredOption('--input <files...>', 'text files to train on')
    .requiredOption('--vocab-size <n>', 'size of the vocabulary, special tokens included')
    .requiredOption('--out <dir>', 'folder to write the tokenizer to')
    .option('--model <kind>', 'bpe (byte-level), sentencepiece (Llama 2 style BPE) or wordpiece (BERT)', 'bpe')
    .option('--min-frequency <n>', 'never merge pairs seen fewer times', '2')
    .option('--special-tokens <list>', 'comma-separated special tokens (default depends on --model)')
    .option('--pattern <regex>', "byte-level pre-tokenizer: 'gpt2', 'cl100k', 'o200k' or a regular expression")
    .option('--json', 'print a JSON summary')
    .action((opts: TrainCliOptions) => train(opts));
  program
    .command('tokenize')
    .description('Tokenize standard input: print the token ids, or the token count')
    .requiredOption('--tokenizer <dir|name>', 'a tokenizer folder, or r50k_base / cl100k_base')
    .option('--count', 'print the number of tokens instead of the ids')
    .option('--special-tokens', 'recognise special tokens such as <|endoftext|> in the input (default: encode them as text)')
    .option('--json', 'print JSON ({"ids": [...]} or {"tokens": n})')
    .action((opts: TokenizeCliOptions) => tokenize(opts));
}
