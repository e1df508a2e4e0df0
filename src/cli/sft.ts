// `plinth sft`: supervised fine-tuning on instruction data (JSONL, or by default the built-in story
// questions and word problems), loss on the assistant's tokens only, then exact-match accuracy on
// held-out built-in questions.
import type { Command } from 'commander';
import { readInstructionFile } from '../data/index.js';
import { sft, sftExamplesFromRecords, sftExamplesFromTasks } from '../align/index.js';
import { int, modelOptions, num, pct, saveChatModel, startStage, type StageCliOptions } from './align-shared.js';

interface SFTCliOptions extends StageCliOptions {
  data?: string;
  onError: string;
  steps: string;
  batchSize: string;
  lr: string;
  pack: boolean;
  rambling: string;
}

export function runSFT(o: SFTCliOptions): void {
  const stage = startStage(o);
  const { say, seed, cm } = stage;
  let examples;
  if (o.data) {
    const { records, problems } = readInstructionFile(o.data, { onError: o.onError === 'skip' ? 'skip' : 'reject' });
    for (const p of problems) say(`skipped ${o.data} line ${p.line}: ${p.message}`);
    examples = sftExamplesFromRecords(cm.tokenizer, records);
  } else {
    examples = sftExamplesFromTasks(cm.tokenizer, stage.trainTasks(), { rambling: num(o.rambling, 'rambling', 0) });
  }
  const steps = int(o.steps, 'steps', 300);
  say(`SFT on ${examples.length} examples${o.data ? ` from ${o.data}` : ' (built-in tasks)'}${cm.lora ? ' with LoRA' : ''}: ${steps} steps`);
  const r = sft(cm.model, examples, {
    steps, batchSize: int(o.batchSize, 'batch-size', 8), lr: num(o.lr, 'lr', 2e-3), pack: o.pack, padId: cm.endId, seed,
    onStep: (m) => stage.logStep(m.step, steps, m, () => `step ${m.step}/${steps}  loss ${m.loss.toFixed(3)}`),
  });
  saveChatModel(cm, o.out);
  const ev = stage.evaluate({ samples: 0 });
  const seconds = stage.seconds();
  if (o.json) console.log(JSON.stringify({ out: o.out, loss: r.loss, accuracy: ev.accuracy, byKind: ev.byKind, seconds }));
  else console.log(`sft: ${steps} steps in ${seconds.toFixed(0)} s — loss ${r.loss.toFixed(3)}, held-out exact match ${pct(ev.accuracy)}; model in ${o.out}`);
}

export function registerSFTCommand(program: Command): void {
  modelOptions(program.command('sft').description('supervised fine-tuning on the assistant turns of instruction data (default: built-in story questions and word problems)'))
    .option('--data <file>', 'instruction JSONL: {"messages": [...]} or {"prompt", "response"} per line')
    .option('--on-error <mode>', 'bad JSONL lines: reject (stop) or skip (report and continue)', 'reject')
    .option('--train <n>', 'built-in training questions (without --data)', '2000')
    .option('--eval <n>', 'held-out built-in questions to measure exact match on', '120')
    .option('--kinds <list>', 'built-in task kinds: holder, location, colour, arithmetic')
    .option('--steps <n>', 'optimizer steps', '300')
    .option('--batch-size <n>', 'rows per step', '8')
    .option('--lr <x>', 'peak learning rate', '2e-3')
    .option('--rambling <fraction>', 'built-in tasks: fraction of answers given in needless words', '0')
    .option('--no-pack', 'one example per row (padded) instead of packing short examples together')
    .action((o: SFTCliOptions) => runSFT(o));
}
