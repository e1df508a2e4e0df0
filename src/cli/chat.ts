// `plinth chat`: an interactive conversation in the terminal. Each turn renders the whole
// conversation with the tokenizer's chat template and streams the reply; /reset forgets the
// conversation, /exit (or end of input) leaves. Reads piped input too, one message per line.
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { ArgumentError, PlinthError } from '../errors.js';
import { loadCheckpoint } from '../io/index.js';
import { stopTokenIds } from '../serve/openai.js';
import type { ChatMessage } from '../tokenizers/index.js';
import { addSamplingOptions, runOnce, samplingFromOptions, singleStreamEngine, type SamplingCliOptions } from './generate.js';

interface ChatCliOptions extends SamplingCliOptions {
  model: string;
  system?: string;
}

export function registerChatCommand(program: Command): void {
  addSamplingOptions(
    program
      .command('chat')
      .description('chat with a checkpoint in the terminal (streams replies; /reset, /exit)')
      .requiredOption('--model <dir>', 'checkpoint folder (Hugging Face layout with tokenizer.json and a chat template)')
      .option('--system <text>', 'system message at the start of the conversation'),
  ).action(async (o: ChatCliOptions) => {
    const { model, tokenizer, generationConfig } = loadCheckpoint(o.model);
    if (!tokenizer) throw new ArgumentError(`${o.model} has no tokenizer.json`);
    const engine = singleStreamEngine(model, tokenizer);
    const stopIds = stopTokenIds(tokenizer, generationConfig, true);
    const start: ChatMessage[] = o.system ? [{ role: 'system', content: o.system }] : [];
    let messages = [...start];
    const interactive = process.stdin.isTTY === true;
    const rl = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive });
    if (interactive) console.log('plinth chat: type a message; /reset starts over, /exit leaves.');
    const ask = () => interactive && rl.prompt();
    rl.setPrompt('> ');
    ask();
    for await (const line of rl) {
      const input = line.trim();
      if (input === '/exit') break;
      if (input === '/reset') {
        messages = [...start];
        console.log('(conversation reset)');
        ask();
        continue;
      }
      if (input === '') {
        ask();
        continue;
      }
      messages.push({ role: 'user', content: input });
      // A conversation that outgrows the context loses its oldest turns (the system message stays).
      let ids = tokenizer.applyChatTemplate(messages, { add_generation_prompt: true }).ids;
      while (ids.length >= model.maxPositions && messages.length > start.length + 1) {
        messages.splice(start.length, 2);
        ids = tokenizer.applyChatTemplate(messages, { add_generation_prompt: true }).ids;
      }
      try {
        const params = samplingFromOptions(o, stopIds, ids.length, model.maxPositions);
        const r = runOnce(engine, ids, params, (s) => process.stdout.write(s));
        process.stdout.write('\n');
        messages.push({ role: 'assistant', content: r.text });
      } catch (e) {
        if (!(e instanceof PlinthError)) throw e;
        console.error(`plinth chat: ${e.message}`);
        messages.pop();
      }
      ask();
    }
    rl.close();
  });
}
