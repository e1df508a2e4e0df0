#!/usr/bin/env node
// The `plinth` command: one sub-command per stage of a foundation model's life.
import { Command } from 'commander';
import { PlinthError } from '../errors.js';
import { registerAlignDemoCommand } from './align-demo.js';
import { registerChatCommand } from './chat.js';
import { registerDemoCommand } from './demo.js';
import { registerDPOCommand } from './dpo.js';
import { registerExportCommands } from './export.js';
import { registerFinetuneCommand } from './finetune.js';
import { registerGenerateCommand } from './generate.js';
import { registerLoraCommands } from './lora.js';
import { registerPrepareCommand } from './prepare.js';
import { registerPPOCommand } from './ppo.js';
import { registerPretrainCommand } from './pretrain.js';
import { registerQuantizeCommands } from './quantize.js';
import { registerRewardCommand } from './reward.js';
import { registerSampleCommand } from './sample.js';
import { registerServeCommand } from './serve.js';
import { registerSFTCommand } from './sft.js';
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
registerSFTCommand(program);
registerRewardCommand(program);
registerPPOCommand(program);
registerDPOCommand(program);
registerAlignDemoCommand(program);
registerQuantizeCommands(program);
registerExportCommands(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof PlinthError) {
    console.error(`plinth: ${e.message}`);
    process.exit(1);
  }
  throw e;
});
