// `plinth prepare` as a user runs it: the built-in stories to a dataset (--json), and the message for
// a folder with no text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDataset } from '../../src/data/dataset.js';

const main = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'plinth-cli-prepare-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

test('plinth prepare --stories N --json writes a dataset and describes it', () => {
  const out = path.join(tmp, 'stories');
  const stdout = execFileSync(process.execPath, [main, 'prepare', '--out', out, '--stories', '120', '--vocab-size', '300', '--json'], { encoding: 'utf8' });
  const r = JSON.parse(stdout);
  assert.equal(r.out, out);
  assert.equal(r.manifest.source.documents, 120);
  assert.equal(r.manifest.splits.val.documents, 6);
  const ds = openDataset(out);
  assert.equal(ds.train.length, r.manifest.splits.train.tokens);
  assert.match(ds.tokenizer.decode([ds.manifest.separatorId]), /endoftext/);
  const line = execFileSync(process.execPath, [main, 'prepare', '--out', out, '--stories', '40', '--vocab-size', '300'], { encoding: 'utf8' });
  assert.match(line, /^prepared 40 documents .* train \+ .* val tokens, uint16, vocabulary .* in [\d.]+ s\n$/);
});

test('plinth prepare on a folder with no text names the folder and exits 1', () => {
  const empty = path.join(tmp, 'empty');
  mkdirSync(empty);
  writeFileSync(path.join(empty, 'image.png'), 'x');
  const r = spawnSync(process.execPath, [main, 'prepare', '--input', empty, '--out', path.join(tmp, 'o')], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), `plinth: the folder ${empty} holds no text files (.txt, .md, .jsonl)`);
  const bad = spawnSync(process.execPath, [main, 'prepare', '--out', path.join(tmp, 'o'), '--val-fraction', '2'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--val-fraction/);
});
