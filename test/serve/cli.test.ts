// The commands as a user runs them: `plinth serve` drains in-flight requests on SIGTERM and exits 0;
// `plinth generate` and `plinth chat` (stdin piped) stream text from the same tiny checkpoint.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tinyModelDir } from './fixture.js';

const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

test('plinth serve: SIGTERM lets a streaming request finish, then exits 0', async () => {
  const dir = await tinyModelDir();
  const child = spawn(process.execPath, [main, 'serve', '--model', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/[^\s/]+)\/v1/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${out} ${err}`)));
  });
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 60, ignore_eos: true, temperature: 0, stream: true }),
  });
  assert.equal(r.status, 200);
  const reader = r.body!.getReader();
  let body = '';
  const decoder = new TextDecoder();
  // Signal once the first tokens have arrived, while the rest are still to come.
  const first = await reader.read();
  body += decoder.decode(first.value);
  child.kill('SIGTERM');
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    body += decoder.decode(value, { stream: true });
  }
  const code = await exited;
  const log = `stdout: ${out}\nstderr: ${err}\nbody: ${body.slice(-300)}`;
  assert.match(body, /data: \[DONE\]\n\n$/, log);
  assert.match(body, /"finish_reason":"length"/, log);
  assert.equal(code, 0, log);
  assert.match(out, /SIGTERM/, log);
  await assert.rejects(fetch(`${base}/health`));
});

test('plinth serve without --model says what to give', () => {
  const r = spawnSync(process.execPath, [main, 'serve'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--model is required/);
});

test('plinth generate: --json and streamed text agree; the seed fixes the text', async () => {
  const dir = await tinyModelDir();
  const run = (...extra: string[]) => spawnSync(process.execPath, [main, 'generate', '--model', dir, '--prompt', 'The cat', '--max-tokens', '10', '--seed', '3', ...extra], { encoding: 'utf8' });
  const json = run('--json');
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { text: string; finish_reason: string; usage: { completion_tokens: number } };
  assert.ok(parsed.usage.completion_tokens >= 1 && parsed.usage.completion_tokens <= 10);
  const streamed = run();
  assert.equal(streamed.status, 0, streamed.stderr);
  assert.equal(streamed.stdout, `${parsed.text}\n`);
  assert.match(streamed.stderr, /tok\/s/);
});

test('plinth chat: piped messages get streamed replies; /reset forgets, /exit leaves', async () => {
  const dir = await tinyModelDir();
  const r = spawnSync(process.execPath, [main, 'chat', '--model', dir, '--max-tokens', '8', '--temperature', '0'], {
    input: 'Hello there\nName a colour\n/reset\nHello there\n/exit\nnever read\n',
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  // Replies may hold newlines themselves, so compare whole pieces: after /reset the conversation is
  // the first turn again, and greedy decoding gives the first reply again; nothing after /exit.
  const [turns, afterReset] = r.stdout.split('(conversation reset)\n') as [string, string];
  assert.ok(afterReset !== undefined, r.stdout);
  assert.ok(afterReset.length > 1 && afterReset.endsWith('\n'));
  assert.ok(turns.startsWith(afterReset), `first reply ${JSON.stringify(turns)} vs ${JSON.stringify(afterReset)}`);
  assert.ok(turns.length > afterReset.length, 'a second reply before /reset');
});
