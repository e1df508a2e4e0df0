// `plinth tokenizer ...` and `plinth tokenize`.
import type { Command } from 'commander';

export function registerTokenizerCommands(program: Command): void {
  void program;
}
