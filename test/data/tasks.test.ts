// The built-in alignment tasks: deterministic per split seed, splits share no prompt, answers are
// the facts of the simulated world (and appear in the story), wrong answers differ from the right
// ones, arithmetic is right, and the programmatic reward is 1 for the exact answer, half for it in needless words.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseAnswer, preferencePairs, statedAnswer, statesAnswer, taskExamples, taskReward, TASK_KINDS } from '../../src/data/index.js';

describe('built-in tasks', () => {
  const a = taskExamples({ seed: 1, count: 80 });

  test('deterministic per seed; different seeds share no prompt', () => {
    assert.deepEqual(taskExamples({ seed: 1, count: 80 }), a);
    const b = new Set(taskExamples({ seed: 2, count: 80 }).map((e) => e.prompt));
    assert.equal(a.filter((e) => b.has(e.prompt)).length, 0);
  });

  test('every kind in turn, with a question, an answer and a different wrong answer', () => {
    assert.deepEqual(a.slice(0, 4).map((e) => e.kind), [...TASK_KINDS]);
    for (const e of a) {
      assert.ok(e.answer.length > 0 && e.wrong.length > 0);
      assert.notEqual(normaliseAnswer(e.wrong), normaliseAnswer(e.answer), e.prompt);
      assert.ok(e.rambling.includes(e.answer) && e.rambling.length > e.answer.length + 10);
      if (e.kind !== 'arithmetic') {
        assert.match(e.prompt, /\nQuestion: (Who has|Where is|What colour is) /);
        const story = e.prompt.split('\nQuestion:')[0];
        // The answer is a word of the story (a name, a place or a colour it mentions).
        assert.ok(story.includes(e.answer), `"${e.answer}" is not in the story: ${story}`);
      }
    }
  });

  test('word problems have the right answer', () => {
    for (const e of a.filter((x) => x.kind === 'arithmetic')) {
      const n = e.prompt.match(/\d+/g)!.map(Number);
      const expected = /gives \d+ \w+ to/.test(e.prompt) ? n[0] - n[1] : n[0] + n[1];
      assert.equal(e.answer, String(expected), e.prompt);
      assert.ok(n.every((k) => k >= 1 && k <= 10) && expected >= 0 && expected <= 10, `numbers within ten: ${e.prompt}`);
    }
  });

  test('the filter keeps only accepted examples', () => {
    const short = taskExamples({ seed: 3, count: 10, accept: (e) => e.prompt.length < 600 });
    assert.equal(short.length, 10);
    assert.ok(short.every((e) => e.prompt.length < 600));
  });

  test('pairs: correct over wrong, concise over rambling, or alternating', () => {
    const ten = a.slice(0, 10);
    assert.deepEqual(preferencePairs(ten, 'correct').map((p) => p.rejected), ten.map((e) => e.wrong));
    assert.deepEqual(preferencePairs(ten, 'concise').map((p) => p.rejected), ten.map((e) => e.rambling));
    const both = preferencePairs(ten, 'both');
    assert.equal(both.length, 10);
    assert.ok(both.every((p, i) => p.chosen === ten[i].answer));
  });

  test('the reward is 1 for the exact answer (up to case, spaces and a final full stop), 0.5 for it in needless words', () => {
    assert.equal(taskReward({ answer: 'Anna' }, ' anna.'), 1);
    assert.equal(taskReward({ answer: 'living room' }, 'Living room'), 1);
    assert.equal(taskReward({ answer: 'Anna' }, 'The answer is Anna.'), 0.5);
    assert.equal(taskReward({ answer: 'Anna' }, 'The answer is Tom.'), 0);
    assert.equal(taskReward({ answer: '7' }, '17'), 0);
  });

  test('the stated answer: alone, or after the last "the answer is" of a rambling response', () => {
    assert.equal(statedAnswer(' Jack'), ' Jack');
    assert.equal(statedAnswer('Let me think. The answer is living room. I hope that helps.'), 'living room');
    assert.equal(statedAnswer('The answer is 5, no, the answer is 7.'), '7');
    for (const e of a) {
      assert.ok(statesAnswer(e, e.answer) && statesAnswer(e, e.rambling), e.rambling);
      assert.ok(!statesAnswer(e, e.wrong));
      // The reward prefers the answer alone: a rambling answer states it and earns half.
      assert.equal(taskReward(e, e.rambling), 0.5);
      assert.equal(taskReward(e, e.wrong), 0);
    }
  });
});
