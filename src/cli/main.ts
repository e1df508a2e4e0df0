#!/usr/bin/env node
// The `plinth` command: one sub-command per stage of a foundation model's life.
import { Command } from 'commander';
import { PlinthError } from '../errors.js';
import { registerChatCommand } from './chat.js';
import { registerDemoCommand } from './demo.js';
import { registerExportCommands } from './export.js';
import { registerFinetuneCommand } from './finetune.js';
import { registerGenerateCommand } from './generate.js';
import { registerLoraCommands } from './lora.js';
import { registerPrepareCommand } from './prepare.js';
import { registerPretrainCommand } from './pretrain.js';
import { registerQuantizeCommands } from './quantize.js';
import { registerSampleCommand } from './sample.js';
import { registerServeCommand } from './serve.js';
import { registerTokenizerCommands } from './tokenizer.js';

const program = new Command();
program
  .name('plinth')
  .description('Foundation models end to end: tensors, tokenizers, training, alignment, serving.')
  .version('0.1.0');

registerDemoCommand(program);
registerTokenizerCommands(program);
registerPrepareCommand(program);
registerSampleCommand(program);
registerPretrainCommand(program);
registerGenerateCommand(program);
registerChatCommand(program);
registerServeCommand(program);
registerFinetuneCommand(program);
registerLoraCommands(program);
registerQuantizeCommands(program);
registerExportCommands(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof PlinthError) {
    console.error(`plinth: ${e.message}`);
    process.exit(1);
  }
  throw e;
});
