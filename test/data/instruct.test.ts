// Instruction and preference JSONL: both instruction shapes, TRL's preference shape (string or
// conversational), bad lines reported with their line numbers and skipped or rejected per the
// flag, and identical chosen/rejected flagged.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DataError, parseInstructionJsonl, parsePreferenceJsonl } from '../../src/data/index.js';

describe('instruction JSONL', () => {
  test('messages and prompt/response lines become conversations; blank lines are ignored', () => {
    const text = [
      JSON.stringify({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] }),
      '',
      JSON.stringify({ prompt: '2+2?', response: '4' }),
    ].join('\n');
    const { records, problems } = parseInstructionJsonl(text);
    assert.equal(problems.length, 0);
    assert.equal(records.length, 2);
    assert.equal(records[0].messages.length, 3);
    assert.deepEqual(records[1].messages, [{ role: 'user', content: '2+2?' }, { role: 'assistant', content: '4' }]);
  });

  const bad = [
    JSON.stringify({ prompt: 'a', response: 'b' }),
    '{"prompt": "unterminated',
    JSON.stringify({ messages: [{ role: 'user', content: 'no answer' }] }),
    JSON.stringify([1, 2]),
    JSON.stringify({ messages: [{ role: 'user' }, { role: 'assistant', content: 'x' }] }),
    JSON.stringify({ prompt: 'c', response: 'd' }),
  ].join('\n');

  test('bad lines are rejected by default, naming each line number and the problem', () => {
    assert.throws(() => parseInstructionJsonl(bad, { source: 'sft.jsonl' }), (e: unknown) => {
      assert.ok(e instanceof DataError);
      const m = (e as Error).message;
      assert.match(m, /^sft\.jsonl: 4 bad lines/);
      assert.match(m, /line 2: invalid JSON/);
      assert.match(m, /line 3: "messages" has no assistant message/);
      assert.match(m, /line 4: the line is not a JSON object/);
      assert.match(m, /line 5: messages\[0\] has no string "content"/);
      return true;
    });
  });

  test('with onError skip, bad lines are dropped and listed', () => {
    const { records, problems } = parseInstructionJsonl(bad, { onError: 'skip' });
    assert.equal(records.length, 2);
    assert.deepEqual(problems.map((p) => p.line), [2, 3, 4, 5]);
  });

  test('a file with no usable line is an error even when skipping', () => {
    assert.throws(() => parseInstructionJsonl('{"x": 1}\n', { onError: 'skip' }), /no usable examples \(1 bad lines\)/);
  });
});

describe('preference JSONL', () => {
  test("TRL's standard and conversational shapes", () => {
    const text = [
      JSON.stringify({ prompt: 'Who?', chosen: 'Anna', rejected: 'Tom' }),
      JSON.stringify({ prompt: [{ role: 'user', content: 'Who?' }], chosen: [{ role: 'assistant', content: 'Anna' }], rejected: [{ role: 'assistant', content: 'Tom' }] }),
    ].join('\n');
    const { records } = parsePreferenceJsonl(text);
    assert.deepEqual(records[0], { prompt: [{ role: 'user', content: 'Who?' }], chosen: 'Anna', rejected: 'Tom' });
    assert.deepEqual(records[1], records[0]);
  });

  test('identical chosen and rejected are flagged with the line number', () => {
    const text = [
      JSON.stringify({ prompt: 'p', chosen: 'same', rejected: 'same' }),
      JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b' }),
      JSON.stringify({ prompt: 'p', chosen: 'a' }),
    ].join('\n');
    assert.throws(() => parsePreferenceJsonl(text), /line 1: "chosen" and "rejected" are identical[\s\S]*line 3: expected \{"prompt", "chosen", "rejected"\}/);
    const { records, problems } = parsePreferenceJsonl(text, { onError: 'skip' });
    assert.equal(records.length, 1);
    assert.deepEqual(problems.map((p) => p.line), [1, 3]);
  });
});
