// `plinth generate`: one completion from a checkpoint through the engine, streamed to stdout.
// The sampling flags and the single-request loop are shared with `plinth chat`.
import type { Command } from 'commander';
import { ArgumentError } from '../errors.js';
import { Engine, samplingParams, type SamplingParams } from '../infer/index.js';
import { loadCheckpoint } from '../io/index.js';
import type { CausalLM } from '../models/index.js';
import { setActivationPrecision } from '../quant/index.js';
import { encodePrompt, stopTokenIds } from '../serve/openai.js';
import type { Tokenizer } from '../tokenizers/index.js';

export interface SamplingCliOptions {
  maxTokens?: string;
  temperature: string;
  topK: string;
  topP: string;
  minP: string;
  repetitionPenalty: string;
  presencePenalty: string;
  frequencyPenalty: string;
  seed?: string;
  stop: string[];
}

export const FAST_ACTIVATIONS_HELP =
  'quantized int8 / bf16 models: round activations to int8 (blocks of 32) / bf16 for integer or bf16 dot products (faster, slightly different numbers)';

export function addSamplingOptions(cmd: Command): Command {
  return cmd
    .option('--max-tokens <n>', 'new tokens at most (default: up to the context length)')
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', '0.8')
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', '0')
    .option('--top-p <p>', 'nucleus sampling threshold', '0.95')
    .option('--min-p <p>', 'drop tokens less likely than p times the most likely one', '0')
    .option('--repetition-penalty <r>', 'divide the logits of tokens already seen (1 = off)', '1')
    .option('--presence-penalty <x>', 'subtract from the logits of generated tokens (0 = off)', '0')
    .option('--frequency-penalty <x>', 'subtract x times the count of each generated token (0 = off)', '0')
    .option('--seed <n>', 'random seed (same seed, same text)')
    .option('--stop <text...>', 'stop when any of these strings appears (not included)', []);
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new ArgumentError(`--${name} must be a number, got '${v}'`);
  return n;
}

/** Sampling parameters from the flags; maxTokens is what the context leaves after the prompt if not given. */
export function samplingFromOptions(o: SamplingCliOptions, stopIds: number[], promptLength: number, contextLength: number): SamplingParams {
  const room = contextLength - promptLength;
  const asked = num(o.maxTokens, 'max-tokens');
  if (room <= 0) throw new ArgumentError(`the prompt has ${promptLength} tokens; the model's context is ${contextLength}`);
  return samplingParams({
    maxTokens: Math.min(asked ?? room, room),
    temperature: num(o.temperature, 'temperature'),
    topK: num(o.topK, 'top-k'),
    topP: num(o.topP, 'top-p'),
    minP: num(o.minP, 'min-p'),
    repetitionPenalty: num(o.repetitionPenalty, 'repetition-penalty'),
    presencePenalty: num(o.presencePenalty, 'presence-penalty'),
    frequencyPenalty: num(o.frequencyPenalty, 'frequency-penalty'),
    seed: num(o.seed, 'seed') ?? null,
    stop: o.stop,
    stopTokenIds: stopIds,
  });
}

/** An engine with a KV pool sized for one sequence at the model's full context. */
export function singleStreamEngine(model: CausalLM, tokenizer: Tokenizer): Engine {
  return new Engine(model, tokenizer, { numBlocks: Math.ceil(model.maxPositions / 16) + 1, blockSize: 16 });
}

export interface RunResult {
  text: string;
  finishReason: string;
  promptTokens: number;
  completionTokens: number;
}

/** Runs one request to completion, handing each piece of text to onText as it is produced. */
export function runOnce(engine: Engine, promptIds: number[], params: SamplingParams, onText: (s: string) => void): RunResult {
  let result: RunResult | null = null;
  let text = '';
  let failure: string | null = null;
  engine.add({ id: 'cli', promptIds, params }, (e) => {
    if (e.type === 'error') failure = e.message;
    else if (e.text !== '') {
      text += e.text;
      onText(e.text);
    }
    if (e.type === 'done') result = { text, finishReason: e.finishReason, promptTokens: e.usage.promptTokens, completionTokens: e.usage.completionTokens };
  });
  while (engine.hasWork) engine.step();
  if (failure !== null) throw new ArgumentError(`generation failed: ${failure}`);
  return result!;
}

interface GenerateCliOptions extends SamplingCliOptions {
  model: string;
  prompt: string;
  fastActivations?: boolean;
  json?: boolean;
}

export function registerGenerateCommand(program: Command): void {
  addSamplingOptions(
    program
      .command('generate')
      .description('continue a prompt with a checkpoint, streaming the text (sampling flags as in the OpenAI API)')
      .requiredOption('--model <dir>', 'checkpoint folder (Hugging Face layout with tokenizer.json)')
      .option('--prompt <text>', 'text to continue', '')
      .option('--fast-activations', FAST_ACTIVATIONS_HELP)
      .option('--json', 'print one JSON object at the end instead of streaming'),
  ).action((o: GenerateCliOptions) => {
    const { model, tokenizer, generationConfig } = loadCheckpoint(o.model);
    if (o.fastActivations) setActivationPrecision(model, 'fast');
    if (!tokenizer) throw new ArgumentError(`${o.model} has no tokenizer.json: cannot turn the prompt into ids`);
    const ids = encodePrompt(tokenizer, generationConfig, o.prompt);
    if (ids.length === 0) throw new ArgumentError('the prompt is empty and the tokenizer has no beginning-of-text token: give --prompt');
    const params = samplingFromOptions(o, stopTokenIds(tokenizer, generationConfig, false), ids.length, model.maxPositions);
    const t0 = performance.now();
    const r = runOnce(singleStreamEngine(model, tokenizer), ids, params, (s) => {
      if (!o.json) process.stdout.write(s);
    });
    const seconds = (performance.now() - t0) / 1000;
    if (o.json) {
      console.log(JSON.stringify({ prompt: o.prompt, text: r.text, finish_reason: r.finishReason, usage: { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens }, seconds }));
    } else {
      process.stdout.write('\n');
      console.error(`${r.completionTokens} tokens in ${seconds.toFixed(2)} s (${(r.completionTokens / seconds).toFixed(1)} tok/s), finish: ${r.finishReason}`);
    }
  });
}
