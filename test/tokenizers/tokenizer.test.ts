// The Tokenizer API: offsets, the batch API (padding, truncation, attention masks), chat templates
// with the assistant mask, added special tokens, the command line.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { ArgumentError } from '../../src/errors.js';
import { CHATML_TEMPLATE, loadTokenizer, tokenizerFromJSON, trainTokenizer } from '../../src/tokenizers/index.js';
import type { Tokenizer } from '../../src/tokenizers/index.js';
import { stressCorpus } from './stress.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../../..');
const shakespeare = readFileSync(path.join(root, 'test/fixtures/data/tinyshakespeare.txt'), 'utf8');

let cl100k: Tokenizer;
let wordpiece: Tokenizer;
let chatml: Tokenizer;
before(async () => {
  cl100k = loadTokenizer('cl100k_base');
  wordpiece = await trainTokenizer({ model: 'wordpiece', text: shakespeare.slice(0, 200_000), vocabSize: 1500 });
  chatml = await trainTokenizer({ text: shakespeare.slice(0, 200_000), vocabSize: 800 });
});

describe('offsets', () => {
  test('byte-level: spans cover the text in order; a token inside a character spans that character', () => {
    for (const s of stressCorpus(3, 40)) {
      const { ids, offsets } = cl100k.encodeWithOffsets(s);
      assert.equal(ids.length, offsets.length);
      let prevStart = 0;
      let covered = 0;
      for (const [a, b] of offsets) {
        assert.ok(a >= prevStart && b > a && b <= s.length, `span [${a}, ${b}) out of order in ${JSON.stringify(s.slice(0, 40))}`);
        prevStart = a;
        covered = Math.max(covered, b);
      }
      assert.equal(covered, s.length);
    }
    const text = 'hi 🙂!';
    const { ids, offsets } = cl100k.encodeWithOffsets(text);
    for (let i = 0; i < ids.length; i++) {
      const [a, b] = offsets[i]!;
      const bytes = Buffer.from(cl100k.decodeBytes([ids[i]!]));
      if (bytes[0]! >= 0x80) assert.deepEqual([a, b], [3, 5], 'emoji bytes map to the emoji');
      else assert.equal(text.slice(a, b), bytes.toString('utf8'));
    }
  });

  test('wordpiece: spans point into the original text through lower-casing and accents', () => {
    const text = 'Café, ROMEO!';
    const { ids, offsets } = wordpiece.encodeWithOffsets(text);
    assert.deepEqual(offsets[0], [0, 0], '[CLS] has an empty span');
    const words = offsets.slice(1, -1).map(([a, b]) => text.slice(a, b));
    assert.equal(words.join('').replaceAll('#', ''), 'Café,ROMEO!');
    assert.equal(ids.length, offsets.length);
  });
});

describe('batch API', () => {
  const texts = ['To be, or not to be', 'Ay', 'that is the question: whether tis nobler in the mind to suffer'];

  test('no options: ragged rows, masks of ones', () => {
    const b = cl100k.encodeBatch(texts);
    assert.deepEqual(b.ids, texts.map((t) => cl100k.encode(t)));
    assert.deepEqual(b.attentionMask, b.ids.map((r) => r.map(() => 1)));
  });

  test('padding to the longest, right and left, with the pad id', () => {
    const b = wordpiece.encodeBatch(texts, { padding: true });
    const n = Math.max(...texts.map((t) => wordpiece.encode(t).length));
    const pad = wordpiece.tokenToId('[PAD]')!;
    for (let i = 0; i < texts.length; i++) {
      const real = wordpiece.encode(texts[i]!);
      assert.equal(b.ids[i]!.length, n);
      assert.deepEqual(b.ids[i]!.slice(0, real.length), real);
      assert.ok(b.ids[i]!.slice(real.length).every((x) => x === pad));
      assert.deepEqual(b.attentionMask[i], real.map(() => 1).concat(new Array(n - real.length).fill(0)));
      assert.equal(b.offsets[i]!.length, n);
    }
    const left = wordpiece.encodeBatch(texts, { padding: 'longest', padSide: 'left' });
    assert.equal(left.ids[1]![0], pad);
    assert.equal(left.attentionMask[1]![n - 1], 1);
  });

  test('truncation keeps [CLS] and [SEP]; max_length padding', () => {
    const b = wordpiece.encodeBatch(texts, { truncation: true, padding: 'max_length', maxLength: 6 });
    const cls = wordpiece.tokenToId('[CLS]');
    const sep = wordpiece.tokenToId('[SEP]');
    for (const row of b.ids) assert.equal(row.length, 6);
    assert.equal(b.ids[2]![0], cls);
    assert.equal(b.ids[2]![5], sep);
    assert.deepEqual(b.attentionMask[1], [1, 1, 1, 0, 0, 0]);
  });

  test('bad options are errors that say what is missing', () => {
    assert.throws(() => wordpiece.encodeBatch(texts, { truncation: true }), /maxLength/);
    assert.throws(() => wordpiece.encodeBatch(texts, { truncation: true, maxLength: 1 }), /template tokens/);
    const noPad = loadTokenizer('cl100k_base');
    assert.equal(noPad.encodeBatch(texts, { padding: true }).ids[1]!.at(-1), noPad.tokenToId('<|endoftext|>'));
    const wp = tokenizerFromJSON(JSON.parse(JSON.stringify({ ...wordpiece.toJSON(), added_tokens: [] })));
    assert.throws(() => wp.encodeBatch(texts, { padding: true }), (e: Error) => e instanceof ArgumentError && /padId/.test(e.message));
  });
});

describe('chat templates', () => {
  const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Who is Romeo?' },
    { role: 'assistant', content: 'A Montague.' },
    { role: 'user', content: 'And Juliet?' },
    { role: 'assistant', content: 'A Capulet.' },
  ];

  test('built-in ChatML: same text as @huggingface/jinja renders, mask = assistant content + <|im_end|>', () => {
    const enc = chatml.applyChatTemplate(messages);
    assert.equal(enc.text, new Template(CHATML_TEMPLATE).render({ messages }));
    assert.equal(enc.ids.length, enc.assistantMask.length);
    const masked = enc.ids.filter((_, i) => enc.assistantMask[i] === 1);
    assert.equal(chatml.decode(masked), 'A Montague.<|im_end|>A Capulet.<|im_end|>');
    assert.deepEqual(enc.ids, chatml.encode(enc.text, { addSpecialTokens: false }));
    const prompt = chatml.applyChatTemplate(messages.slice(0, 2), { add_generation_prompt: true });
    assert.ok(prompt.text.endsWith('<|im_start|>assistant\n'));
    assert.ok(prompt.assistantMask.every((m) => m === 0));
  });

  test("a tokenizer_config.json template without generation blocks: content plus the following special token", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'plinth-chat-'));
    const tok = wordpiece;
    tok.save(dir);
    const template =
      "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}";
    const loaded = tokenizerFromJSON(tok.toJSON(), { chat_template: template, bos_token: '[CLS]', eos_token: '[SEP]' });
    const enc = loaded.applyChatTemplate(messages);
    assert.equal(enc.text, new Template(template).render({ messages, bos_token: '[CLS]', eos_token: '[SEP]' }));
    const masked = enc.ids.filter((_, i) => enc.assistantMask[i] === 1).map((id) => loaded.idToToken(id));
    assert.equal(masked.filter((t) => t === '[SEP]').length, 2, masked.join(' '));
    assert.ok(!masked.includes('[CLS]'));
  });

  test('templates with {% generation %} blocks mark exactly those spans', () => {
    const template =
      "{% for m in messages %}<{{ m['role'] }}>{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}";
    const enc = chatml.applyChatTemplate(messages, { template });
    assert.ok(!enc.text.includes('generation'));
    const masked = enc.ids.filter((_, i) => enc.assistantMask[i] === 1);
    assert.equal(chatml.decode(masked), 'A Montague.<|im_end|>A Capulet.<|im_end|>');
  });

  test('ChatML on a tokenizer without its special tokens, and bad messages, are clear errors', () => {
    const tok = loadTokenizer('r50k_base');
    assert.throws(() => tok.applyChatTemplate(messages), /addSpecialTokens/);
    const ids = tok.addSpecialTokens(['<|im_start|>', '<|im_end|>']);
    assert.deepEqual(ids, [50257, 50258]);
    assert.equal(tok.vocabSize, 50259);
    assert.ok(tok.applyChatTemplate(messages).ids.includes(50258));
    assert.throws(() => chatml.applyChatTemplate([{ role: 'user' } as never]), /role and content/);
    assert.throws(() => chatml.applyChatTemplate(messages, { template: '{% for %}' }), /chat template/);
  });
});

describe('command line', () => {
  const cli = path.join(root, 'dist/src/cli/main.js');

  test('plinth tokenizer train, then plinth tokenize ids and --count --json', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'plinth-cli-'));
    const input = path.join(root, 'test/fixtures/data/tinyshakespeare.txt');
    const summary = JSON.parse(execFileSync(process.execPath, [cli, 'tokenizer', 'train', '--input', input, '--vocab-size', '600', '--out', out, '--json'], { encoding: 'utf8' }));
    assert.equal(summary.vocab_size, 600);
    const tok = loadTokenizer(out);
    const ids = execFileSync(process.execPath, [cli, 'tokenize', '--tokenizer', out], { input: 'To be, or not to be', encoding: 'utf8' });
    assert.deepEqual(ids.trim().split(' ').map(Number), tok.encode('To be, or not to be'));
    const count = JSON.parse(execFileSync(process.execPath, [cli, 'tokenize', '--tokenizer', 'cl100k_base', '--count', '--json'], { input: 'hello world', encoding: 'utf8' }));
    assert.equal(count.tokens, 2);
  });

  test('bad input exits with a one-line error', () => {
    const r = spawnSync(process.execPath, [cli, 'tokenizer', 'train', '--input', 'no-such-file.txt', '--vocab-size', '300', '--out', os.tmpdir()], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^plinth: cannot read input file no-such-file.txt/);
    const v = spawnSync(process.execPath, [cli, 'tokenize', '--tokenizer', 'nope_base'], { input: 'x', encoding: 'utf8' });
    assert.equal(v.status, 1);
    assert.match(v.stderr, /neither a built-in encoding/);
  });
});
