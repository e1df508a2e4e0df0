#!/usr/bin/env node
// Writes data/tokenizers/<encoding>.tiktoken (one "<base64 bytes> <rank>" line per token) from the
// rank data shipped in the js-tiktoken package, the encoder Plinth's tokenizer tests use as oracle.
// Usage: node scripts/write-tiktoken-ranks.mjs [r50k_base cl100k_base o200k_base ...]
// (default: r50k_base cl100k_base, the encodings the repository ships).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const names = process.argv.slice(2);
if (names.length === 0) names.push('r50k_base', 'cl100k_base');

const outDir = path.join(root, 'data', 'tokenizers');
mkdirSync(outDir, { recursive: true });
for (const name of names) {
  const ranks = (await import(`js-tiktoken/ranks/${name}`)).default;
  // js-tiktoken's compact form: lines of "<prefix> <first rank> <base64 token> <base64 token> ...",
  // the tokens of a line having consecutive ranks.
  const lines = [];
  for (const line of ranks.bpe_ranks.split('\n')) {
    if (!line) continue;
    const [, first, ...tokens] = line.split(' ');
    const offset = Number.parseInt(first, 10);
    tokens.forEach((tok, i) => lines.push([offset + i, tok]));
  }
  lines.sort((a, b) => a[0] - b[0]);
  const file = path.join(outDir, `${name}.tiktoken`);
  writeFileSync(file, lines.map(([rank, tok]) => `${tok} ${rank}`).join('\n') + '\n');
  console.log(`wrote ${path.relative(root, file)}: ${lines.length} tokens`);
}
