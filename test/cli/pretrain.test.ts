// The command line end to end: `plinth pretrain` on the built-in stories, resumed, then
// `plinth sample` from the run folder — as a user would type them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const cli = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');

function plinth(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('pretrain → resume → sample on the synthetic stories', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'plinth-cli-'));
  const common = ['--out', out, '--stories', '300', '--batch-size', '4', '--block-size', '32', '--vocab-size', '400', '--eval-every', '3', '--json'];
  const first = plinth('pretrain', ...common, '--steps', '6', '--max-minutes', '0.0001');
  assert.equal(first.status, 0, first.stderr);
  const summary1 = JSON.parse(first.stdout.trim().split('\n').pop()!);
  assert.equal(summary1.interrupted, true, 'the time budget stops the run early');
  assert.ok(existsSync(path.join(out, 'checkpoint', 'trainer_state.json')));
  const second = plinth('pretrain', ...common, '--steps', '6', '--resume');
  assert.equal(second.status, 0, second.stderr);
  const summary2 = JSON.parse(second.stdout.trim().split('\n').pop()!);
  assert.equal(summary2.steps, 6);
  assert.equal(summary2.interrupted, false);
  assert.equal(summary2.samples.length, 3);
  assert.equal(readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 6);
  const sample = plinth('sample', '--model', out, '--prompt', 'There was', '--max-tokens', '5', '--json');
  assert.equal(sample.status, 0, sample.stderr);
  assert.equal(typeof JSON.parse(sample.stdout).samples[0], 'string');
  const bad = plinth('pretrain', '--out', out, '--preset', 'enormous');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown preset 'enormous'/);
  const missing = plinth('sample', '--model', path.join(out, 'nope'));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /does not exist/);
});
